/**
 * The policy YAML front-end (docs/design.md §3): text in, frozen typed documents (model.ts) out, plus every
 * problem found, each located to `file:line:col` and a field path (`spec.rules[2].when`).
 *
 * "Parse, don't validate": nothing unknown survives. Unknown fields, missing fields, wrong types,
 * bad enum values and duplicate names are all collected (never stop at the first) so an author
 * fixes a file in one pass. YAML anchors, aliases, merge keys and explicit tags are refused: they
 * let one line silently change rules far away, which defeats review of security policy.
 */
import { isIP } from 'node:net';
import { Composer, Parser, isMap, isScalar, type Node, type Scalar, type YAMLMap } from 'yaml';
import {
  POLICY_WORDING, mapFields, nodeOffset, refuseIndirection, report, reportAt, seqItems, walkContext, yamlWalker,
  type FieldNodes, type WalkContext,
} from '../config/yaml-walk.ts';
import type { Diagnostic } from '../errors.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
import { deepFreeze } from '../util/deep-freeze.ts';
import type { TextLines } from '../util/text-lines.ts';
import { foreignPolicyMessage } from './foreign.ts';
import { GROUPS, inputAttributes, TOP_LEVEL, type Attribute } from './attribute-tables.ts';
import type { GroupName } from './context.ts';
import type { DefaultAction, EngineReason, PolicyAction, PolicyMode } from './decision.ts';
import {
  API_VERSION,
  type AuthorizationPolicy,
  type ExpressionSource,
  type Location,
  type PolicyDocument,
  type PolicyRule,
  type PolicyTest,
  type PolicyTestCase,
  type PolicyTestExpect,
  type PolicyTestInput,
  type PolicyVariable,
} from './model.ts';

/** The kinds this front-end accepts under {@link API_VERSION}. */
export const POLICY_KINDS = ['AuthorizationPolicy', 'PolicyTest'] as const;

/** The capitalised key of a group's input fields in DOCUMENT_FIELDS: `inputSource` for `source`. */
type InputGroupKey = `input${Capitalize<GroupName>}`;
const inputGroupKey = (group: string): string => `input${group[0]!.toUpperCase()}${group.slice(1)}`;

/** The fields of each attribute group in a PolicyTest `input`: its attributes but the derived ones (attributes.ts). */
export const INPUT_GROUP_FIELDS: ReadonlyMap<string, readonly string[]> = new Map(
  GROUPS.map((g) => [g.name, Object.freeze(inputAttributes(g).map((a) => a.name))]),
);

/**
 * Every field accepted, per object, in canonical order. The formatter orders keys by these lists
 * and a test keeps the JSON Schemas under `schema/` equal to them. The `input` lists come from the
 * attribute catalogue: `input` (its groups and top-level attributes), `inputSource`, ...
 */
export const DOCUMENT_FIELDS = {
  document: ['apiVersion', 'kind', 'metadata', 'spec'],
  metadata: ['name', 'labels', 'annotations'],
  authorizationPolicySpec: ['action', 'mode', 'selector', 'variables', 'rules'],
  variable: ['name', 'expression'],
  rule: ['name', 'when', 'message'],
  policyTestSpec: ['defaultAction', 'cases'],
  testCase: ['name', 'input', 'expect'],
  input: Object.freeze([...GROUPS.map((g) => g.name), ...TOP_LEVEL.map((a) => a.name)]) as readonly string[],
  ...(Object.fromEntries([...INPUT_GROUP_FIELDS].map(([g, fields]) => [inputGroupKey(g), fields])) as Record<InputGroupKey, readonly string[]>),
  expect: ['decision', 'policy', 'rule', 'reason', 'audit', 'dryRun'],
} as const satisfies Record<string, readonly string[]>;

export const POLICY_ACTIONS: readonly PolicyAction[] = ['ALLOW', 'DENY', 'AUDIT'];
export const POLICY_MODES: readonly PolicyMode[] = ['Enforce', 'DryRun'];
export const DEFAULT_ACTIONS: readonly DefaultAction[] = ['ALLOW', 'DENY'];
/** The reasons a policy test can expect: only the pure engine's (the others are the transport's). */
export const ENGINE_REASONS: readonly EngineReason[] = [
  'allowed', 'default_allow', 'explicit_deny', 'no_allow_match', 'default_deny', 'eval_error',
];

/** Kubernetes object names (DNS-1123 subdomain), RFC 1123 labels joined by dots, at most 253. */
export const POLICY_NAME_PATTERN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
export const POLICY_NAME_MAX_LENGTH = 253;
/** Rule names appear in audit records and metrics: identifier-like, dashes allowed. */
export const RULE_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_-]*$/;
/** Variables are read as `variables.<name>` in CEL, so a name must be a CEL identifier. */
export const VARIABLE_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** CEL spec "Syntax": reserved words cannot be identifiers, so `variables.in` would not parse. */
const CEL_RESERVED = new Set([
  'false', 'in', 'null', 'true', 'as', 'break', 'const', 'continue', 'else', 'for', 'function', 'if',
  'import', 'let', 'loop', 'package', 'namespace', 'return', 'var', 'void', 'while',
]);
/** RFC 3339 §5.6 date-time (the `T` may be a space or lower case, as the RFC's note allows). */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
/** W3C Trace Context: lower-case header names; HTTP/2 (RFC 9113 §8.2.1) forbids upper case. */
export const LOWER_CASE_HEADER = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

/** The result of parsing one file: documents without errors, and every diagnostic found. */
export interface ParsedPolicyDocuments {
  documents: PolicyDocument[];
  diagnostics: Diagnostic[];
}

