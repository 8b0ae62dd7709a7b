/**
 * The decision engine: a pure function from (snapshot, context) to a Decision (docs/design.md §3). No I/O,
 * no clock reads except the optional injected `clock`, used only to fill `evalMicros`. Transport,
 * `policy test`, `policy eval`, admin explain and `audit replay` all call this same function.
 *
 * Evaluation order is Istio's and lives in exactly one function, `applyIstioOrder`. Everything
 * else here only answers the questions that function asks ("which DENY rule matches first?"),
 * lazily and through the rule index, so a decision evaluates only the rules that can matter.
 *
 * Fail-closed rules (docs/design.md §3 "Semantics"), all tested in the table:
 * - a rule that throws or yields a non-bool: in DENY it counts as a match (reason eval_error), in
 *   ALLOW as no match (and, when nothing allows, the deny names it with reason eval_error);
 * - a selector that errors: a DENY policy applies; an ALLOW policy grants nothing but still counts
 *   as applying in step 3, so an unevaluable selector can never turn into `default_allow`;
 * - a variable that errors: every rule (or selector) of its policy that reads it errors, unless one
 *   of that rule's equality keys already rules the tunnel out (then CEL's `false && error` is
 *   false anyway, and indexed and full-scan decisions stay identical).
 * Missing identity is not an error: the context holds "" (docs/design.md §3 "Types").
 */
import type { Activation, CompiledExpression } from './cel/compiled.ts';
import { policyVariablesValue, toActivation } from './cel/environment.ts';
import type { DecisionContext } from './context.ts';
import type {
  Decision,
  DefaultAction,
  DryRunOutcome,
  EngineReason,
  EvalErrorRef,
  RuleRef,
  Verdict,
} from './decision.ts';
import { candidates, keysHold, type KeyedIndex, type IndexEntry } from './rule-index.ts';
import type { CompiledPolicy, CompiledRule, PolicySnapshot } from './snapshot.ts';

/** Options of one decision. */
export interface DecideOptions {
  /** The gateway's `defaultAction` (docs/design.md §3 step 3). */
  defaultAction: DefaultAction;
  /**
   * Monotonic clock in nanoseconds (pass `process.hrtime.bigint`), used only to fill
   * `evalMicros`. Without it `evalMicros` is 0 and the decision is a pure function of its inputs.
   */
  clock?: () => bigint;
}

/**
 * How candidates are chosen. `index` is production. `scan` walks every rule and skips those whose
 * index keys (equality, CIDR, prefix, suffix) the context violates: the same semantics without the index (the property test's
 * reference). `raw` evaluates every rule and selector with no pre-filter at all (a second
 * reference: it may list more evalErrors, never a different verdict).
 */
export type CandidateStrategy = 'index' | 'scan' | 'raw';

/** Outcome of one expression: 0 false / not applicable, 1 true / applies, 2 error. */
const NO = 0;
const YES = 1;
const ERROR = 2;
type Outcome = typeof NO | typeof YES | typeof ERROR;

/** A rule (or selector) that decided something, with the order key that makes "first" exact. */
interface Hit {
  readonly ref: Readonly<RuleRef>;
  /** policy position * 2^20 + rule position + 1; a selector is rule position -1. */
  readonly order: number;
  readonly error: boolean;
}

/** The questions Istio's order asks, answered lazily for one set of policies. */
interface OrderQuestions {
  /** First DENY rule (in ordinal order) that matched or failed to evaluate. */
  firstDeny(): Hit | null;
  /** Whether any ALLOW policy applies (a selector that errored counts: fail closed). */
  anyAllowPolicyApplies(): boolean;
  /** First ALLOW rule that matched. */
  firstAllow(): Hit | null;
  /** First ALLOW rule or selector that failed to evaluate. */
  firstAllowError(): Hit | null;
}

interface Verdictish {
  decision: Verdict;
  reason: EngineReason;
  policy: string | null;
  rule: string | null;
}

/**
 * Istio's AuthorizationPolicy evaluation order (docs/design.md §3 "Semantics"), one step per `if`.
 * The questions only ever see policies that apply to the tunnel (step 1) and only the enforced
 * policies — or, for the dry-run outcome, the enforced plus the dry-run ones.
 */
