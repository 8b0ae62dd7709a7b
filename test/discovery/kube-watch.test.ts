/**
 * src/discovery/kubernetes/watch.ts at its protocol boundary: one list+watch against the fake API
 * server (test/helpers/fake-kube-api.ts, real HTTPS and token auth, client-node on the other side).
 * Each step asserts the cache and the requests the server saw: the first list, events, a watch
 * that ends (resumed from its resourceVersion, no relist), 410 Gone (relist), a bookmark (the
 * resourceVersion moves, so a later compaction needs no relist), a silent watch (restarted), the
 * server going away and coming back, 403.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadKubeConfig } from '../../src/kube/client.ts';
import { ListWatch, type ListWatchOptions, type WatchError } from '../../src/discovery/kubernetes/watch.ts';
import { startFakeKubeApi, type FakeKubeApi, type RequestLogEntry } from '../helpers/fake-kube-api.ts';
import { pod, service } from '../helpers/kube-objects.ts';
import { within } from '../helpers/wait.ts';

/** A ListWatch whose callbacks are events a test can await. */
class Harness extends EventEmitter {
  readonly lw: ListWatch;
  readonly errors: WatchError[] = [];
  synced = 0;
  connected = 0;
  constructor(opts: Omit<ListWatchOptions, 'onChange' | 'onSynced' | 'onConnected' | 'onError'>) {
    super();
    this.lw = new ListWatch({
      ...opts,
      onBookmark: () => this.emit('change'),
      onChange: () => this.emit('change'),
      onSynced: () => { this.synced++; this.emit('synced'); },
      onConnected: () => { this.connected++; this.emit('connected'); },
      onError: (e) => { this.errors.push(e); this.emit('error-event', e); },
    });
  }
  /** Resolves once `pred` holds, re-checked after every callback. */
  until(pred: () => boolean, what: string): Promise<void> {
    if (pred()) return Promise.resolve();
    return within(new Promise<void>((resolve) => {
      const check = (): void => {
        if (!pred()) return;
        for (const e of ['change', 'synced', 'connected', 'error-event']) this.off(e, check);
        resolve();
      };
      for (const e of ['change', 'synced', 'connected', 'error-event']) this.on(e, check);
    }), what);
  }
  names(): string[] {
    return this.lw.objects().map((o) => (o as { metadata: { name: string } }).metadata.name).sort();
  }
}

const isList = (r: RequestLogEntry, plural: string): boolean => r.method === 'GET' && r.path.endsWith(`/${plural}`) && r.query['watch'] === undefined;
const isWatch = (r: RequestLogEntry, plural: string): boolean => r.method === 'GET' && r.path.endsWith(`/${plural}`) && r.query['watch'] === 'true';

