/**
 * The tunnel's forwarding path (src/hbone/tunnel.ts): client -> destination writes coalesced per
 * event-loop turn, and a 256 KiB write budget per direction before the other side stops being
 * read. These tests pin what the tuning must never change: byte order and content, delivery of a
 * lone large message without more input (the corked upstream is always uncorked), FIN after the
 * last byte, and backpressure in the destination -> client direction.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { TUNNEL_WRITE_BUFFER_BYTES } from '../../src/hbone/tunnel.ts';
import { seededRandom } from '../../src/util/seeded-random.ts';
import { readAll, spiffe, startGateway, startUpstream } from './fixture.ts';

/** `n` bytes whose value depends on their offset, so a reordered or lost chunk changes the digest. */
function pattern(offset: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = ((offset + i) * 31 + ((offset + i) >>> 8)) & 0xff;
  return b;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('tunnel forwarding', () => {
  test('interleaved small and large writes reach the destination in order, byte-exact, FIN after the last byte', async () => {
    const hold = await startUpstream('hold');
    const gw = await startGateway();
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
      const up = await hold.nextSocket();
      const received = readAll(up); // resolves at the destination's EOF (the client's END_STREAM)
      // Seeded sizes straddling the coalescing threshold (4 KiB) and the write budget (256 KiB).
      const rand = seededRandom(0x5eed);
      const sent: Buffer[] = [];
      let offset = 0;
      for (let i = 0; i < 400; i++) {
        const r = rand();
        const n = r < 0.4 ? 1 + Math.floor(rand() * 200) : r < 0.8 ? 4096 + Math.floor(rand() * 60_000) : 200_000 + Math.floor(rand() * 200_000);
        const chunk = pattern(offset, n);
        offset += n;
        sent.push(chunk);
        if (!t.stream.write(chunk)) await once(t.stream, 'drain');
      }
      t.stream.end();
      const got = await received;
      const expected = Buffer.concat(sent);
      assert.equal(got.length, expected.length);
      assert.equal(sha(got), sha(expected));
      up.end();
      await readAll(t.stream);
      const d = await gw.sink.decisionFor(t.stream.id!);
      const c = await gw.sink.closeFor(d.decisionId);
      assert.equal(c.closeReason, 'completed');
      assert.equal(c.bytesReceived, expected.length);
      await client.close();
    } finally {
      await gw.close();
      await hold.close();
    }
  });

  test('a lone message at or above the coalescing threshold is delivered without further input, each round trip', async () => {
    const echo = await startUpstream('echo');
    const gw = await startGateway();
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
      let buffered = Buffer.alloc(0);
      let want = 0;
      let wake: (() => void) | null = null;
      t.stream.on('data', (d: Buffer) => {
        buffered = Buffer.concat([buffered, d]);
        if (buffered.length >= want && wake) wake();
      });
      // Ping-pong: the next message is sent only after the echo of the previous one, so nothing
      // but the end of the event-loop turn can flush a corked upstream.
      for (const size of [4096, 8192, 65_536, 4095, 300_000]) {
        const msg = pattern(size, size);
        want = size;
        buffered = Buffer.alloc(0);
        const echoed = new Promise<void>((r) => (wake = r));
        t.stream.write(msg);
        await echoed;
        wake = null;
        assert.equal(sha(buffered), sha(msg), `echo of ${size} bytes`);
      }
      t.stream.end();
      await once(t.stream, 'end');
      await client.close();
    } finally {
      await gw.close();
      await echo.close();
    }
  });

  test('backpressure destination -> client: a client that stops reading stalls the destination, nothing is lost', async () => {
    const hold = await startUpstream('hold');
    const gw = await startGateway();
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
      const up: Socket = await hold.nextSocket();
      t.stream.pause(); // the client reads nothing
      const total = 64 * 1024 * 1024;
      const chunk = pattern(0, 1024 * 1024);
      for (let sent = 0; sent < total; sent += chunk.length) up.write(chunk);
      up.end();
      // Yield to I/O until the gateway has read more than the client's windows could take, then more turns.
      const taken = (): number => gw.server.tunnels.list()[0]?.bytesSent ?? 0;
      while (taken() < 2 * 1024 * 1024) await new Promise((r) => setImmediate(r));
      for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r));
      // What the gateway read is bounded by the client's windows, the write budget and the
      // loopback socket buffers: far below what the destination queued.
      const bound = 24 * 1024 * 1024 + TUNNEL_WRITE_BUFFER_BYTES;
      assert.ok(taken() < bound, `gateway read ${taken()} bytes from the destination`);
      let received = 0;
      const gotHash = createHash('sha256');
      t.stream.on('data', (d: Buffer) => {
        received += d.length;
        gotHash.update(d);
      });
      const ended = once(t.stream, 'end');
      t.stream.resume();
      await ended;
      assert.equal(received, total);
      const wantHash = createHash('sha256');
      for (let i = 0; i < total / chunk.length; i++) wantHash.update(chunk);
      assert.equal(gotHash.digest('hex'), wantHash.digest('hex'), 'the bytes arrive in order and intact');
      t.stream.end();
      const d = await gw.sink.decisionFor(t.stream.id!);
      const c = await gw.sink.closeFor(d.decisionId);
      assert.equal(c.bytesSent, total);
      await client.close();
    } finally {
      await gw.close();
      await hold.close();
    }
  });
});
