/**
 * `waygate audit suggest`: draft least-privilege ALLOW policies from the traffic a log shows was
 * allowed (issue 18 item 3; the walkthrough is docs/reviewing-decisions.md "From audit mode to least
 * privilege"). Pure: decision records in (add()), policy and PolicyTest documents out (result()).
 *
 * What counts as observed traffic is what `audit replay` compares (src/audit/review/replay.ts): the
 * POLICY verdict. A record allowed by policy (`allowed`, `default_allow`) or allowed by policy and
 * then refused by the transport (`destination_not_allowed`, `upstream_failed`, `upstream_denied`) is
 * a caller that used the destination; traffic allowed while a DryRun policy watched it counts too
 * (its enforced verdict is allow, whatever the dry run would have said). Records the engine denied
 * are kept only as deny cases of the PolicyTest; records decided before the engine (`no_identity`,
 * `bad_request`, ...) say nothing about policy and are skipped.
 *
 * Grouping: one policy per destination (the service, its namespace and port when discovery recorded
 * them, else ip:port, else host:port), one rule per caller (its SPIFFE ID; the address only for a
 * caller without one). Memory is bounded by distinct destinations times callers, never by records.
 */
import { stringify as stringifyYaml } from 'yaml';
import { AFTER_POLICY_ALLOW_REASONS } from '../../policy/decision.ts';
import { formatPolicyText } from '../../policy/fmt.ts';
import { API_VERSION } from '../../policy/model.ts';
import { POLICY_NAME_MAX_LENGTH, RULE_NAME_PATTERN } from '../../policy/documents.ts';
import type { AuditRecord, DecisionRecord } from '../record.ts';
import { REPLAYABLE_REASONS } from './replay.ts';
import { formatCount, renderMarkdownTable, renderTextTable } from './table.ts';

export interface SuggestOptions {
  /** A caller seen fewer times than this at a destination gets no rule (default 1). */
  minCount?: number;
  sinceMs?: number | null;
  untilMs?: number | null;
  /** Prefix of every policy name (default `suggested`). */
  prefix?: string;
  /** Deny cases per PolicyTest, from callers denied and never allowed there (default 3). */
  denyCases?: number;
}

/** One caller of one destination. */
export interface SuggestedCaller {
  /** The SPIFFE ID, or `""` for a caller without identity. */
  principal: string;
  /** The caller's address when it has no identity. */
  ip: string;
  count: number;
  firstSeen: string;
  lastSeen: string;
  /** The rule that allows it; `null` when below `--min-count`. */
  rule: string | null;
}

export interface SuggestedDestination {
  /** `service:port` or `ip:port` or `host:port`, as the policy comment says. */
  key: string;
  policy: string;
  file: string;
  allowed: number;
  firstSeen: string;
  lastSeen: string;
  callers: SuggestedCaller[];
  /** Denied decisions (by the engine) to this destination from callers never allowed there. */
  deniedOthers: number;
  /** Denied decisions from callers also allowed there: the suggested rule allows them too. */
  deniedAllowedCallers: number;
}

export interface SuggestResult {
  /** Decision records in the window. */
  decisions: number;
  /** Of them, allowed by policy: what the suggestion is drawn from. */
  allowed: number;
  /** Denied by the engine (replayable denies). */
  denied: number;
  /** Decided before or without the policy engine: not used. */
  skipped: number;
  minCount: number;
  destinations: SuggestedDestination[];
  /** Callers left out by `--min-count`, and their decisions (they will replay as denies). */
  belowThreshold: { callers: number; decisions: number };
  /** Denied decisions to destinations nobody was allowed to reach (no policy selects them). */
  deniedUnsuggested: number;
  /** Files to write: `<policy>.yaml` and `<policy>.test.yaml`, formatted as `policy fmt` does. */
  files: { path: string; text: string }[];
}

interface CallerAcc {
  principal: string;
  ip: string;
  count: number;
  first: string;
  last: string;
  /** The first observed record's input, for the PolicyTest's allow case. */
  sample: CaseInput;
  sampleId: string;
}

