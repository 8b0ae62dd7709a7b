/**
 * The policy compiler: typed documents in, one immutable PolicySnapshot out — or every diagnostic
 * found, and no snapshot (all or nothing: docs/design.md §3
 * "Semantics"). Every selector, variable and rule is compiled and type-checked here, so nothing is
 * parsed or checked on the decision path.
 *
 * The work is a generator (`compilePolicySetSteps`) that yields after every rule, policy and index
 * bucket, so the gateway's reloader can run it in event-loop slices (steps.ts) while the data path
 * keeps serving; `compilePolicySet` runs it at once. This module has no clock and no I/O: when to
 * yield the thread is the caller's choice.
 */
import type { Environment } from '@marcbachmann/cel-js';
import type { Diagnostic } from '../errors.ts';
import type { VariableFacts } from './cel/analyze.ts';
import type { IndexKey } from './cel/compiled.ts';
import {
  compileExpression,
  compilePolicyVariables,
  type CompiledCelExpression,
  type CompileOptions,
  type CompileResult as ExpressionCompileResult,
} from './cel/compile-expression.ts';
import { createBaseEnvironment, VARIABLES_NAME } from './cel/environment.ts';
import type { RuleRef } from './decision.ts';
import type { PolicyLoadCache } from './load-cache.ts';
import type { AuthorizationPolicy, ExpressionSource, PolicyDocument } from './model.ts';
import { buildIndexSteps } from './rule-index.ts';
import {
  freezeCompiled,
  SELECTOR_RULE_NAME,
  type CompiledPolicy,
  type CompiledRule,
  type CompiledVariable,
  type PolicyIndex,
  type PolicySnapshot,
  type RuleIndex,
  type SnapshotIndex,
} from './snapshot.ts';
import { runToEnd, type Steps } from './steps.ts';

export interface CompileMeta {
  /** Snapshot version (the loader's monotonic counter). */
  version: number;
  /** Hash of the sources (`hashSources`). */
  hash: string;
  /** Source files, in load order; derived from the documents' locations when omitted. */
  files?: readonly string[];
  /** Compiled expressions kept from earlier loads (the gateway's reloader passes one). */
  cache?: PolicyLoadCache;
}

export type CompileResult = { snapshot: PolicySnapshot } | { diagnostics: Diagnostic[] };

let baseEnvironment: Environment | undefined;

/**
 * The base CEL environment, built once per process: every policy environment is a clone of it, and
 * building it registers every type and function (milliseconds, not worth repeating per load).
 */
export function baseEnv(): Environment {
  return (baseEnvironment ??= createBaseEnvironment());
}

/**
 * Compiles a policy set. PolicyTest documents, if passed, are ignored. Policies are taken in
 * ordinal order; rule ordinals follow (policy ordinal, rule order).
 */
export function compilePolicySet(documents: readonly (AuthorizationPolicy | PolicyDocument)[], meta: CompileMeta): CompileResult {
  return runToEnd(compilePolicySetSteps(documents, meta));
}

/** `compilePolicySet` as steps (steps.ts): yields after each rule, each policy and each index bucket. */
export function* compilePolicySetSteps(documents: readonly (AuthorizationPolicy | PolicyDocument)[], meta: CompileMeta): Steps<CompileResult> {
  const policies = documents
    .filter((d): d is AuthorizationPolicy => d.kind === 'AuthorizationPolicy')
    .sort((a, b) => a.ordinal - b.ordinal);
  const base = baseEnv();
  const diagnostics: Diagnostic[] = [];
  const compiled: CompiledPolicy[] = [];
  const rules: CompiledRule[] = [];
  const reads = new Set<string>();

  for (const doc of policies) {
    const position = compiled.length;
    const p = yield* compilePolicy(base, doc, position, rules.length, diagnostics, meta.cache);
    if (p === null) continue;
    // Frozen now rather than in one walk of the whole snapshot at the end (~25 ms at 10,000
    // rules): the final freezeCompiled stops at every object already frozen.
    freezeCompiled(p);
    compiled.push(p);
    for (const r of p.rules) rules.push(r);
    if (p.selector !== null) for (const r of p.selector.reads) reads.add(r);
    for (const v of p.variables) for (const r of v.expression.reads) reads.add(r);
    for (const r of p.rules) for (const x of r.when.reads) reads.add(x);
    yield;
  }
  releaseParserInput(base);
  if (diagnostics.length > 0) return { diagnostics };

  for (const r of [...reads]) if (r === VARIABLES_NAME || r.startsWith(`${VARIABLES_NAME}.`)) reads.delete(r);

  const files = meta.files ?? [...new Set(policies.map((p) => p.location.file))];
  const snapshot: PolicySnapshot = {
    version: meta.version,
    hash: meta.hash,
    policies: compiled,
    rules,
    ruleCount: rules.length,
    index: yield* buildSnapshotIndex(compiled, rules),
    reads,
    createdFrom: [...files],
  };
  return { snapshot: freezeCompiled(snapshot) };
}

