/**
 * Explains a decision for people (`policy eval --explain`, `POST /debug/explain`): every policy
 * with its selector value, every variable, every rule (matched / not / error) with the value of
 * each sub-expression, and the final Decision — which is `decide()`'s own, never recomputed here.
 *
 * The per-rule outcomes are evaluated in full (no short-circuit, no index), so an operator sees
 * what every rule says about the tunnel, including rules the engine never needed to evaluate.
 */
import type { CompiledExpression } from './cel/compiled.ts';
import type { CompiledCelExpression } from './cel/compile-expression.ts';
import { policyVariablesValue, toActivation } from './cel/environment.ts';
import { explainExpression, formatExplanation, renderValue, type ExplainNode } from './cel/explain-expression.ts';
import type { DecisionContext } from './context.ts';
import type { Decision, PolicyAction, PolicyMode } from './decision.ts';
import { decide, type DecideOptions } from './engine.ts';
import { keysHold } from './rule-index.ts';
import type { CompiledPolicy, PolicySnapshot } from './snapshot.ts';

export type SelectorOutcome = 'applies' | 'does-not-apply' | 'error';
export type RuleOutcome = 'match' | 'no-match' | 'error' | 'not-evaluated';

export interface ExpressionExplanation {
  text: string;
  /** `file:line:col` of the expression. */
  at: string;
  tree: ExplainNode | null;
}

export interface RuleExplanation {
  name: string;
  outcome: RuleOutcome;
  /** The error message when outcome is `error`. */
  error?: string;
  /**
   * False when the rule index does not offer this rule for the tunnel (one of its equality
   * constraints does not hold): the engine never evaluates it, and it cannot match.
   */
  candidate: boolean;
  expression: ExpressionExplanation;
}

export interface VariableExplanation {
  name: string;
  value?: unknown;
  error?: string;
  expression: ExpressionExplanation;
}

export interface PolicyExplanation {
  name: string;
  action: PolicyAction;
  mode: PolicyMode;
  at: string;
  /** Null when the policy has no selector (it applies to every tunnel). */
  selector: (ExpressionExplanation & { outcome: SelectorOutcome; error?: string }) | null;
  /** Whether the policy governs this tunnel (a DENY selector that errors applies: fail closed). */
  applies: boolean;
  variables: VariableExplanation[];
  rules: RuleExplanation[];
}

export interface Explanation {
  snapshot: { version: number; hash: string; files: readonly string[] };
  defaultAction: DecideOptions['defaultAction'];
  /** The context decided, as plain data. */
  context: unknown;
  policies: PolicyExplanation[];
  /** Exactly what `decide()` returns for the same inputs. */
  decision: Decision;
}

/** Explains `decide(snapshot, ctx, opts)`. Pure apart from the optional clock, like decide. */
export function explainDecision(snapshot: PolicySnapshot, ctx: DecisionContext, opts: DecideOptions): Explanation {
  const decision = decide(snapshot, ctx, opts);
  const base = toActivation(ctx);
  const policies = snapshot.policies.map((p) => explainPolicy(p, ctx, base));
  return {
    snapshot: { version: snapshot.version, hash: snapshot.hash, files: snapshot.createdFrom },
    defaultAction: opts.defaultAction,
    context: renderValue({ ...ctx }),
    policies,
    decision,
  };
}

function explainPolicy(p: CompiledPolicy, ctx: DecisionContext, base: Record<string, unknown>): PolicyExplanation {
  // Variables in order, each seeing the ones before it (as the engine evaluates them).
  const values: Record<string, unknown> = {};
  const errors: (string | undefined)[] = [];
  const variables: VariableExplanation[] = p.variables.map((v, i) => {
    const activation = { ...base, variables: policyVariablesValue(v.env, values) };
    const dep = v.dependsOn.find((d) => errors[d] !== undefined);
    const expression = describe(v.expression, activation);
    if (dep !== undefined) {
      errors[i] = `depends on variable "${p.variables[dep]!.name}"`;
      return { name: v.name, error: errors[i], expression };
    }
    try {
      values[v.name] = v.expression.evaluate(activation);
      return { name: v.name, value: renderValue(values[v.name]), expression };
    } catch (e) {
      errors[i] = message(e);
      return { name: v.name, error: errors[i], expression };
    }
  });
  const full = p.rulesEnv === null ? base : { ...base, variables: policyVariablesValue(p.rulesEnv, values) };
  const failedVar = (reads: readonly number[]): string | undefined => {
    const v = reads.find((i) => errors[i] !== undefined);
    return v === undefined ? undefined : `variable "${p.variables[v]!.name}": ${errors[v]}`;
  };

  let selector: PolicyExplanation['selector'] = null;
  let applies = true;
  if (p.selector !== null) {
    const r = run(p.selector, full, failedVar(p.selectorVariableReads), keysHold(p.selectorKeys, ctx));
    const outcome: SelectorOutcome = r.outcome === 'match' ? 'applies' : r.outcome === 'error' ? 'error' : 'does-not-apply';
    selector = { ...describe(p.selector, full), outcome, ...(r.error !== undefined ? { error: r.error } : {}) };
    applies = outcome === 'applies' || (outcome === 'error' && p.action === 'DENY');
  }

  const rules: RuleExplanation[] = p.rules.map((rule) => {
    const candidate = keysHold(rule.keys, ctx);
    const expression = describe(rule.when, full);
    if (!applies) return { name: rule.name, outcome: 'not-evaluated', candidate, expression };
    const r = run(rule.when, full, failedVar(rule.variableReads), candidate);
    return { name: rule.name, outcome: r.outcome, ...(r.error !== undefined ? { error: r.error } : {}), candidate, expression };
  });

  return {
    name: p.name,
    action: p.action,
    mode: p.mode,
    at: `${p.location.file}:${p.location.line}:${p.location.col}`,
    selector,
    applies,
    variables,
    rules,
  };
}

