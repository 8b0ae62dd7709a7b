/**
 * Regression (docs/operating.md "Limits"): the dial cap (limits.maxPendingDialsPerConnection, 100) sat below the stream
 * limit the connection advertises (200), so a legitimate burst of 200 CONNECTs on one connection
 * got ~100 answers of 503. CONNECTs beyond the cap now wait for a dial slot in arrival order,
 * within their connect timeout counted from arrival (src/hbone/dial-queue.ts).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { constants as h2c, type ClientHttp2Stream } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { HboneClientSession } from '../../src/hbone/client.ts';
import { DialAdmission, DialSlotTimeoutError } from '../../src/hbone/dial-queue.ts';
import { UpstreamDialError, type DialFailureKind } from '../../src/upstream/connector.ts';
import { TcpTarget } from '../../src/upstream/tcp.ts';
import {
  frame,
  hpack,
  makeDecision,
  rawPeer,
  readAll,
  spiffe,
  startBlackhole,
  startGateway,
  startUpstream,
  END_HEADERS,
  HEADERS,
  PREFACE,
  GOAWAY,
  SETTINGS,
} from './fixture.ts';

const MiB = 1024 * 1024;
const DATA_FRAME = 0x0;
const ACK = 0x1;
const WINDOW_UPDATE = 0x8;

/** A CONNECT sent without waiting for its answer (the client's openTunnel awaits the response). */
function connectNoWait(client: HboneClientSession, authority: string): ClientHttp2Stream {
  const stream = client.session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
  stream.on('error', () => {});
  return stream;
}

/** Resolves once `pred` holds; checked once per event-loop turn. */
async function until(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setImmediate(r));
}

/**
 * An echo backend whose accept is held until `release()`: python listens with backlog 0 and one
 * connection fills the accept queue, so Linux drops every further SYN and each connect hangs in
 * SYN_SENT. `release()` raises the backlog (a second listen(2) updates it) and starts accepting:
 * the held connects complete at their next SYN retransmission. Loopback only.
 */