/** Compiles one policy, yielding after each rule; diagnostics are appended and null returned when any expression fails. */
function* compilePolicy(
  base: Environment,
  doc: AuthorizationPolicy,
  position: number,
  firstRuleOrdinal: number,
  diagnostics: Diagnostic[],
  cache: PolicyLoadCache | undefined,
): Steps<CompiledPolicy | null> {
  const before = diagnostics.length;
  const what = `policy "${doc.name}"`;
  const policyName = ownString(doc.name);

  // Variables first: the selector and the rules are checked in an environment declaring them.
  let env = base;
  let facts: ReadonlyMap<string, VariableFacts> | undefined;
  let variables: CompiledVariable[] = [];
  let rulesEnv: Environment | null = null;
  if (doc.variables.length > 0) {
    const v = compilePolicyVariables(base, doc.variables.map((x) => ({ name: x.name, expression: x.expression })),
      (n) => `${what} variable "${n}"`);
    if (!v.ok) {
      // The rules cannot be checked without the variables' types: report the variables' errors.
      diagnostics.push(...v.diagnostics);
      return null;
    }
    env = v.env;
    rulesEnv = v.env;
    facts = v.facts;
    const names = v.variables.map((x) => x.name);
    variables = v.variables.map((x) => ({
      name: x.name,
      expression: x.expr,
      env: x.expr.env,
      dependsOn: variableReads(x.expr.reads, names),
    }));
  }
  const names = variables.map((v) => v.name);

  let selector: CompiledCelExpression | null = null;
  if (doc.selector !== undefined) {
    const r = compileCached(cache, base, env, doc.selector, { expect: 'bool', what: `${what} selector`, variables: facts });
    if (r.ok) selector = r.expr.isConstantTrue ? null : r.expr;
    else diagnostics.push(...r.diagnostics);
  }
  const selectorKeys: readonly IndexKey[] = selector?.indexKeys ?? [];

  const ruleList: CompiledRule[] = [];
  for (let i = 0; i < doc.rules.length; i++) {
    const rule = doc.rules[i]!;
    const r = compileCached(cache, base, env, rule.when, { expect: 'bool', what: `${what} rule "${rule.name}" when`, variables: facts });
    yield;
    if (!r.ok) {
      diagnostics.push(...r.diagnostics);
      continue;
    }
    const ruleName = ownString(rule.name);
    const ref: RuleRef = { policy: policyName, rule: ruleName, action: doc.action, mode: doc.mode };
    ruleList.push({
      name: ruleName,
      policyIndex: position,
      indexInPolicy: i,
      ordinal: firstRuleOrdinal + i,
      when: r.expr,
      keys: [...r.expr.indexKeys, ...selectorKeys],
      variableReads: variableReads(r.expr.reads, names),
      ref,
      ...(rule.message !== undefined ? { message: rule.message } : {}),
      location: rule.location,
    });
  }
  if (diagnostics.length > before) return null;

  return {
    name: policyName,
    action: doc.action,
    mode: doc.mode,
    ordinal: doc.ordinal,
    position,
    selector,
    selectorKeys,
    selectorVariableReads: selector === null ? [] : variableReads(selector.reads, names),
    selectorRef: { policy: policyName, rule: SELECTOR_RULE_NAME, action: doc.action, mode: doc.mode },
    variables,
    rulesEnv,
    rules: ruleList,
    location: doc.location,
  };
}

