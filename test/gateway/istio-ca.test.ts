/**
 * The gateway with its certificate from the mesh CA (`tls.istioCa`, src/gateway/tls-source.ts),
 * end to end on real sockets: a real gRPC stand-in for istiod's CA (test/helpers/fake-istio-ca.ts)
 * issues short-lived certificates, so renewals happen while a tunnel carries traffic through both
 * hops of the waypoint (client -> waygate -> a destination ztunnel stand-in -> echo). Checks that
 * no tunnel is dropped, that the listener and the HBONE client both present the renewed
 * certificate on their next handshake, that /debug/config and the metrics say what happened, and
 * that a start without a certificate names why. The renewal test keeps the default key (RSA
 * 2048); the others ask for ECDSA P-256 keys, far cheaper to generate (one per request).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { resolveConfig } from '../../src/config/resolve.ts';
import { WaygateError } from '../../src/errors.ts';
import { startGateway, type RunningGateway } from '../../src/gateway/gateway.ts';
import { connectHbone, type HboneClientSession } from '../../src/hbone/client.ts';
import type { TlsMaterial } from '../../src/identity/tls-material.ts';
import { createOpsLogger } from '../../src/telemetry/log.ts';
import { echoOnEvery } from '../helpers/echo-hosts.ts';
import { GATEWAY_TOKEN, startFakeIstioCa, type FakeIstioCa } from '../helpers/fake-istio-ca.ts';
import { startFakeZtunnel, type FakeZtunnel } from '../helpers/fake-ztunnel.ts';
import { GATEWAY_SPIFFE_ID, spiffe, testPki } from '../helpers/pki.ts';
import { RecordingSink } from '../helpers/sink.ts';
import { hostPort } from './fixture.ts';

const POD = '127.0.0.31';
const POLICY = `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: frontend
spec:
  action: ALLOW
  rules:
    - name: frontend
      when: source.principal == "${spiffe('frontend', 'prod')}"
`;

/** A GatewayConfig asking `ca` for the certificate, as examples/kubernetes/gateway.yaml does; `keyAlgorithm` null leaves the default. */
function writeConfig(dir: string, ca: FakeIstioCa, meshFile: string | null, tokenFile: string, keyAlgorithm: 'RSA' | 'ECDSA' | null): string {
  const root = join(dir, 'root-cert.pem');
  writeFileSync(root, ca.rootPem);
  writeFileSync(join(dir, 'policies', 'frontend.yaml'), POLICY);
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, [
    'apiVersion: waygate.dev/v1alpha1',
    'kind: GatewayConfig',
    'spec:',
    '  listen: 127.0.0.1:0',
    '  tls:',
    `    trustBundleFiles: [${root}]`,
    `    istioCa: { address: "${ca.address}", serverName: ${ca.serverName}, tokenFile: ${tokenFile}, identity: "${GATEWAY_SPIFFE_ID}"${keyAlgorithm ? `, keyAlgorithm: ${keyAlgorithm}` : ''} }`,
    `  policies: { paths: [${join(dir, 'policies')}], watch: false }`,
    '  destinations: { allow: [{ cidr: 127.0.0.0/8 }] }',
    '  admin: { readyAddress: 127.0.0.1:0, metricsAddress: 127.0.0.1:0, adminAddress: 127.0.0.1:0 }',
    ...(meshFile ? [`  discovery: { meshFile: ${meshFile} }`] : []),
  ].join('\n') + '\n');
  return file;
}

const peerFingerprint = (s: HboneClientSession): string => ((s.session.socket as unknown) as TLSSocket).getPeerCertificate().fingerprint256;

