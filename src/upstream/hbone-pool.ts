/**
 * The HTTP/2 connection pool of the HBONE upstream connector (hbone.ts), shaped after ztunnel's
 * pool (src/proxy/pool.rs in istio/ztunnel) for what a waypoint needs:
 *
 * - **Keyed** by (tunnel address, expected identity): `ip:tunnelPort|spiffe://...`. A connection
 *   only ever carries tunnels to the workload whose identity it verified.
 * - **Stream cap**: a connection carries at most min(maxStreamsPerConnection, the peer's
 *   SETTINGS_MAX_CONCURRENT_STREAMS, updated when the peer changes it) streams; the first
 *   connection of the key with a free slot takes the next stream (first fit keeps the number of
 *   busy connections low, so surplus ones idle out); a new connection is opened only when all are
 *   full.
 * - **No thundering herd**: a request that finds no free slot joins a handshake already under way
 *   for its key if that handshake has fewer waiters than the stream cap, else starts one. So N
 *   concurrent requests to a cold key make ceil(N / cap) handshakes. A failed handshake fails all
 *   its waiters with its error (they asked for the same thing at the same moment). Waiters beyond
 *   the peer's own cap, learned once the handshake is done, ask again.
 * - **GOAWAY**, an error or a close take a connection out of the pool at once; its open streams
 *   finish on it (RFC 9113 §6.8) and the next request gets another connection.
 * - **Idle**: a connection with no stream for `idleTimeoutMs` is closed (GOAWAY). **Keep-alive**:
 *   every connection is PINGed every `pingIntervalMs`; one whose PING stays unanswered for
 *   `pingTimeoutMs` is destroyed (a dead peer must not hold tunnels that will never get bytes).
 *
 * Ownership: the pool owns every connection and every timer (the per-connection idle timer, one
 * PING ticker while any connection exists, a drain deadline), all unref'd and cleared on every
 * path; a dial owns the stream it opened, the pool only counts it (released on the stream's
 * 'close'). Requests ("waiters") are objects the pool calls back, never promises, so a cancelled
 * waiter leaves nothing behind.
 */
