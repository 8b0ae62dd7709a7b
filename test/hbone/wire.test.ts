/**
 * What a misbehaving or hostile peer can do below the level a well-behaved HTTP/2 client allows:
 * hand-written frames over real TLS (Node's client refuses to send a CONNECT with `:path`, or
 * none without `:authority`), silent peers, peers that never answer PING.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { once } from 'node:events';
import type { HandshakeFailureReason } from '../../src/hbone/observer.ts';
import { testPki } from '../helpers/pki.ts';
import { within } from '../helpers/wait.ts';
import { closed, frame, hpack, rawPeer, spiffe, startGateway, startUpstream, PREFACE, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, END_HEADERS, type Gateway, type Upstream } from './fixture.ts';

describe('HBONE server: the wire, frame by frame', () => {
  let gw: Gateway;
  let echo: Upstream;
  const failures: HandshakeFailureReason[] = [];
  let onFailure: () => void = () => {};
  before(async () => {
    echo = await startUpstream('echo');
    gw = await startGateway({
      handshakeTimeoutMs: 300,
      observer: {
        handshakeFailed: (r) => {
          failures.push(r);
          onFailure();
        },
      },
    });
  });
  after(async () => {
    await gw.close();
    await echo.close();
  });

  // A CONNECT with :path, with :scheme, without :authority: nghttp2 itself treats these as
  // malformed (RFC 9113 §8.1.1) and resets the stream with PROTOCOL_ERROR before Node sees it;
  // should a future nghttp2 let one through, the gateway's own check answers 400. Either way the
  // destination sees nothing and the connection survives.
  for (const [name, headers] of [
    [':path on a CONNECT', [[':method', 'CONNECT'], [':authority', '127.0.0.1:1'], [':path', '/']]],
    [':scheme on a CONNECT', [[':method', 'CONNECT'], [':authority', '127.0.0.1:1'], [':scheme', 'https']]],
    ['missing :authority', [[':method', 'CONNECT']]],
    [':protocol (extended CONNECT)', [[':method', 'CONNECT'], [':protocol', 'websocket'], [':authority', '127.0.0.1:1'], [':scheme', 'https'], [':path', '/']]],
  ] as [string, [string, string][]][]) {
    test(`${name} is refused (RST_STREAM PROTOCOL_ERROR or 400), the connection survives`, async () => {
      const before = echo.connections;
      const peer = await rawPeer(gw.port, spiffe('frontend'));
      peer.socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0)), frame(HEADERS, END_HEADERS, 1, hpack(headers))]));
      const answer = await peer.next((f) => f.streamId === 1 && (f.type === RST_STREAM || f.type === HEADERS));
      if (answer.type === RST_STREAM) {
        assert.equal(answer.payload.readUInt32BE(0), 1, 'PROTOCOL_ERROR');
      } else {
        // RFC 7541 static table index 12 is ":status 400".
        assert.equal(answer.payload[0], 0x8c);
      }
      // The connection still serves a valid CONNECT.
      peer.socket.write(frame(HEADERS, END_HEADERS, 3, hpack([[':method', 'CONNECT'], [':authority', `127.0.0.1:${echo.port}`]])));
      const ok = await peer.next((f) => f.streamId === 3 && f.type === HEADERS);
      assert.equal(ok.payload[0], 0x88, ':status 200 (static index 8)');
      assert.equal(echo.connections, before + 1, 'only the valid CONNECT reached the destination');
      peer.socket.destroy();
    });
  }

  test('a peer that completes TLS but never sends the HTTP/2 preface is dropped', async () => {
    const pki = testPki();
    const c = pki.clientFor(spiffe('frontend'));
    const counted = new Promise<void>((resolve) => {
      onFailure = resolve;
    });
    const socket = tlsConnect({ host: '127.0.0.1', port: gw.port, cert: c.chainPem, key: c.keyPem, ca: pki.trustBundlePem, ALPNProtocols: ['h2'], servername: '', checkServerIdentity: () => undefined });
    socket.on('error', () => {});
    socket.resume();
    await closed(socket);
    await counted;
    assert.equal(failures.at(-1), 'timeout');
  });

  test('a TCP peer that never starts TLS is dropped at the handshake timeout', async () => {
    const counted = new Promise<void>((resolve) => {
      onFailure = resolve;
    });
    const socket = netConnect({ host: '127.0.0.1', port: gw.port });
    socket.on('error', () => {});
    socket.resume();
    await closed(socket);
    await counted;
    assert.equal(failures.at(-1), 'timeout');
  });

  for (const [name, extra, expected] of [
    ['a client without ALPN h2', { ALPNProtocols: ['http/1.1'] }, 'protocol'],
    ['a TLS 1.2 client', { maxVersion: 'TLSv1.2' as const, ALPNProtocols: ['h2'] }, 'protocol'],
  ] as const) {
    test(`${name} is refused`, async () => {
      const pki = testPki();
      const c = pki.clientFor(spiffe('frontend'));
      const counted = new Promise<void>((resolve) => {
        onFailure = resolve;
      });
      const socket = tlsConnect({ host: '127.0.0.1', port: gw.port, cert: c.chainPem, key: c.keyPem, ca: pki.trustBundlePem, servername: '', checkServerIdentity: () => undefined, ...extra });
      socket.on('error', () => {});
      socket.resume();
      await closed(socket);
      await counted;
      assert.equal(failures.at(-1), expected);
    });
  }

  test('a session whose PINGs go unanswered is closed', async () => {
    // Which connections the server gave up on for an unanswered PING (observer.pingTimeout), and
    // whether each was reported before the peer saw its socket close.
    const timedOut: string[] = [];
    const pingGw = await startGateway({
      h2: { pingIntervalMs: 50, pingTimeoutMs: 100 },
      observer: { pingTimeout: (connectionId) => timedOut.push(connectionId) },
    });
    try {
      const peer = await rawPeer(pingGw.port, spiffe('frontend'));
      peer.socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0))]));
      const ping = await peer.next((f) => f.type === PING && (f.flags & 1) === 0);
      assert.equal(ping.payload.length, 8);
      // We never ACK it: the server gives up on the connection. The close must be that give-up,
      // not any other end of the connection (a preface timeout, a protocol error, the listener
      // closing): the ping timeout is reported, once, for this (the only) connection, before
      // the peer sees the close, and the server sent no GOAWAY with an error code first.
      await within(closed(peer.socket), 'close of the connection whose PING went unanswered');
      assert.equal(timedOut.length, 1, 'the server reports exactly one connection closed for an unanswered PING');
      const goaways = peer.frames.filter((f) => f.type === GOAWAY).map((f) => f.payload.readUInt32BE(4));
      assert.ok(goaways.every((code) => code === 0), `no GOAWAY with an error code before the close (got ${goaways.join(', ')})`);
    } finally {
      await pingGw.close();
    }
  });

  test('a peer that answers PINGs stays connected', async () => {
    // A PING every 30 ms; the give-up is far away, so a loaded machine's slow ACK cannot close the
    // connection: a server that did not record the ACKs would send no further PING (session.ts).
    const pingGw = await startGateway({ h2: { pingIntervalMs: 30, pingTimeoutMs: 600_000 } });
    try {
      const client = await pingGw.connect(spiffe('frontend'));
      // Node's client ACKs PINGs; wait for several ping rounds to have been acknowledged.
      let acked = 0;
      await new Promise<void>((resolve) => {
        client.session.on('ping', () => {
          if (++acked === 4) resolve();
        });
      });
      assert.equal(client.session.destroyed, false);
      const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
      assert.equal(t.status, 200);
      t.stream.end();
      await client.close();
    } finally {
      await pingGw.close();
    }
  });

  test('SETTINGS: stream window >= 1 MiB, 200 concurrent streams, 64 KiB header list; connection window 4x', async () => {
    const client = await gw.connect(spiffe('frontend'));
    try {
      const s = client.session;
      // Until the server's SETTINGS frame arrives, remoteSettings holds the RFC defaults (100 streams).
      if (s.remoteSettings.maxConcurrentStreams !== 200) await once(s, 'remoteSettings');
      assert.ok(s.remoteSettings.initialWindowSize! >= 1024 * 1024);
      assert.equal(s.remoteSettings.maxConcurrentStreams, 200);
      assert.equal(s.remoteSettings.maxHeaderListSize, 64 * 1024);
      // The connection window is not a SETTING: it shows in how much the client may send at once.
      const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
      assert.ok(s.state.remoteWindowSize! >= 4 * s.remoteSettings.initialWindowSize! - 65_535, `connection window ${s.state.remoteWindowSize}`);
      t.stream.end();
    } finally {
      await client.close();
    }
  });
});
