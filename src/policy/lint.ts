/**
 * Policy lint: mistakes that load fine but cannot be what the author meant. Everything here is a
 * property of the policy text and its compiled form, never of traffic. Each finding is located to
 * file:line:col and a field path, like load errors, so `waygate policy check` prints both the same
 * way.
 *
 * The checks follow Istio's evaluation order (docs/design.md §3): an enforced DENY match ends the decision,
 * so an unconditional DENY leaves every ALLOW rule without effect; inside one policy the first
 * matching rule is the one reported, so rules after an unconditional one never decide.
 *
 * Lint runs on a compiled snapshot (full checks: constant folding and equality keys from the CEL
 * layer) or on parsed documents that failed to compile (text checks only), so `policy check` can
 * still say something useful about a file with a type error elsewhere.
 */
import { parse, type ASTNode } from '@marcbachmann/cel-js';
import type { Diagnostic, ErrorCode } from '../errors.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
import { canonicalIp, formatIp, parseCidrDetailed } from '../net/address.ts';
import { attributeAt, ATTRIBUTES, isMapFormat } from './attribute-tables.ts';
import { MATCHES_FORBIDDEN_MESSAGE } from './cel/analyze.ts';
import { childNodes } from './cel/limits.ts';
import { keyKind, type IndexKey } from './cel/compiled.ts';
import type { PolicyAction, PolicyMode } from './decision.ts';
import type { AuthorizationPolicy, ExpressionSource, Location, PolicyDocument } from './model.ts';
import type { PolicySnapshot } from './snapshot.ts';

/**
 * Stable lint codes (an API like ErrorCode: add, never rename). Kept apart from ErrorCode because
 * they name findings, not failures; `WG_POLICY_FORBIDDEN` is shared with the loader, which refuses
 * the same construct.
 */
export type LintCode =
  /** A rule that can never take effect because an unconditional enforced DENY matches first. */
  | 'WG_LINT_UNREACHABLE'
  /** A rule or selector that can never be true (constant false, contradictory equalities, impossible literal). */
  | 'WG_LINT_NEVER_MATCHES'
  /** A rule after an unconditional rule of the same ALLOW/DENY policy: it never decides. */
  | 'WG_LINT_SHADOWED'
  /** An enforced DENY that matches every tunnel. */
  | 'WG_LINT_DENY_ALL'
  /** An enforced ALLOW that matches every tunnel no DENY refuses. */
  | 'WG_LINT_ALLOW_ALL'
  /** `action: AUDIT` with `mode: DryRun`: AUDIT never changes a verdict, so a dry run of it is meaningless. */
  | 'WG_LINT_AUDIT_DRYRUN'
  /** A variable no selector, rule or other variable reads. */
  | 'WG_LINT_UNUSED_VARIABLE'
  /**
   * A header or baggage value read without a presence guard where an evaluation error denies: an
   * enforced DENY rule, selector or variable, or an enforced ALLOW selector.
   */
  | 'WG_LINT_UNGUARDED_READ'
  /** A header name literal with capital letters: HTTP/2 names are lower case, so it never matches. */
  | 'WG_LINT_HEADER_CASE'
  /** source.ip / destination.ip compared with an address literal not in canonical text: never equal. */
  | 'WG_LINT_IP_LITERAL'
  /** A CIDR literal with host bits set (`10.0.0.5/8`): it is masked, probably not what was meant. */
  | 'WG_LINT_CIDR_HOST_BITS';

/** One lint finding: a Diagnostic whose code may also be a LintCode. */
export interface LintDiagnostic extends Omit<Diagnostic, 'code'> {
  code: ErrorCode | LintCode;
}

/** Anything lint understands: a compiled snapshot, or parsed documents (PolicyTests are ignored). */
export type LintInput = PolicySnapshot | readonly PolicyDocument[];

