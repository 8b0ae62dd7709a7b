/**
 * waygate as an ambient waypoint, end to end on real sockets, two HBONE hops (docs/waypoint.md):
 *
 *   ztunnel-shaped client --HBONE, client identity--> waygate --decision, discovery (mesh file),
 *   balancer--> HBONE with the gateway's own identity --> a stand-in for the destination pod's
 *   ztunnel (test/helpers/fake-ztunnel.ts: checks the :authority IP is its pod's, records the peer
 *   identity it verified) --TCP--> an echo workload on the pod's address.
 *
 * Pods are distinct loopback addresses (127.0.0.11 ...); services have VIPs that are never dialed
 * (10.96.0.x): the gateway must pick the endpoint itself.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HboneClientSession } from '../../src/hbone/client.ts';
import { GATEWAY_SPIFFE_ID, spiffe, testPki } from '../helpers/pki.ts';
import { startFakeZtunnel, type ConnectRecord, type FakeZtunnel } from '../helpers/fake-ztunnel.ts';
import { startTestGateway, type TestGateway } from '../gateway/fixture.ts';
import { readAll } from '../hbone/fixture.ts';
import { echoOnEvery } from '../helpers/echo-hosts.ts';

const SHOP_ECHO = 'spiffe://cluster.local/ns/shop/sa/echo';
const ECHO_PODS = ['127.0.0.11', '127.0.0.12', '127.0.0.13'];
const IMPOSTOR_POD = '127.0.0.14';
const STRICT_POD = '127.0.0.15';
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

function meshYaml(targetPort: number, zt: Record<string, FakeZtunnel>, echoNamespace = 'shop'): string {
  const wl = (name: string, ns: string, ip: string, sa: string, tunnelPort: number): string =>
    `  - { name: ${name}, namespace: ${ns}, ips: ["${ip}"], serviceAccount: ${sa}, protocol: HBONE, tunnelPort: ${tunnelPort} }\n`;
  return (
    'apiVersion: waygate.dev/v1alpha1\nkind: Mesh\nservices:\n' +
    `  - { hostname: echo.shop.svc.cluster.local, namespace: ${echoNamespace}, vips: ["10.96.0.10"], ports: [{ port: 80, targetPort: ${targetPort} }], endpoints: [echo-1, echo-2, echo-3] }\n` +
    `  - { hostname: impostor.shop.svc.cluster.local, namespace: shop, vips: ["10.96.0.11"], ports: [{ port: 80, targetPort: ${targetPort} }], endpoints: [impostor] }\n` +
    `  - { hostname: strict.shop.svc.cluster.local, namespace: shop, vips: ["10.96.0.12"], ports: [{ port: 80, targetPort: ${targetPort} }], endpoints: [strict] }\n` +
    `  - { hostname: ledger.finance.svc.cluster.local, namespace: finance, vips: ["10.96.0.13"], ports: [{ port: 80, targetPort: ${targetPort} }], endpoints: [ledger] }\n` +
    'workloads:\n' +
    wl('echo-1', echoNamespace, ECHO_PODS[0]!, 'echo', zt[ECHO_PODS[0]!]!.port) +
    wl('echo-2', echoNamespace, ECHO_PODS[1]!, 'echo', zt[ECHO_PODS[1]!]!.port) +
    wl('echo-3', echoNamespace, ECHO_PODS[2]!, 'echo', zt[ECHO_PODS[2]!]!.port) +
    // Its ztunnel presents shop/echo's certificate: not the identity discovery expects.
    wl('impostor', 'shop', IMPOSTOR_POD, 'impostor', zt[IMPOSTOR_POD]!.port) +
    wl('strict', 'shop', STRICT_POD, 'strict', zt[STRICT_POD]!.port) +
    wl('ledger', 'finance', '127.0.0.16', 'ledger', 15008)
  );
}

/** frontend may reach namespace shop (and nothing else), operator anything; nobody else anything. */
const POLICY = `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: frontend-to-shop
spec:
  action: ALLOW
  rules:
    - name: shop
      when: source.principal == "${spiffe('frontend', 'prod')}" && destination.namespace == "shop"
    - name: operator
      when: source.principal == "${spiffe('operator', 'prod')}"
`;

