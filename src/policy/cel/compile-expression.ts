/**
 * Turns one policy expression (a `when`, `selector` or variable) into a CompiledExpression: bound,
 * parsed, refused constructs reported, type-checked, literals validated, analysed. Every problem
 * becomes a Diagnostic at the expression's own file:line:col (docs/design.md §3 "Files": every error names
 * file:line:col and the field path; a typo is a load error, never a runtime surprise).
 */
import { ParseError, type ASTNode, type Environment } from '@marcbachmann/cel-js';
import type { Diagnostic, ErrorCode } from '../../errors.ts';
import type { ExpressionSource } from '../model.ts';
import { analyzeExpression, type Analysis, type VariableFacts } from './analyze.ts';
import type { Activation, CompiledExpression, IndexKey } from './compiled.ts';
import {
  ATTRIBUTE_SCHEMA,
  attributeNames,
  createPolicyEnvironment,
  type PolicyVariableType,
} from './environment.ts';
import { checkExpressionLength, checkStructuralLimits, explainParserLimit } from './limits.ts';
import { suggest } from '../../util/suggest.ts';

/** A CompiledExpression plus what explain and lint need: the checked AST and its environment. */
export interface CompiledCelExpression extends CompiledExpression {
  readonly ast: ASTNode;
  readonly env: Environment;
  readonly usesMatches: boolean;
}

export interface CompileOptions {
  /** `bool` for `when`/`selector`/boolean variables; `any` for variables of any type. */
  expect: 'bool' | 'any';
  /** What the expression is, for messages: `rule "frontend" when`, `selector`, `variable "prod"`. */
  what: string;
  /** Facts about the policy's variables, so references inherit their reads and index keys. */
  variables?: ReadonlyMap<string, VariableFacts>;
}

export type CompileResult = { ok: true; expr: CompiledCelExpression } | { ok: false; diagnostics: Diagnostic[] };

function diagnostic(source: ExpressionSource, code: ErrorCode, offset: number, message: string): Diagnostic {
  const off = Math.max(0, Math.min(offset, source.text.length));
  const { line, col } = source.positionAt(off);
  return { code, message, file: source.location.file, line, col, path: source.location.path, severity: 'error' };
}

const policyVariableNames = new WeakMap<Environment, readonly string[]>();

function fieldsOfType(env: Environment, typeName: string | undefined): readonly string[] {
  if (typeName === undefined) return [];
  for (const s of Object.values(ATTRIBUTE_SCHEMA)) if (s.type === typeName) return Object.keys(s.fields);
  if (typeName === 'waygate.PolicyVariables') return policyVariableNames.get(env) ?? [];
  return [];
}

function typeErrorMessage(env: Environment, err: Error & { code?: string; summary?: string; node?: any }): string {
  const summary = err.summary ?? err.message.split('\n')[0] ?? String(err);
  if (err.code === 'unknown_variable') {
    const name = String(err.node?.args ?? '');
    if (policyVariableNames.get(env)?.includes(name)) return `${summary} (did you mean "variables.${name}"?)`;
    const s = suggest(name, attributeNames());
    return `${summary}${s ? ` (did you mean "${s}"?)` : ''}; the attributes are ${attributeNames().join(', ')}`;
  }
  if (err.code === 'no_such_key' && err.node?.op === '.') {
    const field = String(err.node.args[1]);
    const objType: string | undefined = err.node.args[0]?.checkedType?.name;
    const fields = fieldsOfType(env, objType);
    const s = suggest(field, fields);
    const owner = err.node.args[0]?.op === 'id' ? String(err.node.args[0].args) : objType ?? 'value';
    const known = fields.length ? `; ${owner} has ${fields.join(', ')}` : '';
    return `${owner} has no field "${field}"${s ? ` (did you mean "${s}"?)` : ''}${known}`;
  }
  if (err.code === 'no_such_overload' && /int (==|!=|<|<=|>|>=) string|string (==|!=|<|<=|>|>=) int/.test(summary)) {
    return `${summary}: ports are ints, compare them with a number (destination.port == 8080), not a string`;
  }
  if (err.code === 'no_matching_overload') {
    return `${summary} (an unknown function, or a known one called with the wrong argument types)`;
  }
  return summary;
}

/**
 * A frozen copy of an index key, built from one object literal per shape. Not `{ ...k }`: once the
 * spread's inline cache goes megamorphic, V8 gives every copy a map of its own, and a 10,000-rule
 * snapshot then held ~20,000 maps, each access to a key (index build, lint, explain) a
 * megamorphic lookup.
 */
function frozenKey(k: IndexKey): IndexKey {
  const values = Object.freeze([...k.values]);
  if (k.kind === undefined) return Object.freeze({ attribute: k.attribute, values });
  if (k.emptyIsError === true) return Object.freeze({ kind: k.kind, attribute: k.attribute, values, emptyIsError: true });
  return Object.freeze({ kind: k.kind, attribute: k.attribute, values });
}

/** The refused constructs an analysis found, as diagnostics. */
function refused(a: Analysis, source: ExpressionSource, what: string): Diagnostic[] {
  return a.problems.filter((p) => p.code === 'WG_POLICY_FORBIDDEN').map((p) => diagnostic(source, p.code, p.offset, `${what}: ${p.message}`));
}

/**
 * Compiles one expression against `env`. Never throws for a bad expression: every problem is a
 * diagnostic located in the policy file.
 */