/**
 * Parses every document of one policy file.
 *
 * Empty documents (only comments, or nothing between `---` markers) are skipped, with two
 * exceptions that are errors (`WG_POLICY_EMPTY`) because they are what a torn write looks like:
 * a file with no document at all (`: > deny.yaml`, or a writer that has not written yet), and a
 * file whose last document is an empty one opened by `---` (a write cut at a document boundary).
 * Read as "no policies here", either would silently drop the policies the file held, and a missing
 * DENY loosens enforcement (docs/operating.md, "Updating policies safely"). A document with any
 * error is left out of `documents`; the caller must reject the whole set when `diagnostics` holds an
 * error. Returned documents are deeply frozen. `ordinal` of the i-th returned document is
 * `firstOrdinal + i`, so a loader passes `firstOrdinal + documents.length` to the next file.
 *
 * Locations: a document's `location` is its `metadata.name` value (path `metadata.name`), the line
 * that names it; a rule's / variable's / case's is its list item; an expression's is its scalar.
 */
export function parsePolicyDocuments(text: string, file: string, firstOrdinal = 0): ParsedPolicyDocuments {
  const steps = parsePolicyDocumentsSteps(text, file, firstOrdinal);
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * `parsePolicyDocuments` as steps (steps.ts): yields after each YAML document, so the loader can
 * give the event loop a turn inside a large file (bench/README.md, "Reload under load"). The yaml
 * library's parser and composer are generators already (parseAllDocuments is Array.from of them).
 */
export function* parsePolicyDocumentsSteps(text: string, file: string, firstOrdinal = 0): Generator<void, ParsedPolicyDocuments, undefined> {
  const stream = new Composer({ keepSourceTokens: true, uniqueKeys: false, prettyErrors: false }).compose(new Parser().parse(text));
  const cx = policyWalk(text, file);
  const documents: PolicyDocument[] = [];
  let nonEmpty = 0;
  // One document of look-ahead: whether a document is the file's last matters below.
  let ahead = stream.next();
  while (ahead.done !== true) {
    const doc = ahead.value;
    ahead = stream.next();
    const last = ahead.done === true;
    yield;
    if (doc.errors.length > 0) {
      // A broken YAML tree cannot be validated meaningfully: report where the syntax broke.
      for (const e of doc.errors) reportAt(cx, e.pos[0], '', yamlMessage(e.message), 'WG_POLICY_YAML');
      nonEmpty++;
      continue;
    }
    for (const w of doc.warnings) {
      if (w.code === 'TAG_RESOLVE_FAILED') continue; // explicit tags are refused below, as errors
      reportAt(cx, w.pos[0], '', yamlMessage(w.message), 'WG_POLICY_YAML', 'warning');
    }
    const root = doc.contents;
    if (root === null || (isScalar(root) && root.value === null)) {
      // An empty document. Between two others it is harmless (`---` twice); as the last one of a
      // file that has documents, after an explicit `---`, it is where a write may have been cut.
      if (last && nonEmpty > 0 && doc.directives?.docStart === true) {
        reportAt(cx, doc.range?.[0] ?? 0, '',
          'the file ends with an empty document after `---`: it may have been cut short by a write in progress, ' +
          'which would drop the policies after the cut. Remove the trailing `---`, and replace policy files atomically (write a temporary file, then rename it)',
          'WG_POLICY_EMPTY');
      }
      continue;
    }
    nonEmpty++;
    // Only errors are reported from here on (warnings come with the YAML above): a document that
    // added a diagnostic is refused.
    const before = cx.diags.length;
    refuseIndirection(cx, text, root, 'WG_POLICY_FORBIDDEN', 'they make a policy hard to review; write the value out in full');
    const parsed = document(root, firstOrdinal + documents.length, cx);
    if (parsed !== null && cx.diags.length === before) documents.push(deepFreeze(parsed));
  }
  if (nonEmpty === 0) {
    reportAt(cx, 0, '',
      'the file holds no document. An empty policy file is refused rather than read as "no policies": ' +
      'it is what a file truncated by a write in progress looks like, and applying it would drop the policies it held. ' +
      'To remove a file\'s policies, delete the file; replace policy files atomically (write a temporary file, then rename it)',
      'WG_POLICY_EMPTY');
  }
  // Report in reading order (a stable sort keeps same-position messages in discovery order).
  const diagnostics = cx.diags.sort((a, b) => a.line - b.line || a.col - b.col);
  return { documents, diagnostics };
}

/**
 * Reports policy names defined twice, per kind (an AuthorizationPolicy and a PolicyTest may share a
 * name, as their tests usually do). Names the second occurrence's position and the first's.
 */
export function findDuplicateNames(docs: readonly PolicyDocument[]): Diagnostic[] {
  const seen = new Map<string, Location>();
  const out: Diagnostic[] = [];
  for (const d of docs) {
    const key = `${d.kind}\0${d.name}`;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, d.location);
      continue;
    }
    out.push({
      code: 'WG_POLICY_SCHEMA',
      message: `duplicate ${d.kind} name "${d.name}"; first defined at ${first.file}:${first.line}:${first.col}`,
      file: d.location.file,
      line: d.location.line,
      col: d.location.col,
      path: 'metadata.name',
      severity: 'error',
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/** A policy file's walk: the shared walker's context (src/config/yaml-walk.ts) plus the text, for CEL positions. */
interface PolicyWalk extends WalkContext {
  readonly text: string;
}

type Fields = Map<string, FieldNodes>;

function policyWalk(text: string, file: string): PolicyWalk {
  return { ...walkContext('WG_POLICY_SCHEMA', file, text, POLICY_WORDING), text };
}

function location(cx: PolicyWalk, node: Node, path: string): Location {
  return { file: cx.file, ...cx.lines.linePos(nodeOffset(node)), path };
}

// ---- readers over the shared walker ------------------------------------------------------

const walk = yamlWalker<PolicyWalk>();
const anyString = walk.str();

/** A mapping from string keys to string values (labels, headers, baggage). */
function stringMap(node: Node | null, path: string, cx: PolicyWalk, checkKey?: (k: string) => string | null): Record<string, string> | null {
  if (!isMap(node)) {
    report(cx, node, path, `expected a mapping of strings, found ${POLICY_WORDING.describe(node)}`);
    return null;
  }
  const out: Record<string, string> = {};
  let ok = true;
  for (const pair of (node as YAMLMap<unknown, unknown>).items) {
    const key = pair.key as Node | null;
    if (!isScalar(key) || typeof key.value !== 'string') {
      report(cx, key, path, `keys must be strings, found ${POLICY_WORDING.describe(key)}`);
      ok = false;
      continue;
    }
    const p = POLICY_WORDING.field(path, key.value);
    if (Object.hasOwn(out, key.value)) {
      report(cx, key, p, `key "${key.value}" is given twice`);
      ok = false;
      continue;
    }
    const keyProblem = checkKey?.(key.value) ?? null;
    if (keyProblem !== null) {
      report(cx, key, p, keyProblem);
      ok = false;
    }
    const value = string(pair.value as Node | null, p, cx);
    if (value === null) ok = false;
    else out[key.value] = value;
  }
  return ok ? out : null;
}

function string(node: Node | null, path: string, cx: PolicyWalk): string | null {
  return anyString(node, path, cx) ?? null;
}

/** A string matching `pattern`; `what` explains the rule in the message. */
function name(node: Node | null, path: string, cx: PolicyWalk, pattern: RegExp, what: string, maxLength = 253): string | null {
  const s = string(node, path, cx);
  if (s === null) return null;
  if (s.length > maxLength || !pattern.test(s)) {
    report(cx, node, path, `invalid name "${s}": ${what}`);
    return null;
  }
  return s;
}

function enumValue<T extends string>(node: Node | null, path: string, cx: PolicyWalk, allowed: readonly T[]): T | null {
  return walk.oneOf(allowed)(node, path, cx) ?? null;
}

function ip(node: Node | null, path: string, cx: PolicyWalk): string | null {
  const s = string(node, path, cx);
  if (s === null) return null;
  if (isIP(s) === 0) {
    report(cx, node, path, `"${s}" is not an IPv4 or IPv6 address`);
    return null;
  }
  return s;
}

/**
 * A CEL expression. Plain `true`/`false` are read as the expressions they spell (YAML resolves
 * them to booleans, but `when: true` is the natural always-matching rule).
 */
function expression(node: Node | null, path: string, cx: PolicyWalk): ExpressionSource | null {
  if (!isScalar(node) || !(typeof node.value === 'string' || (typeof node.value === 'boolean' && node.type === 'PLAIN'))) {
    report(cx, node, path, `expected a CEL expression (a string), found ${POLICY_WORDING.describe(node)}`);
    return null;
  }
  const text = String(node.value);
  if (text.trim() === '') {
    report(cx, node, path, 'a CEL expression must not be empty');
    return null;
  }
  return new YamlExpression(text, location(cx, node, path), expressionRuns(cx.text, node, text), cx.lines);
}

/** The fields of a mapping of the policy schema; merge keys are refused on their own (refuseIndirection). */
function fields(node: Node | null, path: string, cx: PolicyWalk, allowed: readonly string[], required: readonly string[]): Fields | null {
  return mapFields(node, path, cx, allowed, { required, mergeKeysRefused: true }) ?? null;
}

function list(node: Node | null, path: string, cx: PolicyWalk, nonEmpty: boolean): Node[] | null {
  return seqItems(node, path, cx, nonEmpty) ?? null;
}

// ---- documents ---------------------------------------------------------------------------

function document(root: Node, ordinal: number, cx: PolicyWalk): PolicyDocument | null {
  // Istio's AuthorizationPolicy or a NetworkPolicy: one message saying so, not one per field (foreign.ts).
  if (isMap(root)) {
    const field = (key: string) => (root as YAMLMap<unknown, unknown>).items.find((p) => isScalar(p.key) && p.key.value === key)?.value;
    const api = field('apiVersion');
    const kind = field('kind');
    const foreign = isScalar(api) && isScalar(kind) ? foreignPolicyMessage(api.value, kind.value) : null;
    if (foreign !== null) {
      report(cx, api as Node, 'apiVersion', foreign);
      return null;
    }
  }
  const top = fields(root, '', cx, DOCUMENT_FIELDS.document, ['apiVersion', 'kind', 'metadata', 'spec']);
  if (top === null) return null;
  const apiVersion = top.get('apiVersion');
  if (apiVersion !== undefined) {
    const v = isScalar(apiVersion.value) ? apiVersion.value.value : undefined;
    if (v !== API_VERSION) {
      report(cx, apiVersion.value, 'apiVersion', `unsupported apiVersion ${isScalar(apiVersion.value) && v !== null ? `"${String(v)}"` : POLICY_WORDING.describe(apiVersion.value)}; accepted: ${API_VERSION}`);
    }
  }
  const kindField = top.get('kind');
  let kind: (typeof POLICY_KINDS)[number] | null = null;
  if (kindField !== undefined) {
    const v = isScalar(kindField.value) ? kindField.value.value : undefined;
    if (typeof v === 'string' && (POLICY_KINDS as readonly string[]).includes(v)) kind = v as (typeof POLICY_KINDS)[number];
    else report(cx, kindField.value, 'kind', `unsupported kind ${typeof v === 'string' ? `"${v}"` : POLICY_WORDING.describe(kindField.value)}; accepted: ${POLICY_KINDS.join(', ')}`);
  }
  const meta = top.get('metadata');
  const named = meta === undefined ? null : metadata(meta.value, cx);
  const spec = top.get('spec');
  if (kind === null || spec === undefined) return null;
  // Validate the spec even when metadata is broken, so every problem shows in one pass.
  const loc = named?.loc ?? location(cx, root, '');
  const policyName = named?.name ?? '';
  const doc = kind === 'AuthorizationPolicy'
    ? authorizationPolicy(spec.value, policyName, loc, ordinal, cx)
    : policyTest(spec.value, policyName, loc, cx);
  return named === null ? null : doc;
}

function metadata(node: Node | null, cx: PolicyWalk): { name: string; loc: Location } | null {
  const f = fields(node, 'metadata', cx, DOCUMENT_FIELDS.metadata, ['name']);
  if (f === null) return null;
  for (const k of ['labels', 'annotations'] as const) {
    const v = f.get(k);
    if (v !== undefined) stringMap(v.value, `metadata.${k}`, cx);
  }
  const n = f.get('name');
  if (n === undefined) return null;
  const policyName = name(n.value, 'metadata.name', cx, POLICY_NAME_PATTERN,
    'use lower-case letters, digits, "-" and ".", starting and ending with a letter or digit, at most 253 characters (a Kubernetes object name)',
    POLICY_NAME_MAX_LENGTH);
  if (policyName === null || n.value === null) return null;
  return { name: policyName, loc: location(cx, n.value, 'metadata.name') };
}

function authorizationPolicy(node: Node | null, policyName: string, loc: Location, ordinal: number, cx: PolicyWalk): AuthorizationPolicy | null {
  const f = fields(node, 'spec', cx, DOCUMENT_FIELDS.authorizationPolicySpec, ['action', 'rules']);
  if (f === null) return null;
  const action = f.has('action') ? enumValue(f.get('action')!.value, 'spec.action', cx, POLICY_ACTIONS) : null;
  const mode = f.has('mode') ? enumValue(f.get('mode')!.value, 'spec.mode', cx, POLICY_MODES) : 'Enforce';
  const selectorField = f.get('selector');
  const selector = selectorField === undefined ? undefined : expression(selectorField.value, 'spec.selector', cx);

  const variables: PolicyVariable[] = [];
  const variablesField = f.get('variables');
  const seenVariables = new Map<string, Location>();
  if (variablesField !== undefined) {
    const items = list(variablesField.value, 'spec.variables', cx, false) ?? [];
    items.forEach((item, i) => {
      const path = `spec.variables[${i}]`;
      const v = fields(item, path, cx, DOCUMENT_FIELDS.variable, ['name', 'expression']);
      if (v === null) return;
      const nameNode = v.get('name')?.value ?? null;
      let vname: string | null = null;
      if (v.has('name')) {
        vname = name(nameNode, `${path}.name`, cx, VARIABLE_NAME_PATTERN,
          'a variable name must be a CEL identifier (letters, digits and "_", not starting with a digit)');
        if (vname !== null && CEL_RESERVED.has(vname)) {
          report(cx, nameNode, `${path}.name`, `"${vname}" is a CEL reserved word and cannot name a variable`);
          vname = null;
        }
        if (vname !== null) vname = unique(seenVariables, vname, nameNode, `${path}.name`, 'variable', cx);
      }
      const expr = v.has('expression') ? expression(v.get('expression')!.value, `${path}.expression`, cx) : null;
      if (vname !== null && expr !== null) variables.push({ name: vname, expression: expr, location: location(cx, item, path) });
    });
  }

  const rules: PolicyRule[] = [];
  const rulesField = f.get('rules');
  const seenRules = new Map<string, Location>();
  if (rulesField !== undefined) {
    const items = list(rulesField.value, 'spec.rules', cx, true) ?? [];
    items.forEach((item, i) => {
      const path = `spec.rules[${i}]`;
      const r = fields(item, path, cx, DOCUMENT_FIELDS.rule, ['name', 'when']);
      if (r === null) return;
      const nameNode = r.get('name')?.value ?? null;
      let rname: string | null = null;
      if (r.has('name')) {
        rname = name(nameNode, `${path}.name`, cx, RULE_NAME_PATTERN,
          'a rule name uses letters, digits, "_" and "-", not starting with a digit or "-"');
        if (rname !== null) rname = unique(seenRules, rname, nameNode, `${path}.name`, 'rule', cx);
      }
      const when = r.has('when') ? expression(r.get('when')!.value, `${path}.when`, cx) : null;
      const messageField = r.get('message');
      const message = messageField === undefined ? undefined : string(messageField.value, `${path}.message`, cx);
      if (rname !== null && when !== null && message !== null) {
        const rule: PolicyRule = { name: rname, when, location: location(cx, item, path) };
        if (message !== undefined) rule.message = message;
        rules.push(rule);
      }
    });
  }
  if (action === null || mode === null || selector === null) return null;
  const policy: AuthorizationPolicy = {
    kind: 'AuthorizationPolicy', name: policyName, action, mode, variables, rules, location: loc, ordinal,
  };
  if (selector !== undefined) policy.selector = selector;
  return policy;
}

/** Returns `name` the first time, null (after reporting) when it repeats. */
function unique(seen: Map<string, Location>, itemName: string, node: Node | null, path: string, what: string, cx: PolicyWalk): string | null {
  const first = seen.get(itemName);
  if (first !== undefined) {
    report(cx, node, path, `duplicate ${what} name "${itemName}"; first defined at line ${first.line}:${first.col} (${first.path})`);
    return null;
  }
  if (node !== null) seen.set(itemName, location(cx, node, path));
  return itemName;
}

function policyTest(node: Node | null, testName: string, loc: Location, cx: PolicyWalk): PolicyTest | null {
  const f = fields(node, 'spec', cx, DOCUMENT_FIELDS.policyTestSpec, ['cases']);
  if (f === null) return null;
  const da = f.get('defaultAction');
  const defaultAction = da === undefined ? undefined : enumValue(da.value, 'spec.defaultAction', cx, DEFAULT_ACTIONS);
  const cases: PolicyTestCase[] = [];
  const seen = new Map<string, Location>();
  const casesField = f.get('cases');
  if (casesField !== undefined) {
    const items = list(casesField.value, 'spec.cases', cx, true) ?? [];
    items.forEach((item, i) => {
      const path = `spec.cases[${i}]`;
      const c = fields(item, path, cx, DOCUMENT_FIELDS.testCase, ['name', 'input', 'expect']);
      if (c === null) return;
      const nameNode = c.get('name')?.value ?? null;
      let cname: string | null = null;
      if (c.has('name')) {
        cname = string(nameNode, `${path}.name`, cx);
        if (cname !== null && cname.trim() === '') {
          report(cx, nameNode, `${path}.name`, 'a case name must not be empty');
          cname = null;
        }
        if (cname !== null) cname = unique(seen, cname, nameNode, `${path}.name`, 'case', cx);
      }
      const input = c.has('input') ? testInput(c.get('input')!.value, `${path}.input`, cx) : null;
      const expect = c.has('expect') ? testExpect(c.get('expect')!.value, `${path}.expect`, cx) : null;
      if (cname !== null && input !== null && expect !== null) {
        cases.push({ name: cname, input, expect, location: location(cx, item, path) });
      }
    });
  }
  if (defaultAction === null) return null;
  const test: PolicyTest = { kind: 'PolicyTest', name: testName, cases, location: loc };
  if (defaultAction !== undefined) test.defaultAction = defaultAction;
  return test;
}

function testInput(node: Node | null, path: string, cx: PolicyWalk): PolicyTestInput | null {
  // `input: {}` and `input:` (null) both mean "every field takes its empty value".
  if (isScalar(node) && node.value === null) return {};
  const f = fields(node, path, cx, DOCUMENT_FIELDS.input, []);
  if (f === null) return null;
  // Everything reported from here on is an error: a count that grew means the input is refused.
  const before = cx.diags.length;
  const input: Record<string, unknown> = {};
  // The catalogue's groups (attributes.ts), each with the attributes an input states.
  for (const g of GROUPS) {
    if (!f.has(g.name)) continue;
    const p = `${path}.${g.name}`;
    const groupFields = fields(f.get(g.name)!.value, p, cx, INPUT_GROUP_FIELDS.get(g.name)!, []);
    if (groupFields === null) continue;
    const o: Record<string, unknown> = {};
    for (const a of inputAttributes(g)) {
      if (!groupFields.has(a.name)) continue;
      const v = inputValue(a, groupFields.get(a.name)!.value, `${p}.${a.name}`, cx);
      if (v !== null) o[a.name] = v;
    }
    input[g.name] = o;
  }
  for (const a of TOP_LEVEL) {
    if (!f.has(a.name)) continue;
    const v = inputValue(a, f.get(a.name)!.value, `${path}.${a.name}`, cx);
    if (v !== null) input[a.name] = v;
  }
  return cx.diags.length === before ? (input as PolicyTestInput) : null;
}

/** One attribute of a test input, checked by its format; null (with an error) when it does not fit. */
function inputValue(a: Attribute, n: Node | null, path: string, cx: PolicyWalk): unknown {
  switch (a.format) {
    case 'string':
    case 'lowercase':
      return string(n, path, cx);
    case 'spiffe-id': {
      const v = string(n, path, cx);
      if (v === null || v === '' || parseSpiffeId(v) !== null) return v;
      report(cx, n, path, `"${v}" is not a SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>); use "" for no identity`);
      return null;
    }
    case 'ip':
      return ip(n, path, cx);
    case 'port':
      // A source port of 0 is legal on the wire (RFC 793 leaves it unreserved for senders); the
      // catalogue raises the floor where 0 cannot occur (a destination port is dialed).
      return walk.int(a.def.minPort ?? 0, 65535)(n, path, cx) ?? null;
    case 'header-map':
      return stringMap(n, path, cx, (k) =>
        LOWER_CASE_HEADER.test(k) ? null : `header name "${k}" must be lower-case (HTTP/2, RFC 9113 §8.2.1); write "${k.toLowerCase()}"`);
    case 'string-map':
      return stringMap(n, path, cx);
    case 'timestamp': {
      const v = string(n, path, cx);
      if (v === null || isRfc3339(v)) return v;
      report(cx, n, path, `"${v}" is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z)`);
      return null;
    }
  }
}

function testExpect(node: Node | null, path: string, cx: PolicyWalk): PolicyTestExpect | null {
  const f = fields(node, path, cx, DOCUMENT_FIELDS.expect, ['decision']);
  if (f === null) return null;
  // As in testInput: only errors are reported from here on.
  const before = cx.diags.length;
  const decision = f.has('decision') ? enumValue(f.get('decision')!.value, `${path}.decision`, cx, ['allow', 'deny'] as const) : null;
  const expect: PolicyTestExpect = { decision: decision ?? 'deny' };
  for (const k of ['policy', 'rule'] as const) {
    if (!f.has(k)) continue;
    const n = f.get(k)!.value;
    // null says "decided by no policy/rule" (default_allow, default_deny, no_allow_match).
    if (n === null || (isScalar(n) && n.value === null)) expect[k] = null;
    else { const v = string(n, `${path}.${k}`, cx); if (v !== null) expect[k] = v; }
  }
  if (f.has('reason')) {
    const v = enumValue(f.get('reason')!.value, `${path}.reason`, cx, ENGINE_REASONS);
    if (v !== null) expect.reason = v;
  }
  if (f.has('audit')) {
    const items = list(f.get('audit')!.value, `${path}.audit`, cx, false);
    if (items !== null) {
      const audit: string[] = [];
      items.forEach((item, i) => {
        const v = string(item, `${path}.audit[${i}]`, cx);
        if (v !== null && !/^[^/\s]+\/[^/\s]+$/.test(v)) {
          report(cx, item, `${path}.audit[${i}]`, `"${v}" must name an AUDIT rule as <policy>/<rule>`);
        } else if (v !== null) audit.push(v);
      });
      expect.audit = audit;
    }
  }
  if (f.has('dryRun')) {
    const v = enumValue(f.get('dryRun')!.value, `${path}.dryRun`, cx, ['allow', 'deny'] as const);
    if (v !== null) expect.dryRun = v;
  }
  return cx.diags.length === before && decision !== null ? expect : null;
}

/**
 * An expression's text plus what maps its offsets back to the file. Offsets are kept as runs
 * (`compressOffsets`): a one-line expression is one run, where a per-character table cost ~900
 * bytes per rule for the snapshot's lifetime. A class, not an object with closures, so a
 * 10,000-rule load makes no function per expression; the file's line table is a private field, so
 * the documents' deep freeze does not reach it.
 */
class YamlExpression implements ExpressionSource {
  readonly #runs: readonly number[];
  readonly #lines: TextLines;

  constructor(
    readonly text: string,
    readonly location: Location,
    runs: readonly number[],
    lines: TextLines,
  ) {
    this.#runs = runs;
    this.#lines = lines;
  }

  /** Offsets past either end clamp to the expression's first / last position. */
  positionAt(offset: number): { line: number; col: number } {
    return this.#lines.linePos(sourceOffsetAt(this.#runs, Math.max(0, Math.min(Math.trunc(offset), this.text.length))));
  }
}

/**
 * Compresses a value-to-source offset table (`ScalarOffsetMap.offsets`) into runs, flattened as
 * `[valueIndex0, sourceOffset0, valueIndex1, sourceOffset1, ...]`: within a run, value index `v`
 * maps to `sourceOffset + (v - valueIndex)`. A new run starts wherever the source does not advance
 * by one (escapes, folded and indented lines).
 */
export function compressOffsets(offsets: readonly number[]): number[] {
  const runs: number[] = [];
  for (let v = 0; v < offsets.length; v++) {
    const o = offsets[v]!;
    const n = runs.length;
    if (n === 0 || runs[n - 1]! + (v - runs[n - 2]!) !== o) runs.push(v, o);
  }
  return runs;
}

/**
 * `compressOffsets(scalarOffsetMap(text, node, value).offsets)`, without building the per-character
 * table for the common case: a plain or quoted scalar written on one line without escapes, whose
 * value is its source verbatim, is the single run `[0, first character]`.
 */
export function expressionRuns(text: string, node: Scalar, value: string): number[] {
  const start = node.range?.[0];
  const end = node.range?.[1];
  if (start !== undefined && end !== undefined) {
    const quoted = node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE';
    if (node.type === 'PLAIN' || quoted) {
      const first = quoted ? start + 1 : start;
      // Single-quoted: a quote in the value is written `''` (YAML 1.2.2 §7.3.2). A value ending in
      // quotes would still be a prefix of the source with a quote after it, so none may occur.
      const verbatim = end - first >= value.length + (quoted ? 1 : 0) && text.startsWith(value, first) && !/[\n\r]/.test(value) &&
        !(node.type === 'QUOTE_SINGLE' && value.includes("'"));
      // Quoted: the closing quote must follow the value (an escape would have shifted it).
      if (verbatim && (!quoted || text[first + value.length] === text[start])) return [0, first];
    }
  }
  return compressOffsets(scalarOffsetMap(text, node, value).offsets);
}

/** The source offset of value index `v` in `compressOffsets` runs (binary search over the run starts). */
export function sourceOffsetAt(runs: readonly number[], v: number): number {
  let lo = 0;
  let hi = runs.length / 2 - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (runs[mid * 2]! <= v) lo = mid;
    else hi = mid - 1;
  }
  return runs[lo * 2 + 1]! + (v - runs[lo * 2]!);
}

// ---------------------------------------------------------------------------------------------
// Scalar offset maps: value offset -> source offset, per YAML 1.2.2 §7.3 (flow) and §8.1 (block)
// ---------------------------------------------------------------------------------------------

/**
 * How a scalar's value maps back to its source. `offsets[i]` is the absolute source offset of
 * value character i (UTF-16 units, like JS strings and the CEL parser); one extra entry maps the
 * end of the value. `folds` lists value indices of spaces that stand for a folded line break.
 */
export interface ScalarOffsetMap {
  offsets: number[];
  folds: number[];
  /** False when the decoder disagreed with `yaml` and `offsets` is a rough, start-based fallback. */
  exact: boolean;
}

class Builder {
  value = '';
  offsets: number[] = [];
  folds: number[] = [];
  push(s: string, at: number, fold = false): void {
    for (let i = 0; i < s.length; i++) {
      if (fold) this.folds.push(this.value.length);
      this.value += s[i];
      this.offsets.push(at);
    }
  }
  /** Copies source[from, to) one-for-one. */
  copy(source: string, from: number, to: number, base: number): void {
    if (to <= from) return;
    this.value += source.slice(from, to);
    for (let i = from; i < to; i++) this.offsets.push(base + i);
  }
}

/**
 * Maps every character of a scalar's value (`value`, usually `node.value`) back to the source.
 * Mirrors the `yaml` library's own resolution, then checks it produced the same string; if not
 * (a construct this decoder does not model), falls back to offsets counted from the node's start.
 */
export function scalarOffsetMap(text: string, node: Scalar, value: string): ScalarOffsetMap {
  const start = node.range?.[0] ?? 0;
  const end = node.range?.[1] ?? start;
  let b: Builder | null = null;
  try {
    const tok = node.srcToken as { type?: string; offset?: number; indent?: number; source?: string; props?: { type: string; source: string }[] } | undefined;
    if (node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED') {
      if (tok?.type === 'block-scalar' && tok.props && typeof tok.offset === 'number') {
        b = decodeBlock(tok.source ?? '', tok.offset, tok.indent ?? 0, tok.props, node.type === 'BLOCK_FOLDED');
      }
    } else {
      const raw = text.slice(start, end);
      if (node.type === 'QUOTE_DOUBLE') b = decodeDoubleQuoted(raw, start);
      else if (node.type === 'QUOTE_SINGLE') b = decodeFlowLines(raw.slice(1, -1), start + 1, true);
      else b = decodeFlowLines(raw, start, false);
    }
  } catch {
    b = null;
  }
  if (b !== null && b.value === value) {
    const last = b.offsets.length > 0 ? b.offsets[b.offsets.length - 1]! + 1 : start;
    return { offsets: [...b.offsets, Math.min(last, Math.max(end, start))], folds: b.folds, exact: true };
  }
  const firstChar = node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE' ? start + 1 : start;
  const offsets: number[] = [];
  for (let i = 0; i <= value.length; i++) offsets.push(Math.min(firstChar + i, Math.max(end, firstChar)));
  return { offsets, folds: [], exact: false };
}

interface Line { text: string; start: number }

/** Splits on LF, dropping a CR before it; each line keeps its absolute start offset. */
function splitLines(source: string, base: number): Line[] {
  const lines: Line[] = [];
  let from = 0;
  for (;;) {
    const nl = source.indexOf('\n', from);
    if (nl === -1) {
      lines.push({ text: source.slice(from), start: base + from });
      return lines;
    }
    const t = source.slice(from, nl);
    lines.push({ text: t.endsWith('\r') ? t.slice(0, -1) : t, start: base + from });
    from = nl + 1;
  }
}

/**
 * Plain and single-quoted scalars (YAML §7.3.2-7.3.3, §6.5 line folding): the first line keeps its
 * leading text, inner lines are trimmed, a single break between text becomes a space and each
 * empty line a newline. In single quotes `''` stands for `'`.
 */
function decodeFlowLines(source: string, base: number, single: boolean): Builder {
  const b = new Builder();
  const emit = (line: Line, from: number, to: number): void => {
    for (let i = from; i < to; i++) {
      if (single && line.text[i] === "'" && line.text[i + 1] === "'") {
        b.push("'", line.start + i);
        i++;
      } else b.push(line.text[i]!, line.start + i);
    }
  };
  const lines = splitLines(source, base);
  if (lines.length === 1) {
    emit(lines[0]!, 0, lines[0]!.text.length);
    return b;
  }
  const first = lines[0]!;
  emit(first, 0, first.text.replace(/[ \t]+$/, '').length);
  let sep = ' ';
  let sepAt = first.start + first.text.length;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const lead = line.text.length - line.text.replace(/^[ \t]+/, '').length;
    const isLast = i === lines.length - 1;
    const to = isLast ? line.text.length : line.text.replace(/[ \t]+$/, '').length;
    if (!isLast && to <= lead) {
      if (sep === '\n') b.push('\n', line.start);
      else sep = '\n';
      continue;
    }
    b.push(sep, sepAt, sep === ' ');
    emit(line, lead, Math.max(lead, to));
    sep = ' ';
    sepAt = line.start + line.text.length;
  }
  return b;
}

const DQ_ESCAPES: Record<string, string> = {
  '0': '\0', a: '\x07', b: '\b', e: '\x1b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', N: '\u0085',
  _: '\u00a0', L: '\u2028', P: '\u2029', ' ': ' ', '"': '"', '/': '/', '\\': '\\', '\t': '\t',
};

/** Double-quoted scalars (YAML §7.3.1): escapes, folding, and `\` before a break joining lines. */
function decodeDoubleQuoted(source: string, base: number): Builder {
  const b = new Builder();
  for (let i = 1; i < source.length - 1; i++) {
    const ch = source[i]!;
    if (ch === '\r' && source[i + 1] === '\n') continue;
    if (ch === '\n') {
      let fold = '';
      let j = i;
      let c = source[j + 1];
      const at: number[] = [];
      while (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
        if (c === '\r' && source[j + 2] !== '\n') break;
        if (c === '\n') { fold += '\n'; at.push(base + j + 1); }
        j++;
        c = source[j + 1];
      }
      if (fold === '') b.push(' ', base + i, true);
      else for (const a of at) b.push('\n', a);
      i = j;
    } else if (ch === '\\') {
      const esc = base + i;
      const next = source[++i]!;
      const simple = DQ_ESCAPES[next];
      if (simple !== undefined) b.push(simple, esc);
      else if (next === '\n' || (next === '\r' && source[i + 1] === '\n')) {
        if (next === '\r') i++;
        while (source[i + 1] === ' ' || source[i + 1] === '\t') i++;
      } else if (next === 'x' || next === 'u' || next === 'U') {
        const n = next === 'x' ? 2 : next === 'u' ? 4 : 8;
        b.push(String.fromCodePoint(parseInt(source.substr(i + 1, n), 16)), esc);
        i += n;
      } else b.push('\\' + next, esc);
    } else if (ch === ' ' || ch === '\t') {
      // Trailing white space before a line break is not content.
      const ws = i;
      while (source[i + 1] === ' ' || source[i + 1] === '\t') i++;
      const after = source[i + 1];
      if (after !== '\n' && !(after === '\r' && source[i + 2] === '\n')) b.copy(source, ws, i + 1, base);
    } else b.push(ch, base + i);
  }
  return b;
}

/** Block scalars (YAML §8.1): indentation, `|` literal vs `>` folded lines, and chomping. */
function decodeBlock(
  source: string, offset: number, parentIndent: number, props: { type: string; source: string }[], folded: boolean,
): Builder {
  const header = props[0]?.source ?? '|';
  let explicitIndent = 0;
  let chomp = '';
  for (const ch of header.slice(1)) {
    if (!chomp && (ch === '-' || ch === '+')) chomp = ch;
    else if (!explicitIndent && Number(ch)) explicitIndent = Number(ch);
  }
  const headerLength = props.reduce((n, p) => n + (typeof p.source === 'string' ? p.source.length : 0), 0);
  const bodyStart = offset + headerLength;
  const lines = splitLines(source, bodyStart).map((l) => {
    const indent = /^ */.exec(l.text)![0].length;
    return { indent, content: l.text.slice(indent), start: l.start };
  });
  const b = new Builder();
  let chompStart = lines.length;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i]!.content === '') chompStart = i;
    else break;
  }
  if (chompStart === 0) {
    if (chomp === '+' && lines.length > 0) b.push('\n'.repeat(Math.max(1, lines.length - 1)), bodyStart);
    return b;
  }
  let trimIndent = parentIndent + explicitIndent;
  let contentStart = 0;
  for (let i = 0; i < chompStart; i++) {
    const l = lines[i]!;
    if (l.content === '') {
      if (explicitIndent === 0 && l.indent > trimIndent) trimIndent = l.indent;
    } else {
      if (explicitIndent === 0) trimIndent = l.indent;
      contentStart = i;
      break;
    }
  }
  for (let i = lines.length - 1; i >= chompStart; i--) {
    if (lines[i]!.indent > trimIndent) chompStart = i + 1;
  }
  const eol = (l: { start: number; indent: number; content: string }): number => l.start + l.indent + l.content.length;
  for (let i = 0; i < contentStart; i++) {
    const l = lines[i]!;
    b.push(' '.repeat(Math.max(0, l.indent - trimIndent)), l.start + trimIndent);
    b.push('\n', eol(l));
  }
  let sep = '';
  let sepAt = bodyStart;
  let prevMoreIndented = false;
  for (let i = contentStart; i < chompStart; i++) {
    const l = lines[i]!;
    const extra = ' '.repeat(Math.max(0, l.indent - trimIndent));
    const contentAt = l.start + l.indent;
    const emitLine = (): void => {
      for (let k = 0; k < extra.length; k++) b.push(' ', l.start + trimIndent + k);
      for (let k = 0; k < l.content.length; k++) b.push(l.content[k]!, contentAt + k);
    };
    if (!folded) {
      b.push(sep, sepAt);
      emitLine();
      sep = '\n';
    } else if (l.indent > trimIndent || l.content[0] === '\t') {
      if (sep === ' ') sep = '\n';
      else if (!prevMoreIndented && sep === '\n') sep = '\n\n';
      b.push(sep, sepAt);
      emitLine();
      sep = '\n';
      prevMoreIndented = true;
    } else if (l.content === '') {
      if (sep === '\n') b.push('\n', l.start);
      else sep = '\n';
    } else {
      b.push(sep, sepAt, sep === ' ');
      for (let k = 0; k < l.content.length; k++) b.push(l.content[k]!, contentAt + k);
      sep = ' ';
      prevMoreIndented = false;
    }
    sepAt = eol(l);
  }
  if (chomp === '+') {
    for (let i = chompStart; i < lines.length; i++) {
      const l = lines[i]!;
      b.push('\n', sepAt);
      b.push(' '.repeat(Math.max(0, l.indent - trimIndent)), l.start + trimIndent);
      sepAt = eol(l);
    }
    if (!b.value.endsWith('\n')) b.push('\n', sepAt);
  } else if (chomp === '') b.push('\n', sepAt);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** Strips the snippet `yaml` appends ("at line 3, column 5:\n\n...") since we add file:line:col. */
function yamlMessage(message: string): string {
  const i = message.search(/ at line \d+, column \d+/);
  return i === -1 ? message.trim() : message.slice(0, i);
}

function isRfc3339(s: string): boolean {
  const m = RFC3339.exec(s);
  if (m === null) return false;
  const [month, day, hour, minute, second] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return false;
  return !Number.isNaN(Date.parse(s.replace(' ', 'T')));
}

