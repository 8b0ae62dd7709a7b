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
 *
 * The suggestion replaces the ALLOW side only. Given the policies in force (`inForce`), their DENY
 * and AUDIT policies are kept beside it (keptPolicyFiles), and a caller the log shows both allowed
 * and denied at one destination (its access depended on more than caller and destination, e.g. a
 * header: policies/database.yaml) gets the condition of the rule in force that allowed it, not a
 * rule on its identity alone. Without them, such pairs are named in `warnings`.
 *
 * One read of the log: ReplayStore keeps what the replay of the same records needs (one group per
 * distinct replay-relevant input and recorded outcome, a few records each, and a count), so
 * `audit suggest` replays without reading the input again (and reads stdin).
 */
import { basename } from 'node:path';
import { isMap, isScalar, parseAllDocuments, stringify as stringifyYaml } from 'yaml';
import type { DecisionContext } from '../../policy/context.ts';
import { contextFromAuditRecord } from '../../policy/context-input.ts';
import { cachePlan } from '../../policy/decision-cache.ts';
import { AFTER_POLICY_ALLOW_REASONS } from '../../policy/decision.ts';
import { formatPolicyText } from '../../policy/fmt.ts';
import { API_VERSION } from '../../policy/model.ts';
import { POLICY_NAME_MAX_LENGTH, RULE_NAME_PATTERN } from '../../policy/documents.ts';
import type { CompiledPolicy, PolicySnapshot } from '../../policy/snapshot.ts';
import { formatHostPort } from '../../config/address.ts';
import { recordedInput, type AuditRecord, type DecisionRecord } from '../record.ts';
import { REPLAYABLE_REASONS, type ReplayAccumulator } from './replay.ts';
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
  /**
   * The policy set in force (`--policies`). Its DENY and AUDIT policies stay beside the suggestion
   * (keptPolicyFiles); its ALLOW rules give the condition of a caller whose access depended on more
   * than caller and destination (allowed and denied at one destination in the log).
   */
  inForce?: PolicySnapshot | null;
  /** Where records' inputs are rebuilt; share it with the ReplayStore fed the same records. */
  inputs?: RecordInputs;
}

/** A count by what decided: `policy/rule`, or `(reason)` when the record names no policy. */
export interface DecidedBy {
  by: string;
  count: number;
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
  /** The rule that allows it (the first, when several carry conditions in force); `null` when below `--min-count`. */
  rule: string | null;
  /** What allowed it in the log. */
  allowedBy: DecidedBy[];
  /** What denied it at this destination in the log (empty when it never was). */
  deniedBy: DecidedBy[];
  /** Its rules that carry the condition of a rule in force (`--policies`), and which. */
  conditions: { rule: string; from: string }[];
}

export interface SuggestedDestination {
  /** `namespace/service:port` (`service:port` without a namespace) or `ip:port` or `host:port`, as the policy comment says. */
  key: string;
  policy: string;
  file: string;
  allowed: number;
  firstSeen: string;
  lastSeen: string;
  callers: SuggestedCaller[];
  /** Denied decisions (by the engine) to this destination from callers never allowed there. */
  deniedOthers: number;
  /** Denied decisions from callers also allowed there that the suggested set allows (they replay as deny -> allow). */
  deniedAllowedCallers: number;
  /** Denied decisions from callers also allowed there that stay denied: by a kept DENY policy, or by the condition kept from the rule in force. */
  deniedKeptCallers: number;
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
  /** Decided by the engine, but their input cannot be rebuilt (a time that is not RFC 3339, a principal that is not a SPIFFE ID): not used, as `audit replay` skips them. */
  invalidInput: number;
  minCount: number;
  destinations: SuggestedDestination[];
  /** Callers left out by `--min-count`, and their decisions (they will replay as denies). */
  belowThreshold: { callers: number; decisions: number };
  /** Denied decisions to destinations nobody was allowed to reach (no policy selects them). */
  deniedUnsuggested: number;
  /** What the suggestion cannot reproduce, and what to do about it. */
  warnings: string[];
  /** Files to write: `<policy>.yaml` and `<policy>.test.yaml`, formatted as `policy fmt` does. */
  files: { path: string; text: string }[];
}

interface FirstSeen {
  count: number;
  /** The first record's input, for a PolicyTest case. */
  sample: CaseInput;
  sampleId: string;
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
  /** By `policy/rule` (or `(reason)`): each allowing rule's count and first record. */
  allowedBy: Map<string, FirstSeen>;
}

