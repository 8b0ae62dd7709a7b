/**
 * The HBONE server end to end on real sockets: mTLS with the test PKI, HTTP/2 CONNECT from the
 * project's own client, real upstream servers on 127.0.0.1. Audit records are asserted field by
 * field.
 */
import { after, before, describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { constants as h2c } from 'node:http2';
import { ztunnelHeaders } from '../../src/hbone/client.ts';
import { allowServiceAccounts, closed, startBlackhole, makeDecision, readAll, spiffe, startGateway, startUpstream, SNAPSHOT, type Gateway, type Upstream } from './fixture.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('HBONE server: allowed tunnels', () => {
  let gw: Gateway;
  let echo: Upstream;
  let hold: Upstream;
  before(async () => {
    echo = await startUpstream('echo');
    hold = await startUpstream('hold');
    gw = await startGateway();
  });
  after(async () => {
    await gw.close();
    await echo.close();
    await hold.close();
  });

  test('echo through the tunnel, with the decision and close records field by field', async () => {
    const client = await gw.connect(spiffe('frontend', 'prod'));
    const headers = ztunnelHeaders({ srcIp: '10.0.0.5', srcPort: 43122, namespace: 'prod', workload: 'web', service: 'web', host: 'api.prod.svc.cluster.local', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' });
    const t = await client.openTunnel(`127.0.0.1:${echo.port}`, { ...headers, 'x-tenant': 'acme', authorization: 'Bearer secret' });
    assert.equal(t.status, 200);
    t.stream.end('hello through hbone');
    assert.equal((await readAll(t.stream)).toString(), 'hello through hbone');

    const d = await gw.sink.decisionFor(t.stream.id!);
    assert.equal(d.schema, 1);
    assert.equal(d.event, 'decision');
    assert.equal(d.decision, 'allow');
    assert.equal(d.reason, 'allowed');
    assert.equal(d.status, 200);
    assert.equal(d.policy, 'allow-sa');
    assert.equal(d.rule, 'sa-frontend');
    assert.deepEqual(d.snapshot, SNAPSHOT);
    assert.equal(d.evalMicros, 3);
    assert.deepEqual(d.source, { principal: spiffe('frontend', 'prod'), trustDomain: 'cluster.local', namespace: 'prod', serviceAccount: 'frontend', ip: '127.0.0.1', port: d.source.port });
    assert.ok(d.source.port > 0, 'source port comes from the socket');
    assert.deepEqual(d.destination, { authority: `127.0.0.1:${echo.port}`, ip: '127.0.0.1', port: echo.port, host: '', service: '', namespace: '', workload: '', principal: '' });
    assert.equal(d.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.deepEqual(d.baggage, { 'k8s.cluster.name': 'Kubernetes', 'k8s.namespace.name': 'prod', 'k8s.deployment.name': 'web', 'service.name': 'web' });
    assert.equal(d.headers['forwarded'], 'for="10.0.0.5:43122";host=api.prod.svc.cluster.local');
    assert.equal(d.headers['traceparent'], '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00');
    assert.equal(d.headers['authorization'], undefined, 'not allow-listed, never recorded');
    assert.equal(d.headers['x-tenant'], undefined);
    assert.equal(d.connection.tlsVersion, 'TLSv1.3');
    assert.equal(d.connection.id, d.connectionId);
    assert.match(d.decisionId, /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(d.time)));

    const c = await gw.sink.closeFor(d.decisionId);
    assert.equal(c.event, 'close');
    assert.equal(c.connectionId, d.connectionId);
    assert.equal(c.streamId, d.streamId);
    assert.deepEqual(c.source, d.source);
    assert.deepEqual(c.destination, d.destination);
    assert.equal(c.bytesReceived, 'hello through hbone'.length);
    assert.equal(c.bytesSent, 'hello through hbone'.length);
    assert.equal(c.closeReason, 'completed');
    assert.ok(c.durationMs >= 0);
    await client.close();
  });

  test('1 MiB each way is byte-exact (sha256) and counted on close', async () => {
    const client = await gw.connect(spiffe('frontend'));
    const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
    assert.equal(t.status, 200);
    const payload = randomBytes(1024 * 1024);
    const reading = readAll(t.stream);
    t.stream.end(payload);
    const back = await reading;
    assert.equal(back.length, payload.length);
    assert.equal(sha(back), sha(payload));
    const d = await gw.sink.decisionFor(t.stream.id!, gw.sink.decisions.at(-1)!.connectionId);
    const c = await gw.sink.closeFor(d.decisionId);
    assert.equal(c.bytesReceived, 1024 * 1024);
    assert.equal(c.bytesSent, 1024 * 1024);
    assert.equal(c.closeReason, 'completed');
    await client.close();
  });

  test('half-close client -> upstream: END_STREAM becomes FIN, the upstream can still answer', async () => {
    const client = await gw.connect(spiffe('frontend'));
    const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
    assert.equal(t.status, 200);
    const up = await hold.nextSocket();
    t.stream.end('question');
    const got = await readAll(up); // resolves on the upstream's 'end': the FIN arrived
    assert.equal(got.toString(), 'question');
    up.end('answer after FIN');
    assert.equal((await readAll(t.stream)).toString(), 'answer after FIN');
    await client.close();
  });

  test('half-close upstream -> client: FIN becomes END_STREAM, the client can still send', async () => {
    const client = await gw.connect(spiffe('frontend'));
    const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
    const up = await hold.nextSocket();
    up.end('server done');
    assert.equal((await readAll(t.stream)).toString(), 'server done');
    const upReading = readAll(up);
    t.stream.end('client still talking');
    assert.equal((await upReading).toString(), 'client still talking');
    await client.close();
  });

  test('100 concurrent tunnels on one connection', async () => {
    const client = await gw.connect(spiffe('frontend'));
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
        assert.equal(t.status, 200);
        const msg = `tunnel-${i}-${'x'.repeat(i * 37)}`;
        const reading = readAll(t.stream);
        t.stream.end(msg);
        return (await reading).toString() === msg;
      }),
    );
    assert.equal(results.filter(Boolean).length, 100);
    await client.close();
  });

  test('a host:port authority goes through a configured route', async () => {
    const routed = await startGateway({
      destinations: { allow: [{ cidr: '127.0.0.1/32' }], routes: { [`api.prod.svc.cluster.local:80`]: `127.0.0.1:${echo.port}` } },
    });
    try {
      const client = await routed.connect(spiffe('frontend'));
      const t = await client.openTunnel('api.prod.svc.cluster.local:80');
      assert.equal(t.status, 200);
      t.stream.end('routed');
      assert.equal((await readAll(t.stream)).toString(), 'routed');
      const d = await routed.sink.decisionFor(t.stream.id!);
      assert.deepEqual(d.destination, { authority: 'api.prod.svc.cluster.local:80', ip: '127.0.0.1', port: echo.port, host: 'api.prod.svc.cluster.local', service: '', namespace: '', workload: '', principal: '' });
      // An unrouted host has no destination: 503 as ztunnel's "no upstream", nothing dialed; the
      // policy allowed it, so the record keeps the rule.
      const before = echo.connections;
      const u = await client.openTunnel('other.svc:80');
      assert.equal(u.status, 503);
      const du = await routed.sink.decisionFor(u.stream.id!);
      assert.equal(du.decision, 'allow');
      assert.equal(du.reason, 'upstream_failed');
      assert.equal(du.status, 503);
      assert.equal(du.rule, 'sa-frontend');
      assert.equal(echo.connections, before);
    } finally {
      await routed.close();
    }
  });
});

