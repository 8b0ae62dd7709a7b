/**
 * How an allowed tunnel reaches its destination: the upstream **connector** interface. The
 * tunnel (tunnel.ts), the dial queue (dial-queue.ts) and the connect handler (connect-handler.ts)
 * see only these types, never a `net.Socket`, so a new way to reach a destination (HBONE to the
 * destination's ztunnel) is one more connector, not a change to the tunnel. Shaped after undici's
 * `buildConnector` (a connector turns options into a socket-like object the rest never looks
 * inside), with the dial split in two so that what can be refused without touching the network is
 * refused before the CONNECT takes one of its connection's dial slots:
 *
 *   connector.prepare(request)  -> UpstreamTarget     (synchronous; throws to refuse: 503, no dial)
 *   target.connect(timeoutMs)   -> PendingDial        (abortable; rejects with UpstreamDialError)
 *   await dial.promise          -> UpstreamConnection (a duplex, half-close, reset, how it was reached)
 *
 * Connectors in this repository: plain TCP (tcp.ts), TCP with a PROXY v2 header (proxy-v2.ts),
 * and HBONE to the destination pod's ztunnel with the gateway's own identity, pooled (hbone.ts,
 * hbone-pool.ts). docs/architecture.md "Adding an upstream connector" says what a new one
 * must guarantee.
 */
import type { Duplex } from 'node:stream';
import { WaygateError } from '../errors.ts';
import type { DecisionContext } from '../policy/context.ts';

/**
 * Why a dial failed, a bounded set for metric labels:
 * - `refused`, `timeout`, `unreachable`, `other`: the transport (TCP connect, or the TLS connection
 *   of an HBONE upstream) could not be established;
 * - `tls`: the TLS handshake with the destination failed (its chain does not verify, no ALPN `h2`);
 * - `identity`: the destination's certificate verified but does not carry exactly the expected
 *   SPIFFE ID (nothing was sent to it);
 * - `denied`: the destination answered the CONNECT 401 or 403 (its own policy refused the
 *   gateway's identity): the client is answered 503 with reason `upstream_denied`;
 * - `rejected`: any other non-200 answer, or the stream reset before an answer;
 * - `aborted`: the tunnel went away first (not a failure of the destination).
 */
export type DialFailureKind = 'refused' | 'timeout' | 'unreachable' | 'tls' | 'identity' | 'denied' | 'rejected' | 'aborted' | 'other';

/**
 * A failed dial: `WG_UPSTREAM_TIMEOUT` for the connect timeout, `WG_UPSTREAM_DENIED` for a
 * destination that refused the gateway (401/403), `WG_UPSTREAM_CONNECT` otherwise. `message` is
 * what the decision record's `detail` says: written for the operator who reads it (what was
 * expected, what happened, e.g. `destination 10.0.0.7:15008 answered 403`).
 */
export class UpstreamDialError extends WaygateError {
  readonly kind: DialFailureKind;
  constructor(kind: DialFailureKind, message: string, cause?: unknown) {
    super(kind === 'timeout' ? 'WG_UPSTREAM_TIMEOUT' : kind === 'denied' ? 'WG_UPSTREAM_DENIED' : 'WG_UPSTREAM_CONNECT', message, { cause });
    this.name = 'UpstreamDialError';
    this.kind = kind;
  }
}

/** How an upstream carries a tunnel: HBONE to the destination's ztunnel, or plain TCP. */
export type UpstreamProtocol = 'hbone' | 'tcp';

/**
 * The endpoint discovery chose for a tunnel (src/discovery/): who the destination is, so an HBONE
 * connector knows where the pod's ztunnel listens and which identity it must present. Null when no
 * discovery source is configured, or for a direct dial to a destination discovery does not know.
 */