/**
 * cel-js keeps the last expression it parsed (its module-wide lexer's and each environment's
 * parser's `input`). That text is a slice of its policy file, so it holds the whole file until the
 * next parse: after a rejected load, a file the gateway will never use. Parsing a constant in the
 * base environment replaces it there; a policy environment's parser is part of its snapshot.
 */
function releaseParserInput(base: Environment): void {
  base.parse('true');
}

/**
 * A copy of `s` that shares no memory with the text it was cut from. V8 keeps a substring of 13 or
 * more characters as a slice of its parent string, so a name parsed out of a policy file holds the
 * whole file alive. Policy and rule names outlive their snapshot: in the decision a tunnel keeps
 * for its lifetime, in the decision cache until the next CONNECT, in metric labels. Copied here,
 * a replaced set's files are freed with the set (bench/README.md, "Reload under load"). Prepending
 * a character and slicing it off forces V8 to flatten the pair into a new string first.
 */
function ownString(s: string): string {
  return (' ' + s).slice(1);
}

/**
 * compileExpression through the load cache. Only expressions checked in the base environment are
 * looked up or kept: a policy with variables has an environment of its own per load.
 */
function compileCached(
  cache: PolicyLoadCache | undefined,
  base: Environment,
  env: Environment,
  source: ExpressionSource,
  opts: CompileOptions,
): ExpressionCompileResult {
  if (cache === undefined || env !== base) return compileExpression(env, source, opts);
  const hit = cache.compiled(source, env, opts.expect);
  if (hit !== undefined) return { ok: true, expr: hit };
  const r = compileExpression(env, source, opts);
  if (r.ok) cache.remember(source, env, opts.expect, r.expr);
  return r;
}

/**
 * Positions of the variables an expression reads. The CEL layer folds a variable's own reads
 * into every expression that references it, so `reads` already holds the transitive closure; a
 * bare `variables` (the whole message) reads them all.
 */
function variableReads(reads: ReadonlySet<string>, names: readonly string[]): number[] {
  if (reads.has(VARIABLES_NAME)) return names.map((_, i) => i);
  const out: number[] = [];
  names.forEach((n, i) => {
    if (reads.has(`${VARIABLES_NAME}.${n}`)) out.push(i);
  });
  return out;
}

/**
 * Sorts rules into Istio's buckets and builds one index per bucket (equality, CIDR and
 * prefix/suffix keys: rule-index.ts), each frozen as it is built, yielding between buckets.
 */
function* buildSnapshotIndex(policies: readonly CompiledPolicy[], rules: readonly CompiledRule[]): Steps<SnapshotIndex> {
  const bucket = (action: string, dryRun: boolean): CompiledRule[] =>
    rules.filter((r) => {
      const p = policies[r.policyIndex]!;
      return p.action === action && (p.mode === 'DryRun') === dryRun;
    });
  const ruleKeys = (r: CompiledRule): readonly IndexKey[] => r.keys;
  const policyKeys = (p: CompiledPolicy): readonly IndexKey[] => p.selectorKeys;
  const policyEntries = (f: (p: CompiledPolicy) => boolean): CompiledPolicy[] => policies.filter(f);
  const rulesOf = function* (action: string, dryRun: boolean): Steps<RuleIndex> {
    return freezeCompiled(yield* buildIndexSteps(bucket(action, dryRun), ruleKeys));
  };
  const policiesOf = function* (f: (p: CompiledPolicy) => boolean): Steps<PolicyIndex> {
    return freezeCompiled(yield* buildIndexSteps(policyEntries(f), policyKeys));
  };
  return {
    deny: yield* rulesOf('DENY', false),
    allow: yield* rulesOf('ALLOW', false),
    audit: yield* rulesOf('AUDIT', false),
    dryRunDeny: yield* rulesOf('DENY', true),
    dryRunAllow: yield* rulesOf('ALLOW', true),
    dryRunAudit: yield* rulesOf('AUDIT', true),
    allowPolicies: yield* policiesOf((p) => p.action === 'ALLOW' && p.mode === 'Enforce'),
    dryRunAllowPolicies: yield* policiesOf((p) => p.action === 'ALLOW' && p.mode === 'DryRun'),
    dryRunPolicies: yield* policiesOf((p) => p.mode === 'DryRun'),
  };
}