describe('waygate as a waypoint: two HBONE hops', () => {
  let gw: TestGateway;
  let echo: Awaited<ReturnType<typeof echoOnEvery>>;
  const zt: Record<string, FakeZtunnel> = {};
  let frontend: HboneClientSession;
  let meshDir = '';
  let meshFile = '';

  before(async () => {
    const pki = testPki();
    const echoCert = pki.clientFor(SHOP_ECHO);
    echo = await echoOnEvery(ECHO_PODS);
    for (const podIp of [...ECHO_PODS, IMPOSTOR_POD]) {
      zt[podIp] = await startFakeZtunnel({ podIp, cert: echoCert, trustBundlePem: pki.trustBundlePem });
    }
    // strict's own policy refuses the waypoint's identity: it answers 401 (ztunnel's policy deny).
    zt[STRICT_POD] = await startFakeZtunnel({
      podIp: STRICT_POD, cert: pki.clientFor('spiffe://cluster.local/ns/shop/sa/strict'), trustBundlePem: pki.trustBundlePem, answer: () => 401,
    });
    meshDir = mkdtempSync(join(tmpdir(), 'waygate-mesh-'));
    meshFile = join(meshDir, 'mesh.yaml');
    writeFileSync(meshFile, meshYaml(echo.port, zt));
    gw = await startTestGateway({ policies: { 'frontend.yaml': POLICY }, spec: `  discovery: { meshFile: ${meshFile} }` });
    frontend = await gw.connect('frontend');
  });

  after(async () => {
    frontend?.destroy();
    await gw?.close();
    for (const z of Object.values(zt)) await z.close();
    for (const s of echo?.sockets ?? []) s.destroy();
    for (const s of echo?.servers ?? []) s.close();
    if (meshDir) rmSync(meshDir, { recursive: true, force: true });
  });

  const connects = (): number => Object.values(zt).reduce((n, z) => n + z.connects.length, 0);
  const allConnects = (): ConnectRecord[] => Object.values(zt).flatMap((z) => z.connects);
  /** The CONNECT a destination ztunnel recorded since `known` was taken. */
  const newConnect = (known: ReadonlySet<ConnectRecord>): ConnectRecord => {
    const fresh = allConnects().filter((c) => !known.has(c));
    assert.equal(fresh.length, 1, 'exactly one CONNECT reached a destination ztunnel');
    return fresh[0]!;
  };

  it('a CONNECT to a service VIP reaches one endpoint over HBONE with the gateway identity; 1 MiB echoes byte-exact each way', async () => {
    const known = new Set(allConnects());
    const t = await frontend.openTunnel('10.96.0.10:80', { traceparent: TRACEPARENT });
    assert.equal(t.status, 200);
    const payload = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff;
    const received = readAll(t.stream);
    t.stream.end(payload);
    assert.ok((await received).equals(payload), 'byte-exact echo through both hops');
    const seen = newConnect(known);
    assert.equal(seen.peer, GATEWAY_SPIFFE_ID, 'the destination sees the gateway, never the client');
    const pod = seen.authority.slice(0, seen.authority.lastIndexOf(':'));
    assert.ok(ECHO_PODS.includes(pod), `authority ${seen.authority} is a pod IP:targetPort`);
    assert.equal(seen.authority, `${pod}:${echo.port}`);
    assert.equal(seen.headers['traceparent'], TRACEPARENT, 'the client trace is propagated');
    assert.match(seen.headers['forwarded'] ?? '', /^for="127\.0\.0\.1:\d+";host=echo\.shop\.svc\.cluster\.local$/);
    assert.match(seen.headers['baggage'] ?? '', /service\.name=waygate/);

    const record = gw.sink.decisions.find((d) => d.traceId === '0af7651916cd43dd8448eb211c80319c')!;
    assert.equal(record.decision, 'allow');
    assert.equal(record.destination.service, 'echo.shop.svc.cluster.local');
    assert.equal(record.destination.namespace, 'shop');
    assert.equal(record.destination.workload, '', 'service traffic is decided before an endpoint is picked');
    assert.equal(record.upstream?.protocol, 'hbone');
    assert.equal(record.upstream?.principal, SHOP_ECHO);
    assert.equal(record.upstream?.address, seen.authority);
    assert.match(record.upstream?.workload ?? '', /^shop\/echo-[123]$/);
  });

  it('a CONNECT the policy denies reaches no destination', async () => {
    const before = connects();
    const intruder = await gw.connect('intruder');
    try {
      assert.equal((await intruder.openTunnel('10.96.0.10:80')).status, 401);
      // destination.namespace: frontend may not reach finance.
      assert.equal((await frontend.openTunnel('10.96.0.13:80')).status, 401);
    } finally {
      intruder.destroy();
    }
    assert.equal(connects(), before);
    const finance = gw.sink.decisions.find((d) => d.destination.namespace === 'finance')!;
    assert.equal(finance.reason, 'no_allow_match');
  });

  it('an endpoint whose ztunnel presents another identity is refused before any byte is sent', async () => {
    const impostor = zt[IMPOSTOR_POD]!;
    const t = await frontend.openTunnel('10.96.0.11:80');
    assert.equal(t.status, 503);
    assert.equal(impostor.connects.length, 0, 'no CONNECT reached it');
    assert.equal(impostor.prefaces, 0, 'not even the HTTP/2 preface');
    const record = gw.sink.decisions.find((d) => d.destination.service === 'impostor.shop.svc.cluster.local')!;
    assert.equal(record.reason, 'upstream_failed');
    assert.match(record.detail ?? '', /identity mismatch/);
    assert.match(record.detail ?? '', /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/impostor/);
  });

  it("a destination whose own policy refuses the gateway (401) becomes 503 upstream_denied with the status in detail", async () => {
    const t = await frontend.openTunnel('strict.shop.svc.cluster.local:80');
    assert.equal(t.status, 503);
    const record = gw.sink.decisions.find((d) => d.destination.service === 'strict.shop.svc.cluster.local')!;
    assert.equal(record.decision, 'allow', 'the gateway allowed; the destination refused');
    assert.equal(record.reason, 'upstream_denied');
    assert.match(record.detail ?? '', /401/);
    assert.equal(zt[STRICT_POD]!.connects[0]!.peer, GATEWAY_SPIFFE_ID);
  });

  it('an unknown VIP is refused (503, detail) when discovery is configured; nothing is dialed', async () => {
    const before = connects();
    const operator = await gw.connect('operator');
    const t = await operator.openTunnel('10.96.0.99:80');
    operator.destroy();
    assert.equal(t.status, 503, 'allowed by policy, unknown to discovery');
    assert.equal(connects(), before);
    const record = gw.sink.decisions.find((d) => d.destination.authority === '10.96.0.99:80')!;
    assert.equal(record.reason, 'upstream_failed');
    assert.match(record.detail ?? '', /10\.96\.0\.99:80 is not a service or workload known to discovery/);
    // A known service's unknown port: 503 with the ports it has.
    assert.equal((await frontend.openTunnel('10.96.0.10:81')).status, 503);
    const port = gw.sink.decisions.find((d) => d.destination.authority === '10.96.0.10:81')!;
    assert.match(port.detail ?? '', /has no port 81 \(ports: 80\)/);
  });

  it('1,000 tunnels to a VIP spread across its 3 endpoints (each within 333 +- 5%)', async () => {
    const before = ECHO_PODS.map((p) => zt[p]!.connects.filter((c) => c.status === 200).length);
    // The gateway takes 200 streams per client connection: five client connections.
    const sessions = await Promise.all([0, 1, 2, 3, 4].map(() => gw.connect('frontend')));
    try {
      for (let i = 0; i < 1000; i++) {
        const t = await sessions[i % 5]!.openTunnel('10.96.0.10:80');
        assert.equal(t.status, 200);
      }
      const counts = ECHO_PODS.map((p, i) => zt[p]!.connects.filter((c) => c.status === 200).length - before[i]!);
      assert.equal(counts.reduce((a, b) => a + b, 0), 1000);
      for (const c of counts) assert.ok(c >= 316 && c <= 350, `counts ${counts.join(', ')}`);
    } finally {
      for (const s of sessions) s.destroy();
    }
  });

  it('a pooled connection that receives GOAWAY is replaced without failing new CONNECTs', async () => {
    // Warm: one tunnel per endpoint at least.
    for (let i = 0; i < 6; i++) {
      const t = await frontend.openTunnel('10.96.0.10:80');
      assert.equal(t.status, 200);
      t.stream.end();
      await readAll(t.stream);
    }
    const handshakes = ECHO_PODS.map((p) => zt[p]!.secureConnections);
    for (const p of ECHO_PODS) zt[p]!.goawayAll();
    for (let i = 0; i < 12; i++) {
      const t = await frontend.openTunnel('10.96.0.10:80');
      assert.equal(t.status, 200, `CONNECT ${i} after GOAWAY: ${JSON.stringify(gw.sink.decisions.at(-1)?.detail)}`);
      const got = readAll(t.stream);
      t.stream.end(Buffer.from(`after goaway ${i}`));
      assert.equal((await got).toString(), `after goaway ${i}`);
    }
    const after = ECHO_PODS.map((p) => zt[p]!.secureConnections);
    assert.ok(after.some((n, i) => n > handshakes[i]!), 'new connections were opened');
  });

  it('a policy change closes both hops of a live tunnel', async () => {
    const known = new Set(allConnects());
    const t = await frontend.openTunnel('10.96.0.10:80');
    assert.equal(t.status, 200);
    const seen = newConnect(known);
    const pod = zt[seen.authority.slice(0, seen.authority.lastIndexOf(':'))]!;
    const upstreamClosed = new Promise<void>((resolve) => {
      const onClose = (r: ConnectRecord): void => {
        if (r === seen) {
          pod.off('streamClose', onClose);
          resolve();
        }
      };
      pod.on('streamClose', onClose);
    });
    const reloads = gw.sink.reloads.length;
    gw.writePolicy('frontend.yaml', POLICY.replace('destination.namespace == "shop"', 'destination.namespace == "nowhere"'));
    const record = await gw.nextReload(reloads);
    assert.equal(record.result, 'applied');
    await upstreamClosed;
    assert.notEqual(seen.closeCode, undefined, 'the upstream stream was reset, not left open');
    await gw.sink.until(() => gw.sink.closes.some((c) => c.closeReason === 'policy_changed'));
    assert.equal(gw.sink.closes.find((c) => c.closeReason === 'policy_changed')!.protocol, 'hbone');
    gw.writePolicy('frontend.yaml', POLICY);
    await gw.nextReload(reloads + 1);
  });

  it('a discovery change that moves a live tunnel\'s service to a namespace the policy does not allow closes it on both hops', async () => {
    const known = new Set(allConnects());
    const t = await frontend.openTunnel('10.96.0.10:80');
    assert.equal(t.status, 200);
    const seen = newConnect(known);
    const pod = zt[seen.authority.slice(0, seen.authority.lastIndexOf(':'))]!;
    const upstreamClosed = once(pod, 'streamClose');
    const meshReloads = (): number => gw.sink.reloads.filter((r) => (r as { source?: string }).source === 'mesh').length;
    const before = meshReloads();
    // Rename into place, as a ConfigMap update or an editor would.
    writeFileSync(`${meshFile}.tmp`, meshYaml(echo.port, zt, 'finance'));
    renameSync(`${meshFile}.tmp`, meshFile);
    await gw.sink.until(() => meshReloads() > before);
    const rec = gw.sink.reloads.filter((r) => (r as { source?: string }).source === 'mesh').at(-1)!;
    assert.equal(rec.result, 'applied');
    await upstreamClosed;
    await gw.sink.until(() => gw.sink.closes.some((c) => c.decisionId === gw.sink.decisions.at(-1)!.decisionId));
    assert.equal(gw.sink.closes.at(-1)!.closeReason, 'policy_changed');
    // The next CONNECT is decided with the new namespace.
    assert.equal((await frontend.openTunnel('10.96.0.10:80')).status, 401);
    writeFileSync(`${meshFile}.tmp`, meshYaml(echo.port, zt));
    renameSync(`${meshFile}.tmp`, meshFile);
    await gw.sink.until(() => meshReloads() > before + 1);
  });

  it('metrics report as a waypoint: istio_tcp_* reporter="waypoint" with the endpoint, pool and failure series', async () => {
    const text = await (await gw.http('metrics', '/metrics')).text();
    const value = (re: RegExp): number => {
      const m = text.match(re);
      assert.ok(m, `no series matching ${re}`);
      return Number(m[1]);
    };
    assert.ok(value(/^istio_tcp_connections_opened_total\{reporter="waypoint",connection_security_policy="mutual_tls",source_workload_namespace="prod",destination_workload="echo-1",destination_workload_namespace="shop"\} (\d+)$/m) > 0);
    assert.doesNotMatch(text, /reporter="destination"/);
    assert.ok(value(/^waygate_tunnel_bytes_total\{direction="received",protocol="hbone"\} (\d+)$/m) >= 1024 * 1024);
    assert.ok(value(/^waygate_upstream_pool_connections (\d+)$/m) >= 1);
    assert.equal(value(/^waygate_upstream_handshake_failures_total\{kind="identity"\} (\d+)$/m), 1);
    assert.equal(value(/^waygate_upstream_connect_failures_total\{kind="denied"\} (\d+)$/m), 1);
    assert.equal(value(/^waygate_discovery_reloads_total\{result="applied",trigger="startup"\} (\d+)$/m), 1);
    assert.ok(value(/^waygate_upstream_connect_duration_seconds_count\{result="ok",protocol="hbone",reused="true"\} (\d+)$/m) > 0, 'warm pool reuse is visible');
  });
});
