/**
 * Sandwich mode end to end through a real gateway (src/sandwich/listener.ts, docs/waypoint.md
 * "Sandwich mode"): streams written as the pod's ztunnel writes them (a PROXY v2 header, command
 * PROXY over TCP, TLV 0xD0 = the client's SPIFFE ID; ztunnel src/proxy.rs write_proxy_protocol),
 * decided by the real policy engine with the HBONE listener's records, and sent on as plaintext to
 * the endpoint discovery (a mesh file) picks. The endpoint is a plain echo server: had waygate sent
 * it HBONE, a PROXY header or anything but the client's bytes, the echo would show it.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { encodeProxyV2 } from '../../src/upstream/proxy-v2.ts';
import { startTestGateway, spiffeId, type TestGateway } from '../gateway/fixture.ts';

const POD = '127.0.0.21';
const VIP = '10.96.0.10';
const DOWN_POD = '127.0.0.22';
const DOWN_VIP = '10.96.0.20';
const CLIENT = { sourceIp: '10.244.2.9', sourcePort: 41234 };

const POLICY = `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: frontend-to-shop
spec:
  action: ALLOW
  rules:
    - name: shop
      when: source.principal == "${spiffeId('frontend')}" && destination.namespace == "shop"
`;

function header(spiffe: string, destinationIp = VIP, destinationPort = 80): Buffer {
  return encodeProxyV2({ ...CLIENT, destinationIp, destinationPort, spiffeId: spiffe });
}

/** A raw TCP connection to the sandwich listener; errors (a reset) are seen through 'close'. */
async function dial(address: string): Promise<Socket> {
  const i = address.lastIndexOf(':');
  const sock = createConnection({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
  sock.on('error', () => undefined);
  await once(sock, 'connect');
  return sock;
}

/** Resolves when the socket closed, however (a reset is an 'error' then 'close'). */
function closed(sock: Socket): Promise<void> {
  return new Promise((resolve) => sock.once('close', () => resolve()));
}

/** Everything the peer sends until it ends or the socket closes. */
function readAll(sock: Socket): Promise<string> {
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => sock.once('close', () => resolve(Buffer.concat(chunks).toString())));
}

async function metric(gw: TestGateway, reason: string): Promise<number> {
  const text = await (await gw.http('metrics', '/metrics')).text();
  const m = new RegExp(`^waygate_sandwich_rejected_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

describe('sandwich mode: PROXY v2 streams from the pod\'s ztunnel', () => {
  let gw: TestGateway;
  let echo: Server;
  let echoPort = 0;
  /** Connections the echo endpoint accepted. */
  let accepted = 0;
  let dir = '';
  let sandwich = '';

  before(async () => {
    echo = createServer({ allowHalfOpen: true }, (sock) => {
      accepted++;
      sock.on('error', () => undefined);
      sock.pipe(sock);
    });
    echo.listen(0, POD);
    await once(echo, 'listening');
    echoPort = (echo.address() as AddressInfo).port;
    // A port nothing listens on (taken, then given back): the endpoint of a service that is down.
    const probe = createServer().listen(0, DOWN_POD);
    await once(probe, 'listening');
    const downPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    dir = mkdtempSync(join(tmpdir(), 'waygate-sandwich-'));
    const mesh = join(dir, 'mesh.yaml');
    writeFileSync(mesh, [
      'apiVersion: waygate.dev/v1alpha1',
      'kind: Mesh',
      'services:',
      `  - { hostname: echo.shop.svc.cluster.local, namespace: shop, vips: ["${VIP}"], ports: [{ port: 80, targetPort: ${echoPort} }], endpoints: [echo-1] }`,
      `  - { hostname: down.shop.svc.cluster.local, namespace: shop, vips: ["${DOWN_VIP}"], ports: [{ port: 80, targetPort: ${downPort} }], endpoints: [down-1] }`,
      'workloads:',
      `  - { name: down-1, namespace: shop, ips: ["${DOWN_POD}"], serviceAccount: down }`,
      // An ambient pod (HBONE): in sandwich mode it still gets plaintext, which its ztunnel wraps.
      `  - { name: echo-1, namespace: shop, ips: ["${POD}"], serviceAccount: echo, protocol: HBONE, tunnelPort: 15008 }`,
      '',
    ].join('\n'));
    gw = await startTestGateway({
      policies: { 'frontend.yaml': POLICY },
      spec: `  discovery: { meshFile: ${mesh} }\n  sandwich: { listen: "127.0.0.1:0", headerTimeoutMs: 300 }`,
    });
    sandwich = gw.gw.runtime!.sandwichAddress!;
  });

  after(async () => {
    await gw?.close();
    echo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('allowed: plaintext to the endpoint discovery picked (never the VIP), decision and close records as for a CONNECT', async () => {
    const sock = await dial(sandwich);
    const reply = readAll(sock);
    const before = gw.sink.decisions.length;
    // The header and the client's first bytes in one segment, as they may arrive from ztunnel.
    sock.write(Buffer.concat([header(spiffeId('frontend')), Buffer.from('hello ')]));
    await gw.sink.until(() => gw.sink.decisions.length > before, { what: 'the decision record' });
    sock.end('world');
    assert.equal(await reply, 'hello world');
    const d = gw.sink.decisions.at(-1)!;
    assert.equal(d.decision, 'allow');
    assert.equal(d.status, 200);
    assert.equal(d.policy, 'frontend-to-shop');
    assert.equal(d.source.principal, spiffeId('frontend'));
    assert.equal(d.source.ip, CLIENT.sourceIp); // the client ztunnel vouched for, not 127.0.0.1
    assert.equal(d.source.port, CLIENT.sourcePort);
    assert.equal(d.destination.ip, VIP);
    assert.equal(d.destination.service, 'echo.shop.svc.cluster.local');
    assert.equal(d.destination.namespace, 'shop');
    assert.deepEqual(
      { workload: d.upstream?.workload, address: d.upstream?.address, protocol: d.upstream?.protocol },
      { workload: 'shop/echo-1', address: `${POD}:${echoPort}`, protocol: 'tcp' },
    );
    const c = await gw.sink.closeFor(d.decisionId);
    assert.equal(c.closeReason, 'completed');
    assert.equal(c.protocol, 'tcp');
    assert.equal(c.bytesReceived, 'hello world'.length);
    assert.equal(c.bytesSent, 'hello world'.length);
    assert.equal(c.source.principal, spiffeId('frontend'));
  });

  test('no identity TLV: denied as a CONNECT without one (no_identity), nothing dialed', async () => {
    const was = accepted;
    const sock = await dial(sandwich);
    const gone = closed(sock);
    const before = gw.sink.decisions.length;
    sock.write(Buffer.concat([header(''), Buffer.from('hello')]));
    await gone;
    await gw.sink.until(() => gw.sink.decisions.length > before, { what: 'the decision record' });
    const d = gw.sink.decisions.at(-1)!;
    assert.equal(d.decision, 'deny');
    assert.equal(d.reason, 'no_identity');
    assert.equal(d.source.principal, '');
    assert.equal(accepted, was);
    assert.equal(gw.sink.closes.some((c) => c.decisionId === d.decisionId), false);
  });

  test('an identity the policy does not allow: denied by the engine, nothing dialed', async () => {
    const was = accepted;
    const sock = await dial(sandwich);
    const gone = closed(sock);
    const before = gw.sink.decisions.length;
    sock.write(header(spiffeId('intruder')));
    await gone;
    await gw.sink.until(() => gw.sink.decisions.length > before, { what: 'the decision record' });
    const d = gw.sink.decisions.at(-1)!;
    assert.equal(d.decision, 'deny');
    assert.equal(d.source.principal, spiffeId('intruder'));
    assert.equal(d.destination.service, 'echo.shop.svc.cluster.local');
    assert.equal(accepted, was);
  });

  test('a destination discovery does not know is refused (never dialed as the original destination)', async () => {
    const sock = await dial(sandwich);
    const gone = closed(sock);
    const before = gw.sink.decisions.length;
    sock.write(header(spiffeId('frontend'), '10.96.0.99', 80));
    await gone;
    await gw.sink.until(() => gw.sink.decisions.length > before, { what: 'the decision record' });
    const d = gw.sink.decisions.at(-1)!;
    // The policy needs namespace shop, which an unknown destination does not have.
    assert.equal(d.decision, 'deny');
    assert.equal(d.destination.namespace, '');
  });

  test('malformed headers are closed before any decision, each counted by reason', async () => {
    const good = header(spiffeId('frontend'));
    const edit = (f: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(good);
      f(b);
      return b;
    };
    const cases: [string, Buffer][] = [
      ['bad_signature', Buffer.from('GET / HTTP/1.1\r\nHost: echo\r\n\r\n')],
      ['bad_version', edit((b) => (b[12] = 0x11))],
      ['local_command', edit((b) => (b[12] = 0x20))],
      ['bad_command', edit((b) => (b[12] = 0x2f))],
      ['too_long', edit((b) => b.writeUInt16BE(0xffff, 14))],
      ['bad_tlv', edit((b) => b.writeUInt16BE(0x0fff, 16 + 12 + 1))],
    ];
    const decisions = gw.sink.decisions.length;
    const was = accepted;
    for (const [reason, bytes] of cases) {
      const before = await metric(gw, reason);
      const sock = await dial(sandwich);
      const gone = closed(sock);
      sock.write(bytes);
      await gone;
      assert.equal(await metric(gw, reason), before + 1, reason);
    }
    // Truncated: the peer gives up half way through the header.
    const truncated = await metric(gw, 'closed_before_header');
    const sock = await dial(sandwich);
    sock.end(good.subarray(0, 20));
    await closed(sock);
    assert.equal(await metric(gw, 'closed_before_header'), truncated + 1);
    assert.equal(gw.sink.decisions.length, decisions, 'no decision record for a stream without a valid header');
    assert.equal(accepted, was);
  });

  test('a header that never completes is closed at sandwich.headerTimeoutMs', async () => {
    const before = await metric(gw, 'header_timeout');
    const sock = await dial(sandwich);
    const gone = closed(sock);
    sock.write(header(spiffeId('frontend')).subarray(0, 20)); // and nothing more, the socket kept open
    await gone;
    assert.equal(await metric(gw, 'header_timeout'), before + 1);
  });

  test('a policy change closes a live sandwich stream now denied (close record policy_changed)', async () => {
    const sock = await dial(sandwich);
    const reply = readAll(sock);
    const before = gw.sink.decisions.length;
    sock.write(Buffer.concat([header(spiffeId('frontend')), Buffer.from('ping')]));
    await gw.sink.until(() => gw.sink.decisions.length > before, { what: 'the decision record' });
    const d = gw.sink.decisions.at(-1)!;
    assert.equal(d.decision, 'allow');
    const reloads = gw.sink.reloads.length;
    gw.writePolicy('frontend.yaml', POLICY.replace(spiffeId('frontend'), spiffeId('someone-else')));
    await gw.nextReload(reloads);
    const c = await gw.sink.closeFor(d.decisionId);
    assert.equal(c.closeReason, 'policy_changed');
    assert.equal(c.policy, null); // default deny: no rule closed it
    await reply;
    gw.writePolicy('frontend.yaml', POLICY);
    await gw.nextReload(gw.sink.reloads.length);
  });

  test('the chosen endpoint refuses the connection: allow/upstream_failed with the dial error, close record upstream_failed', async () => {
    const sock = await dial(sandwich);
    const gone = closed(sock);
    const before = gw.sink.decisions.length;
    sock.write(header(spiffeId('frontend'), DOWN_VIP, 80));
    await gone;
    await gw.sink.until(() => gw.sink.decisions.length > before, { what: 'the decision record' });
    const d = gw.sink.decisions.at(-1)!;
    assert.equal(d.decision, 'allow');
    assert.equal(d.reason, 'upstream_failed');
    assert.equal(d.status, 0);
    assert.equal(d.upstream?.workload, 'shop/down-1');
    assert.match(d.detail ?? '', /refused/);
    const c = await gw.sink.closeFor(d.decisionId);
    assert.equal(c.closeReason, 'upstream_failed');
    assert.equal(c.protocol, undefined); // no upstream connection was made
  });

  // Last: it drains the gateway.
  test('drain: a stream still open at the deadline is closed with close record draining', async () => {
    const sock = await dial(sandwich);
    const gone = closed(sock);
    const before = gw.sink.decisions.length;
    sock.write(Buffer.concat([header(spiffeId('frontend')), Buffer.from('held open')]));
    await gw.sink.until(() => gw.sink.decisions.length > before, { what: 'the decision record' });
    const d = gw.sink.decisions.at(-1)!;
    await gw.gw.runtime!.drain(50);
    const c = await gw.sink.closeFor(d.decisionId);
    assert.equal(c.closeReason, 'draining');
    await gone;
  });
});
