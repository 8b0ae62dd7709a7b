/**
 * The operational log: what an operator reads when something is off (startup, reloads, rotation,
 * drain, errors). Separate from the audit log, which is a data product with its own destination.
 * On stderr, written synchronously: volume is low (nothing per tunnel at `info`) and a crash must
 * not lose the line that explains it (pino's docs: asynchronous destinations lose lines on a
 * crash unless flushed). JSON lines, for a log pipeline; on a terminal, one human-readable line
 * per event (pino-pretty, as a synchronous stream, not a worker-thread transport, for the same
 * reason). docs/operating.md, "Logs".
 */
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import type { LogLevel } from '../config/schema.ts';

// pino-pretty (a dozen modules, ~60 ms of CPU to load) is loaded only when a log goes to a
// terminal: every other process (a pipe, a container, each CLI run from a script) never uses it.
const require = createRequire(import.meta.url);

export type OpsLogger = Logger;

/** `json`: one JSON object per line. `pretty`: `[12:00:00.000] INFO: message {fields}`. */
export type OpsLogFormat = 'json' | 'pretty';

export interface OpsLogOptions {
  level?: LogLevel;
  /** Defaults to stderr (fd 2); tests pass a stream. */
  destination?: pino.DestinationStream;
  /** Default: `pretty` when the log goes to stderr and stderr is a terminal, else `json`. */
  format?: OpsLogFormat;
  /** Static fields on every line, e.g. `{ worker: 2 }`. */
  base?: Record<string, unknown>;
}

/** `pretty` for a person at a terminal, `json` for everything else (a pipe, a file, a container log). */
export function opsLogFormatFor(stream: { isTTY?: boolean }): OpsLogFormat {
  return stream.isTTY === true ? 'pretty' : 'json';
}

/** Creates the operational logger. Its level can be changed at runtime (`POST /logging?level=`). */
export function createOpsLogger(opts: OpsLogOptions = {}): OpsLogger {
  const format = opts.format ?? (opts.destination ? 'json' : opsLogFormatFor(process.stderr));
  const destination = format === 'pretty'
    ? (require('pino-pretty') as typeof PinoPretty)({
      destination: opts.destination ?? 2,
      sync: true,
      singleLine: true,
      translateTime: 'SYS:HH:MM:ss.l',
      // The process name and pid are the same on every line of one terminal.
      ignore: 'name,pid,hostname',
    })
    : opts.destination ?? pino.destination({ dest: 2, sync: true });
  return pino(
    {
      level: opts.level ?? 'info',
      base: { name: 'waygate', pid: process.pid, ...opts.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/** Sets the level of a running logger; returns the previous one. */
export function setLogLevel(log: OpsLogger, level: LogLevel): LogLevel {
  const previous = log.level as LogLevel;
  log.level = level;
  return previous;
}

/** A log budget: at most `lines` lines per `windowMs`. */
export interface LogBudget {
  lines: number;
  windowMs: number;
}

/** What {@link LogRateLimiter.take} allows: the line, and how many were dropped before it. */
export type LogAllowance =
  | { log: true; /** Lines dropped since the last one logged. */ suppressed: number; /** This is the window's last line. */ last: boolean }
  | { log: false };

/**
 * Bounds a log line a peer can cause (a failed TLS handshake): a client retrying in a loop must
 * not flood the operational log, while the first failures, the ones a person is looking for,
 * are always there. Fixed windows, no timer: the first line after a quiet spell starts a window.
 * Lines over the budget are counted, never logged; the next line logged carries the count.
 * Metrics count every event regardless.
 */
export class LogRateLimiter {
  readonly budget: LogBudget;
  readonly #now: () => number;
  #windowStart = -Infinity;
  #used = 0;
  #suppressed = 0;

  constructor(budget: LogBudget, now: () => number = () => performance.now()) {
    this.budget = budget;
    this.#now = now;
  }

  /** The rate in words, for the log line and docs: `10 per 60 s`. */
  get rate(): string {
    return `${this.budget.lines} per ${this.budget.windowMs / 1000} s`;
  }

  take(): LogAllowance {
    const now = this.#now();
    if (now - this.#windowStart >= this.budget.windowMs) {
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used >= this.budget.lines) {
      this.#suppressed++;
      return { log: false };
    }
    this.#used++;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    return { log: true, suppressed, last: this.#used === this.budget.lines };
  }
}
