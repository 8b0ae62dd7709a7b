/**
 * The audit logger's end()/flush()/flushSync() at every point of its life: right after creation
 * (a start-up that fails at once ends the logger a few microseconds after creating it), twice, and
 * after the destination failed a write. Regression tests: an end() before SonicBoom
 * had opened the file crashed the process with a TypeError from inside sonic-boom (mergeBuf),
 * hiding the start-up error; a flushSync() before the open wrote nothing; a flushSync() (or a
 * process exit) after a failed write retried it forever.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createAuditLogger, type AuditLogger } from '../../src/audit/logger.ts';
import type { AuditRecord } from '../../src/audit/record.ts';
import { sampleRecord } from '../helpers/audit-samples.ts';
import { TS_LOADER } from '../helpers/ts-loader.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '../..');

function write(sink: AuditLogger, r: AuditRecord): void {
  if (r.event === 'decision') sink.decision(r);
  else if (r.event === 'close') sink.close(r);
  else sink.reload(r);
}

/** The file holds exactly records 0..count-1, one JSON line each, nothing else. */
function assertRecords(file: string, count: number): void {
  const expected = Array.from({ length: count }, (_, i) => JSON.stringify(sampleRecord(i)) + '\n').join('');
  assert.equal(readFileSync(file, 'utf8'), expected);
}

describe('audit logger lifecycle', () => {
  let dir: string;
  let n = 0;
  const file = (): string => path.join(dir, `audit-${++n}.jsonl`);
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-audit-lifecycle-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('end() right after creation, nothing written: resolves, leaves an empty file; a second end() resolves too', async () => {
    const f = file();
    const sink = createAuditLogger({ destination: f });
    await sink.end();
    assert.equal(readFileSync(f, 'utf8'), '');
    await sink.end();
    assert.equal(sink.lastError, null);
  });

  it('flush() right after creation, nothing written, resolves', async () => {
    const f = file();
    const sink = createAuditLogger({ destination: f });
    await sink.flush();
    assert.equal(readFileSync(f, 'utf8'), '');
    await sink.end();
  });

  it('flushSync() right after creation writes every record written so far; end() adds nothing twice', async () => {
    const f = file();
    const sink = createAuditLogger({ destination: f });
    // Fewer bytes than the logger's 16 KiB batch, so no asynchronous write has started: the file
    // holds exactly what flushSync() wrote. (With one in flight, SonicBoom's flushSync writes the
    // rest before it and the lines land out of order: its contract, not this test's.)
    const count = 10;
    assert.ok(Array.from({ length: count }, (_, i) => JSON.stringify(sampleRecord(i)).length + 1).reduce((a, b) => a + b) < 16 * 1024);
    for (let i = 0; i < count; i++) write(sink, sampleRecord(i));
    sink.flushSync();
    // Read before the event loop turns: what an exit path leaves behind.
    assertRecords(f, count);
    await sink.end();
    assertRecords(f, count);
    // After end(): both flushes are no-ops, neither throws.
    sink.flushSync();
    await sink.flush();
    assertRecords(f, count);
  });

  it('end() right after creation with records buffered writes them all', async () => {
    const f = file();
    const sink = createAuditLogger({ destination: f });
    for (let i = 0; i < 300; i++) write(sink, sampleRecord(i));
    await sink.end();
    assertRecords(f, 300);
  });

  it('two end() calls at once share one close and both resolve', async () => {
    const f = file();
    const sink = createAuditLogger({ destination: f });
    write(sink, sampleRecord(0));
    const a = sink.end();
    const b = sink.end();
    assert.equal(a, b, 'the same promise');
    await Promise.all([a, b]);
    assertRecords(f, 1);
  });

  describe('after a failed write (/dev/full: every write is ENOSPC)', { skip: !existsSync('/dev/full') && 'no /dev/full on this system' }, () => {
    let child: ChildProcess | undefined;
    after(() => {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    // In a child process: the failure this guards against is a flushSync() that never returns (a
    // synchronous loop no in-process timeout can interrupt), and a process.exit() that never exits.
    it('flush() and end() reject with WG_AUDIT, flushSync() returns, and the process still exits', { timeout: 60_000 }, async () => {
      const script = [
        `import { createAuditLogger } from ${JSON.stringify(path.join(ROOT, 'src/audit/logger.ts'))};`,
        `import { sampleRecord } from ${JSON.stringify(path.join(ROOT, 'test/helpers/audit-samples.ts'))};`,
        `const outcome = (p) => p.then(() => 'resolved', (e) => e.code + ': ' + e.message);`,
        `const r = {};`,
        `const sink = createAuditLogger({ destination: '/dev/full' });`,
        `sink.decision(sampleRecord(0));`,
        `r.flush = await outcome(sink.flush());`,
        `r.lastError = sink.lastError?.message ?? null;`,
        `sink.decision(sampleRecord(1));`,
        `sink.flushSync();`,
        `r.flushSync = 'returned';`,
        `const [a, b] = [sink.end(), sink.end()];`,
        `r.end = [await outcome(a), await outcome(b)];`,
        `sink.flushSync();`,
        // Never ended, with a record buffered after a failed write: pino flushes it at exit.
        `const open = createAuditLogger({ destination: '/dev/full' });`,
        `open.decision(sampleRecord(2));`,
        `await open.flush().catch(() => undefined);`,
        `open.decision(sampleRecord(3));`,
        `open.flushSync();`,
        `process.stdout.write(JSON.stringify(r));`,
        `process.exit(7);`,
      ].join('\n');
      child = spawn(process.execPath, [...TS_LOADER, '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
      child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
      const code = await new Promise<number | null>((resolve) => child!.once('close', (c) => resolve(c)));
      assert.equal(code, 7, err);
      const r = JSON.parse(out) as { flush: string; lastError: string | null; flushSync: string; end: string[] };
      assert.match(r.flush, /^WG_AUDIT: .*ENOSPC/);
      assert.match(r.lastError ?? '', /ENOSPC/);
      assert.equal(r.flushSync, 'returned');
      assert.equal(r.end.length, 2);
      for (const e of r.end) assert.match(e, /^WG_AUDIT: /);
    });
  });
});
