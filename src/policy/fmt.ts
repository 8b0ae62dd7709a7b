/**
 * `waygate policy fmt`: one canonical layout for policy files, so diffs in review show meaning,
 * not whitespace. Comments are kept (the `yaml` Document API carries them on nodes), keys take the
 * order of DOCUMENT_FIELDS with unknown keys after the known ones, indentation is two spaces,
 * documents are separated by `---`, the file ends with one newline.
 *
 * CEL expressions that were written across several lines become literal block scalars (`|-`) that
 * keep their line breaks; single-line expressions stay on one line (no re-folding at 80 columns).
 * The output is checked before it is returned: same data (modulo CEL-insignificant whitespace in
 * expressions) and the same comments, or the formatter refuses. `fmt(fmt(x)) === fmt(x)`.
 */
import {
  Lexer,
  isMap,
  isScalar,
  isSeq,
  parseAllDocuments,
  type Document,
  type Node,
  type Pair,
  type Scalar,
  type YAMLMap,
} from 'yaml';
import { TextLines } from '../util/text-lines.ts';
import { WaygateError } from '../errors.ts';
import { DOCUMENT_FIELDS, INPUT_GROUP_FIELDS, scalarOffsetMap } from './documents.ts';

type Order = readonly string[];

/** Which key order applies where, per kind; `*` stands for every item of a list. */
const AUTHORIZATION_POLICY_ORDERS: ReadonlyArray<[string, Order]> = [
  ['spec', DOCUMENT_FIELDS.authorizationPolicySpec],
  ['spec.variables.*', DOCUMENT_FIELDS.variable],
  ['spec.rules.*', DOCUMENT_FIELDS.rule],
];
const POLICY_TEST_ORDERS: ReadonlyArray<[string, Order]> = [
  ['spec', DOCUMENT_FIELDS.policyTestSpec],
  ['spec.cases.*', DOCUMENT_FIELDS.testCase],
  ['spec.cases.*.input', DOCUMENT_FIELDS.input],
  ...[...INPUT_GROUP_FIELDS].map(([group, fields]): [string, Order] => [`spec.cases.*.input.${group}`, fields]),
  ['spec.cases.*.expect', DOCUMENT_FIELDS.expect],
];
/** Fields holding CEL, per kind. */
const EXPRESSION_PATHS = ['spec.selector', 'spec.variables.*.expression', 'spec.rules.*.when'];

/**
 * Formats policy YAML text canonically, keeping every comment.
 * @param file only used to name the position of a syntax error.
 * @throws WaygateError `WG_POLICY_YAML` on a YAML syntax error (`file:line:col: message`), or if
 *   formatting would change the data or drop a comment (a bug: the input is left alone).
 */
export function formatPolicyText(text: string, file = '<input>'): string {
  const lines = new TextLines(text);
  const stream = parseAllDocuments(text, { keepSourceTokens: true, uniqueKeys: false });
  const docs = Array.from(stream);
  // A stream without documents (only comments) comes back as an EmptyStream carrying them.
  const streamInfo = 'empty' in stream ? stream : null;
  for (const doc of [...docs, ...(streamInfo ? [streamInfo] : [])]) {
    const e = doc.errors[0];
    if (e !== undefined) {
      const { line, col } = lines.linePos(e.pos[0]);
      const message = e.message.replace(/ at line \d+, column \d+[\s\S]*$/, '');
      throw new WaygateError('WG_POLICY_YAML', `${file}:${line}:${col}: ${message} (not formatted)`);
    }
  }
  const parts: string[] = [];
  if (streamInfo !== null && streamInfo.comment) parts.push(printComment(streamInfo.comment));
  for (const doc of docs) {
    const empty = emptyDocumentComments(doc);
    if (empty !== null) {
      if (empty !== '') parts.push(empty);
      continue;
    }
    canonicalise(doc, text);
    // `---` and `...` markers are re-created by the join below, never taken from the source.
    doc.directives.docStart = null;
    doc.directives.docEnd = false;
    const out = doc.toString({ indent: 2, indentSeq: true, lineWidth: 0, minContentWidth: 0 });
    // Empty documents print as blank lines around their comments: trim those, drop nothing else.
    const trimmed = out.replace(/^(?:[ \t]*\n)+/, '').replace(/\n(?:[ \t]*\n)+$/, '\n');
    if (trimmed.trim() === '') continue;
    parts.push(trimmed.endsWith('\n') ? trimmed : trimmed + '\n');
  }
  const result = parts.join('---\n');
  verifyNothingLost(text, result, file);
  return result;
}

