/**
 * A stand-in for a destination pod's ztunnel (its HBONE inbound, port 15008 in a mesh): mutual TLS
 * (TLS 1.3, ALPN h2, a client certificate required and verified against the trust bundle), then
 * for each CONNECT, as ztunnel's inbound does (docs/design.md §8.3, §8.4):
 *
 * - answers 400 when the `:authority` IP is not its pod IP (ztunnel's `validate_destination`);
 * - records the CONNECT (the peer's verified SPIFFE ID, `:authority`, headers) and emits 'connect';
 * - answers the status `answer(record)` returns (default 200); on 200 dials the authority over TCP
 *   first (503 when that fails, as ztunnel) and pipes both ways with half-close: END_STREAM ->
 *   TCP write shutdown, TCP EOF -> END_STREAM; a TCP reset -> RST_STREAM(CONNECT_ERROR)
 *   (RFC 9113 §8.5), a stream reset -> the TCP connection is reset.
 *
 * It counts TLS handshakes (`secureConnections`) and HTTP/2 sessions whose client sent its preface
 * (`prefaces`: Node creates a server session on every TLS connection, so a session alone does not
 * mean the client spoke HTTP/2). `goawayAll()` closes every session gracefully (GOAWAY, open streams
 * finish); `close()` tears everything down.
 */
import { EventEmitter, once } from 'node:events';
import http2, { constants as h2, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream, type Http2SecureServer } from 'node:http2';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { IssuedCert } from '../../src/identity/dev-ca.ts';
import { identityFromCertificate } from '../../src/identity/peer-identity.ts';

/** One CONNECT as the fake ztunnel saw it. */
export interface ConnectRecord {
  /** The SPIFFE ID of the verified client certificate (`""` when it has none). */
  peer: string;
  authority: string;
  /** Request headers without pseudo-headers. */
  headers: Record<string, string>;
  /** The status it answered, 0 when it held or refused the stream. */
  status: number;
  /** What happened to it: answered, held unanswered, or refused by GOAWAY. */
  outcome: 'answered' | 'hold' | 'goaway';
  /** The client's RST_STREAM code once the stream closed (undefined before, or when it ended cleanly both ways without one). */
  closeCode?: number;
  /** Which TLS connection (1-based, in handshake order) carried it. */
  connection: number;
  /** SHA-256 fingerprint of the client certificate (Node's `AB:CD:...`): which certificate the peer presented. */
  peerFingerprint: string;
}

