import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import http2, { type IncomingHttpHeaders, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { connectHbone, ztunnelHeaders, CLIENT_STREAM_WINDOW_BYTES, CLIENT_CONNECTION_WINDOW_BYTES } from '../../src/hbone/client.ts';
import { identityFromCertificate } from '../../src/identity/peer-identity.ts';
import { WaygateError } from '../../src/errors.ts';
import { GATEWAY_SPIFFE_ID, testPki, writeTlsFiles } from '../helpers/pki.ts';

const pki = testPki();
const CLIENT_ID = 'spiffe://cluster.local/ns/prod/sa/frontend';

interface Seen {
  servername: string | false | undefined;
  alpn: string | false | null;
  protocol: string | null;
  clientId: string | null;
  sessions: ServerHttp2Session[];
  requests: IncomingHttpHeaders[];
}

/**
 * A minimal HBONE server: mTLS (client certificate required), h2 only. `echo:*` answers 200 and
 * echoes bytes until the client half-closes; `deny:*` answers 401 with END_STREAM; `reset:*`
 * sends RST_STREAM(REFUSED_STREAM) without a response.
 */
async function startServer(cert = pki.serverCert): Promise<{ port: number; seen: Seen; close(): Promise<void> }> {
  const seen: Seen = { servername: undefined, alpn: null, protocol: null, clientId: null, sessions: [], requests: [] };
  const server = http2.createSecureServer({
    cert: cert.chainPem,
    key: cert.keyPem,
    ca: pki.trustBundlePem,
    requestCert: true,
    rejectUnauthorized: true,
    allowHTTP1: false,
    minVersion: 'TLSv1.3',
  });
  server.on('secureConnection', (sock: TLSSocket) => {
    // Node sets `servername` to false when the client sent no SNI extension.
    seen.servername = (sock as TLSSocket & { servername: string | false }).servername;
    seen.alpn = sock.alpnProtocol;
    seen.protocol = sock.getProtocol();
    seen.clientId = identityFromCertificate(sock.getPeerCertificate().raw).spiffeId?.id ?? null;
  });
  server.on('session', (s) => seen.sessions.push(s));
  server.on('stream', (stream, headers) => {
    seen.requests.push(headers);
    const authority = String(headers[':authority']);
    if (authority.startsWith('deny:')) {
      stream.respond({ ':status': 401 }, { endStream: true });
    } else if (authority.startsWith('bye:')) {
      stream.respond({ ':status': 200 });
      stream.end('bye\n'); // the server finishes first; the client must not wait for its stdin
    } else if (authority.startsWith('reset:')) {
      stream.on('error', () => {}); // Node reports the reset it sends as an error on its own stream too
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    } else {
      stream.respond({ ':status': 200 });
      stream.pipe(stream); // echo; the client's END_STREAM ends ours
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of seen.sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

describe('connectHbone', () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  const client = pki.clientFor(CLIENT_ID);
  const base = () => ({ address: { host: '127.0.0.1', port: srv.port }, cert: client.chainPem, key: client.keyPem, ca: pki.trustBundlePem });
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.close());

  it('speaks like ztunnel: TLS 1.3, ALPN h2, no SNI, client cert, large windows', async () => {
    const c = await connectHbone({ ...base(), expectedServerSpiffeId: GATEWAY_SPIFFE_ID });
    try {
      // In TLS 1.3 the client finishes its handshake first; once the server has answered a
      // stream, it has certainly seen the whole handshake and our SETTINGS.
      const t = await c.openTunnel('echo:1');
      assert.equal(srv.seen.servername, false, 'no SNI extension was sent');
      assert.equal(srv.seen.alpn, 'h2');
      assert.equal(srv.seen.protocol, 'TLSv1.3');
      assert.equal(srv.seen.clientId, CLIENT_ID);
      assert.equal(c.tlsVersion, 'TLSv1.3');
      assert.equal(c.serverIdentity.spiffeId?.id, GATEWAY_SPIFFE_ID);
      assert.equal(c.session.state.localWindowSize, CLIENT_CONNECTION_WINDOW_BYTES);
      const serverSession = srv.seen.sessions.at(-1)!;
      assert.equal(serverSession.remoteSettings.initialWindowSize, CLIENT_STREAM_WINDOW_BYTES);
      assert.equal(serverSession.remoteSettings.enablePush, false);
      t.stream.end();
      await readAll(t.stream);
    } finally {
      await c.close();
    }
  });

  it('opens a tunnel: CONNECT with only :method and :authority, bytes both ways, half-close', async () => {
    const c = await connectHbone({ ...base(), expectedServerSpiffeId: GATEWAY_SPIFFE_ID });
    try {
      const before = srv.seen.requests.length;
      const t = await c.openTunnel('10.0.0.7:8080');
      assert.equal(t.status, 200);
      const req = srv.seen.requests[before]!;
      assert.equal(req[':method'], 'CONNECT');
      assert.equal(req[':authority'], '10.0.0.7:8080');
      assert.equal(req[':scheme'], undefined);
      assert.equal(req[':path'], undefined);
      assert.equal(req[':protocol'], undefined);
      const reading = readAll(t.stream);
      t.stream.write('hello ');
      t.stream.end('world'); // END_STREAM: the server finishes echoing, then ends too
      assert.equal(await reading, 'hello world');
    } finally {
      await c.close();
    }
  });

  it('sends extra headers, e.g. ztunnel baggage/forwarded/traceparent', async () => {
    const c = await connectHbone({ ...base(), expectedServerSpiffeId: GATEWAY_SPIFFE_ID });
    try {
      const before = srv.seen.requests.length;
      const h = ztunnelHeaders({ srcIp: '10.0.0.5', srcPort: 43122, namespace: 'prod', workload: 'frontend', service: 'frontend', host: 'api.prod.svc.cluster.local' });
      const t = await c.openTunnel('echo:2', { ...h, 'x-tenant': 'acme' });
      const req = srv.seen.requests[before]!;
      assert.equal(req.baggage, h.baggage);
      assert.equal(req.forwarded, 'for="10.0.0.5:43122";host=api.prod.svc.cluster.local');
      assert.match(String(req.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      assert.equal(req['x-tenant'], 'acme');
      t.stream.end();
      await readAll(t.stream);
    } finally {
      await c.close();
    }
  });

  it('resolves a refused CONNECT with its status and a closed stream', async () => {
    const c = await connectHbone(base());
    try {
      const t = await c.openTunnel('deny:1');
      assert.equal(t.status, 401);
      if (!t.stream.closed) await once(t.stream, 'close');
      assert.equal(t.stream.closed, true);
      // The session stays usable.
      const ok = await c.openTunnel('echo:3');
      assert.equal(ok.status, 200);
      ok.stream.end();
      await readAll(ok.stream);
    } finally {
      await c.close();
    }
  });

  it('rejects when the stream is reset before any response', async () => {
    const c = await connectHbone(base());
    try {
      await assert.rejects(c.openTunnel('reset:1'), (e: unknown) => e instanceof WaygateError && /reset before a response|failed before a response/.test(e.message));
    } finally {
      await c.close();
    }
  });

  it('sends SNI only when asked (so the no-SNI assertion above can tell the difference)', async () => {
    const c = await connectHbone({ ...base(), servername: 'localhost' });
    try {
      const t = await c.openTunnel('echo:sni');
      assert.equal(srv.seen.servername, 'localhost');
      t.stream.end();
      await readAll(t.stream);
    } finally {
      await c.close();
    }
  });

  it('checks the server identity: wrong SPIFFE ID fails with WG_IDENTITY', async () => {
    await assert.rejects(
      connectHbone({ ...base(), expectedServerSpiffeId: 'spiffe://cluster.local/ns/waygate/sa/impostor' }),
      (e: unknown) => e instanceof WaygateError && e.code === 'WG_IDENTITY' && /expected identity/.test(e.message),
    );
  });

  it('without an expected ID, checks the address like HTTPS (127.0.0.1 is in the IP SANs)', async () => {
    const c = await connectHbone(base());
    await c.close();
    const noIp = await startServer(pki.issue({ spiffeId: GATEWAY_SPIFFE_ID }));
    try {
      await assert.rejects(
        connectHbone({ ...base(), address: { host: '127.0.0.1', port: noIp.port } }),
        (e: unknown) => e instanceof WaygateError && e.code === 'WG_CERT',
      );
      // ...while the SPIFFE check alone accepts it, as ztunnel would.
      const ok = await connectHbone({ ...base(), address: { host: '127.0.0.1', port: noIp.port }, expectedServerSpiffeId: GATEWAY_SPIFFE_ID });
      await ok.close();
    } finally {
      await noIp.close();
    }
  });

  it('refuses a server whose chain does not verify against the trust bundle', async () => {
    const foreign = await startServer(pki.clientFor(GATEWAY_SPIFFE_ID, { issuer: 'foreign', dnsNames: ['localhost'] }));
    try {
      await assert.rejects(
        connectHbone({ ...base(), address: { host: '127.0.0.1', port: foreign.port }, expectedServerSpiffeId: GATEWAY_SPIFFE_ID }),
        (e: unknown) => e instanceof WaygateError && e.code === 'WG_CERT',
      );
    } finally {
      await foreign.close();
    }
  });

  it('fails with WG_UPSTREAM_CONNECT when nothing listens', async () => {
    const gone = await startServer();
    const port = gone.port;
    await gone.close();
    await assert.rejects(
      connectHbone({ ...base(), address: { host: '127.0.0.1', port } }),
      (e: unknown) => e instanceof WaygateError && e.code === 'WG_UPSTREAM_CONNECT' && /ECONNREFUSED/.test(e.message),
    );
  });
});

describe('ztunnelHeaders', () => {
  it('formats baggage without spaces, a quoted forwarded node, and a W3C traceparent', () => {
    const h = ztunnelHeaders({
      srcIp: '10.0.0.5',
      srcPort: 43122,
      namespace: 'prod',
      workload: 'frontend',
      service: 'frontend',
      serviceVersion: 'v1',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
    });
    assert.deepEqual(h, {
      baggage: 'k8s.cluster.name=Kubernetes,k8s.namespace.name=prod,k8s.deployment.name=frontend,service.name=frontend,service.version=v1',
      forwarded: 'for="10.0.0.5:43122"',
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00',
    });
  });

  it('brackets IPv6 sources and generates non-zero random ids', () => {
    const h = ztunnelHeaders({ srcIp: 'fd00::5', srcPort: 1, workloadType: 'statefulset', workload: 'db' });
    assert.equal(h.forwarded, 'for="[fd00::5]:1"');
    assert.equal(h.baggage, 'k8s.cluster.name=Kubernetes,k8s.statefulset.name=db');
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-00$/.exec(h.traceparent!);
    assert.ok(m);
    assert.notEqual(m[1], '0'.repeat(32));
    assert.notEqual(ztunnelHeaders({ srcIp: '1.2.3.4', srcPort: 1 }).traceparent, h.traceparent);
  });
});

const BIN = resolve(import.meta.dirname, '../../bin/waygate.js');

/** Runs `waygate connect` as a real process; `stdin` undefined leaves its stdin open. */
function waygateConnect(args: string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'connect', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  if (stdin !== undefined) child.stdin.end(stdin);
  return new Promise((resolvePromise) => {
    child.on('close', (code) => {
      child.stdin.destroy();
      resolvePromise({ code, stdout, stderr });
    });
  });
}

describe('waygate connect', () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  const dir = mkdtempSync(join(tmpdir(), 'waygate-connect-'));
  const files = writeTlsFiles(dir, pki.clientFor(CLIENT_ID), pki.trustBundlePem, 'client');
  const flags = (): string[] => ['--address', `127.0.0.1:${srv.port}`, '--cert', files.certFile, '--key', files.keyFile, '--ca', files.caFile];
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pipes stdin through the tunnel like nc: EOF half-closes, the echo arrives, exit 0', async () => {
    const before = srv.seen.requests.length;
    const r = await waygateConnect(['echo:9', ...flags(), '--server-id', GATEWAY_SPIFFE_ID, '--ztunnel-headers', '--header', 'X-Tenant=acme'], 'ping\npong\n');
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    assert.equal(r.stdout, 'ping\npong\n');
    const req = srv.seen.requests[before]!;
    assert.equal(req[':authority'], 'echo:9');
    assert.equal(req['x-tenant'], 'acme');
    assert.match(String(req.baggage), /k8s\.namespace\.name=prod,k8s\.deployment\.name=frontend,service\.name=frontend/);
    assert.match(String(req.forwarded), /^for="127\.0\.0\.1:\d+"$/);
    assert.match(String(req.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  });

  it('exits 0 when the server ends the tunnel first, without waiting for stdin', async () => {
    const r = await waygateConnect(['bye:1', ...flags()]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'bye\n');
  });

  it('exits 1 and says so when the CONNECT is refused', async () => {
    const r = await waygateConnect(['deny:1', ...flags()], '');
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'waygate connect: CONNECT deny:1 answered 401\n');
    assert.equal(r.stdout, '');
  });

  it('exits 2 with the reason when the connection fails', async () => {
    const r = await waygateConnect(['echo:1', ...flags(), '--server-id', 'spiffe://cluster.local/ns/x/sa/impostor'], '');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^waygate connect: the server certificate does not carry the expected identity spiffe:\/\/cluster\.local\/ns\/x\/sa\/impostor/);
  });
});