/** One expression's outcome with the engine's rules for failed variables and non-bool values. */
function run(
  expr: CompiledExpression,
  activation: Record<string, unknown>,
  failedVariable: string | undefined,
  keysHoldForCtx: boolean,
): { outcome: 'match' | 'no-match' | 'error'; error?: string } {
  if (failedVariable !== undefined) return keysHoldForCtx ? { outcome: 'error', error: failedVariable } : { outcome: 'no-match' };
  try {
    const v = expr.evaluate(activation);
    if (v === true) return { outcome: 'match' };
    if (v === false) return { outcome: 'no-match' };
    return { outcome: 'error', error: `evaluated to ${typeof v}, not bool` };
  } catch (e) {
    return { outcome: 'error', error: message(e) };
  }
}

function describe(expr: CompiledExpression, activation: Record<string, unknown>): ExpressionExplanation {
  const loc = expr.source.location;
  let tree: ExplainNode | null = null;
  if ('ast' in expr && 'env' in expr) {
    try {
      tree = explainExpression(expr as CompiledCelExpression, activation);
    } catch (e) {
      tree = { text: expr.source.text, value: { error: message(e) }, children: [] };
    }
  }
  return { text: expr.source.text, at: `${loc.file}:${loc.line}:${loc.col}`, tree };
}

function message(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n', 1)[0] ?? '';
}

/** Renders an explanation for a terminal: verdict first, then each policy and rule. */
export function renderExplanation(e: Explanation): string {
  const d = e.decision;
  const by = d.policy !== null ? ` by ${d.policy}/${d.rule}` : '';
  const out: string[] = [
    `decision: ${d.decision} (${d.reason})${by}`,
    `snapshot: v${e.snapshot.version} ${e.snapshot.hash.slice(0, 12)}  defaultAction: ${e.defaultAction}`,
  ];
  if (d.audit.length > 0) out.push(`audit: ${d.audit.map((a) => `${a.policy}/${a.rule}`).join(', ')}`);
  if (d.dryRun !== null) {
    const r = d.dryRun;
    out.push(
      `dry-run: would ${r.decision} (${r.reason})${r.policy !== null ? ` by ${r.policy}/${r.rule}` : ''}` +
        `${r.wouldChange ? '  [WOULD CHANGE the verdict]' : ''}` +
        (r.matches.length > 0 ? `; matched ${r.matches.map((m) => `${m.policy}/${m.rule}`).join(', ')}` : ''),
    );
  }
  for (const x of d.evalErrors) out.push(`eval error: ${x.policy}/${x.rule}: ${x.message}`);
  if (e.policies.length === 0) out.push('', '(no policies)');
  for (const p of e.policies) {
    out.push('', `policy ${p.name} (${p.action}, ${p.mode}) at ${p.at}${p.applies ? '' : '  — does not apply'}`);
    if (p.selector !== null) {
      out.push(`  selector ${p.selector.outcome}${p.selector.error ? `: ${p.selector.error}` : ''}  (${p.selector.at})`);
      if (p.selector.tree) out.push(indent(formatExplanation(p.selector.tree), '    '));
    }
    for (const v of p.variables) {
      out.push(`  variable ${v.name} = ${v.error !== undefined ? `error: ${v.error}` : JSON.stringify(v.value)}`);
    }
    for (const r of p.rules) {
      const mark = r.outcome === 'match' ? 'MATCH' : r.outcome === 'error' ? `ERROR: ${r.error}` : r.outcome;
      out.push(`  rule ${r.name}: ${mark}${r.candidate ? '' : ' (ruled out by index keys)'}  (${r.expression.at})`);
      if (r.expression.tree && r.outcome !== 'not-evaluated') out.push(indent(formatExplanation(r.expression.tree), '    '));
    }
  }
  return out.join('\n');
}

function indent(text: string, prefix: string): string {
  return text.split('\n').map((l) => prefix + l).join('\n');
}
