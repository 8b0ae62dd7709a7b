/**
 * The HBONE upstream connector and its pool, on real sockets and TLS: the connector dials a fake
 * destination ztunnel (test/helpers/fake-ztunnel.ts) on a 127.0.0.x "pod IP", which pipes to an
 * echo or hold server on the same address. No sleeps: every wait is on an event.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { constants as h2, type ClientHttp2Stream } from 'node:http2';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createHboneConnector, type HboneConnector, type HboneUpstreamOptions } from '../../src/upstream/hbone.ts';
import type { HboneUpstreamObserver } from '../../src/upstream/hbone-pool.ts';
import { UpstreamDialError, type UpstreamConnection, type UpstreamRequest } from '../../src/upstream/connector.ts';
import { emptyContext } from '../../src/policy/context.ts';
import { startFakeZtunnel, type FakeZtunnel, type FakeZtunnelOptions } from '../helpers/fake-ztunnel.ts';
import { GATEWAY_SPIFFE_ID, testPki } from '../helpers/pki.ts';
import { startUpstream, type Upstream } from '../hbone/fixture.ts';

const pki = testPki();
const POD_IP = '127.0.0.2';
const DEST_ID = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE = 'api.shop.svc.cluster.local';
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const BAGGAGE = 'k8s.namespace.name=waygate,k8s.deployment.name=waygate';
const destCert = pki.clientFor(DEST_ID);

const gatewayTls = () => ({ cert: pki.serverCert.chainPem, key: pki.serverCert.keyPem, ca: pki.trustBundlePem });

/** Records every observer call. */
function recordingObserver(): HboneUpstreamObserver & { calls: [string, unknown][]; waitFor(name: string, pred?: (arg: unknown) => boolean): Promise<unknown> } {
  const calls: [string, unknown][] = [];
  const waiters: { name: string; pred: (a: unknown) => boolean; resolve: (a: unknown) => void }[] = [];
  const push = (name: string, arg: unknown): void => {
    calls.push([name, arg]);
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!;
      if (w.name === name && w.pred(arg)) {
        waiters.splice(i, 1);
        w.resolve(arg);
      }
    }
  };
  return {
    calls,
    waitFor(name, pred = () => true) {
      const hit = calls.find(([n, a]) => n === name && pred(a));
      if (hit) return Promise.resolve(hit[1]);
      return new Promise((resolve) => waiters.push({ name, pred, resolve }));
    },
    connectionOpened: (i) => push('connectionOpened', i),
    connectionClosed: (i) => push('connectionClosed', i),
    handshakeFailed: (k) => push('handshakeFailed', k),
    connectFailed: (k) => push('connectFailed', k),
    streamsChanged: (d) => push('streamsChanged', d),
    connectionsChanged: (d) => push('connectionsChanged', d),
  };
}

function requestFor(tunnelPort: number, port: number, over: { ip?: string; principal?: string; service?: string; traceparent?: string } = {}): UpstreamRequest {
  const base = emptyContext(new Date());
  const headers: Record<string, string> = {};
  if (over.traceparent !== undefined) headers['traceparent'] = over.traceparent;
  return {
    ip: over.ip ?? POD_IP,
    port,
    context: { ...base, source: { ...base.source, ip: '10.1.2.3', port: 40000 }, request: { ...base.request, headers } },
    endpoint: {
      workload: 'api-0',
      namespace: 'shop',
      principal: over.principal ?? DEST_ID,
      protocol: 'HBONE',
      tunnelPort,
      service: over.service ?? SERVICE,
    },
  };
}

function makeConnector(extra: Partial<HboneUpstreamOptions> = {}): HboneConnector {
  return createHboneConnector({ tls: gatewayTls, baggage: BAGGAGE, ...extra });
}

function dial(connector: HboneConnector, req: UpstreamRequest, timeoutMs = 10_000): Promise<UpstreamConnection> {
  return connector.prepare(req).connect(timeoutMs).promise;
}

async function dialError(p: Promise<unknown>): Promise<UpstreamDialError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof UpstreamDialError, `expected an UpstreamDialError, got ${String(err)}`);
    return err;
  }
  assert.fail('the dial succeeded');
}

/** Everything a readable delivers until its end. */
async function readAll(stream: ClientHttp2Stream | Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  await once(stream, 'end');
  return Buffer.concat(chunks);
}