export function applyIstioOrder(q: OrderQuestions, defaultAction: DefaultAction): Verdictish {
  // Step 1 — "Policies whose selector matches the tunnel apply. Dry-run policies are evaluated on
  // a separate path and only reported": `q` is built over applicable policies of one mode set.

  // Step 2 — "Any enforced DENY rule matches -> deny (explicit_deny)."
  // "An evaluation error fails closed: in a DENY rule it counts as a match ... the record says
  // eval_error and which rule." The first DENY rule in ordinal order names the denial.
  const deny = q.firstDeny();
  if (deny !== null) {
    return { decision: 'deny', reason: deny.error ? 'eval_error' : 'explicit_deny', policy: deny.ref.policy, rule: deny.ref.rule };
  }

  // Step 3 — "No enforced ALLOW policy applies -> defaultAction of the gateway config (DENY by
  // default, reason default_deny; ALLOW gives Istio's behaviour, reason default_allow)."
  if (!q.anyAllowPolicyApplies()) {
    return defaultAction === 'ALLOW'
      ? { decision: 'allow', reason: 'default_allow', policy: null, rule: null }
      : { decision: 'deny', reason: 'default_deny', policy: null, rule: null };
  }

  // Step 4 — "Any enforced ALLOW rule matches -> allow (allowed)"
  const allow = q.firstAllow();
  if (allow !== null) {
    return { decision: 'allow', reason: 'allowed', policy: allow.ref.policy, rule: allow.ref.rule };
  }

  // Step 4, fail closed — "in an ALLOW rule [an error counts] as no match; the record says
  // eval_error and which rule": nothing allowed, and an ALLOW rule that might have did not evaluate.
  const allowError = q.firstAllowError();
  if (allowError !== null) {
    return { decision: 'deny', reason: 'eval_error', policy: allowError.ref.policy, rule: allowError.ref.rule };
  }

  // Step 4 — "... else deny (no_allow_match)."
  return { decision: 'deny', reason: 'no_allow_match', policy: null, rule: null };

  // Step 5 — "AUDIT rules never change the verdict; matches are listed in the record": they are
  // evaluated in `decide` after this function returned, and nothing here reads them.
}

/**
 * Decides one tunnel. Pure: the same snapshot, context and defaultAction give the same Decision
 * (except `evalMicros`, which comes from the injected clock).
 */
export function decide(snapshot: PolicySnapshot, ctx: DecisionContext, options: DecideOptions): Decision {
  return decideWith(snapshot, ctx, options, 'index');
}

/**
 * The same decision computed with another candidate strategy, for tests: the property test checks
 * that `decide` (index) equals `scan` exactly, and `raw` in verdict, audit and dry-run verdict.
 */
export function decideWith(
  snapshot: PolicySnapshot,
  ctx: DecisionContext,
  options: DecideOptions,
  strategy: CandidateStrategy,
): Decision {
  const start = options.clock?.();
  const run = new Evaluation(snapshot, ctx, strategy);
  const idx = snapshot.index;

  // The enforced verdict.
  const enforced = run.questions(idx.deny, idx.allow, idx.allowPolicies);
  const verdict = applyIstioOrder(enforced, options.defaultAction);

  // Step 5: every enforced AUDIT rule that matches, listed, never consulted above.
  const audit = idx.audit.all.length === 0 ? [] : refsOf(run.allMatches(idx.audit));

  // Step 1, dry-run path: "evaluated on a separate path and only reported".
  let dryRun: DryRunOutcome | null = null;
  if (idx.dryRunPolicies.all.length > 0 && run.anyApplies(idx.dryRunPolicies)) {
    dryRun = run.dryRunOutcome(enforced, verdict, options.defaultAction);
  }

  const evalErrors = run.errors();
  const evalMicros = start === undefined ? 0 : Number(options.clock!() - start) / 1000;
  return {
    decision: verdict.decision,
    reason: verdict.reason,
    policy: verdict.policy,
    rule: verdict.rule,
    audit,
    dryRun,
    evalErrors,
    snapshot: { version: snapshot.version, hash: snapshot.hash },
    evalMicros,
  };
}

/** Per-policy variable values for one decision: the activation rules of that policy see. */
interface VariableState {
  readonly activation: Activation;
  /** Error message per variable position, undefined when it evaluated. */
  readonly errors: (string | undefined)[];
}

const ORDER_RULE_SPAN = 2 ** 20;

