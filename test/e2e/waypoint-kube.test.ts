/**
 * waygate as a waypoint with discovery from the Kubernetes API, end to end on real sockets
 * (docs/waypoint.md, "Kubernetes discovery"), as test/e2e/waypoint.test.ts runs the mesh-file path:
 *
 *   ztunnel-shaped client --HBONE--> waygate --decision, discovery (the fake API server's
 *   Services, EndpointSlices, Pods), balancer--> HBONE with the gateway's identity --> the pod's
 *   ztunnel on podIP:15008 (test/helpers/fake-ztunnel.ts) --TCP--> an echo workload on the pod IP.
 *
 * Pods are loopback addresses of their own (127.77.0.x), so each fake ztunnel can listen on 15008,
 * the port Kubernetes discovery dials for every pod. The gateway starts only after the first full
 * sync: while a list is refused (403) the start does not complete.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveConfig } from '../../src/config/resolve.ts';
import { startGateway, type RunningGateway } from '../../src/gateway/gateway.ts';
import { connectHbone, type HboneClientSession } from '../../src/hbone/client.ts';
import { createOpsLogger } from '../../src/telemetry/log.ts';
import type { MeshReloadRecord } from '../../src/audit/record.ts';
import { startFakeKubeApi, type FakeKubeApi, type RequestLogEntry } from '../helpers/fake-kube-api.ts';
import { startFakeZtunnel, type FakeZtunnel } from '../helpers/fake-ztunnel.ts';
import { pod, service, slice } from '../helpers/kube-objects.ts';
import { GATEWAY_SPIFFE_ID, spiffe, testPki } from '../helpers/pki.ts';
import { RecordingSink } from '../helpers/sink.ts';
import { within } from '../helpers/wait.ts';
import { hostPort, writeServeConfig } from '../gateway/fixture.ts';
import { readAll } from '../hbone/fixture.ts';
import { echoOnEvery } from '../helpers/echo-hosts.ts';

const SHOP_ECHO = 'spiffe://cluster.local/ns/shop/sa/echo';
const PODS = ['127.77.0.1', '127.77.0.2'];

const POLICY = `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: frontend-to-shop
spec:
  action: ALLOW
  rules:
    - name: shop
      when: source.principal == "${spiffe('frontend', 'prod')}" && destination.namespace == "shop"
`;

describe('waygate as a waypoint with Kubernetes discovery', () => {
  let api: FakeKubeApi;
  let dir: string;
  let gw: RunningGateway;
  let sink: RecordingSink;
  let echo: Awaited<ReturnType<typeof echoOnEvery>>;
  const zt: Record<string, FakeZtunnel> = {};
  let frontend: HboneClientSession;

  before(async () => {
    const pki = testPki();
    api = await startFakeKubeApi();
    dir = mkdtempSync(join(tmpdir(), 'waygate-kube-e2e-'));
    echo = await echoOnEvery(PODS);
    for (const podIp of PODS) zt[podIp] = await startFakeZtunnel({ podIp, port: 15008, cert: pki.clientFor(SHOP_ECHO), trustBundlePem: pki.trustBundlePem });
    api.apply(service('echo', { vip: '10.96.0.10', port: 80, targetPort: echo.port }));
    api.apply(pod('echo-1', { ip: PODS[0]! }));
    api.apply(pod('echo-2', { ip: PODS[1]! }));
    api.apply(slice('echo', [{ pod: 'echo-1', ip: PODS[0]! }, { pod: 'echo-2', ip: PODS[1]! }], { port: echo.port }));
    const kubeconfig = api.writeKubeconfig(dir);
    const { configFile } = writeServeConfig(dir, { 'frontend.yaml': POLICY }, `  discovery: { kubernetes: { namespaces: [shop], kubeconfig: ${kubeconfig} } }`);
    sink = new RecordingSink();
    const log = createOpsLogger({ level: (process.env['WAYGATE_TEST_LOG'] as 'info' | undefined) ?? 'silent' });

    // The start waits for the first full sync: refused pods hold it back.
    api.forbid('list', 'pods');
    // The second pods list: the first was refused (403) and retried after a backoff step.
    let podLists = 0;
    const refusedTwice = new Promise<void>((resolve) => {
      const onRequest = (e: RequestLogEntry): void => {
        if (!(e.path.endsWith('/pods') && e.query['watch'] === undefined) || ++podLists < 2) return;
        api.off('request', onRequest);
        resolve();
      };
      api.on('request', onRequest);
    });
    let started = false;
    const starting = startGateway({ effective: resolveConfig({ configFile, env: {} }), log, audit: sink }).then((g) => { started = true; return g; });
    try {
      // Generous bounds: the start imports the Kubernetes client and lists everything first, which
      // took over 10 s on a 2-core machine running four test files at load 10.
      await within(refusedTwice, 'a refused pods list, retried', 60_000);
      assert.equal(started, false, 'not started while the pods list is refused');
      assert.equal(sink.reloads.length, 0, 'no discovery snapshot yet');
    } finally {
      api.allow('list', 'pods');
    }
    gw = await within(starting, 'the gateway start after the first full sync', 60_000);
    const c = pki.clientFor(spiffe('frontend', 'prod'));
    frontend = await connectHbone({ address: hostPort(gw.addresses.hbone), cert: c.chainPem, key: c.keyPem, ca: pki.trustBundlePem, expectedServerSpiffeId: GATEWAY_SPIFFE_ID });
  });

  after(async () => {
    frontend?.destroy();
    await gw?.shutdown('test');
    for (const z of Object.values(zt)) await z.close();
    for (const s of echo?.sockets ?? []) s.destroy();
    for (const s of echo?.servers ?? []) s.close();
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const kubeReloads = (): MeshReloadRecord[] => sink.reloads.filter((r) => (r as { source?: string }).source === 'mesh') as unknown as MeshReloadRecord[];

  it('the startup reload record names the Kubernetes source', () => {
    const [first] = kubeReloads();
    assert.ok(first);
    assert.equal(first.result, 'applied');
    assert.equal(first.trigger, 'startup');
    assert.equal(first.kubernetes, `kubernetes ${api.url} namespaces shop`);
    assert.equal(first.file, undefined);
    assert.equal(first.services, 1);
    assert.equal(first.workloads, 2);
  });

  it('a CONNECT to the service VIP goes over HBONE to a pod\'s ztunnel with the gateway identity, and echoes', async () => {
    const known = new Set(Object.values(zt).flatMap((z) => z.connects));
    const t = await frontend.openTunnel('10.96.0.10:80');
    assert.equal(t.status, 200);
    const received = readAll(t.stream);
    t.stream.end(Buffer.from('hello through the waypoint'));
    assert.equal((await received).toString(), 'hello through the waypoint');
    const fresh = Object.values(zt).flatMap((z) => z.connects).filter((c) => !known.has(c));
    assert.equal(fresh.length, 1);
    assert.equal(fresh[0]!.peer, GATEWAY_SPIFFE_ID, 'the destination sees the gateway');
    const podIp = fresh[0]!.authority.slice(0, fresh[0]!.authority.lastIndexOf(':'));
    assert.ok(PODS.includes(podIp));
    assert.equal(fresh[0]!.authority, `${podIp}:${echo.port}`);
    const record = sink.decisions.at(-1)!;
    assert.equal(record.decision, 'allow');
    assert.equal(record.destination.service, 'echo.shop.svc.cluster.local');
    assert.equal(record.destination.namespace, 'shop');
    assert.equal(record.upstream?.protocol, 'hbone');
    assert.equal(record.upstream?.principal, SHOP_ECHO);
  });

  it('an EndpointSlice change is a new snapshot: tunnels then go only to the endpoint left', async () => {
    const before = kubeReloads().length;
    api.apply(slice('echo', [{ pod: 'echo-2', ip: PODS[1]! }], { port: echo.port }));
    await sink.until(() => kubeReloads().length > before, { what: 'the watch-triggered reload' });
    const rec = kubeReloads().at(-1)!;
    assert.equal(rec.result, 'applied');
    assert.equal(rec.trigger, 'watch');
    assert.equal(rec.snapshot.version, 2);
    const counts = (): number[] => PODS.map((p) => zt[p]!.connects.length);
    const start = counts();
    for (let i = 0; i < 6; i++) {
      const t = await frontend.openTunnel('10.96.0.10:80');
      assert.equal(t.status, 200);
      t.stream.end();
      await readAll(t.stream);
    }
    assert.deepEqual(counts().map((n, i) => n - start[i]!), [0, 6]);
  });

  it('metrics and /debug/config report the Kubernetes source', async () => {
    const text = await (await fetch(`http://${gw.addresses.metrics}/metrics`)).text();
    assert.match(text, /^waygate_discovery_connected 1$/m);
    assert.match(text, /^waygate_discovery_stale_seconds 0$/m);
    assert.match(text, /reporter="waypoint"/);
    const config = await (await fetch(`http://${gw.addresses.admin}/debug/config`)).json() as { discovery: Record<string, unknown> };
    assert.equal(config.discovery['kubernetes'], `kubernetes ${api.url} namespaces shop`);
    assert.match(String(config.discovery['credentials']), /^kubeconfig /);
    assert.deepEqual((config.discovery['snapshot'] as { version: number }).version, 2);
  });
});