describe('HBONE server: refusals', () => {
  let gw: Gateway;
  let echo: Upstream;
  before(async () => {
    echo = await startUpstream('echo');
    gw = await startGateway({ connectTimeoutMs: 300 });
  });
  after(async () => {
    await gw.close();
    await echo.close();
  });

  test('a denied CONNECT gets 401 and the destination sees no connection, even with early data', async () => {
    const client = await gw.connect(spiffe('intruder', 'evil'));
    const before = echo.connections;
    // Send bytes before any answer, as a pipelining client would.
    const stream = client.session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${echo.port}` }, { endStream: false });
    stream.on('error', () => {});
    stream.write(randomBytes(64 * 1024));
    const [res] = (await once(stream, 'response')) as [Record<string, string | number>];
    assert.equal(res[':status'], 401);
    await closed(stream);
    const d = await gw.sink.decisionFor(stream.id!);
    assert.equal(d.decision, 'deny');
    assert.equal(d.reason, 'no_allow_match');
    assert.equal(d.status, 401);
    assert.equal(d.policy, null);
    assert.equal(d.rule, null);
    assert.equal(d.source.principal, spiffe('intruder', 'evil'));
    assert.equal(d.source.namespace, 'evil');
    assert.equal(d.source.serviceAccount, 'intruder');
    assert.equal(echo.connections, before, 'the destination saw no connection');
    assert.equal(gw.sink.closes.find((c) => c.decisionId === d.decisionId), undefined, 'no close record for a tunnel never allowed');
    // The connection survives the refusal: an allowed identity's tunnel on another session works.
    await client.close();
  });

  test('an explicit deny names the policy and rule in the record, never on the wire', async () => {
    const denyGw = await startGateway({ authorize: () => makeDecision(false, 'block-evil', 'evil-ns'), denyStatus: 403 });
    try {
      const client = await denyGw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
      assert.equal(t.status, 403);
      assert.deepEqual(Object.keys(t.headers).filter((h) => !h.startsWith(':') && h !== 'date'), [], 'no header reveals the rule');
      const d = await denyGw.sink.decisionFor(t.stream.id!);
      assert.equal(d.reason, 'explicit_deny');
      assert.equal(d.policy, 'block-evil');
      assert.equal(d.rule, 'evil-ns');
      assert.equal(d.status, 403);
    } finally {
      await denyGw.close();
    }
  });

  test('upstream refused -> 503 upstream_failed, then a close record', async () => {
    const dead = await startUpstream('echo');
    const port = dead.port;
    await dead.close();
    const client = await gw.connect(spiffe('frontend'));
    const t = await client.openTunnel(`127.0.0.1:${port}`);
    assert.equal(t.status, 503);
    const d = await gw.sink.decisionFor(t.stream.id!);
    assert.equal(d.decision, 'allow');
    assert.equal(d.reason, 'upstream_failed');
    assert.equal(d.status, 503);
    assert.equal(d.policy, 'allow-sa');
    const c = await gw.sink.closeFor(d.decisionId);
    assert.equal(c.closeReason, 'upstream_failed');
    assert.equal(c.bytesSent, 0);
    assert.equal(c.bytesReceived, 0);
    await client.close();
  });

  test('upstream connect timeout -> 503 (a loopback listener whose accept queue is full)', async () => {
    const hole = await startBlackhole();
    try {
      const client = await gw.connect(spiffe('frontend'));
      const t = await client.openTunnel(`127.0.0.1:${hole.port}`);
      assert.equal(t.status, 503);
      const d = await gw.sink.decisionFor(t.stream.id!);
      assert.equal(d.reason, 'upstream_failed');
      assert.equal(d.status, 503);
      const c = await gw.sink.closeFor(d.decisionId);
      assert.equal(c.closeReason, 'upstream_failed');
      await client.close();
    } finally {
      hole.close();
    }
  });

  test('a destination outside the allowed networks is refused with the deny status', async () => {
    const client = await gw.connect(spiffe('frontend'));
    for (const authority of ['127.0.0.2:80', '169.254.169.254:80', '[::1]:80', '0.0.0.0:80', '10.1.2.3:443']) {
      const t = await client.openTunnel(authority);
      assert.equal(t.status, 401, authority);
      const d = await gw.sink.decisionFor(t.stream.id!, gw.sink.decisions.at(-1)!.connectionId);
      assert.equal(d.decision, 'deny', authority);
      assert.equal(d.reason, 'destination_not_allowed', authority);
      assert.equal(d.policy, null);
    }
    await client.close();
  });

  test("a CONNECT to the gateway's own port is a self-call: 503", async () => {
    const client = await gw.connect(spiffe('frontend'));
    const t = await client.openTunnel(`127.0.0.1:${gw.port}`);
    assert.equal(t.status, 503);
    const d = await gw.sink.decisionFor(t.stream.id!, gw.sink.decisions.at(-1)!.connectionId);
    assert.equal(d.reason, 'upstream_failed');
    await client.close();
  });

  test('malformed :authority and non-CONNECT methods get 400 bad_request', async () => {
    const client = await gw.connect(spiffe('frontend'));
    for (const authority of ['no-port', '127.0.0.1:0', '127.0.0.1:65536', '::1:80', 'a..b:80', '127.0.0.1:08']) {
      const t = await client.openTunnel(authority);
      assert.equal(t.status, 400, authority);
      const d = await gw.sink.decisionFor(t.stream.id!, gw.sink.decisions.at(-1)!.connectionId);
      assert.equal(d.reason, 'bad_request');
      assert.equal(d.status, 400);
      assert.equal(d.destination.authority, authority);
    }
    const get = client.session.request({ ':method': 'GET', ':path': '/', ':authority': `127.0.0.1:${echo.port}` });
    get.on('error', () => {});
    const [res] = (await once(get, 'response')) as [Record<string, string | number>];
    assert.equal(res[':status'], 400);
    const d = await gw.sink.decisionFor(get.id!, gw.sink.decisions.at(-1)!.connectionId);
    assert.equal(d.reason, 'bad_request');
    await client.close();
  });

  test('one bad stream never disturbs others on the same connection', async () => {
    const client = await gw.connect(spiffe('frontend'));
    const good = await client.openTunnel(`127.0.0.1:${echo.port}`);
    assert.equal(good.status, 200);
    good.stream.write('before ');
    // A refused CONNECT, a malformed one and a reset one on the same connection.
    assert.equal((await client.openTunnel('127.0.0.9:1')).status, 401);
    assert.equal((await client.openTunnel('bogus')).status, 400);
    const reset = await client.openTunnel(`127.0.0.1:${echo.port}`);
    reset.stream.on('error', () => {});
    reset.stream.close(h2c.NGHTTP2_INTERNAL_ERROR);
    await closed(reset.stream);
    const reading = readAll(good.stream);
    good.stream.end('after');
    assert.equal((await reading).toString(), 'before after');
    await client.close();
  });

  test('client RST mid-transfer closes the upstream socket', async () => {
    const hold = await startUpstream('hold');
    try {
      const client = await gw.connect(spiffe('frontend'));
      for (const code of [h2c.NGHTTP2_CANCEL, h2c.NGHTTP2_INTERNAL_ERROR]) {
        const t = await client.openTunnel(`127.0.0.1:${hold.port}`);
        t.stream.on('error', () => {});
        const up = await hold.nextSocket();
        up.on('data', () => {});
        t.stream.write(randomBytes(1000));
        up.write(randomBytes(1000));
        const upstreamSaw = new Promise<string>((resolve) => {
          up.once('end', () => resolve('FIN'));
          up.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
        });
        t.stream.close(code);
        // CANCEL counts as the client's EOF: the upstream gets a FIN after the bytes already
        // sent. Any other code resets the upstream connection; whether the destination's read
        // then reports ECONNRESET or EOF depends on when the kernel sees the RST.
        const saw = await upstreamSaw;
        if (code === h2c.NGHTTP2_CANCEL) assert.equal(saw, 'FIN');
        else assert.ok(saw === 'ECONNRESET' || saw === 'FIN', saw);
        // The close record is written only once the gateway's upstream socket has closed.
        const d = await gw.sink.decisionFor(t.stream.id!);
        const c = await gw.sink.closeFor(d.decisionId);
        assert.equal(c.closeReason, 'client_reset');
        assert.equal(c.bytesReceived, 1000);
        up.destroy();
      }
      await client.close();
    } finally {
      await hold.close();
    }
  });

  test('an identity is required: a certificate without a SPIFFE URI SAN is denied no_identity', async () => {
    const pki = (await import('../helpers/pki.ts')).testPki();
    const cases = [
      { name: 'SPIFFE-looking CN, no URI SAN', cert: pki.issue({ commonName: 'spiffe://cluster.local/ns/prod/sa/frontend', dnsNames: ['frontend'] }) },
      { name: 'foreign trust domain', cert: pki.clientFor('spiffe://other.example/ns/prod/sa/frontend') },
    ];
    for (const c of cases) {
      const client = await gw.connect('', { cert: c.cert.chainPem, key: c.cert.keyPem });
      const before = echo.connections;
      const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
      assert.equal(t.status, 401, c.name);
      const d = await gw.sink.decisionFor(t.stream.id!, gw.sink.decisions.at(-1)!.connectionId);
      assert.equal(d.reason, 'no_identity', c.name);
      assert.equal(d.source.principal, '', c.name);
      assert.equal(d.policy, null);
      assert.deepEqual(d.snapshot, SNAPSHOT, 'records carry the snapshot in force');
      assert.equal(echo.connections, before);
      await client.close();
    }
  });

  test('two URI SANs: the first SPIFFE one is the identity', async () => {
    const pki = (await import('../helpers/pki.ts')).testPki();
    const cert = pki.clientFor(spiffe('frontend'), { extraUris: [spiffe('intruder')] });
    const client = await gw.connect('', { cert: cert.chainPem, key: cert.keyPem });
    const t = await client.openTunnel(`127.0.0.1:${echo.port}`);
    assert.equal(t.status, 200);
    t.stream.end();
    await readAll(t.stream);
    const d = await gw.sink.decisionFor(t.stream.id!, gw.sink.decisions.at(-1)!.connectionId);
    assert.equal(d.source.principal, spiffe('frontend'));
    await client.close();

    const reversed = pki.issue({ spiffeId: spiffe('intruder'), uris: [spiffe('frontend')] });
    const c2 = await gw.connect('', { cert: reversed.chainPem, key: reversed.keyPem });
    const t2 = await c2.openTunnel(`127.0.0.1:${echo.port}`);
    assert.equal(t2.status, 401);
    await c2.close();
  });
});

describe('HBONE server: TLS refusals', () => {
  let gw: Gateway;
  const failures: string[] = [];
  let onFailure: (() => void) | null = null;
  before(async () => {
    gw = await startGateway({
      observer: {
        handshakeFailed: (r) => {
          failures.push(r);
          onFailure?.();
        },
      },
    });
  });
  after(async () => {
    await gw.close();
  });

  test('an untrusted CA and an expired certificate fail the handshake', async () => {
    const { testPki } = await import('../helpers/pki.ts');
    const pki = testPki();
    const cases = [
      { name: 'untrusted CA', cert: pki.clientFor(spiffe('frontend'), { issuer: 'foreign' }), reason: 'untrusted' },
      { name: 'expired', cert: pki.clientFor(spiffe('frontend'), { expired: true }), reason: 'expired' },
    ];
    for (const c of cases) {
      const before = failures.length;
      const counted = new Promise<void>((resolve) => {
        onFailure = () => failures.length > before && resolve();
      });
      await assert.rejects(
        (async () => {
          const s = await gw.connect('', { cert: c.cert.chainPem, key: c.cert.keyPem });
          // TLS 1.3: the client may finish before the server's alert arrives; a CONNECT then fails.
          await s.openTunnel('127.0.0.1:1');
        })(),
        c.name,
      );
      // the failure is counted (the observer is called from the server's tlsClientError)
      if (failures.length === before) await counted;
      assert.equal(failures.at(-1), c.reason, c.name);
    }
    assert.equal(gw.sink.decisions.length, 0, 'no CONNECT ever reached the HTTP/2 layer');
  });
});

describe('HBONE server: recheck and drain', () => {
  let echo: Upstream;
  before(async () => {
    echo = await startUpstream('echo');
  });
  after(async () => {
    await echo.close();
  });

  test('recheck closes a now-denied tunnel with RST_STREAM(CANCEL) and a policy_changed record', async () => {
    const gw = await startGateway({ authorize: allowServiceAccounts('frontend', 'batch') });
    try {
      const a = await gw.connect(spiffe('frontend'));
      const b = await gw.connect(spiffe('batch'));
      const ta = await a.openTunnel(`127.0.0.1:${echo.port}`);
      const tb = await b.openTunnel(`127.0.0.1:${echo.port}`);
      assert.equal(ta.status, 200);
      assert.equal(tb.status, 200);
      ta.stream.write('ping');
      assert.equal((await once(ta.stream, 'data'))[0].toString(), 'ping');
      tb.stream.on('error', () => {});
      assert.equal(gw.server.tunnels.size, 2);
      const listed = gw.server.tunnels.list();
      assert.deepEqual(listed.map((t) => t.source.principal).sort(), [spiffe('batch'), spiffe('frontend')]);
      assert.equal(listed.find((t) => t.source.principal === spiffe('frontend'))!.bytesReceived, 4);

      const revoked = gw.server.recheck((ctx) =>
        ctx.source.serviceAccount === 'frontend'
          ? { ...makeDecision(true, 'allow-frontend', 'fe'), snapshot: { version: 8, hash: 'sha256:new' } }
          : { ...makeDecision(false, 'no-batch', 'batch-out', 'explicit_deny'), snapshot: { version: 8, hash: 'sha256:new' } },
      );
      assert.equal(revoked, 1);
      await closed(tb.stream);
      assert.equal(tb.stream.rstCode, h2c.NGHTTP2_CANCEL);
      const db = await gw.sink.decisionFor(tb.stream.id!, gw.sink.decisions.find((d) => d.source.serviceAccount === 'batch')!.connectionId);
      const cb = await gw.sink.closeFor(db.decisionId);
      assert.equal(cb.closeReason, 'policy_changed');
      assert.equal(cb.policy, 'no-batch');
      assert.equal(cb.rule, 'batch-out');
      assert.deepEqual(cb.snapshot, { version: 8, hash: 'sha256:new' });
      // The still-allowed tunnel keeps working.
      const reading = readAll(ta.stream);
      ta.stream.end(' pong');
      assert.equal((await reading).toString(), ' pong');
    } finally {
      await gw.close();
    }
  });

  test('drain: GOAWAY, live tunnels finish before the deadline, the rest are reset with draining records', async () => {
    const gw = await startGateway();
    try {
      const client = await gw.connect(spiffe('frontend'));
      const finishing = await client.openTunnel(`127.0.0.1:${echo.port}`);
      const stuck = await client.openTunnel(`127.0.0.1:${echo.port}`);
      stuck.stream.on('error', () => {});
      const goaway = once(client.session, 'goaway');
      // The drain's deadline is a mocked timer, so it passes when the test says (after the live
      // tunnel has finished), not after a wall-clock budget a loaded machine may miss.
      // Only setTimeout is mocked, and only until the deadline has passed.
      mock.timers.enable({ apis: ['setTimeout'] });
      const draining = gw.server.drain(500);
      await goaway;
      const reading = readAll(finishing.stream);
      finishing.stream.end('last words');
      assert.equal((await reading).toString(), 'last words');
      await gw.sink.until(() => gw.sink.closes.length === 1);
      assert.equal(gw.server.tunnels.size, 1, 'the drain is still waiting for its deadline');
      mock.timers.tick(500);
      mock.timers.reset();
      const { remaining } = await draining;
      assert.equal(remaining, 1);
      await closed(stuck.stream);
      assert.equal(stuck.stream.rstCode, h2c.NGHTTP2_CANCEL);
      await gw.sink.until(() => gw.sink.closes.length === 2);
      assert.deepEqual(gw.sink.closes.map((c) => c.closeReason).sort(), ['completed', 'draining']);
    } finally {
      mock.timers.reset();
      await gw.close();
    }
  });
});