export function compileExpression(env: Environment, source: ExpressionSource, opts: CompileOptions): CompileResult {
  const text = source.text;
  const lengthViolation = checkExpressionLength(text);
  if (lengthViolation) {
    return { ok: false, diagnostics: [diagnostic(source, 'WG_POLICY_LIMIT', 0, `${opts.what}: ${lengthViolation.message}`)] };
  }

  let parsed: ReturnType<Environment['parse']>;
  try {
    parsed = env.parse(text);
  } catch (e) {
    const err = e as ParseError;
    const offset = err.range?.start ?? 0;
    if (err instanceof ParseError && err.code === 'limit_exceeded') {
      return { ok: false, diagnostics: [diagnostic(source, 'WG_POLICY_LIMIT', offset, `${opts.what}: ${explainParserLimit(err.summary)}`)] };
    }
    const summary = err instanceof ParseError ? err.summary : String((e as Error)?.message ?? e);
    return { ok: false, diagnostics: [diagnostic(source, 'WG_POLICY_CEL', offset, `${opts.what}: syntax error: ${summary}`)] };
  }
  const ast = parsed.ast;

  const diagnostics: Diagnostic[] = [];
  for (const v of checkStructuralLimits(ast)) diagnostics.push(diagnostic(source, 'WG_POLICY_LIMIT', v.offset, `${opts.what}: ${v.message}`));

  // Refused constructs are reported before type errors: they are what the author must change
  // first. The analysis runs once, after the check when it passes (the timestamp-field check needs
  // the checked types); the refused-construct scan reads no types, so it may run on an unchecked AST.
  if (diagnostics.length > 0) {
    return { ok: false, diagnostics: [...diagnostics, ...refused(analyzeExpression(ast, { variables: opts.variables }), source, opts.what)] };
  }

  const checked = parsed.check();
  if (!checked.valid) {
    const forbidden = refused(analyzeExpression(ast, { variables: opts.variables }), source, opts.what);
    if (forbidden.length > 0) return { ok: false, diagnostics: forbidden };
    const err = checked.error as Error & { range?: { start: number }; code?: string; summary?: string };
    return {
      ok: false,
      diagnostics: [diagnostic(source, 'WG_POLICY_CEL', err.range?.start ?? 0, `${opts.what}: ${typeErrorMessage(env, err)}`)],
    };
  }
  const analysis = analyzeExpression(ast, { variables: opts.variables });
  const forbidden = refused(analysis, source, opts.what);
  if (forbidden.length > 0) return { ok: false, diagnostics: forbidden };

  const type = checked.type ?? 'dyn';
  if (opts.expect === 'bool' && type !== 'bool') {
    diagnostics.push(
      diagnostic(source, 'WG_POLICY_CEL', 0, `${opts.what} must be a bool expression, but its type is ${type}${type === 'dyn' ? ' (compare it with a value, e.g. `== "x"`)' : ''}`),
    );
  }
  for (const p of analysis.problems) diagnostics.push(diagnostic(source, p.code, p.offset, `${opts.what}: ${p.message}`));
  if (diagnostics.length > 0) return { ok: false, diagnostics };

  const evaluate = parsed as unknown as (activation: Activation) => unknown;
  const expr: CompiledCelExpression = Object.freeze({
    source,
    type,
    evaluate,
    reads: analysis.reads,
    indexKeys: Object.freeze(analysis.indexKeys.map(frozenKey)),
    isConstantTrue: analysis.isConstantTrue,
    isConstantFalse: analysis.isConstantFalse,
    ast,
    env,
    usesMatches: analysis.usesMatches,
  });
  return { ok: true, expr };
}

/** One policy variable to compile, in declaration order. */
export interface VariableSource {
  name: string;
  expression: ExpressionSource;
}

export type CompileVariablesResult =
  | {
      ok: true;
      /** The environment for the policy's selector and rules (declares every variable). */
      env: Environment;
      variables: { name: string; expr: CompiledCelExpression }[];
      /** Facts to pass as CompileOptions.variables when compiling the selector and rules. */
      facts: Map<string, VariableFacts>;
    }
  | { ok: false; diagnostics: Diagnostic[] };

/**
 * Compiles a policy's variables in order; each may use the ones declared before it, and its type
 * is whatever its expression checks to. Returns the environment for the rest of the policy.
 */
export function compilePolicyVariables(
  base: Environment,
  variables: readonly VariableSource[],
  what: (name: string) => string = (n) => `variable "${n}"`,
): CompileVariablesResult {
  const declared: PolicyVariableType[] = [];
  const compiled: { name: string; expr: CompiledCelExpression }[] = [];
  const facts = new Map<string, VariableFacts>();
  const diagnostics: Diagnostic[] = [];
  let env = makePolicyEnvironment(base, declared);
  for (const v of variables) {
    if (declared.some((d) => d.name === v.name)) {
      diagnostics.push(diagnostic(v.expression, 'WG_POLICY_SCHEMA', 0, `${what(v.name)}: declared twice`));
      continue;
    }
    const r = compileExpression(env, v.expression, { expect: 'any', what: what(v.name), variables: facts });
    if (!r.ok) {
      diagnostics.push(...r.diagnostics);
      continue;
    }
    compiled.push({ name: v.name, expr: r.expr });
    facts.set(v.name, { reads: r.expr.reads, indexKeys: r.expr.type === 'bool' ? r.expr.indexKeys : [] });
    declared.push({ name: v.name, type: r.expr.type });
    env = makePolicyEnvironment(base, declared);
  }
  if (diagnostics.length > 0) return { ok: false, diagnostics };
  return { ok: true, env, variables: compiled, facts };
}

/** createPolicyEnvironment, remembering the variable names for "did you mean" suggestions. */
export function makePolicyEnvironment(base: Environment, declared: readonly PolicyVariableType[]): Environment {
  const env = createPolicyEnvironment(base, declared);
  policyVariableNames.set(env, declared.map((d) => d.name));
  return env;
}
