/**
 * CEL over audit records for `waygate audit query --where`: a small environment that declares the
 * record's fields (docs/design.md §4) so an expression is type-checked before the scan starts (a typo in
 * `--where` is a usage error with a caret at the position, not a silent empty result).
 *
 * Separate from the policy environment on purpose: policies see the decision *input*
 * (`source.*`, `request.headers`), queries see the *record* (`decision`, `reason`, `policy`,
 * `dryRun`, `bytesSent`, ...). Integers are CEL `int`: the activation converts record numbers to
 * BigInt because the engine refuses mixed int/double comparisons (docs/design.md §8.1).
 */
import { Environment } from '@marcbachmann/cel-js';
import { WaygateError } from '../../errors.ts';
import { GROUPS } from '../../policy/attribute-tables.ts';
import { suggest } from '../../util/suggest.ts';
import type { AuditRecord } from '../record.ts';
import { INPUT_VARIABLES, kindOf, RECORD_CEL_VARIABLES, RULE_REF_TYPE, typeName, type FieldKind } from './record-variables.ts';

/**
 * The record's nested structures as CEL message types (docs/design.md §4 field lists, src/audit/record.ts).
 * Declared field by field so `source.namespce` is a load error with a caret, not a lookup that
 * quietly finds nothing on every record (a `map<string, dyn>` accepts any key at check time).
 * Each type is a small class because cel-js finds a value's message type by its constructor
 * (same representation as the policy environment, src/policy/cel/environment.ts).
 */
class CelMessage {
  constructor(fields: Record<string, unknown>) {
    Object.assign(this, fields);
  }
}
class AuditSnapshotValue extends CelMessage {}
class AuditRuleRefValue extends CelMessage {}
class AuditEvalErrorValue extends CelMessage {}
class AuditDryRunValue extends CelMessage {}
class AuditUpstreamValue extends CelMessage {}

/** The `dryRun` of a record without one: a DryRun with no fields, equal to `null` (see below). */
const NO_DRY_RUN = new AuditDryRunValue({});

interface RecordType {
  name: string;
  ctor: new (fields: Record<string, unknown>) => CelMessage;
  fields: Record<string, FieldKind>;
}

/**
 * The evaluation input as the record holds it (the attribute catalogue's `record` layout): a
 * message type per nested group (`source` -> `waygate.audit.Source`), a variable per attribute of
 * a flat group (`traceId`, `headers`, `baggage`).
 */
const INPUT_TYPES: readonly RecordType[] = GROUPS.filter((g) => g.def.record === 'nested').map((g) => ({
  name: typeName(g.name),
  // One class per type: cel-js finds a value's message type by its constructor.
  ctor: class extends CelMessage {},
  fields: Object.fromEntries(g.attributes.map((a) => [a.name, kindOf(a)])),
}));
const RECORD_TYPES: readonly RecordType[] = [
  ...INPUT_TYPES,
  { name: 'waygate.audit.Snapshot', ctor: AuditSnapshotValue, fields: { version: 'int', hash: 'string' } },
  { name: RULE_REF_TYPE, ctor: AuditRuleRefValue, fields: { policy: 'string', rule: 'string', action: 'string', mode: 'string' } },
  { name: 'waygate.audit.EvalError', ctor: AuditEvalErrorValue, fields: { policy: 'string', rule: 'string', message: 'string' } },
  {
    // A record without one (no discovery) has every field empty: `upstream.protocol == ""`.
    name: 'waygate.audit.Upstream',
    ctor: AuditUpstreamValue,
    fields: { service: 'string', workload: 'string', address: 'string', protocol: 'string', principal: 'string', reused: 'bool', connectMs: 'int' },
  },
  {
    // `policy` and `rule` are null for default verdicts, hence dyn (like the top-level ones).
    name: 'waygate.audit.DryRun',
    ctor: AuditDryRunValue,
    fields: { decision: 'string', reason: 'string', policy: 'dyn', rule: 'dyn', wouldChange: 'bool', matches: `list<${RULE_REF_TYPE}>` },
  },
];
const TYPE_BY_NAME = new Map(RECORD_TYPES.map((t) => [t.name, t]));

