/**
 * `waygate audit query`: filter records and print them as a table, JSON lines or CSV. Cheap
 * filters run first (event, decision, reason, time, identity), the CEL `--where` last, so a
 * selective flag keeps CEL off most records.
 */
import { BlockList, isIP } from 'node:net';
import { WaygateError } from '../../errors.ts';
import { didYouMean } from '../../util/suggest.ts';
import { ALL_REASONS } from '../../policy/decision.ts';
import type { AuditRecord, CloseReason, CloseRecord, DecisionRecord, ReloadRecord } from '../record.ts';
import { wildcardToRegExp } from './glob.ts';
import { compileRecordPredicate, type RecordPredicate } from './record-cel.ts';
import { renderTextTable } from './table.ts';

export type AuditEvent = AuditRecord['event'];

export interface QueryFilters {
  /** Events to keep; default decision records only. */
  events?: readonly AuditEvent[];
  decision?: 'allow' | 'deny';
  /** Any of these reasons (close records: their closeReason). */
  reasons?: readonly string[];
  /** Glob over the full SPIFFE ID (`*` crosses `/`); `""` matches records without identity. */
  principal?: string;
  namespaces?: readonly string[];
  /** Matches the deciding policy, an AUDIT match, a dry-run match or an eval error. */
  policy?: string;
  /** Same places as `policy`; with both, the pair must match. */
  rule?: string;
  /** `ip`, `ip:port`, `[v6]:port`, `cidr`, or `host:port`. */
  destination?: string;
  sinceMs?: number | null;
  untilMs?: number | null;
  where?: string;
}

/** A compiled query: `test()` per record plus the CEL predicate (for its error counters). */
export interface CompiledQuery {
  test(record: AuditRecord): boolean;
  where: RecordPredicate | null;
}

/** Every close reason (src/audit/record.ts `CloseReason`; the check below keeps the two in step). */
export const ALL_CLOSE_REASONS = [
  'completed', 'client_reset', 'upstream_reset', 'upstream_failed', 'policy_changed', 'draining', 'idle_timeout', 'session_closed', 'error',
  'audit_unavailable',
] as const satisfies readonly CloseReason[];
/** Every reload result (`ReloadRecord.result`). */
export const ALL_RELOAD_RESULTS = ['applied', 'rejected', 'unchanged'] as const satisfies readonly ReloadRecord['result'][];
/** Every event type. */
export const ALL_EVENTS = ['decision', 'close', 'reload'] as const satisfies readonly AuditEvent[];
// Compile-time exhaustiveness: a value added to one of the unions and not to the lists fails tsc.
type Missing<U, L extends readonly unknown[]> = Exclude<U, L[number]>;
const exhaustive: [Missing<CloseReason, typeof ALL_CLOSE_REASONS>, Missing<ReloadRecord['result'], typeof ALL_RELOAD_RESULTS>, Missing<AuditEvent, typeof ALL_EVENTS>] extends [never, never, never] ? true : false = true;
void exhaustive;

/** The values `--reason` accepts for each event type (decision reason, close reason, reload result). */
const REASONS_BY_EVENT: Record<AuditEvent, readonly string[]> = {
  decision: ALL_REASONS,
  close: ALL_CLOSE_REASONS,
  reload: ALL_RELOAD_RESULTS,
};

/**
 * Refuses a `--reason` or `--decision` value that no selected event type can carry, with a "did
 * you mean" (closed sets, docs/design.md §4): `--reason explict_deny` would otherwise match nothing and
 * print an empty table, indistinguishable from "no such denies".
 */
export function validateFilterValues(f: Pick<QueryFilters, 'events' | 'decision' | 'reasons'>): void {
  const events: readonly AuditEvent[] = f.events && f.events.length > 0 ? f.events : ['decision'];
  if (f.decision !== undefined && f.decision !== 'allow' && f.decision !== 'deny') {
    throw new WaygateError('WG_USAGE', `--decision ${JSON.stringify(f.decision)}: expected allow or deny${didYouMean(f.decision, ['allow', 'deny'])}`);
  }
  for (const reason of f.reasons ?? []) {
    const allowed = events.flatMap((e) => REASONS_BY_EVENT[e]);
    if (allowed.includes(reason)) continue;
    const what = events.map((e) => (e === 'decision' ? 'decision reasons' : e === 'close' ? 'close reasons' : 'reload results')).join(', ');
    const elsewhere = ALL_EVENTS.filter((e) => !events.includes(e) && REASONS_BY_EVENT[e].includes(reason));
    const hint = elsewhere.length > 0 ? ` (it is a ${elsewhere[0]} ${elsewhere[0] === 'reload' ? 'result' : 'reason'}: add --event ${elsewhere[0]})` : didYouMean(reason, [...new Set(allowed)]);
    throw new WaygateError('WG_USAGE', `--reason ${JSON.stringify(reason)}: not one of the ${what}${hint}; expected one of ${[...new Set(allowed)].join(', ')}`);
  }
}


