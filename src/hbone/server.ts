/**
 * The HBONE data plane (DESIGN §1-2): mutual TLS 1.3 with ALPN `h2`, HTTP/2 CONNECT streams,
 * one decision per CONNECT, then dial and pipe. Real ztunnel peers interoperate unchanged.
 *
 * Per CONNECT, in three visible phases (ztunnel's `serve_connect`):
 *   1. build the request context: validate the CONNECT (400), read the peer identity and the
 *      informational headers, resolve the destination, register the tunnel;
 *   2. authorize and dial: policy (401, configurable), allowed networks (deny status too: the
 *      gateway refused, the destination did not fail), a `host:port` without a route (503, as
 *      ztunnel's "no upstream"), self-call (503), a dial slot on the connection (waited for, in
 *      arrival order, within the connect timeout: dial-queue.ts), connect (503); a client reset
 *      while waiting or dialing abandons the dial at once;
 *   3. answer 200 and pipe (tunnel.ts).
 * Exactly one decision record per CONNECT; one close record per tunnel that passed authorization
 * (including one refused with 503 after it: a failed dial, no route, a self-call, no dial slot
 * within the connect timeout).
 *
 * A peer whose certificate verifies but carries no accepted SPIFFE ID (no URI SAN that is a SPIFFE
 * ID, or a trust domain not accepted) keeps its TLS connection, and each of its CONNECTs is denied
 * with the deny status and reason `no_identity` without consulting policy. DESIGN §2 allows this or
 * a handshake refusal; per-CONNECT denial leaves an audit record for every attempt, which a
 * handshake refusal cannot. Certificates that do not verify (unknown CA, expired) are refused in
 * the handshake itself (`rejectUnauthorized`), counted as handshake failures.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import {
  constants as h2c,
  createSecureServer,
  type Http2SecureServer,
  type IncomingHttpHeaders,
  type SecureServerOptions,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/sink.ts';
import { AUDIT_SCHEMA_VERSION, type AuditDestination, type AuditSource, type DecisionRecord } from '../audit/record.ts';
import { DEFAULT_HEADER_AUDIT_POLICY, selectAuditHeaders, type HeaderAuditPolicy } from '../audit/redact.ts';
import { WaygateError } from '../errors.ts';
import { checkTrustDomain, PeerIdentityCache } from '../identity/peer-identity.ts';
import { canonicalIp } from '../net/address.ts';
import type { DecisionContext } from '../policy/context.ts';
import type { Decision, Reason, Verdict } from '../policy/decision.ts';
import { parseConnectRequest } from './connect-request.ts';
import { DestinationPolicy, type DestinationOptions } from './destination.ts';
import { DialAdmission, DialSlotTimeoutError } from './dial-queue.ts';
import { h2Settings, resolveH2Options, type H2Options, type ResolvedH2Options } from './h2-settings.ts';
import { notify, type HandshakeFailureReason, type HboneObserver } from './observer.ts';
import { proxyV2Connector } from './proxy-protocol.ts';
import { parseRequestHeaders, type BaggageCache } from './request-headers.ts';
import { Tunnel, type Revocation, type TunnelClosedHook } from './tunnel.ts';
import { TunnelRegistry, type Authorize } from './tunnel-registry.ts';
import { tcpConnector } from './upstream-tcp.ts';
import type { UpstreamConnection, UpstreamConnector, UpstreamDialError, UpstreamTarget } from './upstream.ts';

/** TLS material and versions of the listener. */
export interface HboneTlsOptions {
  /** PEM certificate chain (leaf first) the gateway presents. */
  cert: string | Buffer;
  key: string | Buffer;
  /** Trust bundle (PEM) client certificates must chain to. */
  ca: string | Buffer | (string | Buffer)[];
  /** Default TLSv1.3; TLSv1.2 only together with `allowTls12`. */
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  allowTls12?: boolean;
}

export interface HboneServerOptions {
  listen: { host: string; port: number };
  tls: HboneTlsOptions;
  /** SPIFFE trust domains whose identities are accepted (e.g. `["cluster.local"]`). */
  acceptedTrustDomains: readonly string[];
  /**
   * The policy decision for one context; synchronous and pure (the engine's decide()). It is
   * called for every new CONNECT, so it must read the snapshot in force at each call
   * (`ctx => decide(store.current, ctx, opts)`); after a swap, call {@link HboneServer.recheck}.
   */
  authorize: Authorize;
  audit: AuditSink;
  observer?: HboneObserver;
  destinations: DestinationOptions;
  /** Status of a policy deny; default 401 (ztunnel's), e.g. 403. */
  denyStatus?: number;
  /** Upstream connect timeout; default 10 s. */
  connectTimeoutMs?: number;
  /** TLS handshake and HTTP/2 preface timeout each; default 10 s. */
  handshakeTimeoutMs?: number;
  /** Close a tunnel with no byte in either direction for this long; 0 (default) = never. */
  idleTimeoutMs?: number;
  h2?: H2Options;
  /** Ports the gateway itself listens on (admin, metrics...); the HBONE port is added at listen(). */
  ownPorts?: readonly number[];
  /**
   * Which request headers decision records carry. A function is called per record, so the gateway
   * can widen the allow-list to the headers the snapshot in force reads (replay needs them).
   */
  headerAuditPolicy?: HeaderAuditPolicy | (() => HeaderAuditPolicy);
  /** Refuse TCP connections beyond this many open ones (0 = no limit); each refusal is observed. */
  maxConnections?: number;
  /** Write a PROXY v2 header (client address + SPIFFE ID TLV 0xD0) to every upstream (proxy-protocol.ts). */
  proxyProtocol?: boolean;
  /**
   * How allowed tunnels reach their destination (upstream.ts); default plain TCP, or TCP with a
   * PROXY v2 header when `proxyProtocol` is set (the two options exclude each other).
   */
  upstream?: UpstreamConnector;
  /**
   * Upstream dials in flight per HTTP/2 connection. A CONNECT beyond it waits for a slot, in
   * arrival order, within its connect timeout counted from its arrival (dial-queue.ts); one whose
   * budget runs out first is answered 503 (`upstream_failed`, no dial, counted as a
   * `max_pending_dials` refusal). Bounds the sockets one peer can make the gateway open at once.
   * Default 100 (ztunnel's per-connection stream count); a value above `h2.maxConcurrentStreams`
   * is clamped to it (a connection never has more CONNECTs than streams).
   */
  maxPendingDialsPerConnection?: number;
  log?: Logger;
  /** The snapshot in force, for records of CONNECTs refused before policy ran (bad_request, no_identity). */
  snapshotInfo?: () => { version: number; hash: string };
}