/** Runs every lint check; findings are sorted by file, line and column. */
export function lintPolicies(input: LintInput): LintDiagnostic[] {
  const views = isSnapshot(input) ? viewsFromSnapshot(input) : viewsFromDocuments(input);
  const out: LintDiagnostic[] = [];
  for (const p of views) {
    checkAuditDryRun(p, out);
    checkForbiddenMatches(p, out);
    checkUnusedVariables(p, out);
    checkNeverMatches(p, out);
    checkShadowed(p, out);
    checkAllowAll(p, out);
    checkExpressionLiterals(p, out);
  }
  checkCatchAllDeny(views, out);
  return out.sort(
    (a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) || a.line - b.line || a.col - b.col || (a.code < b.code ? -1 : 1),
  );
}

// ---------------------------------------------------------------------------------------------
// A common view of compiled and raw policies, so every check is written once.

interface ExprView {
  source: ExpressionSource;
  constantTrue: boolean;
  constantFalse: boolean;
  /** Equality constraints proven by the CEL layer; empty for raw documents. */
  keys: readonly IndexKey[];
}

interface RuleView {
  name: string;
  location: Location;
  when: ExprView;
}

interface PolicyView {
  name: string;
  action: PolicyAction;
  mode: PolicyMode;
  location: Location;
  /** Null when absent or the literal `true` (the policy governs every tunnel). */
  selector: ExprView | null;
  variables: { name: string; expr: ExprView }[];
  rules: RuleView[];
}

function isSnapshot(input: LintInput): input is PolicySnapshot {
  return !Array.isArray(input) && typeof (input as PolicySnapshot).ruleCount === 'number';
}

function viewsFromSnapshot(s: PolicySnapshot): PolicyView[] {
  return s.policies.map((p) => ({
    name: p.name,
    action: p.action,
    mode: p.mode,
    location: p.location,
    selector: p.selector
      ? { source: p.selector.source, constantTrue: p.selector.isConstantTrue, constantFalse: p.selector.isConstantFalse, keys: equalityKeys(p.selectorKeys) }
      : null,
    variables: p.variables.map((v) => ({ name: v.name, expr: compiledView(v.expression) })),
    rules: p.rules.map((r) => ({ name: r.name, location: r.location, when: compiledView(r.when) })),
  }));
}

function compiledView(e: { source: ExpressionSource; isConstantTrue: boolean; isConstantFalse: boolean; indexKeys: readonly IndexKey[] }): ExprView {
  return { source: e.source, constantTrue: e.isConstantTrue, constantFalse: e.isConstantFalse, keys: equalityKeys(e.indexKeys) };
}

/** The equality keys only: the checks below intersect value sets, which CIDR/prefix/suffix keys are not. */
function equalityKeys(keys: readonly IndexKey[]): IndexKey[] {
  return keys.filter((k) => keyKind(k) === 'equals');
}

function viewsFromDocuments(docs: readonly PolicyDocument[]): PolicyView[] {
  const policies = docs.filter((d): d is AuthorizationPolicy => d.kind === 'AuthorizationPolicy');
  return policies.map((p) => {
    const selector = p.selector ? textView(p.selector) : null;
    return {
      name: p.name,
      action: p.action,
      mode: p.mode,
      location: p.location,
      selector: selector && !selector.constantTrue ? selector : null,
      variables: p.variables.map((v) => ({ name: v.name, expr: textView(v.expression) })),
      rules: p.rules.map((r) => ({ name: r.name, location: r.location, when: textView(r.when) })),
    };
  });
}

/** Without a compiler only the bare literals are recognised (`true`, `false`, possibly parenthesised). */
function textView(source: ExpressionSource): ExprView {
  const bare = source.text.replace(/[\s()]/g, '');
  return { source, constantTrue: bare === 'true', constantFalse: bare === 'false', keys: [] };
}

function at(loc: Location, code: LintDiagnostic['code'], severity: 'error' | 'warning', message: string, path = loc.path): LintDiagnostic {
  return { code, severity, message, file: loc.file, line: loc.line, col: loc.col, path };
}