const INT_FIELDS = ['schema', 'streamId', 'status', 'evalMicros', 'bytesSent', 'bytesReceived', 'durationMs'] as const;
const STRING_FIELDS = ['event', 'time', 'decisionId', 'connectionId', 'decision', 'reason', 'detail', 'closeReason', 'protocol', 'result'] as const;

/** A type-checked `--where` predicate. */
export interface RecordPredicate {
  readonly expression: string;
  /** True when the expression holds; a runtime error (e.g. `dryRun.decision` without a dry run) is false. */
  test(record: AuditRecord): boolean;
  /**
   * Records the predicate was evaluated on, runtime errors among them, and the first error
   * message. When every evaluation failed the expression is wrong for this input, not the data:
   * `audit query` then exits 2 with the first error.
   */
  readonly errors: { evaluated: number; count: number; first: string | null };
}

function buildEnvironment(): Environment {
  const env = new Environment({ homogeneousAggregateLiterals: false, limits: { maxAstNodes: 2000, maxDepth: 64 } });
  for (const t of RECORD_TYPES) env.registerType(t.name, { ctor: t.ctor, fields: { ...t.fields } });
  // cel-js has no `message == null` overload; records without a dry run carry NO_DRY_RUN, which
  // is the only DryRun equal to null, so the documented guard `dryRun != null && ...` keeps working
  // and `dryRun.decision` on such a record is a runtime "no such key" (counted as no match).
  env.registerOperator('waygate.audit.DryRun == null', (a: unknown, b: unknown) => a === NO_DRY_RUN || b === NO_DRY_RUN);
  for (const [name, type] of RECORD_CEL_VARIABLES) env.registerVariable(name, type);
  return env;
}

/** Deep-converts JS numbers that are integers to BigInt (inside `dyn` values). */
function toCel(v: unknown): unknown {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (Array.isArray(v)) return v.map(toCel);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toCel(x);
    return out;
  }
  return v;
}

/**
 * An instance of a declared record type from a JSON value. Every declared field is present with
 * its declared type (missing or mistyped fields of a hand-edited or partial record take `""`, `0`,
 * `false`, `[]`), so a field access never fails because of the data's shape.
 */
function message(typeName: string, v: unknown): CelMessage {
  const t = TYPE_BY_NAME.get(typeName)!;
  const src = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  const out: Record<string, unknown> = {};
  for (const [field, kind] of Object.entries(t.fields)) out[field] = fieldValue(kind, src[field]);
  return new t.ctor(out);
}

function fieldValue(kind: FieldKind, x: unknown): unknown {
  switch (kind) {
    case 'string':
      return typeof x === 'string' ? x : '';
    case 'int':
      return typeof x === 'number' && Number.isFinite(x) ? BigInt(Math.trunc(x)) : 0n;
    case 'bool':
      return x === true;
    case 'dyn':
      return x === undefined ? null : toCel(x);
    case 'map<string, string>':
      return stringMap(x);
    default:
      return messageList(kind.slice('list<'.length, -1), x);
  }
}

function messageList(typeName: string, v: unknown): CelMessage[] {
  return Array.isArray(v) ? v.map((x) => message(typeName, x)) : [];
}

/** The activation for one record: every declared variable present (absent fields take empty values). */
export function recordActivation(record: AuditRecord): Record<string, unknown> {
  const r = record as unknown as Record<string, unknown>;
  const a: Record<string, unknown> = {};
  for (const f of STRING_FIELDS) a[f] = typeof r[f] === 'string' ? r[f] : '';
  for (const f of INT_FIELDS) a[f] = typeof r[f] === 'number' && Number.isFinite(r[f]) ? BigInt(Math.trunc(r[f] as number)) : 0n;
  a.timestamp = new Date(Date.parse(String(r.time)) || 0);
  a.policy = r.policy ?? null;
  a.rule = r.rule ?? null;
  a.dryRun = r.dryRun !== null && typeof r.dryRun === 'object' ? message('waygate.audit.DryRun', r.dryRun) : NO_DRY_RUN;
  a.audit = messageList(RULE_REF_TYPE, r.audit);
  a.evalErrors = messageList('waygate.audit.EvalError', r.evalErrors);
  a.snapshot = message('waygate.audit.Snapshot', r.snapshot);
  a.upstream = message('waygate.audit.Upstream', r.upstream);
  for (const [name, type] of INPUT_VARIABLES) a[name] = TYPE_BY_NAME.has(type) ? message(type, r[name]) : fieldValue(type as FieldKind, r[name]);
  return a;
}