/** The running server. */
export interface HboneServer {
  listen(): Promise<AddressInfo>;
  address(): AddressInfo | null;
  /** New handshakes use the new certificate/key/trust bundle; live connections keep theirs. */
  setSecureContext(tls: HboneTlsOptions): void;
  readonly tunnels: TunnelRegistry;
  /**
   * Re-decides every live tunnel (open, or still dialing) with its original context. Open tunnels
   * now denied get RST_STREAM(CANCEL) and a `policy_changed` close record; dialing ones are
   * answered with the deny status. Returns how many were closed. Does not replace `authorize`.
   */
  recheck(authorize: Authorize): number;
  /**
   * Graceful GOAWAY on every connection (GOAWAY(2^31-1) + PING, then the final GOAWAY once the
   * PING is acked), wait up to `deadlineMs` for the tunnels to finish, then reset what is left.
   */
  drain(deadlineMs: number): Promise<{ remaining: number }>;
  close(): Promise<void>;
}

interface Identity {
  principal: string;
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

interface ConnState {
  id: string;
  session: ServerHttp2Session;
  identity: Identity | null;
  tlsVersion: string;
  ip: string;
  port: number;
  openedAt: number;
  streams: number;
  pingSentAt: number;
  prefaceTimer: NodeJS.Timeout | null;
  /** Upstream dials in flight on this connection, and the CONNECTs waiting for one (dial-queue.ts). */
  dials: DialAdmission;
  /** Set once the graceful GOAWAY started; resolves when the final GOAWAY has been submitted. */
  drained: Promise<void> | null;
  /** Submits the final GOAWAY now (drain deadline) if the PING ack has not done it yet. */
  finishDrain: (() => void) | null;
  /**
   * The verified peer as every context and record of this connection carries it (identity, ip and
   * port are fixed per connection): one object per connection, not one per CONNECT.
   */
  source: Readonly<AuditSource>;
  /** `connection` of every decision context on this connection (one object per connection). */
  contextConnection: Readonly<{ id: string; tlsVersion: string }>;
  /** Parsed `baggage` by raw header value (ztunnel sends the same one for every stream of a workload). */
  baggageCache: BaggageCache;
}

/**
 * What the failure path of one CONNECT must know (the catch around handleStream): what was
 * already written, and the upstream socket while the server, not yet the tunnel, owns it.
 */
interface StreamScope {
  base: RecordBase | null;
  destination: AuditDestination;
  decision: Decision | null;
  tunnel: Tunnel | null;
  upstream: UpstreamConnection | null;
  recorded: boolean;
}

/** What every decision record of one CONNECT shares. */
type RecordBase = Omit<RecordArgs, RecordOutcomeKey>;
type RecordOutcomeKey = 'verdict' | 'reason' | 'status' | 'decision' | 'withRule' | 'destination';
/** What one decision record adds to its CONNECT's {@link RecordBase}. */
type RecordOutcome = Pick<RecordArgs, RecordOutcomeKey>;

interface RecordArgs {
  decisionId: string;
  conn: ConnState;
  streamId: number;
  now: Date;
  verdict: Verdict;
  reason: Reason;
  status: number;
  decision: Decision | null;
  /** Keep policy/rule of `decision` (false when the transport, not the policy, decided). */
  withRule: boolean;
  source: AuditSource;
  destination: AuditDestination;
  headers: Record<string, string>;
  baggage: Record<string, string>;
  traceId: string;
}

const NO_IDENTITY: Identity = Object.freeze({ principal: '', trustDomain: '', namespace: '', serviceAccount: '' });
/** The stream's own 'error' listener: failures are handled through 'close' and the close reason. */
function ignoreStreamError(): void {}
const EMPTY_SNAPSHOT = Object.freeze({ version: 0, hash: '' });
const BOOT_ID = randomBytes(4).toString('hex');
/** ztunnel's per-connection stream ceiling; a burst beyond it waits for a slot (dial-queue.ts). */
const DEFAULT_MAX_PENDING_DIALS = 100;
/** RFC 9113 §6.8: a GOAWAY naming the largest stream id announces a shutdown without refusing any stream yet. */
const MAX_STREAM_ID = 2 ** 31 - 1;

function positiveInt(path: string, v: unknown, dflt: number, min = 1): number {
  const value = v ?? dflt;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new WaygateError('WG_CONFIG', `${path}: expected an integer >= ${min}, got ${JSON.stringify(v)}`);
  }
  return value;
}