interface DeniedAcc {
  caller: string;
  count: number;
  sample: CaseInput;
  sampleId: string;
  reason: string;
  /** The first record's deciding policy and rule (null when none). */
  policy: string | null;
  rule: string | null;
  deniedBy: Map<string, number>;
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

/** The part of a record's input a suggested policy (and the policies kept with it) read: all a test case needs to state. */
type CaseInput = Record<string, unknown>;

/** A suggested rule: its name, condition and comment. */
interface RuleOut {
  caller: CallerAcc;
  name: string;
  when: string;
  comment: string[];
  /** The rule in force whose condition it carries, and the first record it allowed. */
  from: { by: string; seen: FirstSeen } | null;
}

/** Distinct denied callers kept per destination (beyond: counted only). */
const MAX_DENIED_CALLERS = 1000;
/** Caller x destination pairs the warnings list one by one (beyond: counted). */
const MAX_WARNED_PAIRS = 20;

/** What decided a record: `policy/rule`, or `(reason)`. */
function decidedBy(rec: DecisionRecord): string {
  return rec.policy != null ? `${rec.policy}/${rec.rule ?? SELECTOR}` : `(${rec.reason})`;
}
const SELECTOR = '(selector)';

/** Streams decision records; call add() per record, then result(). */
export class SuggestAccumulator {
  private decisions = 0;
  private allowed = 0;
  private denied = 0;
  private skipped = 0;
  private invalidInput = 0;
  private readonly dests = new Map<string, DestAcc>();
  private readonly since: number;
  private readonly until: number;
  private readonly windowed: boolean;
  private readonly inForce: PolicySnapshot | null;
  /** Attribute paths the policies in force read (`request.headers.x-tenant`, `now`): test cases state them too. */
  private readonly caseReads: string[];
  /** Names of the DENY and AUDIT policies in force (kept beside the suggestion). */
  private readonly kept: Map<string, CompiledPolicy>;

  private readonly inputs: RecordInputs;

  constructor(private readonly options: SuggestOptions = {}) {
    this.inputs = options.inputs ?? new RecordInputs();
    this.since = options.sinceMs ?? -Infinity;
    this.until = options.untilMs ?? Infinity;
    this.windowed = options.sinceMs != null || options.untilMs != null;
    this.inForce = options.inForce ?? null;
    this.kept = new Map(keptPolicies(this.inForce).map((p) => [p.name, p]));
    this.caseReads = [...(this.inForce?.reads ?? [])].filter((r) => r !== 'variables' && !r.startsWith('variables.')).sort();
  }

  /** Whether a record falls in the window (`--since`/`--until`); the replay store takes the same records. */
  inWindow(rec: AuditRecord): rec is DecisionRecord {
    if (rec.event !== 'decision') return false;
    if (!this.windowed) return true;
    const t = Date.parse(rec.time);
    return t >= this.since && t < this.until;
  }

  add(rec: AuditRecord): void {
    if (!this.inWindow(rec)) return;
    this.decisions++;
    const policyAllowed = AFTER_POLICY_ALLOW_REASONS.has(rec.reason) || (rec.decision === 'allow' && REPLAYABLE_REASONS.has(rec.reason));
    const engineDenied = !policyAllowed && rec.decision === 'deny' && REPLAYABLE_REASONS.has(rec.reason);
    if (!policyAllowed && !engineDenied) {
      this.skipped++;
      return;
    }
    // A record the replay cannot rebuild is no evidence either: a rule and a test case drawn from it
    // (a principal that is not a SPIFFE ID) would not load, a time that is not RFC 3339 would be
    // printed as first or last seen.
    if (this.inputs.of(rec) === null) {
      this.invalidInput++;
      return;
    }
    const dest = this.destination(rec);
    const principal = rec.source.principal ?? '';
    const callerKey = principal !== '' ? principal : `ip:${rec.source.ip}`;
    const by = decidedBy(rec);
    if (policyAllowed) {
      this.allowed++;
      dest.allowed++;
      if (dest.first === '' || rec.time < dest.first) dest.first = rec.time;
      if (rec.time > dest.last) dest.last = rec.time;
      let c = dest.callers.get(callerKey);
      if (c === undefined) {
        const sample = this.caseInput(rec);
        c = { principal, ip: principal === '' ? rec.source.ip : '', count: 0, first: rec.time, last: rec.time, sample, sampleId: rec.decisionId, allowedBy: new Map() };
        dest.callers.set(callerKey, c);
      }
      c.count++;
      if (rec.time < c.first) c.first = rec.time;
      if (rec.time > c.last) c.last = rec.time;
      const o = c.allowedBy.get(by);
      if (o !== undefined) o.count++;
      else c.allowedBy.set(by, { count: 1, sample: c.sampleId === rec.decisionId ? c.sample : this.caseInput(rec), sampleId: rec.decisionId });
      return;
    }
    this.denied++;
    const d = dest.denied.get(callerKey);
    if (d !== undefined) {
      d.count++;
      d.deniedBy.set(by, (d.deniedBy.get(by) ?? 0) + 1);
    } else if (dest.denied.size < MAX_DENIED_CALLERS) {
      dest.denied.set(callerKey, {
        caller: callerKey, count: 1, sample: this.caseInput(rec), sampleId: rec.decisionId, reason: rec.reason,
        policy: rec.policy ?? null, rule: rec.rule ?? null, deniedBy: new Map([[by, 1]]),
      });
    } else dest.deniedOverflow++;
  }