interface DeniedAcc {
  caller: string;
  count: number;
  sample: CaseInput;
  sampleId: string;
  reason: string;
}

interface DestAcc {
  key: string;
  kind: 'service' | 'ip' | 'host';
  service: string;
  namespace: string;
  ip: string;
  host: string;
  port: number;
  allowed: number;
  first: string;
  last: string;
  callers: Map<string, CallerAcc>;
  denied: Map<string, DeniedAcc>;
  deniedOverflow: number;
}

/** The part of a record's input a suggested policy reads: all a test case needs to state. */
interface CaseInput {
  source: { principal?: string; ip: string; port?: number };
  destination: { ip?: string; port: number; host?: string; authority?: string; service?: string; namespace?: string };
}

/** Distinct denied callers kept per destination (beyond: counted only). */
const MAX_DENIED_CALLERS = 1000;

/** Streams decision records; call add() per record, then result(). */
export class SuggestAccumulator {
  private decisions = 0;
  private allowed = 0;
  private denied = 0;
  private skipped = 0;
  private readonly dests = new Map<string, DestAcc>();
  private readonly since: number;
  private readonly until: number;
  private readonly windowed: boolean;

  constructor(private readonly options: SuggestOptions = {}) {
    this.since = options.sinceMs ?? -Infinity;
    this.until = options.untilMs ?? Infinity;
    this.windowed = options.sinceMs != null || options.untilMs != null;
  }

  add(rec: AuditRecord): void {
    if (rec.event !== 'decision') return;
    if (this.windowed) {
      const t = Date.parse(rec.time);
      if (!(t >= this.since && t < this.until)) return;
    }
    this.decisions++;
    const policyAllowed = AFTER_POLICY_ALLOW_REASONS.has(rec.reason) || (rec.decision === 'allow' && REPLAYABLE_REASONS.has(rec.reason));
    const engineDenied = !policyAllowed && rec.decision === 'deny' && REPLAYABLE_REASONS.has(rec.reason);
    if (!policyAllowed && !engineDenied) {
      this.skipped++;
      return;
    }
    const dest = this.destination(rec);
    const principal = rec.source.principal ?? '';
    const callerKey = principal !== '' ? principal : `ip:${rec.source.ip}`;
    if (policyAllowed) {
      this.allowed++;
      dest.allowed++;
      if (dest.first === '' || rec.time < dest.first) dest.first = rec.time;
      if (rec.time > dest.last) dest.last = rec.time;
      const c = dest.callers.get(callerKey);
      if (c === undefined) {
        dest.callers.set(callerKey, { principal, ip: principal === '' ? rec.source.ip : '', count: 1, first: rec.time, last: rec.time, sample: caseInput(rec), sampleId: rec.decisionId });
      } else {
        c.count++;
        if (rec.time < c.first) c.first = rec.time;
        if (rec.time > c.last) c.last = rec.time;
      }
      return;
    }
    this.denied++;
    const d = dest.denied.get(callerKey);
    if (d !== undefined) d.count++;
    else if (dest.denied.size < MAX_DENIED_CALLERS) dest.denied.set(callerKey, { caller: callerKey, count: 1, sample: caseInput(rec), sampleId: rec.decisionId, reason: rec.reason });
    else dest.deniedOverflow++;
  }

  private destination(rec: DecisionRecord): DestAcc {
    const d = rec.destination;
    const service = d.service ?? '';
    const kind = service !== '' ? 'service' : d.ip !== '' ? 'ip' : 'host';
    const key = kind === 'service' ? `${service}:${d.port}` : kind === 'ip' ? `${d.ip.includes(':') ? `[${d.ip}]` : d.ip}:${d.port}` : `${d.host}:${d.port}`;
    let acc = this.dests.get(key);
    if (acc === undefined) {
      acc = {
        key, kind, service, namespace: d.namespace ?? '', ip: d.ip, host: d.host, port: d.port,
        allowed: 0, first: '', last: '', callers: new Map(), denied: new Map(), deniedOverflow: 0,
      };
      this.dests.set(key, acc);
    }
    return acc;
  }