function describe(loc: Location): string {
  return `${loc.file}:${loc.line}:${loc.col}`;
}

// ---------------------------------------------------------------------------------------------
// Checks

function checkAuditDryRun(p: PolicyView, out: LintDiagnostic[]): void {
  if (p.action !== 'AUDIT' || p.mode !== 'DryRun') return;
  out.push(at(p.location, 'WG_LINT_AUDIT_DRYRUN', 'warning',
    `policy "${p.name}" is an AUDIT policy in DryRun mode: AUDIT never changes a verdict, so there is nothing to trial. ` +
    'Use mode: Enforce to list matches in the audit record, or action: ALLOW/DENY with mode: DryRun to trial a verdict change',
    'spec.mode'));
}

/**
 * `matches()` is the CEL engine's JavaScript-RegExp regex: backtracking, and RE2 syntax such as
 * `(?i)` throws (docs/design.md §8.1). The loader refuses it; lint reports it too for documents that did not
 * compile, pointing at the call itself.
 */
function checkForbiddenMatches(p: PolicyView, out: LintDiagnostic[]): void {
  for (const e of allExpressions(p)) {
    const code = stripStringLiterals(e.expr.source.text);
    for (const m of code.matchAll(/(?<![\w.])matches\s*\(|\.\s*matches\s*\(/g)) {
      const offset = m.index + (m[0].startsWith('.') ? m[0].indexOf('m') : 0);
      const pos = e.expr.source.positionAt(offset);
      out.push({
        code: 'WG_POLICY_FORBIDDEN',
        severity: 'error',
        message: MATCHES_FORBIDDEN_MESSAGE,
        file: e.expr.source.location.file,
        line: pos.line,
        col: pos.col,
        path: e.expr.source.location.path,
      });
    }
  }
}

function checkUnusedVariables(p: PolicyView, out: LintDiagnostic[]): void {
  if (p.variables.length === 0) return;
  for (const v of p.variables) {
    const ref = new RegExp(`\\bvariables\\s*\\.\\s*${escapeRegExp(v.name)}\\b`);
    const used = allExpressions(p).some((e) => e.expr !== v.expr && ref.test(stripStringLiterals(e.expr.source.text)));
    if (!used) {
      const loc = v.expr.source.location;
      out.push(at(loc, 'WG_LINT_UNUSED_VARIABLE', 'warning',
        `variable "${v.name}" of policy "${p.name}" is never read (reference it as variables.${v.name})`,
        parentPath(loc.path)));
    }
  }
}

function checkNeverMatches(p: PolicyView, out: LintDiagnostic[]): void {
  if (p.selector) {
    const why = p.selector.constantFalse ? 'it is the constant false' : impossibleKeys(p.selector.keys, []);
    if (why !== null) {
      out.push(at(p.selector.source.location, 'WG_LINT_NEVER_MATCHES', 'warning',
        `selector of policy "${p.name}" can never be true (${why}): the policy governs no tunnel`));
      return; // every rule is moot; one finding says it
    }
  }
  for (const r of p.rules) {
    const why = r.when.constantFalse ? 'it is the constant false' : impossibleKeys(r.when.keys, p.selector?.keys ?? []);
    if (why === null) continue;
    out.push(at(r.when.source.location, 'WG_LINT_NEVER_MATCHES', 'warning',
      `${p.action} rule "${r.name}" of policy "${p.name}" can never match (${why})`));
  }
}

/**
 * Why a set of equality constraints cannot all hold, or null. `own` are the expression's keys,
 * `outer` the selector's (the rule only counts when its selector is true too).
 */
function impossibleKeys(own: readonly IndexKey[], outer: readonly IndexKey[]): string | null {
  const byAttr = new Map<string, { values: (string | number)[]; from: string[] }>();
  const tagged = [...outer.map((k) => ({ k, from: 'selector' })), ...own.map((k) => ({ k, from: 'rule' }))];
  for (const { k, from } of tagged) {
    const literal = impossibleLiteral(k);
    if (literal !== null) return literal;
    const seen = byAttr.get(k.attribute);
    if (!seen) {
      byAttr.set(k.attribute, { values: [...k.values], from: [`${from} requires ${showValues(k.values)}`] });
      continue;
    }
    seen.values = seen.values.filter((v) => k.values.includes(v));
    seen.from.push(`${from} requires ${showValues(k.values)}`);
    if (seen.values.length === 0) return `${k.attribute}: ${seen.from.join(', ')}`;
  }
  for (const k of tagged) if (k.k.values.length === 0) return `${k.k.attribute} has no possible value`;
  return null;
}

/** Literals an attribute can never take, by its format: a port outside 0-65535, a principal that is not a SPIFFE ID. */
function impossibleLiteral(k: IndexKey): string | null {
  if (k.values.length === 0) return null;
  const format = attributeAt(k.attribute)?.format;
  if (format === 'port') {
    const ok = k.values.filter((v) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535);
    if (ok.length === 0) return `${k.attribute} ${showValues(k.values)} is not a TCP port`;
  }
  if (format === 'spiffe-id') {
    // A verified SPIFFE ID or "" (no identity, docs/design.md §3), nothing else.
    const ok = k.values.filter((v) => v === '' || (typeof v === 'string' && parseSpiffeId(v) !== null));
    if (ok.length === 0) return `${k.attribute} ${showValues(k.values)} is not a SPIFFE ID (spiffe://<trust-domain>/<path>)`;
  }
  return null;
}

function showValues(values: readonly (string | number)[]): string {
  const shown = values.map((v) => JSON.stringify(v));
  return shown.length === 1 ? shown[0]! : `one of [${shown.join(', ')}]`;
}

/** In an ALLOW or DENY policy the first matching rule decides; rules after an unconditional one never do. */
function checkShadowed(p: PolicyView, out: LintDiagnostic[]): void {
  if (p.action === 'AUDIT') return; // every matching AUDIT rule is listed, none shadows another
  const first = p.rules.findIndex((r) => r.when.constantTrue);
  if (first === -1) return;
  const cause = p.rules[first]!;
  for (const r of p.rules.slice(first + 1)) {
    out.push(at(r.location, 'WG_LINT_SHADOWED', 'warning',
      `rule "${r.name}" never decides: rule "${cause.name}" before it (${describe(cause.location)}) matches every tunnel policy "${p.name}" governs`));
  }
}

function checkAllowAll(p: PolicyView, out: LintDiagnostic[]): void {
  if (p.action !== 'ALLOW' || p.mode !== 'Enforce' || p.selector !== null) return;
  const r = p.rules.find((x) => x.when.constantTrue);
  if (!r) return;
  out.push(at(r.when.source.location, 'WG_LINT_ALLOW_ALL', 'warning',
    `rule "${r.name}" of policy "${p.name}" allows every tunnel no DENY rule refuses; add a selector or a condition on the source`));
}

/**
 * An enforced DENY with no selector and an unconditional rule denies every tunnel (Istio step 2),
 * so no enforced ALLOW rule anywhere can ever allow: those rules are errors, the DENY a warning
 * (a deliberate lockdown is legitimate; ALLOW rules beside it are not).
 */
function checkCatchAllDeny(views: readonly PolicyView[], out: LintDiagnostic[]): void {
  let catchAll: { p: PolicyView; r: RuleView } | null = null;
  for (const p of views) {
    if (p.action !== 'DENY' || p.mode !== 'Enforce' || p.selector !== null) continue;
    const r = p.rules.find((x) => x.when.constantTrue);
    if (!r) continue;
    catchAll ??= { p, r };
    out.push(at(r.when.source.location, 'WG_LINT_DENY_ALL', 'warning',
      `rule "${r.name}" of enforced DENY policy "${p.name}" matches every tunnel: nothing can be allowed`));
  }
  if (!catchAll) return;
  const where = `${catchAll.p.name}/${catchAll.r.name} (${describe(catchAll.r.when.source.location)})`;
  for (const p of views) {
    if (p.action !== 'ALLOW' || p.mode !== 'Enforce') continue;
    for (const r of p.rules) {
      out.push(at(r.location, 'WG_LINT_UNREACHABLE', 'error',
        `ALLOW rule "${r.name}" of policy "${p.name}" can never allow: the catch-all DENY ${where} matches every tunnel first`));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Checks on the expression syntax tree: header reads, header names, address literals.

const astCache = new WeakMap<ExpressionSource, ASTNode | null>();

/** The parsed expression, or null when it does not parse (the loader reports that). */
function astOf(source: ExpressionSource): ASTNode | null {
  let ast = astCache.get(source);
  if (ast === undefined) {
    try {
      ast = parse(source.text).ast;
    } catch {
      ast = null;
    }
    astCache.set(source, ast);
  }
  return ast;
}

/** A map attribute's path: `request.headers`, `request.baggage`. */
type HeaderMap = string;
const MAP_ATTRIBUTES: ReadonlySet<string> = new Set(ATTRIBUTES.filter((a) => isMapFormat(a.format)).map((a) => a.path));
/** Maps whose keys are HTTP field names, lower case (the catalogue's `header-map`). */
const HEADER_NAME_MAPS: ReadonlySet<string> = new Set(ATTRIBUTES.filter((a) => a.format === 'header-map').map((a) => a.path));

/** The map attribute (`request.headers`, `request.baggage`) `node` denotes, null for anything else. */
function headerMapOf(node: ASTNode): HeaderMap | null {
  if (node.op !== '.') return null;
  const [obj, field] = node.args;
  if (obj.op !== 'id') return null;
  const path = `${obj.args}.${field}`;
  return MAP_ATTRIBUTES.has(path) ? path : null;
}

interface KeyRef {
  map: HeaderMap;
  key: string;
  node: ASTNode;
}

/** `request.headers["k"]` / `request.headers.k` (and baggage): a read that fails when `k` is absent. */
function keyRead(node: ASTNode): KeyRef | null {
  if (node.op === '.') {
    const map = headerMapOf(node.args[0]);
    return map ? { map, key: node.args[1], node } : null;
  }
  if (node.op === '[]') {
    const map = headerMapOf(node.args[0]);
    const key = node.args[1];
    return map && key.op === 'value' && typeof key.args === 'string' ? { map, key: key.args, node } : null;
  }
  return null;
}

/** `"k" in request.headers` / `has(request.headers.k)` (and the optional forms): true iff `k` is present. */
function presenceTest(node: ASTNode): KeyRef | null {
  if (node.op === 'in') {
    const [key, coll] = node.args;
    const map = headerMapOf(coll);
    return map && key.op === 'value' && typeof key.args === 'string' ? { map, key: key.args, node } : null;
  }
  if (node.op === 'call' && node.args[0] === 'has' && node.args[1].length === 1) {
    const arg = node.args[1][0]!;
    if (arg.op === '.') {
      const map = headerMapOf(arg.args[0]);
      return map ? { map, key: arg.args[1], node } : null;
    }
  }
  return null;
}

/** Optional reads (`request.headers[?"k"]`, `request.headers.?k`) never fail on an absent key. */
function isOptionalRead(node: ASTNode): boolean {
  return (node.op === '[?]' || node.op === '.?') && headerMapOf(node.args[0]) !== null;
}

const factKey = (map: HeaderMap, key: string): string => `${map}\u0000${key}`;

/** Presence facts of the policy's variables: `variables.hasTenant` where hasTenant is `"x-tenant" in request.headers`. */
type VariableFacts = ReadonlyMap<string, readonly string[]>;

/** Keys proven present when `node` is true (the conjuncts of an `&&` chain). */
function presentWhenTrue(node: ASTNode, vars: VariableFacts): string[] {
  if (node.op === '&&') return [...presentWhenTrue(node.args[0], vars), ...presentWhenTrue(node.args[1], vars)];
  const t = presenceTest(node);
  if (t) return [factKey(t.map, t.key)];
  if (node.op === '.' && node.args[0].op === 'id' && node.args[0].args === 'variables') return [...(vars.get(node.args[1]) ?? [])];
  return [];
}

/** Keys proven present when `node` is false (the negated presence tests of an `||` chain). */
function presentWhenFalse(node: ASTNode, vars: VariableFacts): string[] {
  if (node.op === '||') return [...presentWhenFalse(node.args[0], vars), ...presentWhenFalse(node.args[1], vars)];
  if (node.op === '!_') return presentWhenTrue(node.args, vars);
  return [];
}

interface ExpressionFacts {
  /** Key reads with no presence guard on their path. */
  unguarded: KeyRef[];
  /** Every header/baggage key literal: reads and presence tests. */
  keys: KeyRef[];
}

/**
 * Walks `ast` tracking which keys are proven present. CEL's `&&`/`||` are commutative and absorb
 * errors (`false && error` is false, either way round), so a guard on either side protects the
 * other; `c ? a : b` protects `a` with what `c` proves and `b` with what `!c` proves.
 */
function headerFacts(ast: ASTNode, vars: VariableFacts): ExpressionFacts {
  const unguarded: KeyRef[] = [];
  const keys: KeyRef[] = [];
  const visit = (node: ASTNode, present: ReadonlySet<string>): void => {
    const test = presenceTest(node);
    if (test) {
      keys.push(test);
      return;
    }
    const read = keyRead(node);
    if (read) {
      keys.push(read);
      if (!present.has(factKey(read.map, read.key))) unguarded.push(read);
      return;
    }
    if (isOptionalRead(node)) return;
    const plus = (extra: readonly string[]): ReadonlySet<string> => (extra.length ? new Set([...present, ...extra]) : present);
    switch (node.op) {
      case '&&': {
        const [a, b] = node.args;
        visit(a, plus(presentWhenTrue(b, vars)));
        visit(b, plus(presentWhenTrue(a, vars)));
        return;
      }
      case '||': {
        const [a, b] = node.args;
        visit(a, plus(presentWhenFalse(b, vars)));
        visit(b, plus(presentWhenFalse(a, vars)));
        return;
      }
      case '?:': {
        const [c, yes, no] = node.args;
        visit(c, present);
        visit(yes, plus(presentWhenTrue(c, vars)));
        visit(no, plus(presentWhenFalse(c, vars)));
        return;
      }
      default:
        for (const ch of childNodes(node)) visit(ch, present);
    }
  };
  visit(ast, new Set());
  return { unguarded, keys };
}

function showRead(r: KeyRef): string {
  return `${r.map}[${JSON.stringify(r.key)}]`;
}

function atNode(source: ExpressionSource, node: ASTNode, code: LintCode, severity: 'error' | 'warning', message: string): LintDiagnostic {
  const { line, col } = source.positionAt(node.start);
  return { code, severity, message, file: source.location.file, line, col, path: source.location.path };
}

/**
 * Where a failed read denies: an enforced DENY rule, selector or variable (an error counts as a
 * match, docs/design.md §3), and an enforced ALLOW selector (an error counts as applying, so a tunnel
 * without the header is denied unless another ALLOW rule matches). Elsewhere an error is a no-match.
 */
function readErrorDenies(p: PolicyView, role: 'selector' | 'rule' | 'variable'): string | null {
  if (p.mode !== 'Enforce') return null;
  if (p.action === 'DENY') {
    if (role === 'rule') return 'an enforced DENY rule that fails to evaluate counts as a match: every such tunnel is denied (reason eval_error)';
    if (role === 'selector') return "an enforced DENY selector that fails to evaluate counts as true (fail closed): the policy's rules then apply to every such tunnel";
    return 'a rule reading a variable that fails to evaluate fails too, and in an enforced DENY policy that denies (reason eval_error)';
  }
  if (p.action === 'ALLOW' && role === 'selector') {
    return 'an enforced ALLOW selector that fails to evaluate counts as applying (fail closed): every such tunnel is denied unless another ALLOW rule matches (reason eval_error)';
  }
  return null;
}

function checkExpressionLiterals(p: PolicyView, out: LintDiagnostic[]): void {
  const varFacts = new Map<string, readonly string[]>();
  for (const v of p.variables) {
    const ast = astOf(v.expr.source);
    if (ast) varFacts.set(v.name, presentWhenTrue(ast, new Map()));
  }
  const exprs: { role: 'selector' | 'rule' | 'variable'; expr: ExprView; name: string }[] = [];
  if (p.selector) exprs.push({ role: 'selector', expr: p.selector, name: `selector of policy "${p.name}"` });
  for (const v of p.variables) exprs.push({ role: 'variable', expr: v.expr, name: `variable "${v.name}" of policy "${p.name}"` });
  for (const r of p.rules) exprs.push({ role: 'rule', expr: r.when, name: `${p.action} rule "${r.name}" of policy "${p.name}"` });
  for (const { role, expr, name } of exprs) {
    const ast = astOf(expr.source);
    if (ast === null) continue;
    const facts = headerFacts(ast, varFacts);
    // RFC 9113 §8.2.1: field names are lower case (upper case is a malformed request), and the
    // gateway exposes them lower-cased, so a name with capitals is never present.
    const wrongCase = new Set<ASTNode>();
    for (const k of facts.keys) {
      if (!HEADER_NAME_MAPS.has(k.map) || k.key === k.key.toLowerCase()) continue;
      wrongCase.add(k.node);
      out.push(atNode(expr.source, k.node, 'WG_LINT_HEADER_CASE', 'error',
        `${name}: header name ${JSON.stringify(k.key)} has capital letters and can never be present: HTTP/2 field names are ` +
        `lower case (RFC 9113 §8.2.1) and ${k.map} holds them lower-cased; write ${JSON.stringify(k.key.toLowerCase())}`));
    }
    const denies = readErrorDenies(p, role);
    if (denies !== null) {
      for (const r of facts.unguarded) {
        if (wrongCase.has(r.node)) continue; // one finding says it
        const guard = `${JSON.stringify(r.key)} in ${r.map}`;
        out.push(atNode(expr.source, r.node, 'WG_LINT_UNGUARDED_READ', 'warning',
          `${name}: ${showRead(r)} is read without checking that it is present, so it fails to evaluate for every tunnel ` +
          `without it, and ${denies}. Guard the read: ${guard} && ${showRead(r)} == "..."`));
      }
    }
    checkAddressLiterals(ast, expr.source, name, out);
  }
}

/** The address attribute (`source.ip`, `destination.ip`: the catalogue's `ip` format) `node` denotes, null for anything else. */
function addressAttribute(node: ASTNode): string | null {
  if (node.op !== '.') return null;
  const obj = node.args[0];
  if (obj.op !== 'id') return null;
  const path = `${obj.args}.${node.args[1]}`;
  return attributeAt(path)?.format === 'ip' ? path : null;
}

function stringLiteral(node: ASTNode): string | null {
  return node.op === 'value' && typeof node.args === 'string' ? node.args : null;
}

/**
 * Address literals that can never equal an address attribute (which always holds canonical text,
 * docs/design.md §3: IPv4-mapped IPv6 as IPv4, IPv6 per RFC 5952), and CIDR literals with host bits set.
 */
function checkAddressLiterals(ast: ASTNode, source: ExpressionSource, name: string, out: LintDiagnostic[]): void {
  const ipLiteral = (attr: string, lit: ASTNode): void => {
    const text = stringLiteral(lit);
    if (text === null || text === '') return; // "" is the attribute's "no address" value
    const canonical = canonicalIp(text);
    if (canonical === text) return;
    const fix = canonical === null
      ? 'it is not an address the gateway accepts (IPv4 without leading zeros, IPv6 without a zone)'
      : `write ${JSON.stringify(canonical)}, or compare parsed addresses: ip(${attr}) == ip(${JSON.stringify(text)})`;
    out.push(atNode(source, lit, 'WG_LINT_IP_LITERAL', 'warning',
      `${name}: ${attr} is compared with ${JSON.stringify(text)}, which it can never equal: ${attr} is always canonical ` +
      `text (IPv4-mapped IPv6 as IPv4, IPv6 lower case per RFC 5952); ${fix}`));
  };
  const cidrLiteral = (lit: ASTNode): void => {
    const text = stringLiteral(lit);
    if (text === null) return;
    const r = parseCidrDetailed(text);
    if (!('cidr' in r)) return; // the loader refuses invalid literals
    const c = r.cidr;
    if (c.address.words.every((w, i) => w === c.network.words[i])) return;
    const masked = `${formatIp(c.network)}/${c.prefixLength}`;
    out.push(atNode(source, lit, 'WG_LINT_CIDR_HOST_BITS', 'warning',
      `${name}: CIDR ${JSON.stringify(text)} has host bits set; containment ignores them, so it is the block ${masked}. ` +
      `Write ${JSON.stringify(masked)} (or a /${c.family === 4 ? 32 : 128} for the single address)`));
  };
  const visit = (node: ASTNode): void => {
    switch (node.op) {
      case '==':
      case '!=': {
        const [a, b] = node.args;
        const attrA = addressAttribute(a);
        const attrB = addressAttribute(b);
        if (attrA) ipLiteral(attrA, b);
        if (attrB) ipLiteral(attrB, a);
        break;
      }
      case 'in': {
        const [a, b] = node.args;
        const attr = addressAttribute(a);
        if (attr && b.op === 'list') for (const e of b.args) ipLiteral(attr, e);
        break;
      }
      case 'call':
        if (node.args[0] === 'cidr' && node.args[1].length === 1) cidrLiteral(node.args[1][0]!);
        break;
      case 'rcall':
        if (node.args[0] === 'containsCIDR' && node.args[2].length === 1) cidrLiteral(node.args[2][0]!);
        break;
      default:
        break;
    }
    for (const ch of childNodes(node)) visit(ch);
  };
  visit(ast);
}

// ---------------------------------------------------------------------------------------------
// Helpers

function allExpressions(p: PolicyView): { expr: ExprView }[] {
  const list: { expr: ExprView }[] = [];
  if (p.selector) list.push({ expr: p.selector });
  for (const v of p.variables) list.push({ expr: v.expr });
  for (const r of p.rules) list.push({ expr: r.when });
  return list;
}

/**
 * Replaces the contents of CEL string literals with spaces (offsets preserved), so a word inside a
 * string (`"matches("`) is not taken for code. Handles '…', "…", triple-quoted and raw strings and
 * backslash escapes (CEL spec, "String and bytes literals").
 */
export function stripStringLiterals(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c !== '"' && c !== "'") {
      out += c;
      i++;
      continue;
    }
    const raw = i > 0 && /[rR]/.test(text[i - 1]!) && (i < 2 || !/[\w]/.test(text[i - 2]!));
    const triple = text.startsWith(c.repeat(3), i);
    const close = triple ? c.repeat(3) : c;
    out += triple ? close : c;
    i += close.length;
    while (i < text.length && !text.startsWith(close, i)) {
      if (text[i] === '\\' && !raw && i + 1 < text.length) {
        out += '  ';
        i += 2;
        continue;
      }
      out += text[i] === '\n' ? '\n' : ' ';
      i++;
    }
    if (i < text.length) {
      out += close;
      i += close.length;
    }
  }
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `spec.variables[1].expression` -> `spec.variables[1]`. */
function parentPath(path: string): string {
  const dot = path.lastIndexOf('.');
  return dot > 0 ? path.slice(0, dot) : path;
}
