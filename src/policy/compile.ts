/**
 * The policy compiler: typed documents in, one immutable PolicySnapshot out — or every diagnostic
 * found, and no snapshot (all or nothing: DESIGN §3 "A policy set that fails to load is rejected
 * whole"). Every selector, variable and rule is compiled and type-checked here, so nothing is
 * parsed or checked on the decision path.
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
import { buildIndex } from './rule-index.ts';
import {
  deepFreeze,
  SELECTOR_RULE_NAME,
  type CompiledPolicy,
  type CompiledRule,
  type CompiledVariable,
  type PolicySnapshot,
  type SnapshotIndex,
} from './snapshot.ts';

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
    const p = compilePolicy(base, doc, position, rules.length, diagnostics, meta.cache);
    if (p === null) continue;
    compiled.push(p);
    rules.push(...p.rules);
    if (p.selector !== null) for (const r of p.selector.reads) reads.add(r);
    for (const v of p.variables) for (const r of v.expression.reads) reads.add(r);
    for (const r of p.rules) for (const x of r.when.reads) reads.add(x);
  }
  if (diagnostics.length > 0) return { diagnostics };

  for (const r of [...reads]) if (r === VARIABLES_NAME || r.startsWith(`${VARIABLES_NAME}.`)) reads.delete(r);

  const files = meta.files ?? [...new Set(policies.map((p) => p.location.file))];
  const snapshot: PolicySnapshot = {
    version: meta.version,
    hash: meta.hash,
    policies: compiled,
    rules,
    ruleCount: rules.length,
    index: buildSnapshotIndex(compiled, rules),
    reads,
    createdFrom: [...files],
  };
  return { snapshot: deepFreeze(snapshot) };
}

/** Compiles one policy; diagnostics are appended and null returned when any expression fails. */
function compilePolicy(
  base: Environment,
  doc: AuthorizationPolicy,
  position: number,
  firstRuleOrdinal: number,
  diagnostics: Diagnostic[],
  cache: PolicyLoadCache | undefined,
): CompiledPolicy | null {
  const before = diagnostics.length;
  const what = `policy "${doc.name}"`;

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
  doc.rules.forEach((rule, i) => {
    const r = compileCached(cache, base, env, rule.when, { expect: 'bool', what: `${what} rule "${rule.name}" when`, variables: facts });
    if (!r.ok) {
      diagnostics.push(...r.diagnostics);
      return;
    }
    const ref: RuleRef = { policy: doc.name, rule: rule.name, action: doc.action, mode: doc.mode };
    ruleList.push({
      name: rule.name,
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
  });
  if (diagnostics.length > before) return null;

  return {
    name: doc.name,
    action: doc.action,
    mode: doc.mode,
    ordinal: doc.ordinal,
    position,
    selector,
    selectorKeys,
    selectorVariableReads: selector === null ? [] : variableReads(selector.reads, names),
    selectorRef: { policy: doc.name, rule: SELECTOR_RULE_NAME, action: doc.action, mode: doc.mode },
    variables,
    rulesEnv,
    rules: ruleList,
    location: doc.location,
  };
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
 * prefix/suffix keys: rule-index.ts).
 */
function buildSnapshotIndex(policies: readonly CompiledPolicy[], rules: readonly CompiledRule[]): SnapshotIndex {
  const bucket = (action: string, dryRun: boolean): CompiledRule[] =>
    rules.filter((r) => {
      const p = policies[r.policyIndex]!;
      return p.action === action && (p.mode === 'DryRun') === dryRun;
    });
  const ruleKeys = (r: CompiledRule): readonly IndexKey[] => r.keys;
  const policyKeys = (p: CompiledPolicy): readonly IndexKey[] => p.selectorKeys;
  const policyEntries = (f: (p: CompiledPolicy) => boolean): CompiledPolicy[] => policies.filter(f);
  return {
    deny: buildIndex(bucket('DENY', false), ruleKeys),
    allow: buildIndex(bucket('ALLOW', false), ruleKeys),
    audit: buildIndex(bucket('AUDIT', false), ruleKeys),
    dryRunDeny: buildIndex(bucket('DENY', true), ruleKeys),
    dryRunAllow: buildIndex(bucket('ALLOW', true), ruleKeys),
    dryRunAudit: buildIndex(bucket('AUDIT', true), ruleKeys),
    allowPolicies: buildIndex(policyEntries((p) => p.action === 'ALLOW' && p.mode === 'Enforce'), policyKeys),
    dryRunAllowPolicies: buildIndex(policyEntries((p) => p.action === 'ALLOW' && p.mode === 'DryRun'), policyKeys),
    dryRunPolicies: buildIndex(policyEntries((p) => p.mode === 'DryRun'), policyKeys),
  };
}
