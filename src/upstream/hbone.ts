/**
 * The HBONE upstream connector: an allowed tunnel leaves the gateway as an HTTP/2 CONNECT stream to
 * the destination pod's ztunnel, over mutual TLS with the gateway's own identity, as an Istio
 * waypoint sends it (docs/design.md §6 "HBONE origination", §8.4):
 *
 * - TLS 1.3 only, ALPN `h2` (refused when not negotiated), **no SNI** (ztunnel dials pod IPs), the
 *   gateway's current certificate as client certificate (`opts.tls()` is read for every new
 *   connection, so a rotated certificate is used from the next connection on; open ones keep theirs);
 * - the destination's chain must verify against the trust bundle and its certificate must carry
 *   **exactly** the endpoint's SPIFFE ID as a URI SAN, no hostname check (src/identity/peer-identity.ts
 *   `checkSpiffeIdentity`, ztunnel's rule). Both are checked inside the TLS handshake, before the
 *   HTTP/2 session exists: a destination with the wrong identity receives no HTTP/2 preface and no
 *   CONNECT, only the end of the handshake;
 * - `CONNECT podIP:targetPort` with the headers of hbone-headers.ts; the dial resolves only on a
 *   200. 401/403 -> kind `denied` (the destination's own policy refused the gateway), any other
 *   status or a reset before the answer -> `rejected`; a REFUSED_STREAM before the answer (the
 *   connection went away under the request: RFC 9113 §8.7 says it was not processed) is retried
 *   once on another connection;
 * - connections are pooled per (ztunnel address, expected identity): hbone-pool.ts.
 *
 * Windows: 1 MiB stream windows, not ztunnel's 4 MiB. Node hands back the *connection* window as
 * soon as DATA arrives (src/hbone/h2-settings.ts), so only stream windows bound what a destination
 * can make the gateway hold; the connection window (default 4x the stream window, the listener's
 * rule) only caps bytes in flight on the wire and costs no memory of its own. Per upstream
 * connection, across both hops, an open tunnel holds at most its client stream window (the
 * listener's, h2-settings.ts) + its upstream stream window (here) + the tunnel's write budget in
 * each direction (`TUNNEL_WRITE_BUFFER_BYTES`, src/hbone/tunnel.ts, plus one chunk), so with the
 * defaults 100 streams x (1 + 1 + 2 x 0.25) MiB = 250 MiB, plus nghttp2's own buffers
 * (`maxSessionMemory`, 32 MB) and the sockets'. ztunnel's windows would make it 850 MiB.
 *
 * One {@link HboneDial} object per tunnel is the pending dial and, once answered, the connection
 * (as tcp.ts's TcpUpstream): its stream listeners are shared functions that find it through a
 * symbol on the stream.
 */
