/**
 * The HTTP/2 connections of the HBONE listener (docs/design.md §2 "HTTP/2"): who the peer is, the
 * HTTP/2 preface timeout and connection window, keep-alive PINGs, the graceful GOAWAY of a drain,
 * the per-connection dial admission (dial-queue.ts), and the handshake failures and connection
 * limit of the listener. What happens to one CONNECT stream is connect-handler.ts's business: a
 * connection hands each new stream to it and counts it until it closes.
 */
import { constants as h2c, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { randomBytes } from 'node:crypto';
import { Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { LogRateLimiter } from '../telemetry/log.ts';
import { checkTrustDomain, PeerIdentityCache } from '../identity/peer-identity.ts';
import { canonicalIp } from '../net/address.ts';
import { connectionAttributes, type ConnectionAttributes } from '../policy/context.ts';
import { DialAdmission } from './dial-queue.ts';
import type { ResolvedH2Options } from './h2-settings.ts';
import { notify, type HandshakeFailureReason, type HboneObserver } from './observer.ts';
import { BaggageCache } from './request-headers.ts';

/** Called for every CONNECT stream a connection receives. */
export type StreamHandler = (conn: HboneConnection, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]) => void;

export interface SessionOptions {
  h2: ResolvedH2Options;
  /** TLS handshake and HTTP/2 preface timeout each. */
  handshakeTimeoutMs: number;
  acceptedTrustDomains: readonly string[];
  /** Per connection: dials in flight at once (dial-queue.ts). */
  maxPendingDials: number;
  connectTimeoutMs: number;
  /** Refuse TCP connections beyond this many open ones (0 = no limit). */
  maxConnections: number;
  observer: HboneObserver | undefined;
  log: Logger | undefined;
}

const BOOT_ID = randomBytes(4).toString('hex');
/** RFC 9113 §6.8: a GOAWAY naming the largest stream id announces a shutdown without refusing any stream yet. */
const MAX_STREAM_ID = 2 ** 31 - 1;

/** Back-reference from a CONNECT stream to its connection, for the one shared 'close' listener. */
const kConnection = Symbol('waygate.connection');
type CountedStream = ServerHttp2Stream & { [kConnection]?: HboneConnection };

/** The verified peer of a connection. */
interface Identity {
  principal: string;
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

/** One TLS + HTTP/2 connection of a peer. */
export class HboneConnection {
  /** Gateway-assigned id (boot id and a sequence number). */
  readonly id: string;
  readonly session: ServerHttp2Session;
  /** The accepted SPIFFE identity of the peer; null: every CONNECT of it is denied (`no_identity`). */
  readonly identity: Identity | null;
  readonly tlsVersion: string;
  /**
   * The policy attributes read once per connection (`source`, `connection`: identity, peer address
   * and TLS are fixed per connection), as every decision context and record of it carries them:
   * one object each per connection, not per CONNECT (policy/attributes.ts says what they are).
   */
  readonly attributes: ConnectionAttributes;
  /** Parsed `baggage` by raw header value (ztunnel sends the same one for every stream of a workload). */
  readonly baggageCache = new BaggageCache();
  /** Upstream dials in flight on this connection, and the CONNECTs waiting for one (dial-queue.ts). */
  readonly dials: DialAdmission;
  readonly openedAt = performance.now();
  /** CONNECT streams received so far. */
  streams = 0;
  /** When the outstanding keep-alive PING was sent; 0 when none is. */
  pingSentAt = 0;
  /** CONNECT streams received and not closed yet. */
  #liveStreams = 0;
  #prefaceTimer: NodeJS.Timeout | null = null;
  /** Set once the graceful GOAWAY started; resolves when the final GOAWAY has been submitted. */
  #drained: Promise<void> | null = null;
  /** Submits the final GOAWAY now, if the graceful GOAWAY has not done it yet. */
  #finishDrain: (() => void) | null = null;

  constructor(id: string, session: ServerHttp2Session, identity: Identity | null, dials: DialAdmission) {
    const socket = session.socket as TLSSocket;
    this.id = id;
    this.session = session;
    this.identity = identity;
    this.tlsVersion = socket.getProtocol?.() ?? '';
    this.dials = dials;
    const ip = canonicalIp(socket.remoteAddress ?? '') ?? socket.remoteAddress ?? '';
    this.attributes = connectionAttributes({ id, tls: socket, identity, peer: { ip, port: socket.remotePort ?? 0 } });
  }

  /** Counts a new CONNECT stream until its 'close'. */
  trackStream(stream: ServerHttp2Stream): void {
    this.streams++;
    this.#liveStreams++;
    (stream as CountedStream)[kConnection] = this;
    stream.on('close', HboneConnection.#onStreamClose);
  }

  /**
   * ztunnel's (hyper's) graceful shutdown of one connection, RFC 9113 §6.8: GOAWAY(NO_ERROR,
   * 2^31-1) tells the client to open no new stream without refusing any already on the way; a
   * PING sent after it comes back once the client has read the GOAWAY (one round trip); then
   * `session.close()` sends the final GOAWAY with the last stream id processed, and open streams
   * finish. Resolves once the final GOAWAY is submitted (PING ack, PING failure, session gone,
   * no stream left open, or {@link finishDrain} at the drain deadline).
   *
   * Limits of Node's http2 (Node 20 and Node 24 alike):
   * - it exposes `nghttp2_submit_goaway` but not `nghttp2_submit_shutdown_notice`, and nghttp2
   *   ignores every new stream once it has sent any GOAWAY of the former kind. So a CONNECT that
   *   raced the first GOAWAY is not served: the final GOAWAY's last stream id tells the client it
   *   was never processed (safe to retry, RFC 9113 §6.8) instead of a REFUSED_STREAM;
   * - once a GOAWAY is sent and no stream is open, nghttp2 no longer wants to read
   *   (`nghttp2_session_want_read()` returns 0) and Node stops reading the socket: the PING ack
   *   would never be read, nor the peer's FIN. So the final GOAWAY goes out at once when no stream
   *   is open, and as soon as the last one closes.
   */
  gracefulGoaway(log: Logger | undefined): Promise<void> {
    if (this.#drained) return this.#drained;
    const session = this.session;
    let resolveDrained!: () => void;
    this.#drained = new Promise<void>((resolve) => {
      resolveDrained = resolve;
    });
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      this.#finishDrain = null;
      if (!session.closed && !session.destroyed) session.close();
      resolveDrained();
    };
    this.#finishDrain = finish;
    if (session.closed || session.destroyed) {
      finish();
      return this.#drained;
    }
    try {
      session.goaway(h2c.NGHTTP2_NO_ERROR, MAX_STREAM_ID);
    } catch (err) {
      log?.debug({ connectionId: this.id, err: (err as Error).message }, 'graceful GOAWAY failed; closing');
      finish();
      return this.#drained;
    }
    if (this.#liveStreams === 0) {
      finish();
      return this.#drained;
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
    return this.#drained;
  }

  /** Drain deadline: the final GOAWAY goes out now where the graceful GOAWAY has not sent it yet. */
  finishDrain(): void {
    this.#finishDrain?.();
  }

  /** Starts the HTTP/2 preface timer (cleared by the peer's SETTINGS or the session's close). */
  startPrefaceTimer(timeoutMs: number, onTimeout: (conn: HboneConnection) => void): void {
    this.#prefaceTimer = setTimeout(() => {
      this.#prefaceTimer = null;
      onTimeout(this);
    }, timeoutMs);
    this.#prefaceTimer.unref();
  }

  clearPrefaceTimer(): void {
    if (this.#prefaceTimer) clearTimeout(this.#prefaceTimer);
    this.#prefaceTimer = null;
  }

  static #onStreamClose(this: CountedStream): void {
    const conn = this[kConnection];
    if (!conn) return;
    this[kConnection] = undefined;
    // A peer that sends more DATA than a stream window allows has broken flow control for the whole
    // connection. nghttp2 1.61 (Node 20) answers it with RST_STREAM(FLOW_CONTROL_ERROR) alone,
    // nghttp2 1.70 (Node 24) ends the connection with GOAWAY(FLOW_CONTROL_ERROR); RFC 9113 §5.4.1
    // and §6.9.1 allow both. Node 20 follows Node 24 here, so a gateway behaves the same on both:
    // the connection is ended, after this stream's tunnel has seen its own reset (and after Node
    // has written the RST_STREAM: it flushes in a native immediate, and a destroy before it drops
    // the frame). A peer's own RST_STREAM(FLOW_CONTROL_ERROR) ends the connection too: it says the
    // connection's flow control is broken.
    if (this.rstCode === h2c.NGHTTP2_FLOW_CONTROL_ERROR && !conn.session.destroyed) setImmediate(HboneConnection.#endOnFlowControlError, conn);
    // With no stream left, a draining session stops reading (see gracefulGoaway): finish it, after
    // the stream's other 'close' listeners (its tunnel's), so they see the session as it was when
    // the stream closed (a tunnel reads a destroyed session as the connection lost).
    if (--conn.#liveStreams === 0 && conn.#finishDrain) process.nextTick(HboneConnection.#finishIfIdle, conn);
  }

  static #endOnFlowControlError(conn: HboneConnection): void {
    if (conn.session.destroyed) return;
    // GOAWAY(FLOW_CONTROL_ERROR, last stream id processed), as nghttp2 1.70 sends it.
    conn.session.destroy(new Error('the peer sent DATA beyond a stream window (RFC 9113 §6.9.1)'), h2c.NGHTTP2_FLOW_CONTROL_ERROR);
  }

  static #finishIfIdle(conn: HboneConnection): void {
    if (conn.#liveStreams === 0) conn.#finishDrain?.();
  }
}

/** Every connection of one listener, its keep-alive PINGs and its handshake bookkeeping. */
export class HboneSessions {
  readonly #o: SessionOptions;
  readonly #onStream: StreamHandler;
  readonly #identities = new PeerIdentityCache();
  readonly #conns = new Set<HboneConnection>();
  readonly #server: Http2SecureServer;
  readonly #pingTicker: NodeJS.Timeout;
  readonly #logHandshakeFailure: HandshakeFailureLog;
  #seq = 0;
  #draining = false;

  constructor(server: Http2SecureServer, opts: SessionOptions, onStream: StreamHandler) {
    this.#o = opts;
    this.#onStream = onStream;
    this.#server = server;
    this.#logHandshakeFailure = watchHandshakes(server, opts);
    server.on('session', (session: ServerHttp2Session) => this.#open(session));
    // One unref'd timer for every session (docs/design.md §2: PING every 10 s, close after 20 s unanswered).
    this.#pingTicker = setInterval(() => this.#pingAll(), opts.h2.pingIntervalMs);
    this.#pingTicker.unref();
  }

  /**
   * Stops accepting connections and leaves the open ones alone, for {@link goawayAll} to drain.
   * Not `server.close()`: on Node 24 (not Node 20), `Http2SecureServer.prototype.close` also calls
   * `session.close()` on every session it tracks (lib/internal/http2/core.js `closeAllSessions`),
   * which submits the final GOAWAY (last stream id processed) at once, so the graceful GOAWAY of a
   * drain would never send its GOAWAY(2^31-1) and PING first. The TLS server's own `close` is the
   * listener part alone, on every Node version.
   */
  stopListening(): void {
    if (this.#server.listening) TlsServer.prototype.close.call(this.#server);
  }

  /** Starts the graceful GOAWAY of every connection (and of any that opens from now on); resolves when every final GOAWAY is submitted. */
  goawayAll(): Promise<void> {
    this.#draining = true;
    return Promise.all([...this.#conns].map((c) => c.gracefulGoaway(this.#o.log))).then(() => undefined);
  }

  /** Drain deadline: sends every final GOAWAY that a PING ack has not sent yet. */
  finishDrains(): void {
    for (const conn of this.#conns) conn.finishDrain();
  }

  /** No more PINGs; a connection that still opens is closed at once. */
  stop(): void {
    this.#draining = true;
    clearInterval(this.#pingTicker);
  }

  /** Hard stop: every session destroyed. */
  destroyAll(): void {
    this.stop();
    for (const conn of this.#conns) conn.session.destroy();
  }

  #open(session: ServerHttp2Session): void {
    const { h2, observer, log } = this.#o;
    const id = `${BOOT_ID}-${++this.#seq}`;
    // Waiters are bounded by the advertised stream limit (nghttp2 refuses streams beyond it).
    const dials = new DialAdmission({ maxInFlight: this.#o.maxPendingDials, maxHeld: h2.maxConcurrentStreams, connectTimeoutMs: this.#o.connectTimeoutMs });
    const conn = new HboneConnection(id, session, this.#resolveIdentity(session.socket as TLSSocket), dials);
    this.#conns.add(conn);
    session.on('error', (err) => log?.debug({ connectionId: conn.id, err: err.message }, 'HTTP/2 session error'));
    // HTTP/2 preface timeout: a client that finished TLS but never sends its preface and SETTINGS
    // must not hold the connection (the TLS handshake timeout no longer applies here).
    conn.startPrefaceTimer(this.#o.handshakeTimeoutMs, (c) => {
      notify(observer, 'handshakeFailed', 'timeout');
      const socket = c.session.socket;
      this.#logHandshakeFailure(formatPeer(socket?.remoteAddress, socket?.remotePort), 'timeout', `no HTTP/2 preface within ${this.#o.handshakeTimeoutMs} ms`);
      c.session.destroy();
    });
    session.once('remoteSettings', () => {
      conn.clearPrefaceTimer();
      // RFC 9113 §6.9.2: the connection window only grows by WINDOW_UPDATE, never by SETTINGS.
      try {
        session.setLocalWindowSize(h2.connectionWindowBytes);
      } catch (err) {
        log?.warn({ err: (err as Error).message }, 'could not raise the connection window');
      }
    });
    session.once('close', () => {
      conn.clearPrefaceTimer();
      this.#conns.delete(conn);
      notify(observer, 'connectionClosed', { connectionId: conn.id, durationMs: Math.round(performance.now() - conn.openedAt), streams: conn.streams });
    });
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      conn.trackStream(stream);
      this.#onStream(conn, stream, headers, rawHeaders);
    });
    if (this.#draining) session.close();
    notify(observer, 'connectionOpened', { connectionId: conn.id, tlsVersion: conn.tlsVersion, hasIdentity: conn.identity !== null });
  }

  #resolveIdentity(socket: TLSSocket): Identity | null {
    const log = this.#o.log;
    try {
      const peer = this.#identities.resolve(socket);
      const check = checkTrustDomain(peer, this.#o.acceptedTrustDomains);
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

  /** A session with a PING outstanding for `pingTimeoutMs` is destroyed; the others are pinged. */
  #pingAll(): void {
    const { h2, observer, log } = this.#o;
    const now = performance.now();
    for (const conn of this.#conns) {
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
  }
}

/** Writes the (rate-limited) `warn` line of one failed handshake. */
type HandshakeFailureLog = (peer: string, reason: HandshakeFailureReason, err: string) => void;

/**
 * The listener's own events: handshake failures (classified for metrics, logged) and the
 * connection limit. Returns the handshake-failure log, for the HTTP/2 preface timeout.
 */
function watchHandshakes(server: Http2SecureServer, opts: SessionOptions): HandshakeFailureLog {
  const { observer, log } = opts;
  // net.Server drops sockets past maxConnections before TLS starts (cheapest point to refuse);
  // 'drop' reports each one so the refusal is counted, never silent.
  if (opts.maxConnections > 0) {
    server.maxConnections = opts.maxConnections;
    server.on('drop', () => notify(observer, 'refused', 'max_connections'));
  }
  // A client that fails its handshake is usually a misconfiguration someone is looking for (wrong
  // CA, expired certificate), so it is a `warn` line with the peer and the reason; bounded, since
  // a peer can cause any number of them. The metric counts every one.
  const limiter = new LogRateLimiter(HANDSHAKE_LOG_BUDGET);
  const logFailure: HandshakeFailureLog = (peer, reason, err) => {
    if (!log) return;
    const allowed = limiter.take();
    if (!allowed.log) return;
    const fields = { peer, reason, detail: HANDSHAKE_FAILURE_WORDS[reason], err, ...(allowed.suppressed > 0 ? { suppressed: allowed.suppressed } : {}) };
    log.warn(fields, allowed.last
      ? `TLS handshake failed; further failures are not logged for a while (at most ${limiter.rate}; waygate_tls_handshake_failures_total counts every one)`
      : 'TLS handshake failed');
  };
  // The peer address is read when the connection arrives: by the time the handshake has failed
  // the socket may be destroyed, and a destroyed socket no longer knows its peer.
  const peers = new WeakMap<object, string>();
  server.on('connection', (raw: Socket) => peers.set(raw, formatPeer(raw.remoteAddress, raw.remotePort)));
  const peerOf = (socket: TLSSocket | undefined): string => {
    const raw = (socket as (TLSSocket & { _parent?: object }) | undefined)?._parent;
    return (raw && peers.get(raw)) ?? formatPeer(socket?.remoteAddress, socket?.remotePort);
  };
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    const reason = classifyTlsError(err, socket);
    notify(observer, 'handshakeFailed', reason);
    const authError = (socket as (TLSSocket & { authorizationError?: string }) | undefined)?.authorizationError;
    logFailure(peerOf(socket), reason, authError ?? err.code ?? err.message);
  });
  server.on('unknownProtocol', (socket: TLSSocket) => {
    notify(observer, 'handshakeFailed', 'protocol');
    logFailure(peerOf(socket), 'protocol', `ALPN ${JSON.stringify(socket.alpnProtocol || 'none')}, not h2`);
    socket.destroy();
  });
  server.on('sessionError', (err) => log?.debug({ err: err.message }, 'HTTP/2 session error'));
  return logFailure;
}

/** Handshake-failure log lines: at most 10 a minute (docs/operating.md, "Logs"). */
const HANDSHAKE_LOG_BUDGET = { lines: 10, windowMs: 60_000 };

/** The `detail` of a handshake-failure log line, for a person. */
const HANDSHAKE_FAILURE_WORDS: Record<HandshakeFailureReason, string> = {
  timeout: 'the TLS handshake or HTTP/2 preface did not complete in time',
  no_certificate: 'the client sent no certificate',
  untrusted: 'the client certificate is not signed by the trust bundle',
  expired: 'the client certificate is expired or not yet valid',
  certificate: 'the client certificate did not verify',
  protocol: 'TLS version, cipher or ALPN (h2) mismatch, or not TLS at all',
  other: 'the TLS handshake failed',
};

function formatPeer(address: string | undefined, port: number | undefined): string {
  if (!address) return 'unknown';
  return address.includes(':') ? `[${address}]:${port ?? 0}` : `${address}:${port ?? 0}`;
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
