/**
 * The audit sink (docs/design.md §4): one JSON line per record on a dedicated pino
 * destination (stdout for the cluster's log pipeline, or a file), separate from the operational
 * log. A line is exactly the record's JSON, no pino `pid`/`hostname`/`level`/`time`/`msg`, so the
 * schema stays the one `waygate audit` reads.
 *
 * Writes are asynchronous (SonicBoom buffers up to `minLength` bytes) so the data path never
 * waits on disk; `flush()` resolves once every line written so far reached the file descriptor,
 * and `flushSync()` is for exit paths where the event loop will not turn again (pino's docs:
 * asynchronous destinations lose lines on a crash unless flushed).
 *
 * `end()`, `flush()` and `flushSync()` are safe at any point of the logger's life: right after
 * creation, after a write error, and more than once. A start-up that fails (a port in use, a bad
 * certificate) ends the logger a few microseconds after creating it, and that path must report the
 * start-up error, not one of its own (docs/operating.md, "Exit codes").
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { WaygateError } from '../errors.ts';
import type { AuditRecord, CloseRecord, DecisionRecord, ReloadRecord } from './record.ts';
import type { AuditSink } from './sink.ts';

export interface AuditLoggerOptions {
  /** `-` for stdout, otherwise a file path (appended to, created if missing, parents created). */
  destination: '-' | string;
  /** Write each line synchronously (tests, tiny deployments). Default false. */
  sync?: boolean;
  /** Bytes buffered before an asynchronous write; default 4096. Ignored when `sync`. */
  minLengthBytes?: number;
  /**
   * Longest a record may wait in the buffer before it is written; default 1000 ms. Without it a
   * quiet gateway would hold its last records until 4 KiB accumulate, and an auditor tailing the
   * log (or `kubectl logs`) would not see a decision that already happened.
   */
  maxDelayMs?: number;
}

/** An AuditSink with a synchronous flush for exit paths and an explicit end. */
export interface AuditLogger extends AuditSink {
  /**
   * Flushes synchronously; for `process.on('exit')` and fatal-error paths. Never throws, and does
   * nothing while the destination's writes are failing (it would retry them forever).
   */
  flushSync(): void;
  /**
   * Flushes, then closes the destination (stdout is flushed but left open). Idempotent: every call
   * returns the same promise. Rejects with WG_AUDIT when the final flush failed; the file is
   * closed all the same.
   */
  end(): Promise<void>;
  /** The last write error the destination reported (disk full, EPIPE), null when none. */
  readonly lastError: Error | null;
}

type Destination = ReturnType<typeof pino.destination>;

