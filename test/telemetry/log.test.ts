/**
 * The operational log (src/telemetry/log.ts): JSON unless a person is at a terminal, and the
 * rate limiter that bounds the lines a peer can cause.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { createOpsLogger, LogRateLimiter, opsLogFormatFor } from '../../src/telemetry/log.ts';

describe('operational log format', () => {
  test('pretty on a terminal, JSON on anything else', () => {
    assert.equal(opsLogFormatFor({ isTTY: true }), 'pretty');
    assert.equal(opsLogFormatFor({ isTTY: false }), 'json');
    assert.equal(opsLogFormatFor({}), 'json');
  });

  test('pretty: one line per event, time, level and message first, fields after', () => {
    const out: string[] = [];
    const destination = new Writable({ write: (chunk: Buffer, _enc, done) => { out.push(chunk.toString()); done(); } });
    const log = createOpsLogger({ level: 'info', format: 'pretty', destination });
    log.warn({ peer: '127.0.0.1:4000', reason: 'untrusted' }, 'TLS handshake failed');
    const text = out.join('');
    assert.equal(text.trimEnd().split('\n').length, 1, text);
    // pino-pretty colours only when the terminal supports it; compare without escape codes.
    const plain = text.replace(/\u001b\[[0-9;]*m/g, '');
    assert.match(plain, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: TLS handshake failed \{"peer":"127\.0\.0\.1:4000","reason":"untrusted"\}\n$/);
  });

  test('JSON when given a stream and no format (what tests and pipes get)', () => {
    const out: string[] = [];
    createOpsLogger({ level: 'info', destination: { write: (s: string) => void out.push(s) } }).info({ a: 1 }, 'hello');
    const line = JSON.parse(out.join('')) as Record<string, unknown>;
    assert.equal(line['msg'], 'hello');
    assert.equal(line['level'], 'info');
    assert.equal(line['a'], 1);
  });
});

describe('LogRateLimiter', () => {
  test('at most the budget per window; the next line logged carries how many were dropped', () => {
    let now = 0;
    const limiter = new LogRateLimiter({ lines: 3, windowMs: 1000 }, () => now);
    assert.equal(limiter.rate, '3 per 1 s');
    assert.deepEqual(limiter.take(), { log: true, suppressed: 0, last: false });
    assert.deepEqual(limiter.take(), { log: true, suppressed: 0, last: false });
    assert.deepEqual(limiter.take(), { log: true, suppressed: 0, last: true });
    now = 999;
    assert.deepEqual(limiter.take(), { log: false });
    assert.deepEqual(limiter.take(), { log: false });
    now = 1000;
    assert.deepEqual(limiter.take(), { log: true, suppressed: 2, last: false });
    assert.deepEqual(limiter.take(), { log: true, suppressed: 0, last: false });
  });

  test('a quiet spell starts a new window at the next line', () => {
    let now = 0;
    const limiter = new LogRateLimiter({ lines: 1, windowMs: 1000 }, () => now);
    assert.equal(limiter.take().log, true);
    now = 5_000;
    assert.equal(limiter.take().log, true);
    now = 5_999;
    assert.equal(limiter.take().log, false);
  });
});
