/**
 * The strict YAML walker every hand-written file format of waygate shares: the gateway config
 * (src/config/load.ts, code `WG_CONFIG`) and the mesh file (src/discovery/mesh-file.ts, `WG_MESH`).
 * Parse, don't validate: a node becomes a typed value or `undefined`, and every problem is pushed
 * to the context's diagnostics at `file:line:col` with its field path, so one pass reports all of
 * them. Unknown fields are errors (a typo such as `listn:` must never be silently ignored and leave
 * a default in force).
 *
 * One implementation, typed per format: `yamlWalker<C>()` returns the combinators for a context
 * type `C` (the config adds the directory relative paths resolve against), so a validator that
 * reads a format's extra context still composes with the shared ones.
 */
import { isMap, isScalar, isSeq, parseAllDocuments, type Node as YamlNode } from 'yaml';
import type { Diagnostic, ErrorCode } from '../errors.ts';
import { TextLines } from '../util/text-lines.ts';

export type { Node as YamlNode } from 'yaml';

/** What a walk needs: where diagnostics go and how they are positioned and coded. */
export interface WalkContext {
  /** The code of every diagnostic of this format (`WG_CONFIG`, `WG_MESH`). */
  readonly code: ErrorCode;
  /** Names the file in diagnostics. */
  readonly file: string;
  readonly lines: TextLines;
  readonly diags: Diagnostic[];
}

/** A validator: the value of `node` (at field path `at`), or undefined after reporting why not. */
export type V<T, C extends WalkContext = WalkContext> = (node: YamlNode | null, at: string, cx: C) => T | undefined;

/** A fresh context over `text`. */
export function walkContext(code: ErrorCode, file: string, text: string): WalkContext {
  return { code, file, lines: new TextLines(text), diags: [] };
}

/** Records an error at `node` (its start; 1:1 without one). Returns undefined, for `return report(...)`. */
export function report(cx: WalkContext, node: YamlNode | null | undefined, at: string, message: string): undefined {
  const offset = node?.range?.[0] ?? 0;
  const pos = cx.lines.linePos(offset);
  cx.diags.push({
    code: cx.code, message, file: cx.file, line: Math.max(pos.line, 1), col: pos.col, path: at, severity: 'error',
  });
  return undefined;
}

/** The value of a scalar node; undefined for anything else. */
export function scalarValue(node: YamlNode | null | undefined): unknown {
  return isScalar(node) ? node.value : undefined;
}

/** A node in words, for "expected X, got Y". */
export function describe(node: YamlNode | null | undefined): string {
  if (node === null || node === undefined) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) return node.value === null ? 'null' : `${typeof node.value} ${JSON.stringify(node.value)}`;
  return 'an unsupported node';
}

/**
 * The one document of `text`, or undefined after reporting why not: YAML syntax errors, no
 * document at all (an empty file: for a watched file that is a torn write, never "nothing
 * configured"), or more than one (`oneDocument` says what a file of this format holds).
 */
export function singleDocument(text: string, cx: WalkContext, oneDocument: string): YamlNode | undefined {
  const docs = parseAllDocuments(text, { prettyErrors: false, uniqueKeys: false });
  const list = Array.isArray(docs) ? docs : [];
  const before = cx.diags.length;
  for (const doc of list) {
    for (const e of doc.errors) {
      const pos = cx.lines.linePos(e.pos[0]);
      cx.diags.push({
        code: cx.code, message: e.message.split('\n')[0]!, file: cx.file, line: Math.max(pos.line, 1), col: pos.col, path: '', severity: 'error',
      });
    }
  }
  if (cx.diags.length > before) return undefined;
  const nonEmpty = list.filter((d) => d.contents !== null);
  if (nonEmpty.length !== 1) {
    const second = nonEmpty[1]?.contents as YamlNode | undefined;
    report(cx, second ?? null, '', nonEmpty.length === 0 ? 'the file holds no document' : oneDocument);
    return undefined;
  }
  return nonEmpty[0]!.contents as YamlNode;
}