async function startHeldBackend(): Promise<{ port: number; release(): void; close(): void }> {
  const py = spawn('/usr/bin/python3', ['-c', [
    'import selectors, socket, sys',
    's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.readline()',
    's.listen(4096); s.setblocking(False)',
    'sel = selectors.DefaultSelector(); sel.register(s, selectors.EVENT_READ); sel.register(sys.stdin, selectors.EVENT_READ)',
    'while True:',
    '    for key, _ in sel.select():',
    '        if key.fileobj is s:',
    '            while True:',
    '                try: c, _ = s.accept()',
    '                except BlockingIOError: break',
    '                c.setblocking(False); sel.register(c, selectors.EVENT_READ)',
    '        elif key.fileobj is sys.stdin:',
    '            if not sys.stdin.readline(): sys.exit(0)',
    '        else:',
    '            c = key.fileobj',
    '            try: data = c.recv(65536)',
    '            except OSError: data = b""',
    '            if data: c.sendall(data)',
    '            else:',
    '                sel.unregister(c)',
    '                try: c.shutdown(socket.SHUT_WR)',
    '                except OSError: pass',
    '                c.close()',
  ].join('\n')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(py.stdout!, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  const filler: Socket = netConnect({ host: '127.0.0.1', port });
  filler.on('error', () => {});
  await once(filler, 'connect');
  return {
    port,
    release() {
      py.stdin!.write('go\n');
    },
    close() {
      filler.destroy();
      py.stdin!.end();
      py.kill();
    },
  };
}

/** Sockets of this host in SYN_SENT towards 127.0.0.1:`port` (/proc/net/tcp, state 02). */
function synSentTo(port: number): number {
  const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1).filter((l) => {
    const f = l.trim().split(/\s+/);
    return f[2] === want && f[3] === '02';
  }).length;
}

describe('HBONE dial queue: CONNECTs beyond the dial cap wait for a slot', () => {
  test('regression: 200 simultaneous CONNECTs on one connection (200 streams advertised, 100 dial slots) all get 200 once the backend accepts', { timeout: 60_000 }, async () => {
    const backend = await startHeldBackend();
    const refused: string[] = [];
    const failures: DialFailureKind[] = [];
    // Default limits: 200 concurrent streams, maxPendingDialsPerConnection 100.
    const gw = await startGateway({ connectTimeoutMs: 60_000, observer: { refused: (l) => void refused.push(l), upstreamFailed: (k) => void failures.push(k) } });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const tunnels = Array.from({ length: 200 }, () => client.openTunnel(`127.0.0.1:${backend.port}`));
      // Every CONNECT reached the server: dialing or waiting (registered), or answered already.
      await until(() => gw.server.tunnels.size + gw.sink.decisions.length >= 200);
      assert.equal(gw.sink.decisions.length, 0, 'no CONNECT of the burst is answered while the backend holds its accept');
      assert.equal(synSentTo(backend.port), 100, 'the cap still holds: 100 dials in flight, the other 100 wait');
      backend.release();
      const answered = await Promise.all(tunnels);
      assert.deepEqual(answered.map((t) => t.status), Array(200).fill(200));
      assert.equal(gw.sink.decisions.length, 200);
      for (const d of gw.sink.decisions) {
        assert.equal(d.decision, 'allow');
        assert.equal(d.reason, 'allowed');
        assert.equal(d.status, 200);
      }
      assert.deepEqual(refused, []);
      assert.deepEqual(failures, []);
      // Every tunnel carries bytes both ways.
      const echoed = await Promise.all(answered.map((t, i) => {
        const reading = readAll(t.stream);
        t.stream.end(`tunnel ${i}`);
        return reading;
      }));
      assert.deepEqual(echoed.map((b) => b.toString()), answered.map((_, i) => `tunnel ${i}`));
      await gw.sink.until(() => gw.sink.closes.length === 200);
      assert.ok(gw.sink.closes.every((c) => c.closeReason === 'completed'));
      await client.close();
    } finally {
      backend.close();
      await gw.close();
    }
  });

  test('a waiting CONNECT whose connect budget runs out is answered 503 upstream_failed, after the dial it waited for, with its records', { timeout: 30_000 }, async () => {
    const hole = await startBlackhole();
    const connectTimeoutMs = 2_000;
    const refused: string[] = [];
    const failures: { kind: DialFailureKind; ms: number }[] = [];
    const gw = await startGateway({
      connectTimeoutMs,
      maxPendingDialsPerConnection: 1,
      observer: { refused: (l) => void refused.push(l), upstreamFailed: (kind, ms) => void failures.push({ kind, ms }) },
    });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const a = connectNoWait(client, `127.0.0.1:${hole.port}`);
      const b = connectNoWait(client, `127.0.0.1:${hole.port}`);
      const da = await gw.sink.decisionFor(a.id!);
      const db = await gw.sink.decisionFor(b.id!);
      // B waited for A's slot: its answer follows A's (before the queue, B was refused at once).
      assert.deepEqual(gw.sink.decisions.map((d) => d.streamId), [a.id, b.id]);
      for (const d of [da, db]) {
        assert.equal(d.decision, 'allow');
        assert.equal(d.reason, 'upstream_failed');
        assert.equal(d.status, 503);
        assert.equal(d.rule, 'sa-frontend');
        assert.equal((await gw.sink.closeFor(d.decisionId)).closeReason, 'upstream_failed');
      }
      assert.equal(gw.sink.decisions.length, 2, 'exactly one decision record per CONNECT');
      assert.equal(gw.server.tunnels.size, 0);
      // A's dial timed out. B's budget (connectTimeoutMs from its arrival) was spent waiting: it is
      // refused by the dial cap without a dial, or, if a sliver was left when A's slot freed, its
      // dial had only that sliver, never a budget of its own.
      assert.equal(failures[0]?.kind, 'timeout');
      assert.equal(refused.length + failures.length, 2, `${JSON.stringify({ refused, failures })}`);
      if (refused.length === 1) assert.deepEqual(refused, ['max_pending_dials']);
      else assert.ok(failures[1]!.kind === 'timeout' && failures[1]!.ms < connectTimeoutMs / 2, JSON.stringify(failures));
      await client.close();
    } finally {
      hole.close();
      await gw.close();
    }
  });

  test('a waiting CONNECT reset by the client leaves the queue (client_reset) and frees no slot it did not hold', { timeout: 30_000 }, async () => {
    const hole = await startBlackhole();
    const echo = await startUpstream('echo');
    const failures: DialFailureKind[] = [];
    // Decision and close records in the order they were written, across both kinds.
    const events: string[] = [];
    const gw = await startGateway({
      connectTimeoutMs: 60_000,
      maxPendingDialsPerConnection: 1,
      observer: {
        upstreamFailed: (k) => void failures.push(k),
        decision: (r) => void events.push(`decision ${r.streamId}`),
        tunnelClosed: (r) => void events.push(`close ${r.streamId}`),
      },
    });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const a = connectNoWait(client, `127.0.0.1:${hole.port}`); // holds the one slot
      const b = connectNoWait(client, `127.0.0.1:${echo.port}`); // waits
      const c = connectNoWait(client, `127.0.0.1:${echo.port}`); // waits behind b
      let cStatus = 0;
      c.once('response', (h) => (cStatus = Number(h[':status'])));
      await until(() => gw.server.tunnels.size === 3);
      b.close(h2c.NGHTTP2_CANCEL);
      const drb = await gw.sink.decisionFor(b.id!);
      assert.equal(drb.decision, 'allow');
      assert.equal(drb.reason, 'allowed', 'the decision record keeps what the policy said');
      assert.equal(drb.status, 0, 'no answer could be sent');
      assert.equal((await gw.sink.closeFor(drb.decisionId)).closeReason, 'client_reset');
      assert.equal(gw.server.tunnels.size, 2);
      // C still waits for A's slot: b's leaving freed nothing.
      assert.equal(cStatus, 0);
      assert.equal(echo.connections, 0, 'nothing dialed the echo backend yet');
      a.close(h2c.NGHTTP2_CANCEL);
      const dra = await gw.sink.decisionFor(a.id!);
      const closeA = await gw.sink.closeFor(dra.decisionId);
      assert.equal(closeA.closeReason, 'client_reset');
      // A's slot goes to C.
      const [headers] = (await once(c, 'response')) as [Record<string, string>];
      assert.equal(Number(headers[':status']), 200);
      const drc = await gw.sink.decisionFor(c.id!);
      assert.equal(drc.status, 200);
      assert.ok(events.indexOf(`decision ${c.id}`) > events.indexOf(`close ${a.id}`), `C was dialed only once A left: ${events.join(', ')}`);
      const reading = readAll(c);
      c.end('after the slot freed');
      assert.equal((await reading).toString(), 'after the slot freed');
      assert.equal(echo.connections, 1);
      assert.deepEqual(failures, [], 'an abandoned wait or dial is not an upstream failure');
      await gw.sink.closeFor(drc.decisionId);
      assert.equal(gw.server.tunnels.size, 0);
      await client.close();
    } finally {
      hole.close();
      await gw.close();
      await echo.close();
    }
  });

  test('a policy recheck re-decides waiting CONNECTs too: now denied, they get the deny status (policy_changed) and never dial', { timeout: 30_000 }, async () => {
    const hole = await startBlackhole();
    const echo = await startUpstream('echo');
    const gw = await startGateway({ connectTimeoutMs: 60_000, maxPendingDialsPerConnection: 1 });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const a = connectNoWait(client, `127.0.0.1:${hole.port}`); // dialing
      const b = connectNoWait(client, `127.0.0.1:${echo.port}`); // waiting
      await until(() => gw.server.tunnels.size === 2);
      const revoked = gw.server.recheck(() => makeDecision(false, 'lockdown', 'deny-all', 'explicit_deny'));
      assert.equal(revoked, 2, 'the waiting CONNECT is re-checked like the dialing one');
      for (const s of [a, b]) {
        const d = await gw.sink.decisionFor(s.id!);
        assert.equal(d.decision, 'deny');
        assert.equal(d.reason, 'policy_changed');
        assert.equal(d.status, 401);
        assert.equal(d.policy, 'lockdown');
        const c = await gw.sink.closeFor(d.decisionId);
        assert.equal(c.closeReason, 'policy_changed');
        assert.equal(c.rule, 'deny-all');
      }
      assert.equal(echo.connections, 0, 'the revoked waiter never dialed');
      assert.equal(gw.sink.decisions.length, 2);
      assert.equal(gw.server.tunnels.size, 0);
      await client.close();
    } finally {
      hole.close();
      await gw.close();
      await echo.close();
    }
  });

  test('a drain answers waiting CONNECTs 503 (draining) at its deadline, like dialing ones', { timeout: 30_000 }, async () => {
    const hole = await startBlackhole();
    const gw = await startGateway({ connectTimeoutMs: 60_000, maxPendingDialsPerConnection: 1 });
    try {
      const client = await gw.connect(spiffe('frontend'));
      const a = connectNoWait(client, `127.0.0.1:${hole.port}`);
      const b = connectNoWait(client, `127.0.0.1:${hole.port}`);
      await until(() => gw.server.tunnels.size === 2);
      const { remaining } = await gw.server.drain(0);
      assert.equal(remaining, 2);
      for (const s of [a, b]) {
        const d = await gw.sink.decisionFor(s.id!);
        assert.equal(d.reason, 'draining');
        assert.equal(d.status, 503);
        assert.equal((await gw.sink.closeFor(d.decisionId)).closeReason, 'draining');
      }
      assert.equal(gw.sink.decisions.length, 2);
      assert.equal(gw.server.tunnels.size, 0);
    } finally {
      hole.close();
      await gw.close();
    }
  });

  test('a waiting stream cannot buffer more than one stream window of early DATA (GOAWAY FLOW_CONTROL_ERROR), and the reset takes it out of the queue', { timeout: 30_000 }, async () => {
    const hole = await startBlackhole();
    const gw = await startGateway({ connectTimeoutMs: 60_000, maxPendingDialsPerConnection: 1 });
    try {
      const peer = await rawPeer(gw.port, spiffe('frontend'));
      peer.socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0))]));
      await peer.next((f) => f.type === SETTINGS && (f.flags & ACK) === 0);
      await peer.next((f) => f.type === WINDOW_UPDATE && f.streamId === 0); // connection window raised
      const connect = (id: number): Buffer => frame(HEADERS, END_HEADERS, id, hpack([[':method', 'CONNECT'], [':authority', `127.0.0.1:${hole.port}`]]));
      // Stream 1 dials (and hangs), stream 3 waits for its slot; then 1 MiB + 1 byte on stream 3.
      peer.socket.write(Buffer.concat([frame(SETTINGS, ACK, 0, Buffer.alloc(0)), connect(1), connect(3)]));
      await until(() => gw.server.tunnels.size === 2);
      const chunks: Buffer[] = [];
      for (let i = 0; i < 64; i++) chunks.push(frame(DATA_FRAME, 0, 3, Buffer.alloc(16_384, 0x61)));
      chunks.push(frame(DATA_FRAME, 0, 3, Buffer.from('!')));
      assert.equal(Buffer.concat(chunks).length - 65 * 9, MiB + 1);
      peer.socket.write(Buffer.concat(chunks));
      // A peer that breaks flow control loses the connection on Node 20 as on Node 24 (src/hbone/session.ts).
      const goaway = await peer.next((f) => f.type === GOAWAY);
      assert.equal(goaway.payload.readUInt32BE(4), h2c.NGHTTP2_FLOW_CONTROL_ERROR);
      const d = await gw.sink.decisionFor(3);
      assert.equal(d.status, 0);
      assert.equal((await gw.sink.closeFor(d.decisionId)).closeReason, 'client_reset');
      await gw.sink.decisionFor(1);
      assert.equal(gw.server.tunnels.size, 0, 'stream 1 went with its connection');
      peer.socket.destroy();
    } finally {
      hole.close();
      await gw.close();
    }
  });
});

