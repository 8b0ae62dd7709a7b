/**
 * `timeouts.idleTimeoutMs` applies to sandwich streams as to HBONE tunnels: an open stream with no
 * byte either way for that long is reset, close record `idle_timeout` (a stream with traffic ends
 * `completed`: test/sandwich/sandwich.test.ts, where the timeout is off). The listener here is built directly (src/sandwich/listener.ts) over a real router and mesh
 * snapshot, with an echo endpoint on 127.0.0.23.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { EndpointBalancer } from '../../src/discovery/balancer.ts';
import { parseMeshText } from '../../src/discovery/mesh-file.ts';
import { DestinationPolicy } from '../../src/hbone/destination.ts';
import { ConnectRecorder } from '../../src/hbone/records.ts';
import { Router } from '../../src/hbone/route.ts';
import type { Decision } from '../../src/policy/decision.ts';
import { createSandwichListener, type SandwichListener } from '../../src/sandwich/listener.ts';
import { encodeProxyV2 } from '../../src/upstream/proxy-v2.ts';
import { RecordingSink } from '../helpers/sink.ts';

const POD = '127.0.0.23';
const ALLOW: Decision = { decision: 'allow', reason: 'allowed', policy: 'p', rule: 'r', audit: [], dryRun: null, evalErrors: [], snapshot: { version: 1, hash: 'h' }, evalMicros: 0 };

let echo: ReturnType<typeof createServer>;
let listener: SandwichListener;
let port = 0;
const sink = new RecordingSink();

before(async () => {
  echo = createServer((sock) => {
    sock.on('error', () => undefined);
    sock.pipe(sock);
  }).listen(0, POD);
  await once(echo, 'listening');
  const echoPort = (echo.address() as AddressInfo).port;
  const mesh = parseMeshText([
    'apiVersion: waygate.dev/v1alpha1',
    'kind: Mesh',
    'services:',
    `  - { hostname: echo.shop.svc.cluster.local, namespace: shop, vips: ["10.96.0.30"], ports: [{ port: 80, targetPort: ${echoPort} }], endpoints: [echo-1] }`,
    'workloads:',
    `  - { name: echo-1, namespace: shop, ips: ["${POD}"], serviceAccount: echo }`,
    '',
  ].join('\n'), 'mesh.yaml', { trustDomain: 'cluster.local', version: 1 });
  assert.ok('snapshot' in mesh);
  const snapshot = mesh.snapshot;
  listener = createSandwichListener({
    host: '127.0.0.1', port: 0, headerTimeoutMs: 10_000, connectTimeoutMs: 5_000, idleTimeoutMs: 150,
    acceptedTrustDomains: ['cluster.local'],
    authorize: () => ALLOW,
    router: new Router(new DestinationPolicy({ allow: [{ cidr: '127.0.0.0/8' }] }), { snapshot: () => snapshot, allowDirect: false, allowPlaintext: false, balancer: new EndpointBalancer() }),
    recorder: new ConnectRecorder({ audit: sink, observer: undefined, log: undefined, headerAuditPolicy: () => ({ allow: [], redact: [] }), snapshotInfo: () => ({ version: 1, hash: 'h' }) }),
  });
  port = (await listener.listen()).port;
});

after(async () => {
  await listener?.close();
  echo?.close();
});

async function open(): Promise<{ sock: Socket; decisionId: string }> {
  const sock = createConnection({ host: '127.0.0.1', port });
  sock.on('error', () => undefined);
  await once(sock, 'connect');
  const before = sink.decisions.length;
  sock.write(encodeProxyV2({ sourceIp: '10.244.0.5', sourcePort: 5, destinationIp: '10.96.0.30', destinationPort: 80, spiffeId: 'spiffe://cluster.local/ns/prod/sa/frontend' }));
  await sink.until(() => sink.decisions.length > before);
  const d = sink.decisions.at(-1)!;
  assert.equal(d.decision, 'allow');
  return { sock, decisionId: d.decisionId };
}

test('an idle stream is reset after timeouts.idleTimeoutMs (close record idle_timeout)', async () => {
  const { sock, decisionId } = await open();
  const c = await sink.closeFor(decisionId);
  assert.equal(c.closeReason, 'idle_timeout');
  assert.equal(c.protocol, 'tcp');
  sock.destroy();
});