/** Resolves once `stream` has emitted 'close' (at once if it already has). */
function closed(stream: ClientHttp2Stream | UpstreamConnection['stream']): Promise<void> {
  if (stream.destroyed) return Promise.resolve();
  return once(stream, 'close').then(() => undefined);
}

/** Closes a connection's stream with END_STREAM and waits until it closed. */
async function finish(c: UpstreamConnection): Promise<void> {
  const s = c.stream;
  if (s.destroyed) return;
  const closed = once(s, 'close');
  s.resume();
  s.end();
  await closed;
}

describe('HBONE upstream connector', () => {
  let echo: Upstream;
  let zt: FakeZtunnel;
  const ztunnels: FakeZtunnel[] = [];
  const connectors: HboneConnector[] = [];
  const track = (c: HboneConnector): HboneConnector => (connectors.push(c), c);
  const fake = async (o: Partial<FakeZtunnelOptions> = {}): Promise<FakeZtunnel> => {
    const z = await startFakeZtunnel({ podIp: POD_IP, cert: destCert, trustBundlePem: pki.trustBundlePem, ...o });
    ztunnels.push(z);
    return z;
  };

  before(async () => {
    echo = await startUpstream('echo', POD_IP);
    zt = await fake();
  });
  after(async () => {
    for (const c of connectors) c.close();
    for (const z of ztunnels) await z.close();
    await echo.close();
  });

  it('echoes 1 MiB each way byte-exact; the destination sees the gateway identity and the CONNECT headers', async () => {
    const obs = recordingObserver();
    const connector = track(makeConnector({ observer: obs }));
    const before = zt.connects.length;
    const conn = await dial(connector, requestFor(zt.port, echo.port, { traceparent: TRACEPARENT }));
    assert.deepEqual(conn.info, { protocol: 'hbone', principal: DEST_ID, reused: false });
    const rec = zt.connects[before]!;
    assert.equal(rec.peer, GATEWAY_SPIFFE_ID);
    assert.equal(rec.authority, `${POD_IP}:${echo.port}`);
    assert.deepEqual(rec.headers, { traceparent: TRACEPARENT, forwarded: `for="10.1.2.3:40000";host=${SERVICE}`, baggage: BAGGAGE });

    const payload = randomBytes(1024 * 1024);
    conn.start();
    const received = readAll(conn.stream as ClientHttp2Stream);
    conn.stream.end(payload);
    const got = await received;
    assert.equal(got.length, payload.length);
    assert.ok(got.equals(payload), 'echoed bytes differ');
    await obs.waitFor('streamsChanged', (d) => d === -1);
    assert.deepEqual(connector.stats().keys, [{ key: `${POD_IP}:${zt.port}|${DEST_ID}`, connections: 1, streams: 0, connecting: 0 }]);
    assert.equal((await obs.waitFor('connectionOpened')) !== undefined, true);

    // The next dial rides the same connection.
    const handshakes = zt.secureConnections;
    const again = await dial(connector, requestFor(zt.port, echo.port));
    assert.equal(again.info.reused, true);
    assert.equal(zt.secureConnections, handshakes);
    await finish(again);
  });

  it('refuses a destination presenting another identity before sending anything', async () => {
    const wrong = await fake({ cert: pki.clientFor('spiffe://cluster.local/ns/shop/sa/impostor') });
    const obs = recordingObserver();
    const connector = track(makeConnector({ observer: obs }));
    // The destination's end of the connection: the handshake broken off, or (had it completed
    // before the client's verdict arrived) its session closed.
    const serverSessionClosed = Promise.race([once(wrong, 'tlsClientError'), once(wrong, 'sessionClose')]);
    const err = await dialError(dial(connector, requestFor(wrong.port, echo.port)));
    assert.equal(err.kind, 'identity');
    assert.equal(err.message, `identity mismatch: ${POD_IP}:${wrong.port} presented spiffe://cluster.local/ns/shop/sa/impostor, expected ${DEST_ID}`);
    await serverSessionClosed; // the TLS connection is gone on the destination's side too
    assert.equal(wrong.connects.length, 0);
    assert.equal(wrong.prefaces, 0, 'the destination received an HTTP/2 preface');
    assert.deepEqual(obs.calls.filter(([n]) => n === 'handshakeFailed'), [['handshakeFailed', 'identity']]);
    assert.equal(connector.stats().connections, 0);
  });

  it('refuses a destination whose chain does not verify (kind tls)', async () => {
    const foreign = pki.issue({ spiffeId: DEST_ID, issuer: 'foreign' });
    const untrusted = await fake({ cert: foreign });
    const connector = track(makeConnector());
    const err = await dialError(dial(connector, requestFor(untrusted.port, echo.port)));
    assert.equal(err.kind, 'tls');
    assert.match(err.message, new RegExp(`^TLS handshake with ${POD_IP}:${untrusted.port} failed: `));
    assert.equal(untrusted.connects.length, 0);
  });

  it('maps 401 and 403 to denied and 503 to rejected, with the status in the detail', async () => {
    const statuses = [401, 403, 503];
    let next = 0;
    const refusing = await fake({ answer: () => statuses[next++]! });
    const obs = recordingObserver();
    const connector = track(makeConnector({ observer: obs }));
    for (const [status, kind] of [[401, 'denied'], [403, 'denied'], [503, 'rejected']] as const) {
      const err = await dialError(dial(connector, requestFor(refusing.port, echo.port)));
      assert.equal(err.kind, kind);
      assert.equal(err.code, kind === 'denied' ? 'WG_UPSTREAM_DENIED' : 'WG_UPSTREAM_CONNECT');
      assert.equal(err.message, `destination ${POD_IP}:${refusing.port} answered ${status} to CONNECT ${POD_IP}:${echo.port}`);
    }
    assert.deepEqual(obs.calls.filter(([n]) => n === 'connectFailed').map(([, k]) => k), ['denied', 'denied', 'rejected']);
    // The refused streams were ended, not reset, and gave their slots back: one connection, no stream.
    await obs.waitFor('streamsChanged', () => obs.calls.filter(([n, d]) => n === 'streamsChanged' && d === -1).length === 3);
    assert.deepEqual(connector.stats().keys.map((k) => [k.connections, k.streams]), [[1, 0]]);
    assert.equal(refusing.secureConnections, 1);
  });

  for (const [n, expected] of [[100, 1], [150, 2]] as const) {
    it(`${n} concurrent dials to a cold destination make ${expected} handshake(s)`, async () => {
      const cold = await fake();
      const obs = recordingObserver();
      const connector = track(makeConnector({ observer: obs }));
      const conns = await Promise.all(Array.from({ length: n }, () => dial(connector, requestFor(cold.port, echo.port))));
      assert.equal(cold.secureConnections, expected);
      assert.equal(cold.connects.length, n);
      assert.equal(conns.filter((c) => c.info.reused).length, 0, 'a dial that waited for the handshake is not "reused"');
      const stats = connector.stats();
      assert.equal(stats.connections, expected);
      assert.equal(stats.streams, n);
      // Streams are spread first-fit: the first connection is full.
      await Promise.all(conns.map(finish));
      assert.equal(connector.stats().streams, 0);
      assert.equal(obs.calls.filter(([c]) => c === 'handshakeFailed').length, 0);
    });
  }

  it("caps streams per connection at the peer's SETTINGS_MAX_CONCURRENT_STREAMS", async () => {
    const small = await fake({ maxConcurrentStreams: 10 });
    const connector = track(makeConnector());
    const conns = await Promise.all(Array.from({ length: 25 }, () => dial(connector, requestFor(small.port, echo.port))));
    assert.equal(connector.stats().connections, 3);
    assert.ok(small.secureConnections >= 3);
    await Promise.all(conns.map(finish));
  });

  it('a failed handshake fails every dial waiting for it, with its error', async () => {
    const closed = createServer();
    closed.listen(0, POD_IP);
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve())); // nothing listens there now
    const obs = recordingObserver();
    const connector = track(makeConnector({ observer: obs }));
    const errs = await Promise.all(Array.from({ length: 5 }, () => dialError(dial(connector, requestFor(port, echo.port)))));
    assert.deepEqual(errs.map((e) => e.kind), ['refused', 'refused', 'refused', 'refused', 'refused']);
    assert.equal(new Set(errs).size, 1, 'one handshake, one error');
    assert.equal(errs[0]!.message, `HBONE connect to ${POD_IP}:${port} failed: ECONNREFUSED`);
    assert.deepEqual(obs.calls.filter(([n]) => n === 'handshakeFailed'), [['handshakeFailed', 'refused']]);
    assert.deepEqual(connector.stats(), { connections: 0, streams: 0, connecting: 0, keys: [] });
  });

  it('after GOAWAY the next dial opens a new connection while the old stream finishes', async () => {
    const z = await fake();
    const obs = recordingObserver();
    const connector = track(makeConnector({ observer: obs }));
    const old = await dial(connector, requestFor(z.port, echo.port));
    const oldStream = old.stream as ClientHttp2Stream;
    const goaway = once(oldStream.session!, 'goaway');
    z.goawayAll();
    await goaway;
    const fresh = await dial(connector, requestFor(z.port, echo.port));
    assert.equal(fresh.info.reused, false);
    assert.equal(z.secureConnections, 2);
    assert.notEqual((fresh.stream as ClientHttp2Stream).session, oldStream.session);
    // The old stream still carries bytes both ways and ends cleanly.
    const received = readAll(oldStream);
    oldStream.end('still here');
    assert.equal((await received).toString(), 'still here');
    assert.deepEqual(await obs.waitFor('connectionClosed'), { key: `${POD_IP}:${z.port}|${DEST_ID}`, reason: 'goaway' });
    await finish(fresh);
    assert.equal(connector.stats().connections, 1);
  });

  it('retries once on a fresh connection when the CONNECT is refused by a GOAWAY race', async () => {
    let n = 0;
    const z = await fake({ answer: () => (n++ === 1 ? 'goaway' : 200) });
    const connector = track(makeConnector());
    const first = await dial(connector, requestFor(z.port, echo.port));
    const second = await dial(connector, requestFor(z.port, echo.port));
    assert.equal(z.connects.length, 3);
    assert.deepEqual(z.connects.map((c) => [c.outcome, c.connection]), [['answered', 1], ['goaway', 1], ['answered', 2]]);
    assert.equal(second.info.reused, false);
    await Promise.all([finish(first), finish(second)]);
  });

  it('closes a connection left without streams for poolIdleTimeoutMs', async () => {
    const z = await fake();
    const obs = recordingObserver();
    const connector = track(makeConnector({ observer: obs, poolIdleTimeoutMs: 30 }));
    const conn = await dial(connector, requestFor(z.port, echo.port));
    const serverClosed = once(z, 'sessionClose');
    await finish(conn);
    assert.deepEqual(await obs.waitFor('connectionClosed'), { key: `${POD_IP}:${z.port}|${DEST_ID}`, reason: 'idle' });
    await serverClosed;
    assert.deepEqual(connector.stats(), { connections: 0, streams: 0, connecting: 0, keys: [] });
    assert.deepEqual(obs.calls.filter(([n]) => n === 'connectionsChanged').map(([, d]) => d), [1, -1]);
  });

  describe('half-close, resets', () => {
    let hold: Upstream;
    before(async () => {
      hold = await startUpstream('hold', POD_IP);
    });
    after(async () => {
      await hold.close();
    });

    it('client END_STREAM reaches the destination as FIN while its answer still flows back', async () => {
      const connector = track(makeConnector());
      const conn = await dial(connector, requestFor(zt.port, hold.port));
      const dest = await hold.nextSocket();
      const stream = conn.stream as ClientHttp2Stream;
      const back = readAll(stream);
      const destGot = readAll(dest);
      stream.end('ping');
      assert.equal((await destGot).toString(), 'ping'); // 'end' on the destination: our FIN
      dest.end('late answer');
      assert.equal((await back).toString(), 'late answer');
      await closed(stream);
    });

    it('destination FIN reaches the client as END_STREAM while the client can still send', async () => {
      const connector = track(makeConnector());
      const conn = await dial(connector, requestFor(zt.port, hold.port));
      const dest = await hold.nextSocket();
      const stream = conn.stream as ClientHttp2Stream;
      const back = readAll(stream);
      dest.end('bye');
      assert.equal((await back).toString(), 'bye');
      const destGot = readAll(dest);
      stream.end('after your FIN');
      assert.equal((await destGot).toString(), 'after your FIN');
      await closed(stream);
    });

    it('a destination reset reaches the stream as an error', async () => {
      const connector = track(makeConnector());
      const conn = await dial(connector, requestFor(zt.port, hold.port));
      const dest = await hold.nextSocket();
      const stream = conn.stream as ClientHttp2Stream;
      const errored = once(stream, 'error');
      stream.resume();
      dest.resetAndDestroy();
      const [err] = (await errored) as [NodeJS.ErrnoException];
      assert.equal(err.code, 'ERR_HTTP2_STREAM_ERROR');
      assert.match(err.message, /NGHTTP2_CONNECT_ERROR/);
      assert.equal(stream.rstCode, h2.NGHTTP2_CONNECT_ERROR);
    });

    it('reset() resets the destination; destroy() and closeSoon() end it', async () => {
      const connector = track(makeConnector());
      for (const [how, expect] of [['reset', 'ECONNRESET'], ['destroy', 'end'], ['closeSoon', 'end']] as const) {
        const conn = await dial(connector, requestFor(zt.port, hold.port));
        const dest = await hold.nextSocket();
        const outcome = new Promise<string>((resolve) => {
          dest.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
          dest.on('end', () => resolve('end'));
          dest.resume();
        });
        if (how === 'closeSoon') conn.stream.write('flushed first');
        conn[how]();
        assert.equal(await outcome, expect, how);
        await closed(conn.stream);
      }
    });
  });

  describe('aborts and timeouts', () => {
    let silent: Server;
    let silentPort: number;
    const silentSockets = new Set<Socket>();
    before(async () => {
      // Accepts TCP and never speaks TLS: a handshake that does not complete.
      silent = createServer((s) => {
        silentSockets.add(s);
        s.on('close', () => silentSockets.delete(s));
      });
      silent.listen(0, POD_IP);
      await once(silent, 'listening');
      silentPort = (silent.address() as AddressInfo).port;
    });
    after(async () => {
      for (const s of silentSockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    });

    it('abort while waiting for the handshake fails with aborted and leaves the shared handshake alone', async () => {
      const connector = track(makeConnector());
      const accepted = once(silent, 'connection');
      const pending = connector.prepare(requestFor(silentPort, echo.port)).connect(10_000);
      const other = connector.prepare(requestFor(silentPort, echo.port)).connect(10_000);
      await accepted;
      pending.abort();
      const err = await dialError(pending.promise);
      assert.equal(err.kind, 'aborted');
      assert.equal(connector.stats().connecting, 1, 'the handshake goes on for the other dial');
      other.abort();
      await dialError(other.promise);
      connector.close();
      await once(silentSockets.values().next().value!, 'close');
      assert.deepEqual(connector.stats(), { connections: 0, streams: 0, connecting: 0, keys: [] });
    });

    it('a handshake that does not finish in handshakeTimeoutMs fails all its dials with timeout', async () => {
      const obs = recordingObserver();
      const connector = track(makeConnector({ observer: obs, handshakeTimeoutMs: 50 }));
      const errs = await Promise.all([1, 2].map(() => dialError(dial(connector, requestFor(silentPort, echo.port)))));
      assert.deepEqual(errs.map((e) => e.kind), ['timeout', 'timeout']);
      assert.equal(errs[0]!.message, `HBONE handshake with ${POD_IP}:${silentPort} timed out after 50 ms`);
      assert.deepEqual(obs.calls.filter(([n]) => n === 'handshakeFailed'), [['handshakeFailed', 'timeout']]);
    });

    it("the dial's own timeout covers waiting for the answer; abort cancels the stream, not the connection", async () => {
      let n = 0;
      const z = await fake({ answer: () => (n++ === 0 ? 200 : 'hold') });
      const obs = recordingObserver();
      const connector = track(makeConnector({ observer: obs }));
      // A first tunnel brings the connection up, so the short timeout below is spent on the answer only.
      const first = await dial(connector, requestFor(z.port, echo.port));
      const err = await dialError(dial(connector, requestFor(z.port, echo.port), 100));
      assert.equal(err.kind, 'timeout');
      assert.equal(err.message, `HBONE connect to ${POD_IP}:${z.port} (CONNECT ${POD_IP}:${echo.port}) timed out after 100 ms waiting for the answer`);
      const closed = (await once(z, 'streamClose')) as [{ closeCode?: number }];
      assert.equal(closed[0].closeCode, h2.NGHTTP2_CANCEL);

      const pending = connector.prepare(requestFor(z.port, echo.port)).connect(10_000);
      await once(z, 'connect');
      const streamClosed = once(z, 'streamClose');
      pending.abort();
      assert.equal((await dialError(pending.promise)).kind, 'aborted');
      assert.equal(((await streamClosed) as [{ closeCode?: number }])[0].closeCode, h2.NGHTTP2_CANCEL);
      assert.equal(connector.stats().connections, 1, 'the shared connection stays');
      assert.equal(z.secureConnections, 1);
      assert.deepEqual(obs.calls.filter(([name]) => name === 'connectFailed').map(([, k]) => k), ['timeout']);
      await finish(first);
    });
  });

  it('drain waits for open streams, then resolves; new dials fail', async () => {
    const z = await fake();
    const obs = recordingObserver();
    const connector = track(makeConnector({ observer: obs }));
    const conn = await dial(connector, requestFor(z.port, echo.port));
    let drained = false;
    const draining = connector.drain(60_000).then(() => {
      drained = true;
    });
    const err = await dialError(dial(connector, requestFor(z.port, echo.port)));
    assert.equal(err.kind, 'other');
    assert.match(err.message, /draining/);
    // The open stream still works: a round trip, and the drain has not resolved meanwhile.
    const stream = conn.stream as ClientHttp2Stream;
    const back = readAll(stream);
    stream.write('during drain');
    stream.end();
    assert.equal((await back).toString(), 'during drain');
    assert.equal(drained, false);
    await draining;
    assert.deepEqual(await obs.waitFor('connectionClosed'), { key: `${POD_IP}:${z.port}|${DEST_ID}`, reason: 'drain' });
    assert.equal(connector.stats().connections, 0);
  });

  it('drain destroys what is still open at its deadline', async () => {
    const z = await fake();
    const connector = track(makeConnector());
    const conn = await dial(connector, requestFor(z.port, echo.port));
    const closed = once(conn.stream, 'close');
    await connector.drain(20);
    await closed;
    assert.equal(connector.stats().connections, 0);
  });

  it('uses the current certificate for new connections only (rotation)', async () => {
    const z = await fake({ maxConcurrentStreams: 1 });
    const rotated = pki.clientFor('spiffe://cluster.local/ns/waygate/sa/gateway-rotated');
    let material = gatewayTls();
    const connector = track(makeConnector({ tls: () => material }));
    const a = await dial(connector, requestFor(z.port, echo.port));
    material = { cert: rotated.chainPem, key: rotated.keyPem, ca: pki.trustBundlePem };
    const b = await dial(connector, requestFor(z.port, echo.port)); // the first connection is full
    assert.deepEqual(z.connects.map((c) => [c.peer, c.connection]), [[GATEWAY_SPIFFE_ID, 1], [rotated.spiffeId, 2]]);
    await Promise.all([finish(a), finish(b)]);
  });

  it('destroys a connection whose PINGs go unanswered', async () => {
    const z = await fake();
    // A relay on the pod IP that can be frozen: bytes stop in both directions (a dead peer).
    let frozen = false;
    const relaySockets = new Set<Socket>();
    const live = createServer((client) => {
      const server = connect(z.port, POD_IP);
      relaySockets.add(client).add(server);
      client.on('error', () => {}).on('data', (d) => frozen || server.write(d));
      server.on('error', () => {}).on('data', (d) => frozen || client.write(d));
      client.on('close', () => server.destroy());
      server.on('close', () => client.destroy());
    });
    live.listen(0, POD_IP);
    await once(live, 'listening');
    const relayPort = (live.address() as AddressInfo).port;
    try {
      const obs = recordingObserver();
      const connector = track(makeConnector({ observer: obs, pingIntervalMs: 20, pingTimeoutMs: 40 }));
      const conn = await dial(connector, requestFor(relayPort, echo.port));
      frozen = true;
      assert.deepEqual(await obs.waitFor('connectionClosed'), { key: `${POD_IP}:${relayPort}|${DEST_ID}`, reason: 'ping_timeout' });
      assert.ok(conn.stream.destroyed);
    } finally {
      for (const s of relaySockets) s.destroy();
      await new Promise<void>((resolve) => live.close(() => resolve()));
    }
  });

  it('prepare refuses a request without an HBONE endpoint (a wiring bug)', () => {
    const connector = track(makeConnector());
    const req = requestFor(zt.port, echo.port);
    assert.throws(() => connector.prepare({ ...req, endpoint: null }), /no endpoint/);
    assert.throws(() => connector.prepare({ ...req, endpoint: { ...req.endpoint!, protocol: 'TCP' } }), /a TCP endpoint/);
  });
});
