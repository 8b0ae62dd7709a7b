/**
 * Regressions for the findings of the ztunnel interop review (docs/ztunnel-interop.md §11):
 * memory per connection (1 MiB stream window, cap on dials in flight), a client reset during the
 * dial aborts it, two-phase GOAWAY on drain, a failure between the dial and the 200 releases the
 * upstream socket and still writes the decision record, and a hostname without a route is 503.
 */
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants as h2c, type ClientHttp2Stream } from 'node:http2';
import pino from 'pino';
import { DEFAULT_HEADER_AUDIT_POLICY } from '../../src/audit/redact.ts';
import type { HboneClientSession } from '../../src/hbone/client.ts';
import { resolveH2Options } from '../../src/hbone/h2-settings.ts';
import type { DialFailureKind } from '../../src/upstream/connector.ts';
import {
  closed,
  frame,
  hpack,
  rawPeer,
  readAll,
  spiffe,
  startBlackhole,
  startGateway,
  startUpstream,
  END_HEADERS,
  GOAWAY,
  HEADERS,
  PING,
  PREFACE,
  RST_STREAM,
  SETTINGS,
  type Frame,
  type Gateway,
  type Upstream,
} from './fixture.ts';

const MiB = 1024 * 1024;
const DATA_FRAME = 0x0;
const END_STREAM = 0x1;
const ACK = 0x1;
/** RFC 9113 §6.5.2 SETTINGS_INITIAL_WINDOW_SIZE. */
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const WINDOW_UPDATE = 0x8;

/** A pino logger whose lines land in `lines` (parsed). */
function memoryLog(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines };
}

/** A CONNECT sent without waiting for its answer (the client's openTunnel awaits the response). */
function connectNoWait(client: HboneClientSession, authority: string): ClientHttp2Stream {
  const stream = client.session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
  stream.on('error', () => {});
  return stream;
}

/** Resolves once `n` tunnels are registered (the CONNECTs reached their dial); polls per event-loop turn. */
async function tunnelsRegistered(gw: Gateway, n: number): Promise<void> {
  while (gw.server.tunnels.size < n) await new Promise((r) => setImmediate(r));
}

/** Parses a SETTINGS payload into id -> value. */
function settingsOf(f: Frame): Map<number, number> {
  const out = new Map<number, number>();
  for (let off = 0; off + 6 <= f.payload.length; off += 6) out.set(f.payload.readUInt16BE(off), f.payload.readUInt32BE(off + 2));
  return out;
}

const connectFrame = (streamId: number, authority: string): Buffer =>
  frame(HEADERS, END_HEADERS, streamId, hpack([[':method', 'CONNECT'], [':authority', authority]]));