import { constants as h2, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { Logger } from 'pino';
import { UpstreamDialError } from './connector.ts';
import { notify } from '../util/notify.ts';

/** Why a pooled connection closed (a bounded set for metric labels). */
export type PoolCloseReason = 'idle' | 'goaway' | 'error' | 'ping_timeout' | 'drain' | 'closed';

/** A handshake failure kind (a subset of connector.ts DialFailureKind). */
export type HandshakeFailureKind = 'refused' | 'timeout' | 'unreachable' | 'tls' | 'identity' | 'other';

/**
 * Metrics hooks of the HBONE upstream: synchronous, called on the data path; a throwing hook is
 * caught and ignored (as src/hbone/observer.ts `notify` does), so metrics never break a tunnel.
 */
export interface HboneUpstreamObserver {
  connectionOpened?(info: { key: string; handshakeMs: number }): void;
  connectionClosed?(info: { key: string; reason: PoolCloseReason }): void;
  /** Once per failed handshake (not per waiting dial). */
  handshakeFailed?(kind: HandshakeFailureKind): void;
  /** A CONNECT on an open connection failed: answered 401/403 (`denied`), another status or reset (`rejected`), no answer in time. */
  connectFailed?(kind: 'denied' | 'rejected' | 'timeout' | 'other'): void;
  /** +1 when a stream opens, -1 when it closes. */
  streamsChanged?(delta: number): void;
  /** +1 when a connection joins the pool, -1 when it has closed. */
  connectionsChanged?(delta: number): void;
}


/** Where a pool key's connections go. */
export interface PoolDestination {
  /** `ip:tunnelPort|principal` (see {@link poolKey}). */
  readonly key: string;
  readonly ip: string;
  /** The destination's ztunnel port. */
  readonly port: number;
  /** The SPIFFE ID the destination must present. */
  readonly principal: string;
}

/** The pool key of a destination: its ztunnel's address and the identity it must present. */
export function poolKey(ip: string, tunnelPort: number, principal: string): string {
  return `${ip}:${tunnelPort}|${principal}`;
}

/**
 * Opens one connection for the pool: TLS verified, HTTP/2 session up and the peer's SETTINGS
 * received. Rejects with an {@link UpstreamDialError} (kind: a {@link HandshakeFailureKind});
 * `signal` abandons it (the pool is closing), closing what it opened.
 */
export type Handshake = (dest: PoolDestination, signal: AbortSignal) => Promise<ClientHttp2Session>;

export interface HbonePoolOptions {
  handshake: Handshake;
  maxStreamsPerConnection: number;
  idleTimeoutMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  observer?: HboneUpstreamObserver;
  log?: Logger;
}

/** A request for one stream slot. The pool calls exactly one of these, once (never after `cancel`). */
export interface PoolWaiter {
  /**
   * A slot is reserved on `conn`: call `conn.openStream()` now (synchronously) or `conn.release()`.
   * `reused`: the connection was up before this request asked for it (no handshake waited for).
   */
  granted(conn: PooledConnection, reused: boolean): void;
  failed(err: UpstreamDialError): void;
}

/** One handshake under way and the requests waiting for it. */
interface PendingHandshake {
  readonly waiters: PoolWaiter[];
  readonly abort: AbortController;
}

/** A key's live connections (usable or finishing their streams) and handshakes under way. */
interface KeyState {
  readonly dest: PoolDestination;
  readonly conns: PooledConnection[];
  readonly pending: PendingHandshake[];
}

const NO_ERROR = h2.NGHTTP2_NO_ERROR;

/** Back-reference from a session or stream to its pooled connection (shared listeners, no closures per stream). */
const kConn = Symbol('waygate.pooledConnection');
type Carrier = { [kConn]?: PooledConnection };

/** One HTTP/2 connection of the pool. */
export class PooledConnection {
  readonly key: string;
  readonly session: ClientHttp2Session;
  /** Streams it may carry at once: min(maxStreamsPerConnection, the peer's SETTINGS_MAX_CONCURRENT_STREAMS). */
  capacity: number;
  /** Streams reserved or open on it. */
  streams = 0;
  /** Whether new streams may be put on it (false after GOAWAY, an error, idle, drain). */
  usable = true;
  /** The first reason it started to close. */
  closeReason: PoolCloseReason | null = null;
  /** When the outstanding PING was sent (performance.now()), 0 when none is. */
  pingSentAt = 0;
  idleTimer: NodeJS.Timeout | null = null;
  readonly pool: HbonePool;

  constructor(pool: HbonePool, key: string, session: ClientHttp2Session, capacity: number) {
    this.pool = pool;
    this.key = key;
    this.session = session;
    this.capacity = capacity;
  }

  /**
   * Opens the CONNECT stream on the slot reserved for the caller. Throws when the session refuses
   * a new stream (it went away in between): the slot is released and the connection retired.
   */
  openStream(headers: OutgoingHttpHeaders): ClientHttp2Stream {
    let stream: ClientHttp2Stream;
    try {
      stream = this.session.request(headers, { endStream: false });
    } catch (err) {
      this.pool.retire(this, 'error');
      this.release();
      throw err;
    }
    (stream as Carrier)[kConn] = this;
    stream.once('close', PooledConnection.#onStreamClose);
    notify(this.pool.observer, 'streamsChanged', 1);
    return stream;
  }

  /** Gives a reserved slot back (unused, or its stream closed). */
  release(): void {
    this.streams--;
    this.pool.released(this);
  }

  static #onStreamClose(this: ClientHttp2Stream): void {
    const conn = (this as Carrier)[kConn];
    if (!conn) return;
    (this as Carrier)[kConn] = undefined;
    notify(conn.pool.observer, 'streamsChanged', -1);
    conn.release();
  }
}

/** Pool state for /debug and tests. */
export interface HbonePoolStats {
  connections: number;
  streams: number;
  /** Handshakes under way. */
  connecting: number;
  keys: { key: string; connections: number; streams: number; connecting: number }[];
}

export class HbonePool {
  readonly observer: HboneUpstreamObserver | undefined;
  readonly #opts: HbonePoolOptions;
  readonly #keys = new Map<string, KeyState>();
  /** Live connections across keys (the PING ticker runs while > 0). */
  #connections = 0;
  #pingTicker: NodeJS.Timeout | null = null;
  /** Set by drain() and close(): no new connection is handed out. */
  #stopped: 'draining' | 'closed' | null = null;
  /** Called when the last connection and handshake are gone (drain()). */
  #onEmpty: (() => void) | null = null;

  constructor(opts: HbonePoolOptions) {
    this.#opts = opts;
    this.observer = opts.observer;
  }

  /**
   * Asks for one stream slot to `dest`: granted now from a connection with a free slot, or once a
   * handshake completes. `avoid`: the connection that refused the stream (a retry): only a fresh
   * connection (a handshake under way or a new one) is used then.
   * May call the waiter back before returning.
   */
  acquire(dest: PoolDestination, waiter: PoolWaiter, avoid: PooledConnection | null = null): void {
    if (this.#stopped !== null) {
      waiter.failed(new UpstreamDialError('other', `no new HBONE connection to ${dest.ip}:${dest.port}: the upstream pool is ${this.#stopped === 'draining' ? 'draining' : 'closed'}`));
      return;
    }
    let state = this.#keys.get(dest.key);
    if (state === undefined) {
      state = { dest, conns: [], pending: [] };
      this.#keys.set(dest.key, state);
    }
    // A retry after a refused stream goes to a fresh connection: a peer that sent GOAWAY on one
    // connection (a ztunnel shutting down) has usually sent it on all of them, and the frames may
    // not have been read yet when the retry is made.
    for (const conn of avoid === null ? state.conns : []) {
      if (conn.usable && conn.streams < conn.capacity) {
        this.#reserve(conn);
        waiter.granted(conn, true);
        return;
      }
    }
    // The peer's own cap is unknown until its SETTINGS arrive: assume ours.
    const max = this.#opts.maxStreamsPerConnection;
    for (const hs of state.pending) {
      if (hs.waiters.length < max) {
        hs.waiters.push(waiter);
        return;
      }
    }
    this.#startHandshake(state, waiter);
  }

  /** Withdraws a waiter that is still waiting for a handshake (a no-op otherwise). */
  cancel(key: string, waiter: PoolWaiter): void {
    const state = this.#keys.get(key);
    if (state === undefined) return;
    for (const hs of state.pending) {
      const i = hs.waiters.indexOf(waiter);
      if (i !== -1) {
        // The handshake goes on: its connection joins the pool for the next request (as ztunnel's).
        hs.waiters.splice(i, 1);
        return;
      }
    }
  }

  /** Takes a connection out of the pool (it finishes its streams, then closes). */
  retire(conn: PooledConnection, reason: PoolCloseReason): void {
    if (conn.closeReason === null) conn.closeReason = reason;
    if (!conn.usable) return;
    conn.usable = false;
    this.#clearIdle(conn);
    // GOAWAY; Node destroys the session once its last stream has closed.
    if (!conn.session.closed && !conn.session.destroyed) conn.session.close();
  }

  /** A slot was given back: start the idle clock of a connection left without streams. */
  released(conn: PooledConnection): void {
    if (conn.streams === 0 && conn.usable) this.#armIdle(conn);
  }

  stats(): HbonePoolStats {
    const stats: HbonePoolStats = { connections: 0, streams: 0, connecting: 0, keys: [] };
    for (const [key, state] of this.#keys) {
      let streams = 0;
      for (const c of state.conns) streams += c.streams;
      const entry = { key, connections: state.conns.length, streams, connecting: state.pending.length };
      stats.keys.push(entry);
      stats.connections += entry.connections;
      stats.streams += streams;
      stats.connecting += entry.connecting;
    }
    return stats;
  }

  /**
   * Stops handing out connections, closes each with GOAWAY (open streams finish on it), and
   * resolves once all have closed, or after `deadlineMs` (the rest are then destroyed). Waiting
   * requests fail, handshakes under way are abandoned.
   */
  drain(deadlineMs: number): Promise<void> {
    if (this.#stopped === null) this.#stopped = 'draining';
    this.#abandonPending('draining');
    for (const state of this.#keys.values()) for (const conn of [...state.conns]) this.retire(conn, 'drain');
    if (this.#isEmpty()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const deadline = setTimeout(() => this.#destroyAll('drain'), Math.max(0, deadlineMs));
      deadline.unref();
      const previous = this.#onEmpty;
      this.#onEmpty = () => {
        clearTimeout(deadline);
        previous?.();
        resolve();
      };
    });
  }

  /** Destroys every connection now (their streams are reset); waiting requests fail. */
  close(): void {
    this.#stopped = 'closed';
    this.#abandonPending('closed');
    this.#destroyAll('closed');
  }

  #reserve(conn: PooledConnection): void {
    conn.streams++;
    this.#clearIdle(conn);
  }

  #startHandshake(state: KeyState, first: PoolWaiter): void {
    const hs: PendingHandshake = { waiters: [first], abort: new AbortController() };
    state.pending.push(hs);
    const startedAt = performance.now();
    this.#opts.handshake(state.dest, hs.abort.signal).then(
      (session) => this.#established(state, hs, session, performance.now() - startedAt),
      (err: unknown) => this.#handshakeFailed(state, hs, err),
    );
  }

  #established(state: KeyState, hs: PendingHandshake, session: ClientHttp2Session, handshakeMs: number): void {
    removeItem(state.pending, hs);
    if (this.#stopped !== null || session.closed || session.destroyed) {
      // Drained or closed while it was under way (its waiters were failed then), or lost at once.
      session.destroy();
      this.#failWaiters(hs, new UpstreamDialError('other', `HBONE connection to ${state.dest.ip}:${state.dest.port} closed as it was established`));
      this.#forgetIfEmpty(state);
      return;
    }
    const conn = new PooledConnection(this, state.dest.key, session, this.#capacityOf(session));
    (session as Carrier)[kConn] = conn;
    session.on('goaway', HbonePool.#onGoaway);
    session.on('error', HbonePool.#onError);
    session.on('remoteSettings', HbonePool.#onRemoteSettings);
    session.once('close', HbonePool.#onClose);
    state.conns.push(conn);
    this.#connections++;
    this.#ensurePingTicker();
    this.#opts.log?.debug({ key: state.dest.key, handshakeMs: Math.round(handshakeMs), capacity: conn.capacity }, 'HBONE upstream connection opened');
    notify(this.observer, 'connectionOpened', { key: state.dest.key, handshakeMs });
    notify(this.observer, 'connectionsChanged', 1);
    const waiters = hs.waiters.splice(0);
    if (conn.capacity === 0) {
      // A peer that allows no stream at all: asking again would only open more such connections.
      this.retire(conn, 'closed');
      const err = new UpstreamDialError('other', `HBONE destination ${state.dest.ip}:${state.dest.port} allows no streams (SETTINGS_MAX_CONCURRENT_STREAMS 0)`);
      for (const waiter of waiters) waiter.failed(err);
      return;
    }
    for (const waiter of waiters) {
      if (conn.usable && conn.streams < conn.capacity) {
        this.#reserve(conn);
        waiter.granted(conn, false);
      } else {
        // The peer allows fewer streams than we assumed (or the connection went away meanwhile).
        this.acquire(state.dest, waiter);
      }
    }
    if (conn.streams === 0 && conn.usable) this.#armIdle(conn);
  }

  #handshakeFailed(state: KeyState, hs: PendingHandshake, err: unknown): void {
    removeItem(state.pending, hs);
    const e = err instanceof UpstreamDialError ? err : new UpstreamDialError('other', `HBONE connection to ${state.dest.ip}:${state.dest.port} failed: ${(err as Error)?.message ?? String(err)}`, err);
    if (e.kind !== 'aborted') {
      const kind = (['refused', 'timeout', 'unreachable', 'tls', 'identity'] as const).find((k) => k === e.kind) ?? 'other';
      this.#opts.log?.debug({ key: state.dest.key, kind, err: e.message }, 'HBONE upstream handshake failed');
      notify(this.observer, 'handshakeFailed', kind);
    }
    this.#failWaiters(hs, e);
    this.#forgetIfEmpty(state);
  }

  #failWaiters(hs: PendingHandshake, err: UpstreamDialError): void {
    const waiters = hs.waiters.splice(0);
    for (const w of waiters) w.failed(err);
  }

  #capacityOf(session: ClientHttp2Session): number {
    // Node reports 2^32-1 when the peer sent no limit (RFC 9113 §6.5.2: unlimited).
    const peer = session.remoteSettings.maxConcurrentStreams ?? Number.MAX_SAFE_INTEGER;
    return Math.max(0, Math.min(this.#opts.maxStreamsPerConnection, peer));
  }

  #armIdle(conn: PooledConnection): void {
    if (conn.idleTimer !== null) {
      conn.idleTimer.refresh();
      return;
    }
    conn.idleTimer = setTimeout(HbonePool.#onIdle, this.#opts.idleTimeoutMs, this, conn);
    conn.idleTimer.unref();
  }

  #clearIdle(conn: PooledConnection): void {
    if (conn.idleTimer === null) return;
    clearTimeout(conn.idleTimer);
    conn.idleTimer = null;
  }

  static #onIdle(pool: HbonePool, conn: PooledConnection): void {
    conn.idleTimer = null;
    if (conn.streams === 0) pool.retire(conn, 'idle');
  }

  #ensurePingTicker(): void {
    if (this.#pingTicker !== null) return;
    this.#pingTicker = setInterval(HbonePool.#pingAll, this.#opts.pingIntervalMs, this);
    this.#pingTicker.unref();
  }

  /** PINGs every connection; one whose PING stays unanswered for pingTimeoutMs is destroyed. */
  static #pingAll(pool: HbonePool): void {
    const now = performance.now();
    for (const state of pool.#keys.values()) {
      for (const conn of state.conns) {
        const session = conn.session;
        if (session.destroyed) continue;
        if (conn.pingSentAt !== 0) {
          if (now - conn.pingSentAt >= pool.#opts.pingTimeoutMs) {
            if (conn.closeReason === null) conn.closeReason = 'ping_timeout';
            conn.usable = false;
            pool.#opts.log?.debug({ key: conn.key }, 'HBONE upstream connection: PING unanswered, destroyed');
            session.destroy();
          }
          continue;
        }
        conn.pingSentAt = now;
        const sent = session.ping((err) => {
          if (!err) conn.pingSentAt = 0;
        });
        if (!sent) conn.pingSentAt = 0; // too many PINGs outstanding or closing: not a dead peer
      }
    }
  }

  static #onGoaway(this: ClientHttp2Session, code: number): void {
    const conn = (this as Carrier)[kConn];
    if (!conn) return;
    if (conn.closeReason === null) conn.closeReason = code === NO_ERROR ? 'goaway' : 'error';
    conn.usable = false;
    const pool = conn.pool;
    pool.#clearIdle(conn);
    pool.#opts.log?.debug({ key: conn.key, code, streams: conn.streams }, 'HBONE upstream connection: GOAWAY received');
  }

  static #onError(this: ClientHttp2Session, err: Error): void {
    const conn = (this as Carrier)[kConn];
    if (!conn) return;
    if (conn.closeReason === null) conn.closeReason = 'error';
    conn.usable = false;
    conn.pool.#opts.log?.debug({ key: conn.key, err: err.message }, 'HBONE upstream connection error');
  }

  static #onRemoteSettings(this: ClientHttp2Session): void {
    const conn = (this as Carrier)[kConn];
    if (conn) conn.capacity = conn.pool.#capacityOf(this);
  }

  static #onClose(this: ClientHttp2Session): void {
    const conn = (this as Carrier)[kConn];
    if (!conn) return;
    (this as Carrier)[kConn] = undefined;
    const pool = conn.pool;
    conn.usable = false;
    pool.#clearIdle(conn);
    const state = pool.#keys.get(conn.key);
    if (state) {
      removeItem(state.conns, conn);
      pool.#forgetIfEmpty(state);
    }
    pool.#connections--;
    if (pool.#connections === 0 && pool.#pingTicker !== null) {
      clearInterval(pool.#pingTicker);
      pool.#pingTicker = null;
    }
    const reason = conn.closeReason ?? 'closed';
    pool.#opts.log?.debug({ key: conn.key, reason }, 'HBONE upstream connection closed');
    notify(pool.observer, 'connectionClosed', { key: conn.key, reason });
    notify(pool.observer, 'connectionsChanged', -1);
    pool.#maybeEmpty();
  }

  #forgetIfEmpty(state: KeyState): void {
    if (state.conns.length === 0 && state.pending.length === 0 && this.#keys.get(state.dest.key) === state) this.#keys.delete(state.dest.key);
    this.#maybeEmpty();
  }

  #isEmpty(): boolean {
    return this.#keys.size === 0;
  }

  #maybeEmpty(): void {
    if (this.#onEmpty === null || !this.#isEmpty()) return;
    const done = this.#onEmpty;
    this.#onEmpty = null;
    done();
  }

  #abandonPending(why: 'draining' | 'closed'): void {
    for (const state of [...this.#keys.values()]) {
      for (const hs of [...state.pending]) {
        this.#failWaiters(hs, new UpstreamDialError('other', `HBONE connection to ${state.dest.ip}:${state.dest.port} abandoned: the upstream pool is ${why}`));
        hs.abort.abort();
      }
    }
  }

  #destroyAll(reason: PoolCloseReason): void {
    for (const state of this.#keys.values()) {
      for (const conn of state.conns) {
        if (conn.closeReason === null) conn.closeReason = reason;
        conn.usable = false;
        this.#clearIdle(conn);
        conn.session.destroy();
      }
    }
  }
}

function removeItem<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i !== -1) list.splice(i, 1);
}