/**
 * A document without content (only comments, or nothing after `---`) prints its comments; `yaml`
 * would print them after an empty value, shifted by a space. Null when the document has content.
 */
function emptyDocumentComments(doc: Document): string | null {
  const c = doc.contents;
  const isEmpty = c === null || (isScalar(c) && c.value === null && c.range?.[0] === c.range?.[1]);
  if (!isEmpty) return null;
  const blocks = [doc.commentBefore, isScalar(c) ? c.commentBefore : null, isScalar(c) ? c.comment : null, doc.comment];
  return printComment(blocks.filter((b): b is string => typeof b === 'string').join('\n'));
}

/** Prints a `yaml` comment string (lines without their `#`; '' for a blank line) as YAML. */
function printComment(comment: string): string {
  const printed = comment.split('\n').map((l) => (l === '' ? '' : `#${l}`)).join('\n').replace(/^\n+|\n+$/g, '');
  return printed === '' ? '' : printed + '\n';
}

function canonicalise(doc: Document, text: string): void {
  const root = doc.contents;
  if (!isMap(root)) return;
  // A comment above the first key is the file's (or document's) header, e.g. the
  // `# yaml-language-server: $schema=...` modeline: it stays on top whatever key moves there.
  const first = root.items[0];
  if (first && isScalar(first.key) && first.key.commentBefore) {
    doc.commentBefore = doc.commentBefore ? `${doc.commentBefore}\n${first.key.commentBefore}` : first.key.commentBefore;
    first.key.commentBefore = undefined;
  }
  reorder(root, DOCUMENT_FIELDS.document);
  const kind = root.get('kind');
  const orders: Array<[string, Order]> = [['metadata', DOCUMENT_FIELDS.metadata]];
  if (kind === 'AuthorizationPolicy') orders.push(...AUTHORIZATION_POLICY_ORDERS);
  if (kind === 'PolicyTest') orders.push(...POLICY_TEST_ORDERS);
  for (const [path, order] of orders) {
    for (const node of select(root, path.split('.'))) if (isMap(node)) reorder(node, order);
  }
  if (kind === 'AuthorizationPolicy') {
    for (const path of EXPRESSION_PATHS) {
      for (const node of select(root, path.split('.'))) if (isScalar(node)) expressionStyle(node, text);
    }
  }
}

/** The nodes at a dotted path; `*` selects every list item. */
function select(node: unknown, segments: string[]): Node[] {
  if (segments.length === 0) return node ? [node as Node] : [];
  const [head, ...rest] = segments;
  if (head === '*') return isSeq(node) ? node.items.flatMap((item) => select(item, rest)) : [];
  if (!isMap(node)) return [];
  const pair = node.items.find((p) => isScalar(p.key) && p.key.value === head);
  return pair ? select(pair.value, rest) : [];
}

/** Stable sort: known keys in `order`, then unknown keys in their original order. */
function reorder(map: YAMLMap, order: Order): void {
  const rank = (p: Pair): number => {
    const k = isScalar(p.key) ? p.key.value : undefined;
    const i = typeof k === 'string' ? order.indexOf(k) : -1;
    return i === -1 ? order.length : i;
  };
  const items = map.items as Pair[];
  const sorted = items.map((p, i) => ({ p, i })).sort((a, b) => rank(a.p) - rank(b.p) || a.i - b.i).map((x) => x.p);
  // A blank line before the first key would print as a blank line after `key:`; keep blank lines
  // only between items.
  sorted.forEach((p, i) => {
    if (i === 0 && isScalar(p.key)) p.key.spaceBefore = false;
  });
  map.items = sorted;
}