/** Everything one decision memoises: activation, selector results, variable values, errors. */
class Evaluation {
  private readonly snapshot: PolicySnapshot;
  private readonly ctx: DecisionContext;
  private readonly strategy: CandidateStrategy;
  private activationCache: Activation | undefined;
  private selectorMemo: Map<number, Outcome> | undefined;
  private variableMemo: Map<number, VariableState> | undefined;
  private readonly evalErrors: { order: number; ref: EvalErrorRef }[] = [];

  constructor(snapshot: PolicySnapshot, ctx: DecisionContext, strategy: CandidateStrategy) {
    this.snapshot = snapshot;
    this.ctx = ctx;
    this.strategy = strategy;
  }

  /** The evaluation errors in rule order (selectors before their policy's rules). */
  errors(): EvalErrorRef[] {
    const e = this.evalErrors;
    if (e.length === 0) return [];
    if (e.length > 1) e.sort(byOrder);
    const out: EvalErrorRef[] = new Array(e.length);
    for (let i = 0; i < e.length; i++) out[i] = e[i]!.ref;
    return out;
  }

  private get activation(): Activation {
    return (this.activationCache ??= toActivation(this.ctx));
  }

  /**
   * Candidates of an index, in ordinal order. Callers still test `considered()` on each: the index
   * files an entry under one of its keys, and another of its keys may rule it out.
   */
  private list<T extends IndexEntry>(index: KeyedIndex<T>): readonly T[] {
    return this.strategy === 'index' ? candidates(index, this.ctx) : index.all;
  }

  /**
   * Whether an entry's index keys hold for the tunnel. An entry that fails one cannot match
   * (each key is a top-level conjunct), so nothing of it is evaluated, not even its selector.
   */
  private considered(keys: CompiledRule['keys']): boolean {
    return this.strategy === 'raw' || keys.length === 0 || keysHold(keys, this.ctx);
  }

  private rulesOf(index: KeyedIndex<CompiledRule>): readonly CompiledRule[] {
    return this.list(index);
  }

  private policiesOf(index: KeyedIndex<CompiledPolicy>): readonly CompiledPolicy[] {
    return this.list(index);
  }

  private recordError(ref: Readonly<RuleRef>, order: number, message: string): void {
    this.evalErrors.push({ order, ref: { policy: ref.policy, rule: ref.rule, action: ref.action, mode: ref.mode, message } });
  }

  /** Selector outcome, memoised per policy; an error is recorded once. */
  selector(p: CompiledPolicy): Outcome {
    if (p.selector === null) return YES;
    const memo = (this.selectorMemo ??= new Map());
    const known = memo.get(p.position);
    if (known !== undefined) return known;
    const order = p.position * ORDER_RULE_SPAN;
    let outcome: Outcome;
    const failed = this.failedVariable(p, p.selectorVariableReads);
    if (failed !== undefined) {
      // Same reasoning as for rules: an unevaluable variable makes the selector an error, unless
      // one of its equality constraints already rules the tunnel out.
      outcome = keysHold(p.selectorKeys, this.ctx) ? ERROR : NO;
      if (outcome === ERROR) this.recordError(p.selectorRef, order, failed);
    } else {
      const activation = p.selectorVariableReads.length > 0 ? this.variables(p).activation : this.activation;
      let message: string;
      [outcome, message] = evaluateBool(p.selector, activation, 'selector');
      if (outcome === ERROR) this.recordError(p.selectorRef, order, message);
    }
    memo.set(p.position, outcome);
    return outcome;
  }

  /** The first failed variable among `reads`, as a message; undefined when all evaluated. */
  private failedVariable(p: CompiledPolicy, reads: readonly number[]): string | undefined {
    if (reads.length === 0) return undefined;
    const vars = this.variables(p);
    for (const v of reads) {
      const failed = vars.errors[v];
      if (failed !== undefined) return `variable "${p.variables[v]!.name}": ${failed}`;
    }
    return undefined;
  }

  /**
   * Whether the rule's policy applies to this tunnel, per action: a DENY selector that errors
   * applies (fail closed: its rules may still deny); an ALLOW or AUDIT one does not (its rules
   * cannot grant anything; for ALLOW the error still blocks default_allow, see anyApplies).
   */
  private policyApplies(p: CompiledPolicy): boolean {
    const s = this.selector(p);
    return s === YES || (s === ERROR && p.action === 'DENY');
  }

