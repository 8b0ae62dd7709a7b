/**
 * Static analysis of a checked CEL AST: which attributes it reads (the decision cache keys on
 * them), which equality constraints it implies (the rule index), whether it is a constant, and
 * which constructs must be refused or validated at load (`matches()`, invalid literals).
 */
import type { ASTNode } from '@marcbachmann/cel-js';
import type { ErrorCode } from '../../errors.ts';
import { parseCidr } from '../../net/address.ts';
import { attributeAt, ATTRIBUTES, isMapFormat } from '../attribute-tables.ts';
import { INDEX_KINDS, keyKind, type IndexableAttribute, type IndexKey, type IndexKeyKind } from './compiled.ts';
import { NOW_TYPE, VARIABLES_NAME } from './environment.ts';
import { cidrLiteralError, ipLiteralError } from './functions-net.ts';
import { globLiteralError, re2LiteralError } from './functions-regex.ts';
import { spiffeLiteralError } from './functions-spiffe.ts';
import { childNodes, comprehensionOf } from './limits.ts';

/** What is already known about a policy variable an expression may reference. */
export interface VariableFacts {
  /** Attribute paths the variable's expression reads. */
  reads: ReadonlySet<string>;
  /** Constraints (index keys) implied when the variable (a bool) is true. */
  indexKeys: readonly IndexKey[];
}

export interface AnalyzeOptions {
  /** Facts about `variables.<name>`, so an expression inherits what its variables read. */
  variables?: ReadonlyMap<string, VariableFacts>;
}

/** A construct found in the AST that the compiler reports (refused, or an invalid literal). */
export interface AnalysisProblem {
  code: ErrorCode;
  message: string;
  /** Offset in the expression text. */
  offset: number;
}

export interface Analysis {
  reads: Set<string>;
  indexKeys: IndexKey[];
  isConstantTrue: boolean;
  isConstantFalse: boolean;
  usesMatches: boolean;
  problems: AnalysisProblem[];
}

/** Map-typed attributes: a constant key narrows a read to `<map>.<key>`. */
const MAP_ATTRIBUTES: ReadonlySet<string> = new Set(ATTRIBUTES.filter((a) => isMapFormat(a.format)).map((a) => a.path));

/** The message refusing CEL's built-in `matches()`. */
export const MATCHES_FORBIDDEN_MESSAGE =
  "matches() uses JavaScript's backtracking RegExp (catastrophic on inputs like ^(a+)+$, so one request could stall the gateway); use matchesRE2(), which takes RE2 syntax and runs in linear time";

function literalString(node: ASTNode | undefined): string | undefined {
  return node !== undefined && node.op === 'value' && typeof node.args === 'string' ? node.args : undefined;
}

/**
 * The attribute path a node denotes (`source.principal`, `request.headers.x-tenant`), or null when
 * it is not a plain attribute access. `bound` holds comprehension/bind variables in scope.
 */
export function attributePath(node: ASTNode, bound: ReadonlySet<string>): string[] | null {
  switch (node.op) {
    case 'id':
      return bound.has(node.args) ? null : [node.args];
    case '.': {
      const base = attributePath(node.args[0], bound);
      return base === null ? null : [...base, node.args[1]];
    }
    case '[]': {
      const base = attributePath(node.args[0], bound);
      const key = literalString(node.args[1]);
      if (base === null || key === undefined || !MAP_ATTRIBUTES.has(base.join('.'))) return null;
      return [...base, key];
    }
    default:
      return null;
  }
}

function bindName(node: ASTNode): { name: string; value: ASTNode; body: ASTNode } | null {
  if (node.op !== 'rcall' || node.args[0] !== 'bind') return null;
  const recv = node.args[1];
  const [v, value, body] = node.args[2];
  if (recv.op !== 'id' || recv.args !== 'cel' || v?.op !== 'id' || !value || !body) return null;
  return { name: v.args, value, body };
}

