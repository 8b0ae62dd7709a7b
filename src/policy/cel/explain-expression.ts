/**
 * `policy eval --explain` and `POST /debug/explain`: shows why an expression came out as it did by
 * evaluating each sub-expression of its boolean structure against the same activation.
 *
 * Each sub-expression is serialised back to CEL (cel-js `serialize`, which is exact where the
 * parser's source ranges omit closing parentheses) and evaluated in the expression's own
 * environment, so a sub-expression's value is exactly what CEL computes for it. Explaining is a
 * debugging path: it re-parses, so it is far slower than evaluate() and never on the data path.
 * Sub-expressions inside a comprehension or `cel.bind` body depend on the loop variable and are
 * shown unevaluated.
 */
import { serialize, type ASTNode } from '@marcbachmann/cel-js';
import { flatten } from './analyze.ts';
import type { Activation } from './compiled.ts';
import type { CompiledCelExpression } from './compile-expression.ts';
import { CelCidr, CelIp } from './functions-net.ts';
import { CelSpiffeId } from './functions-spiffe.ts';
import { comprehensionOf } from './limits.ts';

export interface ExplainNode {
  /** The sub-expression as CEL text. */
  text: string;
  /** Its value rendered for humans (BigInt as number, addresses as strings), or the error it raised. */
  value: unknown | { error: string };
  /** True when the node was not evaluated (inside a comprehension or bind body). */
  skipped?: true;
  children: ExplainNode[];
}

const COMPARISONS: ReadonlySet<string> = new Set(['==', '!=', '<', '<=', '>', '>=', 'in']);

/** Renders a CEL value as plain JSON-friendly data. */
export function renderValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof CelIp || v instanceof CelCidr || v instanceof CelSpiffeId) return v.toString();
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? String(v) : v.toISOString();
  if (v instanceof Uint8Array) return `b"${Buffer.from(v).toString('hex')}" (hex)`;
  if (Array.isArray(v) || v instanceof Set) return [...v].map(renderValue);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), renderValue(x)]));
  const proto = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === null || typeof (v as object).constructor === 'function') {
    // Plain objects and our attribute classes (CelSource, ...): their own enumerable fields.
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as object)) out[k] = renderValue(x);
    return out;
  }
  return String(v);
}

function errorText(e: unknown): string {
  const err = e as { summary?: string; message?: string };
  return err.summary ?? err.message?.split('\n')[0] ?? String(e);
}

function isLiteral(n: ASTNode): boolean {
  return n.op === 'value' || (n.op === 'list' && n.args.every(isLiteral)) || (n.op === 'map' && n.args.every((e) => isLiteral(e[0]) && isLiteral(e[1])));
}

/** Explains `expr` against `activation` (the same activation the engine evaluated). */
export function explainExpression(expr: CompiledCelExpression, activation: Activation): ExplainNode {
  const env = expr.env;

  const evalText = (text: string): unknown => {
    try {
      const p = env.parse(text);
      const c = p.check();
      if (!c.valid) return { error: errorText(c.error) };
      return renderValue(p(activation));
    } catch (e) {
      return { error: errorText(e) };
    }
  };

  const skipped = (node: ASTNode): ExplainNode => ({ text: serialize(node), value: undefined, skipped: true, children: [] });

  const explainable = (nodes: ASTNode[]): ASTNode[] => nodes.filter((n) => !isLiteral(n));

  const build = (node: ASTNode): ExplainNode => {
    const text = serialize(node);
    const value = evalText(text);
    let children: ExplainNode[] = [];
    switch (node.op) {
      case '&&':
      case '||':
        children = flatten(node, node.op).map(build);
        break;
      case '!_':
        children = [build(node.args)];
        break;
      case '?:':
        children = node.args.map(build);
        break;
      case 'call':
        children = explainable(node.args[1]).map(build);
        break;
      case 'rcall': {
        const comp = comprehensionOf(node);
        if (comp !== null) {
          children = [...explainable([comp.receiver]).map(build), ...comp.body.map(skipped)];
        } else if (node.args[0] === 'bind' && node.args[1].op === 'id' && node.args[1].args === 'cel') {
          const [, value, body] = node.args[2];
          children = [...(value ? explainable([value]).map(build) : []), ...(body ? [skipped(body)] : [])];
        } else {
          children = explainable([node.args[1], ...node.args[2]]).map(build);
        }
        break;
      }
      default:
        if (COMPARISONS.has(node.op)) children = explainable(node.args as ASTNode[]).map(build);
    }
    return { text, value, children };
  };

  return build(expr.ast);
}

/** Renders an explanation as an indented tree, one sub-expression per line. */
export function formatExplanation(node: ExplainNode, indent = ''): string {
  const v = node.skipped
    ? '(not evaluated: inside a comprehension)'
    : node.value !== null && typeof node.value === 'object' && 'error' in (node.value as object)
      ? `error: ${(node.value as { error: string }).error}`
      : JSON.stringify(node.value);
  const line = `${indent}${node.text}  =>  ${v}`;
  return [line, ...node.children.map((c) => formatExplanation(c, indent + '  '))].join('\n');
}