import http2, { constants as h2, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import tls, { type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { optionInRange } from '../config/ranges.ts';
import { WaygateError } from '../errors.ts';
import { checkSpiffeIdentity, identityFromCertificate } from '../identity/peer-identity.ts';
import {
  UpstreamDialError,
  type DialFailureKind,
  type PendingDial,
  type UpstreamConnection,
  type UpstreamConnector,
  type UpstreamInfo,
  type UpstreamRequest,
  type UpstreamTarget,
} from './connector.ts';
import { authorityOf, hboneConnectHeaders } from './hbone-headers.ts';
import { HbonePool, poolKey, type HboneUpstreamObserver, type PooledConnection, type PoolDestination, type PoolWaiter } from './hbone-pool.ts';
import { classify } from './tcp.ts';
import { resetAlone } from '../util/h2-reset.ts';
import { notify } from '../util/notify.ts';

export type { HboneUpstreamObserver } from './hbone-pool.ts';

/** The gateway's client TLS material: its serving certificate chain, key and trust bundle. */
export interface HboneTlsMaterial {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer | (string | Buffer)[];
}

export interface HboneUpstreamOptions {
  /** The gateway's current client material (its serving cert: rotated with it); read for every NEW connection. */
  tls: () => HboneTlsMaterial;
  /** Value of the `baggage` header describing the gateway, sent as given; omitted when `""`. */
  baggage: string;
  /** Streams per connection; default 100 (ztunnel's), also capped by the peer's SETTINGS_MAX_CONCURRENT_STREAMS. */
  maxStreamsPerConnection?: number;
  /** A connection with no stream this long is closed; default 300,000 ms. */
  poolIdleTimeoutMs?: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE; default 1 MiB (see the module comment for the memory bound). */
  streamWindowBytes?: number;
  /** Connection receive window; default 4x the stream window, at least the stream window. */
  connectionWindowBytes?: number;
  /** Keep-alive PING interval; default 10,000 ms (ztunnel's). */
  pingIntervalMs?: number;
  /** A connection whose PING stays unanswered this long is destroyed; default 20,000 ms (ztunnel's). */
  pingTimeoutMs?: number;
  /** TCP connect + TLS handshake + the peer's SETTINGS; default 10,000 ms (a dial's own timeout bounds its wait anyway). */
  handshakeTimeoutMs?: number;
  observer?: HboneUpstreamObserver;
  log?: Logger;
}

/** Pool state: per key (`ip:tunnelPort|principal`) its connections, streams and handshakes under way. */
export interface HboneConnectorStats {
  connections: number;
  streams: number;
  connecting: number;
  keys: { key: string; connections: number; streams: number; connecting: number }[];
}

export interface HboneConnector extends UpstreamConnector {
  prepare(request: UpstreamRequest): HboneTarget;
  /** Pool state for /debug and tests. */
  stats(): HboneConnectorStats;
  /**
   * Stops handing out connections, closes every pooled connection with GOAWAY (open streams
   * finish), resolves when all are closed or after `deadlineMs` (the rest are then destroyed).
   */
  drain(deadlineMs: number): Promise<void>;
  /** Destroys every connection now. */
  close(): void;
}

const MiB = 1024 * 1024;
/** RFC 9113 §6.9.1: windows are at most 2^31-1. */
const MAX_WINDOW = 2 ** 31 - 1;
/** ztunnel's response header limit (its h2 client's max_header_list_size). */
const MAX_HEADER_LIST_BYTES = 16 * 1024;

const NO_ERROR = h2.NGHTTP2_NO_ERROR;
const CANCEL = h2.NGHTTP2_CANCEL;
const REFUSED_STREAM = h2.NGHTTP2_REFUSED_STREAM;
// RFC 9113 §8.5: a TCP reset is reported with CONNECT_ERROR.
const CONNECT_ERROR = h2.NGHTTP2_CONNECT_ERROR;

interface ResolvedOptions {
  tls: () => HboneTlsMaterial;
  baggage: string;
  maxStreamsPerConnection: number;
  poolIdleTimeoutMs: number;
  streamWindowBytes: number;
  connectionWindowBytes: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  handshakeTimeoutMs: number;
  maxSessionMemoryMb: number;
  observer: HboneUpstreamObserver | undefined;
  log: Logger | undefined;
}

function int(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new WaygateError('WG_CONFIG', `HBONE upstream ${name}: expected an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function resolveOptions(o: HboneUpstreamOptions): ResolvedOptions {
  // RFC 9113 §6.5.2: the initial window is at least the 65,535-byte default's range start.
  const stream = int('streamWindowBytes', o.streamWindowBytes ?? MiB, 65_535, MAX_WINDOW);
  const conn = int('connectionWindowBytes', o.connectionWindowBytes ?? Math.min(4 * stream, MAX_WINDOW), stream, MAX_WINDOW);
  const pingIntervalMs = int('pingIntervalMs', o.pingIntervalMs ?? 10_000, 1, 3_600_000);
  return {
    tls: o.tls,
    baggage: o.baggage,
    // The options the config also sets read their range and default from src/config/ranges.ts.
    maxStreamsPerConnection: optionInRange('upstream.maxStreamsPerConnection', 'HBONE upstream maxStreamsPerConnection', o.maxStreamsPerConnection),
    poolIdleTimeoutMs: optionInRange('upstream.poolIdleTimeoutMs', 'HBONE upstream poolIdleTimeoutMs', o.poolIdleTimeoutMs),
    streamWindowBytes: stream,
    connectionWindowBytes: conn,
    pingIntervalMs,
    pingTimeoutMs: int('pingTimeoutMs', o.pingTimeoutMs ?? 2 * pingIntervalMs, 1, 3_600_000),
    handshakeTimeoutMs: optionInRange('timeouts.handshakeTimeoutMs', 'HBONE upstream handshakeTimeoutMs', o.handshakeTimeoutMs),
    // As the listener (h2-settings.ts): room for two connection windows plus headers and output.
    maxSessionMemoryMb: Math.max(32, Math.ceil((2 * conn) / MiB) + 16),
    observer: o.observer,
    log: o.log,
  };
}

/** Creates the connector and its pool. */
export function createHboneConnector(opts: HboneUpstreamOptions): HboneConnector {
  const cfg = resolveOptions(opts);
  const contexts = new SecureContextCache(cfg.tls);
  const pool = new HbonePool({
    handshake: (dest, signal) => openConnection(dest, signal, cfg, contexts),
    maxStreamsPerConnection: cfg.maxStreamsPerConnection,
    idleTimeoutMs: cfg.poolIdleTimeoutMs,
    pingIntervalMs: cfg.pingIntervalMs,
    pingTimeoutMs: cfg.pingTimeoutMs,
    ...(cfg.observer ? { observer: cfg.observer } : {}),
    ...(cfg.log ? { log: cfg.log } : {}),
  });
  return {
    prepare(request: UpstreamRequest): HboneTarget {
      const ep = request.endpoint;
      if (ep === null || ep.protocol !== 'HBONE') {
        throw new WaygateError(
          'WG_UPSTREAM_CONNECT',
          `the HBONE connector was given ${request.ip}:${request.port} with ${ep === null ? 'no endpoint' : `a ${ep.protocol} endpoint`} (a wiring bug: only HBONE endpoints go to it)`,
        );
      }
      const dest: PoolDestination = { key: poolKey(request.ip, ep.tunnelPort, ep.principal), ip: request.ip, port: ep.tunnelPort, principal: ep.principal };
      return new HboneTarget(pool, request.ip, request.port, dest, hboneConnectHeaders(request, cfg.baggage));
    },
    stats: () => pool.stats(),
    drain: (deadlineMs) => pool.drain(deadlineMs),
    close: () => pool.close(),
  };
}

/** One tunnel's prepared HBONE dial. */
export class HboneTarget implements UpstreamTarget {
  constructor(
    readonly pool: HbonePool,
    /** The destination pod IP and target port (the CONNECT's authority). */
    readonly ip: string,
    readonly port: number,
    /** Its ztunnel's address and the identity it must present. */
    readonly dest: PoolDestination,
    /** The CONNECT's headers (hbone-headers.ts). */
    readonly headers: Readonly<Record<string, string>>,
  ) {}

  /** Where the CONNECT goes: the pod's ztunnel, `ip:tunnelPort`. */
  get tunnelPort(): number {
    return this.dest.port;
  }

  connect(timeoutMs: number): HboneDial {
    return new HboneDial(this, timeoutMs);
  }
}

const kDial = Symbol('waygate.hboneDial');
type Carrier = ClientHttp2Stream & { [kDial]?: HboneDial };

function swallow(): void {
  // stream errors reach the dial through 'close' (rstCode), the tunnel through its own listener
}

/**
 * An HBONE dial and, once the destination answered 200, its connection. Exactly one of success,
 * failure, timeout and abort settles it; the timer is cleared on every path and the stream it
 * opened is closed on every failure (the pool's connection is shared and is not).
 */
export class HboneDial implements PendingDial, UpstreamConnection, PoolWaiter {
  readonly promise: Promise<UpstreamConnection>;
  info: UpstreamInfo = PENDING_INFO;
  readonly #target: HboneTarget;
  #stream: ClientHttp2Stream | null = null;
  #conn: PooledConnection | null = null;
  #settled = false;
  #retried = false;
  #reused = false;
  #timer: NodeJS.Timeout | null;
  #resolve: ((c: UpstreamConnection) => void) | null = null;
  #reject: ((e: UpstreamDialError) => void) | null = null;

  constructor(target: HboneTarget, timeoutMs: number) {
    this.#target = target;
    this.promise = new Promise<UpstreamConnection>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#timer = setTimeout(HboneDial.#onTimeout, timeoutMs, this, timeoutMs);
    this.#timer.unref();
    target.pool.acquire(target.dest, this);
  }

  /** The CONNECT stream (set once a connection slot was granted; the tunnel reads it after the dial resolved). */
  get stream(): ClientHttp2Stream {
    return this.#stream!;
  }

  abort(): void {
    this.#fail(new UpstreamDialError('aborted', `HBONE connect to ${this.#where()} abandoned`));
  }

  // PoolWaiter

  granted(conn: PooledConnection, reused: boolean): void {
    if (this.#settled) {
      conn.release();
      return;
    }
    this.#conn = conn;
    this.#reused = reused;
    let stream: Carrier;
    try {
      stream = conn.openStream(this.#target.headers);
    } catch (err) {
      // The session went away between the grant and the request: the pool retired it.
      if (this.#retry(conn)) return;
      notify(this.#target.pool.observer, 'connectFailed', 'other');
      this.#fail(new UpstreamDialError('rejected', `HBONE connection to ${this.#tunnelAddress()} refused a new stream for CONNECT ${this.#authority()}: ${(err as Error).message}`, err));
      return;
    }
    this.#stream = stream;
    stream[kDial] = this;
    stream.on('error', swallow);
    stream.on('response', HboneDial.#onResponse);
    stream.on('close', HboneDial.#onEarlyClose);
  }

  failed(err: UpstreamDialError): void {
    this.#fail(err);
  }

  // UpstreamConnection

  start(): void {
    // HBONE sends nothing before the client's bytes: the CONNECT was the preamble.
  }

  closeSoon(): void {
    const stream = this.#stream!;
    if (stream.closed || stream.destroyed) return;
    // END_STREAM after what is queued; Node's close(NO_ERROR) on an ending stream waits for
    // 'finish' and then sends RST_STREAM(NO_ERROR) (nobody is left to read the destination's
    // answer; ztunnel reads it as EOF) unless the destination's own END_STREAM closed it first.
    stream.end();
    stream.close(NO_ERROR);
  }

  reset(): void {
    const stream = this.#stream!;
    if (stream.closed || stream.destroyed) return;
    // RST_STREAM(CONNECT_ERROR) alone, no END_STREAM before it: the destination resets its TCP
    // connection (RFC 9113 §8.5) instead of seeing a clean end first (src/util/h2-reset.ts).
    resetAlone(stream, CONNECT_ERROR);
  }

  destroy(): void {
    const stream = this.#stream!;
    if (!stream.closed && !stream.destroyed) stream.close(CANCEL);
  }

  // internals

  #authority(): string {
    return this.#target.headers[':authority']!;
  }

  #tunnelAddress(): string {
    return authorityOf(this.#target.dest.ip, this.#target.dest.port);
  }

  #where(): string {
    return `${this.#tunnelAddress()} (CONNECT ${this.#authority()})`;
  }

  /** Asks the pool again, once, avoiding `conn`; false when the one retry is spent. */
  #retry(conn: PooledConnection): boolean {
    if (this.#retried) return false;
    this.#retried = true;
    this.#conn = null;
    this.#target.pool.acquire(this.#target.dest, this, conn);
    return true;
  }

  /** Detaches the dial's own listeners from the stream it opened (the swallow 'error' listener stays). */
  #detachStream(): ClientHttp2Stream | null {
    const stream = this.#stream as Carrier | null;
    if (stream === null) return null;
    stream.removeListener('response', HboneDial.#onResponse);
    stream.removeListener('close', HboneDial.#onEarlyClose);
    return stream;
  }

  #succeed(): void {
    if (this.#settled) return;
    this.#detachStream();
    this.info = { protocol: 'hbone', principal: this.#target.dest.principal, reused: this.#reused };
    const resolve = this.#resolve!;
    this.#endSettle();
    resolve(this);
  }

  /** Fails the dial; a stream it opened is reset with CANCEL (`graceful`: ended instead, after a refusal). */
  #fail(err: UpstreamDialError, graceful = false): void {
    if (this.#settled) return;
    const stream = this.#detachStream();
    if (stream !== null) {
      (stream as Carrier)[kDial] = undefined;
      if (!stream.closed && !stream.destroyed) {
        if (graceful) {
          // The destination refused and ended its side: end ours (END_STREAM) rather than reset,
          // as src/hbone/client.ts does; the RST_STREAM(NO_ERROR) only goes out if it did not end.
          stream.resume();
          stream.end();
          stream.close(NO_ERROR);
        } else {
          stream.close(CANCEL);
        }
      }
    } else {
      this.#target.pool.cancel(this.#target.dest.key, this);
    }
    const reject = this.#reject!;
    this.#endSettle();
    this.#stream = null;
    reject(err);
  }

  #endSettle(): void {
    this.#settled = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = this.#resolve = this.#reject = null;
    this.#conn = null;
  }

  static #onResponse(this: Carrier, headers: IncomingHttpHeaders): void {
    const dial = this[kDial];
    if (!dial || dial.#settled) return;
    const status = Number(headers[':status']);
    if (status === 200) {
      dial.#succeed();
      return;
    }
    const kind = status === 401 || status === 403 ? 'denied' : 'rejected';
    notify(dial.#target.pool.observer, 'connectFailed', kind);
    dial.#fail(new UpstreamDialError(kind, `destination ${dial.#tunnelAddress()} answered ${status} to CONNECT ${dial.#authority()}`), true);
  }

  static #onEarlyClose(this: Carrier): void {
    const dial = this[kDial];
    if (!dial || dial.#settled) return;
    const code = this.rstCode;
    const conn = dial.#conn;
    if (code === REFUSED_STREAM && conn !== null) {
      dial.#detachStream();
      this[kDial] = undefined;
      dial.#stream = null;
      if (dial.#retry(conn)) return;
    }
    notify(dial.#target.pool.observer, 'connectFailed', 'rejected');
    const what = conn?.session.destroyed && code !== REFUSED_STREAM ? 'the connection closed' : `RST_STREAM ${rstName(code)}`;
    dial.#fail(new UpstreamDialError('rejected', `destination ${dial.#tunnelAddress()} did not answer CONNECT ${dial.#authority()} (${what})`));
  }

  static #onTimeout(dial: HboneDial, timeoutMs: number): void {
    const answering = dial.#stream !== null;
    if (answering) notify(dial.#target.pool.observer, 'connectFailed', 'timeout');
    dial.#fail(new UpstreamDialError('timeout', `HBONE connect to ${dial.#where()} timed out after ${timeoutMs} ms ${answering ? 'waiting for the answer' : 'waiting for a connection'}`));
  }
}

const PENDING_INFO: UpstreamInfo = Object.freeze({ protocol: 'hbone', principal: '', reused: false });

const RST_NAMES = new Map<number, string>(
  Object.entries(h2)
    .filter(([k, v]) => typeof v === 'number' && /^NGHTTP2_(NO_ERROR|PROTOCOL_ERROR|INTERNAL_ERROR|FLOW_CONTROL_ERROR|SETTINGS_TIMEOUT|STREAM_CLOSED|FRAME_SIZE_ERROR|REFUSED_STREAM|CANCEL|COMPRESSION_ERROR|CONNECT_ERROR|ENHANCE_YOUR_CALM|INADEQUATE_SECURITY|HTTP_1_1_REQUIRED)$/.test(k))
    .map(([k, v]) => [v as number, k.slice('NGHTTP2_'.length)]),
);

function rstName(code: number | undefined): string {
  if (code === undefined) return 'none';
  return RST_NAMES.get(code) ?? String(code);
}

/**
 * One TLS secure context per distinct client material: a handshake with unchanged material reuses
 * it (parsing keys and certificates costs more than the handshake's own client work); rotated
 * material (a new cert/key/ca value) builds a new one. Open connections keep the one they used.
 */
class SecureContextCache {
  readonly #read: () => HboneTlsMaterial;
  #last: { cert: HboneTlsMaterial['cert']; key: HboneTlsMaterial['key']; ca: HboneTlsMaterial['ca']; context: SecureContext } | null = null;

  constructor(read: () => HboneTlsMaterial) {
    this.#read = read;
  }

  current(): SecureContext {
    const m = this.#read();
    const last = this.#last;
    if (last !== null && last.cert === m.cert && last.key === m.key && last.ca === m.ca) return last.context;
    const context = tls.createSecureContext({ cert: m.cert, key: m.key, ca: m.ca, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
    this.#last = { cert: m.cert, key: m.key, ca: m.ca, context };
    return context;
  }
}

// Node's codes for a chain that does not verify, and OpenSSL's for a failed handshake.
const TLS_ERROR = /^(ERR_SSL_|ERR_TLS_|UNABLE_TO_|CERT_|SELF_SIGNED|DEPTH_ZERO|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH|HOSTNAME_MISMATCH)/;

function handshakeFailure(err: NodeJS.ErrnoException, where: string): UpstreamDialError {
  const code = err.code ?? '';
  const tcpKind: DialFailureKind = classify(err);
  if (tcpKind !== 'other') return new UpstreamDialError(tcpKind, `HBONE connect to ${where} failed: ${code}`, err);
  if (TLS_ERROR.test(code)) {
    const detail = err.message.includes(code) ? err.message : `${err.message} (${code})`;
    return new UpstreamDialError('tls', `TLS handshake with ${where} failed: ${detail}`, err);
  }
  return new UpstreamDialError('other', `HBONE connect to ${where} failed: ${err.message}${code && !err.message.includes(code) ? ` (${code})` : ''}`, err);
}

/** What a certificate claims to be, for an identity mismatch message. */
function presentedIdentity(cert: PeerCertificate): string {
  try {
    const id = identityFromCertificate(cert.raw);
    return id.spiffeId?.id ?? (id.uris.length > 0 ? `no SPIFFE ID (URI SANs: ${id.uris.join(', ')})` : 'no SPIFFE ID');
  } catch {
    return 'an unreadable certificate';
  }
}

/**
 * Opens one pooled connection: TCP, TLS (chain and exact identity verified inside the handshake),
 * then the HTTP/2 session, resolved once the peer's SETTINGS arrived (its stream limit is known).
 * Everything it opened is destroyed on every failure path.
 */
function openConnection(dest: PoolDestination, signal: AbortSignal, cfg: ResolvedOptions, contexts: SecureContextCache): Promise<ClientHttp2Session> {
  return new Promise<ClientHttp2Session>((resolve, reject) => {
    const where = authorityOf(dest.ip, dest.port);
    let settled = false;
    let socket: TLSSocket | null = null;
    let session: ClientHttp2Session | null = null;
    let mismatch: string | null = null;
    const fail = (err: UpstreamDialError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      session?.destroy();
      socket?.destroy();
      reject(err);
    };
    const onAbort = (): void => fail(new UpstreamDialError('aborted', `HBONE connect to ${where} abandoned`));
    const timer = setTimeout(() => fail(new UpstreamDialError('timeout', `HBONE handshake with ${where} timed out after ${cfg.handshakeTimeoutMs} ms`)), cfg.handshakeTimeoutMs);
    timer.unref();
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });

    let secureContext: SecureContext;
    try {
      secureContext = contexts.current();
    } catch (err) {
      return fail(new UpstreamDialError('other', `the gateway's client certificate cannot be used for HBONE: ${(err as Error).message}`, err));
    }
    const onSocketError = (err: NodeJS.ErrnoException): void => {
      if (mismatch !== null) fail(new UpstreamDialError('identity', `identity mismatch: ${where} presented ${mismatch}, expected ${dest.principal}`, err));
      else fail(handshakeFailure(err, where));
    };
    const s = tls.connect({
      host: dest.ip,
      port: dest.port,
      secureContext,
      ALPNProtocols: ['h2'],
      rejectUnauthorized: true,
      // An empty servername makes Node send no SNI extension (ztunnel sends none).
      servername: '',
      // Called after the chain verified: the exact SPIFFE ID instead of a hostname check.
      checkServerIdentity: (_name, cert) => {
        const err = checkSpiffeIdentity(dest.principal, cert);
        if (err) mismatch = presentedIdentity(cert);
        return err;
      },
    });
    socket = s;
    s.on('error', onSocketError);
    s.once('secureConnect', () => {
      if (settled) return;
      if (s.alpnProtocol !== 'h2') {
        fail(new UpstreamDialError('tls', `HBONE destination ${where} did not negotiate ALPN h2 (got ${String(s.alpnProtocol)})`));
        return;
      }
      s.setNoDelay(true);
      const sess = http2.connect(`https://${where}`, {
        createConnection: () => s,
        settings: {
          enablePush: false,
          initialWindowSize: cfg.streamWindowBytes,
          maxHeaderListSize: MAX_HEADER_LIST_BYTES,
          // Frames up to 1 MiB, as the listener accepts (h2-settings.ts).
          maxFrameSize: MiB,
        },
        maxSessionMemory: cfg.maxSessionMemoryMb,
      });
      session = sess;
      // Kept for the session's life: the pool's own listener does the work, this one only makes
      // sure an error emitted before the pool took the session cannot crash the process.
      sess.on('error', swallow);
      const onSessionError = (err: NodeJS.ErrnoException): void => onSocketError(err);
      const onSessionClose = (): void => fail(new UpstreamDialError('other', `HBONE connection to ${where} closed during setup`));
      sess.once('error', onSessionError);
      sess.once('close', onSessionClose);
      sess.once('connect', () => {
        // SETTINGS cannot raise the connection window (RFC 9113 §6.9.2): WINDOW_UPDATE on stream 0.
        if (!sess.destroyed) sess.setLocalWindowSize(cfg.connectionWindowBytes);
      });
      sess.once('remoteSettings', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        s.removeListener('error', onSocketError);
        sess.removeListener('error', onSessionError);
        sess.removeListener('close', onSessionClose);
        resolve(sess);
      });
    });
  });
}
