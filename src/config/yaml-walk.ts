/**
 * The strict YAML walker every hand-written file format of waygate shares: the gateway config
 * (src/config/load.ts, code `WG_CONFIG`), the mesh file (src/discovery/mesh-file.ts, `WG_MESH`)
 * and the policy documents, AuthorizationPolicy and PolicyTest (src/policy/documents.ts,
 * `WG_POLICY_*`).
 * Parse, don't validate: a node becomes a typed value or `undefined`, and every problem is pushed
 * to the context's diagnostics at `file:line:col` with its field path, so one pass reports all of
 * them. Unknown fields are errors (a typo such as `listn:` must never be silently ignored and leave
 * a default in force).
 *
 * One implementation, typed per format: `yamlWalker<C>()` returns the combinators for a context
 * type `C` (the config adds the directory relative paths resolve against), so a validator that
 * reads a format's extra context still composes with the shared ones. Besides the combinators,
 * the node-level readers (`mapFields`, `seqItems`, `reportAt`, `refuseIndirection`) serve a format
 * whose schema is written as code over nodes (the policy documents keep each field's node, for
 * locations and CEL positions).
 *
 * The walk is one; its wording is per format (`WalkWording`): the config and mesh file say
 * "expected a list, got null", the policy documents "expected a list, found null" and add
 * did-you-mean hints. Both wordings are kept because each format's diagnostics are what its users
 * and tests already read (test/fixtures/policy-docs); unifying them is a visible change of its own.
 */
import { isAlias, isMap, isScalar, isSeq, parseAllDocuments, type Node as YamlNode } from 'yaml';
import type { Diagnostic, ErrorCode } from '../errors.ts';
import { suggest } from '../util/suggest.ts';
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
  /** How this format words its diagnostics; the config's wording ({@link CONFIG_WORDING}) when absent. */
  readonly wording?: WalkWording;
}

/**
 * How a format words the walker's diagnostics and spells a field's path. Only words differ: what
 * is reported, where, and at which path is the walker's.
 */
export interface WalkWording {
  /** A node in words, for "expected X, got Y". */
  describe(node: YamlNode | null | undefined): string;
  /** The path of field `key` of the node at `at` (`at` is '' at the root). */
  field(at: string, key: string): string;
  expectedMapping(node: YamlNode | null): string;
  expectedList(node: YamlNode | null): string;
  expectedString(node: YamlNode | null): string;
  expectedInteger(node: YamlNode | null, min: number, max: number): string;
  outOfRange(value: number, min: number, max: number): string;
  notOneOf(values: readonly (string | number)[], node: YamlNode | null): string;
  nonStringKey(key: YamlNode | null): string;
  unknownField(key: string, known: readonly string[]): string;
  /** `first` is where the field was given first. */
  duplicateField(key: string, first: { line: number; col: number }): string;
  missingField(key: string): string;
  emptyList(): string;
}

/** The config's and the mesh file's wording. */
export const CONFIG_WORDING: WalkWording = {
  describe,
  field: (at, key) => (at ? `${at}.${key}` : key),
  expectedMapping: (node) => `expected a mapping, got ${describe(node)}`,
  expectedList: (node) => `expected a list, got ${describe(node)}`,
  expectedString: (node) => `expected a string, got ${describe(node)}`,
  expectedInteger: (node) => `expected an integer, got ${describe(node)}`,
  outOfRange: (v, min, max) => `${v} is out of range ${min}-${max}`,
  notOneOf: (values, node) => `must be one of ${values.join(', ')}; got ${describe(node)}`,
  nonStringKey: (key) => `keys must be strings, got ${describe(key)}`,
  unknownField: (key, known) => `unknown field "${key}" (known: ${known.join(', ')})`,
  duplicateField: (key) => `duplicate field "${key}"`,
  missingField: (key) => `missing required field "${key}"`,
  emptyList: () => 'must not be an empty list',
};

