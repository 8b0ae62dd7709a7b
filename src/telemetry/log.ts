/**
 * The operational log: what an operator reads when something is off (startup, reloads, rotation,
 * drain, errors). Separate from the audit log, which is a data product with its own destination.
 * JSON lines on stderr, written synchronously: volume is low (nothing per tunnel at `info`) and a
 * crash must not lose the line that explains it (pino's docs: asynchronous
 * destinations lose lines on a crash unless flushed).
 */
import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config/schema.ts';

export type OpsLogger = Logger;

export interface OpsLogOptions {
  level?: LogLevel;
  /** Defaults to stderr (fd 2); tests pass a stream. */
  destination?: pino.DestinationStream;
  /** Static fields on every line, e.g. `{ worker: 2 }`. */
  base?: Record<string, unknown>;
}

/** Creates the operational logger. Its level can be changed at runtime (`POST /logging?level=`). */
export function createOpsLogger(opts: OpsLogOptions = {}): OpsLogger {
  const destination = opts.destination ?? pino.destination({ dest: 2, sync: true });
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
