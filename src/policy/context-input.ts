/**
 * Builds a DecisionContext from a hand-written input: a PolicyTest case's `input`, the JSON body of
 * `policy eval` / `POST /debug/explain`, or an audit decision record being replayed. One builder,
 * so a policy test, an explain request and a replay of a real decision see the same context.
 *
 * docs/design.md §3 "Policy tests": fields left out take their no-identity / empty value; `trustDomain`,
 * `namespace` and `serviceAccount` derive from `principal` (SPIFFE ID spec and Istio's
 * `ns/<ns>/sa/<sa>` convention). Addresses are canonicalised as the transport does (IPv4-mapped
 * IPv6 becomes IPv4, RFC 5952 text for IPv6), `now` defaults to the Unix epoch.
 */
import { recordedInput, type DecisionRecord } from '../audit/record.ts';
import { WaygateError } from '../errors.ts';
import { parseSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import { canonicalIp } from '../net/address.ts';
import { compileObjectBuilder, GROUPS, inputAttributes, TOP_LEVEL, type Attribute } from './attribute-tables.ts';
import { emptyContext, type DecisionContext } from './context.ts';
import type { PolicyTestInput } from './model.ts';

/** The fields an input may state: the catalogue's groups and top-level attributes, then each group's non-derived attributes. */
const INPUT_FIELDS: Record<string, readonly string[]> = {
  '': [...GROUPS.map((g) => g.name), ...TOP_LEVEL.map((a) => a.name)],
  ...Object.fromEntries(GROUPS.map((g) => [g.name, inputAttributes(g).map((a) => a.name)])),
};

// Objects of the shape an object literal gives (what the transport's builders give too), not
// objects grown one property at a time: the engine reads them on every decision of a replay.
const GROUP_BUILDERS = GROUPS.map((g) =>
  compileObjectBuilder<readonly unknown[], undefined, object>(`input_${g.name}`, g.attributes.map((a, i) => [a.name, { of: 'x', key: String(i) }] as const)),
);
const buildContext = compileObjectBuilder<readonly object[], readonly unknown[], DecisionContext>('inputContext', [
  ...GROUPS.map((g, i) => [g.name, { of: 'x', key: String(i) }] as const),
  ...TOP_LEVEL.map((a, i) => [a.name, { of: 'y', key: String(i) }] as const),
]);

/**
 * Per group, where each attribute's value comes from, by its index in the group: read from the
 * given fields (inputs, in inputAttributes order: the first bad value is the one reported), or a
 * part of a SPIFFE ID input of the same group (attribute-tables.ts checks that `derive.from` names
 * one). Worked out once, so a call fills plain arrays instead of two Maps per group.
 */
const GROUP_PLANS = GROUPS.map((g) => ({
  size: g.attributes.length,
  inputs: inputAttributes(g).map((a) => ({ a, at: g.attributes.indexOf(a) })),
  derived: g.attributes.flatMap((a, at) => {
    const d = a.def.derive;
    return d === undefined ? [] : [{ at, from: g.attributes.findIndex((x) => x.name === d.from), part: d.part }];
  }),
}));

/** Thrown for input that cannot become a context; the message names the field path. */
function bad(path: string, message: string): WaygateError {
  return new WaygateError('WG_USAGE', `input.${path}: ${message}`);
}

/**
 * Builds a context from a PolicyTestInput or equivalent parsed JSON. Unknown fields and values of
 * the wrong type are refused (docs/design.md §3: unknown fields are an error) with a WaygateError
 * (`WG_USAGE`) naming the field path.
 */
export function contextFromInput(input: PolicyTestInput | unknown): DecisionContext {
  if (input === undefined || input === null) return emptyContext();
  const root = object(input, '', true);
  // Every object's fields first, so an unknown field is reported before a bad value.
  const given = GROUPS.map((g) => object(root[g.name], g.name));
  const groups = GROUP_PLANS.map((plan, i) => {
    const fields = given[i]!;
    // The group's values in catalogue order.
    const ordered: unknown[] = new Array(plan.size);
    const ids: (SpiffeId | null)[] = [];
    for (const { a, at } of plan.inputs) {
      if (a.format === 'spiffe-id') {
        // Parsed once: its value and the parts the derived attributes take from it.
        const { text, id } = spiffeValue(fields[a.name], a.path);
        ordered[at] = text;
        ids[at] = id;
      } else {
        ordered[at] = parseValue(a, fields[a.name]);
      }
    }
    for (const { at, from, part } of plan.derived) ordered[at] = ids[from]?.[part] ?? '';
    return GROUP_BUILDERS[i]!(ordered, undefined, undefined);
  });
  return buildContext(groups, TOP_LEVEL.map((a) => parseValue(a, root[a.name])), undefined);
}

/** A SPIFFE ID attribute's text (`""`: none) and its parse; a text that is not a SPIFFE ID is refused. */
function spiffeValue(v: unknown, path: string): { text: string; id: SpiffeId | null } {
  const text = str(v, path);
  if (text === '') return { text, id: null };
  const id = parseSpiffeId(text);
  if (id === null) throw bad(path, `"${text}" is not a SPIFFE ID (spiffe://<trust-domain>/<path>)`);
  return { text, id };
}

/** One attribute's value from an input, by its format; transport conventions applied (lower case, canonical addresses). */
function parseValue(a: Attribute, v: unknown): unknown {
  const path = a.path;
  switch (a.format) {
    case 'string':
      return str(v, path);
    case 'lowercase':
      return str(v, path).toLowerCase();
    case 'spiffe-id':
      return spiffeValue(v, path).text;
    case 'ip':
      return ip(v, path);
    case 'port':
      return port(v, path);
    case 'header-map':
      return stringMap(v, path, true);
    case 'string-map':
      return stringMap(v, path, false);
    case 'timestamp':
      return time(v, path);
  }
}

/**
 * Rebuilds the context an audit decision record was decided with (`audit replay`). The record holds
 * the full evaluation input except headers outside the allow-list (docs/design.md §4); `time` is `now`.
 */
export function contextFromAuditRecord(r: DecisionRecord): DecisionContext {
  return contextFromInput(recordedInput(r));
}

function object(v: unknown, path: string, root = false): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(path || '<root>', 'must be an object');
  const allowed = INPUT_FIELDS[root ? '' : path] ?? [];
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) {
      throw bad(path ? `${path}.${k}` : k, `unknown field (expected one of ${allowed.join(', ')})`);
    }
  }
  return v as Record<string, unknown>;
}