  result(): SuggestResult {
    const minCount = this.options.minCount ?? 1;
    const prefix = this.options.prefix ?? 'suggested';
    const denyCases = this.options.denyCases ?? 3;
    const anyService = [...this.dests.values()].some((d) => d.kind === 'service');
    const destinations: SuggestedDestination[] = [];
    const files: { path: string; text: string }[] = [];
    const policyNames = new Set<string>();
    let belowCallers = 0;
    let belowDecisions = 0;
    let deniedUnsuggested = 0;
    const sorted = [...this.dests.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const d of sorted) {
      const callers = [...d.callers.values()].sort((a, b) => b.count - a.count || cmp(callerLabel(a), callerLabel(b)));
      const kept = callers.filter((c) => c.count >= minCount);
      for (const c of callers) {
        if (c.count < minCount) {
          belowCallers++;
          belowDecisions += c.count;
        }
      }
      const deniedTotal = [...d.denied.values()].reduce((s, x) => s + x.count, 0) + d.deniedOverflow;
      if (kept.length === 0) {
        deniedUnsuggested += deniedTotal;
        continue;
      }
      const policy = unique(policyName(prefix, d), policyNames);
      const ruleNames = new Set<string>();
      const rules = new Map<CallerAcc, string>();
      for (const c of kept) rules.set(c, unique(ruleName(c), ruleNames));
      let deniedAllowedCallers = 0;
      const others: DeniedAcc[] = [];
      for (const x of d.denied.values()) {
        const c = d.callers.get(x.caller);
        if (c !== undefined && c.count >= minCount) deniedAllowedCallers += x.count;
        else others.push(x);
      }
      const file = `${policy}.yaml`;
      files.push({ path: file, text: formatPolicyText(renderPolicy(policy, d, kept, rules, anyService, deniedTotal, deniedAllowedCallers), file) });
      const testFile = `${policy}.test.yaml`;
      files.push({ path: testFile, text: formatPolicyText(renderTest(policy, d, kept, rules, others.slice(0, denyCases)), testFile) });
      destinations.push({
        key: d.key,
        policy,
        file,
        allowed: d.allowed,
        firstSeen: d.first,
        lastSeen: d.last,
        callers: callers.map((c) => ({ principal: c.principal, ip: c.ip, count: c.count, firstSeen: c.first, lastSeen: c.last, rule: rules.get(c) ?? null })),
        deniedOthers: deniedTotal - deniedAllowedCallers,
        deniedAllowedCallers,
      });
    }
    return {
      decisions: this.decisions,
      allowed: this.allowed,
      denied: this.denied,
      skipped: this.skipped,
      minCount,
      destinations,
      belowThreshold: { callers: belowCallers, decisions: belowDecisions },
      deniedUnsuggested,
      files,
    };
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function callerLabel(c: { principal: string; ip: string }): string {
  return c.principal !== '' ? c.principal : `${c.ip} (no identity)`;
}

function caseInput(rec: DecisionRecord): CaseInput {
  const s = rec.source;
  const d = rec.destination;
  const source: CaseInput['source'] = { ...(s.principal ? { principal: s.principal } : {}), ip: s.ip, ...(s.port ? { port: s.port } : {}) };
  const destination: CaseInput['destination'] = { port: d.port };
  if (d.ip) destination.ip = d.ip;
  if (d.host) destination.host = d.host;
  if (d.authority) destination.authority = d.authority;
  if (d.service) destination.service = d.service;
  if (d.namespace) destination.namespace = d.namespace;
  return { source, destination };
}

/** A DNS-1123 name (src/policy/documents.ts POLICY_NAME_PATTERN) naming the destination. */
function policyName(prefix: string, d: DestAcc): string {
  const what = d.kind === 'service' ? d.service : d.kind === 'ip' ? d.ip : d.host;
  const raw = `${prefix}-${what}-${d.port}`.toLowerCase().replace(/[^-a-z0-9.]+/g, '-').replace(/-+/g, '-');
  return raw.slice(0, POLICY_NAME_MAX_LENGTH - 8).replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '') || 'suggested';
}

/** An identifier-like rule name (RULE_NAME_PATTERN) after the caller: `prod-frontend`, `addr-10-1-0-5`. */
function ruleName(c: CallerAcc): string {
  let raw: string;
  const m = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(c.principal);
  if (m) raw = `${m[1]}-${m[2]}`;
  else if (c.principal !== '') raw = c.principal.replace(/^spiffe:\/\//, '');
  else raw = `addr-${c.ip}`;
  let name = raw.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/-+/g, '-').slice(0, 100);
  if (!/^[A-Za-z_]/.test(name)) name = `_${name}`;
  return RULE_NAME_PATTERN.test(name) ? name : 'caller';
}

/** `base`, or `base-2`, `base-3`... when taken. */
function unique(base: string, taken: Set<string>): string {
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}-${i}`;
  taken.add(name);
  return name;
}

const q = (s: string): string => JSON.stringify(s);
/** A YAML scalar as a person writes it: plain when that parses back to the same string, else quoted. */
const scalar = (s: string): string => stringifyYaml(s, { lineWidth: 0 }).trimEnd();
/** A flow map with bare keys (identifiers) and JSON-quoted strings: `{ source: { ip: "10.0.0.5" } }`. */
function flow(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  const entries = Object.entries(v as Record<string, unknown>).map(([k, x]) => `${k}: ${flow(x)}`);
  return `{ ${entries.join(', ')} }`;
}
const n = (x: number): string => x.toLocaleString('en-US');
const day = (t: string): string => t.replace(/\.\d+Z$/, 'Z');

function selectorOf(d: DestAcc, anyService: boolean): string {
  if (d.kind === 'service') {
    return `destination.namespace == ${q(d.namespace)} && destination.service == ${q(d.service)} && destination.port == ${d.port}`;
  }
  // With discovery in the log, an address-keyed policy must not also select a service's VIP traffic
  // (that traffic has its own policy): the selectors stay disjoint, one policy decides each tunnel.
  const noService = anyService ? ' && destination.service == ""' : '';
  if (d.kind === 'ip') return `destination.ip == ${q(d.ip)} && destination.port == ${d.port}${noService}`;
  return `destination.host == ${q(d.host)} && destination.port == ${d.port}${noService}`;
}

function whenOf(c: CallerAcc): string {
  return c.principal !== '' ? `source.principal == ${q(c.principal)}` : `source.ip == ${q(c.ip)}`;
}

function renderPolicy(name: string, d: DestAcc, callers: CallerAcc[], rules: Map<CallerAcc, string>, anyService: boolean, deniedTotal: number, deniedAllowed: number): string {
  const what = d.kind === 'service' ? `service ${d.service} (namespace ${d.namespace || '""'}) port ${d.port}` : d.kind === 'ip' ? `${d.key}` : `${d.key} (host authority)`;
  const lines = [
    `# Suggested by \`waygate audit suggest\` from the audit log: review before enforcing.`,
    `# ${what}: ${n(d.allowed)} allowed decision(s) from ${n(d.callers.size)} caller(s), first seen ${day(d.first)}, last seen ${day(d.last)}.`,
  ];
  if (callers.length < d.callers.size) lines.push(`# ${n(d.callers.size - callers.length)} caller(s) seen fewer times than --min-count have no rule.`);
  if (deniedTotal > 0) lines.push(`# ${n(deniedTotal)} denied decision(s) here${deniedAllowed > 0 ? `, ${n(deniedAllowed)} of them from callers this policy allows (check why they were denied)` : ''}.`);
  lines.push(
    '',
    `apiVersion: ${API_VERSION}`,
    'kind: AuthorizationPolicy',
    'metadata:',
    `  name: ${name}`,
    'spec:',
    '  action: ALLOW',
    '  mode: Enforce',
    `  selector: ${scalar(selectorOf(d, anyService))}`,
    '  rules:',
  );
  for (const c of callers) {
    lines.push(
      `    # ${n(c.count)} decision(s), first seen ${day(c.first)}, last seen ${day(c.last)}`,
      `    - name: ${rules.get(c)!}`,
      `      when: ${scalar(whenOf(c))}`,
      `      message: ${scalar(`observed: ${callerLabel(c)} -> ${d.key}`)}`,
    );
  }
  return lines.join('\n') + '\n';
}

