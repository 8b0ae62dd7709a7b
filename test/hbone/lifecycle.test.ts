/**
 * Tunnel and connection lifecycle beyond the happy path: a recheck racing a CONNECT whose dial is
 * in flight, PROXY protocol to the upstream, the idle timeout, certificate rotation, an
 * authorize function that throws, and the observer hooks.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { constants as h2c } from 'node:http2';
import type { CloseRecord, DecisionRecord } from '../../src/audit/record.ts';
import { connectHbone } from '../../src/hbone/client.ts';
import { testPki } from '../helpers/pki.ts';
import { allowServiceAccounts, closed, END_HEADERS, frame, HEADERS, hpack, makeDecision, PREFACE, rawPeer, readAll, SETTINGS, spiffe, startBlackhole, startGateway, startUpstream } from './fixture.ts';

describe('HBONE server lifecycle', () => {
  test('a recheck while the dial is in flight re-decides the registered tunnel: 401 policy_changed, never 200', async () => {
    const hole = await startBlackhole();
    const gw = await startGateway({ connectTimeoutMs: 10_000 });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const pending = client.openTunnel(`127.0.0.1:${hole.port}`);
      // The tunnel is registered (and dialing) before any answer.
      while (gw.server.tunnels.size === 0) await new Promise((r) => setImmediate(r));
      const [info] = gw.server.tunnels.list();
      assert.equal(info!.state, 'pending');
      const revoked = gw.server.recheck(() => makeDecision(false, 'lockdown', 'all'));
      assert.equal(revoked, 1);
      const t = await pending;
      assert.equal(t.status, 401);
      const d = await gw.sink.decisionFor(t.stream.id!);
      assert.equal(d.decision, 'deny');
      assert.equal(d.reason, 'policy_changed');
      assert.equal(d.status, 401);
      assert.equal(d.policy, 'lockdown');
      const c = await gw.sink.closeFor(d.decisionId);
      assert.equal(c.closeReason, 'policy_changed');
      assert.equal(c.policy, 'lockdown');
      assert.equal(gw.sink.decisions.filter((r) => r.decisionId === d.decisionId).length, 1, 'exactly one decision record');
      assert.equal(gw.server.tunnels.size, 0);
      await client.close();
    } finally {
      hole.close();
      await gw.close();
    }
  });

  test('PROXY protocol v2 carries the client address and SPIFFE ID before the first byte', async () => {
    const hold = await startUpstream('hold');
    const gw = await startGateway({ proxyProtocol: true });
    try {
      const client = await gw.connect(spiffe('frontend', 'prod'));
      const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
      const up = await hold.nextSocket();
      const reading = readAll(up);
      t.stream.end('payload');
      const got = await reading;
      const id = spiffe('frontend', 'prod');
      const headerLen = 16 + 12 + 3 + id.length;
      assert.equal(got.subarray(0, 12).toString('hex'), '0d0a0d0a000d0a515549540a');
      assert.deepEqual([...got.subarray(16, 20)], [127, 0, 0, 1]);
      const d = await gw.sink.decisionFor(t.stream.id!);
      assert.equal(got.readUInt16BE(24), d.source.port);
      assert.equal(got.readUInt16BE(26), hold.port);
      assert.equal(got[28], 0xd0);
      assert.equal(got.subarray(31, headerLen).toString(), id);
      assert.equal(got.subarray(headerLen).toString(), 'payload');
      up.end();
      await readAll(t.stream);
      const c = await gw.sink.closeFor(d.decisionId);
      assert.equal(c.bytesReceived, 'payload'.length, 'the PROXY header is not client bytes');
      await client.close();
    } finally {
      await gw.close();
      await hold.close();
    }
  });

  test('the idle timeout closes a silent tunnel with RST_STREAM(CANCEL) and idle_timeout', async () => {
    const hold = await startUpstream('hold');
    const gw = await startGateway({ idleTimeoutMs: 100 });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
      t.stream.on('error', () => {});
      await closed(t.stream);
      assert.equal(t.stream.rstCode, h2c.NGHTTP2_CANCEL);
      const d = await gw.sink.decisionFor(t.stream.id!);
      const c = await gw.sink.closeFor(d.decisionId);
      assert.equal(c.closeReason, 'idle_timeout');
      await client.close();
    } finally {
      await gw.close();
      await hold.close();
    }
  });

  test('setSecureContext: new handshakes get the new certificate, live connections keep working', async () => {
    const echo = await startUpstream('echo');
    const gw = await startGateway();
    const pki = testPki();
    try {
      const before = await gw.connect(spiffe('frontend'));
      const rotatedId = 'spiffe://cluster.local/ns/waygate/sa/gateway-rotated';
      const rotated = pki.issue({ spiffeId: rotatedId });
      gw.server.setSecureContext({ cert: rotated.chainPem, key: rotated.keyPem, ca: pki.trustBundlePem });
      const c = pki.clientFor(spiffe('frontend'));
      const after = await connectHbone({ address: { host: '127.0.0.1', port: gw.port }, cert: c.chainPem, key: c.keyPem, ca: pki.trustBundlePem, expectedServerSpiffeId: rotatedId });
      assert.ok(after.serverIdentity.uris.includes(rotatedId));
      for (const s of [before, after]) {
        const t = await s.openTunnel(`127.0.0.1:${echo.port}`);
        assert.equal(t.status, 200);
        const reading = readAll(t.stream);
        t.stream.end('still here');
        assert.equal((await reading).toString(), 'still here');
      }
      await after.close();
      await before.close();
      assert.throws(() => gw.server.setSecureContext({ cert: '', key: 'k', ca: 'a' }), /tls\.cert/);
    } finally {
      await gw.close();
      await echo.close();
    }
  });

  test('an authorize function that throws fails closed: deny eval_error', async () => {
    const echo = await startUpstream('echo');
    const gw = await startGateway({
      authorize: () => {
        throw new Error('engine bug');
      },
    });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
      assert.equal(t.status, 401);
      const d = await gw.sink.decisionFor(t.stream.id!);
      assert.equal(d.reason, 'eval_error');
      assert.equal(d.evalErrors[0]!.message, 'engine bug');
      assert.equal(echo.connections, 0);
      await client.close();
    } finally {
      await gw.close();
      await echo.close();
    }
  });

  test('observer hooks see connections, decisions, upstream connects and tunnel closes; a throwing observer is harmless', async () => {
    const echo = await startUpstream('echo');
    const seen = { opened: 0, closed: 0, decisions: [] as DecisionRecord[], tunnels: [] as CloseRecord[], upstream: 0 };
    let connClosed!: () => void;
    const connectionClosed = new Promise<void>((r) => (connClosed = r));
    const gw = await startGateway({
      authorize: allowServiceAccounts('frontend'),
      observer: {
        connectionOpened: (i) => {
          seen.opened++;
          assert.equal(i.tlsVersion, 'TLSv1.3');
          throw new Error('observer bug');
        },
        connectionClosed: () => {
          seen.closed++;
          connClosed();
        },
        decision: (r) => seen.decisions.push(r),
        tunnelClosed: (r) => seen.tunnels.push(r),
        upstreamConnected: (ms) => {
          assert.ok(ms >= 0);
          seen.upstream++;
        },
      },
    });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
      const reading = readAll(t.stream);
      t.stream.end('x');
      await reading;
      const denied = await client.openTunnel('127.0.0.2:1');
      assert.equal(denied.status, 401);
      await gw.sink.until(() => gw.sink.closes.length === 1);
      await client.close();
      await connectionClosed;
      assert.equal(seen.opened, 1);
      assert.equal(seen.closed, 1);
      assert.deepEqual(seen.decisions.map((r) => r.status), [200, 401]);
      assert.deepEqual(seen.tunnels.map((r) => r.closeReason), ['completed']);
      assert.equal(seen.upstream, 1);
    } finally {
      await gw.close();
      await echo.close();
    }
  });

  test('drain answers a CONNECT still dialing with 503 draining', async () => {
    const hole = await startBlackhole();
    const gw = await startGateway();
    try {
      const client = await gw.connect(spiffe('frontend'));
      const pending = client.openTunnel(`127.0.0.1:${hole.port}`);
      while (gw.server.tunnels.size === 0) await new Promise((r) => setImmediate(r));
      const goaway = once(client.session, 'goaway');
      const { remaining } = await gw.server.drain(50);
      await goaway;
      assert.equal(remaining, 1);
      const t = await pending;
      assert.equal(t.status, 503);
      const d = await gw.sink.decisionFor(t.stream.id!);
      assert.equal(d.reason, 'draining');
      const c = await gw.sink.closeFor(d.decisionId);
      assert.equal(c.closeReason, 'draining');
    } finally {
      hole.close();
      await gw.close();
    }
  });

  test('a client connection that vanishes (no RST, no GOAWAY) closes its tunnels: upstream closed, session_closed', async () => {
    const hold = await startUpstream('hold');
    const gw = await startGateway();
    try {
      const peer = await rawPeer(gw.port, spiffe('frontend'));
      peer.socket.write(Buffer.concat([
        PREFACE,
        frame(SETTINGS, 0, 0, Buffer.alloc(0)),
        frame(HEADERS, END_HEADERS, 1, hpack([[':method', 'CONNECT'], [':authority', `127.0.0.1:${hold.port}`], ['x-forwarded-network', 'net-east'], ['forwarded', 'for="10.9.8.7:1234"']])),
      ]));
      const up = await hold.nextSocket();
      up.on('error', () => {});
      await peer.next((f) => f.type === HEADERS && f.streamId === 1);
      const [info] = gw.server.tunnels.list();
      assert.equal(info!.state, 'open');
      assert.equal(info!.forwardedFor, '10.9.8.7:1234');
      assert.equal(info!.forwardedNetwork, 'net-east');
      const upstreamGone = new Promise<void>((resolve) => {
        up.once('end', () => resolve());
        up.once('close', () => resolve());
      });
      peer.socket.destroy(); // the TCP connection just goes away
      await upstreamGone;
      await gw.sink.until(() => gw.sink.closes.length === 1);
      assert.equal(gw.sink.closes[0]!.closeReason, 'session_closed');
      assert.equal(gw.sink.closes[0]!.decisionId, gw.sink.decisions[0]!.decisionId);
      assert.equal(gw.server.tunnels.size, 0);
    } finally {
      await gw.close();
      await hold.close();
    }
  });

  test('an upstream reset mid-transfer resets the stream with CONNECT_ERROR (RFC 9113 §8.5)', async () => {
    const hold = await startUpstream('hold');
    const gw = await startGateway();
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
      t.stream.on('error', () => {});
      // A reset must not look like an orderly end first: no END_STREAM before the RST_STREAM
      // (a ztunnel client would shut its TCP write side, then reset: the application sees a FIN).
      let ended = false;
      t.stream.on('end', () => (ended = true));
      t.stream.resume();
      const up = await hold.nextSocket();
      t.stream.write('hello');
      await once(up, 'data');
      up.resetAndDestroy();
      await closed(t.stream);
      assert.equal(t.stream.rstCode, h2c.NGHTTP2_CONNECT_ERROR);
      assert.equal(ended, false, 'END_STREAM arrived before the reset');
      const d = await gw.sink.decisionFor(t.stream.id!);
      const c = await gw.sink.closeFor(d.decisionId);
      assert.equal(c.closeReason, 'upstream_reset');
      assert.equal(c.bytesReceived, 5);
      await client.close();
    } finally {
      await gw.close();
      await hold.close();
    }
  });

  test('backpressure: a destination that stops reading stalls the client through flow control, nothing is lost', async () => {
    const hold = await startUpstream('hold');
    const gw = await startGateway();
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
      const up = await hold.nextSocket();
      up.pause(); // the destination reads nothing
      const total = 64 * 1024 * 1024;
      const chunk = Buffer.alloc(1024 * 1024, 0x5a);
      for (let sent = 0; sent < total; sent += chunk.length) t.stream.write(chunk);
      t.stream.end();
      // Yield to I/O until the gateway has taken a full stream window, then some more turns.
      const accepted = (): number => gw.server.tunnels.list()[0]?.bytesReceived ?? 0;
      while (accepted() < 4 * 1024 * 1024) await new Promise((r) => setImmediate(r));
      for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r));
      // An invariant, whenever it is checked: what the gateway accepted is bounded by the stream
      // window plus the loopback socket buffers, far below what the client queued.
      assert.ok(accepted() < 24 * 1024 * 1024, `gateway accepted ${accepted()} bytes`);
      let received = 0;
      up.on('data', (d: Buffer) => (received += d.length));
      const ended = once(up, 'end');
      up.resume();
      await ended;
      assert.equal(received, total);
      up.end();
      await readAll(t.stream);
      const d = await gw.sink.decisionFor(t.stream.id!);
      const c = await gw.sink.closeFor(d.decisionId);
      assert.equal(c.bytesReceived, total);
      await client.close();
    } finally {
      await gw.close();
      await hold.close();
    }
  });
});