describe('HBONE hardening: memory per connection', () => {
  test('defaults: 1 MiB stream window, 4 MiB connection window, session memory above two connection windows', () => {
    const o = resolveH2Options();
    assert.equal(o.streamWindowBytes, MiB);
    assert.equal(o.connectionWindowBytes, 4 * MiB);
    assert.ok(o.maxSessionMemoryMb * MiB >= 2 * o.connectionWindowBytes);
    // An explicit larger stream window scales the rest with it.
    const big = resolveH2Options({ streamWindowBytes: 4 * MiB });
    assert.equal(big.connectionWindowBytes, 16 * MiB);
    assert.ok(big.maxSessionMemoryMb * MiB >= 2 * big.connectionWindowBytes);
  });

  test('on the wire: SETTINGS_INITIAL_WINDOW_SIZE 1 MiB, connection window raised to 4 MiB; a pending CONNECT cannot buffer more than one stream window (GOAWAY FLOW_CONTROL_ERROR)', async () => {
    const hole = await startBlackhole();
    const gw = await startGateway({ connectTimeoutMs: 60_000 });
    try {
      const peer = await rawPeer(gw.port, spiffe('frontend'));
      peer.socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0))]));
      const settings = await peer.next((f) => f.type === SETTINGS && (f.flags & ACK) === 0);
      assert.equal(settingsOf(settings).get(SETTINGS_INITIAL_WINDOW_SIZE), MiB);
      const update = await peer.next((f) => f.type === WINDOW_UPDATE && f.streamId === 0);
      assert.equal(65_535 + update.payload.readUInt32BE(0), 4 * MiB);
      // Acknowledge the SETTINGS so the server's 1 MiB stream window is in force, then send a
      // CONNECT whose dial hangs and 1 MiB + 1 byte of early DATA: the server buffers one stream
      // window and no more, whatever the connection window. A peer that breaks flow control loses
      // the connection, GOAWAY(FLOW_CONTROL_ERROR), on Node 20 as on Node 24 (session.ts).
      peer.socket.write(Buffer.concat([frame(SETTINGS, ACK, 0, Buffer.alloc(0)), connectFrame(1, `127.0.0.1:${hole.port}`)]));
      await tunnelsRegistered(gw, 1);
      const chunks: Buffer[] = [];
      for (let i = 0; i < 64; i++) chunks.push(frame(DATA_FRAME, 0, 1, Buffer.alloc(16_384, 0x61)));
      chunks.push(frame(DATA_FRAME, 0, 1, Buffer.from('!')));
      peer.socket.write(Buffer.concat(chunks));
      const goaway = await peer.next((f) => f.type === GOAWAY);
      assert.equal(goaway.payload.readUInt32BE(4), h2c.NGHTTP2_FLOW_CONTROL_ERROR);
      assert.equal(goaway.payload.readUInt32BE(0) & 0x7fffffff, 1, 'last stream id: the one processed');
      if (!peer.socket.closed) await closed(peer.socket); // the gateway ended the connection
      // The reset aborted the dial (60 s connect timeout): records arrive now.
      const d = await gw.sink.decisionFor(1);
      assert.equal(d.status, 0);
      assert.equal((await gw.sink.closeFor(d.decisionId)).closeReason, 'client_reset');
      assert.equal(gw.server.tunnels.size, 0);
    } finally {
      hole.close();
      await gw.close();
    }
  });

  test('dials in flight are capped per connection: beyond maxPendingDialsPerConnection a CONNECT waits for a slot without dialing (test/hbone/dial-queue.test.ts); a reset frees a slot', async () => {
    const hole = await startBlackhole();
    const echo = await startUpstream('echo');
    const refused: string[] = [];
    const gw = await startGateway({ connectTimeoutMs: 60_000, maxPendingDialsPerConnection: 2, observer: { refused: (limit) => refused.push(limit) } });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const a = connectNoWait(client, `127.0.0.1:${hole.port}`);
      const b = connectNoWait(client, `127.0.0.1:${hole.port}`);
      await tunnelsRegistered(gw, 2);
      const connectionId = gw.server.tunnels.list()[0]!.connectionId;
      const over = connectNoWait(client, `127.0.0.1:${echo.port}`);
      await tunnelsRegistered(gw, 3);
      // The cap is per connection: another connection dials at once, while `over` still waits.
      const other = await gw.connect(spiffe('frontend'));
      const elsewhere = await other.openTunnel(`127.0.0.1:${echo.port}`);
      assert.equal(elsewhere.status, 200);
      elsewhere.stream.end();
      await readAll(elsewhere.stream);
      assert.equal(echo.connections, 1, 'nothing dialed beyond the cap');
      // A reset aborts its dial and frees the slot; the waiting CONNECT takes it.
      a.close(h2c.NGHTTP2_CANCEL);
      const da = await gw.sink.decisionFor(a.id!, connectionId);
      assert.equal((await gw.sink.closeFor(da.decisionId)).closeReason, 'client_reset');
      const [headers] = (await once(over, 'response')) as [Record<string, string>];
      assert.equal(Number(headers[':status']), 200);
      const dOver = await gw.sink.decisionFor(over.id!, connectionId);
      assert.equal(dOver.status, 200);
      assert.ok(gw.sink.decisions.indexOf(dOver) > gw.sink.decisions.indexOf(da), 'answered after the slot freed');
      const reading = readAll(over);
      over.end('after the slot freed');
      assert.equal((await reading).toString(), 'after the slot freed');
      assert.deepEqual(refused, [], 'a CONNECT that waits is not refused');
      b.close(h2c.NGHTTP2_CANCEL);
      const db = await gw.sink.decisionFor(b.id!, connectionId);
      assert.equal((await gw.sink.closeFor(db.decisionId)).closeReason, 'client_reset');
    } finally {
      hole.close();
      await gw.close();
      await echo.close();
    }
  });

  test('maxPendingDialsPerConnection must be a positive integer', async () => {
    await assert.rejects(startGateway({ maxPendingDialsPerConnection: 0 }), /maxPendingDialsPerConnection/);
  });
});

