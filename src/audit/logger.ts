/**
 * The audit writer (docs/design.md §4): one JSON line per record on a dedicated pino destination
 * (sonic-boom; stdout for the cluster's log pipeline, or a file), separate from the operational
 * log. A line is exactly the record's JSON, no pino `pid`/`hostname`/`level`/`time`/`msg`, so the
 * schema stays the one `waygate audit` reads.
 *
 * Group commit (docs/operating.md, "Audit log guarantees"): records are queued here, and the
 * records of one event-loop turn are handed to sonic-boom as one buffer in the check phase of that
 * turn (`setImmediate`), which makes it one `write(2)`. One group is in flight at a time; what
 * arrives meanwhile forms the next group. A write-ahead decision record (`decisionAhead`) resolves
 * once its group's write returned (`'drain'`), after an fsync per group (`sync: batch`) or per
 * record (`sync: always`, one record per group). A record is never split between two write calls
 * except by the kernel's partial writes (a disk filling up), which sonic-boom completes when the
 * write succeeds again: a crash leaves whole lines, or one final partial line that `waygate audit`
 * skips and counts (src/audit/review/reader.ts).
 *
 * Faults are told apart: a group whose write has not returned after {@link SLOW_AFTER_MS} makes
 * the log `slow` (backpressure: a stalled pipe reader, a saturated disk); a write call that fails
 * (ENOSPC, EIO, EPIPE) makes it `failed`, retried with a growing delay until it succeeds. Leaving
 * either needs more than one good write: the backlog must first fall below a low-water mark
 * (hysteresis, so a brief stall or an almost-full disk does not flap). The queue is bounded
 * (`maxBufferBytes`); a record that does not fit is dropped and counted. What new CONNECTs get
 * while the log fails is `onFailure`'s: `deny` refuses them (`audit_unavailable`), `allow` lets
 * them through without their record being written first.
 *
 * `end()`, `flush()` and `flushSync()` are safe at any point of the logger's life: right after
 * creation, after a write error, and more than once. A start-up that fails (a port in use, a bad
 * certificate) ends the logger a few microseconds after creating it, and that path must report the
 * start-up error, not one of its own (docs/operating.md, "Exit codes"). `end()` gives up after
 * {@link END_TIMEOUT_MS}: shutdown completes within the drain deadline plus that.
 */
