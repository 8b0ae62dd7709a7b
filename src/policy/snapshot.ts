/**
 * The compiled, immutable policy snapshot: what `decide()` evaluates. Built once per load by
 * `compilePolicySet` (compile.ts), swapped by one reference, never mutated afterwards — a tunnel
 * is always decided against exactly one snapshot (docs/design.md §1: immutable, swapped by one reference).
 */
import type { Environment } from '@marcbachmann/cel-js';
import type { CompiledExpression, IndexKey } from './cel/compiled.ts';
import type { Location } from './model.ts';
import type { PolicyAction, PolicyMode, RuleRef } from './decision.ts';
import type { KeyedIndex } from './rule-index.ts';
import { deepFreeze } from '../util/deep-freeze.ts';

/** Rule name used in decisions and errors for a policy's selector (rule names cannot contain parentheses). */
export const SELECTOR_RULE_NAME = '(selector)';

export interface CompiledVariable {
  readonly name: string;
  readonly expression: CompiledExpression;
  /** Positions (in the policy's variable list) of earlier variables this one reads. */
  readonly dependsOn: readonly number[];
  /**
   * The environment the expression was checked in (declaring exactly the variables before it),
   * needed to build the `variables` value it sees.
   */
  readonly env: Environment;
}

export interface CompiledRule {
  readonly name: string;
  /** Position of the policy in `PolicySnapshot.policies`. */
  readonly policyIndex: number;
  /** Position of the rule inside its policy. */
  readonly indexInPolicy: number;
  /**
   * Global evaluation order: policy ordinal, then rule order. "First" in a decision always means
   * lowest `ordinal`, whichever index structure produced the candidate.
   */
  readonly ordinal: number;
  readonly when: CompiledExpression;
  /**
   * Constraints (equality, CIDR, prefix, suffix keys) that must hold for the rule to count: the
   * rule's own `indexKeys` plus its policy selector's (a rule of a policy whose selector is false
   * never counts). A context that violates one of them cannot make the rule match (the CEL layer
   * proves this per key: each is a top-level conjunct, and CEL's `&&` turns `false && error` into
   * `false`; `keysHold` only reports a violation when the conjunct is false, never an error).
   */
  readonly keys: readonly IndexKey[];
  /** Positions of the policy variables this rule reads, directly or through other variables. */
  readonly variableReads: readonly number[];
  /** The reference put into decisions (shared, frozen). */
  readonly ref: Readonly<RuleRef>;
  readonly message?: string;
  readonly location: Location;
}

export interface CompiledPolicy {
  readonly name: string;
  readonly action: PolicyAction;
  readonly mode: PolicyMode;
  /** Document ordinal in the whole set (files sorted by path, documents in order). */
  readonly ordinal: number;
  /** Position in `PolicySnapshot.policies` (policies are sorted by ordinal). */
  readonly position: number;
  /** Null when absent or the literal `true`: the policy applies to every tunnel. */
  readonly selector: CompiledExpression | null;
  /** The selector's index keys (empty when there is no selector). */
  readonly selectorKeys: readonly IndexKey[];
  /** Positions of the policy variables the selector reads (it is checked with the rules' environment). */
  readonly selectorVariableReads: readonly number[];
  /** Reference used when the selector itself fails to evaluate. */
  readonly selectorRef: Readonly<RuleRef>;
  readonly variables: readonly CompiledVariable[];
  /** The environment the rules were checked in (declaring every variable); null without variables. */
  readonly rulesEnv: Environment | null;
  readonly rules: readonly CompiledRule[];
  readonly location: Location;
}

/** The index over a snapshot's rules of one kind (rule-index.ts). */
export type RuleIndex = KeyedIndex<CompiledRule>;
/** The index over a snapshot's policy selectors. */
export type PolicyIndex = KeyedIndex<CompiledPolicy>;

/**
 * Rule buckets, one per role in Istio's evaluation order. Dry-run policies of every action go to
 * the `dryRun*` buckets and are evaluated on their own path (docs/design.md §3 step 1).
 */
export interface SnapshotIndex {
  readonly deny: RuleIndex;
  readonly allow: RuleIndex;
  readonly audit: RuleIndex;
  readonly dryRunDeny: RuleIndex;
  readonly dryRunAllow: RuleIndex;
  readonly dryRunAudit: RuleIndex;
  /** Enforced ALLOW policies, indexed by selector, for step 3 ("no ALLOW policy applies"). */
  readonly allowPolicies: PolicyIndex;
  /** Dry-run ALLOW policies, likewise, for the dry-run verdict. */
  readonly dryRunAllowPolicies: PolicyIndex;
  /** Every dry-run policy, to tell whether any applies (`dryRun` is null otherwise). */
  readonly dryRunPolicies: PolicyIndex;
}

export interface PolicySnapshot {
  /** Monotonic load counter assigned by the loader; the decision cache keys on it. */
  readonly version: number;
  /** Hash of the source files (`hashSources`), reported in audit and reload records. */
  readonly hash: string;
  /** Every AuthorizationPolicy, sorted by ordinal. */
  readonly policies: readonly CompiledPolicy[];
  /** Every rule, sorted by ordinal (`rules[i].ordinal === i`). */
  readonly rules: readonly CompiledRule[];
  readonly ruleCount: number;
  readonly index: SnapshotIndex;
  /**
   * Union of the attribute paths read by every selector, variable and rule (`variables.*`
   * excluded: a variable's own reads are in the union). The decision cache keys on these.
   */
  readonly reads: ReadonlySet<string>;
  /** Source files the snapshot was compiled from. */
  readonly createdFrom: readonly string[];
}

/**
 * Freezes a compiled snapshot or part of one (src/util/deep-freeze.ts). CompiledExpression objects
 * (owned by the CEL layer, frozen by it, holding an AST and an environment the CEL engine may cache
 * into) and environments are not descended into. They are all typed read-only and never written
 * after compilation.
 */
export function freezeCompiled<T>(value: T): T {
  return deepFreeze(value, isCelOwned);
}

function isCelOwned(v: object): boolean {
  return isCompiledExpression(v) || isEnvironment(v);
}

function isEnvironment(v: object): boolean {
  return typeof (v as { clone?: unknown }).clone === 'function' && typeof (v as { registerVariable?: unknown }).registerVariable === 'function';
}

function isCompiledExpression(v: object): boolean {
  return typeof (v as { evaluate?: unknown }).evaluate === 'function' && 'indexKeys' in v;
}

/** Convenience for callers that print a snapshot summary (`policy check`, `/debug/policy`). */
export function summarizeSnapshot(s: PolicySnapshot): {
  version: number;
  hash: string;
  policies: number;
  rules: number;
  files: readonly string[];
  byAction: Record<PolicyAction, number>;
  dryRun: number;
} {
  const byAction: Record<PolicyAction, number> = { ALLOW: 0, DENY: 0, AUDIT: 0 };
  let dryRun = 0;
  for (const p of s.policies) {
    byAction[p.action]++;
    if (p.mode === 'DryRun') dryRun++;
  }
  return { version: s.version, hash: s.hash, policies: s.policies.length, rules: s.ruleCount, files: s.createdFrom, byAction, dryRun };
}

export type { PolicyMode };