describe('HBONE hardening: a client reset during the dial', () => {
  test('aborts the dial at once: decision record allow/allowed status 0, close record client_reset, no dial failure counted', async () => {
    const hole = await startBlackhole();
    const failures: DialFailureKind[] = [];
    // 60 s connect timeout: the close record can only arrive within the test if the reset aborted the dial.
    const gw = await startGateway({ connectTimeoutMs: 60_000, observer: { upstreamFailed: (k) => void failures.push(k) } });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const streams = Array.from({ length: 10 }, () => connectNoWait(client, `127.0.0.1:${hole.port}`));
      await tunnelsRegistered(gw, streams.length);
      for (const s of streams) s.close(h2c.NGHTTP2_CANCEL);
      for (const s of streams) {
        const d = await gw.sink.decisionFor(s.id!);
        assert.equal(d.decision, 'allow');
        assert.equal(d.reason, 'allowed', 'the decision record keeps what the policy said');
        assert.equal(d.status, 0, 'no answer could be sent');
        assert.equal(d.rule, 'sa-frontend');
        const c = await gw.sink.closeFor(d.decisionId);
        assert.equal(c.closeReason, 'client_reset');
        assert.equal(c.bytesSent, 0);
      }
      assert.equal(gw.server.tunnels.size, 0);
      assert.deepEqual(failures, [], 'an abandoned dial is not an upstream failure');
      // The connection is still good for new tunnels.
      const hold = await startUpstream('hold');
      try {
        const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
        assert.equal(t.status, 200);
        t.stream.close(h2c.NGHTTP2_CANCEL);
      } finally {
        await hold.close();
      }
    } finally {
      hole.close();
      await gw.close();
    }
  });
});

describe('HBONE hardening: drain', () => {
  let echo: Upstream;
  before(async () => {
    echo = await startUpstream('echo');
  });
  after(async () => {
    await echo.close();
  });

  test('two GOAWAYs: first (NO_ERROR, 2^31-1) and a PING, the final one (last stream id) only after the PING ack; open tunnels finish', async () => {
    const gw = await startGateway();
    try {
      const peer = await rawPeer(gw.port, spiffe('frontend'));
      peer.socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0)), connectFrame(1, `127.0.0.1:${echo.port}`)]));
      const ok = await peer.next((f) => f.streamId === 1 && f.type === HEADERS);
      assert.equal(ok.payload[0], 0x88, ':status 200 (static index 8)');
      const draining = gw.server.drain(30_000);

      const first = await peer.next((f) => f.type === GOAWAY);
      assert.equal(first.payload.readUInt32BE(0) & 0x7fffffff, 2 ** 31 - 1, 'first GOAWAY: last stream id 2^31-1');
      assert.equal(first.payload.readUInt32BE(4), h2c.NGHTTP2_NO_ERROR);
      const firstAt = peer.frames.indexOf(first);
      const ping = await peer.next((f) => f.type === PING && (f.flags & ACK) === 0 && peer.frames.indexOf(f) > firstAt);
      assert.equal(peer.frames.filter((f) => f.type === GOAWAY).length, 1, 'no final GOAWAY before the PING is acked');

      // A CONNECT that races the first GOAWAY. nghttp2 ignores it on Node 20 and 24 (no shutdown-notice
      // API: session.ts gracefulGoaway); the final GOAWAY then tells the client it was never processed.
      peer.socket.write(connectFrame(3, `127.0.0.1:${echo.port}`));
      peer.socket.write(frame(PING, ACK, 0, ping.payload));
      const last = await peer.next((f) => f.type === GOAWAY && f !== first);
      assert.ok(peer.frames.indexOf(last) > peer.frames.indexOf(ping));
      assert.equal(last.payload.readUInt32BE(0) & 0x7fffffff, 1, 'final GOAWAY: the last stream processed');
      assert.equal(last.payload.readUInt32BE(4), h2c.NGHTTP2_NO_ERROR);

      // The open tunnel still carries bytes both ways and finishes on its own.
      peer.socket.write(frame(DATA_FRAME, END_STREAM, 1, Buffer.from('last words')));
      const data = await peer.next((f) => f.type === DATA_FRAME && f.streamId === 1 && f.payload.length > 0);
      assert.equal(data.payload.toString(), 'last words');
      const { remaining } = await draining;
      assert.equal(remaining, 0);
      assert.deepEqual(gw.sink.decisions.map((d) => d.streamId), [1], 'stream 3 was never processed');
      assert.deepEqual(gw.sink.closes.map((c) => c.closeReason), ['completed']);
      peer.socket.destroy();
    } finally {
      await gw.close();
    }
  });

  test('a peer that never acks the PING still gets the final GOAWAY at the drain deadline', async () => {
    const gw = await startGateway();
    try {
      const peer = await rawPeer(gw.port, spiffe('frontend'));
      peer.socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0)), connectFrame(1, `127.0.0.1:${echo.port}`)]));
      await peer.next((f) => f.streamId === 1 && f.type === HEADERS);
      const { remaining } = await gw.server.drain(50);
      assert.equal(remaining, 1);
      const goaways = await peer.next((f) => f.type === GOAWAY && (f.payload.readUInt32BE(0) & 0x7fffffff) === 1);
      assert.equal(goaways.payload.readUInt32BE(4), h2c.NGHTTP2_NO_ERROR);
      assert.equal((await gw.sink.closeFor(gw.sink.decisions[0]!.decisionId)).closeReason, 'draining');
      peer.socket.destroy();
    } finally {
      await gw.close();
    }
  });

  test('a Node client sees the GOAWAYs and its open tunnel finishes', async () => {
    const gw = await startGateway();
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
      const codes: [number, number][] = [];
      client.session.on('goaway', (code: number, lastStreamId: number) => void codes.push([code, lastStreamId]));
      const draining = gw.server.drain(30_000);
      const reading = readAll(t.stream);
      t.stream.end('bye');
      assert.equal((await reading).toString(), 'bye');
      assert.deepEqual(await draining, { remaining: 0 });
      assert.ok(codes.length >= 1);
      assert.deepEqual(codes[0], [h2c.NGHTTP2_NO_ERROR, 2 ** 31 - 1]);
    } finally {
      await gw.close();
    }
  });
});

