/**
 * The audit record (DESIGN §4): one JSON line per event, schema-versioned. `decision` for every
 * CONNECT, `close` for every tunnel end, `reload` for every policy load. A decision record holds the
 * full evaluation input (minus headers outside the allow-list), so `waygate audit replay` can
 * re-decide it against another policy set with the same engine.
 */
import type { DryRunOutcome, Reason, RuleRef, Verdict } from '../policy/decision.ts';

/** Bumped on any incompatible change; readers count records of other versions as unknown. */
export const AUDIT_SCHEMA_VERSION = 1;

export interface AuditSource {
  principal: string;
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
  ip: string;
  port: number;
}

export interface AuditDestination {
  authority: string;
  ip: string;
  port: number;
  host: string;
}

export interface DecisionRecord {
  schema: typeof AUDIT_SCHEMA_VERSION;
  event: 'decision';
  /** RFC 3339 with milliseconds; also the `now` the decision was taken with. */
  time: string;
  decisionId: string;
  connectionId: string;
  streamId: number;
  decision: Verdict;
  reason: Reason;
  /** HTTP status answered on the CONNECT (200, 400, 401/403, 503). */
  status: number;
  policy: string | null;
  rule: string | null;
  dryRun: DryRunOutcome | null;
  audit: RuleRef[];
  evalErrors: { policy: string; rule: string; message: string }[];
  snapshot: { version: number; hash: string };
  source: AuditSource;
  destination: AuditDestination;
  traceId: string;
  /** Allow-listed request headers, secrets redacted as `[REDACTED]`. */
  headers: Record<string, string>;
  baggage: Record<string, string>;
  connection: { id: string; tlsVersion: string };
  evalMicros: number;
}

export type CloseReason =
  | 'completed'        // both sides finished cleanly
  | 'client_reset'     // the peer reset the stream (other than NO_ERROR/CANCEL after EOF)
  | 'upstream_reset'   // the destination reset / errored
  | 'upstream_failed'  // dial failed (a decision record with 503 precedes it)
  | 'policy_changed'   // re-check after a snapshot swap denied the tunnel
  | 'draining'         // the drain deadline passed
  | 'idle_timeout'
  | 'session_closed'   // the HTTP/2 connection went away
  | 'error';

export interface CloseRecord {
  schema: typeof AUDIT_SCHEMA_VERSION;
  event: 'close';
  time: string;
  decisionId: string;
  connectionId: string;
  streamId: number;
  source: AuditSource;
  destination: AuditDestination;
  /** Bytes sent to the client (destination -> client). */
  bytesSent: number;
  /** Bytes received from the client (client -> destination). */
  bytesReceived: number;
  durationMs: number;
  closeReason: CloseReason;
  /** For policy_changed: the snapshot and rule that closed it. */
  policy?: string | null;
  rule?: string | null;
  snapshot?: { version: number; hash: string };
}

export interface ReloadRecord {
  schema: typeof AUDIT_SCHEMA_VERSION;
  event: 'reload';
  time: string;
  result: 'applied' | 'rejected' | 'unchanged';
  snapshot: { version: number; hash: string };
  /** Snapshot that stays in force after a rejection. */
  previous?: { version: number; hash: string };
  policies: number;
  rules: number;
  errors: { file: string; line: number; col: number; path: string; code: string; message: string }[];
  trigger: 'startup' | 'watch' | 'signal' | 'admin';
  /** Tunnels closed by the re-check that followed this swap. */
  closedTunnels?: number;
}

export type AuditRecord = DecisionRecord | CloseRecord | ReloadRecord;