// Literal arguments validated at load: a typo in `cidr("10.0.0.0/33")` is a load error, not a
// runtime error that fails closed on every decision.
type LiteralCheck = (s: string) => string | null;
const CALL_LITERALS: Record<string, LiteralCheck> = {
  ip: ipLiteralError,
  cidr: cidrLiteralError,
  spiffe: spiffeLiteralError,
};
const METHOD_LITERALS: Record<string, LiteralCheck> = {
  containsIP: ipLiteralError,
  containsCIDR: cidrLiteralError,
  matchesRE2: re2LiteralError,
  globMatch: globLiteralError,
};

// The walk is module-level functions, not closures made per call: a 10,000-rule reload analyses
// every expression, and a closure per node is an allocation per node (under tsx, which the
// development and test runs use, esbuild's `keepNames` adds a defineProperty call to each; see
// engine.ts for the same rule on the hot path).
const NO_BOUND: ReadonlySet<string> = new Set();

/** Reports `now.<field>`: timestamps are registered without a field list, so the checker lets it through as dyn. */
function timestampField(node: ASTNode, field: string, out: Analysis): void {
  out.problems.push({
    code: 'WG_POLICY_CEL',
    offset: node.start,
    message: `a timestamp has no field "${field}"; use its methods, e.g. now.getHours("UTC"), now.getDayOfWeek()`,
  });
}

function visitNode(node: ASTNode, bound: ReadonlySet<string>, opts: AnalyzeOptions, out: Analysis): void {
  const path = attributePath(node, bound);
  if (path !== null) {
    if (path[0] === 'now' && path.length > 1) timestampField(node, path[1]!, out);
    addRead(path, out, opts);
    return;
  }
  switch (node.op) {
    case 'in': {
      // `"x-tenant" in request.headers` reads one header.
      const [key, coll] = node.args;
      const k = literalString(key);
      const p = attributePath(coll, bound);
      if (k !== undefined && p !== null && MAP_ATTRIBUTES.has(p.join('.'))) {
        addRead([...p, k], out, opts);
        return;
      }
      break;
    }
    case '.': {
      const obj = node.args[0] as ASTNode & { checkedType?: { name: string } };
      if (obj.checkedType?.name === NOW_TYPE) timestampField(node, node.args[1], out);
      break;
    }
    case 'call':
    case 'rcall': {
      const name = node.args[0];
      const isMethod = node.op === 'rcall';
      const args = node.op === 'call' ? node.args[1] : node.args[2];
      if (name === 'matches') {
        out.usesMatches = true;
        out.problems.push({ code: 'WG_POLICY_FORBIDDEN', offset: node.start, message: MATCHES_FORBIDDEN_MESSAGE });
      }
      const check = isMethod ? METHOD_LITERALS[name] : CALL_LITERALS[name];
      const lit = args.length === 1 ? literalString(args[0]) : undefined;
      if (check !== undefined && lit !== undefined) {
        const err = check(lit);
        if (err !== null) out.problems.push({ code: 'WG_POLICY_CEL', offset: args[0]!.start, message: `${name}(): ${err}` });
      }
      const comp = comprehensionOf(node);
      if (comp !== null) {
        visitNode(comp.receiver, bound, opts, out);
        const inner = new Set(bound);
        inner.add(comp.iterVar);
        for (const a of comp.body) visitNode(a, inner, opts, out);
        return;
      }
      const bind = bindName(node);
      if (bind !== null) {
        visitNode(bind.value, bound, opts, out);
        const inner = new Set(bound);
        inner.add(bind.name);
        visitNode(bind.body, inner, opts, out);
        return;
      }
      break;
    }
  }
  for (const c of childNodes(node)) visitNode(c, bound, opts, out);
}

function addRead(path: string[], out: Analysis, opts: AnalyzeOptions): void {
  out.reads.add(path.join('.'));
  if (path[0] === VARIABLES_NAME && path.length >= 2) {
    const facts = opts.variables?.get(path[1]!);
    if (facts) for (const r of facts.reads) out.reads.add(r);
  }
}