export interface FakeZtunnelOptions {
  /** The pod IP it serves and listens on (127.0.0.x). */
  podIp: string;
  /** Its certificate: the identity it presents. */
  cert: IssuedCert;
  trustBundlePem: string;
  /**
   * What to answer (default 200); only consulted when the authority IP is the pod IP. `'hold'`:
   * never answer (the client must give up); `'goaway'`: refuse the stream by a GOAWAY whose last
   * stream id is below it (RFC 9113 §6.8: not processed, safe to retry), as a ztunnel shutting
   * down does to a CONNECT that raced its GOAWAY.
   */
  answer?: (req: ConnectRecord) => number | 'hold' | 'goaway';
  /** The port it listens on (default 0: any). Kubernetes discovery dials every pod's ztunnel on 15008. */
  port?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS it sends (default: Node's, unlimited). */
  maxConcurrentStreams?: number;
}

export interface FakeZtunnel extends EventEmitter {
  readonly podIp: string;
  readonly port: number;
  readonly server: Http2SecureServer;
  readonly connects: ConnectRecord[];
  /** Completed TLS handshakes. */
  secureConnections: number;
  /** Sessions whose client sent the HTTP/2 preface (its SETTINGS arrived). */
  prefaces: number;
  readonly sessions: Set<ServerHttp2Session>;
  /** Live TCP connections to destinations. */
  readonly upstreams: Set<Socket>;
  /** GOAWAY on every session (session.close(): open streams finish). */
  goawayAll(): void;
  close(): Promise<void>;
}

const kConnection = Symbol('fakeZtunnel.connection');

export async function startFakeZtunnel(opts: FakeZtunnelOptions): Promise<FakeZtunnel> {
  const server = http2.createSecureServer({
    cert: opts.cert.chainPem,
    key: opts.cert.keyPem,
    ca: opts.trustBundlePem,
    requestCert: true,
    rejectUnauthorized: true,
    allowHTTP1: false,
    minVersion: 'TLSv1.3',
    ALPNProtocols: ['h2'],
    ...(opts.maxConcurrentStreams !== undefined ? { settings: { maxConcurrentStreams: opts.maxConcurrentStreams } } : {}),
  });
  const sockets = new Set<TLSSocket>();
  const zt = Object.assign(new EventEmitter(), {
    podIp: opts.podIp,
    port: 0,
    server,
    connects: [] as ConnectRecord[],
    secureConnections: 0,
    prefaces: 0,
    sessions: new Set<ServerHttp2Session>(),
    upstreams: new Set<Socket>(),
    goawayAll(): void {
      for (const s of zt.sessions) if (!s.closed) s.close();
    },
    async close(): Promise<void> {
      for (const s of zt.sessions) s.destroy();
      for (const u of zt.upstreams) u.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  }) as FakeZtunnel;

  server.on('secureConnection', (sock: TLSSocket) => {
    zt.secureConnections++;
    (sock as TLSSocket & { [kConnection]?: number })[kConnection] = zt.secureConnections;
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    zt.emit('secureConnection', sock);
  });
  // A handshake the client broke off (it refused our certificate): the end of that connection.
  server.on('tlsClientError', (err: Error) => zt.emit('tlsClientError', err));
  server.on('session', (session: ServerHttp2Session) => {
    zt.sessions.add(session);
    session.on('error', () => {});
    session.once('remoteSettings', () => {
      zt.prefaces++;
      zt.emit('preface', session);
    });
    session.once('close', () => {
      zt.sessions.delete(session);
      zt.emit('sessionClose', session);
    });
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => onStream(zt, opts, stream, headers));

  server.listen(opts.port ?? 0, opts.podIp);
  await once(server, 'listening');
  (zt as { port: number }).port = (server.address() as AddressInfo).port;
  return zt;
}

/**
 * The client certificate's identity, read once per connection: a TLS 1.3 connection's peer
 * certificate cannot change (RFC 8446 has no renegotiation), and parsing it for every stream was
 * most of this helper's CPU in the 1,000-tunnel tests (test/e2e/waypoint.test.ts).
 */
const peers = new WeakMap<Http2Session, { peer: string; fingerprint: string }>();
function peerOf(session: Http2Session, sock: TLSSocket | undefined): { peer: string; fingerprint: string } {
  let known = peers.get(session);
  if (known === undefined) {
    const cert = sock?.getPeerCertificate();
    known = { peer: cert?.raw ? (identityFromCertificate(cert.raw).spiffeId?.id ?? '') : '', fingerprint: cert?.fingerprint256 ?? '' };
    peers.set(session, known);
  }
  return known;
}

function onStream(zt: FakeZtunnel, opts: FakeZtunnelOptions, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  stream.on('error', () => {});
  const sock = stream.session?.socket as (TLSSocket & { [kConnection]?: number }) | undefined;
  const { peer, fingerprint } = stream.session ? peerOf(stream.session, sock) : { peer: '', fingerprint: '' };
  const plain: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') && v !== undefined) plain[k] = Array.isArray(v) ? v.join(', ') : String(v);
  const authority = String(headers[':authority'] ?? '');
  const record: ConnectRecord = { peer, authority, headers: plain, status: 0, outcome: 'answered', connection: sock?.[kConnection] ?? 0, peerFingerprint: fingerprint };
  stream.once('close', () => {
    record.closeCode = stream.rstCode;
    zt.emit('streamClose', record);
  });
  const target = parseAuthority(authority);
  const answer = headers[':method'] !== 'CONNECT' || target === null || target.host !== opts.podIp ? 400 : opts.answer ? opts.answer(record) : 200;
  if (typeof answer === 'number') record.status = answer;
  else record.outcome = answer;
  zt.connects.push(record);
  zt.emit('connect', record);
  if (answer === 'hold') return;
  if (answer === 'goaway') {
    stream.session!.goaway(h2.NGHTTP2_NO_ERROR, Math.max(0, stream.id! - 2));
    stream.close(h2.NGHTTP2_REFUSED_STREAM);
    return;
  }
  if (record.status !== 200) {
    stream.respond({ ':status': record.status }, { endStream: true });
    return;
  }
  const upstream = netConnect({ host: target!.host, port: target!.port, allowHalfOpen: true });
  zt.upstreams.add(upstream);
  upstream.once('close', () => zt.upstreams.delete(upstream));
  let connected = false;
  upstream.once('connect', () => {
    connected = true;
    if (stream.destroyed) {
      upstream.destroy();
      return;
    }
    stream.respond({ ':status': 200 });
    stream.pipe(upstream, { end: false });
    upstream.pipe(stream); // FIN -> END_STREAM
  });
  // END_STREAM, or RST_STREAM(NO_ERROR|CANCEL) -> FIN; a reset with an error -> TCP reset. Decided
  // at the stream's end (Node ends the readable side on a reset too, rstCode already set), before
  // a FIN could be under way: a socket cannot be reset while its write shutdown is in flight.
  stream.once('end', () => endUpstream(stream, upstream));
  upstream.on('error', () => {
    if (!connected) {
      if (!stream.destroyed) stream.respond({ ':status': 503 }, { endStream: true });
      return;
    }
    // The destination reset: RFC 9113 §8.5.
    if (!stream.closed) stream.close(h2.NGHTTP2_CONNECT_ERROR);
  });
  stream.once('close', () => endUpstream(stream, upstream));
}

function endUpstream(stream: ServerHttp2Stream, upstream: Socket): void {
  if (upstream.destroyed || upstream.writableEnded) return;
  const code = stream.rstCode ?? h2.NGHTTP2_NO_ERROR;
  if (code !== h2.NGHTTP2_NO_ERROR && code !== h2.NGHTTP2_CANCEL) upstream.resetAndDestroy();
  else upstream.end();
}

function parseAuthority(authority: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(authority);
  if (!m) return null;
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}