  /**
   * A test case's input: source and destination as the suggestion reads them; with policies in
   * force, also the groups they read (headers, baggage, ...) and the time when they read `now`.
   */
  private caseInput(rec: DecisionRecord): CaseInput {
    const base = caseInput(rec);
    if (this.caseReads.length === 0) return base;
    const full = recordedInput(rec) as Record<string, unknown>;
    const out = base as Record<string, Record<string, unknown> | unknown>;
    for (const read of this.caseReads) {
      // `group.attribute[.key]`: a constant-key map read states that key only; derived attributes
      // (`source.namespace`) come from what the base already states (`source.principal`).
      const [g, attr, ...rest] = read.split('.');
      const from = full[g!];
      if (attr === undefined) {
        if (from !== undefined) out[g!] = from;
        continue;
      }
      if (from === null || typeof from !== 'object') continue;
      const v = (from as Record<string, unknown>)[attr];
      if (v === undefined) continue;
      const into = (out[g!] ??= {}) as Record<string, unknown>;
      if (rest.length > 0 && v !== null && typeof v === 'object') {
        const key = rest.join('.');
        const m = (v as Record<string, unknown>)[key];
        if (m !== undefined) into[attr] = { ...(into[attr] as object | undefined), [key]: m };
      } else into[attr] = v;
    }
    return prune(out) as CaseInput;
  }

  private destination(rec: DecisionRecord): DestAcc {
    const d = rec.destination;
    const service = d.service ?? '';
    const namespace = d.namespace ?? '';
    const kind = service !== '' ? 'service' : d.ip !== '' ? 'ip' : 'host';
    // A service is its namespace and hostname: `db` in namespaces a and b are two services (two
    // policies, each selecting its namespace), as the policy variables tell them apart (docs/waypoint.md).
    const key = kind === 'service' ? `${namespace !== '' ? `${namespace}/` : ''}${service}:${d.port}`
      : kind === 'ip' ? formatHostPort(d.ip, d.port) : `${d.host}:${d.port}`;
    // The kind too: a service without namespace and a host authority may print alike.
    const mapKey = `${kind} ${key}`;
    let acc = this.dests.get(mapKey);
    if (acc === undefined) {
      acc = {
        key, kind, service, namespace, ip: d.ip, host: d.host, port: d.port,
        allowed: 0, first: '', last: '', callers: new Map(), denied: new Map(), deniedOverflow: 0,
      };
      this.dests.set(mapKey, acc);
    }
    return acc;
  }

  /** Whether a deny is reproduced by a DENY policy kept from the set in force. */
  private keptDeny(by: string): boolean {
    const slash = by.indexOf('/');
    if (by.startsWith('(') || slash < 0) return false;
    return this.kept.get(by.slice(0, slash))?.action === 'DENY';
  }

