/**
 * The audit sink (DESIGN §4, issue 3 part 8): one JSON line per record on a dedicated pino
 * destination (stdout for the cluster's log pipeline, or a file), separate from the operational
 * log. A line is exactly the record's JSON, no pino `pid`/`hostname`/`level`/`time`/`msg`, so the
 * schema stays the one `waygate audit` reads.
 *
 * Writes are asynchronous (SonicBoom buffers up to `minLength` bytes) so the data path never
 * waits on disk; `flush()` resolves once every line written so far reached the file descriptor,
 * and `flushSync()` is for exit paths where the event loop will not turn again (STYLE.md, pino:
 * "with asynchronous destinations, lines can be lost on a crash unless flushed").
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { WaygateError } from '../errors.ts';
import type { CloseRecord, DecisionRecord, ReloadRecord } from './record.ts';
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
  /** Flushes synchronously; for `process.on('exit')` and fatal-error paths. Never throws. */
  flushSync(): void;
  /** Flushes, then closes the destination (stdout is flushed but left open). Idempotent. */
  end(): Promise<void>;
  /** The last write error the destination reported (disk full, EPIPE), null when none. */
  readonly lastError: Error | null;
}

type Destination = ReturnType<typeof pino.destination>;

/** Creates the audit sink. Throws WaygateError(WG_AUDIT) when the destination cannot be opened. */
export function createAuditLogger(options: AuditLoggerOptions): AuditLogger {
  const sync = options.sync ?? false;
  const toStdout = options.destination === '-';
  let dest: Destination;
  try {
    if (!toStdout) {
      // Open once synchronously so a bad path fails the start-up with a clear error; SonicBoom's
      // own asynchronous open would only report it later as a stream 'error'.
      mkdirSync(path.dirname(options.destination), { recursive: true });
      closeSync(openSync(options.destination, 'a'));
    }
    dest = pino.destination({
      dest: toStdout ? 1 : options.destination,
      sync,
      // Fewer, larger writes: 16 KiB batches (bounded in time by maxDelayMs below).
      minLength: sync ? 0 : (options.minLengthBytes ?? 16 * 1024),
      maxWrite: 64 * 1024,
      // Lines are handed over as Buffers. In its default utf8 mode SonicBoom keeps one growing
      // string and measures and slices it on every write and completion: 9-10 us of CPU per
      // ~800-byte record against 3-4 us in buffer mode (40,000 records, same machine), and the
      // gateway writes two records per tunnel.
      contentMode: 'buffer',
      mkdir: !toStdout,
      append: true,
    });
  } catch (err) {
    throw new WaygateError('WG_AUDIT', `cannot open audit log ${options.destination}: ${(err as Error).message}`, { cause: err });
  }
  // A failed write (disk full, EPIPE on a closed stdout) must not crash the gateway through an
  // unhandled 'error' event; it is reported on the operational log by whoever owns the process.
  let lastError: Error | null = null;
  dest.on('error', (err: Error) => {
    lastError = err;
  });

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
      // not open yet (asynchronous file open): the next write re-arms the timer
    }
  };
  const write = (record: DecisionRecord | CloseRecord | ReloadRecord): void => {
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
            dest.flushSync();
            return resolve();
          } catch (e) {
            err = e as Error;
          }
        }
        reject(new WaygateError('WG_AUDIT', `audit log flush failed: ${err.message}`, { cause: err }));
      });
    });

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
    end: async () => {
      if (ended) return;
      if (delayTimer) clearTimeout(delayTimer);
      delayTimer = null;
      await flush();
      ended = true;
      if (toStdout) return;
      await new Promise<void>((resolve) => {
        dest.once('close', () => resolve());
        dest.end();
      });
    },
    get lastError() {
      return lastError;
    },
  };
}
