/**
 * Hooks for metrics: the HBONE server calls these at each event so operations can attach
 * prom-client (or anything else) without the transport knowing about it. Every callback is
 * optional and synchronous; it runs on the data path, so it must be cheap and must not throw
 * (a throwing observer is caught and ignored so metrics can never break a tunnel).
 */
import type { CloseRecord, DecisionRecord } from '../audit/record.ts';
import type { DialFailureKind, UpstreamInfo, UpstreamProtocol } from '../upstream/connector.ts';

/** Why a TLS/HTTP/2 connection never got to carry a CONNECT; a bounded set for metric labels. */
export type HandshakeFailureReason =
  | 'timeout'          // TLS handshake or HTTP/2 preface not completed in time
  | 'no_certificate'   // the client sent no certificate
  | 'untrusted'        // the chain does not lead to the trust bundle
  | 'expired'          // a certificate in the chain is expired or not yet valid
  | 'certificate'      // any other certificate verification failure
  | 'protocol'         // TLS version / cipher / ALPN mismatch or garbage instead of TLS
  | 'other';

export interface HboneObserver {
  /** A TLS connection completed its handshake and an HTTP/2 session started. */
  connectionOpened?(info: { connectionId: string; tlsVersion: string; hasIdentity: boolean }): void;
  connectionClosed?(info: { connectionId: string; durationMs: number; streams: number }): void;
  handshakeFailed?(reason: HandshakeFailureReason): void;
  /** Exactly once per CONNECT, with the audit record that was written. */
  decision?(record: DecisionRecord): void;
  /** Exactly once per tunnel that was allowed, with its close record (bytes, duration, reason). */
  tunnelClosed?(record: CloseRecord): void;
  /** Upstream connect latency of a successful dial, and how it was reached (protocol, pooled connection reused). */
  upstreamConnected?(ms: number, info: UpstreamInfo): void;
  upstreamFailed?(kind: DialFailureKind, ms: number, protocol: UpstreamProtocol): void;
  /** A session was closed because PINGs went unanswered. */
  pingTimeout?(connectionId: string): void;
  /**
   * A connection (`max_connections`) or a CONNECT (`max_pending_dials`: it waited for a dial slot
   * on its connection until its connect timeout ran out, dial-queue.ts) was refused by a
   * configured limit (counted, never silent).
   */
  refused?(limit: 'max_connections' | 'max_pending_dials'): void;
}

/** Calls one hook, swallowing its errors (src/util/notify.ts). */
export { notify } from '../util/notify.ts';