import { closeSync, fstatSync, fsync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { WaygateError } from '../errors.ts';
import type { AuditRecord, DecisionRecord } from './record.ts';
import type { AheadResult, AuditHealth, AuditSink, AuditState } from './sink.ts';

/** `none`: handed to the OS before the 200; `batch`: and fsync'ed, once per group; `always`: once per record. */
export type AuditSyncMode = 'none' | 'batch' | 'always';
/** What new CONNECTs get while the log cannot be written. */
export type AuditOnFailure = 'deny' | 'allow';

/** A group whose write has not returned for this long makes the log `slow`. */
export const SLOW_AFTER_MS = 1000;
/** Longest an allowed CONNECT waits for its decision record to be written (then `audit_unavailable`). */
export const WRITE_AHEAD_BOUND_MS = 1000;
/**
 * Longest `end()` waits for the queue to be written before dropping (and counting) the rest. With
 * the 0.5 s the data plane gives the last close records (src/gateway/data-plane.ts), a shutdown
 * ends within the drain deadline plus 5 s (docs/operating.md, "Audit log guarantees").
 */
export const END_TIMEOUT_MS = 4500;
/** Default bound of the queue: a stall longer than this many bytes of records drops records. */
export const DEFAULT_MAX_BUFFER_BYTES = 64 * 1024 * 1024;
/** Retry delays of a failed write: from the first to the last, doubling. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5000;
/** At most one "still failing" log line per this interval. */
const LOG_EVERY_MS = 10_000;

/** The operational log the writer reports its faults on (a pino logger fits). */
export interface AuditOpsLog {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface AuditLoggerOptions {
  /** `-` for stdout, otherwise a file path (appended to, created if missing, parents created). */
  destination: '-' | string;
  /** fsync policy (config `audit.sync`); default `none`. */
  sync?: AuditSyncMode;
  /** Config `audit.onFailure`; default `deny` for a file, `allow` for stdout (docs/operating.md). */
  onFailure?: AuditOnFailure;
  /** Bound of the queue, bytes; default {@link DEFAULT_MAX_BUFFER_BYTES}. */
  maxBufferBytes?: number;
  /** Bound of a write-ahead wait; default {@link WRITE_AHEAD_BOUND_MS}. */
  writeAheadBoundMs?: number;
  /** Where faults are logged (rate-limited); none: silent (the counters still count). */
  log?: AuditOpsLog;
}

/** An AuditSink with a synchronous flush for exit paths and an explicit end. */
export interface AuditLogger extends AuditSink {
  decisionAhead(record: DecisionRecord): Promise<AheadResult>;
  health(): AuditHealth;
  onHealthChange(listener: (h: AuditHealth) => void): void;
  /**
   * Flushes synchronously; for `process.on('exit')` and fatal-error paths. Never throws, and does
   * nothing while the destination's writes are failing or stalled (it would wait forever).
   */
  flushSync(): void;
  /**
   * Writes what is queued (within {@link END_TIMEOUT_MS}), then closes the destination (stdout is
   * left open). Idempotent: every call returns the same promise. Rejects with WG_AUDIT when the
   * final flush failed or timed out; the file is closed all the same.
   */
  end(): Promise<void>;
  /** The last write error the destination reported (disk full, EPIPE), null when none. */
  readonly lastError: Error | null;
}

type Destination = ReturnType<typeof pino.destination>;

/** One queued record; `line` null once withdrawn. */
interface Entry {
  line: Buffer | null;
  ahead: Waiter | null;
}

/** A write-ahead record's wait. */
interface Waiter {
  resolve: (r: AheadResult) => void;
  deadline: number;
  entry: Entry;
  /** Handed to a write call. */
  inFlight: boolean;
  done: boolean;
}

interface Group {
  entries: Entry[];
  bytes: number;
}

const EMPTY = Buffer.alloc(0);
const NEWLINE = Buffer.from('\n');

/** Whether a file descriptor's file ends in a partial line (a crash mid-write): it gets a newline first. */
function endsMidLine(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size === 0) return false;
    const b = Buffer.alloc(1);
    return readSync(fd, b, 0, 1, st.size - 1) === 1 && b[0] !== 10;
  } catch {
    return false;
  }
}

/** An exit path's synchronous write gives up once the reader has taken no byte for this long. */
export const EXIT_WRITE_STALL_MS = 1000;

/**
 * Writes `buf` with write(2) until it is all written, for exit paths only. A non-blocking stdout
 * pipe that is full (EAGAIN) is retried while its reader makes progress: the bound is on time
 * without progress ({@link EXIT_WRITE_STALL_MS}), not on the number of EAGAINs, so a large backlog
 * into a pipe whose reader is merely slower than this loop is written whole (on Node 24 stdout
 * pipes are non-blocking here, and a bound of 100 EAGAINs cut a 20,000-record flush mid-line),
 * while a reader that stopped cannot hold the exit. Any other error gives up at once.
 */
function writeAllSync(fd: number, buf: Buffer): void {
  let rest = buf;
  let lastProgress = performance.now();
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (rest.length > 0) {
    try {
      const n = writeSync(fd, rest);
      if (n > 0) lastProgress = performance.now();
      rest = rest.subarray(n);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || performance.now() - lastProgress > EXIT_WRITE_STALL_MS) throw err;
      Atomics.wait(pause, 0, 0, 2);
    }
  }
}