  /** Evaluates one rule whose policy applies; errors are recorded. */
  rule(r: CompiledRule): Outcome {
    let activation = this.activation;
    if (r.variableReads.length > 0) {
      const p = this.snapshot.policies[r.policyIndex]!;
      const failed = this.failedVariable(p, r.variableReads);
      if (failed !== undefined) {
        // A rule reading a variable that failed errors too — unless the context already violates
        // one of the rule's equality constraints, in which case CEL's `false && error` is false
        // anyway. This keeps indexed and full-scan decisions identical.
        if (!keysHold(r.keys, this.ctx)) return NO;
        this.recordError(r.ref, ruleOrder(r), failed);
        return ERROR;
      }
      activation = this.variables(p).activation;
    }
    const [outcome, message] = evaluateBool(r.when, activation, 'rule');
    if (outcome === ERROR) this.recordError(r.ref, ruleOrder(r), message);
    return outcome;
  }

  /**
   * Evaluates a policy's variables in declaration order, once per decision and only when a rule
   * that reads one is evaluated. Variable i sees variables 0..i-1 (it was checked in an
   * environment declaring exactly those); rules see them all.
   */
  private variables(p: CompiledPolicy): VariableState {
    const memo = (this.variableMemo ??= new Map());
    const known = memo.get(p.position);
    if (known !== undefined) return known;
    const values: Record<string, unknown> = {};
    const errors: (string | undefined)[] = [];
    const base = this.activation;
    for (let i = 0; i < p.variables.length; i++) {
      const v = p.variables[i]!;
      let dep: number | undefined;
      for (const d of v.dependsOn) if (errors[d] !== undefined) { dep = d; break; }
      if (dep !== undefined) {
        errors[i] = `depends on variable "${p.variables[dep]!.name}": ${errors[dep]}`;
        continue;
      }
      try {
        const activation = { ...base, variables: policyVariablesValue(v.env, values) };
        values[v.name] = v.expression.evaluate(activation);
      } catch (e) {
        errors[i] = errorMessage(e);
      }
    }
    const activation: Activation =
      p.rulesEnv === null ? base : { ...base, variables: policyVariablesValue(p.rulesEnv, values) };
    const state = { activation, errors };
    memo.set(p.position, state);
    return state;
  }

  /** First rule (ordinal order) of a DENY bucket that matched or errored. */
  firstDenyHit(index: KeyedIndex<CompiledRule>): Hit | null {
    for (const r of this.rulesOf(index)) {
      if (!this.considered(r.keys)) continue;
      if (!this.policyApplies(this.snapshot.policies[r.policyIndex]!)) continue;
      const o = this.rule(r);
      if (o !== NO) return { ref: r.ref, order: ruleOrder(r), error: o === ERROR };
    }
    return null;
  }

  /** First ALLOW rule that matched, and the first ALLOW error met before it. */
  firstAllowHit(index: KeyedIndex<CompiledRule>): { match: Hit | null; error: Hit | null } {
    let error: Hit | null = null;
    for (const r of this.rulesOf(index)) {
      if (!this.considered(r.keys)) continue;
      const p = this.snapshot.policies[r.policyIndex]!;
      const s = this.selector(p);
      if (s === ERROR) {
        error ??= { ref: p.selectorRef, order: p.position * ORDER_RULE_SPAN, error: true };
        continue;
      }
      if (s === NO) continue;
      const o = this.rule(r);
      if (o === YES) return { match: { ref: r.ref, order: ruleOrder(r), error: false }, error };
      if (o === ERROR) error ??= { ref: r.ref, order: ruleOrder(r), error: true };
    }
    return { match: null, error };
  }

  /** Every matching rule of a bucket (AUDIT, dry-run), in ordinal order. */
  allMatches(index: KeyedIndex<CompiledRule>): CompiledRule[] {
    const out: CompiledRule[] = [];
    for (const r of this.rulesOf(index)) {
      if (!this.considered(r.keys)) continue;
      if (!this.policyApplies(this.snapshot.policies[r.policyIndex]!)) continue;
      if (this.rule(r) === YES) out.push(r);
    }
    return out;
  }

  /**
   * Whether any policy of the index applies. A selector that errors counts as applying: for ALLOW
   * policies that keeps an unevaluable selector from turning into `default_allow` (fail closed).
   */
  anyApplies(index: KeyedIndex<CompiledPolicy>): boolean {
    return this.firstApplying(index) !== null;
  }

