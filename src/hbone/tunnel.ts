/**
 * One HBONE tunnel: a CONNECT stream and, once allowed and dialed, its upstream socket, piped
 * both ways (docs/design.md §2 "Data phase", RFC 9113 §8.5):
 *
 * - client END_STREAM -> `upstream.end()` (TCP write shutdown); reading from the upstream goes on;
 * - upstream EOF -> `stream.end()` (END_STREAM); reading from the client goes on;
 * - RST_STREAM(NO_ERROR | CANCEL) from the client counts as its EOF (as ztunnel treats it): the
 *   upstream gets a FIN after the bytes already accepted, then is closed (nothing can reach the
 *   client any more);
 * - any other reset, an upstream error, a policy change, a drain or the idle timeout tears down
 *   both sides, exactly once, and fixes the close reason at the first such event;
 * - backpressure end to end through `pipe()`: a full upstream pauses the HTTP/2 stream, whose
 *   unread data then withholds WINDOW_UPDATE, so no more than the flow-control windows is ever
 *   buffered; a full HTTP/2 stream pauses the upstream socket, whose kernel buffer fills.
 *
 * The upstream is an {@link UpstreamConnection} (src/upstream/connector.ts): whatever connector made it (plain
 * TCP, TCP with a PROXY header, HBONE to the destination's ztunnel), the tunnel pipes its duplex
 * `stream` directly, counts the bytes it forwards itself (an HTTP/2 stream has no byte counters;
 * two additions per chunk, in the listeners it already has), and asks the connection for what
 * differs between protocols: the first bytes (`start()`), a flush-then-close (`closeSoon()`) and
 * a reset (`reset()`). The tunnel's owner is its registry
 * entry; the stream belongs to the HTTP/2 session, the upstream connection to the tunnel once
 * handed over.
 */
import { constants as h2, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Writable } from 'node:stream';
import type { AuditDestination, AuditSource, CloseReason, CloseRecord } from '../audit/record.ts';
import { AUDIT_SCHEMA_VERSION } from '../audit/record.ts';
import type { DecisionContext } from '../policy/context.ts';
import type { Decision } from '../policy/decision.ts';
import type { ForwardedElement } from './request-headers.ts';
import type { PendingDial, UpstreamConnection, UpstreamStream } from '../upstream/connector.ts';
import { resetAlone } from '../util/h2-reset.ts';

/** `pending`: registered, answer not sent yet; `open`: 200 sent, bytes flowing; `closed`: gone. */
export type TunnelState = 'pending' | 'open' | 'closed';

/** Why a pending tunnel was revoked before its answer (recheck, drain, shutdown). */
export interface Revocation {
  reason: 'policy_changed' | 'draining' | 'session_closed';
  /** For policy_changed: the decision that now denies the tunnel. */
  decision?: Decision;
}

/** What a tunnel knows at registration. */
export interface TunnelInit {
  decisionId: string;
  streamId: number;
  stream: ServerHttp2Stream;
  session: ServerHttp2Session;
  /** Its `source` and `connection.id` are the tunnel's (not copied). */
  context: DecisionContext;
  destination: AuditDestination;
  /** Only the first element's `for` is kept. */
  forwarded: readonly ForwardedElement[];
  forwardedNetwork: string;
  /** Monotonic start time (performance.now()). */
  startedAt: number;
}

/** Called once when the tunnel ends, with its close record (null for tunnels that never passed authorization). */
export type TunnelClosedHook = (tunnel: Tunnel, record: CloseRecord | null) => void;

/** A plain snapshot for `/debug/connections`. */
export interface TunnelInfo {
  id: string;
  connectionId: string;
  streamId: number;
  state: TunnelState;
  source: { principal: string; ip: string; port: number };
  destination: { authority: string; ip: string; port: number; host: string };
  /** What the client claims in `forwarded: for=...` (untrusted, informational). */
  forwardedFor: string;
  /** The client's `x-forwarded-network` claim (untrusted), `""` when absent. */
  forwardedNetwork: string;
  bytesSent: number;
  bytesReceived: number;
  ageMs: number;
}