export interface UpstreamEndpoint {
  /** Workload name and namespace (for logs and records). */
  readonly workload: string;
  readonly namespace: string;
  /** The SPIFFE ID the destination must present: `spiffe://<td>/ns/<ns>/sa/<sa>`. */
  readonly principal: string;
  /** `HBONE`: the pod is in the ambient mesh (its ztunnel listens on `tunnelPort`); `TCP`: plain. */
  readonly protocol: 'HBONE' | 'TCP';
  /** Where the pod's ztunnel accepts HBONE (15008 in Istio). */
  readonly tunnelPort: number;
  /** The service hostname the client addressed (`forwarded: ...;host=`), `""` for a workload address. */
  readonly service: string;
}

/** What a connector is asked to reach for one allowed tunnel. */
export interface UpstreamRequest {
  /** The address to dial: resolved, inside the allowed networks, not the gateway itself. */
  readonly ip: string;
  readonly port: number;
  /**
   * The tunnel's decision context: the verified client (`source`, which a PROXY header carries),
   * the destination as the client named it, and its request headers (a trace id to propagate).
   */
  readonly context: DecisionContext;
  /** The endpoint chosen by discovery, null without one (dial `ip:port` as it is). */
  readonly endpoint: UpstreamEndpoint | null;
}

/**
 * Turns an allowed tunnel into a connection to its destination. One connector serves every
 * tunnel of the server; it holds no per-tunnel state.
 */
export interface UpstreamConnector {
  /**
   * Everything needed to dial this tunnel, decided before any socket exists. Throws (any error;
   * its message is logged) when the connector cannot carry the tunnel at all: the CONNECT is then
   * answered 503 `upstream_failed` without a dial and without taking a dial slot.
   */
  prepare(request: UpstreamRequest): UpstreamTarget;
}

/** One tunnel's prepared dial. */
export interface UpstreamTarget {
  /** Where it dials (log and error messages). */
  readonly ip: string;
  readonly port: number;
  /**
   * Starts connecting, within `timeoutMs` (what is left of the CONNECT's connect budget). The
   * dial owns everything it opens until its promise resolves, and closes it on every failure.
   */
  connect(timeoutMs: number): PendingDial;
}

/** A dial in progress: resolves with the connection or rejects with {@link UpstreamDialError}. */
export interface PendingDial {
  readonly promise: Promise<UpstreamConnection>;
  /** Abandons the dial (the tunnel went away first): what it opened is closed, the promise rejects with kind `aborted`. A no-op once settled. */
  abort(): void;
}

/**
 * The byte stream of an upstream, as the tunnel drives it (tunnel.ts). Half-open capable:
 * `end()` shuts down the write direction only (TCP FIN, HTTP/2 END_STREAM) and reading goes on
 * until the destination's own end ('end'). It emits 'close' exactly once, 'error' when the
 * destination fails mid-stream, and 'timeout' after `setTimeout(ms)` of inactivity.
 */
export type UpstreamStream = Duplex & { setTimeout(timeoutMs: number): unknown };

/**
 * A connected upstream. Its owner is the tunnel once `Tunnel.open()` took it (the dial's owner
 * before): exactly one of `closeSoon`, `reset` or `destroy` ends it, or the destination does.
 */
export interface UpstreamConnection {
  /** Read for destination -> client, written for client -> destination; the tunnel pipes it directly (no wrapper per chunk). */
  readonly stream: UpstreamStream;
  /** How it was reached (the decision record's `upstream` fields, the metrics' labels). */
  readonly info: UpstreamInfo;
  /** Called once, right after the client was answered 200 and before any client byte: sends what the protocol sends first. */
  start(): void;
  /** The client went away after its EOF: flush what is queued, half-close, then close. */
  closeSoon(): void;
  /** Abortive close: the destination sees a reset (TCP RST, RST_STREAM), not an orderly end. */
  reset(): void;
  /** Closes at once, without flushing. */
  destroy(): void;
}

/** What a connected upstream says about itself. */
export interface UpstreamInfo {
  readonly protocol: UpstreamProtocol;
  /** The SPIFFE ID the destination presented and the gateway verified; `""` for plain TCP. */
  readonly principal: string;
  /** Whether the tunnel rode an HTTP/2 connection the pool already had open (always false for TCP). */
  readonly reused: boolean;
}