function tlsOptions(t: HboneTlsOptions): Pick<SecureServerOptions, 'cert' | 'key' | 'ca' | 'minVersion'> {
  if (!t || typeof t !== 'object') throw new WaygateError('WG_CONFIG', 'tls: expected {cert, key, ca}');
  for (const f of ['cert', 'key', 'ca'] as const) {
    const v = t[f];
    if (v === undefined || v === null || (typeof v === 'string' && v.length === 0)) {
      throw new WaygateError('WG_CONFIG', `tls.${f}: required (PEM)`);
    }
  }
  const minVersion = t.minVersion ?? 'TLSv1.3';
  if (minVersion !== 'TLSv1.3' && minVersion !== 'TLSv1.2') {
    throw new WaygateError('WG_CONFIG', `tls.minVersion: expected "TLSv1.3" (or "TLSv1.2" with allowTls12), got ${JSON.stringify(minVersion)}`);
  }
  if (minVersion === 'TLSv1.2' && !t.allowTls12) {
    throw new WaygateError('WG_CONFIG', 'tls.minVersion: TLSv1.2 needs tls.allowTls12: true (ztunnel speaks TLS 1.3 only)');
  }
  return { cert: t.cert, key: t.key, ca: t.ca, minVersion };
}

function classifyTlsError(err: NodeJS.ErrnoException, socket: TLSSocket | undefined): HandshakeFailureReason {
  // Node verifies the client chain after the TLS handshake and destroys the socket, so the error
  // itself is a bare ECONNRESET; the verification result is on the socket.
  const authError = (socket as (TLSSocket & { authorizationError?: string }) | undefined)?.authorizationError;
  if (authError) {
    if (authError === 'CERT_HAS_EXPIRED' || authError === 'CERT_NOT_YET_VALID') return 'expired';
    if (/ISSUER|SELF_SIGNED|UNTRUSTED|LEAF_SIGNATURE|CERT_SIGNATURE_FAILURE|CHAIN/.test(authError)) return 'untrusted';
    if (/NO_PEER|NOT_RETURN|PEER_DID_NOT/.test(authError)) return 'no_certificate';
    return 'certificate';
  }
  const text = `${err.code ?? ''} ${err.message}`;
  if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || /timed? ?out/i.test(text)) return 'timeout';
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_REQUIRED/i.test(text)) return 'no_certificate';
  if (/CERT|certificate|unknown ca/i.test(text)) return 'certificate';
  if (/VERSION|PROTOCOL|CIPHER|ALPN|APPLICATION_PROTOCOL|HTTP_REQUEST|record/i.test(text)) return 'protocol';
  return 'other';
}

function resolveConnector(opts: HboneServerOptions): UpstreamConnector {
  const proxyProtocol = opts.proxyProtocol === true;
  if (opts.upstream === undefined) return proxyProtocol ? proxyV2Connector : tcpConnector;
  if (!opts.upstream || typeof opts.upstream.prepare !== 'function') {
    throw new WaygateError('WG_CONFIG', 'upstream: expected an upstream connector ({ prepare(request) })');
  }
  if (proxyProtocol) throw new WaygateError('WG_CONFIG', 'proxyProtocol: not with a custom upstream connector (the connector decides what it sends first)');
  return opts.upstream;
}