function str(v: unknown, path: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw bad(path, 'must be a string');
  return v;
}

function ip(v: unknown, path: string): string {
  const s = str(v, path);
  if (s === '') return '';
  const c = canonicalIp(s);
  if (c === null) throw bad(path, `"${s}" is not an IPv4 or IPv6 address`);
  return c;
}

function port(v: unknown, path: string): number {
  if (v === undefined || v === null) return 0;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) throw bad(path, 'must be an integer port 0-65535');
  return n;
}

/** Header names are lower-cased (RFC 9113 §8.2.1); repeated names join with ", " like the transport. */
function stringMap(v: unknown, path: string, lowerCaseKeys: boolean): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(path, 'must be a map of strings');
  const out: Record<string, string> = {};
  for (const [k, raw] of Object.entries(v as Record<string, unknown>)) {
    // YAML turns `x-version: 2` into a number; a header value is text, so accept scalars as text.
    if (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean') {
      throw bad(`${path}.${k}`, 'must be a string');
    }
    const key = lowerCaseKeys ? k.toLowerCase() : k;
    const value = String(raw);
    out[key] = Object.hasOwn(out, key) ? `${out[key]}, ${value}` : value;
  }
  return out;
}

/** RFC 3339 timestamp (docs/design.md §3); the epoch when absent so test cases are deterministic. */
function time(v: unknown, path: string): Date {
  if (v === undefined || v === null) return new Date(0);
  if (v instanceof Date) return new Date(v.getTime());
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(v)) {
    throw bad(path, 'must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z');
  }
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw bad(path, `"${v}" is not a valid time`);
  return d;
}