  /**
   * The first policy (ordinal order) that applies, as a Hit whose `error` says the selector
   * failed; null when none applies.
   */
  firstApplying(index: KeyedIndex<CompiledPolicy>): Hit | null {
    if (index.all.length === 0) return null;
    for (const p of this.policiesOf(index)) {
      if (!this.considered(p.selectorKeys)) continue;
      const s = this.selector(p);
      if (s !== NO) return { ref: p.selectorRef, order: p.position * ORDER_RULE_SPAN, error: s === ERROR };
    }
    return null;
  }

  /** The lazy answers to Istio's questions for one DENY bucket, one ALLOW bucket. */
  questions(
    deny: KeyedIndex<CompiledRule>,
    allow: KeyedIndex<CompiledRule>,
    allowPolicies: KeyedIndex<CompiledPolicy>,
  ): OrderQuestions {
    return new BucketQuestions(this, deny, allow, allowPolicies);
  }

  /**
   * The verdict had the dry-run policies been enforced alongside the enforced ones, and every
   * dry-run rule that matched. Dry-run buckets are evaluated in full (every match is reported).
   */
  dryRunOutcome(
    enforced: OrderQuestions,
    actual: Verdictish,
    defaultAction: DefaultAction,
  ): DryRunOutcome {
    const idx = this.snapshot.index;
    const dryDeny = this.allHits(idx.dryRunDeny, 'DENY');
    const dryAllow = this.allHits(idx.dryRunAllow, 'ALLOW');
    const dryAudit = this.allMatches(idx.dryRunAudit);
    const combined = new CombinedQuestions(this, enforced, dryDeny, dryAllow, idx.dryRunAllowPolicies);
    const v = applyIstioOrder(combined, defaultAction);
    const matches = refsOf([...dryDeny.matches, ...dryAllow.matches, ...dryAudit].sort(byOrdinal));
    return {
      decision: v.decision,
      reason: v.reason,
      policy: v.policy,
      rule: v.rule,
      wouldChange: v.decision !== actual.decision,
      matches,
    };
  }

  /** Evaluates a whole dry-run DENY/ALLOW bucket: its matches, first hit and first error. */
  private allHits(
    index: KeyedIndex<CompiledRule>,
    action: 'DENY' | 'ALLOW',
  ): BucketHits {
    const matches: CompiledRule[] = [];
    let first: Hit | null = null;
    let firstError: Hit | null = null;
    for (const r of this.rulesOf(index)) {
      if (!this.considered(r.keys)) continue;
      const p = this.snapshot.policies[r.policyIndex]!;
      const s = this.selector(p);
      if (s === NO) continue;
      if (s === ERROR && action === 'ALLOW') {
        firstError ??= { ref: p.selectorRef, order: p.position * ORDER_RULE_SPAN, error: true };
        continue;
      }
      const o = this.rule(r);
      if (o === YES) matches.push(r);
      if (o === ERROR) firstError ??= { ref: r.ref, order: ruleOrder(r), error: true };
      // For DENY an error counts as a match (fail closed); for ALLOW only a true result does.
      if (first === null && (o === YES || (o === ERROR && action === 'DENY'))) {
        first = { ref: r.ref, order: ruleOrder(r), error: o === ERROR };
      }
    }
    return { matches, first, firstError };
  }
}

/** Everything a dry-run DENY/ALLOW bucket produced. */
interface BucketHits {
  matches: CompiledRule[];
  first: Hit | null;
  firstError: Hit | null;
}

/*
 * The question objects are classes, not object literals of closures: `questions()` building five
 * arrows per decision allocated five closures per decision. It was measured when the product still
 * ran through tsx, whose esbuild `keepNames` adds a defineProperty call to each closure: about
 * 2 µs per decision. The compiled product (tsc output) has no keepNames, but the allocations stay.
 */

/** Istio's questions for the enforced policies, each answered at most once per decision. */
class BucketQuestions implements OrderQuestions {
  private denyHit: Hit | null | undefined;
  private applying: Hit | null | undefined;
  private allowHit: { match: Hit | null; error: Hit | null } | undefined;

  constructor(
    private readonly run: Evaluation,
    private readonly deny: KeyedIndex<CompiledRule>,
    private readonly allow: KeyedIndex<CompiledRule>,
    private readonly allowPolicies: KeyedIndex<CompiledPolicy>,
  ) {}