/** A policy document's node in words: strings are quoted (cut at 40 characters), numbers and booleans named. */
function describePolicyNode(node: YamlNode | null | undefined): string {
  if (node === null || node === undefined) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isAlias(node)) return 'an alias';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'null';
    if (typeof v === 'string') return `a string "${v.length > 40 ? v.slice(0, 40) + '...' : v}"`;
    if (typeof v === 'number') return `the number ${v}`;
    if (typeof v === 'boolean') return `the boolean ${v}`;
    return `a ${typeof v}`;
  }
  return 'an unsupported value';
}

/** Appends a field to a path; keys that are not identifier-like are bracketed and quoted (`labels["app.kubernetes.io/name"]`). */
function policyField(at: string, key: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)) return at === '' ? key : `${at}.${key}`;
  return `${at}[${JSON.stringify(key)}]`;
}

/** The policy documents' wording: "found", value quoting hints and did-you-mean for field names. */
export const POLICY_WORDING: WalkWording = {
  describe: describePolicyNode,
  field: policyField,
  expectedMapping: (node) => `expected a mapping, found ${describePolicyNode(node)}`,
  expectedList: (node) => `expected a list, found ${describePolicyNode(node)}`,
  expectedString: (node) => `expected a string, found ${describePolicyNode(node)}${isScalar(node) && node.value !== null ? ' (quote it)' : ''}`,
  expectedInteger: (node, min, max) => `expected an integer ${min}..${max}, found ${describePolicyNode(node)}`,
  outOfRange: (v, min, max) => `${v} is out of range ${min}..${max}`,
  notOneOf: (values, node) => {
    const shown = isScalar(node) && node.value !== null ? `"${String(node.value)}"` : describePolicyNode(node);
    return `invalid value ${shown}; allowed values: ${values.join(', ')}`;
  },
  nonStringKey: (key) => `field names must be strings, found ${describePolicyNode(key)}`,
  unknownField: (key, known) => {
    // Within two edits, whatever the name's length: field names are short.
    const hint = suggest(key, known, 2);
    return `unknown field "${key}"${hint ? ` (did you mean "${hint}"?)` : ''}; allowed fields: ${known.join(', ')}`;
  },
  duplicateField: (key, first) => `field "${key}" is given twice; first at line ${first.line}:${first.col}`,
  missingField: (key) => `missing required field "${key}"`,
  emptyList: () => 'must not be an empty list',
};

const wordingOf = (cx: WalkContext): WalkWording => cx.wording ?? CONFIG_WORDING;

/** A validator: the value of `node` (at field path `at`), or undefined after reporting why not. */
export type V<T, C extends WalkContext = WalkContext> = (node: YamlNode | null, at: string, cx: C) => T | undefined;

/** A fresh context over `text`, worded as the config unless `wording` says otherwise. */
export function walkContext(code: ErrorCode, file: string, text: string, wording?: WalkWording): WalkContext {
  const cx: WalkContext = { code, file, lines: new TextLines(text), diags: [] };
  return wording === undefined ? cx : { ...cx, wording };
}

/**
 * Records a diagnostic at source offset `offset`, with the context's code unless `code` names
 * another. Returns undefined, for `return reportAt(...)`.
 */
export function reportAt(
  cx: WalkContext, offset: number, at: string, message: string, code: ErrorCode = cx.code, severity: 'error' | 'warning' = 'error',
): undefined {
  const pos = cx.lines.linePos(offset);
  cx.diags.push({ code, message, file: cx.file, line: Math.max(pos.line, 1), col: pos.col, path: at, severity });
  return undefined;
}

/** The source offset of `node` (its start; 0 without one). */
export function nodeOffset(node: YamlNode | null | undefined): number {
  return node?.range?.[0] ?? 0;
}