  /**
   * The rules for one caller: on its identity (or address) alone; or, when the log also shows it
   * denied here by something no kept DENY policy reproduces, one rule per rule in force that allowed
   * it, carrying that rule's condition (and its policy's selector and variables). Returns the rules
   * and, when the pair cannot be reproduced, why (for the warnings).
   */
  private rulesFor(d: DestAcc, c: CallerAcc, callerKey: string, variables: Map<string, string>, taken: Set<string>): { rules: RuleOut[]; problem: string | null } {
    const base = ruleName(c);
    const identity = whenOf(c);
    const plain = (): RuleOut[] => [{ caller: c, name: unique(base, taken), when: identity, comment: [], from: null }];
    const denied = d.denied.get(callerKey);
    const unexplained = denied === undefined ? [] : [...denied.deniedBy].filter(([by]) => !this.keptDeny(by));
    if (unexplained.length === 0) return { rules: plain(), problem: null };
    if (this.inForce === null) return { rules: plain(), problem: 'pass --policies <the policy set in force> to keep its DENY and AUDIT policies and the condition of the allowing rule' };
    const origins: { by: string; seen: FirstSeen; policy: CompiledPolicy; rule: CompiledPolicy['rules'][number] }[] = [];
    for (const [by, seen] of c.allowedBy) {
      const slash = by.indexOf('/');
      const policy = by.startsWith('(') || slash < 0 ? undefined : this.inForce.policies.find((p) => p.name === by.slice(0, slash) && p.action === 'ALLOW');
      const rule = policy?.rules.find((r) => r.name === by.slice(slash + 1));
      if (policy === undefined || rule === undefined) {
        const what = by.startsWith('(') ? `allowed by ${by} (no rule in force to take a condition from)` : `allowed by ${by}, which is not an ALLOW rule of the policies given with --policies`;
        return { rules: plain(), problem: `${what}: review the rule by hand` };
      }
      origins.push({ by, seen, policy, rule });
    }
    // The origin policies' variables go into the suggested policy under their own names.
    const adding = new Map<string, string>();
    for (const o of origins) {
      for (const v of o.policy.variables) {
        const have = variables.get(v.name) ?? adding.get(v.name);
        if (have !== undefined && have !== v.expression.source.text) {
          return { rules: plain(), problem: `the conditions to keep use two different variables named "${v.name}": review the rule by hand` };
        }
        adding.set(v.name, v.expression.source.text);
      }
    }
    for (const [k, v] of adding) variables.set(k, v);
    const rules = origins.map((o): RuleOut => {
      const sel = o.policy.selector?.source.text.trim();
      const parts = [identity, ...(sel !== undefined ? [`(${sel})`] : []), `(${o.rule.when.source.text.trim()})`];
      const name = unique(origins.length === 1 ? base : `${base}-${o.rule.name}`, taken);
      const comment = [
        `    # the condition of ${o.by} in force (${n(o.seen.count)} of its allows here): the log also shows this caller`,
        `    # denied here (${[...denied!.deniedBy].map(([by, k]) => `${n(k)} ${by}`).join(', ')}), so identity alone would allow those too`,
      ];
      return { caller: c, name, when: parts.join(' && '), comment, from: { by: o.by, seen: o.seen } };
    });
    return { rules, problem: null };
  }

