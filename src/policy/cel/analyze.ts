/**
 * Static analysis of a checked CEL AST: which attributes it reads (the decision cache keys on
 * them), which equality constraints it implies (the rule index), whether it is a constant, and
 * which constructs must be refused or validated at load (`matches()`, invalid literals).
 */
import type { ASTNode } from '@marcbachmann/cel-js';
import type { ErrorCode } from '../../errors.ts';
import { INDEXABLE_ATTRIBUTES, type IndexableAttribute, type IndexKey } from './compiled.ts';
import { NOW_TYPE, VARIABLES_NAME } from './environment.ts';
import { cidrLiteralError, ipLiteralError } from './functions-net.ts';
import { globLiteralError, re2LiteralError } from './functions-regex.ts';
import { spiffeLiteralError } from './functions-spiffe.ts';
import { childNodes, comprehensionOf } from './limits.ts';

/** What is already known about a policy variable an expression may reference. */
export interface VariableFacts {
  /** Attribute paths the variable's expression reads. */
  reads: ReadonlySet<string>;
  /** Equality constraints implied when the variable (a bool) is true. */
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
const MAP_ATTRIBUTES: ReadonlySet<string> = new Set(['request.headers', 'request.baggage']);
const INDEXABLE: ReadonlySet<string> = new Set(INDEXABLE_ATTRIBUTES);

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

function collectReadsAndProblems(ast: ASTNode, opts: AnalyzeOptions, out: Analysis): void {
  // Timestamps are registered without a field list, so the checker lets `now.hour` through as dyn.
  const timestampField = (node: ASTNode, field: string): void => {
    out.problems.push({
      code: 'WG_POLICY_CEL',
      offset: node.start,
      message: `a timestamp has no field "${field}"; use its methods, e.g. now.getHours("UTC"), now.getDayOfWeek()`,
    });
  };
  const visit = (node: ASTNode, bound: ReadonlySet<string>): void => {
    const path = attributePath(node, bound);
    if (path !== null) {
      if (path[0] === 'now' && path.length > 1) timestampField(node, path[1]!);
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
        if (obj.checkedType?.name === NOW_TYPE) timestampField(node, node.args[1]);
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
          visit(comp.receiver, bound);
          const inner = new Set(bound);
          inner.add(comp.iterVar);
          for (const a of comp.body) visit(a, inner);
          return;
        }
        const bind = bindName(node);
        if (bind !== null) {
          visit(bind.value, bound);
          const inner = new Set(bound);
          inner.add(bind.name);
          visit(bind.body, inner);
          return;
        }
        break;
      }
    }
    for (const c of childNodes(node)) visit(c, bound);
  };
  visit(ast, new Set());
}

function addRead(path: string[], out: Analysis, opts: AnalyzeOptions): void {
  out.reads.add(path.join('.'));
  if (path[0] === VARIABLES_NAME && path.length >= 2) {
    const facts = opts.variables?.get(path[1]!);
    if (facts) for (const r of facts.reads) out.reads.add(r);
  }
}

function flatten(node: ASTNode, op: '&&' | '||', out: ASTNode[] = []): ASTNode[] {
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
  if (attribute === 'destination.port') {
    return typeof node.args === 'bigint' && node.args >= 0n && node.args <= 65535n ? Number(node.args) : undefined;
  }
  return typeof node.args === 'string' ? node.args : undefined;
}

function indexableAttribute(node: ASTNode): IndexableAttribute | undefined {
  const p = attributePath(node, new Set());
  if (p === null) return undefined;
  const s = p.join('.');
  return INDEXABLE.has(s) ? (s as IndexableAttribute) : undefined;
}

/** The key one equality-like node implies: `a == lit`, `lit == a`, `a in [lits]`. */
function equalityKey(node: ASTNode): IndexKey | undefined {
  if (node.op === '==') {
    const [l, r] = node.args;
    for (const [attrNode, litNode] of [
      [l, r],
      [r, l],
    ] as const) {
      const attribute = indexableAttribute(attrNode);
      if (attribute === undefined) continue;
      const v = literalIndexValue(attribute, litNode);
      if (v !== undefined) return { attribute, values: [v] };
    }
    return undefined;
  }
  if (node.op === 'in') {
    const [l, r] = node.args;
    const attribute = indexableAttribute(l);
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

function conjunctKeys(node: ASTNode, opts: AnalyzeOptions): IndexKey[] {
  const direct = equalityKey(node);
  if (direct) return [direct];
  if (node.op === '||') {
    // `a == "x" || a == "y"` constrains `a` to {x, y}; any other disjunct proves nothing.
    let attribute: IndexableAttribute | undefined;
    const values: (string | number)[] = [];
    for (const d of flatten(node, '||')) {
      const k = equalityKey(d);
      if (k === undefined || (attribute !== undefined && k.attribute !== attribute)) return [];
      attribute = k.attribute;
      values.push(...k.values);
    }
    return attribute === undefined ? [] : [{ attribute, values: [...new Set(values)] }];
  }
  // A bare `variables.x` conjunct implies whatever x implies.
  const p = attributePath(node, new Set());
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
  collectReadsAndProblems(ast, opts, out);
  for (const c of flatten(ast, '&&')) out.indexKeys.push(...conjunctKeys(c, opts));
  return out;
}