/**
 * Multi-line CEL becomes a `|-` literal block keeping its line breaks. Folded styles (plain,
 * quoted, `>`) turned breaks into spaces; putting the breaks back is safe only where that space
 * is CEL white space between tokens, not inside a string literal or a `//` comment (which a line
 * break would end). Otherwise the style is left alone. Single-line expressions keep their style.
 */
function expressionStyle(node: Scalar, text: string): void {
  if (typeof node.value !== 'string') return;
  const value = node.value;
  const isBlock = node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED';
  const map = scalarOffsetMap(text, node, value);
  if (!value.includes('\n') && map.folds.length === 0 && !isBlock) return;
  let next = value;
  if (map.folds.length > 0) {
    const opaque = celOpaqueRanges(value);
    if (!map.exact || opaque === null || map.folds.some((i) => opaque.some(([a, b]) => i >= a && i < b))) return;
    // `folds` index UTF-16 units, so rebuild unit by unit (not by code point).
    const units = value.split('');
    for (const i of map.folds) units[i] = '\n';
    next = units.join('');
  }
  // Trailing line breaks are never significant at the end of a CEL expression.
  node.value = next.replace(/\s+$/, '');
  node.type = 'BLOCK_LITERAL';
}

/**
 * Refuses output that lost something: the documents must hold the same data (expressions compared
 * with whitespace collapsed, since only CEL-insignificant whitespace may change) and the same
 * comments, in the same order.
 */
function verifyNothingLost(before: string, after: string, file: string): void {
  const data = (t: string): string =>
    JSON.stringify(
      Array.from(parseAllDocuments(t, { uniqueKeys: false }))
        .map((d) => d.toJS({ maxAliasCount: -1 }))
        .filter((v) => v !== null && v !== undefined),
      (_k, v: unknown) => {
        if (typeof v === 'string') return v.replace(/\s+/g, ' ').trim();
        // Key order is what fmt changes on purpose: compare mappings with sorted keys.
        if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
          const entries = v instanceof Map ? [...v.entries()].map(([k, x]) => [String(k), x] as const) : Object.entries(v);
          return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
        }
        return v;
      },
    );
  const comments = (t: string): string[] => {
    const out: string[] = [];
    for (const tok of new Lexer().lex(t)) if (tok.startsWith('#')) out.push(tok.trimEnd());
    return out;
  };
  if (data(before) !== data(after) || comments(before).join('\n') !== comments(after).join('\n')) {
    throw new WaygateError('WG_POLICY_YAML', `${file}:1:1: formatting would change content; file left as it is`);
  }
}

/**
 * Index ranges [start, end) of CEL string/bytes literals and `//` comments in `src` (CEL spec,
 * "Syntax": quotes `'` `"` and their triple forms, `r`/`R` raw prefix without escapes, comments
 * to end of line). Null when a literal is unterminated: then nothing is safe to move.
 */
export function celOpaqueRanges(src: string): Array<[number, number]> | null {
  const out: Array<[number, number]> = [];
  let i = 0;
  while (i < src.length) {
    const ch = src[i]!;
    if (ch === '/' && src[i + 1] === '/') {
      const nl = src.indexOf('\n', i);
      const end = nl === -1 ? src.length : nl;
      out.push([i, end]);
      i = end;
      continue;
    }
    if (ch !== '"' && ch !== "'") {
      i++;
      continue;
    }
    // A raw prefix may precede the quote directly (`r"..."`, `br'...'`, `Rb"..."`).
    let p = i - 1;
    let raw = false;
    while (p >= 0 && /[rRbB]/.test(src[p]!) && i - p <= 2) {
      if (src[p] === 'r' || src[p] === 'R') raw = true;
      p--;
    }
    if (p >= 0 && /[A-Za-z0-9_]/.test(src[p]!)) raw = false; // part of an identifier, not a prefix
    const triple = src.startsWith(ch.repeat(3), i);
    const close = triple ? ch.repeat(3) : ch;
    let j = i + close.length;
    let end = -1;
    while (j < src.length) {
      if (!raw && src[j] === '\\') { j += 2; continue; }
      if (src.startsWith(close, j)) { end = j + close.length; break; }
      if (!triple && src[j] === '\n') return null;
      j++;
    }
    if (end === -1) return null;
    out.push([i, end]);
    i = end;
  }
  return out;
}