const NO_ERROR = h2.NGHTTP2_NO_ERROR;
const CANCEL = h2.NGHTTP2_CANCEL;
// RFC 9113 §8.5: a TCP error on the proxied connection is reported with CONNECT_ERROR.
const CONNECT_ERROR = h2.NGHTTP2_CONNECT_ERROR;

/**
 * Back-reference from a tunnel's stream and upstream stream to the tunnel. Every listener the
 * tunnel installs is one shared function that finds its tunnel through this key (EventEmitter
 * calls listeners with `this` = the emitter), so an idle tunnel holds no closure, bound function
 * or `once` wrapper of its own: at 10,000 idle tunnels, `pipe()`'s 18 closures and the `once`
 * wrappers per tunnel were ~2.5 KiB of heap each (bench/README.md, idle RSS per tunnel).
 */
const kTunnel = Symbol('waygate.tunnel');
type Carrier = { [kTunnel]?: Tunnel };

/**
 * Client -> destination write coalescing. Node's HTTP/2 session hands each DATA payload to JS as
 * its own chunk, split again at TLS record boundaries (~8 KiB on average under bulk load), and
 * `socket.write()` of each chunk is one `write(2)`: 34,000 syscalls in 4 s of a 1 GiB upload,
 * against 7,000 reads of the client connection that carried them. So a chunk that is not small
 * corks the upstream, and every corked upstream is uncorked once, in the check phase of the same
 * event-loop turn (`setImmediate` runs after the poll phase that delivered the chunks): everything
 * one turn decrypted leaves in one `writev(2)`. `process.nextTick` would not batch: it runs after
 * every chunk's callback. Small chunks (interactive traffic) are written at once, not held for
 * the rest of the turn; one that arrives while its upstream is corked joins the batch, in order.
 */
const COALESCE_MIN_BYTES = 4096;
const corkedUpstreams: Writable[] = [];
let uncorkScheduled = false;

function uncorkUpstreams(): void {
  uncorkScheduled = false;
  // uncork() of a socket already ended or destroyed is a no-op (end() uncorks fully).
  for (let i = 0; i < corkedUpstreams.length; i++) corkedUpstreams[i]!.uncork();
  corkedUpstreams.length = 0;
}

/**
 * How much a tunnel lets queue on the side it writes to before it stops reading the other side
 * (backpressure), in each direction. Node's default high-water mark (16 KiB) is below one batch:
 * an upstream read is 64 KiB and a coalesced batch of DATA payloads is several frames, so every
 * write paused the reader and the next drain resumed it, a `uv_read_stop`/`uv_read_start` pair
 * (two `epoll_ctl(2)`) per chunk. Measured on the bulk bench, interleaved runs, same machine:
 * client -> destination 1.88-2.08 -> 1.16-1.22 s/GiB of gateway CPU, destination -> client median
 * 1.60 -> 1.33 s/GiB; 64 KiB to 512 KiB measured alike. The cost is memory: a tunnel may now hold
 * this much plus one chunk per direction beyond its HTTP/2 stream window (h2-settings.ts).
 */
export const TUNNEL_WRITE_BUFFER_BYTES = 256 * 1024;

function noop(): void {}


function swallow(): void {
  // errors are handled through 'close' and the fixed close reason
}

/** Upstream EOF -> END_STREAM (what pipe()'s default `end: true` did). */
function endStream(stream: ServerHttp2Stream): void {
  stream.end();
}

export class Tunnel {
  readonly id: string;
  readonly streamId: number;
  readonly stream: ServerHttp2Stream;
  readonly session: ServerHttp2Session;
  /** Kept whole: a recheck re-decides the tunnel with it (docs/design.md §3). */
  readonly context: DecisionContext;
  readonly destination: AuditDestination;
  /** The first `forwarded: for=` claim (untrusted, informational); `""` when absent. */
  readonly forwardedFor: string;
  readonly forwardedNetwork: string;
  /** Monotonic start time (performance.now()). */
  readonly startedAt: number;