describe('the certificate from the mesh CA, renewed under traffic', () => {
  let ca: FakeIstioCa;
  let zt: FakeZtunnel;
  let echo: Awaited<ReturnType<typeof echoOnEvery>>;
  let gw: RunningGateway;
  let dir = '';
  const sessions: HboneClientSession[] = [];
  const sink = new RecordingSink();

  before(async () => {
    const pki = testPki();
    ca = await startFakeIstioCa();
    // Short lives: renewed at about half, so two renewals happen within the test.
    ca.lifetimeMs = 6_000;
    echo = await echoOnEvery([POD]);
    zt = await startFakeZtunnel({ podIp: POD, cert: pki.clientFor('spiffe://cluster.local/ns/shop/sa/echo'), trustBundlePem: pki.trustBundlePem });
    dir = mkdtempSync(join(tmpdir(), 'waygate-istio-ca-'));
    writeFileSync(join(dir, 'token'), GATEWAY_TOKEN);
    const meshFile = join(dir, 'mesh.yaml');
    writeFileSync(meshFile, 'apiVersion: waygate.dev/v1alpha1\nkind: Mesh\nservices:\n'
      + `  - { hostname: echo.shop.svc.cluster.local, namespace: shop, vips: ["10.96.0.10"], ports: [{ port: 80, targetPort: ${echo.port} }], endpoints: [echo-1] }\n`
      + `workloads:\n  - { name: echo-1, namespace: shop, ips: ["${POD}"], serviceAccount: echo, protocol: HBONE, tunnelPort: ${zt.port} }\n`);
    mkdirSync(join(dir, 'policies'));
    const configFile = writeConfig(dir, ca, meshFile, join(dir, 'token'), null);
    const log = createOpsLogger({ level: (process.env['WAYGATE_TEST_LOG'] as 'info' | undefined) ?? 'silent' });
    gw = await startGateway({ effective: resolveConfig({ configFile, env: {} }), log, audit: sink });
  });

  after(async () => {
    for (const s of sessions) s.destroy();
    await gw?.shutdown('test');
    await zt?.close();
    for (const s of echo?.sockets ?? []) s.destroy();
    for (const s of echo?.servers ?? []) s.close();
    await ca?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const connect = async (): Promise<HboneClientSession> => {
    const pki = testPki();
    const c = pki.clientFor(spiffe('frontend', 'prod'));
    const s = await connectHbone({ address: hostPort(gw.addresses.hbone), cert: c.chainPem, key: c.keyPem, ca: pki.trustBundlePem, expectedServerSpiffeId: GATEWAY_SPIFFE_ID });
    sessions.push(s);
    return s;
  };

  test('two renewals while a tunnel carries traffic: the tunnel lives on, new handshakes on both hops present the new certificate', async () => {
    const runtime = gw.runtime!;
    const first = (runtime.tlsInfo() as { fingerprint: string }).fingerprint;
    assert.equal(ca.calls, 1, 'one request at start');
    assert.equal(ca.last!.metadata['clusterid'], 'Kubernetes');
    assert.equal(ca.last!.metadata['authorization'], `Bearer ${GATEWAY_TOKEN}`);

    const client = await connect();
    assert.equal(peerFingerprint(client), first, 'the listener presents the CA\'s certificate');
    const tunnel = await client.openTunnel('10.96.0.10:80');
    assert.equal(tunnel.status, 200);
    assert.equal(zt.connects.length, 1);
    assert.equal(zt.connects[0]!.peer, GATEWAY_SPIFFE_ID);
    assert.equal(zt.connects[0]!.peerFingerprint, first, 'the HBONE client presents the CA\'s certificate too');

    // Round trips through both hops until two renewals have been put in force.
    const renewed: TlsMaterial[] = [];
    const onUpdate = (m: TlsMaterial): void => { renewed.push(m); };
    runtime.events.on('tls-update', onUpdate);
    let roundTrips = 0;
    try {
      while (renewed.length < 2) {
        const payload = `round trip ${roundTrips++}`;
        const echoed = once(tunnel.stream, 'data');
        tunnel.stream.write(payload);
        const [chunk] = (await echoed) as [Buffer];
        assert.equal(chunk.toString(), payload);
      }
    } finally {
      runtime.events.off('tls-update', onUpdate);
    }
    assert.ok(roundTrips > 1);
    const latest = renewed.at(-1)!;
    assert.notEqual(latest.fingerprint, first);
    assert.ok(ca.calls >= 3, 'one request at start and one per renewal');
    assert.equal(latest.leaf.subjectAltName, `URI:${GATEWAY_SPIFFE_ID}`);
    assert.equal(latest.leaf.publicKey.asymmetricKeyType, 'rsa', 'the default key: RSA, as istio-agent\'s');

    // The tunnel opened before the renewals still carries bytes; its connection still opens tunnels.
    const later = once(tunnel.stream, 'data');
    tunnel.stream.write('after the renewals');
    assert.equal(((await later) as [Buffer])[0].toString(), 'after the renewals');
    const again = await client.openTunnel('10.96.0.10:80');
    assert.equal(again.status, 200);

    // A new client handshake gets the renewed certificate.
    const fresh = await connect();
    assert.equal(peerFingerprint(fresh), (gw.runtime!.tlsInfo() as { fingerprint: string }).fingerprint);
    assert.notEqual(peerFingerprint(fresh), first);
    // A new upstream connection does too: the destination's GOAWAY makes the pool dial again.
    zt.goawayAll();
    const upstreamAgain = await fresh.openTunnel('10.96.0.10:80');
    assert.equal(upstreamAgain.status, 200);
    const last = zt.connects.at(-1)!;
    assert.ok(last.connection > zt.connects[0]!.connection, 'a new TLS connection to the destination');
    assert.equal(last.peerFingerprint, (gw.runtime!.tlsInfo() as { fingerprint: string }).fingerprint);

    // Nothing was closed by the renewals: every tunnel still open, no close record yet.
    assert.deepEqual(sink.closes, []);
    assert.deepEqual(sink.decisions.map((d) => d.decision), ['allow', 'allow', 'allow'], 'one record per tunnel');
    for (const t of [tunnel, again, upstreamAgain]) t.stream.close();

    const info = (await (await fetch(`http://${gw.addresses.admin}/debug/config`)).json()) as { tls: Record<string, any>; config: { tls: Record<string, any> } };
    assert.equal(info.config.tls['istioCa']['keyAlgorithm'], 'RSA');
    assert.equal(info.tls['source'], 'istio-ca');
    assert.equal(info.tls['istioCa']['identity'], GATEWAY_SPIFFE_ID);
    assert.ok(info.tls['istioCa']['issuedCount'] >= 3);
    assert.equal(info.tls['istioCa']['consecutiveFailures'], 0);
    const metrics = await (await fetch(`http://${gw.addresses.metrics}/metrics`)).text();
    assert.ok(Number(/^waygate_tls_material_reloads_total (\d+)$/m.exec(metrics)![1]) >= 2);
    assert.match(metrics, /^waygate_tls_material_errors_total 0$/m);
  });
});

describe('a start without a certificate from the mesh CA', () => {
  test('a token istiod refuses: the start fails with WG_CA naming the token file and istiod\'s refusal', async () => {
    const ca = await startFakeIstioCa();
    const dir = mkdtempSync(join(tmpdir(), 'waygate-istio-ca-refused-'));
    try {
      mkdirSync(join(dir, 'policies'));
      writeFileSync(join(dir, 'token'), 'a-token-of-another-cluster');
      const configFile = writeConfig(dir, ca, null, join(dir, 'token'), 'ECDSA');
      const sink = new RecordingSink();
      await assert.rejects(startGateway({ effective: resolveConfig({ configFile, env: {} }), log: createOpsLogger({ level: 'silent' }), audit: sink }),
        (err: unknown) => err instanceof WaygateError && err.code === 'WG_CA' && err.message.includes(join(dir, 'token')) && /UNAUTHENTICATED/i.test(err.message));
      assert.equal(ca.calls, 1);
    } finally {
      await ca.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a certificate from the mesh CA that expires unrenewed', () => {
  test('not ready with tls_certificate_expired from notAfter while renewals fail; ready again after the next renewal', async () => {
    const ca = await startFakeIstioCa();
    ca.lifetimeMs = 1_500;
    const dir = mkdtempSync(join(tmpdir(), 'waygate-istio-ca-expiry-'));
    let gw: RunningGateway | undefined;
    try {
      mkdirSync(join(dir, 'policies'));
      writeFileSync(join(dir, 'token'), GATEWAY_TOKEN);
      const configFile = writeConfig(dir, ca, null, join(dir, 'token'), 'ECDSA');
      gw = await startGateway({ effective: resolveConfig({ configFile, env: {} }), log: createOpsLogger({ level: 'silent' }), audit: new RecordingSink() });
      const ready = async (): Promise<{ status: number; body: string }> => {
        const res = await fetch(`http://${gw!.addresses.ready}/healthz/ready`);
        return { status: res.status, body: await res.text() };
      };
      assert.equal((await ready()).status, 200);
      // istiod stops accepting the token: every renewal fails, the certificate runs out.
      ca.tokens.delete(GATEWAY_TOKEN);
      const events = gw.runtime!.events;
      let failures = 0;
      const failed = new Promise<void>((resolve) => events.on('tls-error', () => { failures++; resolve(); }));
      const readiness = gw.runtime!.readiness;
      // The state changes at the certificate's notAfter, whatever the retries are doing.
      await new Promise<void>((resolve) => readiness.onChange((st) => { if (st.reasons.includes('tls_certificate_expired')) resolve(); }));
      assert.ok(Date.parse((gw.runtime!.tlsInfo() as { notAfter: string }).notAfter) <= Date.now(), 'not before notAfter');
      const notReady = await ready();
      assert.equal(notReady.status, 503);
      assert.match(notReady.body, /tls_certificate_expired/);
      // A renewal refused (X.509 seconds can put notAfter before the first renewal: then it is
      // refused after it), then istiod takes the token again: the next retry renews.
      await failed;
      assert.equal((await ready()).status, 503, 'still not ready after a failed renewal');
      ca.tokens.set(GATEWAY_TOKEN, GATEWAY_SPIFFE_ID);
      const [renewed] = (await once(events, 'tls-update')) as [TlsMaterial];
      assert.equal(renewed.leaf.publicKey.asymmetricKeyType, 'ec', 'keyAlgorithm ECDSA from the config');
      assert.equal((await ready()).status, 200);
      const metrics = await (await fetch(`http://${gw.addresses.metrics}/metrics`)).text();
      assert.equal(Number(/^waygate_tls_material_errors_total (\d+)$/m.exec(metrics)![1]), failures);
    } finally {
      await gw?.shutdown('test');
      await ca.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
