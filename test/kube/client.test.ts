/**
 * src/kube/client.ts's credential rule, and the fake API server (test/helpers/fake-kube-api.ts)
 * checked against the real client library: what the discovery and status tests build on.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { kubeClient, loadKubeConfig } from '../../src/kube/client.ts';
import { WaygateError } from '../../src/errors.ts';
import { startFakeKubeApi, type FakeKubeApi } from '../helpers/fake-kube-api.ts';

const svc = (name: string, ns = 'shop') => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns, labels: { app: name } },
  spec: { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }] },
});

describe('kube client', () => {
  let api: FakeKubeApi;
  let dir: string;
  before(async () => {
    api = await startFakeKubeApi();
    dir = mkdtempSync(join(tmpdir(), 'wg-kube-'));
  });
  after(() => api.close());

  test('an explicit kubeconfig wins over KUBECONFIG; the server and source are reported', async () => {
    const file = api.writeKubeconfig(dir);
    const loaded = await loadKubeConfig({ kubeconfig: file, env: { KUBECONFIG: '/nonexistent' } });
    assert.equal(loaded.server, api.url);
    assert.equal(loaded.from, `kubeconfig ${file}`);
  });

  test('KUBECONFIG lists are merged, missing files skipped, the first current-context wins', async () => {
    const file = api.writeKubeconfig(dir);
    const loaded = await loadKubeConfig({ env: { KUBECONFIG: ['/nonexistent', file].join(':') } });
    assert.equal(loaded.server, api.url);
  });

  test('no credentials anywhere: WG_KUBE naming the three ways to give them', async () => {
    const home = mkdtempSync(join(tmpdir(), 'wg-home-'));
    await assert.rejects(loadKubeConfig({ env: { HOME: home } }), (err: unknown) =>
      err instanceof WaygateError && err.code === 'WG_KUBE' && /--kubeconfig/.test(err.message) && /KUBECONFIG/.test(err.message));
    await assert.rejects(loadKubeConfig({ kubeconfig: join(home, 'nope') }), /does not exist/);
    writeFileSync(join(home, 'bad'), 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n');
    await assert.rejects(loadKubeConfig({ kubeconfig: join(home, 'bad') }), (err: unknown) => err instanceof WaygateError && err.code === 'WG_KUBE');
  });

  test('the fake speaks list, watch, 410 and bookmarks as client-node expects', async () => {
    const k8s = await kubeClient();
    const { config } = await loadKubeConfig({ kubeconfig: api.writeKubeconfig(dir) });
    api.apply(svc('a'));
    const core = config.makeApiClient(k8s.CoreV1Api);
    const list = await core.listNamespacedService({ namespace: 'shop' });
    assert.deepEqual(list.items.map((s) => s.metadata?.name), ['a']);
    const rv = list.metadata!.resourceVersion!;

    const events: string[] = [];
    let done!: (err: unknown) => void;
    const ended = new Promise<unknown>((r) => { done = r; });
    const watch = new k8s.Watch(config);
    const ctl = await watch.watch('/api/v1/namespaces/shop/services', { resourceVersion: rv, allowWatchBookmarks: true },
      (type, obj) => events.push(`${type} ${obj.metadata?.name ?? ''} ${obj.metadata?.resourceVersion ?? ''}`), (err) => done(err));
    await api.waitForWatches(1, 'services');
    api.apply(svc('b'));
    api.bookmark();
    api.endWatches();
    assert.equal(await ended, null);
    assert.deepEqual(events.map((e) => e.split(' ').slice(0, 2).join(' ')), ['ADDED b', 'BOOKMARK ']);
    ctl.abort();

    // A watch from a compacted resourceVersion: one ERROR event with a 410 Status, then the end.
    api.apply(svc('c'));
    api.compact();
    const errs: unknown[] = [];
    const ended2 = new Promise<unknown>((r) => { done = r; });
    await watch.watch('/api/v1/namespaces/shop/services', { resourceVersion: rv }, (type, obj) => errs.push([type, obj.code, obj.reason]), (err) => done(err));
    assert.equal(await ended2, null);
    assert.deepEqual(errs, [['ERROR', 410, 'Expired']]);
  });

  test('a wrong token is 401, a forbidden verb 403, and a stopped server refuses connections', async () => {
    const k8s = await kubeClient();
    const bad = (await loadKubeConfig({ kubeconfig: api.writeKubeconfig(dir, { token: 'wrong' }) })).config.makeApiClient(k8s.CoreV1Api);
    await assert.rejects(bad.listNamespacedService({ namespace: 'shop' }), (err: { code?: number }) => err.code === 401);
    const good = (await loadKubeConfig({ kubeconfig: api.writeKubeconfig(dir) })).config.makeApiClient(k8s.CoreV1Api);
    api.forbid('list', 'services');
    await assert.rejects(good.listNamespacedService({ namespace: 'shop' }), (err: { code?: number }) => err.code === 403);
    api.allow('list', 'services');
    await api.stop();
    await assert.rejects(good.listNamespacedService({ namespace: 'shop' }), /ECONNREFUSED/);
    await api.start();
    assert.equal((await good.listNamespacedService({ namespace: 'shop' })).items.length, 3);
  });
});