/** A header/baggage map with string values only; a `constructor` key forces a Map (see celStringMap). */
function stringMap(v: unknown): Record<string, string> | Map<string, string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return {};
  const entries = Object.entries(v).filter((e): e is [string, string] => typeof e[1] === 'string');
  if (entries.some(([k]) => k === 'constructor')) return new Map(entries);
  return Object.fromEntries(entries);
}

/** ` (line L, column C)` read off the checker's snippet (`>    1 | expr` then a `^` line), or ''. */
function caretColumn(snippet: readonly string[]): string {
  for (let i = 1; i < snippet.length; i++) {
    const caret = snippet[i]!.indexOf('^');
    const src = /^>\s*(\d+) \| /.exec(snippet[i - 1]!);
    if (caret >= 0 && src) return ` (line ${src[1]}, column ${caret - src[0].length + 1})`;
  }
  return '';
}

/**
 * The checker's error with a "did you mean" for an unknown variable or field, and its column. The
 * checker's caret snippet (the lines after the first) is kept as is.
 */
function checkErrorMessage(err: Error & { code?: string; node?: any }): string {
  const [first = String(err), ...rest] = err.message.split('\n');
  const snippet = rest.length > 0 ? `\n${rest.join('\n')}` : '';
  const column = caretColumn(rest);
  if (err.code === 'unknown_variable') {
    const names = RECORD_CEL_VARIABLES.map(([n]) => n);
    const s = suggest(String(err.node?.args ?? ''), names);
    return `${first}${column}${s ? ` (did you mean "${s}"?)` : ''}; the record variables are ${names.join(', ')}${snippet}`;
  }
  if (err.code === 'no_such_key' && err.node?.op === '.') {
    const field = String(err.node.args[1]);
    const typeName: string | undefined = err.node.args[0]?.checkedType?.name;
    const fields = Object.keys(TYPE_BY_NAME.get(typeName ?? '')?.fields ?? {});
    const owner = err.node.args[0]?.op === 'id' ? String(err.node.args[0].args) : typeName ?? 'value';
    const s = suggest(field, fields);
    const known = fields.length > 0 ? `; ${owner} has ${fields.join(', ')}` : '';
    return `${owner} has no field "${field}"${column}${s ? ` (did you mean "${s}"?)` : ''}${known}${snippet}`;
  }
  return `${first}${column}${snippet}`;
}

/**
 * Parses and type-checks `expression`; it must be a `bool` (or `dyn`). Throws WaygateError
 * (WG_USAGE) with the checker's message, which carries a caret under the offending position.
 */
export function compileRecordPredicate(expression: string): RecordPredicate {
  const env = buildEnvironment();
  let check: ReturnType<Environment['check']>;
  try {
    check = env.check(expression);
  } catch (err) {
    throw new WaygateError('WG_USAGE', `--where: ${(err as Error).message}`, { cause: err });
  }
  if (!check.valid) throw new WaygateError('WG_USAGE', `--where: ${check.error ? checkErrorMessage(check.error) : 'invalid expression'}`);
  if (check.type !== 'bool' && check.type !== 'dyn') {
    throw new WaygateError('WG_USAGE', `--where: the expression must be a bool, this one is ${check.type}\n\n>    1 | ${expression}`);
  }
  const fn = env.parse(expression);
  const errors = { evaluated: 0, count: 0, first: null as string | null };
  return {
    expression,
    errors,
    test(record) {
      errors.evaluated++;
      try {
        return fn(recordActivation(record)) === true;
      } catch (err) {
        errors.count++;
        errors.first ??= (err as Error).message.split('\n')[0] ?? String(err);
        return false;
      }
    },
  };
}