/**
 * Compiles filters once; throws WaygateError(WG_USAGE) for a value outside a closed set
 * (`--reason`, `--decision`), a bad destination or `--where`.
 */
export function compileQuery(f: QueryFilters): CompiledQuery {
  validateFilterValues(f);
  const events = new Set<string>(f.events && f.events.length > 0 ? f.events : ['decision']);
  const reasons = f.reasons && f.reasons.length > 0 ? new Set(f.reasons) : null;
  const namespaces = f.namespaces && f.namespaces.length > 0 ? new Set(f.namespaces) : null;
  const principalRe = f.principal !== undefined ? wildcardToRegExp(f.principal) : null;
  const dest = f.destination !== undefined ? compileDestination(f.destination) : null;
  const since = f.sinceMs ?? null;
  const until = f.untilMs ?? null;
  const where = f.where !== undefined && f.where.trim() !== '' ? compileRecordPredicate(f.where) : null;
  const ruleFilter = f.policy !== undefined || f.rule !== undefined ? { policy: f.policy, rule: f.rule } : null;

  const test = (rec: AuditRecord): boolean => {
    if (!events.has(rec.event)) return false;
    if (f.decision !== undefined && (rec.event !== 'decision' || rec.decision !== f.decision)) return false;
    if (reasons !== null) {
      const r = rec.event === 'decision' ? rec.reason : rec.event === 'close' ? rec.closeReason : rec.result;
      if (!reasons.has(r)) return false;
    }
    if (since !== null || until !== null) {
      const t = Date.parse(rec.time);
      if (since !== null && !(t >= since)) return false;
      if (until !== null && !(t < until)) return false;
    }
    if (rec.event === 'reload') {
      // Reload records carry no identity or destination: identity filters exclude them.
      if (principalRe || namespaces || dest || ruleFilter) return false;
    } else {
      if (principalRe !== null && !principalRe.test(rec.source.principal ?? '')) return false;
      if (namespaces !== null && !namespaces.has(rec.source.namespace ?? '')) return false;
      if (dest !== null && !dest(rec.destination)) return false;
      if (ruleFilter !== null && !matchesRule(rec, ruleFilter.policy, ruleFilter.rule)) return false;
    }
    if (where !== null && !where.test(rec)) return false;
    return true;
  };
  return { test, where };
}

function matchesRule(rec: DecisionRecord | CloseRecord, policy: string | undefined, rule: string | undefined): boolean {
  const hit = (p: string | null | undefined, r: string | null | undefined) =>
    p != null && (policy === undefined || p === policy) && (rule === undefined || r === rule);
  if (hit(rec.policy, rec.rule)) return true;
  if (rec.event !== 'decision') return false;
  for (const a of rec.audit ?? []) if (hit(a.policy, a.rule)) return true;
  for (const e of rec.evalErrors ?? []) if (hit(e.policy, e.rule)) return true;
  const dry = rec.dryRun;
  if (dry) {
    if (hit(dry.policy, dry.rule)) return true;
    for (const m of dry.matches ?? []) if (hit(m.policy, m.rule)) return true;
  }
  return false;
}

type DestinationTest = (d: { ip: string; port: number; host: string; authority: string }) => boolean;

/** Parses `--destination`: an address, address:port, CIDR (optionally `:port`), or host:port. */
export function compileDestination(spec: string): DestinationTest {
  const s = spec.trim();
  const usage = () =>
    new WaygateError('WG_USAGE', `--destination ${JSON.stringify(spec)}: expected an IP (10.0.0.5), IP:port (10.0.0.5:8080, [fd00::1]:443), a CIDR (10.0.0.0/16) or host:port`);
  let addr = s;
  let port: number | null = null;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  const cidr = /^([^/]+\/\d+)(?::(\d+))?$/.exec(s);
  const hostPort = /^(.*):(\d+)$/.exec(s);
  if (bracket) {
    addr = bracket[1]!;
    port = bracket[2] !== undefined ? Number(bracket[2]) : null;
  } else if (cidr) {
    // `fd00::/8` and `10.0.0.0/8:5432`: the port, if any, follows the prefix length.
    addr = cidr[1]!;
    port = cidr[2] !== undefined ? Number(cidr[2]) : null;
  } else if (isIP(s) === 0 && hostPort) {
    addr = hostPort[1]!;
    port = Number(hostPort[2]);
  }
  if (port !== null && (!Number.isInteger(port) || port > 65535)) throw usage();
  const portOk = (p: number) => port === null || p === port;
  if (addr.includes('/')) {
    const [net, bitsText] = addr.split('/') as [string, string];
    const family = isIP(net);
    const bits = Number(bitsText);
    if (family === 0 || !/^\d+$/.test(bitsText) || bits > (family === 4 ? 32 : 128)) throw usage();
    const list = new BlockList();
    list.addSubnet(net, bits, family === 4 ? 'ipv4' : 'ipv6');
    return (d) => {
      if (!portOk(d.port)) return false;
      const fam = isIP(d.ip);
      return fam !== 0 && list.check(d.ip, fam === 4 ? 'ipv4' : 'ipv6');
    };
  }
  if (isIP(addr) !== 0) {
    const want = addr.toLowerCase();
    return (d) => portOk(d.port) && d.ip.toLowerCase() === want;
  }
  if (!/^[A-Za-z0-9.-]+$/.test(addr) || addr === '') throw usage();
  const host = addr.toLowerCase();
  return (d) => portOk(d.port) && (d.host.toLowerCase() === host || d.authority.toLowerCase().startsWith(host + ':'));
}

