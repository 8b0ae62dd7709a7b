/**
 * CEL over audit records for `waygate audit query --where`: a small environment that declares the
 * record's fields (DESIGN §4) so an expression is type-checked before the scan starts (a typo in
 * `--where` is a usage error with a caret at the position, not a silent empty result).
 *
 * Separate from the policy environment on purpose: policies see the decision *input*
 * (`source.*`, `request.headers`), queries see the *record* (`decision`, `reason`, `policy`,
 * `dryRun`, `bytesSent`, ...). Integers are CEL `int`: the activation converts record numbers to
 * BigInt because the engine refuses mixed int/double comparisons (FACTS.md).
 */
import { Environment } from '@marcbachmann/cel-js';
import { WaygateError } from '../../errors.ts';
import type { AuditRecord } from '../record.ts';

/** Declared record variables and their CEL types (also listed by `audit query --help`). */
export const RECORD_CEL_VARIABLES: readonly [string, string][] = [
  ['schema', 'int'],
  ['event', 'string'],
  ['time', 'string'],
  ['timestamp', 'google.protobuf.Timestamp'],
  ['decisionId', 'string'],
  ['connectionId', 'string'],
  ['streamId', 'int'],
  ['decision', 'string'],
  ['reason', 'string'],
  ['status', 'int'],
  ['policy', 'dyn'],
  ['rule', 'dyn'],
  ['dryRun', 'dyn'],
  ['audit', 'list<dyn>'],
  ['evalErrors', 'list<dyn>'],
  ['snapshot', 'map<string, dyn>'],
  ['source', 'map<string, dyn>'],
  ['destination', 'map<string, dyn>'],
  ['traceId', 'string'],
  ['headers', 'map<string, string>'],
  ['baggage', 'map<string, string>'],
  ['connection', 'map<string, dyn>'],
  ['evalMicros', 'int'],
  ['bytesSent', 'int'],
  ['bytesReceived', 'int'],
  ['durationMs', 'int'],
  ['closeReason', 'string'],
  ['result', 'string'],
];

const INT_FIELDS = ['schema', 'streamId', 'status', 'evalMicros', 'bytesSent', 'bytesReceived', 'durationMs'] as const;
const STRING_FIELDS = ['event', 'time', 'decisionId', 'connectionId', 'decision', 'reason', 'traceId', 'closeReason', 'result'] as const;

/** A type-checked `--where` predicate. */
export interface RecordPredicate {
  readonly expression: string;
  /** True when the expression holds; a runtime error (e.g. `dryRun.decision` on null) is false. */
  test(record: AuditRecord): boolean;
  /** Runtime errors seen so far, and the first message (reported once on stderr). */
  readonly errors: { count: number; first: string | null };
}

function buildEnvironment(): Environment {
  const env = new Environment({ homogeneousAggregateLiterals: false, limits: { maxAstNodes: 2000, maxDepth: 64 } });
  for (const [name, type] of RECORD_CEL_VARIABLES) env.registerVariable(name, type);
  return env;
}

/** Deep-converts JS numbers that are integers to BigInt (ports, versions inside nested maps). */
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

/** The activation for one record: every declared variable present (absent fields take empty values). */
export function recordActivation(record: AuditRecord): Record<string, unknown> {
  const r = record as unknown as Record<string, unknown>;
  const a: Record<string, unknown> = {};
  for (const f of STRING_FIELDS) a[f] = typeof r[f] === 'string' ? r[f] : '';
  for (const f of INT_FIELDS) a[f] = typeof r[f] === 'number' && Number.isFinite(r[f]) ? BigInt(Math.trunc(r[f] as number)) : 0n;
  a.timestamp = new Date(Date.parse(String(r.time)) || 0);
  a.policy = r.policy ?? null;
  a.rule = r.rule ?? null;
  a.dryRun = r.dryRun == null ? null : toCel(r.dryRun);
  a.audit = Array.isArray(r.audit) ? toCel(r.audit) : [];
  a.evalErrors = Array.isArray(r.evalErrors) ? toCel(r.evalErrors) : [];
  for (const f of ['snapshot', 'source', 'destination', 'connection'] as const) a[f] = r[f] && typeof r[f] === 'object' ? toCel(r[f]) : {};
  for (const f of ['headers', 'baggage'] as const) a[f] = r[f] && typeof r[f] === 'object' ? r[f] : {};
  return a;
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
  if (!check.valid) throw new WaygateError('WG_USAGE', `--where: ${check.error?.message ?? 'invalid expression'}`);
  if (check.type !== 'bool' && check.type !== 'dyn') {
    throw new WaygateError('WG_USAGE', `--where: the expression must be a bool, this one is ${check.type}\n\n>    1 | ${expression}`);
  }
  const fn = env.parse(expression);
  const errors = { count: 0, first: null as string | null };
  return {
    expression,
    errors,
    test(record) {
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