  /** Gives back the endpoint slot the balancer counted for this tunnel (route.ts); called once, when it ends. */
  releaseEndpoint: () => void = noop;
  /** Whether the initial authorization allowed it (decides whether a close record is due). */
  authorized = false;
  state: TunnelState = 'pending';
  /** Set when a recheck/drain/shutdown revoked the tunnel before it was answered. */
  revoked: Revocation | null = null;

  #upstream: UpstreamConnection | null = null;
  /** `#upstream.stream`, read on every chunk. */
  #upstreamStream: UpstreamStream | null = null;
  #dial: PendingDial | null = null;
  #closeReason: CloseReason | null = null;
  #closeDecision: Decision | null = null;
  #streamClosed = false;
  #upstreamClosed = true;
  #finished = false;
  /** Whether the shared 'drain' listeners are installed (lazily, on the first backpressure, as pipe() does). */
  #upstreamDrainHooked = false;
  #streamDrainHooked = false;
  readonly #onClosed: TunnelClosedHook;

  constructor(init: TunnelInit, onClosed: TunnelClosedHook) {
    this.id = init.decisionId;
    this.streamId = init.streamId;
    this.stream = init.stream;
    this.session = init.session;
    this.context = init.context;
    this.destination = init.destination;
    this.forwardedFor = init.forwarded[0]?.for ?? '';
    this.forwardedNetwork = init.forwardedNetwork;
    this.startedAt = init.startedAt;
    this.#onClosed = onClosed;
  }

  /** Gateway-assigned id of the HTTP/2 connection (the context's; one string per connection). */
  get connectionId(): string {
    return this.context.connection.id;
  }

  /** The verified peer (the context's source: the socket's address, never a header's). */
  get source(): AuditSource {
    return this.context.source;
  }

  /** The upstream connection once open (null before). */
  get upstream(): UpstreamConnection | null {
    return this.#upstream;
  }

  /**
   * Bytes sent to the client (destination -> client) and bytes received from the client and
   * written to the destination. Counted here, per chunk forwarded, so every connector reports the
   * tunnel's bytes alike (what a connector sends on its own, a PROXY header or HBONE framing, is
   * not tunnel data).
   */
  bytesSent = 0;
  bytesReceived = 0;

  /** Whether the client side of the stream has closed (reset, or both directions ended). */
  get streamClosed(): boolean {
    return this.#streamClosed || this.stream.closed || this.stream.destroyed;
  }

  /** Remembers the dial in flight so a revocation or a client reset can abandon it. */
  setDial(dial: PendingDial | null): void {
    this.#dial = dial;
  }

  /**
   * Revokes the tunnel. A pending one is marked and its dial abandoned (the server then answers
   * it); an open one gets RST_STREAM(CANCEL) (docs/design.md §2) and its upstream is destroyed.
   */
  revoke(revocation: Revocation): void {
    if (this.state === 'closed') return;
    if (this.state === 'pending') {
      if (!this.revoked) this.revoked = revocation;
      this.#dial?.abort();
      return;
    }
    this.#closeDecision = revocation.decision ?? null;
    this.fail(revocation.reason, CANCEL);
  }

