/**
 * The pino-backed audit sink: one line per record, exactly the record's JSON (no pino base fields),
 * lossless once flushed, to a file and to stdout (in a child process that exits right after the
 * flush, the case where an unflushed asynchronous destination loses lines).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createAuditLogger } from '../../src/audit/logger.ts';
import type { AuditRecord } from '../../src/audit/record.ts';
import { WaygateError } from '../../src/errors.ts';
import { sampleRecord } from '../helpers/audit-samples.ts';
import { TS_LOADER } from '../helpers/ts-loader.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.join(HERE, '../..');

function write(sink: ReturnType<typeof createAuditLogger>, r: AuditRecord): void {
  if (r.event === 'decision') sink.decision(r);
  else if (r.event === 'close') sink.close(r);
  else sink.reload(r);
}

function assertLines(text: string, count: number): void {
  assert.ok(text.endsWith('\n'), 'every line ends with a newline');
  const lines = text.slice(0, -1).split('\n');
  assert.equal(lines.length, count);
  lines.forEach((line, i) => {
    const parsed = JSON.parse(line) as Record<string, unknown>;
    // Exactly the record: same keys in the same order, same values; no pid/hostname/level/msg/time.
    assert.deepEqual(parsed, JSON.parse(JSON.stringify(sampleRecord(i))), `line ${i + 1}`);
    assert.deepEqual(Object.keys(parsed), Object.keys(sampleRecord(i)));
  });
}

describe('audit logger', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-audit-logger-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes N records to a file as N JSON lines, all there after flush()', async () => {
    const file = path.join(dir, 'nested', 'audit.jsonl');
    const sink = createAuditLogger({ destination: file });
    const n = 5000;
    for (let i = 0; i < n; i++) write(sink, sampleRecord(i));
    await sink.flush();
    assertLines(await readFile(file, 'utf8'), n);
    // Still usable after a flush; end() flushes and closes.
    write(sink, sampleRecord(n));
    await sink.end();
    assertLines(await readFile(file, 'utf8'), n + 1);
    assert.equal(sink.lastError, null);
  });

  it('non-ASCII values are written as UTF-8, byte-exact (lines are handed to the destination as Buffers)', async () => {
    const file = path.join(dir, 'utf8.jsonl');
    const sink = createAuditLogger({ destination: file });
    const records = [0, 1, 2].map((i) => {
      const r = sampleRecord(i);
      (r as { decisionId: string }).decisionId = `déjà-vu-${i}-名前-🚀`;
      return r;
    });
    for (const r of records) write(sink, r);
    await sink.end();
    const bytes = await readFile(file);
    assert.deepEqual(bytes, Buffer.from(records.map((r) => JSON.stringify(r) + '\n').join(''), 'utf8'));
  });

  it('regression: a lone record on a quiet gateway reaches the file without flush() (group commit: within its event-loop turn)', async () => {
    const file = path.join(dir, 'quiet.jsonl');
    const sink = createAuditLogger({ destination: file });
    // Wait for the file to change (an event, not a sleep): the record is far below the 4 KiB buffer.
    const { watch } = await import('node:fs');
    const changed = new Promise<void>((resolve) => {
      const w = watch(file, () => {
        w.close();
        resolve();
      });
    });
    write(sink, sampleRecord(0));
    await changed;
    assertLines(await readFile(file, 'utf8'), 1);
    await sink.end();
  });

  it('appends to an existing file, with each audit.sync mode', async () => {
    const file = path.join(dir, 'sync.jsonl');
    const modes = ['always', 'batch'] as const;
    for (let round = 0; round < 2; round++) {
      const sink = createAuditLogger({ destination: file, sync: modes[round] });
      for (let i = 0; i < 10; i++) write(sink, sampleRecord(round * 10 + i));
      await sink.end();
    }
    assertLines(await readFile(file, 'utf8'), 20);
  });

  it('an unopenable destination is a WaygateError(WG_AUDIT) at creation, sync or not', async () => {
    const notADir = path.join(dir, 'plain-file');
    await writeFile(notADir, 'x');
    for (const sync of ['none', 'always'] as const) {
      assert.throws(
        () => createAuditLogger({ destination: path.join(notADir, 'audit.jsonl'), sync }),
        (err: unknown) => err instanceof WaygateError && err.code === 'WG_AUDIT' && /plain-file/.test(err.message),
      );
    }
  });

  for (const mode of ['async', 'sync'] as const) {
    it(`stdout mode: a child writing 20,000 records and exiting right after ${mode === 'async' ? 'flush()' : 'flushSync()'} loses none`, async () => {
      const n = 20_000;
      const child = spawn(process.execPath, [...TS_LOADER, path.join(ROOT, 'test/helpers/audit-logger-child.ts'), String(n), mode], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => err.push(c));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      assert.equal(code, 0, Buffer.concat(err).toString());
      assertLines(Buffer.concat(out).toString('utf8'), n);
    });
  }
});