describe('DialAdmission (one connection\'s dial slots)', () => {
  test('FIFO: waiters take freed slots in arrival order; an aborted waiter frees nothing; beyond maxHeld admit() refuses', { timeout: 30_000 }, async () => {
    const hole = await startBlackhole();
    const echo = await startUpstream('echo');
    try {
      const gate = new DialAdmission({ maxInFlight: 2, maxHeld: 5, connectTimeoutMs: 60_000 });
      const now = performance.now();
      const never = (): boolean => false;
      const h1 = gate.admit(new TcpTarget('127.0.0.1', hole.port), now, never)!;
      const h2 = gate.admit(new TcpTarget('127.0.0.1', hole.port), now, never)!;
      const w1 = gate.admit(new TcpTarget('127.0.0.1', echo.port), now, never)!;
      const w2 = gate.admit(new TcpTarget('127.0.0.1', echo.port), now, never)!;
      const w3 = gate.admit(new TcpTarget('127.0.0.1', echo.port), now, never)!;
      assert.deepEqual([h1.queued, h2.queued, w1.queued, w2.queued, w3.queued], [false, false, true, true, true]);
      assert.deepEqual([gate.inFlight, gate.waiting], [2, 3]);
      assert.equal(gate.admit(new TcpTarget('127.0.0.1', echo.port), now, never), null, 'maxHeld (5) reached');
      w2.abort();
      await assert.rejects(w2.promise, (e: unknown) => e instanceof UpstreamDialError && e.kind === 'aborted');
      assert.deepEqual([gate.inFlight, gate.waiting], [2, 2], 'the aborted waiter held no slot and freed none');
      assert.equal(w2.dialStartedAt, null);
      h1.abort();
      await assert.rejects(h1.promise, (e: unknown) => e instanceof UpstreamDialError && e.kind === 'aborted');
      // h1's slot went to w1 (first in line), not w3.
      assert.notEqual(w1.dialStartedAt, null);
      assert.equal(w3.dialStartedAt, null);
      const s1 = await w1.promise;
      // w1 connected: its slot went to w3.
      const s3 = await w3.promise;
      assert.ok(w3.dialStartedAt! >= w1.dialStartedAt!);
      assert.deepEqual([gate.inFlight, gate.waiting], [1, 0]);
      s1.destroy();
      s3.destroy();
      h2.abort();
      await assert.rejects(h2.promise);
      assert.deepEqual([gate.inFlight, gate.waiting], [0, 0]);
    } finally {
      hole.close();
      await echo.close();
    }
  });

  test('the connect budget counts from arrival: a waiter with none left when a slot frees fails with DialSlotTimeoutError, without a dial', async () => {
    const hole = await startBlackhole();
    const echo = await startUpstream('echo');
    try {
      const gate = new DialAdmission({ maxInFlight: 1, maxHeld: 10, connectTimeoutMs: 60_000 });
      const now = performance.now();
      const holder = gate.admit(new TcpTarget('127.0.0.1', hole.port), now, () => false)!;
      // Arrived a full connect timeout ago (the server never admits out of order: this stands for
      // a CONNECT that spent its budget waiting).
      const late = gate.admit(new TcpTarget('127.0.0.1', echo.port), now - 60_001, () => false)!;
      holder.abort();
      await assert.rejects(holder.promise);
      await assert.rejects(late.promise, (e: unknown) => e instanceof DialSlotTimeoutError && e.kind === 'timeout' && e.code === 'WG_UPSTREAM_TIMEOUT');
      assert.equal(late.dialStartedAt, null);
      assert.equal(echo.connections, 0, 'no dial was made');
      assert.deepEqual([gate.inFlight, gate.waiting], [0, 0], 'the slot passed on and came back');
    } finally {
      hole.close();
      await echo.close();
    }
  });

  test('a waiter that gets a slot dials with what is left of its budget, not a fresh connect timeout', { timeout: 20_000 }, async () => {
    const hole = await startBlackhole();
    try {
      const gate = new DialAdmission({ maxInFlight: 1, maxHeld: 10, connectTimeoutMs: 60_000 });
      const now = performance.now();
      const holder = gate.admit(new TcpTarget('127.0.0.1', hole.port), now, () => false)!;
      // 200 ms of its 60 s budget left: with a fresh budget this dial would hang past the test's timeout.
      const waiter = gate.admit(new TcpTarget('127.0.0.1', hole.port), now - 59_800, () => false)!;
      holder.abort();
      await assert.rejects(holder.promise);
      await assert.rejects(waiter.promise, (e: unknown) => e instanceof UpstreamDialError && !(e instanceof DialSlotTimeoutError) && e.kind === 'timeout');
      assert.notEqual(waiter.dialStartedAt, null, 'it dialed');
      assert.deepEqual([gate.inFlight, gate.waiting], [0, 0]);
    } finally {
      hole.close();
    }
  });

  test('a waiter whose stream closed before its turn is skipped without a dial', async () => {
    const hole = await startBlackhole();
    const echo = await startUpstream('echo');
    try {
      const gate = new DialAdmission({ maxInFlight: 1, maxHeld: 10, connectTimeoutMs: 60_000 });
      const now = performance.now();
      let closed = false;
      const holder = gate.admit(new TcpTarget('127.0.0.1', hole.port), now, () => false)!;
      const gone = gate.admit(new TcpTarget('127.0.0.1', echo.port), now, () => closed)!;
      const next = gate.admit(new TcpTarget('127.0.0.1', echo.port), now, () => false)!;
      closed = true;
      holder.abort();
      await assert.rejects(holder.promise);
      await assert.rejects(gone.promise, (e: unknown) => e instanceof UpstreamDialError && e.kind === 'aborted');
      const s = await next.promise;
      s.destroy();
      assert.equal(gone.dialStartedAt, null, 'skipped without a dial');
      assert.deepEqual([gate.inFlight, gate.waiting], [0, 0]);
    } finally {
      hole.close();
      await echo.close();
    }
  });
});
