/**
 * Graceful drain of a real `waygate serve` process (docs/design.md §5 "Shutdown"):
 * SIGTERM -> not ready -> GOAWAY -> tunnels in flight finish within the deadline, the rest are
 * reset with `draining` close records -> the audit log is flushed -> exit 0.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants as h2c } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { AuditRecord, CloseRecord, DecisionRecord } from '../../src/audit/record.ts';
import { closed, startUpstream, type Upstream } from '../hbone/fixture.ts';
import { allowPolicy, connectAs, spawnServe, spiffeId, writeServeConfig } from './fixture.ts';

let upstream: Upstream;
const dirs: string[] = [];
before(async () => {
  upstream = await startUpstream('echo');
});
after(async () => {
  await upstream.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'waygate-drain-'));
  dirs.push(d);
  return d;
}

test('SIGTERM with tunnels in flight: one completes, one is reset at the deadline, audit flushed, exit 0', async () => {
  const dir = tmp();
  const cfg = writeServeConfig(dir, { 'allow.yaml': allowPolicy('clients', 'client') }, '  timeouts: { drainTimeoutMs: 1500 }');
  const serve = spawnServe(['--config', cfg.configFile]);
  try {
    const listening = await serve.waitForLine((l) => l['msg'] === 'listening');
    const hbone = listening['hbone'] as string;
    const session = await connectAs(hbone, 'client');
    const a = await session.openTunnel(`127.0.0.1:${upstream.port}`);
    const b = await session.openTunnel(`127.0.0.1:${upstream.port}`);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    a.stream.write('before ');
    await once(a.stream, 'data');

    serve.child.kill('SIGTERM');
    await serve.waitForLine((l) => l['msg'] === 'draining');
    const ready = await fetch(`http://${listening['ready'] as string}/healthz/ready`);
    assert.equal(ready.status, 503);
    assert.match(await ready.text(), /draining/);

    // A: its bytes still flow during the drain, then it finishes on its own.
    a.stream.write('after');
    await once(a.stream, 'data');
    const aClosed = closed(a.stream);
    a.stream.end();
    a.stream.resume();
    await aClosed;
    // B: idle past the deadline, reset by the gateway.
    b.stream.resume();
    await closed(b.stream);
    assert.equal(b.stream.rstCode, h2c.NGHTTP2_CANCEL);
    assert.equal(await serve.exited, 0);
    session.destroy();

    const records = readFileSync(cfg.auditFile, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as AuditRecord);
    const decisions = records.filter((r): r is DecisionRecord => r.event === 'decision');
    const closes = records.filter((r): r is CloseRecord => r.event === 'close');
    assert.equal(records[0]!.event, 'reload');
    assert.equal(decisions.length, 2);
    for (const d of decisions) assert.equal(d.source.principal, spiffeId('client'));
    const byDecision = new Map(closes.map((c) => [c.decisionId, c]));
    const closeA = byDecision.get(decisions.find((d) => d.streamId === a.stream.id)!.decisionId)!;
    const closeB = byDecision.get(decisions.find((d) => d.streamId === b.stream.id)!.decisionId)!;
    assert.equal(closeA.closeReason, 'completed');
    assert.equal(closeA.bytesReceived, 'before after'.length);
    assert.equal(closeB.closeReason, 'draining');
    const drained = serve.lines.find((l) => l['msg'] === 'drained; flushing the audit log');
    assert.equal(drained?.['reset'], 1);
  } finally {
    serve.child.kill('SIGKILL');
  }
});

test('a second signal during the drain exits at once', async () => {
  const dir = tmp();
  const cfg = writeServeConfig(dir, { 'allow.yaml': allowPolicy('clients', 'client') }, '  timeouts: { drainTimeoutMs: 60000 }');
  const serve = spawnServe(['--config', cfg.configFile]);
  try {
    const listening = await serve.waitForLine((l) => l['msg'] === 'listening');
    const session = await connectAs(listening['hbone'] as string, 'client');
    const held = await session.openTunnel(`127.0.0.1:${upstream.port}`);
    assert.equal(held.status, 200);
    serve.child.kill('SIGTERM');
    await serve.waitForLine((l) => l['msg'] === 'draining');
    serve.child.kill('SIGTERM');
    assert.equal(await serve.exited, 1);
    assert.ok(serve.lines.some((l) => l['msg'] === 'second signal during drain: exiting now'));
    session.destroy();
  } finally {
    serve.child.kill('SIGKILL');
  }
});

test('SIGHUP reloads the policies; POST /quitquitquit drains and exits 0', async () => {
  const dir = tmp();
  const cfg = writeServeConfig(dir, { 'allow.yaml': allowPolicy('clients', 'client') });
  const serve = spawnServe(['--config', cfg.configFile, '--no-watch']);
  try {
    const listening = await serve.waitForLine((l) => l['msg'] === 'listening');
    writeFileSync(join(cfg.policyDir, 'allow.yaml'), allowPolicy('clients', 'client', 'other'));
    serve.child.kill('SIGHUP');
    const applied = await serve.waitForLine((l) => l['msg'] === 'policy snapshot applied' && l['trigger'] === 'signal');
    assert.equal(applied['rules'], 2);
    const res = await fetch(`http://${listening['admin'] as string}/quitquitquit`, { method: 'POST' });
    assert.equal(await res.text(), 'draining\n');
    assert.equal(await serve.exited, 0);
    const reloads = readFileSync(cfg.auditFile, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as AuditRecord).filter((r) => r.event === 'reload');
    assert.deepEqual(reloads.map((r) => (r.event === 'reload' ? [r.trigger, r.result] : [])), [['startup', 'applied'], ['signal', 'applied']]);
  } finally {
    serve.child.kill('SIGKILL');
  }
});
