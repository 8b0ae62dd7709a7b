/**
 * The Kubernetes discovery provider (src/discovery/kubernetes/provider.ts) against the fake API
 * server: the first snapshot only after every list of every namespace (a forbidden list holds it
 * back), then the snapshot after each change of each kind, `unchanged` for changes the mapping
 * ignores, a burst coalesced, the API server going away (the last snapshot serves, metrics and a
 * log line say so) and coming back (recovery logged, changes made meanwhile picked up), and 403
 * reported with the RBAC it needs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { kubernetesProvider, type KubernetesProvider, type KubernetesProviderOptions } from '../../src/discovery/kubernetes/provider.ts';
import type { DiscoveryReload } from '../../src/discovery/provider.ts';
import type { DiscoverySnapshot } from '../../src/discovery/model.ts';
import { loadKubeConfig } from '../../src/kube/client.ts';
import { createOpsLogger } from '../../src/telemetry/log.ts';
import { registerKubeDiscoveryMetrics } from '../../src/telemetry/metrics.ts';
import { startFakeKubeApi, type FakeKubeApi } from '../helpers/fake-kube-api.ts';
import { pod, service, slice } from '../helpers/kube-objects.ts';
import { within } from '../helpers/wait.ts';

/** Ops log lines, parsed, with a way to await one. */
class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  private readonly waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    for (const text of chunk.toString().split('\n')) {
      if (!text) continue;
      const line = JSON.parse(text) as Record<string, unknown>;
      this.lines.push(line);
      for (const w of [...this.waiters]) {
        if (w.pred(line)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
    cb();
  }
  next(pred: (l: Record<string, unknown>) => boolean, what: string, since = 0): Promise<Record<string, unknown>> {
    const found = this.lines.slice(since).find(pred);
    if (found) return Promise.resolve(found);
    return within(new Promise((resolve) => this.waiters.push({ pred, resolve })), what);
  }
}

const msg = (re: RegExp) => (l: Record<string, unknown>): boolean => re.test(String(l['msg']));

/** The snapshot's services as `hostname vips ports -> endpoints(ip ready principal protocol)`, sorted. */
function view(s: DiscoverySnapshot | null): string[] {
  assert.ok(s, 'a snapshot');
  return s.services.map((svc) =>
    `${svc.hostname} [${svc.vips.join(',')}] ${svc.ports.map((p) => `${p.port}->${p.targetPort}`).join(',')} ` +
    svc.endpoints.map((e) => `${e.ips.join(',')}${e.ready ? '' : '(not ready)'} ${e.principal} ${e.protocol}`).sort().join('; '),
  ).sort();
}

describe('kubernetes discovery provider', () => {
  let api: FakeKubeApi;
  let dir: string;
  let base: Omit<KubernetesProviderOptions, 'namespaces'>;
  const providers: KubernetesProvider[] = [];

  before(async () => {
    api = await startFakeKubeApi();
    dir = mkdtempSync(join(tmpdir(), 'wg-kprov-'));
    const kube = await loadKubeConfig({ kubeconfig: api.writeKubeconfig(dir) });
    base = {
      config: kube.config, server: kube.server, trustDomain: 'cluster.local', clusterDomain: 'cluster.local',
      debounceMs: 20, maxDelayMs: 200, backoff: { initialMs: 20, maxMs: 200 },
    };
  });
  after(async () => {
    for (const p of providers) p.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const make = (opts: Partial<KubernetesProviderOptions> & { namespaces: string[] }): KubernetesProvider => {
    const p = kubernetesProvider({ ...base, ...opts });
    providers.push(p);
    return p;
  };

  /** Resolves with the next watch-triggered reload for which `pred` holds. */
  const watched = (p: KubernetesProvider): ((pred: (r: DiscoveryReload) => boolean, what: string) => Promise<DiscoveryReload>) => {
    const seen: DiscoveryReload[] = [];
    const waiters: { pred: (r: DiscoveryReload) => boolean; resolve: (r: DiscoveryReload) => void }[] = [];
    p.watch((r) => {
      seen.push(r);
      for (const w of [...waiters]) if (w.pred(r)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(r); }
    });
    return (pred, what) => {
      const i = seen.findIndex(pred);
      if (i >= 0) return Promise.resolve(seen.splice(0, i + 1).at(-1)!);
      return within(new Promise((resolve) => waiters.push({ pred: (r) => { const ok = pred(r); if (ok) seen.length = 0; return ok; }, resolve })), what);
    };
  };

  test('the first snapshot waits for every list of every namespace; a 403 holds it back and is logged with the RBAC it needs', async () => {
    api.apply(service('echo', { ns: 'p1', vip: '10.96.1.10', targetPort: 'http' }));
    api.apply(pod('echo-1', { ns: 'p1', ip: '10.244.1.1' }));
    api.apply(slice('echo', [{ pod: 'echo-1', ip: '10.244.1.1' }], { ns: 'p1' }));
    api.apply(service('ledger', { ns: 'p1b', vip: '10.96.1.11', port: 9090, targetPort: 9000 }));
    api.apply(pod('ledger-0', { ns: 'p1b', ip: '10.244.1.2', sa: 'ledger', ambient: false }));
    api.apply(slice('ledger', [{ pod: 'ledger-0', ip: '10.244.1.2' }], { ns: 'p1b', port: 9000 }));
    const log = new LogCapture();
    api.forbid('list', 'pods');
    const p = make({ namespaces: ['p1', 'p1b'], log: createOpsLogger({ destination: log }) });
    let settled = false;
    const startup = p.reload('startup').finally(() => { settled = true; });
    try {
      const line = await log.next(msg(/forbidden/), 'the 403 log line');
      assert.equal(line['level'], 'error');
      assert.match(String(line['msg']), /^list pods in namespace p1b?: forbidden \(403\): .*needs a Role in namespace p1b? allowing list and watch on pods .*waiting for the first full sync \(not ready\)$/);
      assert.equal(line['resource'], 'pods');
      assert.equal(settled, false, 'no snapshot while a list is refused');
      assert.equal(p.current(), null);
      assert.equal(p.health().synced, false);
    } finally {
      api.allow('list', 'pods');
    }
    const r = await within(startup, 'the startup reload');
    assert.equal(r.result, 'applied');
    assert.equal(r.trigger, 'startup');
    assert.deepEqual(r.snapshot, { version: 1, hash: p.current()!.hash });
    assert.equal(r.services, 2);
    assert.equal(r.workloads, 2);
    assert.deepEqual(view(p.current()), [
      'echo.p1.svc.cluster.local [10.96.1.10] 80->0 10.244.1.1 spiffe://cluster.local/ns/p1/sa/echo HBONE',
      'ledger.p1b.svc.cluster.local [10.96.1.11] 9090->9000 10.244.1.2 spiffe://cluster.local/ns/p1b/sa/ledger TCP',
    ]);
    assert.equal(p.current()!.source, `kubernetes ${api.url} namespaces p1,p1b`);
    assert.equal(p.health().connected || p.health().synced, true);
  });

  test('each kind added, updated, deleted: the snapshot after every step', async () => {
    api.apply(service('echo', { ns: 'p2', vip: '10.96.2.10' }));
    api.apply(pod('echo-1', { ns: 'p2', ip: '10.244.2.1' }));
    api.apply(slice('echo', [{ pod: 'echo-1', ip: '10.244.2.1' }], { ns: 'p2' }));
    const p = make({ namespaces: ['p2'] });
    const swaps: number[] = [];
    p.onSwap((next, prev) => swaps.push(next.version - (prev?.version ?? 0)));
    assert.equal((await p.reload('startup')).result, 'applied');
    const next = watched(p);
    const version = (): number => p.current()!.version;
    const step = async (what: string, change: () => void): Promise<string[]> => {
      const v = version();
      change();
      const r = await next((x) => x.snapshot.version > v, what);
      assert.equal(r.result, 'applied');
      assert.equal(r.trigger, 'watch');
      assert.deepEqual(r.previous?.version, v);
      return view(p.current());
    };
    const echo = 'echo.p2.svc.cluster.local [10.96.2.10] 80->8080';
    const sa = (n: string): string => `spiffe://cluster.local/ns/p2/sa/${n}`;

    // Pod added (a second replica) and its slice updated.
    assert.deepEqual(await step('pod echo-2 added', () => {
      api.apply(pod('echo-2', { ns: 'p2', ip: '10.244.2.2' }));
    }), [`${echo} 10.244.2.1 ${sa('echo')} HBONE`]);
    assert.equal(p.current()!.workloads.length, 2, 'a pod alone is a workload, not yet an endpoint');
    assert.deepEqual(await step('slice updated', () => {
      api.apply(slice('echo', [{ pod: 'echo-1', ip: '10.244.2.1' }, { pod: 'echo-2', ip: '10.244.2.2', ready: false }], { ns: 'p2' }));
    }), [`${echo} 10.244.2.1 ${sa('echo')} HBONE; 10.244.2.2(not ready) ${sa('echo')} HBONE`]);
    // Pod updated: another service account, out of the ambient mesh.
    assert.deepEqual(await step('pod echo-2 updated', () => {
      api.apply(pod('echo-2', { ns: 'p2', ip: '10.244.2.2', sa: 'echo-v2', ambient: false }));
    }), [`${echo} 10.244.2.1 ${sa('echo')} HBONE; 10.244.2.2(not ready) ${sa('echo-v2')} TCP`]);
    // Service added, updated, deleted.
    assert.deepEqual(await step('service cart added', () => {
      api.apply(service('cart', { ns: 'p2', vip: '10.96.2.11', port: 8000, targetPort: 8000 }));
    }), ['cart.p2.svc.cluster.local [10.96.2.11] 8000->8000 ', `${echo} 10.244.2.1 ${sa('echo')} HBONE; 10.244.2.2(not ready) ${sa('echo-v2')} TCP`]);
    assert.deepEqual(await step('service cart updated', () => {
      api.apply(service('cart', { ns: 'p2', vip: '10.96.2.12', port: 8001, targetPort: 8000 }));
    }), ['cart.p2.svc.cluster.local [10.96.2.12] 8001->8000 ', `${echo} 10.244.2.1 ${sa('echo')} HBONE; 10.244.2.2(not ready) ${sa('echo-v2')} TCP`]);
    assert.equal(p.current()!.serviceByVip('10.96.2.11'), undefined, 'the old VIP is gone');
    assert.deepEqual(await step('service cart deleted', () => {
      api.remove('v1', 'Service', 'p2', 'cart');
    }), [`${echo} 10.244.2.1 ${sa('echo')} HBONE; 10.244.2.2(not ready) ${sa('echo-v2')} TCP`]);
    // Pod deleted, then the slice.
    assert.deepEqual(await step('pod echo-2 deleted', () => {
      api.remove('v1', 'Pod', 'p2', 'echo-2');
    }), [`${echo} 10.244.2.1 ${sa('echo')} HBONE`], 'an endpoint whose pod is gone is not offered');
    assert.deepEqual(await step('slice deleted', () => {
      api.remove('discovery.k8s.io/v1', 'EndpointSlice', 'p2', 'echo-abcde');
    }), [`${echo} `]);
    assert.ok(swaps.every((d) => d === 1), 'versions count applied snapshots');
  });

  test('a change the mapping does not read is unchanged (no swap); a burst is one snapshot', async () => {
    api.apply(service('echo', { ns: 'p3', vip: '10.96.3.10' }));
    api.apply(pod('echo-1', { ns: 'p3', ip: '10.244.3.1' }));
    api.apply(slice('echo', [{ pod: 'echo-1', ip: '10.244.3.1' }], { ns: 'p3' }));
    const p = make({ namespaces: ['p3'], debounceMs: 500, maxDelayMs: 5_000 });
    await p.reload('startup');
    const next = watched(p);
    let swaps = 0;
    p.onSwap(() => swaps++);
    // A status field the mapping ignores: a new resourceVersion, the same facts.
    const moved = pod('echo-1', { ns: 'p3', ip: '10.244.3.1' });
    (moved['status'] as Record<string, unknown>)['startTime'] = '2026-12-07T10:00:00Z';
    api.apply(moved);
    // A burst: ten pods in a row, applied before the quiet period ends.
    for (let i = 2; i <= 11; i++) api.apply(pod(`echo-${i}`, { ns: 'p3', ip: `10.244.3.${i}` }));
    const r = await next((x) => x.result === 'applied', 'the burst\'s snapshot');
    assert.equal(r.workloads, 11);
    assert.equal(swaps, 1, 'one snapshot for the burst');
    assert.equal(r.snapshot.version, 2);
    assert.equal((await p.reload('admin')).result, 'unchanged', 'nothing moved since');
  });

  test('the API server goes away: the last snapshot serves, metrics and a log line say so; back, it recovers and picks up what changed', async () => {
    api.apply(service('echo', { ns: 'p4', vip: '10.96.4.10' }));
    api.apply(pod('echo-1', { ns: 'p4', ip: '10.244.4.1' }));
    api.apply(slice('echo', [{ pod: 'echo-1', ip: '10.244.4.1' }], { ns: 'p4' }));
    const log = new LogCapture();
    let nowMs = 1_000_000;
    const p = make({ namespaces: ['p4'], log: createOpsLogger({ destination: log }), now: () => nowMs });
    const registry = new Registry();
    registerKubeDiscoveryMetrics(registry, () => p.health());
    const metric = async (name: string): Promise<string> => {
      const text = await registry.metrics();
      return text.split('\n').filter((l) => l.startsWith(name)).join('\n');
    };
    await p.reload('startup');
    const next = watched(p);
    const before = view(p.current());
    await within((async () => { while (!p.health().connected) await new Promise((r) => setImmediate(r)); })(), 'every watch open');
    assert.equal(await metric('waygate_discovery_connected'), 'waygate_discovery_connected 1');
    assert.equal(await metric('waygate_discovery_stale_seconds'), 'waygate_discovery_stale_seconds 0');

    await api.stop();
    const lost = await log.next(msg(/stays in force/), 'the outage log line');
    assert.equal(lost['level'], 'warn');
    assert.equal(lost['reason'], 'unreachable');
    assert.deepEqual(lost['keeps'], { version: 1, hash: p.current()!.hash });
    assert.deepEqual(view(p.current()), before, 'the last good snapshot keeps serving');
    nowMs += 42_000;
    assert.equal(await metric('waygate_discovery_connected'), 'waygate_discovery_connected 0');
    assert.equal(await metric('waygate_discovery_stale_seconds'), 'waygate_discovery_stale_seconds 42');
    assert.match(await metric('waygate_discovery_watch_errors_total'), /waygate_discovery_watch_errors_total\{resource="(services|pods|endpointslices)",reason="unreachable"\} [1-9]/);
    // Repeats of the same failure are rate-limited: at most one line per (resource, namespace, reason) a minute.
    const errors = (): number => log.lines.filter((l) => /stays in force/.test(String(l['msg']))).length;
    assert.ok(errors() <= 3, `${errors()} outage lines`);

    // Changes made while it is away.
    api.apply(pod('echo-2', { ns: 'p4', ip: '10.244.4.2' }));
    api.apply(slice('echo', [{ pod: 'echo-1', ip: '10.244.4.1' }, { pod: 'echo-2', ip: '10.244.4.2' }], { ns: 'p4' }));
    const mark = log.lines.length;
    await api.start();
    const back = await log.next(msg(/restored/), 'the recovery log line', mark);
    assert.equal(back['level'], 'info');
    assert.ok(Number(back['downSeconds']) >= 42);
    // The three watches resume on their own: the pod and the slice may land in one snapshot or two.
    const r = await next((x) => x.result === 'applied' && view(p.current()).join().includes('10.244.4.2 '), 'the snapshot with the changes made meanwhile');
    assert.ok(r.snapshot.version >= 2);
    assert.deepEqual(view(p.current()), [
      'echo.p4.svc.cluster.local [10.96.4.10] 80->8080 10.244.4.1 spiffe://cluster.local/ns/p4/sa/echo HBONE; 10.244.4.2 spiffe://cluster.local/ns/p4/sa/echo HBONE',
    ]);
    assert.equal(await metric('waygate_discovery_stale_seconds'), 'waygate_discovery_stale_seconds 0');
    assert.equal(await metric('waygate_discovery_connected'), 'waygate_discovery_connected 1');
  });

  test('410 Gone and a label selector: the relisted view replaces the old one; unselected Services are not watched', async () => {
    api.apply(service('echo', { ns: 'p5', vip: '10.96.5.10', labels: { app: 'echo', fronted: 'yes' } }));
    api.apply(service('hidden', { ns: 'p5', vip: '10.96.5.11' }));
    api.apply(pod('echo-1', { ns: 'p5', ip: '10.244.5.1' }));
    api.apply(slice('echo', [{ pod: 'echo-1', ip: '10.244.5.1' }], { ns: 'p5' }));
    const p = make({ namespaces: ['p5'], labelSelector: 'fronted=yes' });
    await p.reload('startup');
    const next = watched(p);
    assert.deepEqual(p.current()!.services.map((s) => s.hostname), ['echo.p5.svc.cluster.local']);
    assert.match(p.current()!.source, / services fronted=yes$/);
    await api.stop();
    api.remove('v1', 'Pod', 'p5', 'echo-1');
    api.apply(pod('echo-9', { ns: 'p5', ip: '10.244.5.9' }));
    api.apply(slice('echo', [{ pod: 'echo-9', ip: '10.244.5.9' }], { ns: 'p5' }));
    api.compact();
    await api.start();
    // The pods and the slices relist independently: the pod may land in one snapshot and the
    // slice naming it in the next, so wait for the service's endpoint, not for the workload alone.
    await next((x) => x.result === 'applied' && view(p.current()).join().includes('10.244.5.9 '), 'the relisted snapshot');
    assert.deepEqual(view(p.current()), ['echo.p5.svc.cluster.local [10.96.5.10] 80->8080 10.244.5.9 spiffe://cluster.local/ns/p5/sa/echo HBONE']);
    assert.deepEqual(p.current()!.workloads.map((w) => w.name), ['echo-9'], 'echo-1, deleted during the outage, is gone');
  });

  test('close() before the first sync: the startup reload is rejected, never a half snapshot', async () => {
    api.forbid('list', 'endpointslices');
    try {
      const p = make({ namespaces: ['p6'] });
      const startup = p.reload('startup');
      p.close();
      const r = await startup;
      assert.equal(r.result, 'rejected');
      assert.equal(p.current(), null);
      assert.match(r.errors[0]!.message, /before the first full sync/);
    } finally {
      api.allow('list', 'endpointslices');
    }
  });
});
