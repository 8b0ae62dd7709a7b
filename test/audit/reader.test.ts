/**
 * The streaming reader: plain and gzip files (by magic bytes), globs, stdin (in-process and
 * through a real pipe into a child), malformed lines and unknown schema versions located by
 * file:line, CRLF, a missing final newline, UTF-8 split across read chunks.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { AuditRecord } from '../../src/audit/record.ts';
import { newReadStats, readAuditRecords, resolveSources, type ReadStats } from '../../src/audit/review/reader.ts';
import { WaygateError } from '../../src/errors.ts';
import { generateAuditLog, type GroundTruth } from '../helpers/audit-log.ts';
import { sampleRecord } from '../helpers/audit-samples.ts';
import { TS_LOADER } from '../helpers/ts-loader.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '../..');

async function readAll(paths: string[], stdin?: NodeJS.ReadableStream & { isTTY?: boolean }): Promise<{ records: AuditRecord[]; stats: ReadStats }> {
  const opts = { stdin, progress: null };
  const stats = newReadStats();
  const records: AuditRecord[] = [];
  for await (const r of readAuditRecords(await resolveSources(paths, opts), stats, opts)) records.push(r);
  return { records, stats };
}

function stdinOf(data: Buffer | string, chunkSize = 0): NodeJS.ReadableStream & { isTTY: boolean } {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  const chunks: Buffer[] = [];
  if (chunkSize > 0) for (let i = 0; i < buf.length; i += chunkSize) chunks.push(buf.subarray(i, i + chunkSize));
  else chunks.push(buf);
  return Object.assign(Readable.from(chunks), { isTTY: false });
}

describe('audit reader', () => {
  let dir: string;
  let log: { text: string; truth: GroundTruth };
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-audit-reader-'));
    log = generateAuditLog({ decisions: 3000, seed: 7 });
    await mkdir(path.join(dir, 'logs', 'a'), { recursive: true });
    await mkdir(path.join(dir, 'logs', 'b', 'deep'), { recursive: true });
    await writeFile(path.join(dir, 'plain.jsonl'), log.text);
    // The name says nothing: gzip is recognised by its magic bytes.
    await writeFile(path.join(dir, 'compressed.log'), gzipSync(log.text));
    await writeFile(path.join(dir, 'logs', 'a', 'audit-1.jsonl'), JSON.stringify(sampleRecord(0)) + '\n');
    await writeFile(path.join(dir, 'logs', 'b', 'audit-2.jsonl'), JSON.stringify(sampleRecord(1)) + '\n');
    await writeFile(path.join(dir, 'logs', 'b', 'deep', 'audit-3.jsonl.gz'), gzipSync(JSON.stringify(sampleRecord(3)) + '\n'));
    await writeFile(path.join(dir, 'logs', 'b', 'notes.txt'), 'not a log\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a plain file: every record, malformed and unknown-schema lines located by line number', async () => {
    const { records, stats } = await readAll([path.join(dir, 'plain.jsonl')]);
    const t = log.truth;
    assert.equal(records.length, t.decisions + t.closes + t.reloads);
    assert.equal(stats.records, records.length);
    assert.equal(stats.lines, t.lines);
    assert.equal(stats.malformed, t.malformedLines.length);
    assert.equal(stats.unknownSchema, t.unknownSchemaLines.length);
    assert.deepEqual(stats.issues.filter((i) => i.kind === 'malformed').map((i) => i.line), t.malformedLines);
    assert.deepEqual(stats.issues.filter((i) => i.kind === 'unknown_schema').map((i) => i.line), t.unknownSchemaLines);
    assert.ok(stats.issues.every((i) => i.file === path.join(dir, 'plain.jsonl')));
  });

  it('reads gzip (by magic bytes) to the same records as the plain file', async () => {
    const plain = await readAll([path.join(dir, 'plain.jsonl')]);
    const gz = await readAll([path.join(dir, 'compressed.log')]);
    assert.deepEqual(gz.records, plain.records);
    assert.deepEqual(gz.stats.issues.map((i) => i.line), plain.stats.issues.map((i) => i.line));
  });

  it('expands globs (*, **, sorted) and keeps shell-expanded paths as given', async () => {
    const sources = await resolveSources([path.join(dir, 'logs', '**', 'audit-*')]);
    assert.deepEqual(
      sources.map((s) => path.relative(dir, s.name)),
      ['logs/a/audit-1.jsonl', 'logs/b/audit-2.jsonl', 'logs/b/deep/audit-3.jsonl.gz'],
    );
    const { records } = await readAll([path.join(dir, 'logs', '*', 'audit-?.jsonl')]);
    assert.deepEqual(records, [sampleRecord(0), sampleRecord(1)].map((r) => JSON.parse(JSON.stringify(r))));
  });

  it('a missing file or an empty glob is a usage error before anything is read', async () => {
    for (const p of [path.join(dir, 'nope.jsonl'), path.join(dir, 'logs', '*.zip')]) {
      await assert.rejects(resolveSources([p]), (e: unknown) => e instanceof WaygateError && e.code === 'WG_USAGE');
    }
    await assert.rejects(
      resolveSources([], { stdin: Object.assign(Readable.from([]), { isTTY: true }) }),
      (e: unknown) => e instanceof WaygateError && /pipe a log on stdin/.test(e.message),
    );
  });

  it('reads stdin when no path is given and for "-", plain or gzip, in tiny chunks', async () => {
    const plain = await readAll([path.join(dir, 'plain.jsonl')]);
    const viaStdin = await readAll([], stdinOf(log.text, 997));
    assert.deepEqual(viaStdin.records, plain.records);
    assert.equal(viaStdin.stats.issues[0]!.file, '<stdin>');
    const gz = await readAll(['-'], stdinOf(gzipSync(log.text), 4096));
    assert.deepEqual(gz.records, plain.records);
  });

  it('handles CRLF, blank lines, a missing final newline and UTF-8 split across chunks', async () => {
    const rec = { ...sampleRecord(0), source: { ...(sampleRecord(0) as { source: object }).source, principal: 'spiffe://cluster.local/ns/prod/sa/caf\u00e9-\u{1F600}' } };
    const line = JSON.stringify(rec);
    const text = `${line}\r\n\r\n\n${line}\r\n${line}`;
    for (const chunk of [1, 2, 3, 7, 1 << 20]) {
      const { records, stats } = await readAll(['-'], stdinOf(text, chunk));
      assert.equal(records.length, 3, `chunk ${chunk}`);
      assert.deepEqual(records[2], rec);
      assert.equal(stats.malformed, 0);
      assert.equal(stats.lines, 3);
    }
  });

  it('classifies bad lines without stopping: arrays, non-audit JSON, unknown events, missing fields', async () => {
    const good = JSON.stringify(sampleRecord(0));
    const lines = [
      '[1,2]',
      '{"level":30,"msg":"operational"}',
      '{"schema":1,"event":"teleport","time":"x"}',
      '{"schema":1,"event":"decision","time":"2026-11-26T08:00:00Z"}',
      '{"schema":"v9","event":"decision"}',
      good,
    ];
    const { records, stats } = await readAll(['-'], stdinOf(lines.join('\n') + '\n'));
    assert.equal(records.length, 1);
    assert.equal(stats.malformed, 3);
    assert.equal(stats.unknownSchema, 1);
    // The gateway's own operational log line (kubectl logs mixes it in) is counted, not an issue.
    assert.equal(stats.opsLog, 1);
    assert.deepEqual(stats.issues.map((i) => [i.line, i.kind]), [
      [1, 'malformed'], [3, 'malformed'], [4, 'malformed'], [5, 'unknown_schema'],
    ]);
  });

  it('a final partial line (a write cut short by a crash) is skipped and counted as partial, not malformed; a whole last record without its newline is kept', async () => {
    const whole = [0, 1, 2].map((i) => JSON.stringify(sampleRecord(i)) + '\n').join('');
    const torn = JSON.stringify(sampleRecord(3)).slice(0, 100);
    const f = path.join(dir, 'torn.jsonl');
    await writeFile(f, whole + torn);
    const cut = await readAll([f]);
    assert.equal(cut.records.length, 3);
    assert.equal(cut.stats.partial, 1);
    assert.equal(cut.stats.malformed, 0);
    assert.deepEqual(cut.stats.issues, []);
    assert.equal(cut.stats.lines, 3);
    const g = path.join(dir, 'no-final-newline.jsonl');
    await writeFile(g, whole + JSON.stringify(sampleRecord(3)));
    const kept = await readAll([g]);
    assert.equal(kept.records.length, 4);
    assert.equal(kept.stats.partial ?? 0, 0);
  });

  it('a truncated gzip file keeps what was read, reports where it stopped, and the scan goes on', async () => {
    const gz = gzipSync(log.text);
    const cut = path.join(dir, 'cut.jsonl.gz');
    await writeFile(cut, gz.subarray(0, Math.floor(gz.length / 2)));
    const { records, stats } = await readAll([cut, path.join(dir, 'logs', 'a', 'audit-1.jsonl')]);
    const last = stats.issues.at(-1)!;
    assert.equal(last.file, cut);
    assert.match(last.detail, /read error, rest of the input skipped: unexpected end of file/);
    assert.ok(records.length > 1000, 'records before the cut are kept');
    assert.deepEqual(records.at(-1), JSON.parse(JSON.stringify(sampleRecord(0))), 'the next input is still read');
    assert.equal(stats.files, 2);
  });

  it('works through a real pipe: `cat log | waygate audit summary --format json`', async () => {
    const child = spawn(process.execPath, [...TS_LOADER, 'test/helpers/audit-cli.ts', 'audit', 'summary', '--format', 'json'], {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.end(gzipSync(log.text));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, Buffer.concat(err).toString());
    const s = JSON.parse(Buffer.concat(out).toString()) as { decisions: { total: number }; input: { malformed: number } };
    assert.equal(s.decisions.total, log.truth.decisions);
    assert.equal(s.input.malformed, log.truth.malformedLines.length);
  });
});