// ---------------------------------------------------------------------------------------------
// Output

export type QueryFormat = 'table' | 'jsonl' | 'csv';

const COLUMNS = [
  'time', 'event', 'decision', 'reason', 'status', 'principal', 'sourceIp', 'destination', 'policy', 'rule',
  'dryRun', 'audit', 'bytesSent', 'bytesReceived', 'durationMs', 'traceId', 'decisionId',
] as const;
const TABLE_COLUMNS = ['time', 'event', 'decision', 'reason', 'principal', 'destination', 'policy', 'rule'] as const;

/** The flat row of a record (columns shared by table and CSV). */
export function recordRow(rec: AuditRecord): Record<(typeof COLUMNS)[number], string> {
  const row = Object.fromEntries(COLUMNS.map((c) => [c, ''])) as Record<(typeof COLUMNS)[number], string>;
  row.time = rec.time;
  row.event = rec.event;
  if (rec.event === 'reload') {
    row.reason = rec.result;
    if ('source' in rec && rec.source === 'mesh') {
      row.policy = `mesh: ${rec.services} services`;
      row.rule = `${rec.workloads} workloads`;
    } else {
      row.policy = `${rec.policies} policies`;
      row.rule = `${rec.rules} rules`;
    }
    return row;
  }
  row.principal = rec.source.principal || '(no identity)';
  row.sourceIp = rec.source.ip ?? '';
  row.destination = rec.destination.authority || `${rec.destination.ip}:${rec.destination.port}`;
  row.policy = rec.policy ?? '';
  row.rule = rec.rule ?? '';
  row.decisionId = rec.decisionId ?? '';
  if (rec.event === 'decision') {
    row.decision = rec.decision;
    row.reason = rec.reason;
    row.status = String(rec.status ?? '');
    row.dryRun = rec.dryRun ? `${rec.dryRun.decision}${rec.dryRun.policy ? ` (${rec.dryRun.policy}/${rec.dryRun.rule})` : ''}` : '';
    row.audit = (rec.audit ?? []).map((a) => `${a.policy}/${a.rule}`).join(' ');
    row.traceId = rec.traceId ?? '';
  } else {
    row.reason = rec.closeReason;
    row.bytesSent = String(rec.bytesSent);
    row.bytesReceived = String(rec.bytesReceived);
    row.durationMs = String(rec.durationMs);
  }
  return row;
}

/**
 * One CSV field (RFC 4180 quoting). Cells starting with `= + - @`, tab or CR are prefixed with
 * `'` so a spreadsheet never evaluates attacker-chosen text as a formula (OWASP "CSV injection").
 */
export function csvField(value: string): string {
  let v = value;
  if (/^[=+\-@\t\r]/.test(v)) v = `'${v}`;
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** Streams query output: rows are written as they match (the table buffers up to its limit). */
export class QueryWriter {
  private readonly tableRows: string[][] = [];
  private started = false;
  count = 0;
  constructor(
    private readonly format: QueryFormat,
    private readonly out: { write(s: string): unknown },
  ) {}

  write(rec: AuditRecord): void {
    this.count++;
    if (this.format === 'jsonl') {
      this.out.write(JSON.stringify(rec) + '\n');
      return;
    }
    const row = recordRow(rec);
    if (this.format === 'csv') {
      if (!this.started) this.out.write(COLUMNS.join(',') + '\r\n');
      this.started = true;
      this.out.write(COLUMNS.map((c) => csvField(row[c])).join(',') + '\r\n');
      return;
    }
    this.tableRows.push(TABLE_COLUMNS.map((c) => row[c]));
  }

  /** Writes what was buffered (the table) and, for CSV with no match, the header line. */
  end(): void {
    if (this.format === 'csv' && !this.started) this.out.write(COLUMNS.join(',') + '\r\n');
    if (this.format === 'table') {
      this.out.write(renderTextTable([...TABLE_COLUMNS], this.tableRows) + '\n');
    }
  }
}
