/**
 * Regression tests for two gaps found in review: `limits.maxConnections` was accepted by the
 * config but never enforced, and decision records carried only the static header allow-list, so
 * `audit replay` could not re-decide policies that read other headers (docs/design.md §4: the record holds
 * the full evaluation input).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connectHbone } from '../../src/hbone/client.ts';
import { testPki } from '../helpers/pki.ts';
import { makeDecision, spiffe, startGateway, startUpstream } from './fixture.ts';

describe('HBONE server limits and audit headers', () => {
  test('maxConnections: a connection past the limit is dropped before TLS and reported to the observer', async () => {
    let refusedResolve!: (limit: string) => void;
    const refused = new Promise<string>((r) => (refusedResolve = r));
    const gw = await startGateway({ maxConnections: 1, observer: { refused: (limit) => refusedResolve(limit) } });
    const echo = await startUpstream('echo');
    try {
      const first = await gw.connect(spiffe('frontend'));
      const ok = await first.openTunnel(`127.0.0.1:${echo.port}`);
      assert.equal(ok.status, 200);
      // The second TCP connection is closed by the server without a TLS handshake.
      const pki = testPki();
      const client = pki.clientFor(spiffe('frontend'));
      await assert.rejects(
        connectHbone({ address: { host: '127.0.0.1', port: gw.port }, cert: client.chainPem, key: client.keyPem, ca: pki.trustBundlePem, connectTimeoutMs: 5_000 }),
      );
      assert.equal(await refused, 'max_connections');
      // The first connection is undisturbed.
      ok.stream.end('still here');
      const chunks: Buffer[] = [];
      for await (const c of ok.stream as AsyncIterable<Buffer>) chunks.push(c);
      assert.equal(Buffer.concat(chunks).toString(), 'still here');
      await first.close();
    } finally {
      await gw.close();
      await echo.close();
    }
  });

  test('regression: 1,200 refused CONNECTs on one connection do not take it down (the client ends, never resets)', async () => {
    const echo = await startUpstream('echo');
    // Allow only the echo port: everything else is refused with 401 on the same connection.
    const gw = await startGateway({ authorize: (ctx) => makeDecision(ctx.destination.port === echo.port, 'p', 'r') });
    try {
      const client = await gw.connect(spiffe('frontend'));
      for (let batch = 0; batch < 12; batch++) {
        const refused = await Promise.all(Array.from({ length: 100 }, () => client.openTunnel('127.0.0.1:9')));
        for (const t of refused) assert.equal(t.status, 401);
      }
      const ok = await client.openTunnel(`127.0.0.1:${echo.port}`);
      assert.equal(ok.status, 200);
      ok.stream.end('alive');
      const chunks: Buffer[] = [];
      for await (const c of ok.stream as AsyncIterable<Buffer>) chunks.push(c);
      assert.equal(Buffer.concat(chunks).toString(), 'alive');
      await client.close();
    } finally {
      await gw.close();
      await echo.close();
    }
  });

  test('a header-audit-policy function widens the recorded headers per record; redaction still applies', async () => {
    let policy = { allow: ['x-tenant', 'x-api-key'], redact: ['x-api-key'] };
    const gw = await startGateway({ headerAuditPolicy: () => policy });
    const echo = await startUpstream('echo');
    try {
      const client = await gw.connect(spiffe('frontend'));
      const a = await client.openTunnel(`127.0.0.1:${echo.port}`, { 'x-tenant': 'acme', 'x-api-key': 's3cret', 'x-other': 'no' });
      assert.equal(a.status, 200);
      const da = await gw.sink.decisionFor(a.stream.id!);
      assert.deepEqual(da.headers, { 'x-tenant': 'acme', 'x-api-key': '[REDACTED]' });
      policy = { allow: [], redact: [] };
      const b = await client.openTunnel(`127.0.0.1:${echo.port}`, { 'x-tenant': 'acme' });
      const db = await gw.sink.decisionFor(b.stream.id!);
      assert.deepEqual(db.headers, {});
      a.stream.destroy();
      b.stream.destroy();
      await client.close();
    } finally {
      await gw.close();
      await echo.close();
    }
  });
});
