/**
 * Sandwich mode's trust boundary: the PROXY header's client identity is believed only from the
 * pod's own ztunnel, which connects over loopback (ztunnel src/proxy/inbound.rs, localhost app
 * tunnels). A peer that is not loopback is closed before its header is read; the config refuses a
 * listen address that is not loopback; the listener refuses to run without discovery.
 *
 * A non-loopback peer, two ways: (1) the listener on 0.0.0.0 and a client bound to this machine's
 * own non-internal IPv4 address, when it has one (a real non-loopback source address, default
 * check); (2) on every machine, the listener's `allowPeer` narrowed to 127.0.0.1 and a client
 * bound to 127.0.0.2: the same rejection path, exercised with a second loopback address.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection, type AddressInfo, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { describe, test } from 'node:test';
import { parseConfigText } from '../../src/config/load.ts';
import { productionDefaults } from '../../src/config/schema.ts';
import { EndpointBalancer } from '../../src/discovery/balancer.ts';
import { parseMeshText } from '../../src/discovery/mesh-file.ts';
import { DestinationPolicy } from '../../src/hbone/destination.ts';
import { ConnectRecorder } from '../../src/hbone/records.ts';
import { Router } from '../../src/hbone/route.ts';
import { parseIp, type ParsedIp } from '../../src/net/address.ts';
import { createSandwichListener, type SandwichRejection } from '../../src/sandwich/listener.ts';
import { encodeProxyV2 } from '../../src/upstream/proxy-v2.ts';
import { RecordingSink } from '../helpers/sink.ts';

const MESH = 'apiVersion: waygate.dev/v1alpha1\nkind: Mesh\nservices: []\nworkloads: []\n';

function router(discovery: boolean): Router {
  const parsed = parseMeshText(MESH, 'mesh.yaml', { trustDomain: 'cluster.local', version: 1 });
  assert.ok('snapshot' in parsed);
  const routing = { snapshot: () => parsed.snapshot, allowDirect: false, allowPlaintext: false, balancer: new EndpointBalancer() };
  return new Router(new DestinationPolicy({ allow: [] }), discovery ? routing : null);
}

function listener(host: string, allowPeer?: (ip: ParsedIp) => boolean) {
  const sink = new RecordingSink();
  const rejected: SandwichRejection[] = [];
  let decided = 0;
  const l = createSandwichListener({
    host, port: 0, headerTimeoutMs: 10_000, connectTimeoutMs: 1_000, acceptedTrustDomains: ['cluster.local'],
    // Counted: a rejected peer must never reach the engine.
    authorize: () => {
      decided++;
      return { decision: 'deny', reason: 'default_deny', policy: null, rule: null, audit: [], dryRun: null, evalErrors: [], snapshot: { version: 1, hash: '' }, evalMicros: 0 } as const;
    },
    router: router(true),
    recorder: new ConnectRecorder({ audit: sink, observer: undefined, log: undefined, headerAuditPolicy: () => ({ allow: [], redact: [] }), snapshotInfo: () => ({ version: 0, hash: '' }) }),
    onRejected: (r) => rejected.push(r),
    ...(allowPeer ? { allowPeer } : {}),
  });
  return { l, sink, rejected, decisions: () => decided };
}

/** Connects from `localAddress`, sends a valid header, and resolves when the listener closed it. */
async function sendFrom(localAddress: string, host: string, port: number): Promise<void> {
  const sock: Socket = createConnection({ host, port, localAddress });
  sock.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  await once(sock, 'connect');
  sock.write(encodeProxyV2({ sourceIp: '10.0.0.1', sourcePort: 1, destinationIp: '10.96.0.10', destinationPort: 80, spiffeId: 'spiffe://cluster.local/ns/a/sa/b' }));
  await closed;
}

const external = Object.values(networkInterfaces()).flat().find((a) => a && !a.internal && a.family === 'IPv4')?.address;

describe('sandwich listener: who may speak to it', () => {
  test('a peer with a non-loopback source address is closed before any decision (peer_not_allowed)', { skip: external ? false : 'this machine has no non-internal IPv4 address' }, async () => {
    const { l, sink, rejected, decisions } = listener('0.0.0.0');
    const addr = await l.listen();
    try {
      await sendFrom(external!, external!, addr.port);
      assert.deepEqual(rejected, ['peer_not_allowed']);
      assert.equal(sink.decisions.length, 0);
      assert.equal(decisions(), 0);
    } finally {
      await l.close();
    }
  });

  test('allowPeer narrowed to 127.0.0.1: a client from 127.0.0.2 is refused, one from 127.0.0.1 is not', async () => {
    const only = parseIp('127.0.0.1')!;
    const { l, sink, rejected } = listener('127.0.0.1', (ip) => ip.family === 4 && ip.words[0] === only.words[0]);
    const addr: AddressInfo = await l.listen();
    try {
      await sendFrom('127.0.0.2', '127.0.0.1', addr.port);
      assert.deepEqual(rejected, ['peer_not_allowed']);
      assert.equal(sink.decisions.length, 0);
      // From 127.0.0.1 the header is read and the stream decided (denied: a decision record).
      await sendFrom('127.0.0.1', '127.0.0.1', addr.port);
      await sink.until(() => sink.decisions.length === 1);
      assert.deepEqual(rejected, ['peer_not_allowed']);
      assert.equal(sink.decisions[0]!.source.principal, 'spiffe://cluster.local/ns/a/sa/b');
    } finally {
      await l.close();
    }
  });

  test('without discovery the listener refuses to start (it dials only endpoints discovery picks)', () => {
    assert.throws(() => createSandwichListener({
      host: '127.0.0.1', port: 0, headerTimeoutMs: 1, connectTimeoutMs: 1, acceptedTrustDomains: [],
      authorize: () => assert.fail(), router: router(false),
      recorder: new ConnectRecorder({ audit: new RecordingSink(), observer: undefined, log: undefined, headerAuditPolicy: () => ({ allow: [], redact: [] }), snapshotInfo: () => ({ version: 0, hash: '' }) }),
    }), (err: Error & { code?: string }) => err.code === 'WG_CONFIG' && /discovery/.test(err.message));
  });
});

describe('sandwich config', () => {
  const doc = (spec: string): string => `apiVersion: waygate.dev/v1alpha1\nkind: GatewayConfig\nspec:\n${spec}\n`;

  test('a loopback listen address and a header timeout are accepted', () => {
    const c = parseConfigText(doc('  sandwich: { listen: "127.0.0.1:15088", headerTimeoutMs: 2000 }'), 'gw.yaml', '/');
    assert.deepEqual(c.sandwich, { listen: '127.0.0.1:15088', headerTimeoutMs: 2000 });
  });

  test('off by default; null (as --print-config prints the default) loads back as off', () => {
    assert.deepEqual(productionDefaults({}).sandwich, { listen: null, headerTimeoutMs: 5_000 });
    assert.equal(parseConfigText(doc('  sandwich: { listen: null, headerTimeoutMs: 5000 }'), 'gw.yaml', '/').sandwich?.listen, null);
  });

  test('a listen address that is not loopback is refused at its line', () => {
    assert.throws(
      () => parseConfigText(doc('  sandwich:\n    listen: "0.0.0.0:15088"'), 'gw.yaml', '/'),
      (err: Error) => /not a loopback address/.test(err.message),
    );
  });
});