/** The operands of a chain of one boolean operator: `a && (b && c)` -> [a, b, c]. */
export function flatten(node: ASTNode, op: '&&' | '||', out: ASTNode[] = []): ASTNode[] {
  if (node.op === op) {
    flatten(node.args[0], op, out);
    flatten(node.args[1], op, out);
  } else {
    out.push(node);
  }
  return out;
}

function literalIndexValue(attribute: IndexableAttribute, node: ASTNode): string | number | undefined {
  if (node.op !== 'value') return undefined;
  if (attributeAt(attribute)?.format === 'port') {
    return typeof node.args === 'bigint' && node.args >= 0n && node.args <= 65535n ? Number(node.args) : undefined;
  }
  return typeof node.args === 'string' ? node.args : undefined;
}

/** The attribute `node` denotes when the catalogue lets the index key on it with `kind`. */
function indexableAttribute(node: ASTNode, kind: IndexKeyKind): IndexableAttribute | undefined {
  const p = attributePath(node, NO_BOUND);
  if (p === null) return undefined;
  const s = p.join('.');
  return INDEX_KINDS.get(s)?.has(kind) === true ? (s as IndexableAttribute) : undefined;
}

/** The key one equality-like node implies: `a == lit`, `lit == a`, `a in [lits]`. */
function equalityKey(node: ASTNode): IndexKey | undefined {
  if (node.op === '==') {
    const [l, r] = node.args;
    for (const [attrNode, litNode] of [
      [l, r],
      [r, l],
    ] as const) {
      const attribute = indexableAttribute(attrNode, 'equals');
      if (attribute === undefined) continue;
      const v = literalIndexValue(attribute, litNode);
      if (v !== undefined) return { attribute, values: [v] };
    }
    return undefined;
  }
  if (node.op === 'in') {
    const [l, r] = node.args;
    const attribute = indexableAttribute(l, 'equals');
    if (attribute === undefined || r.op !== 'list') return undefined;
    const values: (string | number)[] = [];
    for (const e of r.args) {
      const v = literalIndexValue(attribute, e);
      if (v === undefined) return undefined;
      values.push(v);
    }
    return { attribute, values: [...new Set(values)] };
  }
  return undefined;
}

/** `recv.name(arg)` with exactly one argument, as its parts; null for anything else. */
function methodCall(node: ASTNode): { name: string; receiver: ASTNode; arg: ASTNode } | null {
  if (node.op !== 'rcall') return null;
  const [name, receiver, args] = node.args;
  return args.length === 1 ? { name, receiver, arg: args[0]! } : null;
}

/** `name(arg)` with exactly one argument, its argument; undefined for anything else. */
function globalCallArg(node: ASTNode, name: string): ASTNode | undefined {
  if (node.op !== 'call' || node.args[0] !== name || node.args[1].length !== 1) return undefined;
  return node.args[1][0];
}

/**
 * The key a CIDR test implies: `cidr("lit").containsIP(attr)` or `cidr("lit").containsIP(ip(attr))`
 * for an address attribute. A false result proves the address is outside the block; an invalid
 * address makes both forms an error, and `""` makes only the `ip()` form one (functions-net.ts),
 * which `emptyIsError` records so the index never drops an entry whose conjunct would error.
 */
function cidrKey(node: ASTNode): IndexKey | undefined {
  const m = methodCall(node);
  if (m === null || m.name !== 'containsIP') return undefined;
  const lit = literalString(globalCallArg(m.receiver, 'cidr'));
  if (lit === undefined || parseCidr(lit) === null) return undefined;
  const inner = globalCallArg(m.arg, 'ip');
  const attribute = indexableAttribute(inner ?? m.arg, 'cidr');
  if (attribute === undefined) return undefined;
  return inner === undefined ? { kind: 'cidr', attribute, values: [lit] } : { kind: 'cidr', attribute, values: [lit], emptyIsError: true };
}