function renderTest(policy: string, d: DestAcc, callers: CallerAcc[], rules: Map<CallerAcc, string>, denied: DeniedAcc[]): string {
  const lines = [
    `# Cases taken from the audit log: each allowed caller's first observed decision, and decisions`,
    `# the log shows denied to callers this policy does not allow.`,
    '',
    `apiVersion: ${API_VERSION}`,
    'kind: PolicyTest',
    'metadata:',
    `  name: ${policy}-tests`,
    'spec:',
    '  defaultAction: DENY',
    '  cases:',
  ];
  for (const c of callers) {
    lines.push(
      `    - name: ${q(`${callerLabel(c)} reaches ${d.key} (observed ${c.sampleId})`)}`,
      `      input: ${flow(c.sample)}`,
      `      expect: ${flow({ decision: 'allow', policy, rule: rules.get(c)!, reason: 'allowed' })}`,
    );
  }
  for (const x of denied) {
    lines.push(
      `    - name: ${q(`${x.caller.replace(/^ip:/, '')} is refused ${d.key} (observed ${x.reason} ${x.sampleId})`)}`,
      `      input: ${flow(x.sample)}`,
      `      expect: ${flow({ decision: 'deny', policy: null, rule: null, reason: 'no_allow_match' })}`,
    );
  }
  return lines.join('\n') + '\n';
}