  /**
   * Answers 200 and starts piping. The connection's `start()` (a PROXY v2 header) runs before
   * any client byte. The stream is read only from here on, so bytes the client sent early wait
   * in the HTTP/2 flow-control window until the tunnel is allowed and connected.
   */
  open(connection: UpstreamConnection, idleTimeoutMs: number): void {
    const stream = this.stream;
    const upstream = connection.stream;
    this.state = 'open';
    this.#upstream = connection;
    this.#upstreamStream = upstream;
    this.#upstreamClosed = false;
    (upstream as Carrier)[kTunnel] = this;
    upstream.on('error', Tunnel.#upstreamError);
    upstream.on('close', Tunnel.#upstreamClose);
    if (idleTimeoutMs > 0) {
      upstream.setTimeout(idleTimeoutMs);
      upstream.on('timeout', Tunnel.#upstreamTimeout);
    }
    stream.respond({ ':status': 200 });
    connection.start();
    // Forwarding as `stream.pipe(upstream, { end: false })` + `upstream.pipe(stream)` did, with
    // shared listeners. Upstream EOF -> END_STREAM. The client's end is handled by #onClientEnd:
    // Node also ends the readable side when the peer resets the stream, and only some resets
    // count as EOF. Each direction ends on its own (both sides are half-open capable).
    stream.on('data', Tunnel.#streamData);
    stream.on('end', Tunnel.#streamEnd);
    if (upstream.writableLength >= TUNNEL_WRITE_BUFFER_BYTES) this.#pauseStream();
    else stream.resume();
    upstream.on('data', Tunnel.#upstreamData);
    if (upstream.readableEnded) process.nextTick(endStream, stream);
    else upstream.on('end', Tunnel.#upstreamEnd);
    if (stream.writableLength >= TUNNEL_WRITE_BUFFER_BYTES) this.#pauseUpstream();
    else upstream.resume();
  }

  /** Hooks the stream's lifecycle; called once at registration. */
  watchStream(): void {
    const stream = this.stream;
    this.#streamClosed = stream.closed || stream.destroyed;
    if (stream.listenerCount('error') === 0) stream.on('error', swallow);
    if (this.#streamClosed) return;
    (stream as Carrier)[kTunnel] = this;
    stream.on('close', Tunnel.#streamClose);
  }

  /**
   * Tears both sides down with `reason` (the first reason wins); the stream is reset with
   * `rstCode` unless it already closed.
   */
  fail(reason: CloseReason, rstCode: number): void {
    if (this.#closeReason === null) this.#closeReason = reason;
    const upstream = this.#upstream;
    if (upstream) {
      this.#stopUpstreamToStream();
      upstream.destroy();
    }
    const stream = this.stream;
    if (this.#streamClosed || stream.closed) return;
    // A reset must not look like an orderly end first (src/util/h2-reset.ts); CANCEL is read as
    // EOF anyway, and a stream never answered has nothing in flight.
    if (rstCode !== CANCEL && this.state === 'open') resetAlone(stream, rstCode);
    else stream.close(rstCode);
  }

  /** Ends a tunnel that never opened (denied, failed dial): the caller has already answered. */
  finishPending(reason: CloseReason | null): void {
    if (reason !== null && this.#closeReason === null) this.#closeReason = reason;
    this.state = 'closed';
    this.#finish();
  }

  info(now: number): TunnelInfo {
    return {
      id: this.id,
      connectionId: this.connectionId,
      streamId: this.streamId,
      state: this.state,
      source: { principal: this.source.principal, ip: this.source.ip, port: this.source.port },
      destination: { ...this.destination },
      forwardedFor: this.forwardedFor,
      forwardedNetwork: this.forwardedNetwork,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      ageMs: Math.max(0, Math.round(now - this.startedAt)),
    };
  }

  #onClientEnd(): void {
    const upstream = this.#upstream;
    if (!upstream || upstream.stream.destroyed) return;
    const code = this.stream.rstCode;
    if (code !== undefined && code !== NO_ERROR && code !== CANCEL) {
      // Reset with an error: the destination gets a reset too, not a clean FIN.
      if (this.#closeReason === null) this.#closeReason = 'client_reset';
      this.#stopUpstreamToStream();
      upstream.reset();
      return;
    }
    upstream.stream.end(); // END_STREAM, or RST_STREAM(NO_ERROR|CANCEL): a write shutdown (TCP FIN)
  }

  #onUpstreamClose(): void {
    this.#upstreamClosed = true;
    const stream = this.stream;
    if (!this.#streamClosed && this.#closeReason === null && !stream.writableEnded) {
      // The upstream closed without delivering EOF through the pipe (destroyed by a peer RST
      // already reported as an error, or closed before the pipe ran): end the client side too.
      this.fail('upstream_reset', CONNECT_ERROR);
    }
    this.#maybeFinish();
  }

  #onStreamClose(): void {
    this.#streamClosed = true;
    const stream = this.stream;
    if (this.state === 'pending') {
      // The client reset (or lost) the stream before its answer: nobody is left to carry bytes
      // for, so the dial is abandoned now instead of at its connect timeout (docs/ztunnel-interop.md
      // §11 finding 2; reset streams stop counting against MAX_CONCURRENT_STREAMS, so an
      // open-and-reset loop would otherwise pile up dials). The server sees the dial reject with
      // kind `aborted` and finishes the tunnel as `client_reset`.
      this.#dial?.abort();
      return; // the server finishes pending tunnels itself
    }
    const upstream = this.#upstream;
    if (this.#closeReason === null) {
      const code = stream.rstCode ?? NO_ERROR;
      // RST_STREAM(NO_ERROR|CANCEL) is EOF from the client. `aborted` (Node: the stream closed
      // while our side was still sending) tells a tunnel cut short from one that finished; a
      // cut-short tunnel on a session that is gone lost its connection, not a client decision.
      const cut = stream.aborted || (code !== NO_ERROR && code !== CANCEL);
      if (!cut) this.#closeReason = 'completed';
      else if (this.session.destroyed) this.#closeReason = 'session_closed';
      else this.#closeReason = 'client_reset';
    }
    if (upstream && !upstream.stream.destroyed) {
      this.#stopUpstreamToStream();
      const code = stream.rstCode ?? NO_ERROR;
      if (this.#closeReason === 'completed' || (this.#closeReason === 'client_reset' && (code === CANCEL || code === NO_ERROR))) {
        // Flush what the client sent, FIN, then close: nobody can read the destination's answer.
        upstream.closeSoon();
      } else if (this.#closeReason === 'client_reset') {
        // The client reset with an error: so does the destination's side.
        upstream.reset();
      } else {
        upstream.destroy();
      }
    }
    this.#maybeFinish();
  }

  /**
   * Stops client -> destination forwarding (what `unpipe` did: listeners off, stream paused, so
   * its unread data withholds WINDOW_UPDATE). On the client's end, and when the upstream closes.
   */
  #stopStreamToUpstream(): void {
    const stream = this.stream;
    stream.removeListener('data', Tunnel.#streamData);
    if (this.#upstreamDrainHooked) {
      this.#upstreamDrainHooked = false;
      this.#upstreamStream?.removeListener('drain', Tunnel.#upstreamDrain);
    }
    stream.pause();
  }

  /** Stops destination -> client forwarding (`upstream.unpipe(stream)`); the upstream is paused. */
  #stopUpstreamToStream(): void {
    const upstream = this.#upstreamStream;
    if (!upstream) return;
    upstream.removeListener('data', Tunnel.#upstreamData);
    upstream.removeListener('end', Tunnel.#upstreamEnd);
    if (this.#streamDrainHooked) {
      this.#streamDrainHooked = false;
      this.stream.removeListener('drain', Tunnel.#streamDrain);
    }
    upstream.pause();
  }

  /** The upstream cannot take more: the stream stops being read until the upstream drains (backpressure). */
  #pauseStream(): void {
    if (!this.#upstreamDrainHooked) {
      this.#upstreamDrainHooked = true;
      this.#upstreamStream?.on('drain', Tunnel.#upstreamDrain);
    }
    this.stream.pause();
  }

  /** The stream cannot take more: the upstream stops being read until the stream drains. */
  #pauseUpstream(): void {
    if (!this.#streamDrainHooked) {
      this.#streamDrainHooked = true;
      this.stream.on('drain', Tunnel.#streamDrain);
    }
    this.#upstreamStream?.pause();
  }

  // Shared listeners (`this` is the emitter; its tunnel is found through kTunnel).

  static #streamData(this: ServerHttp2Stream, chunk: Buffer): void {
    const t = (this as Carrier)[kTunnel];
    if (!t) return;
    const upstream = t.#upstreamStream;
    if (!upstream || upstream.destroyed) return;
    if (upstream.writableCorked === 0 && chunk.length >= COALESCE_MIN_BYTES) {
      upstream.cork();
      corkedUpstreams.push(upstream);
      if (!uncorkScheduled) {
        uncorkScheduled = true;
        setImmediate(uncorkUpstreams);
      }
    }
    t.bytesReceived += chunk.length;
    upstream.write(chunk);
    // Past the budget the write returned false, so 'drain' follows once the socket has flushed.
    if (upstream.writableLength >= TUNNEL_WRITE_BUFFER_BYTES) t.#pauseStream();
  }

  static #upstreamDrain(this: UpstreamStream): void {
    const t = (this as Carrier)[kTunnel];
    if (t && t.stream.listenerCount('data') > 0) t.stream.resume();
  }

  static #upstreamData(this: UpstreamStream, chunk: Buffer): void {
    const t = (this as Carrier)[kTunnel];
    if (!t || t.stream.destroyed) return;
    t.bytesSent += chunk.length;
    t.stream.write(chunk);
    if (t.stream.writableLength >= TUNNEL_WRITE_BUFFER_BYTES) t.#pauseUpstream();
  }

  static #streamDrain(this: ServerHttp2Stream): void {
    const t = (this as Carrier)[kTunnel];
    const upstream = t ? t.#upstreamStream : null;
    if (upstream && upstream.listenerCount('data') > 0) upstream.resume();
  }

  static #streamEnd(this: ServerHttp2Stream): void {
    const t = (this as Carrier)[kTunnel];
    if (!t) return;
    // pipe(upstream, { end: false }) unpiped on the source's end before #onClientEnd ran.
    t.#stopStreamToUpstream();
    t.#onClientEnd();
  }

  static #upstreamEnd(this: UpstreamStream): void {
    const t = (this as Carrier)[kTunnel];
    if (t) endStream(t.stream);
  }

  static #upstreamError(this: UpstreamStream): void {
    // EPIPE/ECONNRESET: the destination went away mid-stream (RFC 9113 §8.5: CONNECT_ERROR).
    (this as Carrier)[kTunnel]?.fail('upstream_reset', CONNECT_ERROR);
  }

  static #upstreamTimeout(this: UpstreamStream): void {
    (this as Carrier)[kTunnel]?.fail('idle_timeout', CANCEL);
  }

  static #upstreamClose(this: UpstreamStream): void {
    const t = (this as Carrier)[kTunnel];
    if (!t || t.#upstreamClosed) return;
    t.#onUpstreamClose();
    t.#stopStreamToUpstream();
  }

  static #streamClose(this: ServerHttp2Stream): void {
    const t = (this as Carrier)[kTunnel];
    if (!t || t.#streamClosed) return;
    t.#onStreamClose();
    t.#stopUpstreamToStream();
  }

  #maybeFinish(): void {
    if (this.state === 'pending') return; // the server finishes pending tunnels itself
    if (this.#streamClosed && this.#upstreamClosed) {
      this.state = 'closed';
      this.#finish();
    }
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#dial = null;
    if (!this.authorized) {
      this.#onClosed(this, null);
      return;
    }
    const d = this.#closeDecision;
    const record: CloseRecord = {
      schema: AUDIT_SCHEMA_VERSION,
      event: 'close',
      time: new Date().toISOString(),
      decisionId: this.id,
      connectionId: this.connectionId,
      streamId: this.streamId,
      source: this.source,
      destination: this.destination,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      durationMs: Math.max(0, Math.round(performance.now() - this.startedAt)),
      closeReason: this.#closeReason ?? 'completed',
    };
    if (this.#upstream) record.protocol = this.#upstream.info.protocol;
    if (d) {
      record.policy = d.policy;
      record.rule = d.rule;
      record.snapshot = d.snapshot;
    }
    this.#onClosed(this, record);
  }

  /** Records the decision that closed a pending tunnel (recheck). */
  setCloseDecision(d: Decision | null): void {
    this.#closeDecision = d;
  }
}
