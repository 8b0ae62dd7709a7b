/**
 * The audit writer's write-ahead decisions (src/audit/logger.ts, docs/operating.md "Audit log
 * guarantees"), in process, on destinations that misbehave on cue: a FIFO nobody reads (a write
 * that does not return: `slow`, then the bound), and /dev/full (a write that fails: `failed`).
 * Every wait is for an event: a promise that settles, a health change.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createAuditLogger, type AuditLogger } from '../../src/audit/logger.ts';
import type { DecisionRecord } from '../../src/audit/record.ts';
import type { AuditHealth } from '../../src/audit/sink.ts';
import { sampleRecord } from '../helpers/audit-samples.ts';

function decision(id: string, pad = 0): DecisionRecord {
  const r = sampleRecord(0) as DecisionRecord;
  return { ...r, event: 'decision', decisionId: id, detail: pad > 0 ? 'x'.repeat(pad) : undefined } as DecisionRecord;
}

function healthWhere(sink: AuditLogger, pred: (h: AuditHealth) => boolean): Promise<AuditHealth> {
  if (pred(sink.health())) return Promise.resolve(sink.health());
  return new Promise((resolve) => sink.onHealthChange((h) => pred(h) && resolve(h)));
}

describe('audit write-ahead', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-write-ahead-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a record resolves "written" once its write returned, and is in the file then', async () => {
    const f = path.join(dir, 'ok.jsonl');
    const sink = createAuditLogger({ destination: f, sync: 'batch' });
    const results = await Promise.all([0, 1, 2].map((i) => sink.decisionAhead(decision(`ok-${i}`))));
    assert.deepEqual(results, ['written', 'written', 'written']);
    const ids = readFileSync(f, 'utf8').trimEnd().split('\n').map((l) => (JSON.parse(l) as DecisionRecord).decisionId);
    assert.deepEqual(ids, ['ok-0', 'ok-1', 'ok-2']);
    await sink.end();
  });

  it('a file a crash left mid-line: the next start ends that line first, so its own records are lines of their own', async () => {
    const f = path.join(dir, 'torn.jsonl');
    const torn = JSON.stringify(decision('torn')).slice(0, 80);
    writeFileSync(f, JSON.stringify(decision('whole')) + '\n' + torn);
    const sink = createAuditLogger({ destination: f });
    assert.equal(await sink.decisionAhead(decision('next')), 'written');
    await sink.end();
    const lines = readFileSync(f, 'utf8').split('\n');
    assert.deepEqual(lines, [JSON.stringify(decision('whole')), torn, JSON.stringify(decision('next')), '']);
  });

  it('group commit: the records of one event-loop turn go out in one write; audit.sync always writes one per record', async () => {
    const f = path.join(dir, 'group.jsonl');
    const sink = createAuditLogger({ destination: f });
    const before = sink.health().writes;
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => sink.decisionAhead(decision(`g-${i}`))));
    assert.ok(results.every((r) => r === 'written'));
    assert.equal(sink.health().writes - before, 1);
    await sink.end();
    const always = createAuditLogger({ destination: path.join(dir, 'always.jsonl'), sync: 'always' });
    await Promise.all([0, 1, 2].map((i) => always.decisionAhead(decision(`a-${i}`))));
    assert.equal(always.health().writes, 3);
    await always.end();
  });

  it('a write that does not return (a FIFO nobody reads): slow, no write error; a queued record is withdrawn at the bound and never written', { skip: process.platform !== 'linux' && 'FIFO semantics of Linux' }, async () => {
    const fifo = path.join(dir, 'stalled.fifo');
    execFileSync('mkfifo', [fifo]);
    // The default bound (1 s): short enough to wait for, long enough for a loaded machine's writes.
    const sink = createAuditLogger({ destination: fifo, onFailure: 'deny' });
    // More than a pipe holds (64 KiB): this group's write blocks until someone reads.
    for (let i = 0; i < 100; i++) sink.decision(decision(`fill-${i}`, 2000));
    const slow = await healthWhere(sink, (h) => h.state === 'slow');
    assert.equal(slow.writeErrors, 0);
    assert.equal(slow.refusing, false);
    // Queued behind the stalled write: withdrawn at the bound.
    assert.equal(await sink.decisionAhead(decision('withdrawn-1')), 'withdrawn');
    // The reader comes back: the backlog drains, the state recovers by itself.
    const chunks: Buffer[] = [];
    const reader = createReadStream(fifo);
    reader.on('data', (c) => chunks.push(c as Buffer));
    await healthWhere(sink, (h) => h.state === 'ok');
    assert.equal(await sink.decisionAhead(decision('after-1')), 'written');
    await sink.end();
    // The writer closed its end: read to EOF, not just what arrived before end() resolved (under
    // load the last group can still sit in the pipe, and destroying the reader dropped it).
    await finished(reader);
    const text = Buffer.concat(chunks).toString('utf8');
    assert.ok(text.includes('"after-1"'));
    assert.ok(!text.includes('"withdrawn-1"'), 'a withdrawn record is never written');
    assert.equal(text.split('\n').filter((l) => l.includes('"fill-')).length, 100);
  });

  it('onFailure allow: through without waiting ("bypassed") while the write is stalled', { skip: process.platform !== 'linux' && 'FIFO semantics of Linux' }, async () => {
    const fifo = path.join(dir, 'stalled-allow.fifo');
    execFileSync('mkfifo', [fifo]);
    const sink = createAuditLogger({ destination: fifo, writeAheadBoundMs: 50, onFailure: 'allow' });
    for (let i = 0; i < 100; i++) sink.decision(decision(`fill-${i}`, 2000));
    assert.equal(await sink.decisionAhead(decision('bypassed-1')), 'bypassed');
    const reader = createReadStream(fifo);
    const chunks: Buffer[] = [];
    reader.on('data', (c) => chunks.push(c as Buffer));
    await sink.end();
    await finished(reader); // to EOF: see the test above
    // Kept in the queue while there was room: written once the reader came back.
    assert.ok(Buffer.concat(chunks).toString('utf8').includes('"bypassed-1"'));
  });

  it('a write that fails (/dev/full): failed, counted, refusing; every new record is refused at once', { skip: !existsSync('/dev/full') && 'no /dev/full' }, async () => {
    const sink = createAuditLogger({ destination: '/dev/full', onFailure: 'deny' });
    const first = await sink.decisionAhead(decision('first'));
    // Its write failed with the record in flight: refused, though its rest is retried.
    assert.equal(first, 'in_flight');
    const h = sink.health();
    assert.equal(h.state, 'failed');
    assert.equal(h.refusing, true);
    assert.ok(h.writeErrors >= 1);
    assert.match(h.lastError ?? '', /ENOSPC/);
    assert.equal(await sink.decisionAhead(decision('second')), 'withdrawn');
    await assert.rejects(sink.end(), (e: unknown) => (e as { code?: string }).code === 'WG_AUDIT');
  });

  it('a full buffer drops records and counts them (maxBufferBytes)', { skip: process.platform !== 'linux' && 'FIFO semantics of Linux' }, async () => {
    const fifo = path.join(dir, 'full-buffer.fifo');
    execFileSync('mkfifo', [fifo]);
    const sink = createAuditLogger({ destination: fifo, maxBufferBytes: 256 * 1024, onFailure: 'deny' });
    for (let i = 0; i < 100; i++) sink.decision(decision(`fill-${i}`, 2000)); // the group in flight, blocked
    await healthWhere(sink, (h) => h.state === 'slow');
    for (let i = 0; i < 200; i++) sink.decision(decision(`queued-${i}`, 2000)); // ~400 KiB > 256 KiB
    const h = sink.health();
    assert.equal(h.backlogFull, true);
    assert.equal(h.refusing, true);
    assert.ok(h.droppedRecords > 0);
    assert.ok(h.queuedBytes <= 256 * 1024);
    assert.equal(await sink.decisionAhead(decision('refused')), 'withdrawn');
    const reader = createReadStream(fifo);
    reader.resume();
    await healthWhere(sink, (x) => x.state === 'ok' && !x.refusing);
    await sink.end();
    reader.destroy();
  });
});
