/**
 * How one CONNECT ended before its tunnel carried a byte: the one typed value every phase of the
 * connect handler (connect-handler.ts) returns when it stops the CONNECT, in the way ztunnel's
 * inbound phases return one error carrying the status and the metric flag. An outcome says what
 * the decision record shows and what happens to the tunnel; the answer's status is not chosen
 * per exit but read from {@link statusFor}, one table from `reason` to status (docs/design.md §2, §4: a
 * reason maps to exactly one status).
 */
import type { CloseReason } from '../audit/record.ts';
import type { Decision, Reason, Verdict } from '../policy/decision.ts';
import type { Revocation } from './tunnel.ts';

/** The status each reason is answered with; `deny` is the configured deny status (401 by default). */
const STATUS_BY_REASON: Readonly<Record<Reason, number | 'deny'>> = {
  allowed: 200,
  default_allow: 200,
  explicit_deny: 'deny',
  no_allow_match: 'deny',
  default_deny: 'deny',
  no_identity: 'deny',
  eval_error: 'deny',
  // Outside the allowed networks: the gateway refuses, it did not fail to reach it.
  destination_not_allowed: 'deny',
  policy_changed: 'deny',
  bad_request: 400,
  // No route (ztunnel's "no upstream"), a self-call, no dial slot, a failed dial: 503.
  upstream_failed: 503,
  // The destination's own policy refused the gateway's identity (it answered 401/403): the
  // gateway did not refuse the client, so not the deny status (docs/design.md §6).
  upstream_denied: 503,
  draining: 503,
  // No audit, no access: the decision record could not be written (src/audit/logger.ts).
  audit_unavailable: 503,
};

/** The HTTP status a CONNECT refused (or allowed) with `reason` is answered with. */
export function statusFor(reason: Reason, denyStatus: number): number {
  const s = STATUS_BY_REASON[reason];
  return s === 'deny' ? denyStatus : s;
}

/**
 * `status`: answered with {@link statusFor}(reason). `none`: nobody can be answered (the client
 * reset the stream, or the gateway is closing its sessions): the record shows status 0.
 */
export type Answer = 'status' | 'none';

/** The end of one CONNECT that did not become an open tunnel. Built only by the functions below. */
export class ConnectOutcome {
  private constructor(
    readonly verdict: Verdict,
    readonly reason: Reason,
    /** What the policy said (dry run, audit rules, eval errors, snapshot); null before policy ran. */
    readonly decision: Decision | null,
    /** Whether the record names the decision's policy and rule (false when not a rule decided). */
    readonly withRule: boolean,
    readonly answer: Answer,
    /** The CONNECT passed authorization: its tunnel gets a close record, with `closeReason`. */
    readonly authorized: boolean,
    readonly closeReason: CloseReason | null,
    /** For `policy_changed`: the decision that closed the tunnel, named in its close record. */
    readonly closeDecision: Decision | null = null,
  ) {}

  /** A malformed CONNECT (400): no tunnel was registered. */
  static badRequest(): ConnectOutcome {
    return new ConnectOutcome('deny', 'bad_request', null, false, 'status', false, null);
  }

  /** A stream that slipped in past the drain deadline (503): no tunnel was registered. */
  static drainingBeforeStart(): ConnectOutcome {
    return new ConnectOutcome('deny', 'draining', null, false, 'status', false, null);
  }

  /** The peer has no accepted SPIFFE identity: denied without consulting policy. */
  static noIdentity(): ConnectOutcome {
    return new ConnectOutcome('deny', 'no_identity', null, false, 'status', false, null);
  }

  /** The policy denied (its reason and rule are recorded). */
  static policyDenied(decision: Decision): ConnectOutcome {
    return new ConnectOutcome('deny', decision.reason, decision, true, 'status', false, null);
  }

  /** The policy allowed but the destination is outside the allowed networks. */
  static destinationNotAllowed(decision: Decision): ConnectOutcome {
    return new ConnectOutcome('deny', 'destination_not_allowed', decision, false, 'status', false, null);
  }

  /**
   * Allowed, but the destination cannot be reached: no route, a self-call, a connector that
   * cannot carry it, no dial slot, a failed dial. Recorded like a failed dial (the rule kept, a
   * close record `upstream_failed`), so every allow/upstream_failed record has its close record.
   */
  static unreachable(decision: Decision): ConnectOutcome {
    return new ConnectOutcome('allow', 'upstream_failed', decision, true, 'status', true, 'upstream_failed');
  }

  /**
   * Allowed, but the destination's own policy refused the gateway (it answered 401/403): 503 with
   * reason `upstream_denied`, recorded like a failed dial.
   */
  static upstreamDenied(decision: Decision): ConnectOutcome {
    return new ConnectOutcome('allow', 'upstream_denied', decision, true, 'status', true, 'upstream_failed');
  }

  /** Allowed, but the client reset the stream before its answer: the record keeps what the policy said, with status 0. */
  static clientGone(decision: Decision): ConnectOutcome {
    return new ConnectOutcome('allow', decision.reason, decision, true, 'none', true, 'client_reset');
  }

  /**
   * Allowed, but its decision record could not be written within the bound, or the audit log is
   * failing and `audit.onFailure` is `deny` (src/audit/logger.ts): 503, reason `audit_unavailable`,
   * the policy's outcome (dry run, audit rules) kept; its close record says `audit_unavailable`.
   */
  static auditUnavailable(decision: Decision): ConnectOutcome {
    return new ConnectOutcome('deny', 'audit_unavailable', decision, false, 'status', true, 'audit_unavailable');
  }

  /** A recheck, a drain or a shutdown revoked the tunnel while it was dialing. */
  static revoked(rev: Revocation, original: Decision): ConnectOutcome {
    if (rev.reason === 'policy_changed') {
      const d = rev.decision ?? null;
      return new ConnectOutcome('deny', 'policy_changed', d ?? original, d !== null, 'status', true, 'policy_changed', d);
    }
    // Draining answers 503; a hard close() cannot answer any more. Both are the gateway going
    // away, recorded with reason `draining`.
    return new ConnectOutcome('deny', 'draining', original, false, rev.reason === 'draining' ? 'status' : 'none', true, rev.reason);
  }

  /**
   * The handling threw (a bug, or a sink or hook that threw, not the peer's doing). Fails closed
   * (docs/design.md §3): after a policy allow the transport failed (503, upstream_failed, rule kept);
   * before one there is no decision to show (eval_error, the deny status). A tunnel that had
   * passed authorization keeps its close record, with reason `error`.
   */
  static internalError(decision: Decision | null, authorized: boolean): ConnectOutcome {
    const allowed = decision?.decision === 'allow';
    return new ConnectOutcome(allowed ? 'allow' : 'deny', allowed ? 'upstream_failed' : 'eval_error', decision, allowed, 'status', authorized, 'error');
  }
}