/** Creates (does not start) an HBONE server. Throws `WG_CONFIG` naming the first bad option. */
export function createHboneServer(opts: HboneServerOptions): HboneServer {
  if (!opts || typeof opts !== 'object') throw new WaygateError('WG_CONFIG', 'options: expected an object');
  if (!opts.listen || typeof opts.listen.host !== 'string' || opts.listen.host.length === 0) {
    throw new WaygateError('WG_CONFIG', 'listen.host: expected an address such as "0.0.0.0" or "127.0.0.1"');
  }
  const listenPort = positiveInt('listen.port', opts.listen.port, 15008, 0);
  if (listenPort > 65535) throw new WaygateError('WG_CONFIG', `listen.port: ${listenPort} is not a port`);
  const tls = tlsOptions(opts.tls);
  if (!Array.isArray(opts.acceptedTrustDomains) || opts.acceptedTrustDomains.length === 0) {
    throw new WaygateError('WG_CONFIG', 'acceptedTrustDomains: expected a non-empty list such as ["cluster.local"]');
  }
  const acceptedTrustDomains = [...opts.acceptedTrustDomains];
  if (typeof opts.authorize !== 'function') throw new WaygateError('WG_CONFIG', 'authorize: expected a function (ctx) => Decision');
  if (!opts.audit || typeof opts.audit.decision !== 'function' || typeof opts.audit.close !== 'function') {
    throw new WaygateError('WG_CONFIG', 'audit: expected an AuditSink');
  }
  const denyStatus = positiveInt('denyStatus', opts.denyStatus, 401);
  if (denyStatus < 400 || denyStatus > 499) throw new WaygateError('WG_CONFIG', `denyStatus: expected a 4xx status (401 or 403), got ${denyStatus}`);
  const connectTimeoutMs = positiveInt('connectTimeoutMs', opts.connectTimeoutMs, 10_000);
  const handshakeTimeoutMs = positiveInt('handshakeTimeoutMs', opts.handshakeTimeoutMs, 10_000);
  const idleTimeoutMs = positiveInt('idleTimeoutMs', opts.idleTimeoutMs, 0, 0);
  const h2: ResolvedH2Options = resolveH2Options(opts.h2);
  const destinations = new DestinationPolicy(opts.destinations, opts.ownPorts ?? []);
  const headerAuditPolicyOpt = opts.headerAuditPolicy ?? DEFAULT_HEADER_AUDIT_POLICY;
  const headerAuditPolicy: () => HeaderAuditPolicy =
    typeof headerAuditPolicyOpt === 'function' ? headerAuditPolicyOpt : () => headerAuditPolicyOpt;
  const maxConnections = positiveInt('maxConnections', opts.maxConnections, 0, 0);
  const upstreamConnector = resolveConnector(opts);
  // Clamped to the stream limit: dials beyond it could never be in flight anyway.
  const maxPendingDials = Math.min(
    positiveInt('maxPendingDialsPerConnection', opts.maxPendingDialsPerConnection, DEFAULT_MAX_PENDING_DIALS),
    h2.maxConcurrentStreams,
  );
  const observer = opts.observer;
  const audit = opts.audit;
  const log = opts.log;
  const snapshotInfo = opts.snapshotInfo ?? (() => EMPTY_SNAPSHOT);
  const authorize = opts.authorize;

  const identities = new PeerIdentityCache();
  const registry = new TunnelRegistry();
  const conns = new Set<ConnState>();
  let connSeq = 0;
  let draining = false;
  /** The drain deadline passed (or close() ran): a stream that still slips in is answered 503. */
  let drainDone = false;
  let closed = false;
  let listening = false;

  const server: Http2SecureServer = createSecureServer({
    ...tls,
    // Client certificate required and verified against the bundle (intermediates the client
    // sends are used to build the chain). No SNICallback: SNI is never relied upon.
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ['h2'],
    allowHTTP1: false,
    handshakeTimeout: handshakeTimeoutMs,
    unknownProtocolTimeout: handshakeTimeoutMs,
    settings: h2Settings(h2),
    maxSessionMemory: h2.maxSessionMemoryMb,
    peerMaxConcurrentStreams: h2.maxConcurrentStreams,
  });

  // net.Server drops sockets past maxConnections before TLS starts (cheapest point to refuse);
  // 'drop' reports each one so the refusal is counted, never silent.
  if (maxConnections > 0) {
    server.maxConnections = maxConnections;
    server.on('drop', () => notify(observer, 'refused', 'max_connections'));
  }

  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    const reason = classifyTlsError(err, socket);
    notify(observer, 'handshakeFailed', reason);
    log?.debug({ err: err.message, reason }, 'TLS handshake failed');
  });
  server.on('unknownProtocol', (socket: TLSSocket) => {
    notify(observer, 'handshakeFailed', 'protocol');
    socket.destroy();
  });
  server.on('sessionError', (err) => log?.debug({ err: err.message }, 'HTTP/2 session error'));
  server.on('session', (session: ServerHttp2Session) => onSession(session));

  function onSession(session: ServerHttp2Session): void {
    const socket = session.socket as TLSSocket;
    const id = `${BOOT_ID}-${++connSeq}`;
    const identity = resolveIdentity(socket);
    const tlsVersion = socket.getProtocol?.() ?? '';
    const ip = canonicalIp(socket.remoteAddress ?? '') ?? socket.remoteAddress ?? '';
    const port = socket.remotePort ?? 0;
    const conn: ConnState = {
      id,
      session,
      identity,
      tlsVersion,
      ip,
      port,
      openedAt: performance.now(),
      streams: 0,
      pingSentAt: 0,
      prefaceTimer: null,
      // Waiters are bounded by the advertised stream limit (nghttp2 refuses streams beyond it).
      dials: new DialAdmission({ maxInFlight: maxPendingDials, maxHeld: h2.maxConcurrentStreams, connectTimeoutMs }),
      drained: null,
      finishDrain: null,
      source: sourceOf(identity, ip, port),
      contextConnection: Object.freeze({ id, tlsVersion }),
      baggageCache: new Map(),
    };
    conns.add(conn);
    session.on('error', (err) => log?.debug({ connectionId: conn.id, err: err.message }, 'HTTP/2 session error'));
    // HTTP/2 preface timeout: a client that finished TLS but never sends its preface and SETTINGS
    // must not hold the connection (the TLS handshake timeout no longer applies here).
    conn.prefaceTimer = setTimeout(() => {
      conn.prefaceTimer = null;
      notify(observer, 'handshakeFailed', 'timeout');
      session.destroy();
    }, handshakeTimeoutMs);
    conn.prefaceTimer.unref();
    session.once('remoteSettings', () => {
      if (conn.prefaceTimer) clearTimeout(conn.prefaceTimer);
      conn.prefaceTimer = null;
      // RFC 9113 §6.9.2: the connection window only grows by WINDOW_UPDATE, never by SETTINGS.
      try {
        session.setLocalWindowSize(h2.connectionWindowBytes);
      } catch (err) {
        log?.warn({ err: (err as Error).message }, 'could not raise the connection window');
      }
    });
    session.once('close', () => {
      if (conn.prefaceTimer) clearTimeout(conn.prefaceTimer);
      conns.delete(conn);
      notify(observer, 'connectionClosed', { connectionId: conn.id, durationMs: Math.round(performance.now() - conn.openedAt), streams: conn.streams });
    });
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      conn.streams++;
      const scope: StreamScope = { base: null, destination: { authority: '', ip: '', port: 0, host: '' }, decision: null, tunnel: null, upstream: null, recorded: false };
      void handleStream(conn, stream, headers, rawHeaders, scope).catch((err: unknown) => onStreamFailure(conn, stream, scope, err));
    });
    if (draining) session.close();
    notify(observer, 'connectionOpened', { connectionId: conn.id, tlsVersion: conn.tlsVersion, hasIdentity: conn.identity !== null });
  }

  function resolveIdentity(socket: TLSSocket): Identity | null {
    try {
      const peer = identities.resolve(socket);
      const check = checkTrustDomain(peer, acceptedTrustDomains);
      if (!check.ok || !peer?.spiffeId) {
        log?.info({ reason: check.ok ? 'no_identity' : check.reason, uris: peer?.uris ?? [] }, 'peer has no accepted SPIFFE identity; its CONNECTs will be denied');
        return null;
      }
      const id = peer.spiffeId;
      return { principal: id.id, trustDomain: id.trustDomain, namespace: id.namespace, serviceAccount: id.serviceAccount };
    } catch (err) {
      log?.info({ err: (err as Error).message }, 'unreadable peer certificate; its CONNECTs will be denied');
      return null;
    }
  }

  // ping ticker: one unref'd timer for every session (DESIGN §2: PING every 10 s, close after
  // 20 s without an answer). A session with a PING outstanding for pingTimeoutMs is destroyed.
  const pingTicker = setInterval(() => {
    const now = performance.now();
    for (const conn of conns) {
      const s = conn.session;
      if (s.destroyed || s.connecting) continue;
      if (conn.pingSentAt !== 0) {
        if (now - conn.pingSentAt >= h2.pingTimeoutMs) {
          notify(observer, 'pingTimeout', conn.id);
          log?.info({ connectionId: conn.id }, 'PING unanswered; closing the connection');
          s.destroy();
        }
        continue;
      }
      try {
        conn.pingSentAt = now;
        s.ping((err) => {
          if (!err) conn.pingSentAt = 0;
        });
      } catch {
        conn.pingSentAt = 0;
      }
    }
  }, h2.pingIntervalMs);
  pingTicker.unref();

  function sourceOf(identity: Identity | null, ip: string, port: number): Readonly<AuditSource> {
    const id = identity ?? NO_IDENTITY;
    return Object.freeze({ principal: id.principal, trustDomain: id.trustDomain, namespace: id.namespace, serviceAccount: id.serviceAccount, ip, port });
  }

  /** Answers a CONNECT with a non-200 status and END_STREAM, then asks the client to stop sending (RFC 9113 §8.1: RST_STREAM(NO_ERROR) after a complete response). */
  function refuse(stream: ServerHttp2Stream, status: number): boolean {
    if (stream.destroyed || stream.closed || stream.headersSent) return false;
    try {
      stream.respond({ ':status': status }, { endStream: true });
      stream.close(h2c.NGHTTP2_NO_ERROR);
      return true;
    } catch {
      return false;
    }
  }

  /** `base` and `a` are read, not merged: no per-record spread on the per-CONNECT path. */
  function writeDecision(b: RecordBase, a: RecordOutcome): void {
    const d = a.decision;
    const record: DecisionRecord = {
      schema: AUDIT_SCHEMA_VERSION,
      event: 'decision',
      time: b.now.toISOString(),
      decisionId: b.decisionId,
      connectionId: b.conn.id,
      streamId: b.streamId,
      decision: a.verdict,
      reason: a.reason,
      status: a.status,
      policy: a.withRule && d ? d.policy : null,
      rule: a.withRule && d ? d.rule : null,
      dryRun: d ? d.dryRun : null,
      audit: d ? d.audit : [],
      evalErrors: d ? d.evalErrors.map((e) => ({ policy: e.policy, rule: e.rule, message: e.message })) : [],
      snapshot: d ? d.snapshot : snapshotInfo(),
      source: b.source,
      destination: a.destination,
      traceId: b.traceId,
      headers: selectAuditHeaders(b.headers, headerAuditPolicy()),
      baggage: { ...b.baggage },
      connection: { id: b.conn.id, tlsVersion: b.conn.tlsVersion },
      evalMicros: d ? d.evalMicros : 0,
    };
    try {
      audit.decision(record);
    } catch (err) {
      log?.error({ err: (err as Error).message }, 'audit sink failed to take a decision record');
    }
    notify(observer, 'decision', record);
  }

  function safeAuthorize(ctx: DecisionContext): Decision {
    try {
      return authorize(ctx);
    } catch (err) {
      // Fail closed (DESIGN §3): a decision that cannot be taken is a deny, recorded as eval_error.
      log?.error({ err: (err as Error).message }, 'authorize threw; denying');
      return {
        decision: 'deny',
        reason: 'eval_error',
        policy: null,
        rule: null,
        audit: [],
        dryRun: null,
        evalErrors: [{ policy: '', rule: '', action: 'ALLOW', mode: 'Enforce', message: (err as Error).message }],
        snapshot: snapshotInfo(),
        evalMicros: 0,
      };
    }
  }

  // One hook for every tunnel (no per-stream closure): unregister, then the close record.
  const onTunnelClosed: TunnelClosedHook = (t, record) => {
    registry.remove(t);
    if (!record) return;
    try {
      audit.close(record);
    } catch (err) {
      log?.error({ err: (err as Error).message }, 'audit sink failed to take a close record');
    }
    notify(observer, 'tunnelClosed', record);
  };

  async function handleStream(conn: ConnState, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[], scope: StreamScope): Promise<void> {
    const now = new Date();
    const startedAt = performance.now();
    const decisionId = randomUUID();
    const streamId = stream.id ?? 0;
    const source = conn.source;
    stream.on('error', ignoreStreamError);
    // Known before anything can throw, so the failure path can always write the record.
    scope.base = { decisionId, conn, streamId, now, source, headers: {}, baggage: {}, traceId: '' };
    const parsed = parseRequestHeaders(rawHeaders, conn.baggageCache);
    const base = { decisionId, conn, streamId, now, source, headers: parsed.headers, baggage: parsed.baggage, traceId: parsed.traceId };
    scope.base = base;
    // Every decision record of this CONNECT goes through here, so the failure path knows whether one was written.
    const record = (a: RecordOutcome): void => {
      writeDecision(base, a);
      scope.recorded = true;
    };

    // Phase 1: the request context.
    const req = parseConnectRequest(headers as Record<string, string | string[] | undefined>);
    if (!req.ok) {
      log?.debug({ connectionId: conn.id, streamId, err: req.error.message }, 'malformed CONNECT');
      const status = refuse(stream, 400) ? 400 : 0;
      record({ verdict: 'deny', reason: 'bad_request', status, decision: null, withRule: false, destination: { authority: req.error.authority, ip: '', port: 0, host: '' } });
      return;
    }
    const resolved = destinations.resolve(req.request.target);
    const destination: AuditDestination = { authority: req.request.authority, ip: resolved.ip, port: resolved.port, host: resolved.host };
    scope.destination = destination;
    if (drainDone) {
      // Only a stream that slipped in past the final GOAWAY gets here (nghttp2 ignores later ones).
      const status = refuse(stream, 503) ? 503 : 0;
      record({ verdict: 'deny', reason: 'draining', status, decision: null, withRule: false, destination });
      return;
    }
    // The context lives as long as the tunnel (a recheck re-decides with it): its source and
    // connection are the connection's objects, its destination the record's (same four fields).
    const context: DecisionContext = {
      source,
      destination,
      request: { headers: parsed.headers, baggage: parsed.baggage, traceId: parsed.traceId },
      connection: conn.contextConnection,
      now,
    };
    const tunnel = new Tunnel(
      { decisionId, streamId, stream, session: conn.session, context, destination, forwarded: parsed.forwarded, forwardedNetwork: parsed.forwardedNetwork, startedAt },
      onTunnelClosed,
    );
    // Registered before the first check (DESIGN §3): a recheck from here on includes it.
    registry.register(tunnel);
    scope.tunnel = tunnel;
    tunnel.watchStream();
    const deny = (reason: Reason, status: number, decision: Decision | null, withRule: boolean): void => {
      const sent = refuse(stream, status) ? status : 0;
      record({ verdict: 'deny', reason, status: sent, decision, withRule, destination });
      tunnel.finishPending(null);
    };
    // 503 after a policy allow, without a dial (no route, self-call, dial cap, no PROXY header).
    // Recorded exactly like a failed dial (decision allow/upstream_failed/503 with the rule, then a
    // close record upstream_failed), so every allow+upstream_failed record has its close record.
    const unreachable = (decision: Decision): void => {
      tunnel.authorized = true;
      const sent = refuse(stream, 503) ? 503 : 0;
      record({ verdict: 'allow', reason: 'upstream_failed', status: sent, decision, withRule: true, destination });
      tunnel.finishPending('upstream_failed');
    };

    // Phase 2: authorize, check the destination, dial.
    if (!conn.identity) {
      deny('no_identity', denyStatus, null, false);
      return;
    }
    const decision = safeAuthorize(context);
    scope.decision = decision;
    if (decision.decision !== 'allow') {
      deny(decision.reason, denyStatus, decision, true);
      return;
    }
    const verdict = destinations.checkResolved(resolved);
    if (verdict === 'no_route') {
      // ztunnel answers a hostname it cannot resolve with 503 ("no upstream", NoHostname): the
      // destination is unknown, not refused by the gateway (docs/ztunnel-interop.md D5). The
      // policy allowed, so the record keeps its rule (reason upstream_failed: reason -> status one to one).
      log?.info({ connectionId: conn.id, streamId, destination }, 'CONNECT to a host:port without a configured route: 503');
      unreachable(decision);
      return;
    }
    if (verdict === 'not_allowed') {
      // Outside the allowed networks: the gateway refuses (deny status), it did not fail to reach it.
      deny('destination_not_allowed', denyStatus, decision, false);
      return;
    }
    if (verdict === 'self_call') {
      // DESIGN §2: a CONNECT to one of the gateway's own ports is answered 503 (a loop, not an
      // unreachable destination; reason upstream_failed keeps reason -> status one to one).
      log?.info({ connectionId: conn.id, destination }, 'CONNECT to the gateway itself refused');
      unreachable(decision);
      return;
    }
    // What the connector can refuse without the network (a PROXY header that cannot be built), it
    // refuses before any socket exists: the CONNECT is refused with a record and no dial.
    let target: UpstreamTarget;
    try {
      target = upstreamConnector.prepare({ ip: resolved.ip, port: resolved.port, context });
    } catch (err) {
      log?.warn({ connectionId: conn.id, streamId, err: (err as Error).message }, 'the upstream connector cannot carry this tunnel: 503');
      unreachable(decision);
      return;
    }
    // Authorized from here on, whether it dials now or waits for a dial slot: a recheck, a drain
    // or a shutdown revokes it either way (tunnel-registry.ts re-checks authorized tunnels only).
    tunnel.authorized = true;
    if (tunnel.streamClosed) {
      // Reset before the dial could start: nothing to dial for.
      record({ verdict: 'allow', reason: decision.reason, status: 0, decision, withRule: true, destination });
      tunnel.finishPending('client_reset');
      return;
    }
    // Dials now if a slot of the connection is free, else waits for one (dial-queue.ts); the
    // connect budget counts from the CONNECT's arrival either way.
    const dial = conn.dials.admit(target, startedAt, () => tunnel.streamClosed);
    if (dial === null) {
      // Every stream the connection may hold is already dialing or waiting: only reachable while
      // a stream the client reset has not been seen closed yet (nghttp2 enforces the stream limit).
      log?.warn({ connectionId: conn.id, streamId, destination, dialsInFlight: conn.dials.inFlight, dialsWaiting: conn.dials.waiting, limit: maxPendingDials }, 'dial queue of this connection full: 503');
      notify(observer, 'refused', 'max_pending_dials');
      unreachable(decision);
      return;
    }
    tunnel.setDial(dial);
    let upstream: UpstreamConnection;
    try {
      upstream = await dial.promise;
    } catch (err) {
      tunnel.setDial(null);
      const e = err as UpstreamDialError;
      if (tunnel.revoked) {
        answerRevoked(tunnel, tunnel.revoked, base, destination, decision);
        return;
      }
      if (e.kind === 'aborted' || tunnel.streamClosed) {
        // The client reset the stream while we waited or dialed (Tunnel aborted the dial on the
        // stream's close). The decision record keeps what the policy said, with status 0 (no
        // answer could be sent); the close record says client_reset.
        log?.debug({ connectionId: conn.id, streamId, queued: dial.queued }, 'CONNECT reset by the client before its answer; dial abandoned');
        record({ verdict: 'allow', reason: decision.reason, status: 0, decision, withRule: true, destination });
        tunnel.finishPending('client_reset');
        return;
      }
      if (e instanceof DialSlotTimeoutError) {
        // Waited its whole connect budget for a slot: the dial cap refused it, no destination failed.
        log?.warn({ connectionId: conn.id, streamId, destination, limit: maxPendingDials, connectTimeoutMs }, 'no upstream dial slot freed on this connection within the connect timeout: 503');
        notify(observer, 'refused', 'max_pending_dials');
      } else {
        notify(observer, 'upstreamFailed', e.kind, Math.round(performance.now() - (dial.dialStartedAt ?? startedAt)));
        log?.info({ connectionId: conn.id, streamId, err: e.message }, 'upstream connect failed');
      }
      const sent = refuse(stream, 503) ? 503 : 0;
      record({ verdict: 'allow', reason: 'upstream_failed', status: sent, decision, withRule: true, destination });
      tunnel.finishPending('upstream_failed');
      return;
    }
    // From here until tunnel.open() the socket is the server's: the failure path destroys it.
    scope.upstream = upstream;
    tunnel.setDial(null);
    notify(observer, 'upstreamConnected', Math.round(performance.now() - (dial.dialStartedAt ?? startedAt)));
    if (tunnel.revoked) {
      scope.upstream = null;
      upstream.destroy();
      answerRevoked(tunnel, tunnel.revoked, base, destination, decision);
      return;
    }
    if (tunnel.streamClosed) {
      // The client gave up as the dial completed: no answer can be sent (status 0 in the record).
      scope.upstream = null;
      upstream.destroy();
      record({ verdict: 'allow', reason: decision.reason, status: 0, decision, withRule: true, destination });
      tunnel.finishPending('client_reset');
      return;
    }

    // Phase 3: 200 and pipe.
    record({ verdict: 'allow', reason: decision.reason, status: 200, decision, withRule: true, destination });
    scope.upstream = null; // handed over: the tunnel owns it from its first statement on
    tunnel.open(upstream, idleTimeoutMs);
  }

  /**
   * A CONNECT whose handling threw (a bug, or a sink/hook that threw, not a peer's doing): the
   * upstream socket the server still owns is destroyed, the one decision record is written if it
   * was not yet, the client gets 503 if it can still be answered (a reset otherwise), and no
   * registry entry outlives the stream.
   */
  function onStreamFailure(conn: ConnState, stream: ServerHttp2Stream, scope: StreamScope, err: unknown): void {
    log?.error({ err: (err as Error)?.message ?? String(err), connectionId: conn.id, streamId: stream.id }, 'CONNECT handling failed');
    try {
      if (scope.upstream) {
        scope.upstream.destroy();
        scope.upstream = null;
      }
      const d = scope.decision;
      const allowed = d?.decision === 'allow';
      if (!scope.recorded && scope.base) {
        // Fail closed (DESIGN §3). After a policy allow the transport failed (503, upstream_failed,
        // rule kept); before one there is no decision to show (eval_error, the deny status).
        const status = allowed ? 503 : denyStatus;
        const sent = refuse(stream, status) ? status : 0;
        writeDecision(scope.base, { verdict: allowed ? 'allow' : 'deny', reason: allowed ? 'upstream_failed' : 'eval_error', status: sent, decision: d, withRule: allowed, destination: scope.destination });
        scope.recorded = true;
      }
    } catch (again) {
      log?.error({ err: (again as Error)?.message ?? String(again), connectionId: conn.id }, 'could not record the failed CONNECT');
    } finally {
      const t = scope.tunnel;
      if (t && t.state === 'pending') t.finishPending('error');
      else if (t && t.state === 'open') t.fail('error', h2c.NGHTTP2_INTERNAL_ERROR);
      if (!stream.destroyed && !stream.closed) stream.close(h2c.NGHTTP2_INTERNAL_ERROR);
    }
  }

  function answerRevoked(
    tunnel: Tunnel,
    rev: Revocation,
    base: RecordBase,
    destination: AuditDestination,
    original: Decision,
  ): void {
    if (rev.reason === 'policy_changed') {
      const d = rev.decision ?? null;
      const sent = refuse(tunnel.stream, denyStatus) ? denyStatus : 0;
      writeDecision(base, { verdict: 'deny', reason: 'policy_changed', status: sent, decision: d ?? original, withRule: d !== null, destination });
      tunnel.setCloseDecision(d);
      tunnel.finishPending('policy_changed');
      return;
    }
    // Draining answers 503; a hard close() cannot answer any more (status 0). Both are the
    // gateway going away, recorded with reason `draining`.
    const status = rev.reason === 'draining' ? 503 : 0;
    const sent = status !== 0 && refuse(tunnel.stream, status) ? status : 0;
    if (sent === 0 && !tunnel.stream.destroyed) tunnel.stream.close(h2c.NGHTTP2_CANCEL);
    writeDecision(base, { verdict: 'deny', reason: 'draining', status: sent, decision: original, withRule: false, destination });
    tunnel.finishPending(rev.reason);
  }

  /**
   * ztunnel's (hyper's) graceful shutdown of one connection, RFC 9113 §6.8: GOAWAY(NO_ERROR,
   * 2^31-1) tells the client to open no new stream without refusing any already on the way; a
   * PING sent after it comes back once the client has read the GOAWAY (one round trip); then
   * `session.close()` sends the final GOAWAY with the last stream id processed, and open streams
   * finish. Resolves once the final GOAWAY is submitted (PING ack, PING failure, session gone, or
   * `finishDrain()` at the drain deadline).
   *
   * Limit of Node 20: it exposes `nghttp2_submit_goaway` but not `nghttp2_submit_shutdown_notice`,
   * and nghttp2 ignores every new stream once it has sent any GOAWAY of the former kind. So a
   * CONNECT that raced the first GOAWAY is not served: the final GOAWAY's last stream id tells the
   * client it was never processed (safe to retry, RFC 9113 §6.8) instead of a REFUSED_STREAM.
   */
  function gracefulGoaway(conn: ConnState): Promise<void> {
    if (conn.drained) return conn.drained;
    const session = conn.session;
    let resolveDrained!: () => void;
    conn.drained = new Promise<void>((resolve) => {
      resolveDrained = resolve;
    });
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      conn.finishDrain = null;
      if (!session.closed && !session.destroyed) session.close();
      resolveDrained();
    };
    conn.finishDrain = finish;
    if (session.closed || session.destroyed) {
      finish();
      return conn.drained;
    }
    try {
      session.goaway(h2c.NGHTTP2_NO_ERROR, MAX_STREAM_ID);
    } catch (err) {
      log?.debug({ connectionId: conn.id, err: (err as Error).message }, 'graceful GOAWAY failed; closing');
      finish();
      return conn.drained;
    }
    // nghttp2 queues PING as urgent, ahead of a GOAWAY still waiting to be written; Node flushes
    // the GOAWAY in a native immediate, which runs before this JS one, so the PING follows it.
    setImmediate(() => {
      if (done) return;
      if (session.closed || session.destroyed) return finish();
      try {
        if (!session.ping(() => finish())) finish();
      } catch {
        finish();
      }
    });
    return conn.drained;
  }

  const api: HboneServer = {
    tunnels: registry,

    listen() {
      if (listening) return Promise.reject(new WaygateError('WG_CONFIG', 'listen(): already listening'));
      listening = true;
      return new Promise<AddressInfo>((resolve, reject) => {
        const onError = (err: Error): void => reject(new WaygateError('WG_CONFIG', `cannot listen on ${opts.listen.host}:${listenPort}: ${err.message}`, { cause: err }));
        server.once('error', onError);
        server.listen(listenPort, opts.listen.host, () => {
          server.removeListener('error', onError);
          server.on('error', (err) => log?.error({ err: err.message }, 'HBONE listener error'));
          const addr = server.address() as AddressInfo;
          destinations.addOwnPort(addr.port);
          resolve(addr);
        });
      });
    },

    address() {
      const a = server.address();
      return a && typeof a === 'object' ? a : null;
    },

    setSecureContext(t: HboneTlsOptions) {
      server.setSecureContext({ ...tlsOptions(t) });
    },

    recheck(fn: Authorize) {
      if (typeof fn !== 'function') throw new WaygateError('WG_CONFIG', 'recheck: expected a function (ctx) => Decision');
      return registry.recheck(fn);
    },

    async drain(deadlineMs: number) {
      if (!Number.isFinite(deadlineMs) || deadlineMs < 0) throw new WaygateError('WG_CONFIG', `drain: deadlineMs must be >= 0, got ${deadlineMs}`);
      draining = true;
      // Stop accepting connections (the callback fires only when every connection is gone).
      if (server.listening) server.close();
      const finalGoaways = [...conns].map(gracefulGoaway);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        // Every final GOAWAY first (no stream can start after it), then every tunnel gone.
        Promise.all(finalGoaways).then(() => registry.whenEmpty()),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, deadlineMs);
        }),
      ]);
      clearTimeout(timer);
      drainDone = true;
      // Deadline: the final GOAWAY goes out now where a PING ack has not sent it yet.
      for (const conn of conns) conn.finishDrain?.();
      const remaining = registry.revokeAll('draining');
      return { remaining };
    },

    async close() {
      if (closed) return;
      closed = true;
      draining = true;
      drainDone = true;
      clearInterval(pingTicker);
      registry.revokeAll('session_closed');
      const done = new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
      });
      for (const conn of conns) conn.session.destroy();
      await done;
    },
  };
  return api;
}