/** Creates the audit writer. Throws WaygateError(WG_AUDIT) when the destination cannot be opened. */
export function createAuditLogger(options: AuditLoggerOptions): AuditLogger {
  const toStdout = options.destination === '-';
  const syncMode: AuditSyncMode = options.sync ?? 'none';
  const onFailure: AuditOnFailure = options.onFailure ?? (toStdout ? 'allow' : 'deny');
  const maxBufferBytes = options.maxBufferBytes ?? DEFAULT_MAX_BUFFER_BYTES;
  // The backlog must fall this low before `slow`/`failed`/`backlogFull` end (hysteresis).
  const lowWaterBytes = Math.min(64 * 1024, Math.floor(maxBufferBytes / 4));
  const boundMs = options.writeAheadBoundMs ?? WRITE_AHEAD_BOUND_MS;
  const log = options.log;
  let fd: number;
  let repairTail = false;
  if (toStdout) {
    fd = 1;
  } else {
    // The file is opened here, synchronously, and SonicBoom is handed the descriptor. A bad path
    // fails the start-up with a clear error, and the destination is writable from its first
    // moment. Handed a path instead, SonicBoom opens it asynchronously, and a flush()/end() in
    // that window crashes in buffer mode (sonic-boom 4.2.1, fileOpened -> actualWriteBuffer).
    try {
      mkdirSync(path.dirname(options.destination), { recursive: true });
      fd = openSync(options.destination, 'a+');
    } catch (err) {
      throw new WaygateError('WG_AUDIT', `cannot open audit log ${options.destination}: ${(err as Error).message}`, { cause: err });
    }
    // A previous process killed mid-write left a partial last line: end it, so the first record
    // of this process is a line of its own (the partial one is then one malformed line).
    repairTail = endsMidLine(fd);
  }
  let dest: Destination;
  try {
    dest = pino.destination({
      dest: fd,
      sync: false,
      // Nothing is held back by SonicBoom: the groups are formed here, one per event-loop turn.
      minLength: 0,
      // Lines are handed over as Buffers: in its default utf8 mode SonicBoom measures and slices one
      // growing string on every write and completion (9-10 us of CPU per ~800-byte record against
      // 3-4 us in buffer mode, 40,000 records, same machine).
      contentMode: 'buffer',
    });
  } catch (err) {
    if (!toStdout) closeSync(fd);
    throw new WaygateError('WG_AUDIT', `cannot open audit log ${options.destination}: ${(err as Error).message}`, { cause: err });
  }
  // SonicBoom's type declarations only list `write(string)`; in buffer mode it takes Buffers.
  const writeBuf = dest.write.bind(dest) as unknown as (b: Buffer) => boolean;

  // ---- state -------------------------------------------------------------------------------
  // Entries from `queueHead` on are queued (an index, not shift(): `always` takes one at a time).
  let queue: Entry[] = [];
  let queueHead = 0;
  let queuedBytes = 0;
  let inFlight: Group | null = null;
  let inFlightSince = 0;
  let pumpScheduled = false;
  let state: AuditState = 'ok';
  let backlogFull = false;
  let refusing = false;
  let writeErrors = 0;
  let writes = 0;
  let droppedRecords = 0;
  let lastError: Error | null = null;
  let ended = false;
  let ending = false;
  let destroyed = false;
  let retryMs = RETRY_FIRST_MS;
  let retryTimer: NodeJS.Timeout | null = null;
  let slowTimer: NodeJS.Timeout | null = null;
  let lastFaultLogAt = 0;
  const healthListeners: ((h: AuditHealth) => void)[] = [];
  // Write-ahead waits, oldest first (deadlines only grow): one timer for the oldest.
  let waiters: Waiter[] = [];
  let waiterHead = 0;
  let boundTimer: NodeJS.Timeout | null = null;
  let idleWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  const health = (): AuditHealth => ({
    state, backlogFull, refusing, writes, writeErrors, droppedRecords, queuedBytes, lastError: lastError?.message ?? null,
  });

  const setHealth = (next: AuditState, full: boolean): void => {
    const nextRefusing = onFailure === 'deny' && (next === 'failed' || full);
    if (next === state && full === backlogFull && nextRefusing === refusing) return;
    const prev = state;
    state = next;
    backlogFull = full;
    refusing = nextRefusing;
    if (next !== prev) {
      if (next === 'ok') log?.info({ from: prev, writeErrors, droppedRecords }, 'audit log writable again');
      else if (next === 'slow') log?.warn({ queuedBytes, stalledMs: Math.round(performance.now() - inFlightSince) }, 'audit log is slow: a write has not returned (backpressure); CONNECTs wait for their decision records');
    }
    const h = health();
    for (const l of healthListeners) l(h);
  };

  /** A fault worth a log line: the first at once, then at most one per LOG_EVERY_MS. */
  const logFault = (msg: string, fields: object): void => {
    const now = performance.now();
    if (lastFaultLogAt !== 0 && now - lastFaultLogAt < LOG_EVERY_MS) return;
    lastFaultLogAt = now;
    log?.error({ ...fields, writeErrors, droppedRecords, onFailure, destination: options.destination }, msg);
  };

  // ---- idle / flush --------------------------------------------------------------------------
  const settleIdle = (err: Error | null): void => {
    if (idleWaiters.length === 0) return;
    if (!err && (inFlight || queuedBytes > 0)) return;
    const w = idleWaiters;
    idleWaiters = [];
    for (const x of w) err ? x.reject(err) : x.resolve();
  };

  // ---- write-ahead bound ---------------------------------------------------------------------
  const armBound = (): void => {
    if (boundTimer || waiterHead >= waiters.length) return;
    const delay = Math.max(0, waiters[waiterHead]!.deadline - performance.now());
    boundTimer = setTimeout(sweep, delay);
    boundTimer.unref();
  };
  function sweep(): void {
    boundTimer = null;
    const now = performance.now();
    while (waiterHead < waiters.length) {
      const w = waiters[waiterHead]!;
      if (!w.done && w.deadline > now) break;
      waiterHead++;
      if (w.done) continue;
      w.done = true;
      if (onFailure === 'allow') {
        w.resolve('bypassed');
      } else if (w.inFlight) {
        w.resolve('in_flight');
      } else {
        // Taken back out of the queue: the CONNECT is refused, and its record (status 200) must
        // never be written; its refusal record (audit_unavailable) is written instead.
        const line = w.entry.line;
        if (line) queuedBytes -= line.length;
        w.entry.line = null;
        w.resolve('withdrawn');
      }
    }
    if (waiterHead > 1024 && waiterHead * 2 > waiters.length) {
      waiters = waiters.slice(waiterHead);
      waiterHead = 0;
    }
    armBound();
  }

  // ---- the pump ------------------------------------------------------------------------------
  const schedulePump = (): void => {
    if (pumpScheduled || destroyed) return;
    pumpScheduled = true;
    setImmediate(pump);
  };

  function pump(): void {
    pumpScheduled = false;
    if (inFlight || destroyed || state === 'failed' || queueHead >= queue.length) return;
    // One record per group with `always` (an fsync each); otherwise the whole queue.
    const entries: Entry[] = [];
    const lines: Buffer[] = [];
    let bytes = 0;
    let i = queueHead;
    for (; i < queue.length; i++) {
      const e = queue[i]!;
      if (e.line === null) continue;
      entries.push(e);
      lines.push(e.line);
      bytes += e.line.length;
      if (e.ahead) e.ahead.inFlight = true;
      if (syncMode === 'always') {
        i++;
        break;
      }
    }
    if (i >= queue.length) {
      queue = [];
      queueHead = 0;
    } else if (i > 1024 && i * 2 > queue.length) {
      queue = queue.slice(i);
      queueHead = 0;
    } else {
      queueHead = i;
    }
    if (entries.length === 0) {
      queuedBytes = 0;
      settleIdle(null);
      return;
    }
    queuedBytes -= bytes;
    if (repairTail) {
      lines.unshift(NEWLINE);
      bytes += 1;
      repairTail = false;
    }
    inFlight = { entries, bytes };
    inFlightSince = performance.now();
    slowTimer = setTimeout(onSlow, SLOW_AFTER_MS);
    slowTimer.unref();
    writes++;
    writeBuf(lines.length === 1 ? lines[0]! : Buffer.concat(lines, bytes));
  }

  function onSlow(): void {
    slowTimer = null;
    if (inFlight && state === 'ok') setHealth('slow', backlogFull);
  }

  /** The group in flight was handed to the OS (and fsync'ed when asked). */
  const groupDone = (): void => {
    const g = inFlight;
    if (!g) return;
    inFlight = null;
    if (slowTimer) clearTimeout(slowTimer);
    slowTimer = null;
    for (const e of g.entries) {
      const w = e.ahead;
      if (w && !w.done) {
        w.done = true;
        w.resolve('written');
      }
    }
    retryMs = RETRY_FIRST_MS;
    const full = backlogFull && queuedBytes > lowWaterBytes;
    if (state !== 'ok' && queuedBytes <= lowWaterBytes) setHealth('ok', full);
    else if (state === 'failed') setHealth('slow', full);
    else setHealth(state, full);
    if (queueHead < queue.length) schedulePump();
    else settleIdle(null);
  };

  dest.on('drain', () => {
    if (!inFlight) return;
    if (syncMode === 'none') return groupDone();
    fsync(fd, (err) => {
      const code = (err as NodeJS.ErrnoException | null)?.code;
      // A pipe or a terminal cannot be fsync'ed: the bytes are with the kernel, as for `none`.
      if (err && code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EROFS') {
        // The data was written; whether it is on disk is unknown (and retrying an fsync after a
        // failed one proves nothing). Counted and logged; the group counts as written.
        writeErrors++;
        lastError = err;
        logFault('audit log fsync failed', { err: err.message, code });
      }
      groupDone();
    });
  });

  // A failed write (disk full, EIO, EPIPE on a closed stdout) must not crash the gateway through
  // an unhandled 'error' event. SonicBoom keeps the unwritten rest of the group (`_writingBuf`)
  // and writes it first on its next write call: the retry below is an empty write.
  // pino's own listener (node_modules/pino/lib/tools.js, filterBrokenPipe) re-emits the first
  // error other than EPIPE: the same error object arrives twice, and is counted once.
  let seen: Error | null = null;
  dest.on('error', (err: NodeJS.ErrnoException) => {
    if (destroyed || err === seen) return;
    seen = err;
    writeErrors++;
    lastError = err;
    if (slowTimer) clearTimeout(slowTimer);
    slowTimer = null;
    logFault(`audit log write failed (${err.code ?? err.message}); ${onFailure === 'deny' ? 'new CONNECTs are refused (audit_unavailable)' : 'new CONNECTs are allowed without their records (audit.onFailure: allow)'} until it recovers`, { err: err.message, code: err.code });
    setHealth('failed', backlogFull);
    // The group's waiters are answered now rather than at the bound: its rest stays with SonicBoom
    // (a partial write must be completed, or the line would be torn), so it cannot be withdrawn.
    if (inFlight) {
      for (const e of inFlight.entries) {
        const w = e.ahead;
        if (w && !w.done) {
          w.done = true;
          w.resolve(onFailure === 'allow' ? 'bypassed' : 'in_flight');
        }
      }
    }
    settleIdle(new WaygateError('WG_AUDIT', `audit log write failed: ${err.message}`, { cause: err }));
    if (!retryTimer && !ended) {
      retryTimer = setTimeout(retry, retryMs);
      retryTimer.unref();
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    }
  });

  function retry(): void {
    retryTimer = null;
    if (destroyed) return;
    if (!inFlight) {
      // Nothing of ours was being written (an exit-path write failed): try the queue again; its
      // write fails again if the destination still does.
      setHealth(queuedBytes > lowWaterBytes ? 'slow' : 'ok', backlogFull);
      schedulePump();
      return;
    }
    try {
      writeBuf(EMPTY);
    } catch {
      // destroyed meanwhile
    }
  }

  // pino.destination() registers the stream's flushSync() to run at process exit
  // (node_modules/pino/lib/tools.js, autoEnd). SonicBoom's flushSync() retries a failing write
  // every 100 ms for as long as it fails and blocks on a stalled pipe: a full disk or a stalled
  // log reader would be an exit that never exits. The guard goes on the stream itself; the queue
  // is handed over first, so what an exit path flushes is everything written so far.
  const rawFlushSync = dest.flushSync.bind(dest);
  const flushSyncGuarded = (): void => {
    if (destroyed || state !== 'ok' || (inFlight && performance.now() - inFlightSince > SLOW_AFTER_MS)) return;
    const lines: Buffer[] = [];
    for (let i = queueHead; i < queue.length; i++) {
      const e = queue[i]!;
      if (e.line) lines.push(e.line);
      // Handed over synchronously: whoever waits learns it at once.
      if (e.ahead && !e.ahead.done) {
        e.ahead.done = true;
        e.ahead.resolve('written');
      }
    }
    queue = [];
    queueHead = 0;
    queuedBytes = 0;
    if (repairTail && lines.length > 0) {
      lines.unshift(NEWLINE);
      repairTail = false;
    }
    if (lines.length === 0) return;
    if (inFlight) {
      // Queued behind the group in flight; SonicBoom's flushSync() writes it synchronously.
      writeBuf(Buffer.concat(lines));
      rawFlushSync();
      return;
    }
    // Nothing in flight: handed to SonicBoom, the buffer would start an asynchronous write that
    // its flushSync() does not wait for (and an exit would lose). Written here, synchronously.
    writeAllSync(fd, Buffer.concat(lines));
  };
  dest.flushSync = flushSyncGuarded;

  // ---- writing -------------------------------------------------------------------------------
  const enqueue = (record: AuditRecord, ahead: Waiter | null): boolean => {
    const line = Buffer.from(JSON.stringify(record) + '\n');
    if (ended || destroyed) {
      droppedRecords++;
      return false;
    }
    if (queuedBytes + line.length > maxBufferBytes) {
      droppedRecords++;
      if (!backlogFull) {
        setHealth(state, true);
        logFault('audit log backlog full: records are being dropped', { queuedBytes, maxBufferBytes });
      }
      return false;
    }
    const entry: Entry = { line, ahead };
    if (ahead) ahead.entry = entry;
    queue.push(entry);
    queuedBytes += line.length;
    schedulePump();
    return true;
  };

  const write = (record: AuditRecord): void => {
    enqueue(record, null);
  };

  const decisionAhead = (record: DecisionRecord): Promise<AheadResult> => {
    if (refusing) {
      // "No audit, no access": refused at once, the record (status 200) never written.
      return Promise.resolve('withdrawn');
    }
    if (state === 'failed' || backlogFull) {
      // onFailure allow: through without waiting; the record is kept while there is room.
      enqueue(record, null);
      return Promise.resolve('bypassed');
    }
    return new Promise<AheadResult>((resolve) => {
      const w: Waiter = { resolve, deadline: performance.now() + boundMs, entry: null as unknown as Entry, inFlight: false, done: false };
      if (!enqueue(record, w)) {
        w.done = true;
        resolve(onFailure === 'allow' ? 'bypassed' : 'withdrawn');
        return;
      }
      waiters.push(w);
      armBound();
    });
  };

  const flush = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (ended || destroyed) return resolve();
      if (state === 'failed') {
        return reject(new WaygateError('WG_AUDIT', `audit log flush failed: ${lastError?.message ?? 'writes are failing'}`, { cause: lastError }));
      }
      if (!inFlight && queuedBytes === 0) return resolve();
      idleWaiters.push({ resolve, reject });
      schedulePump();
    });

  /**
   * Closes the file descriptor once SonicBoom wrote what it still holds. A write that fails or
   * stalls during the close would leave SonicBoom waiting for a 'drain' that never comes:
   * destroy() then drops the rest and closes the descriptor.
   */
  const closeDestination = (gaveUp: boolean): Promise<void> =>
    new Promise<void>((resolve) => {
      destroyed = true;
      let settled = false;
      const done = (): void => {
        if (settled) return;
        settled = true;
        dest.off('close', done);
        resolve();
      };
      dest.once('close', done);
      dest.on('error', () => {
        // The close itself failed, or a last write failed: nothing more can be done with it.
        try {
          dest.destroy();
        } catch {
          // already destroyed
        }
        done();
      });
      try {
        if (gaveUp || inFlight) dest.destroy();
        else dest.end();
      } catch {
        done();
      }
    });

  let endPromise: Promise<void> | null = null;
  const end = async (): Promise<void> => {
    ending = true;
    let flushError: unknown = null;
    let gaveUp = false;
    if (state !== 'failed') {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new WaygateError('WG_AUDIT', `audit log not written within ${END_TIMEOUT_MS} ms of the shutdown`)), END_TIMEOUT_MS);
      });
      deadline.catch(() => undefined);
      try {
        // Until a turn passes with nothing new: the close records of tunnels reset by the drain
        // arrive in the turns after the reset (the streams' 'close' events).
        for (;;) {
          await Promise.race([flush(), deadline]);
          await Promise.race([new Promise<void>((r) => setImmediate(r)), deadline]);
          if (!inFlight && queuedBytes === 0) break;
        }
      } catch (err) {
        flushError = err;
      } finally {
        clearTimeout(timer);
      }
    } else {
      flushError = new WaygateError('WG_AUDIT', `audit log flush failed: ${lastError?.message ?? 'writes are failing'}`, { cause: lastError });
    }
    ended = true;
    if (retryTimer) clearTimeout(retryTimer);
    if (slowTimer) clearTimeout(slowTimer);
    if (boundTimer) clearTimeout(boundTimer);
    retryTimer = slowTimer = boundTimer = null;
    if (flushError) {
      gaveUp = true;
      const lost = queue.slice(queueHead).filter((e) => e.line !== null).length + (inFlight?.entries.length ?? 0);
      droppedRecords += lost;
      log?.error({ err: (flushError as Error).message, droppedRecords: lost }, 'audit log could not be written before exit; records dropped');
    }
    queue = [];
    queueHead = 0;
    queuedBytes = 0;
    // Whoever still waits is refused (the gateway is going away anyway).
    for (let i = waiterHead; i < waiters.length; i++) {
      const w = waiters[i]!;
      if (!w.done) {
        w.done = true;
        w.resolve(onFailure === 'allow' ? 'bypassed' : w.inFlight ? 'in_flight' : 'withdrawn');
      }
    }
    waiters = [];
    waiterHead = 0;
    // The descriptor is closed even when the flush failed: end() is the last owner of it.
    if (!toStdout) await closeDestination(gaveUp);
    else if (gaveUp) destroyed = true;
    if (flushError) throw flushError;
  };

  return {
    decision: write,
    decisionAhead,
    close: write,
    reload: write,
    flush,
    health,
    onHealthChange: (l) => {
      healthListeners.push(l);
    },
    flushSync: () => {
      if (ended || ending) return;
      try {
        flushSyncGuarded();
      } catch {
        // Exit path: nothing left to report to; the error was already emitted on the stream.
      }
    },
    // Every call shares the one ending: a second end() (a drain racing a failed start-up, or a
    // test's cleanup) waits for the same close instead of touching a closed descriptor.
    end: () => (endPromise ??= end()),
    get lastError() {
      return lastError;
    },
  };
}