describe('HBONE hardening: drain of connections with no stream left open', () => {
  // Once a server has sent a GOAWAY and no stream is open, nghttp2 no longer wants to read and
  // Node stops reading the socket: a PING ack (or the peer's FIN) is never read, and the drain used
  // to wait for its whole deadline (seen as a 5 s shutdown after a refused CONNECT).
  let echo: Upstream;
  before(async () => {
    echo = await startUpstream('echo');
  });
  after(async () => {
    await echo.close();
  });

  test('a connection whose CONNECTs all finished gets its final GOAWAY at once; the drain does not wait for its deadline', { timeout: 30_000 }, async () => {
    const gw = await startGateway();
    try {
      const client = await gw.connect(spiffe('stranger'));
      const refused = await client.openTunnel(`127.0.0.1:${echo.port}`);
      assert.equal(refused.status, 401);
      await closed(refused.stream);
      const goaways: number[] = [];
      client.session.on('goaway', (_code: number, lastStreamId: number) => void goaways.push(lastStreamId));
      const clientClosed = closed(client.session);
      // A deadline far beyond the test's timeout: only the connection's own end can finish the drain.
      assert.deepEqual(await gw.server.drain(600_000), { remaining: 0 });
      await clientClosed;
      assert.equal(goaways.at(-1), 1, 'the final GOAWAY names the last stream processed');
    } finally {
      await gw.close();
    }
  });

  test('the final GOAWAY goes out when the last open stream closes, without waiting for the PING ack', { timeout: 30_000 }, async () => {
    const gw = await startGateway();
    try {
      const peer = await rawPeer(gw.port, spiffe('frontend'));
      peer.socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0)), connectFrame(1, `127.0.0.1:${echo.port}`)]));
      await peer.next((f) => f.streamId === 1 && f.type === HEADERS);
      const draining = gw.server.drain(600_000);
      const first = await peer.next((f) => f.type === GOAWAY);
      await peer.next((f) => f.type === PING && (f.flags & ACK) === 0 && peer.frames.indexOf(f) > peer.frames.indexOf(first));
      // The PING is never acked; the tunnel finishes (the echo upstream ends after the client's end).
      peer.socket.write(frame(DATA_FRAME, END_STREAM, 1, Buffer.from('bye')));
      const last = await peer.next((f) => f.type === GOAWAY && f !== first);
      assert.equal(last.payload.readUInt32BE(0) & 0x7fffffff, 1);
      assert.deepEqual(await draining, { remaining: 0 });
      assert.deepEqual(gw.sink.closes.map((c) => c.closeReason), ['completed']);
      peer.socket.destroy();
    } finally {
      await gw.close();
    }
  });

  test('a client reset of the last open stream during a drain is still recorded as client_reset', { timeout: 30_000 }, async () => {
    const gw = await startGateway();
    try {
      const peer = await rawPeer(gw.port, spiffe('frontend'));
      peer.socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0)), connectFrame(1, `127.0.0.1:${echo.port}`)]));
      await peer.next((f) => f.streamId === 1 && f.type === HEADERS);
      const draining = gw.server.drain(600_000);
      const first = await peer.next((f) => f.type === GOAWAY);
      await peer.next((f) => f.type === PING && (f.flags & ACK) === 0 && peer.frames.indexOf(f) > peer.frames.indexOf(first));
      const rst = Buffer.alloc(4);
      rst.writeUInt32BE(h2c.NGHTTP2_INTERNAL_ERROR);
      peer.socket.write(frame(RST_STREAM, 0, 1, rst));
      assert.deepEqual(await draining, { remaining: 0 });
      // The session closes right after its last stream: the tunnel must not read that as the connection lost.
      assert.deepEqual(gw.sink.closes.map((c) => c.closeReason), ['client_reset']);
      peer.socket.destroy();
    } finally {
      await gw.close();
    }
  });
});