describe('kube list+watch (watch.ts)', () => {
  let api: FakeKubeApi;
  let dir: string;
  let config: ListWatchOptions['config'];
  const open: Harness[] = [];

  before(async () => {
    api = await startFakeKubeApi();
    dir = mkdtempSync(join(tmpdir(), 'wg-kwatch-'));
    config = (await loadKubeConfig({ kubeconfig: api.writeKubeconfig(dir) })).config;
  });
  after(async () => {
    for (const h of open) h.lw.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const harness = (ns: string, extra: Partial<ListWatchOptions> = {}): Harness => {
    const h = new Harness({ config, resource: 'services', namespace: ns, backoff: { initialMs: 20, maxMs: 200 }, ...extra });
    open.push(h);
    return h;
  };

  test('lists, then watches from the list\'s resourceVersion with bookmarks; events change the cache', async () => {
    api.apply(service('a', { ns: 'w1' }));
    api.apply(service('b', { ns: 'w1' }));
    api.apply(service('other', { ns: 'elsewhere' }));
    const h = harness('w1');
    const from = api.requests.length;
    h.lw.start();
    await h.until(() => h.lw.connected, 'the watch');
    assert.deepEqual(h.names(), ['a', 'b'], 'only its namespace');
    const seen = api.requests.slice(from);
    assert.equal(seen.filter((r) => isList(r, 'services')).length, 1);
    const watch = seen.find((r) => isWatch(r, 'services'))!;
    assert.equal(watch.path, '/api/v1/namespaces/w1/services');
    assert.equal(watch.query['resourceVersion'], h.lw.resourceVersion);
    assert.equal(watch.query['allowWatchBookmarks'], 'true');
    assert.ok(Number(watch.query['timeoutSeconds']) >= 300, 'the server ends the watch after 5-10 min');

    // What the cache keeps: not the managedFields nor kubectl's last-applied copy (the mapping reads neither).
    const c = service('c', { ns: 'w1' });
    Object.assign(c.metadata, {
      managedFields: [{ manager: 'kubectl-client-side-apply', operation: 'Update', fieldsV1: { 'f:spec': {} } }],
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big":"copy"}', 'ambient.istio.io/redirection': 'enabled' },
    });
    api.apply(c);
    await h.until(() => h.names().includes('c'), 'ADDED c');
    const cached = h.lw.objects().find((o) => (o as { metadata: { name: string } }).metadata.name === 'c') as { metadata: Record<string, unknown> };
    assert.equal(cached.metadata['managedFields'], undefined);
    assert.deepEqual(cached.metadata['annotations'], { 'ambient.istio.io/redirection': 'enabled' });
    api.apply(service('a', { ns: 'w1', vip: '10.96.0.99' }));
    await h.until(() => h.lw.objects().some((o) => (o as { spec: { clusterIP: string } }).spec.clusterIP === '10.96.0.99'), 'MODIFIED a');
    api.remove('v1', 'Service', 'w1', 'b');
    await h.until(() => !h.names().includes('b'), 'DELETED b');
    assert.deepEqual(h.names(), ['a', 'c']);
    assert.equal(h.lw.resourceVersion, api.resourceVersion(), 'resourceVersion follows the events');
  });

  test('a watch that ends is resumed from the last resourceVersion, without a relist', async () => {
    api.apply(service('a', { ns: 'w2' }));
    const h = harness('w2');
    h.lw.start();
    await h.until(() => h.lw.connected, 'the watch');
    api.apply(service('b', { ns: 'w2' }));
    await h.until(() => h.names().includes('b'), 'ADDED b');
    const rv = h.lw.resourceVersion;
    const from = api.requests.length;
    const connected = h.connected;
    api.endWatches();
    await h.until(() => h.connected > connected, 'the resumed watch');
    const seen = api.requests.slice(from).filter((r) => r.path === '/api/v1/namespaces/w2/services');
    assert.equal(seen.filter((r) => isList(r, 'services')).length, 0, 'no relist');
    assert.equal(seen.filter((r) => isWatch(r, 'services'))[0]!.query['resourceVersion'], rv);
    assert.deepEqual(h.names(), ['a', 'b']);
    assert.equal(h.errors.length, 0, 'a clean end is not an error');
    // Changes made while it was down arrive through the resumed watch.
    api.apply(service('c', { ns: 'w2' }));
    await h.until(() => h.names().includes('c'), 'ADDED c after the resume');
  });

  test('410 Gone after compaction: relists, and the cache is exactly the new list', async () => {
    api.apply(service('a', { ns: 'w3' }));
    api.apply(service('b', { ns: 'w3' }));
    const h = harness('w3');
    h.lw.start();
    await h.until(() => h.lw.connected, 'the watch');
    // Watches are down while b is deleted and c added; then history is compacted past the cache's
    // resourceVersion. A resume is answered with an ERROR 410 event.
    await api.stop();
    api.remove('v1', 'Service', 'w3', 'b');
    api.apply(service('c', { ns: 'w3' }));
    api.compact();
    const from = api.requests.length;
    const synced = h.synced;
    await api.start();
    await h.until(() => h.synced > synced && h.lw.connected, 'the relist and a new watch');
    const seen = api.requests.slice(from).filter((r) => r.path === '/api/v1/namespaces/w3/services');
    assert.ok(seen.some((r) => isWatch(r, 'services')), 'it tried to resume first');
    assert.equal(seen.filter((r) => isList(r, 'services')).length, 1, 'one relist');
    assert.deepEqual(h.names(), ['a', 'c'], 'b deleted and c added while it could not watch');
    assert.equal(h.lw.resourceVersion, api.resourceVersion());
  });

  test('a bookmark moves the resourceVersion: a compaction after it needs no relist', async () => {
    api.apply(service('a', { ns: 'w4' }));
    const h = harness('w4');
    h.lw.start();
    await h.until(() => h.lw.connected, 'the watch');
    // Activity elsewhere moves the server's resourceVersion, not this watch's (it sees no event).
    api.apply(service('x', { ns: 'elsewhere-4' }));
    api.apply(service('y', { ns: 'elsewhere-4' }));
    assert.notEqual(h.lw.resourceVersion, api.resourceVersion());
    const rvChanged = h.until(() => h.lw.resourceVersion === api.resourceVersion(), 'the bookmark');
    api.bookmark();
    await rvChanged;
    assert.deepEqual(h.names(), ['a'], 'a bookmark changes no object');
    api.compact();
    const from = api.requests.length;
    const connected = h.connected;
    api.endWatches();
    await h.until(() => h.connected > connected, 'the resumed watch');
    const seen = api.requests.slice(from).filter((r) => r.path === '/api/v1/namespaces/w4/services');
    assert.equal(seen.filter((r) => isList(r, 'services')).length, 0, 'no relist: the bookmarked resourceVersion is not compacted');
    assert.equal(seen.filter((r) => isWatch(r, 'services'))[0]!.query['resourceVersion'], api.resourceVersion());
  });

  test('a watch silent for idleTimeoutMs is aborted and resumed (no relist)', async () => {
    api.apply(service('a', { ns: 'w5' }));
    const h = harness('w5', { idleTimeoutMs: 150 });
    const from = api.requests.length;
    h.lw.start();
    await h.until(() => h.errors.some((e) => e.reason === 'idle') && h.connected >= 2, 'an idle restart');
    const seen = api.requests.slice(from).filter((r) => r.path === '/api/v1/namespaces/w5/services');
    assert.equal(seen.filter((r) => isList(r, 'services')).length, 1, 'listed once');
    assert.ok(seen.filter((r) => isWatch(r, 'services')).length >= 2);
    assert.match(h.errors.find((e) => e.reason === 'idle')!.message, /delivered nothing for 150 ms/);
    h.lw.close();
  });

  test('the API server going away: unreachable errors with a growing backoff; the cache stays; back, it resumes', async () => {
    api.apply(service('a', { ns: 'w6' }));
    const h = harness('w6', { backoff: { initialMs: 10, maxMs: 80 }, random: () => 1 });
    h.lw.start();
    await h.until(() => h.lw.connected, 'the watch');
    await api.stop();
    await h.until(() => h.errors.length >= 4, 'four failed attempts');
    assert.equal(h.lw.connected, false);
    assert.deepEqual(h.names(), ['a'], 'the cache is kept');
    assert.ok(h.errors.every((e) => e.reason === 'unreachable'), JSON.stringify(h.errors.map((e) => e.reason)));
    // Doubling from 10 ms, bounded by 80 (random() = 1 takes the top of each step). The first
    // step may have gone to the watch's own end when the server cut it (a clean end waits a step).
    const delays = h.errors.map((e) => e.retryInMs);
    assert.ok([10, 20].includes(delays[0]!), delays.join());
    for (let i = 1; i < delays.length; i++) assert.equal(delays[i], Math.min(80, delays[i - 1]! * 2), delays.join());
    api.apply(service('b', { ns: 'w6' }));
    await api.start();
    await h.until(() => h.lw.connected && h.names().includes('b'), 'the resumed watch and the change made meanwhile');
    // Success resets the backoff: the next failure starts at the first step again.
    const before = h.errors.length;
    await api.stop();
    await h.until(() => h.errors.length > before, 'the next failure');
    assert.equal(h.errors[before]!.retryInMs, 10);
    await api.start();
    await h.until(() => h.lw.connected, 'reconnected');
  });

  test('403 on the list: a clear error naming the verb, resource, namespace and the RBAC needed; retried until allowed', async () => {
    api.apply(pod('p1', { ns: 'w7', ip: '10.244.0.7' }));
    api.forbid('list', 'pods');
    const h = harness('w7', { resource: 'pods' });
    try {
      h.lw.start();
      await h.until(() => h.errors.length >= 2, 'two refusals');
      const e = h.errors[0]!;
      assert.equal(e.reason, 'forbidden');
      assert.equal(e.status, 403);
      assert.equal(e.verb, 'list');
      assert.match(e.message, /^list pods in namespace w7: forbidden \(403\): pods is forbidden: User "system:serviceaccount:waygate:waygate" cannot list resource "pods"/);
      assert.match(e.message, /needs a Role in namespace w7 allowing list and watch on pods \(API group core \(""\)\)/);
      assert.equal(h.lw.synced, false);
    } finally {
      api.allow('list', 'pods');
    }
    await h.until(() => h.lw.synced && h.lw.connected, 'the sync once allowed');
    assert.deepEqual(h.names(), ['p1']);
  });

  test('401: the credentials were refused, said as such', async () => {
    const wrong = (await loadKubeConfig({ kubeconfig: api.writeKubeconfig(mkdtempSync(join(dir, 'wrong-')), { token: 'wrong' }) })).config;
    const h = harness('w9', { config: wrong });
    h.lw.start();
    await h.until(() => h.errors.length >= 1, 'a refusal');
    assert.equal(h.errors[0]!.reason, 'unauthorized');
    assert.match(h.errors[0]!.message, /^list services in namespace w9: unauthorized \(401\).*the credentials were refused/);
    h.lw.close();
  });

  test('403 on the watch of EndpointSlices names the discovery.k8s.io group', async () => {
    api.forbid('watch', 'endpointslices');
    const h = harness('w8', { resource: 'endpointslices' });
    try {
      h.lw.start();
      await h.until(() => h.errors.length >= 1, 'a refusal');
      assert.equal(h.lw.synced, true, 'the list worked');
      assert.equal(h.errors[0]!.verb, 'watch');
      assert.match(h.errors[0]!.message, /^watch endpointslices in namespace w8: forbidden \(403\).*list and watch on endpointslices \(API group "discovery\.k8s\.io"\)/);
    } finally {
      api.allow('watch', 'endpointslices');
    }
    await h.until(() => h.lw.connected, 'the watch once allowed');
  });
});
