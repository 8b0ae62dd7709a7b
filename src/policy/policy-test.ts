/**
 * The PolicyTest runner behind `waygate policy test` (docs/design.md §3 "Policy tests"): every case of
 * every PolicyTest runs against one snapshot holding every AuthorizationPolicy of the given paths,
 * through the same `decide()` the gateway uses, so a passing test says what the gateway will do.
 *
 * A case states only the fields it cares about; each stated field is compared and every mismatch
 * reported as expected vs actual. Coverage lists the rules no case reached: a rule is reached
 * when it matched in some case (an evaluation error in a DENY rule counts: it fails closed as a
 * match) or was the rule that decided one.
 */
import type { Decision, DefaultAction, RuleRef, Verdict } from './decision.ts';
import { explainDecision, type Explanation } from './explain.ts';
import { contextFromInput } from './context-input.ts';
import type { Location, PolicyTest, PolicyTestCase, PolicyTestExpect } from './model.ts';
import type { PolicySnapshot } from './snapshot.ts';

/** The fields a case may state, in the order failures list them. */
export type ExpectField = 'decision' | 'reason' | 'policy' | 'rule' | 'audit' | 'dryRun';

/** One stated field that did not hold. */
export interface FieldDiff {
  field: ExpectField;
  expected: unknown;
  actual: unknown;
}

/** What the engine decided for a case, in the shape cases are written in. */
export interface ActualOutcome {
  decision: Verdict;
  reason: string;
  policy: string | null;
  rule: string | null;
  /** Matching AUDIT rules as `policy/rule`. */
  audit: string[];
  /** The dry-run verdict: the dry-run outcome's, or the actual one when no dry-run policy applies. */
  dryRun: Verdict;
  /** True when some dry-run policy applied (`Decision.dryRun` was not null). */
  dryRunApplied: boolean;
  /** Rules that raised an evaluation error, as `policy/rule: message`. */
  evalErrors: string[];
}

export interface CaseResult {
  test: string;
  case: string;
  /** Where the case is written (its list item). */
  location: Location;
  defaultAction: DefaultAction;
  passed: boolean;
  expected: PolicyTestExpect;
  actual: ActualOutcome;
  /** Empty when the case passed. */
  diffs: FieldDiff[];
  /** Set when the input could not become a context (the case fails without a decision). */
  inputError?: string;
}

/** A rule of the snapshot and how often cases reached it. */
export interface RuleCoverage {
  policy: string;
  rule: string;
  action: RuleRef['action'];
  mode: RuleRef['mode'];
  location: Location;
  /** Cases in which the rule matched or decided. */
  hits: number;
  /**
   * The rule's condition, or its policy's selector, is the literal `false`: it matches nothing by
   * construction (an imported Istio ALLOW policy without rules, a NetworkPolicy without ingress),
   * so no case can reach it and none is asked for.
   */
  matchesNothing: boolean;
}

export interface CoverageReport {
  totalRules: number;
  /** Rules a case can reach: every rule but those that match nothing by construction. */
  countedRules: number;
  reachedRules: number;
  /** Reached / counted in percent (100 when no rule is counted), rounded down to 0.1. */
  percent: number;
  rules: RuleCoverage[];
  /** The rules no case reached (those matching nothing by construction aside), in policy order. */
  unreached: RuleCoverage[];
  /** The rules that match nothing by construction (literal `false`): listed, not counted. */
  matchesNothing: RuleCoverage[];
}

export interface TestReport {
  /** No failing case, and coverage at or above the threshold when one was given. */
  ok: boolean;
  total: number;
  passed: number;
  failed: number;
  cases: CaseResult[];
  coverage: CoverageReport;
  /** The threshold the report was checked against, null when none. */
  threshold: number | null;
  coverageOk: boolean;
}

export interface RunOptions {
  /** Minimum rule coverage in percent (0-100); below it the report is not ok. */
  threshold?: number;
  /** defaultAction for tests that do not state one; DENY (the gateway's default) when absent. */
  defaultAction?: DefaultAction;
}