/** Records an error at `node` (its start; 1:1 without one). Returns undefined, for `return report(...)`. */
export function report(cx: WalkContext, node: YamlNode | null | undefined, at: string, message: string, code?: ErrorCode): undefined {
  return reportAt(cx, nodeOffset(node), at, message, code);
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

/** One field of a mapping, as `mapFields` keeps it. */
export interface FieldNodes {
  readonly key: YamlNode;
  readonly value: YamlNode | null;
}

/** What `forEachField` checks besides known names. */
export interface FieldRules {
  /** Reported as missing (at the mapping) when absent. */
  readonly required?: readonly string[];
  /**
   * Plain `<<` keys are passed over: the format refuses merge keys with {@link refuseIndirection},
   * which reports them once, as what they are.
   */
  readonly mergeKeysRefused?: boolean;
}

/**
 * Walks a strict mapping: every key must be a string, declared in `known` and given once; each
 * valid one is handed to `visit` in file order (so a value's problems are reported in reading
 * order with its key's). Returns false (after reporting) when `node` is not a mapping.
 */
export function forEachField<C extends WalkContext>(
  node: YamlNode | null, at: string, cx: C, known: readonly string[],
  visit: (key: string, keyNode: YamlNode, value: YamlNode | null, keyPath: string) => void,
  rules: FieldRules = {},
): boolean {
  const w = wordingOf(cx);
  if (!isMap(node)) {
    report(cx, node, at, w.expectedMapping(node));
    return false;
  }
  const seen = new Map<string, YamlNode>();
  for (const pair of node.items) {
    const keyNode = pair.key as YamlNode | null;
    if (!isScalar(keyNode) || typeof keyNode.value !== 'string') {
      report(cx, keyNode, at, w.nonStringKey(keyNode));
      continue;
    }
    const key = keyNode.value;
    // Only a plain `<<` is a merge key (YAML 1.1 merge type), refused by refuseIndirection; a quoted "<<" is an ordinary key.
    if (rules.mergeKeysRefused === true && key === '<<' && keyNode.type === 'PLAIN') continue;
    const keyPath = w.field(at, key);
    if (!known.includes(key)) {
      report(cx, keyNode, keyPath, w.unknownField(key, known));
      continue;
    }
    const first = seen.get(key);
    if (first !== undefined) {
      report(cx, keyNode, keyPath, w.duplicateField(key, cx.lines.linePos(nodeOffset(first))));
      continue;
    }
    seen.set(key, keyNode);
    visit(key, keyNode, (pair.value ?? null) as YamlNode | null, keyPath);
  }
  for (const key of rules.required ?? []) {
    if (!seen.has(key)) report(cx, node, w.field(at, key), w.missingField(key));
  }
  return true;
}

/** The valid fields of a strict mapping (see {@link forEachField}), by name; undefined when `node` is not a mapping. */
export function mapFields<C extends WalkContext>(
  node: YamlNode | null, at: string, cx: C, known: readonly string[], rules: FieldRules = {},
): Map<string, FieldNodes> | undefined {
  const out = new Map<string, FieldNodes>();
  const ok = forEachField(node, at, cx, known, (key, keyNode, value) => { out.set(key, { key: keyNode, value }); }, rules);
  return ok ? out : undefined;
}

/** The items of a list node; undefined (after reporting) when it is not a list, or is empty and `nonEmpty`. */
export function seqItems<C extends WalkContext>(node: YamlNode | null, at: string, cx: C, nonEmpty = false): YamlNode[] | undefined {
  if (!isSeq(node)) return report(cx, node, at, wordingOf(cx).expectedList(node));
  if (nonEmpty && node.items.length === 0) return report(cx, node, at, wordingOf(cx).emptyList());
  return node.items as YamlNode[];
}

/**
 * Refuses anchors, aliases, merge keys and explicit tags anywhere under `root`, each reported with
 * `code` as "<what> is not allowed: `because`". A format refuses them when one line silently
 * changing values far away would defeat review (the policy documents).
 */
export function refuseIndirection(cx: WalkContext, text: string, root: unknown, code: ErrorCode, because: string): void {
  refuseIn({ cx, text, code, because }, root, []);
}

interface RefuseWalk { cx: WalkContext; text: string; code: ErrorCode; because: string }

// This walk visits every node of every document, so it makes no closure per node (tsx compiles
// with esbuild's keepNames, which turns each into a defineProperty call: 28 ms of a 10,000-rule
// policy load) and builds a node's path only when reporting it.
function refuseIn(r: RefuseWalk, node: unknown, segments: (string | number)[]): void {
  if (isAlias(node)) {
    refuseNode(r, `YAML alias *${node.source}`, nodeOffset(node), segments);
    return;
  }
  if (!isScalar(node) && !isMap(node) && !isSeq(node)) return;
  // Anchors and tags precede the node they decorate: point at them, not at the value.
  if (node.anchor) refuseNode(r, `YAML anchor &${node.anchor}`, markerBefore(r.text, node, `&${node.anchor}`), segments);
  if (node.tag) {
    const at = tagStart(r.text, node);
    // As written (`!!str`), not as resolved (`tag:yaml.org,2002:str`): what the author can find.
    refuseNode(r, `YAML tag ${/^\S+/.exec(r.text.slice(at))?.[0] ?? node.tag}`, at, segments);
  }
  if (isSeq(node)) {
    const items = node.items;
    for (let i = 0; i < items.length; i++) {
      segments.push(i);
      refuseIn(r, items[i], segments);
      segments.pop();
    }
  } else if (isMap(node)) {
    for (const pair of node.items) {
      const key = pair.key;
      // YAML 1.1 merge keys (`<<: *base`) splice another mapping in; refuse them even unresolved.
      if (isScalar(key) && key.value === '<<' && key.type === 'PLAIN') refuseNode(r, 'YAML merge key <<', nodeOffset(key as YamlNode), segments);
      refuseIn(r, key, segments);
      segments.push(isScalar(key) ? String(key.value) : '?');
      refuseIn(r, pair.value, segments);
      segments.pop();
    }
  }
}

function refuseNode(r: RefuseWalk, what: string, offset: number, segments: readonly (string | number)[]): void {
  const field = wordingOf(r.cx).field;
  const path = segments.reduce<string>((p, s) => (typeof s === 'number' ? `${p}[${s}]` : field(p, s)), '');
  reportAt(r.cx, offset, path, `${what} is not allowed: ${r.because}`, r.code);
}

/**
 * Where the tag before `node` starts (YAML 1.2 §6.8.2): the last `!` before the node, then back
 * over the rest of its handle, so `!!str` and `!e!x` point at their first `!`, not their last.
 */
function tagStart(text: string, node: YamlNode): number {
  let i = markerBefore(text, node, '!');
  while (i > 0 && /[!A-Za-z0-9-]/.test(text[i - 1]!)) i--;
  return i;
}

function markerBefore(text: string, node: YamlNode, marker: string): number {
  const start = nodeOffset(node);
  const i = text.lastIndexOf(marker, start);
  return i === -1 ? start : i;
}

const str = (check?: (s: string) => string | null): V<string> => (node, at, cx) => {
  const v = scalarValue(node);
  if (typeof v !== 'string') return report(cx, node, at, wordingOf(cx).expectedString(node));
  const problem = check?.(v);
  if (problem) return report(cx, node, at, problem);
  return v;
};

const int = (min: number, max: number): V<number> => (node, at, cx) => {
  const v = scalarValue(node);
  if (typeof v !== 'number' || !Number.isInteger(v)) return report(cx, node, at, wordingOf(cx).expectedInteger(node, min, max));
  if (v < min || v > max) return report(cx, node, at, wordingOf(cx).outOfRange(v, min, max));
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
    if (!values.includes(v as T)) return report(cx, node, at, wordingOf(cx).notOneOf(values, node));
    return v as T;
  };
}

function list<T, C extends WalkContext>(item: V<T, C>): V<T[], C> {
  return (node, at, cx) => {
    const items = seqItems(node, at, cx);
    if (items === undefined) return undefined;
    const out: T[] = [];
    items.forEach((child, i) => {
      const v = item(child, `${at}[${i}]`, cx);
      if (v !== undefined) out.push(v);
    });
    return out;
  };
}

function object<T extends object, C extends WalkContext>(fields: { [K in keyof T]-?: V<T[K], C> }): V<Partial<T>, C> {
  const known = Object.keys(fields);
  const validators = fields as Record<string, V<unknown, C>>;
  return (node, at, cx) => {
    const out: Partial<T> = {};
    const ok = forEachField(node, at, cx, known, (key, _keyNode, value, keyPath) => {
      const v = validators[key]!(value, keyPath, cx);
      if (v !== undefined) (out as Record<string, unknown>)[key] = v;
    });
    return ok ? out : undefined;
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