/** The suggestion as text or Markdown: what was written, per destination and caller. */
export function renderSuggest(r: SuggestResult, outDir: string, format: 'text' | 'markdown'): string {
  const md = format === 'markdown';
  const table = md ? renderMarkdownTable : renderTextTable;
  const out: string[] = [];
  if (md) out.push('## waygate audit suggest', '');
  const rules = r.destinations.reduce((s, d) => s + d.callers.filter((c) => c.rule !== null).length, 0);
  out.push(
    `wrote ${formatCount(r.destinations.length)} policies (${formatCount(rules)} rules) and their PolicyTests to ${outDir}`,
    `${formatCount(r.decisions)} decision records: ${formatCount(r.allowed)} allowed by policy (the suggestion), ${formatCount(r.denied)} denied by policy, ${formatCount(r.skipped)} decided before the policy engine (not used)`,
  );
  if (r.belowThreshold.callers > 0) {
    out.push(`${formatCount(r.belowThreshold.callers)} caller(s) seen fewer than ${r.minCount} time(s) at a destination have no rule: their ${formatCount(r.belowThreshold.decisions)} decision(s) replay as denies below`);
  }
  if (r.deniedUnsuggested > 0) out.push(`${formatCount(r.deniedUnsuggested)} denied decision(s) went to destinations no suggested policy selects (they stay denied)`);
  const mixed = r.destinations.reduce((s, d) => s + d.deniedAllowedCallers, 0);
  if (mixed > 0) out.push(`${formatCount(mixed)} denied decision(s) came from callers the suggestion allows at that destination: they replay as deny -> allow below; check why they were denied`);
  out.push('');
  const rows: string[][] = [];
  for (const d of r.destinations) {
    for (const c of d.callers) {
      rows.push([d.policy, c.rule ?? '(below --min-count)', c.principal !== '' ? c.principal : `${c.ip} (no identity)`, formatCount(c.count), c.firstSeen, c.lastSeen]);
    }
  }
  out.push(table(['policy', 'rule', 'caller', 'decisions', 'first seen', 'last seen'], rows, ['left', 'left', 'left', 'right', 'left', 'left']));
  return out.join('\n') + '\n';
}
