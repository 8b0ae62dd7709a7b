/**
 * Workers mode (docs/operating.md "Workers"): `waygate serve --workers 2` serves on both workers, every worker
 * reloads on the same change, `/metrics` is aggregated, and the audit log stays one valid
 * JSON-lines stream written by the primary.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { AuditRecord, ReloadRecord } from '../../src/audit/record.ts';
import type { HboneClientSession } from '../../src/hbone/client.ts';
import { startUpstream, type Upstream } from '../hbone/fixture.ts';
import { allowPolicy, connectAs, spawnServe, writeServeConfig } from './fixture.ts';

let upstream: Upstream;
let dir: string;
before(async () => {
  upstream = await startUpstream('echo');
  dir = mkdtempSync(join(tmpdir(), 'waygate-workers-'));
});
after(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

test('two workers share the listener, reload together, and report through the primary', async () => {
  const cfg = writeServeConfig(dir, { 'allow.yaml': allowPolicy('clients', 'keep', 'drop') });
  const serve = spawnServe(['--config', cfg.configFile, '--workers', '2']);
  const sessions: HboneClientSession[] = [];
  try {
    const listening = await serve.waitForLine((l) => l['msg'] === 'listening' && l['workers'] === 2);
    const hbone = listening['hbone'] as string;
    const admin = `http://${listening['admin'] as string}`;
    assert.equal((await fetch(`http://${listening['ready'] as string}/healthz/ready`)).status, 200);

    // Four connections, one tunnel each: the primary hands connections to the workers in turn.
    const authority = `127.0.0.1:${upstream.port}`;
    for (const sa of ['keep', 'drop', 'drop', 'keep']) {
      const s = await connectAs(hbone, sa);
      sessions.push(s);
      const t = await s.openTunnel(authority);
      assert.equal(t.status, 200);
    }
    const conns = (await (await fetch(`${admin}/debug/connections`)).json()) as { tunnels: { worker: number }[] };
    assert.equal(conns.tunnels.length, 4);
    assert.equal(new Set(conns.tunnels.map((t) => t.worker)).size, 2, 'both workers serve');

    // A file change: the primary's watcher makes every worker reload, with the same version.
    const workerIds = [...new Set(conns.tunnels.map((t) => t.worker))];
    const applied = (worker: number) => (l: Record<string, unknown>) =>
      l['msg'] === 'policy snapshot applied' && l['trigger'] === 'watch' && l['worker'] === worker;
    writeFileSync(join(cfg.policyDir, 'allow.yaml'), allowPolicy('clients', 'keep'));
    const perWorker = await Promise.all(workerIds.map((w) => serve.waitForLine(applied(w))));
    assert.deepEqual(perWorker[0]!['snapshot'], perWorker[1]!['snapshot']);
    const snapshot = perWorker[0]!['snapshot'] as { version: number; hash: string };
    assert.equal(perWorker.reduce((n, l) => n + (l['closedTunnels'] as number), 0), 2, 'both drop tunnels closed, wherever they were');
    const policy = (await (await fetch(`${admin}/debug/policy`)).json()) as { workers: { worker: number; version: number; hash: string }[] };
    assert.equal(policy.workers.length, 2);
    for (const w of policy.workers) assert.deepEqual([w.version, w.hash], [snapshot.version, snapshot.hash]);

    // An admin reload asks every worker and answers with one merged record.
    const reload = (await (await fetch(`${admin}/debug/reload`, { method: 'POST' })).json()) as ReloadRecord;
    assert.deepEqual([reload.trigger, reload.result, reload.snapshot], ['admin', 'unchanged', snapshot]);

    // Metrics are aggregated across workers.
    const metrics = await (await fetch(`http://${listening['metrics'] as string}/metrics`)).text();
    assert.match(metrics, /^waygate_connect_decisions_total\{decision="allow",reason="allowed"\} 4$/m);
    assert.match(metrics, /^waygate_policy_reloads_total\{result="applied",trigger="watch"\} 1$/m);
    assert.match(metrics, /^waygate_policy_reloads_total\{result="unchanged",trigger="admin"\} 1$/m);
    assert.match(metrics, /^waygate_policy_recheck_closed_tunnels_total 2$/m);
    assert.match(metrics, /^waygate_workers 2$/m);

    for (const s of sessions) s.destroy();
    serve.child.kill('SIGTERM');
    assert.equal(await serve.exited, 0);

    const lines = readFileSync(cfg.auditFile, 'utf8').trimEnd().split('\n');
    const records = lines.map((l) => JSON.parse(l) as AuditRecord);
    const reloads = records.filter((r): r is ReloadRecord => r.event === 'reload');
    assert.deepEqual(reloads.map((r) => [r.trigger, r.result, r.closedTunnels]), [['startup', 'applied', 0], ['watch', 'applied', 2], ['admin', 'unchanged', undefined]]);
    assert.equal(records.filter((r) => r.event === 'decision').length, 4);
    assert.equal(records.filter((r) => r.event === 'close').length, 4);
  } finally {
    for (const s of sessions) s.destroy();
    serve.child.kill('SIGKILL');
  }
});