/** The combinators, typed for a context `C`. */
export interface Walker<C extends WalkContext> {
  /** A string, optionally checked (`check` returns the problem, or null). */
  str(check?: (s: string) => string | null): V<string, C>;
  /** An integer in [min, max]. */
  int(min: number, max: number): V<number, C>;
  bool: V<boolean, C>;
  /** One of the listed scalars. */
  oneOf<T extends string | number>(values: readonly T[]): V<T, C>;
  /** A list, each item validated; items that fail are left out (and reported). */
  list<T>(item: V<T, C>): V<T[], C>;
  /** A strict mapping: every key must be declared; returns only the keys present and valid. */
  object<T extends object>(fields: { [K in keyof T]-?: V<T[K], C> }): V<Partial<T>, C>;
}

const str = (check?: (s: string) => string | null): V<string> => (node, at, cx) => {
  const v = scalarValue(node);
  if (typeof v !== 'string') return report(cx, node, at, `expected a string, got ${describe(node)}`);
  const problem = check?.(v);
  if (problem) return report(cx, node, at, problem);
  return v;
};

const int = (min: number, max: number): V<number> => (node, at, cx) => {
  const v = scalarValue(node);
  if (typeof v !== 'number' || !Number.isInteger(v)) return report(cx, node, at, `expected an integer, got ${describe(node)}`);
  if (v < min || v > max) return report(cx, node, at, `${v} is out of range ${min}-${max}`);
  return v;
};

const bool: V<boolean> = (node, at, cx) => {
  const v = scalarValue(node);
  if (typeof v !== 'boolean') return report(cx, node, at, `expected true or false, got ${describe(node)}`);
  return v;
};

function oneOf<T extends string | number>(values: readonly T[]): V<T> {
  return (node, at, cx) => {
    const v = scalarValue(node);
    if (!values.includes(v as T)) return report(cx, node, at, `must be one of ${values.join(', ')}; got ${describe(node)}`);
    return v as T;
  };
}

function list<T, C extends WalkContext>(item: V<T, C>): V<T[], C> {
  return (node, at, cx) => {
    if (!isSeq(node)) return report(cx, node, at, `expected a list, got ${describe(node)}`);
    const out: T[] = [];
    node.items.forEach((child, i) => {
      const v = item(child as YamlNode, `${at}[${i}]`, cx);
      if (v !== undefined) out.push(v);
    });
    return out;
  };
}

function object<T extends object, C extends WalkContext>(fields: { [K in keyof T]-?: V<T[K], C> }): V<Partial<T>, C> {
  return (node, at, cx) => {
    if (!isMap(node)) return report(cx, node, at, `expected a mapping, got ${describe(node)}`);
    const out: Partial<T> = {};
    const seen = new Set<string>();
    for (const pair of node.items) {
      const keyNode = pair.key as YamlNode | null;
      const key = scalarValue(keyNode);
      const keyPath = at ? `${at}.${String(key)}` : String(key);
      if (typeof key !== 'string') {
        report(cx, keyNode, at, `keys must be strings, got ${describe(keyNode)}`);
        continue;
      }
      if (seen.has(key)) {
        report(cx, keyNode, keyPath, `duplicate field "${key}"`);
        continue;
      }
      seen.add(key);
      if (!Object.prototype.hasOwnProperty.call(fields, key)) {
        const known = Object.keys(fields).join(', ');
        report(cx, keyNode, keyPath, `unknown field "${key}" (known: ${known})`);
        continue;
      }
      const v = (fields as Record<string, V<unknown, C>>)[key]!(pair.value as YamlNode | null, keyPath, cx);
      if (v !== undefined) (out as Record<string, unknown>)[key] = v;
    }
    return out;
  };
}

/**
 * The combinators for context type `C`. The same functions for every `C` (none reads more than
 * {@link WalkContext}); the type parameter lets a format's own validators, which read its extra
 * context, sit inside `object` and `list`.
 */
export function yamlWalker<C extends WalkContext = WalkContext>(): Walker<C> {
  return { str, int, bool, oneOf, list, object };
}