  result(): SuggestResult {
    const minCount = this.options.minCount ?? 1;
    const prefix = this.options.prefix ?? 'suggested';
    const denyCases = this.options.denyCases ?? 3;
    const anyService = [...this.dests.values()].some((d) => d.kind === 'service');
    const destinations: SuggestedDestination[] = [];
    const files: { path: string; text: string }[] = [];
    // Kept policies keep their names: the suggestion takes others.
    const policyNames = new Set<string>(this.kept.keys());
    const warned: string[] = [];
    let warnedPairs = 0;
    let warnedDenies = 0;
    let belowCallers = 0;
    let belowDecisions = 0;
    let deniedUnsuggested = 0;
    const sorted = [...this.dests.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const d of sorted) {
      const callers = [...d.callers.entries()].sort(([, a], [, b]) => b.count - a.count || cmp(callerLabel(a), callerLabel(b)));
      const kept = callers.filter(([, c]) => c.count >= minCount);
      for (const [, c] of callers) {
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
      const variables = new Map<string, string>();
      const rules: RuleOut[] = [];
      const firstRule = new Map<CallerAcc, string>();
      let deniedAllowedCallers = 0;
      let deniedKeptCallers = 0;
      for (const [key, c] of kept) {
        const { rules: rs, problem } = this.rulesFor(d, c, key, variables, ruleNames);
        rules.push(...rs);
        firstRule.set(c, rs[0]!.name);
        const x = d.denied.get(key);
        if (x === undefined) continue;
        if (problem === null) {
          deniedKeptCallers += x.count;
          continue;
        }
        // Denies a kept DENY policy reproduces stay denied; the others replay as deny -> allow.
        const flipping = [...x.deniedBy].filter(([by]) => !this.keptDeny(by)).reduce((s, [, k]) => s + k, 0);
        deniedAllowedCallers += flipping;
        deniedKeptCallers += x.count - flipping;
        warnedPairs++;
        warnedDenies += flipping;
        if (warned.length < MAX_WARNED_PAIRS) {
          const list = (m: Iterable<[string, number | FirstSeen]>) => [...m].map(([by, k]) => `${by} ${n(typeof k === 'number' ? k : k.count)}x`).join(', ');
          warned.push(`${callerLabel(c)} -> ${d.key}: denied by ${list(x.deniedBy)}, allowed by ${list(c.allowedBy)}; ${problem}`);
        }
      }
      const others: DeniedAcc[] = [];
      const callerDenies: DeniedAcc[] = [];
      for (const [key, x] of d.denied) {
        const c = d.callers.get(key);
        if (c === undefined || c.count < minCount) others.push(x);
        else if (rules.some((r) => r.caller === c && r.from !== null)) callerDenies.push(x);
      }
      const file = `${policy}.yaml`;
      files.push({ path: file, text: formatPolicyText(renderPolicy(policy, d, kept.length, rules, variables, anyService, deniedTotal, deniedAllowedCallers), file) });
      const testFile = `${policy}.test.yaml`;
      const denyInputs = [...callerDenies, ...others.slice(0, denyCases)].map((x) => ({ x, expect: this.denyExpect(x) }));
      files.push({ path: testFile, text: formatPolicyText(renderTest(policy, d, rules, denyInputs), testFile) });
      destinations.push({
        key: d.key,
        policy,
        file,
        allowed: d.allowed,
        firstSeen: d.first,
        lastSeen: d.last,
        callers: callers.map(([key, c]) => ({
          principal: c.principal, ip: c.ip, count: c.count, firstSeen: c.first, lastSeen: c.last, rule: firstRule.get(c) ?? null,
          allowedBy: [...c.allowedBy].map(([by, s]) => ({ by, count: s.count })),
          deniedBy: [...(d.denied.get(key)?.deniedBy ?? [])].map(([by, count]) => ({ by, count })),
          conditions: rules.filter((r) => r.caller === c && r.from !== null).map((r) => ({ rule: r.name, from: r.from!.by })),
        })),
        deniedOthers: deniedTotal - deniedAllowedCallers - deniedKeptCallers,
        deniedAllowedCallers,
        deniedKeptCallers,
      });
    }
    const warnings: string[] = [];
    if (warnedPairs > 0) {
      warnings.push(
        `${n(warnedDenies)} denied decision(s) from ${n(warnedPairs)} caller(s) the suggestion allows at the same destination depended on more than caller and destination; the suggested rules allow them (deny -> allow in the replay):`,
        ...warned.map((w) => `  ${w}`),
        ...(warnedPairs > warned.length ? [`  ... and ${n(warnedPairs - warned.length)} more caller x destination pair(s) (-o json lists every caller's allowedBy and deniedBy)`] : []),
      );
    }
    return {
      decisions: this.decisions,
      allowed: this.allowed,
      denied: this.denied,
      skipped: this.skipped,
      invalidInput: this.invalidInput,
      minCount,
      destinations,
      belowThreshold: { callers: belowCallers, decisions: belowDecisions },
      deniedUnsuggested,
      warnings,
      files,
    };
  }

  /** A deny case expects what decided the record when a kept DENY policy did, else no ALLOW rule matching. */
  private denyExpect(x: DeniedAcc): Record<string, unknown> {
    if (x.reason === 'explicit_deny' && x.policy !== null && this.kept.get(x.policy)?.action === 'DENY') {
      return { decision: 'deny', policy: x.policy, rule: x.rule, reason: 'explicit_deny' };
    }
    return { decision: 'deny', policy: null, rule: null, reason: 'no_allow_match' };
  }
}

/** The DENY and AUDIT policies of a set (any mode): what stays beside a suggested ALLOW side. */
function keptPolicies(set: PolicySnapshot | null): CompiledPolicy[] {
  return (set?.policies ?? []).filter((p) => p.action === 'DENY' || p.action === 'AUDIT');
}

/** A value without its empty strings and empty objects (a test input leaves them out: they are the defaults). */
function prune(v: unknown): unknown {
  if (v === '' || v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const p = prune(x);
    if (p !== undefined) out[k] = p;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** A YAML node's scalar value; undefined for anything else. */
function scalarOf(node: unknown): unknown {
  return isScalar(node) ? node.value : undefined;
}

/** A file of the DENY and AUDIT policies in force, copied unchanged, for the suggestion's directory. */
export interface KeptFile {
  path: string;
  text: string;
  /** The file they were copied from. */
  from: string;
  policies: string[];
}

/**
 * The DENY and AUDIT policies of the set in force, copied document by document (comments
 * included) from their files into `kept-<file>` files: with them, the suggestion's directory is a
 * whole policy set that `audit replay`, `policy test` and the gateway load as they are, and a
 * reviewer sees, in one place, every policy that will decide. `texts` holds each file's text.
 */
export function keptPolicyFiles(set: PolicySnapshot, texts: ReadonlyMap<string, string>, taken: Set<string> = new Set()): KeptFile[] {
  const byFile = new Map<string, Set<string>>();
  for (const p of keptPolicies(set)) {
    let names = byFile.get(p.location.file);
    if (names === undefined) byFile.set(p.location.file, (names = new Set()));
    names.add(p.name);
  }
  const out: KeptFile[] = [];
  for (const [from, names] of byFile) {
    const text = texts.get(from);
    if (text === undefined) continue;
    const docs: string[] = [];
    for (const doc of parseAllDocuments(text)) {
      // A policy's name is unique among policies only: a PolicyTest may share it (and test the
      // ALLOW side the suggestion replaces), so the document must be the policy itself.
      if (!isMap(doc.contents) || scalarOf(doc.contents.get('apiVersion', true)) !== API_VERSION || scalarOf(doc.contents.get('kind', true)) !== 'AuthorizationPolicy') continue;
      const meta = doc.contents.get('metadata', true);
      const name = isMap(meta) ? scalarOf(meta.get('name', true)) : undefined;
      // An editor's schema modeline points relative to the source file: wrong beside the suggestion.
      if (typeof name === 'string' && names.has(name)) docs.push(doc.toString().replace(/^---\n/, '').replace(/^# yaml-language-server:.*\n(#\n)?/m, ''));
    }
    if (docs.length === 0) continue;
    const path = unique(`kept-${basename(from).replace(/\.ya?ml$/, '')}`, taken) + '.yaml';
    const header = [
      `# Kept by \`waygate audit suggest --policies\` from ${from}: the DENY and AUDIT policies in force,`,
      '# copied unchanged. The suggested ALLOW policies beside them replace the ALLOW side only.',
      '',
    ].join('\n');
    out.push({ path, text: formatPolicyText(header + docs.join('---\n'), path), from, policies: [...names] });
  }
  return out;
}

/**
 * The attributes of the policies in force a replay's outcome can depend on. Enforced DENY and ALLOW
 * policies decide the verdict: all their reads. A DryRun or AUDIT policy never changes a verdict;
 * it counts only through the header and baggage keys it looks up (replay.ts marks a flip inexact
 * on those), so one that reads no header or baggage is left out (a dry-run trial of
 * `request.traceId == ""` would otherwise make every record its own group).
 */
function replayReads(set: PolicySnapshot): Set<string> {
  const reads = new Set<string>();
  for (const p of set.policies) {
    const own = new Set<string>([...(p.selector?.reads ?? []), ...p.variables.flatMap((v) => [...v.expression.reads]), ...p.rules.flatMap((r) => [...r.when.reads])]);
    const verdictOnly = p.mode === 'DryRun' || p.action === 'AUDIT';
    if (verdictOnly && ![...own].some((r) => r.startsWith('request.headers') || r.startsWith('request.baggage'))) continue;
    for (const r of own) reads.add(r);
  }
  return reads;
}

/**
 * Records' inputs as the replay rebuilds them (contextFromAuditRecord), null for one it cannot.
 * runAuditSuggest (src/cli/audit-run.ts) hands each record to SuggestAccumulator.add, then to
 * ReplayStore.add; given the same RecordInputs, the two rebuild it once between them (the last
 * record is remembered).
 */
export class RecordInputs {
  #rec: DecisionRecord | undefined;
  #ctx: DecisionContext | null = null;

  of(rec: DecisionRecord): DecisionContext | null {
    if (this.#rec === rec) return this.#ctx;
    let ctx: DecisionContext | null;
    try {
      ctx = contextFromAuditRecord(rec);
    } catch {
      ctx = null;
    }
    this.#rec = rec;
    this.#ctx = ctx;
    return ctx;
  }
}

/** A replay-store key part: one length-prefixed value (no separator can shift the fields). */
const part = (v: string | number | null | undefined): string => {
  const s = v == null ? '\u0000' : String(v);
  return `${s.length}:${s}|`;
};

type Extractors = Extract<ReturnType<typeof cachePlan>, { enabled: true }>['extract'];

/**
 * What the replay of the log against the suggestion needs, kept from the one read: decision
 * records grouped by everything the replay's outcome can depend on, up to `keep` records per group
 * and a count. The key holds the recorded outcome (decision, reason, policy, rule), whether the
 * replay can rebuild the record's input at all, and the attributes the suggested policies read
 * (caller identity, the address only without one, destination ip, port, host, service,
 * namespace); with policies in force, also the value of every
 * attribute they read that the outcome can depend on (replayReads), as the decision cache keys
 * decisions (src/policy/decision-cache.ts). When those include an attribute unique per request (the
 * trace id, the time, a whole header map) the key cannot be complete: then each record is its own
 * group (one read still; memory grows with the log).
 * Records that are not replayable are grouped by reason, the only thing the replay counts of them.
 */
export class ReplayStore {
  private readonly groups = new Map<string, { records: DecisionRecord[]; count: number }>();
  private readonly extract: Extractors | null;
  /** Why every record is kept (the policies in force read an attribute no key can hold); null when grouped. */
  readonly perRecord: string | null;
  records = 0;

  constructor(inForce: PolicySnapshot | null, private readonly inputs = new RecordInputs(), private readonly keep = 3) {
    if (inForce === null) {
      this.extract = [];
      this.perRecord = null;
      return;
    }
    const plan = cachePlan({ ...inForce, reads: replayReads(inForce) });
    this.extract = plan.enabled ? plan.extract : null;
    this.perRecord = plan.enabled ? null : `the policies in force ${plan.reason.replace(/^reads /, 'read ')}`;
  }

  /** Adds one decision record (already in the window). */
  add(rec: DecisionRecord): void {
    this.records++;
    let key: string;
    if (!REPLAYABLE_REASONS.has(rec.reason) && !AFTER_POLICY_ALLOW_REASONS.has(rec.reason)) key = `-|${rec.reason}`;
    else if (this.extract === null) key = `#|${this.records}`;
    else {
      const s = rec.source;
      const d = rec.destination;
      const principal = s.principal ?? '';
      key = part(rec.decision) + part(rec.reason) + part(rec.policy) + part(rec.rule) + part(principal) + part(principal === '' ? s.ip : '')
        + part(d.ip) + part(d.port) + part(d.host) + part(d.service) + part(d.namespace);
      // The input is rebuilt as the replay rebuilds it, with or without attributes to key: a record
      // it cannot rebuild (a time that is not RFC 3339, a header that is not a string) replays as
      // invalid input, one it can as a decision, so the two never share a group. Invalid records
      // share groups among themselves: their replay counts them and reads nothing else.
      const ctx = this.inputs.of(rec);
      if (ctx === null) key = `!|${key}`;
      else for (const e of this.extract) key += part(e(ctx));
    }
    const g = this.groups.get(key);
    if (g === undefined) this.groups.set(key, { records: [rec], count: 1 });
    else {
      g.count++;
      if (g.records.length < this.keep) g.records.push(rec);
    }
  }

  get size(): { groups: number; records: number } {
    return { groups: this.groups.size, records: this.records };
  }

  /**
   * Replays every stored decision: the kept records of every group first (so the replay's examples
   * are distinct records), then each group's remaining count as one decision of its last kept
   * record counted that many times (the key makes them indistinguishable for the replay).
   */
  replayInto(acc: ReplayAccumulator): void {
    for (const g of this.groups.values()) for (const r of g.records) acc.add(r);
    for (const g of this.groups.values()) {
      const rest = g.count - g.records.length;
      if (rest > 0) acc.add(g.records[g.records.length - 1]!, rest);
    }
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
  const source: Record<string, unknown> = { ...(s.principal ? { principal: s.principal } : {}), ip: s.ip, ...(s.port ? { port: s.port } : {}) };
  const destination: Record<string, unknown> = { port: d.port };
  if (d.ip) destination.ip = d.ip;
  if (d.host) destination.host = d.host;
  if (d.authority) destination.authority = d.authority;
  if (d.service) destination.service = d.service;
  if (d.namespace) destination.namespace = d.namespace;
  return { source, destination };
}

/** A DNS-1123 name (src/policy/documents.ts POLICY_NAME_PATTERN) naming the destination. */
function policyName(prefix: string, d: DestAcc): string {
  const what = d.kind === 'service' ? (d.namespace !== '' ? `${d.namespace}-${d.service}` : d.service) : d.kind === 'ip' ? d.ip : d.host;
  const raw = `${prefix}-${what}-${d.port}`.toLowerCase().replace(/[^-a-z0-9.]+/g, '-').replace(/-+/g, '-');
  return raw.slice(0, POLICY_NAME_MAX_LENGTH - 8).replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '') || 'suggested';
}

/** An identifier-like rule name (RULE_NAME_PATTERN) after the caller: `prod-frontend`, `addr-10-1-0-5`. */
function ruleName(c: { principal: string; ip: string }): string {
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

/**
 * A caller without identity is matched on its address and on having no identity: the address
 * alone would also allow a caller with a SPIFFE ID that shares it (a node address, a NAT), which
 * the log never showed allowed.
 */
function whenOf(c: { principal: string; ip: string }): string {
  return c.principal !== '' ? `source.principal == ${q(c.principal)}` : `source.principal == "" && source.ip == ${q(c.ip)}`;
}

function renderPolicy(name: string, d: DestAcc, keptCallers: number, rules: RuleOut[], variables: ReadonlyMap<string, string>, anyService: boolean, deniedTotal: number, deniedAllowed: number): string {
  const what = d.kind === 'service' ? `service ${d.service} (namespace ${d.namespace || '""'}) port ${d.port}` : d.kind === 'ip' ? `${d.key}` : `${d.key} (host authority)`;
  const lines = [
    `# Suggested by \`waygate audit suggest\` from the audit log: review before enforcing.`,
    `# ${what}: ${n(d.allowed)} allowed decision(s) from ${n(d.callers.size)} caller(s), first seen ${day(d.first)}, last seen ${day(d.last)}.`,
  ];
  if (keptCallers < d.callers.size) lines.push(`# ${n(d.callers.size - keptCallers)} caller(s) seen fewer times than --min-count have no rule.`);
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
  );
  if (variables.size > 0) {
    lines.push('  # The variables of the policies in force whose conditions rules below keep.', '  variables:');
    for (const [v, text] of variables) lines.push(`    - name: ${v}`, `      expression: ${scalar(text.trim())}`);
  }
  lines.push('  rules:');
  const seen = new Set<CallerAcc>();
  for (const r of rules) {
    const c = r.caller;
    if (!seen.has(c)) {
      seen.add(c);
      lines.push(`    # ${n(c.count)} decision(s), first seen ${day(c.first)}, last seen ${day(c.last)}`);
    }
    lines.push(
      ...r.comment,
      `    - name: ${r.name}`,
      `      when: ${scalar(r.when)}`,
      `      message: ${scalar(`observed: ${callerLabel(c)} -> ${d.key}${r.from !== null ? ` (condition of ${r.from.by})` : ''}`)}`,
    );
  }
  return lines.join('\n') + '\n';
}

function renderTest(policy: string, d: DestAcc, rules: RuleOut[], denied: { x: DeniedAcc; expect: Record<string, unknown> }[]): string {
  const lines = [
    `# Cases taken from the audit log: each allowed caller's first observed decision (per rule), and`,
    `# decisions the log shows denied here that this policy does not allow.`,
    '',
    `apiVersion: ${API_VERSION}`,
    'kind: PolicyTest',
    'metadata:',
    `  name: ${policy}-tests`,
    'spec:',
    '  defaultAction: DENY',
    '  cases:',
  ];
  for (const r of rules) {
    const c = r.caller;
    const sample = r.from?.seen.sample ?? c.sample;
    const sampleId = r.from?.seen.sampleId ?? c.sampleId;
    lines.push(
      `    - name: ${q(`${callerLabel(c)} reaches ${d.key}${r.from !== null ? ` under ${r.from.by}` : ''} (observed ${sampleId})`)}`,
      `      input: ${flow(sample)}`,
      `      expect: ${flow({ decision: 'allow', policy, rule: r.name, reason: 'allowed' })}`,
    );
  }
  for (const { x, expect } of denied) {
    lines.push(
      `    - name: ${q(`${x.caller.replace(/^ip:/, '')} is refused ${d.key} (observed ${x.reason} ${x.sampleId})`)}`,
      `      input: ${flow(x.sample)}`,
      `      expect: ${flow(expect)}`,
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
  const rules = r.destinations.reduce((s, d) => s + d.callers.reduce((k, c) => k + (c.rule === null ? 0 : Math.max(1, c.conditions.length)), 0), 0);
  out.push(
    `wrote ${formatCount(r.destinations.length)} policies (${formatCount(rules)} rules) and their PolicyTests to ${outDir}`,
    `${formatCount(r.decisions)} decision records: ${formatCount(r.allowed)} allowed by policy (the suggestion), ${formatCount(r.denied)} denied by policy, ${formatCount(r.skipped)} decided before the policy engine (not used)`
      + (r.invalidInput > 0 ? `, ${formatCount(r.invalidInput)} whose input cannot be rebuilt (not used; invalid input in the replay)` : ''),
  );
  if (r.belowThreshold.callers > 0) {
    out.push(`${formatCount(r.belowThreshold.callers)} caller(s) seen fewer than ${r.minCount} time(s) at a destination have no rule: their ${formatCount(r.belowThreshold.decisions)} decision(s) replay as denies below`);
  }
  if (r.deniedUnsuggested > 0) out.push(`${formatCount(r.deniedUnsuggested)} denied decision(s) went to destinations no suggested policy selects (they stay denied)`);
  const keptDenies = r.destinations.reduce((s, d) => s + d.deniedKeptCallers, 0);
  if (keptDenies > 0) out.push(`${formatCount(keptDenies)} denied decision(s) of callers the suggestion allows at that destination stay denied (a kept DENY policy, or the condition kept from the rule in force)`);
  for (const w of r.warnings) out.push(w.startsWith('  ') ? w : `warning: ${w}`);
  out.push('');
  const rows: string[][] = [];
  for (const d of r.destinations) {
    for (const c of d.callers) {
      const rule = c.rule === null ? '(below --min-count)' : c.conditions.length > 0 ? c.conditions.map((x) => `${x.rule} (condition of ${x.from})`).join(', ') : c.rule;
      rows.push([d.policy, rule, c.principal !== '' ? c.principal : `${c.ip} (no identity)`, formatCount(c.count), c.firstSeen, c.lastSeen]);
    }
  }
  out.push(table(['policy', 'rule', 'caller', 'decisions', 'first seen', 'last seen'], rows, ['left', 'left', 'left', 'right', 'left', 'left']));
  return out.join('\n') + '\n';
}
