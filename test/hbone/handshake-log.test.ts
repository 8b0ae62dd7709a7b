/**
 * A client whose handshake fails is logged at `warn` with its address and the reason in words,
 * at most 10 lines a minute however fast it retries (docs/operating.md, "Logs"); the metric hook
 * still sees every failure. Real TLS on 127.0.0.1, certificates from the test PKI.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { createOpsLogger } from '../../src/telemetry/log.ts';
import { spiffe, startGateway, type Gateway } from './fixture.ts';
import { testPki } from '../helpers/pki.ts';

type Line = Record<string, unknown>;

/** Items as they arrive, and a wait for the first `count` matching ones. */
class Collector<T> {
  readonly items: T[] = [];
  readonly #waiters: { pred: (x: T) => boolean; count: number; resolve: (xs: T[]) => void }[] = [];

  push(x: T): void {
    this.items.push(x);
    this.#check();
  }

  waitFor(pred: (x: T) => boolean, count = 1): Promise<T[]> {
    return new Promise((resolve) => {
      this.#waiters.push({ pred, count, resolve });
      this.#check();
    });
  }

  #check(): void {
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const w = this.#waiters[i]!;
      const got = this.items.filter(w.pred);
      if (got.length >= w.count) {
        this.#waiters.splice(i, 1);
        w.resolve(got.slice(0, w.count));
      }
    }
  }
}

/** One TLS client that fails: resolves when the server has closed the connection. */
function failingClient(port: number, cert: { chainPem: string; keyPem: string }): Promise<{ localPort: number }> {
  const pki = testPki();
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, cert: cert.chainPem, key: cert.keyPem, ca: pki.trustBundlePem, ALPNProtocols: ['h2'], servername: 'localhost' });
    let localPort = 0;
    socket.once('secureConnect', () => (localPort = socket.localPort ?? 0));
    socket.on('error', () => {});
    socket.once('close', () => resolve({ localPort }));
  });
}

describe('failed TLS handshakes are logged at warn, rate-limited', () => {
  const capture = new Collector<Line>();
  const failures = new Collector<string>();
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({
      log: createOpsLogger({ level: 'info', destination: { write: (s: string) => capture.push(JSON.parse(s) as Line) } }),
      observer: { handshakeFailed: (r) => failures.push(r) },
    });
  });
  after(async () => {
    await gw.close();
  });

  test('an untrusted certificate: the peer address, the reason and its words', async () => {
    const foreign = testPki().clientFor(spiffe('frontend'), { issuer: 'foreign' });
    const { localPort } = await failingClient(gw.port, foreign);
    // The line is written in the same handler as the failure is counted.
    await failures.waitFor(() => true, 1);
    const line = capture.items.find((l) => l['msg'] === 'TLS handshake failed');
    assert.ok(line, `a warn line for the failed handshake; log: ${JSON.stringify(capture.items)}`);
    assert.equal(line['level'], 'warn');
    assert.equal(line['reason'], 'untrusted');
    assert.equal(line['detail'], 'the client certificate is not signed by the trust bundle');
    assert.match(String(line['peer']), /^127\.0\.0\.1:\d+$/);
    if (localPort) assert.equal(line['peer'], `127.0.0.1:${localPort}`);
  });

  test('a client retrying in a loop: 10 lines, the last saying the rate; every failure counted', async () => {
    const expired = testPki().clientFor(spiffe('frontend'), { expired: true });
    for (let i = 0; i < 14; i++) await failingClient(gw.port, expired);
    // The first test's line plus nine of these fill the minute's budget of ten.
    await failures.waitFor(() => true, 15);
    const logged = capture.items.filter((l) => String(l['msg']).startsWith('TLS handshake failed'));
    assert.equal(logged.length, 10, JSON.stringify(capture.items));
    assert.match(String(logged[9]!['msg']), /not logged for a while \(at most 10 per 60 s; waygate_tls_handshake_failures_total counts every one\)/);
    assert.equal(logged[9]!['reason'], 'expired');
  });
});

describe('a client that finishes TLS but never sends the HTTP/2 preface', () => {
  test('is logged at warn as a timeout, with its address', async () => {
    const capture = new Collector<Line>();
    const failures = new Collector<string>();
    const gw = await startGateway({
      handshakeTimeoutMs: 200,
      log: createOpsLogger({ level: 'info', destination: { write: (s: string) => capture.push(JSON.parse(s) as Line) } }),
      observer: { handshakeFailed: (r) => failures.push(r) },
    });
    const pki = testPki();
    const client = pki.clientFor(spiffe('frontend'));
    const socket = tls.connect({ host: '127.0.0.1', port: gw.port, cert: client.chainPem, key: client.keyPem, ca: pki.trustBundlePem, ALPNProtocols: ['h2'], servername: 'localhost' });
    socket.on('error', () => {});
    try {
      await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
      const localPort = socket.localPort;
      await failures.waitFor((r) => r === 'timeout');
      const line = capture.items.find((l) => l['msg'] === 'TLS handshake failed' && l['reason'] === 'timeout');
      assert.ok(line, JSON.stringify(capture.items));
      assert.equal(line['level'], 'warn');
      assert.equal(line['peer'], `127.0.0.1:${localPort}`);
      assert.equal(line['err'], 'no HTTP/2 preface within 200 ms');
    } finally {
      socket.destroy();
      await gw.close();
    }
  });
});
