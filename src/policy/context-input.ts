/**
 * Builds a DecisionContext from a hand-written input: a PolicyTest case's `input`, the JSON body of
 * `policy eval` / `POST /debug/explain`, or an audit decision record being replayed. One builder,
 * so a policy test, an explain request and a replay of a real decision see the same context.
 *
 * DESIGN §3 "Policy tests": fields left out take their no-identity / empty value; `trustDomain`,
 * `namespace` and `serviceAccount` derive from `principal` (SPIFFE ID spec and Istio's
 * `ns/<ns>/sa/<sa>` convention). Addresses are canonicalised as the transport does (IPv4-mapped
 * IPv6 becomes IPv4, RFC 5952 text for IPv6), `now` defaults to the Unix epoch.
 */
import type { DecisionRecord } from '../audit/record.ts';
import { WaygateError } from '../errors.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
import { canonicalIp } from '../net/address.ts';
import { emptyContext, type DecisionContext } from './context.ts';
import type { PolicyTestInput } from './model.ts';

const INPUT_FIELDS: Record<string, readonly string[]> = {
  '': ['source', 'destination', 'request', 'connection', 'now'],
  source: ['principal', 'ip', 'port'],
  destination: ['ip', 'host', 'port', 'authority'],
  request: ['headers', 'baggage', 'traceId'],
  connection: ['id', 'tlsVersion'],
};

/** Thrown for input that cannot become a context; the message names the field path. */
function bad(path: string, message: string): WaygateError {
  return new WaygateError('WG_USAGE', `input.${path}: ${message}`);
}

/**
 * Builds a context from a PolicyTestInput or equivalent parsed JSON. Unknown fields and values of
 * the wrong type are refused (DESIGN §3: unknown fields are an error) with a WaygateError
 * (`WG_USAGE`) naming the field path.
 */
export function contextFromInput(input: PolicyTestInput | unknown): DecisionContext {
  if (input === undefined || input === null) return emptyContext();
  const root = object(input, '', true);
  const src = object(root.source, 'source');
  const dst = object(root.destination, 'destination');
  const req = object(root.request, 'request');
  const conn = object(root.connection, 'connection');

  const principal = str(src.principal, 'source.principal');
  let trustDomain = '';
  let namespace = '';
  let serviceAccount = '';
  if (principal !== '') {
    const id = parseSpiffeId(principal);
    if (id === null) throw bad('source.principal', `"${principal}" is not a SPIFFE ID (spiffe://<trust-domain>/<path>)`);
    ({ trustDomain, namespace, serviceAccount } = id);
  }
  return {
    source: {
      principal,
      trustDomain,
      namespace,
      serviceAccount,
      ip: ip(src.ip, 'source.ip'),
      port: port(src.port, 'source.port'),
    },
    destination: {
      ip: ip(dst.ip, 'destination.ip'),
      host: str(dst.host, 'destination.host').toLowerCase(),
      port: port(dst.port, 'destination.port'),
      authority: str(dst.authority, 'destination.authority'),
    },
    request: {
      headers: stringMap(req.headers, 'request.headers', true),
      baggage: stringMap(req.baggage, 'request.baggage', false),
      traceId: str(req.traceId, 'request.traceId').toLowerCase(),
    },
    connection: { id: str(conn.id, 'connection.id'), tlsVersion: str(conn.tlsVersion, 'connection.tlsVersion') },
    now: time(root.now, 'now'),
  };
}

/**
 * Rebuilds the context an audit decision record was decided with (`audit replay`). The record holds
 * the full evaluation input except headers outside the allow-list (DESIGN §4); `time` is `now`.
 */
export function contextFromAuditRecord(r: DecisionRecord): DecisionContext {
  return contextFromInput({
    source: { principal: r.source.principal, ip: r.source.ip, port: r.source.port },
    destination: { ip: r.destination.ip, host: r.destination.host, port: r.destination.port, authority: r.destination.authority },
    request: { headers: r.headers ?? {}, baggage: r.baggage ?? {}, traceId: r.traceId ?? '' },
    connection: { id: r.connection?.id ?? r.connectionId ?? '', tlsVersion: r.connection?.tlsVersion ?? '' },
    now: r.time,
  } satisfies PolicyTestInput);
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

/** RFC 3339 timestamp (DESIGN §3); the epoch when absent so test cases are deterministic. */
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
