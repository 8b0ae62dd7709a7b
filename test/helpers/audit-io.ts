/**
 * Captured stdin/stdout/stderr for running `waygate audit` verbs in-process
 * (`runAuditSummary(paths, flags, captureIo())`).
 */
import { PassThrough, Readable, Writable } from 'node:stream';
import type { AuditIo } from '../../src/cli/audit.ts';

export interface CapturedIo extends AuditIo {
  stdoutText(): string;
  stderrText(): string;
}

/** Streams that collect what is written; stdin is `input` (default: empty, not a TTY). */
export function captureIo(input: string | Buffer = '', opts: { now?: number; stderrIsTTY?: boolean } = {}): CapturedIo {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (into: Buffer[]) =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        into.push(Buffer.from(chunk));
        cb();
      },
    });
  const stderr = Object.assign(sink(err), { isTTY: opts.stderrIsTTY ?? false, columns: 100 });
  const stdin = Object.assign(new PassThrough(), { isTTY: false });
  Readable.from([typeof input === 'string' ? Buffer.from(input) : input]).pipe(stdin);
  return {
    stdout: sink(out),
    stderr,
    stdin,
    ...(opts.now !== undefined ? { now: () => opts.now! } : {}),
    stdoutText: () => Buffer.concat(out).toString('utf8'),
    stderrText: () => Buffer.concat(err).toString('utf8'),
  };
}
