/**
 * What the engine (and the transport around it) decides. Reasons are a closed union: each maps to
 * exactly one audit `reason`, one metric label value and one CONNECT status (docs/design.md §2, §4).
 */

export type Verdict = 'allow' | 'deny';

/** Every reason an audit record can carry (docs/design.md §4). */
export type Reason =
  | 'allowed'
  | 'default_allow'
  | 'explicit_deny'
  | 'no_allow_match'
  | 'default_deny'
  | 'no_identity'
  | 'bad_request'
  | 'eval_error'
  | 'destination_not_allowed'
  | 'upstream_failed'
  | 'upstream_denied'
  | 'policy_changed'
  | 'draining'
  // The decision record could not be written (docs/operating.md, "Audit log guarantees").
  | 'audit_unavailable';

/** The reasons the pure engine itself can return; the others are the transport's. */
export type EngineReason =
  | 'allowed'
  | 'default_allow'
  | 'explicit_deny'
  | 'no_allow_match'
  | 'default_deny'
  | 'eval_error';

export const ALL_REASONS: readonly Reason[] = [
  'allowed', 'default_allow', 'explicit_deny', 'no_allow_match', 'default_deny', 'no_identity',
  'bad_request', 'eval_error', 'destination_not_allowed', 'upstream_failed', 'upstream_denied', 'policy_changed', 'draining',
  'audit_unavailable',
];

/**
 * Transport reasons written after the policy engine ALLOWED (src/hbone/connect-handler.ts): the
 * destination is outside the allowed networks, it could not be reached, it refused the
 * gateway, or the decision record could not be written (`audit_unavailable`). Review tools count them as policy allows, and replay re-decides them as such.
 */
export const AFTER_POLICY_ALLOW_REASONS: ReadonlySet<string> = new Set(['destination_not_allowed', 'upstream_failed', 'upstream_denied', 'audit_unavailable']);

export type PolicyAction = 'ALLOW' | 'DENY' | 'AUDIT';
export type PolicyMode = 'Enforce' | 'DryRun';
export type DefaultAction = 'ALLOW' | 'DENY';

/** One rule that matched (or failed to evaluate), named by its policy and rule. */
export interface RuleRef {
  policy: string;
  rule: string;
  action: PolicyAction;
  mode: PolicyMode;
}

/** A rule whose evaluation raised an error; fail-closed semantics are applied by the engine. */
export interface EvalErrorRef extends RuleRef {
  message: string;
}

/** What a dry-run policy set would have decided, reported and never applied. */
export interface DryRunOutcome {
  /** The verdict had dry-run policies been enforced alongside the enforced ones. */
  decision: Verdict;
  reason: EngineReason;
  policy: string | null;
  rule: string | null;
  /** True when enforcing the dry-run policies would change the actual verdict. */
  wouldChange: boolean;
  /** Every dry-run rule that matched. */
  matches: RuleRef[];
}

/** The engine's answer for one context against one snapshot. Plain data, safe to serialise. */
export interface Decision {
  decision: Verdict;
  reason: EngineReason;
  /** Policy and rule that decided it; null for default_allow / default_deny / no_allow_match. */
  policy: string | null;
  rule: string | null;
  /** AUDIT rules that matched (never change the verdict). */
  audit: RuleRef[];
  /** Dry-run outcome, null when the snapshot has no applicable dry-run policy. */
  dryRun: DryRunOutcome | null;
  /** Rules whose evaluation raised an error (fail-closed was applied). */
  evalErrors: EvalErrorRef[];
  /** Snapshot the decision was taken against. */
  snapshot: { version: number; hash: string };
  /** Evaluation time in microseconds, measured by the caller-provided clock (see engine). */
  evalMicros: number;
}