/** Creates the audit sink. Throws WaygateError(WG_AUDIT) when the destination cannot be opened. */
export function createAuditLogger(options: AuditLoggerOptions): AuditLogger {
  const sync = options.sync ?? false;
  const toStdout = options.destination === '-';
  let fd: number;
  if (toStdout) {
    fd = 1;
  } else {
    // The file is opened here, synchronously, and SonicBoom is handed the descriptor. A bad path
    // fails the start-up with a clear error, and the destination is writable from its first
    // moment. Handed a path instead, SonicBoom opens it asynchronously, and a flush()/end() in
    // that window (a start-up that fails at once ends the logger right away) crashes in buffer
    // mode: with nothing buffered, the flush queued for the open calls mergeBuf(undefined), a
    // TypeError thrown from an fs callback (sonic-boom 4.2.1, fileOpened -> actualWriteBuffer);
    // and flushSync() before the open silently writes nothing.
    try {
      mkdirSync(path.dirname(options.destination), { recursive: true });
      fd = openSync(options.destination, 'a');
    } catch (err) {
      throw new WaygateError('WG_AUDIT', `cannot open audit log ${options.destination}: ${(err as Error).message}`, { cause: err });
    }
  }
  let dest: Destination;
  try {
    dest = pino.destination({
      dest: fd,
      sync,
      // Fewer, larger writes: 16 KiB batches (bounded in time by maxDelayMs below).
      minLength: sync ? 0 : (options.minLengthBytes ?? 16 * 1024),
      maxWrite: 64 * 1024,
      // Lines are handed over as Buffers. In its default utf8 mode SonicBoom keeps one growing
      // string and measures and slices it on every write and completion: 9-10 us of CPU per
      // ~800-byte record against 3-4 us in buffer mode (40,000 records, same machine), and the
      // gateway writes two records per tunnel.
      contentMode: 'buffer',
    });
  } catch (err) {
    if (!toStdout) closeSync(fd);
    throw new WaygateError('WG_AUDIT', `cannot open audit log ${options.destination}: ${(err as Error).message}`, { cause: err });
  }
  // A failed write (disk full, EPIPE on a closed stdout) must not crash the gateway through an
  // unhandled 'error' event; it is reported on the operational log by whoever owns the process.
  let lastError: Error | null = null;
  // True from a failed write until a write succeeds again. SonicBoom's flushSync() retries a
  // failing write every 100 ms for as long as it fails (sonic-boom 4.2.1 flushBufferSync sleeps
  // and loops on any error), which would turn a full disk into an exit path that never exits.
  let failing = false;
  dest.on('error', (err: Error) => {
    lastError = err;
    failing = true;
  });
  dest.on('write', () => {
    failing = false;
  });
  // pino.destination() also registers the stream's flushSync() to run at process exit
  // (node_modules/pino/lib/tools.js, buildSafeSonicBoom/autoEnd), so a failing destination would
  // hang process.exit() too. The guard goes on the stream itself, as pino's own EPIPE handling
  // replaces the stream's methods in that same file.
  const rawFlushSync = dest.flushSync.bind(dest);
  dest.flushSync = () => {
    if (!failing) rawFlushSync();
  };

  // Records are plain data whose types list their fields in schema order, so JSON.stringify gives
  // exactly the line we want (`{"schema":1,"event":"decision","time":...}`). pino's logger layer
  // (level, merge, its own serialiser) cost ~19% of the gateway's CPU per CONNECT in the bench
  // profile for nothing a record needs; pino's destination (sonic-boom) still does the buffered,
  // asynchronous, flushable I/O.
  // SonicBoom's type declarations only list `write(string)`; in buffer mode it takes Buffers.
  const writeLine = dest.write.bind(dest) as unknown as (line: Buffer) => boolean;
  let ended = false;
  const maxDelayMs = sync ? 0 : (options.maxDelayMs ?? 1000);
  // One timer at most, armed by the first write after a flush: a busy log pays nothing per record,
  // an idle one writes its tail within maxDelayMs. Unref'd so it never holds the process open.
  let delayTimer: NodeJS.Timeout | null = null;
  const flushBuffered = (): void => {
    delayTimer = null;
    if (ended) return;
    try {
      dest.flush(); // no callback: write the buffer, no fsync
    } catch {
      // destroyed by a failed close: nothing left to write to
    }
  };
  const write = (record: AuditRecord): void => {
    writeLine(Buffer.from(JSON.stringify(record) + '\n'));
    if (maxDelayMs > 0 && delayTimer === null) {
      delayTimer = setTimeout(flushBuffered, maxDelayMs);
      delayTimer.unref();
    }
  };

  const flush = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (ended) return resolve();
      // SonicBoom.flush(cb) calls back after its buffer drained to the fd and an fsync ran. A
      // pipe or a terminal cannot be fsync'ed (EINVAL/ENOTSUP): the bytes are in the kernel
      // already, which is what "flushed" means for stdout.
      dest.flush((err?: Error) => {
        const code = (err as NodeJS.ErrnoException | undefined)?.code;
        if (!err || code === 'EINVAL' || code === 'ENOTSUP') return resolve();
        if (code === 'EAGAIN') {
          // A non-blocking stdout pipe that is full: finish synchronously.
          try {
            rawFlushSync();
            return resolve();
          } catch (e) {
            err = e as Error;
          }
        }
        reject(new WaygateError('WG_AUDIT', `audit log flush failed: ${err.message}`, { cause: err }));
      });
    });

  /**
   * Closes the file descriptor once SonicBoom wrote what it still holds. A write that fails during
   * the close (its error is in lastError) would leave SonicBoom waiting for a 'drain' that never
   * comes; destroy() then drops the rest and closes the descriptor.
   */
  const closeDestination = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const onClose = (): void => {
        dest.off('error', onError);
        resolve();
      };
      let destroying = false;
      const onError = (): void => {
        if (destroying) {
          // The close itself failed: nothing more can be done with this descriptor.
          dest.off('close', onClose);
          dest.off('error', onError);
          resolve();
        } else {
          destroying = true;
          dest.destroy();
        }
      };
      dest.once('close', onClose);
      dest.on('error', onError);
      dest.end();
    });

  let ending: Promise<void> | null = null;
  const end = async (): Promise<void> => {
    if (delayTimer) clearTimeout(delayTimer);
    delayTimer = null;
    let flushError: unknown = null;
    try {
      await flush();
    } catch (err) {
      flushError = err;
    }
    ended = true;
    // The descriptor is closed even when the flush failed: end() is the last owner of it.
    if (!toStdout) await closeDestination();
    if (flushError) throw flushError;
  };

  return {
    decision: write,
    close: write,
    reload: write,
    flush,
    flushSync: () => {
      if (ended) return;
      try {
        dest.flushSync();
      } catch {
        // Exit path: nothing left to report to; the error was already emitted on the stream.
      }
    },
    // Every call shares the one ending: a second end() (a drain racing a failed start-up, or a
    // test's cleanup) waits for the same close instead of touching a closed descriptor.
    end: () => (ending ??= end()),
    get lastError() {
      return lastError;
    },
  };
}