  firstDeny(): Hit | null {
    if (this.denyHit === undefined) this.denyHit = this.deny.all.length === 0 ? null : this.run.firstDenyHit(this.deny);
    return this.denyHit;
  }

  private firstApplying(): Hit | null {
    if (this.applying === undefined) this.applying = this.run.firstApplying(this.allowPolicies);
    return this.applying;
  }

  anyAllowPolicyApplies(): boolean {
    return this.firstApplying() !== null;
  }

  private allowHits(): { match: Hit | null; error: Hit | null } {
    return (this.allowHit ??= this.run.firstAllowHit(this.allow));
  }

  firstAllow(): Hit | null {
    return this.allowHits().match;
  }

  /** A selector error met in step 3 counts too (an ALLOW policy without rules has no rule to carry it). */
  firstAllowError(): Hit | null {
    const a = this.firstApplying();
    return earliest(this.allowHits().error, a !== null && a.error ? a : null);
  }
}

/** Istio's questions for enforced + dry-run policies together (the dry-run verdict). */
class CombinedQuestions implements OrderQuestions {
  private dryApplying: Hit | null | undefined;

  constructor(
    private readonly run: Evaluation,
    private readonly enforced: OrderQuestions,
    private readonly dryDeny: BucketHits,
    private readonly dryAllow: BucketHits,
    private readonly dryAllowPolicies: KeyedIndex<CompiledPolicy>,
  ) {}

  private dryFirstApplying(): Hit | null {
    if (this.dryApplying === undefined) this.dryApplying = this.run.firstApplying(this.dryAllowPolicies);
    return this.dryApplying;
  }

  firstDeny(): Hit | null {
    return earliest(this.dryDeny.first, this.enforced.firstDeny());
  }

  anyAllowPolicyApplies(): boolean {
    return this.enforced.anyAllowPolicyApplies() || this.dryFirstApplying() !== null;
  }

  firstAllow(): Hit | null {
    return earliest(this.dryAllow.first, this.enforced.anyAllowPolicyApplies() ? this.enforced.firstAllow() : null);
  }

  firstAllowError(): Hit | null {
    const d = this.dryFirstApplying();
    return earliest(
      earliest(this.dryAllow.firstError, d !== null && d.error ? d : null),
      this.enforced.anyAllowPolicyApplies() ? this.enforced.firstAllowError() : null,
    );
  }
}

function byOrder(a: { order: number }, b: { order: number }): number {
  return a.order - b.order;
}

function byOrdinal(a: CompiledRule, b: CompiledRule): number {
  return a.ordinal - b.ordinal;
}

function refsOf(rules: readonly CompiledRule[]): RuleRef[] {
  const out: RuleRef[] = new Array(rules.length);
  for (let i = 0; i < rules.length; i++) out[i] = rules[i]!.ref;
  return out;
}

function ruleOrder(r: CompiledRule): number {
  return r.policyIndex * ORDER_RULE_SPAN + r.indexInPolicy + 1;
}

function earliest(a: Hit | null, b: Hit | null): Hit | null {
  if (a === null) return b;
  if (b === null) return a;
  return a.order <= b.order ? a : b;
}

/**
 * Runs a boolean expression, wrapping every failure: CEL raises EvaluationError, but custom
 * functions and engine bugs throw plain Error/RangeError (docs/design.md §8.1), and none may escape the engine.
 * A non-bool result is an error too (a type-checked bool expression never yields one; a `dyn`
 * map value can).
 */
function evaluateBool(expr: CompiledExpression, activation: Activation, what: string): [Outcome, string] {
  let value: unknown;
  try {
    value = expr.evaluate(activation);
  } catch (e) {
    return [ERROR, errorMessage(e)];
  }
  if (value === true) return [YES, ''];
  if (value === false) return [NO, ''];
  return [ERROR, `${what} evaluated to ${describeValue(value)}, not bool`];
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'object') return v.constructor?.name ?? 'object';
  return typeof v;
}

const MAX_ERROR_MESSAGE = 300;

function errorMessage(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  // First line only: CEL messages carry a caret snippet that belongs in explain, not the record.
  const line = m.split('\n', 1)[0] ?? '';
  return line.length > MAX_ERROR_MESSAGE ? line.slice(0, MAX_ERROR_MESSAGE) + '…' : line;
}
