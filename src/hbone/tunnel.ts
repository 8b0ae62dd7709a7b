/**
 * One HBONE tunnel: a CONNECT stream and, once allowed and dialed, its upstream socket, piped
 * both ways (DESIGN §2 "Data phase", RFC 9113 §8.5):
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
 * Byte counts come from the upstream socket's own counters (`bytesWritten`, `bytesRead`): no
 * per-chunk listener or allocation on the hot path. The tunnel's owner is its registry entry;
 * the stream belongs to the HTTP/2 session, the upstream socket to the tunnel once handed over.
 */
import { constants as h2, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { AuditDestination, AuditSource, CloseReason, CloseRecord } from '../audit/record.ts';
import { AUDIT_SCHEMA_VERSION } from '../audit/record.ts';
import type { DecisionContext } from '../policy/context.ts';
import type { Decision } from '../policy/decision.ts';
import type { ForwardedElement } from './request-headers.ts';
import type { PendingDial } from './upstream.ts';

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
  connectionId: string;
  streamId: number;
  stream: ServerHttp2Stream;
  session: ServerHttp2Session;
  context: DecisionContext;
  source: AuditSource;
  destination: AuditDestination;
  forwarded: ForwardedElement[];
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

function swallow(): void {
  // errors are handled through 'close' and the fixed close reason
}

export class Tunnel {
  readonly id: string;
  readonly connectionId: string;
  readonly streamId: number;
  readonly stream: ServerHttp2Stream;
  readonly session: ServerHttp2Session;
  readonly context: DecisionContext;
  readonly source: AuditSource;
  readonly destination: AuditDestination;
  readonly forwarded: ForwardedElement[];
  readonly forwardedNetwork: string;
  readonly startedAt: number;

  /** The decision that let the tunnel through (set right after registration). */
  decision: Decision | null = null;
  /** Whether the initial authorization allowed it (decides whether a close record is due). */
  authorized = false;
  state: TunnelState = 'pending';
  /** Set when a recheck/drain/shutdown revoked the tunnel before it was answered. */
  revoked: Revocation | null = null;

  #upstream: Socket | null = null;
  #headerBytes = 0;
  #dial: PendingDial | null = null;
  #closeReason: CloseReason | null = null;
  #closeDecision: Decision | null = null;
  #streamClosed = false;
  #upstreamClosed = true;
  #finished = false;
  readonly #onClosed: TunnelClosedHook;

  constructor(init: TunnelInit, onClosed: TunnelClosedHook) {
    this.id = init.decisionId;
    this.connectionId = init.connectionId;
    this.streamId = init.streamId;
    this.stream = init.stream;
    this.session = init.session;
    this.context = init.context;
    this.source = init.source;
    this.destination = init.destination;
    this.forwarded = init.forwarded;
    this.forwardedNetwork = init.forwardedNetwork;
    this.startedAt = init.startedAt;
    this.#onClosed = onClosed;
  }

  /** Bytes sent to the client (destination -> client). */
  get bytesSent(): number {
    return this.#upstream ? this.#upstream.bytesRead : 0;
  }

  /** Bytes received from the client and written to the destination (PROXY header excluded). */
  get bytesReceived(): number {
    return this.#upstream ? Math.max(0, this.#upstream.bytesWritten - this.#headerBytes) : 0;
  }

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
   * it); an open one gets RST_STREAM(CANCEL) (DESIGN §2) and its upstream is destroyed.
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
   * Answers 200 and starts piping. `header` (a PROXY v2 header) is written to the upstream
   * before any client byte. The stream is read only from here on, so bytes the client sent
   * early wait in the HTTP/2 flow-control window until the tunnel is allowed and connected.
   */
  open(upstream: Socket, idleTimeoutMs: number, header: Buffer | null): void {
    const stream = this.stream;
    this.state = 'open';
    this.#upstream = upstream;
    this.#upstreamClosed = false;
    upstream.on('error', () => this.#onUpstreamError());
    upstream.once('close', () => this.#onUpstreamClose());
    if (idleTimeoutMs > 0) {
      upstream.setTimeout(idleTimeoutMs, () => this.fail('idle_timeout', CANCEL));
    }
    stream.respond({ ':status': 200 });
    if (header) {
      this.#headerBytes = header.length;
      upstream.write(header);
    }
    // Upstream EOF -> END_STREAM through pipe(). The client's end is handled by #onClientEnd:
    // Node also ends the readable side when the peer resets the stream, and only some resets
    // count as EOF. Each direction ends on its own (both sides are half-open capable).
    stream.pipe(upstream, { end: false });
    stream.once('end', () => this.#onClientEnd());
    upstream.pipe(stream);
  }

  /** Hooks the stream's lifecycle; called once at registration. */
  watchStream(): void {
    const stream = this.stream;
    this.#streamClosed = stream.closed || stream.destroyed;
    stream.on('error', swallow);
    if (this.#streamClosed) return;
    stream.once('close', () => this.#onStreamClose());
  }

  /**
   * Tears both sides down with `reason` (the first reason wins); the stream is reset with
   * `rstCode` unless it already closed.
   */
  fail(reason: CloseReason, rstCode: number): void {
    if (this.#closeReason === null) this.#closeReason = reason;
    const upstream = this.#upstream;
    if (upstream) {
      upstream.unpipe(this.stream);
      upstream.destroy();
    }
    if (!this.#streamClosed && !this.stream.closed) this.stream.close(rstCode);
  }

  /** Ends a tunnel that never opened (denied, failed dial): the caller has already answered. */
  finishPending(reason: CloseReason | null): void {
    if (reason !== null && this.#closeReason === null) this.#closeReason = reason;
    this.state = 'closed';
    this.#finish();
  }

  info(now: number): TunnelInfo {
    const claimed = this.forwarded[0]?.for ?? '';
    return {
      id: this.id,
      connectionId: this.connectionId,
      streamId: this.streamId,
      state: this.state,
      source: { principal: this.source.principal, ip: this.source.ip, port: this.source.port },
      destination: { ...this.destination },
      forwardedFor: claimed,
      forwardedNetwork: this.forwardedNetwork,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      ageMs: Math.max(0, Math.round(now - this.startedAt)),
    };
  }

  #onClientEnd(): void {
    const upstream = this.#upstream;
    if (!upstream || upstream.destroyed) return;
    const code = this.stream.rstCode;
    if (code !== undefined && code !== NO_ERROR && code !== CANCEL) {
      // Reset with an error: the destination gets a reset too, not a clean FIN.
      if (this.#closeReason === null) this.#closeReason = 'client_reset';
      upstream.unpipe(this.stream);
      upstream.resetAndDestroy();
      return;
    }
    upstream.end(); // END_STREAM, or RST_STREAM(NO_ERROR|CANCEL): a TCP write shutdown
  }

  #onUpstreamError(): void {
    // EPIPE/ECONNRESET: the destination went away mid-stream (RFC 9113 §8.5: CONNECT_ERROR).
    this.fail('upstream_reset', CONNECT_ERROR);
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
    if (upstream && !upstream.destroyed) {
      upstream.unpipe(stream);
      const code = stream.rstCode ?? NO_ERROR;
      if (this.#closeReason === 'completed' || (this.#closeReason === 'client_reset' && (code === CANCEL || code === NO_ERROR))) {
        // Flush what the client sent, FIN, then close: nobody can read the destination's answer.
        upstream.destroySoon();
      } else if (this.#closeReason === 'client_reset' && !upstream.writableEnded) {
        // libuv refuses a reset while a write shutdown is in flight (and Node then leaks the
        // handle), so only a socket whose write side is still open is reset.
        upstream.resetAndDestroy();
      } else {
        upstream.destroy();
      }
    }
    this.#maybeFinish();
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