describe('HBONE hardening: failures between the dial and the 200', () => {
  test('an exception after the dial destroys the upstream socket and still writes one decision record (503) and a close record', async () => {
    const hold = await startUpstream('hold');
    let calls = 0;
    // Fault injection: the first decision record of an allowed CONNECT is built after the dial,
    // right before tunnel.open(); making it throw exercises the failure path there.
    const gw = await startGateway({
      headerAuditPolicy: () => {
        if (++calls === 1) throw new Error('injected fault');
        return DEFAULT_HEADER_AUDIT_POLICY;
      },
    });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const answer = client.openTunnel(`127.0.0.1:${hold.port}`);
      const up = await hold.nextSocket();
      // The server destroyed the socket it had dialed: the destination reads EOF, nothing else.
      assert.equal((await readAll(up)).length, 0);
      const t = await answer;
      assert.equal(t.status, 503);
      assert.equal(gw.sink.decisions.length, 1);
      const d = gw.sink.decisions[0]!;
      assert.equal(d.decision, 'allow');
      assert.equal(d.reason, 'upstream_failed');
      assert.equal(d.status, 503);
      const c = await gw.sink.closeFor(d.decisionId);
      assert.equal(c.closeReason, 'error');
      assert.equal(gw.server.tunnels.size, 0);
    } finally {
      await gw.close();
      await hold.close();
    }
  });

  test('with proxyProtocol the PROXY header is built before the dial and written first', async () => {
    const hold = await startUpstream('hold');
    const gw = await startGateway({ proxyProtocol: true });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
      assert.equal(t.status, 200);
      const up = await hold.nextSocket();
      const reading = readAll(up);
      t.stream.end('payload');
      const got = await reading;
      assert.equal(got.subarray(0, 12).toString('latin1'), '\r\n\r\n\0\r\nQUIT\n');
      assert.ok(got.toString('latin1').endsWith('payload'));
      up.end();
    } finally {
      await gw.close();
      await hold.close();
    }
  });
});

describe('HBONE hardening: destinations', () => {
  test('a host:port without a route is 503 upstream_failed with a log line; an IP outside the networks keeps the deny status', async () => {
    const echo = await startUpstream('echo');
    const { log, lines } = memoryLog();
    const gw = await startGateway({ log, destinations: { allow: [{ cidr: '127.0.0.1/32' }], routes: { 'api.svc:80': `127.0.0.1:${echo.port}` } } });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const u = await client.openTunnel('unknown.svc:80');
      assert.equal(u.status, 503);
      const du = await gw.sink.decisionFor(u.stream.id!);
      assert.deepEqual(
        { decision: du.decision, reason: du.reason, status: du.status, policy: du.policy, rule: du.rule, destination: du.destination },
        { decision: 'allow', reason: 'upstream_failed', status: 503, policy: 'allow-sa', rule: 'sa-frontend', destination: { authority: 'unknown.svc:80', ip: '', port: 80, host: 'unknown.svc', service: '', namespace: '', workload: '', principal: '' } },
      );
      assert.ok(lines.some((l) => l['msg'] === 'CONNECT to a host:port without a configured route: 503'));
      assert.equal(echo.connections, 0);
      // Recorded like a failed dial: every allow/upstream_failed decision has its close record.
      const cu = await gw.sink.closeFor(du.decisionId);
      assert.equal(cu.closeReason, 'upstream_failed');
      assert.equal(cu.bytesSent + cu.bytesReceived, 0);

      const out = await client.openTunnel('10.1.2.3:80');
      assert.equal(out.status, 401);
      const dout = await gw.sink.decisionFor(out.stream.id!);
      assert.equal(dout.decision, 'deny');
      assert.equal(dout.reason, 'destination_not_allowed');

      // A policy deny still wins over the missing route.
      const stranger = await gw.connect(spiffe('stranger'));
      const s = await stranger.openTunnel('unknown.svc:80');
      assert.equal(s.status, 401);
      assert.equal((await gw.sink.decisionFor(s.stream.id!, gw.sink.decisions.at(-1)!.connectionId)).reason, 'no_allow_match');
    } finally {
      await gw.close();
      await echo.close();
    }
  });
});