/**
 * The key a string test implies: `attr.startsWith("p")`, `attr.endsWith("s")`, and Istio-style
 * `attr.globMatch(...)` — `"p*"` is a prefix, `"*s"` a suffix, a pattern without `*` an equality
 * (functions-regex.ts globMatch). An empty literal (or the glob `"*"`) proves nothing.
 */
function affixKey(node: ASTNode): IndexKey | undefined {
  const m = methodCall(node);
  if (m === null) return undefined;
  const lit = literalString(m.arg);
  if (lit === undefined) return undefined;
  switch (m.name) {
    case 'startsWith': {
      const attribute = indexableAttribute(m.receiver, 'prefix');
      return attribute === undefined || lit === '' ? undefined : { kind: 'prefix', attribute, values: [lit] };
    }
    case 'endsWith': {
      const attribute = indexableAttribute(m.receiver, 'suffix');
      return attribute === undefined || lit === '' ? undefined : { kind: 'suffix', attribute, values: [lit] };
    }
    case 'globMatch': {
      if (lit === '*' || globLiteralError(lit) !== null) return undefined;
      if (lit.startsWith('*')) {
        const attribute = indexableAttribute(m.receiver, 'suffix');
        return attribute === undefined ? undefined : { kind: 'suffix', attribute, values: [lit.slice(1)] };
      }
      if (lit.endsWith('*')) {
        const attribute = indexableAttribute(m.receiver, 'prefix');
        return attribute === undefined || lit.length === 1 ? undefined : { kind: 'prefix', attribute, values: [lit.slice(0, -1)] };
      }
      // A pattern without `*` is an equality, on string attributes only (globMatch takes strings).
      const attribute = indexableAttribute(m.receiver, 'prefix') ?? indexableAttribute(m.receiver, 'suffix');
      return attribute === undefined ? undefined : { attribute, values: [lit] };
    }
    default:
      return undefined;
  }
}

/** The key one term implies: an equality, a CIDR test or a prefix/suffix test. */
function termKey(node: ASTNode): IndexKey | undefined {
  return equalityKey(node) ?? cidrKey(node) ?? affixKey(node);
}

function conjunctKeys(node: ASTNode, opts: AnalyzeOptions): IndexKey[] {
  const direct = termKey(node);
  if (direct) return [direct];
  if (node.op === '||') {
    // `a == "x" || a == "y"` constrains `a` to {x, y}; likewise an || of CIDR tests on one address,
    // or of prefix (suffix) tests on one string. Any other disjunct proves nothing.
    let first: IndexKey | undefined;
    let emptyIsError = false;
    const values: (string | number)[] = [];
    for (const d of flatten(node, '||')) {
      const k = termKey(d);
      if (k === undefined) return [];
      if (first !== undefined && (k.attribute !== first.attribute || keyKind(k) !== keyKind(first))) return [];
      first ??= k;
      values.push(...k.values);
      // `containsIP("") || ip("")...` is `false || error`: an error, so "" cannot rule it out.
      if (k.emptyIsError === true) emptyIsError = true;
    }
    if (first === undefined) return [];
    const merged: IndexKey = { ...first, values: [...new Set(values)] };
    return [emptyIsError ? { ...merged, emptyIsError: true } : merged];
  }
  // A bare `variables.x` conjunct implies whatever x implies.
  const p = attributePath(node, NO_BOUND);
  if (p !== null && p.length === 2 && p[0] === VARIABLES_NAME) {
    return [...(opts.variables?.get(p[1]!)?.indexKeys ?? [])];
  }
  return [];
}

/** Analyses a parsed (and ideally checked) AST. */
export function analyzeExpression(ast: ASTNode, opts: AnalyzeOptions = {}): Analysis {
  const out: Analysis = {
    reads: new Set(),
    indexKeys: [],
    isConstantTrue: ast.op === 'value' && ast.args === true,
    isConstantFalse: ast.op === 'value' && ast.args === false,
    usesMatches: false,
    problems: [],
  };
  visitNode(ast, NO_BOUND, opts, out);
  for (const c of flatten(ast, '&&')) out.indexKeys.push(...conjunctKeys(c, opts));
  return out;
}