/** Runs every case of every test against one snapshot. Never throws for a bad case: it fails. */
export function runPolicyTests(snapshot: PolicySnapshot, tests: readonly PolicyTest[], opts: RunOptions = {}): TestReport {
  const hits = new Array<number>(snapshot.rules.length).fill(0);
  const ordinalOf = new Map<string, number>();
  for (const r of snapshot.rules) ordinalOf.set(refKey(r.ref), r.ordinal);

  const cases: CaseResult[] = [];
  for (const t of tests) {
    const defaultAction = t.defaultAction ?? opts.defaultAction ?? 'DENY';
    for (const c of t.cases) {
      const result = runCase(snapshot, t, c, defaultAction, (key) => {
        const i = ordinalOf.get(key);
        if (i !== undefined) hits[i]!++;
      });
      cases.push(result);
    }
  }

  const rules: RuleCoverage[] = snapshot.rules.map((r, i) => ({
    policy: r.ref.policy,
    rule: r.ref.rule,
    action: r.ref.action,
    mode: r.ref.mode,
    location: r.location,
    hits: hits[i]!,
    matchesNothing: r.when.isConstantFalse || snapshot.policies[r.policyIndex]!.selector?.isConstantFalse === true,
  }));
  // A rule that is the literal `false` has nothing to cover: counting it would hold coverage under
  // 100% with no case that could ever raise it. It is reported apart instead.
  const matchesNothing = rules.filter((r) => r.matchesNothing);
  const unreached = rules.filter((r) => r.hits === 0 && !r.matchesNothing);
  const countedRules = rules.length - matchesNothing.length;
  const reachedRules = countedRules - unreached.length;
  const percent = countedRules === 0 ? 100 : Math.floor((reachedRules / countedRules) * 1000) / 10;
  const threshold = opts.threshold ?? null;
  const coverageOk = threshold === null || percent >= threshold;
  const failed = cases.filter((c) => !c.passed).length;
  return {
    ok: failed === 0 && coverageOk,
    total: cases.length,
    passed: cases.length - failed,
    failed,
    cases,
    coverage: { totalRules: rules.length, countedRules, reachedRules, percent, rules, unreached, matchesNothing },
    threshold,
    coverageOk,
  };
}

function runCase(
  snapshot: PolicySnapshot,
  test: PolicyTest,
  c: PolicyTestCase,
  defaultAction: DefaultAction,
  reach: (ruleKey: string) => void,
): CaseResult {
  const base = { test: test.name, case: c.name, location: c.location, defaultAction, expected: c.expect };
  let ctx;
  try {
    ctx = contextFromInput(c.input);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    return {
      ...base,
      passed: false,
      actual: emptyOutcome(),
      diffs: [],
      inputError: message,
    };
  }
  // The explanation evaluates every rule in full (no short-circuit, no index) and carries
  // exactly decide()'s Decision, so one call gives both the verdict and the coverage.
  const explanation = explainDecision(snapshot, ctx, { defaultAction });
  const decision = explanation.decision;
  for (const key of reachedBy(explanation)) reach(key);
  const actual = outcomeOf(decision);
  const diffs = compare(c.expect, actual);
  return { ...base, passed: diffs.length === 0, actual, diffs };
}

/**
 * The rules a case reached: the deciding rule, and every rule that matched — including those the
 * engine never needed (a DENY rule after the first match, an ALLOW rule that lost to a DENY). A
 * DENY rule that failed to evaluate counts as a match (fail closed, docs/design.md §3).
 */
function reachedBy(explanation: Explanation): Set<string> {
  const d = explanation.decision;
  const out = new Set<string>();
  if (d.policy !== null && d.rule !== null) out.add(refKey({ policy: d.policy, rule: d.rule }));
  for (const p of explanation.policies) {
    for (const r of p.rules) {
      if (r.outcome === 'match' || (r.outcome === 'error' && p.action === 'DENY')) out.add(refKey({ policy: p.name, rule: r.name }));
    }
  }
  return out;
}

function outcomeOf(d: Decision): ActualOutcome {
  return {
    decision: d.decision,
    reason: d.reason,
    policy: d.policy,
    rule: d.rule,
    audit: d.audit.map(refKey),
    dryRun: d.dryRun?.decision ?? d.decision,
    dryRunApplied: d.dryRun !== null,
    evalErrors: d.evalErrors.map((e) => `${refKey(e)}: ${e.message}`),
  };
}

function emptyOutcome(): ActualOutcome {
  return { decision: 'deny', reason: '', policy: null, rule: null, audit: [], dryRun: 'deny', dryRunApplied: false, evalErrors: [] };
}

/** Compares only the fields the case states; `audit` as a set (order carries no meaning). */
export function compare(expect: PolicyTestExpect, actual: ActualOutcome): FieldDiff[] {
  const diffs: FieldDiff[] = [];
  if (expect.decision !== actual.decision) diffs.push({ field: 'decision', expected: expect.decision, actual: actual.decision });
  if (expect.reason !== undefined && expect.reason !== actual.reason) {
    diffs.push({ field: 'reason', expected: expect.reason, actual: actual.reason });
  }
  if (expect.policy !== undefined && expect.policy !== actual.policy) {
    diffs.push({ field: 'policy', expected: expect.policy, actual: actual.policy });
  }
  if (expect.rule !== undefined && expect.rule !== actual.rule) {
    diffs.push({ field: 'rule', expected: expect.rule, actual: actual.rule });
  }
  if (expect.audit !== undefined) {
    const want = [...new Set(expect.audit)].sort();
    const got = [...new Set(actual.audit)].sort();
    if (want.length !== got.length || want.some((v, i) => v !== got[i])) diffs.push({ field: 'audit', expected: want, actual: got });
  }
  if (expect.dryRun !== undefined && expect.dryRun !== actual.dryRun) {
    diffs.push({ field: 'dryRun', expected: expect.dryRun, actual: actual.dryRun });
  }
  return diffs;
}

function refKey(r: { policy: string; rule: string }): string {
  return `${r.policy}/${r.rule}`;
}
