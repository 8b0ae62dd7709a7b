/**
 * `waygate audit summary`: one streaming pass over the records that answers "what happened":
 * totals by decision and reason, who was denied (identities, namespaces, destinations), which
 * rules fired and which never did, what dry-run policies would have changed, bytes and durations
 * of closed tunnels, and decisions over time. Every aggregate is bounded (TopCounter,
 * QuantileSketch, TimeHistogram) so a multi-GB log summarises in constant memory.
 */
import { AFTER_POLICY_ALLOW_REASONS, ALL_REASONS, type PolicyAction, type PolicyMode, type Reason } from '../../policy/decision.ts';
import type { PolicySnapshot } from '../../policy/snapshot.ts';
import { SELECTOR_RULE_NAME } from '../../policy/snapshot.ts';
import type { AuditRecord, CloseRecord, DecisionRecord } from '../record.ts';
import type { ReadStats } from './reader.ts';
import { QuantileSketch } from './sketch.ts';
import { formatBytes } from './progress.ts';
import { formatCount, formatDurationMs, renderMarkdownTable, renderTextTable, type Align } from './table.ts';
import { TimeHistogram, type TimeHistogramResult } from './time-histogram.ts';
import { TopCounter } from './top-counter.ts';

/** The rules of a policy set, for "rules that never fired". */
export interface PolicyCatalog {
  policies: { name: string; action: PolicyAction; mode: PolicyMode; rules: string[] }[];
}

/** Builds the catalog from a loaded snapshot. */
export function catalogFromSnapshot(snapshot: PolicySnapshot): PolicyCatalog {
  return {
    policies: snapshot.policies.map((p) => ({
      name: p.name,
      action: p.action,
      mode: p.mode,
      rules: p.rules.map((r) => r.name),
    })),
  };
}

export interface RuleHits {
  policy: string;
  rule: string;
  action: PolicyAction | null;
  mode: PolicyMode | null;
  /** Times this rule decided the verdict (record.policy/rule). */
  decided: number;
  /** Times it matched as an AUDIT rule. */
  audit: number;
  /** Times it matched in the dry-run evaluation. */
  dryRun: number;
  /** Times its evaluation failed (fail-closed applied). */
  evalErrors: number;
  /** False when a policy set was given and the rule is not in it (renamed or removed since). */
  inPolicySet: boolean | null;
}

export interface CountEntry {
  key: string;
  count: number;
}

export interface AuditSummary {
  input: ReadStats & {
    /** Records outside --since/--until. */
    outsideWindow: number;
  };
  window: { first: string | null; last: string | null; since: string | null; until: string | null };
  events: { decision: number; close: number; reload: number };
  decisions: { total: number; allow: number; deny: number };
  reasons: { reason: Reason | string; decision: 'allow' | 'deny' | 'mixed'; count: number }[];
  topDenied: { principals: CountEntry[]; namespaces: CountEntry[]; destinations: CountEntry[]; approximate: boolean };
  rules: RuleHits[];
  /** Rules of the given policy set that never decided, matched or failed (null without --policies). */
  neverFired: { policy: string; rule: string; action: PolicyAction; mode: PolicyMode }[] | null;
  dryRun: {
    /** Decision records that carried a dry-run outcome. */
    evaluated: number;
    wouldDeny: number;
    wouldAllow: number;
    byPolicy: { policy: string; wouldDeny: number; wouldAllow: number; matches: number }[];
  };
  closes: {
    count: number;
    bytesSent: number;
    bytesReceived: number;
    durationMs: { sum: number; p50: number | null; p95: number | null; p99: number | null; max: number | null };
    byReason: CountEntry[];
  };
  reloads: { applied: number; rejected: number; unchanged: number };
  timeline: TimeHistogramResult;
}

export interface SummaryOptions {
  catalog?: PolicyCatalog | null;
  sinceMs?: number | null;
  untilMs?: number | null;
  /** Entries in each "top" list; default 10. */
  top?: number;
  /** Time histogram buckets at most; default 60. */
  maxTimeBuckets?: number;
}

const RULE_SEP = '\u0000';
const NO_IDENTITY = '(no identity)';

/** Accumulates records; call add() per record and result() once. */
export class SummaryAccumulator {
  private readonly events = { decision: 0, close: 0, reload: 0 };
  private allow = 0;
  private deny = 0;
  private readonly reasonCounts = new Map<string, { allow: number; deny: number }>();
  private readonly deniedPrincipals = new TopCounter();
  private readonly deniedNamespaces = new TopCounter();
  private readonly deniedDestinations = new TopCounter();
  private readonly rules = new Map<string, RuleHits>();
  private dryEvaluated = 0;
  private dryWouldDeny = 0;
  private dryWouldAllow = 0;
  private readonly dryByPolicy = new Map<string, { wouldDeny: number; wouldAllow: number; matches: number }>();
  private closeCount = 0;
  private bytesSent = 0;
  private bytesReceived = 0;
  private readonly durations = new QuantileSketch();
  private readonly closeReasons = new TopCounter(1000);
  private readonly reloads = { applied: 0, rejected: 0, unchanged: 0 };
  private readonly timeline: TimeHistogram;
  private firstMs = Infinity;
  private lastMs = -Infinity;
  private outside = 0;
  private readonly sinceMs: number;
  private readonly untilMs: number;
  private readonly filtered: boolean;

  constructor(private readonly options: SummaryOptions = {}) {
    this.sinceMs = options.sinceMs ?? -Infinity;
    this.untilMs = options.untilMs ?? Infinity;
    this.filtered = options.sinceMs != null || options.untilMs != null;
    this.timeline = new TimeHistogram(options.maxTimeBuckets ?? 60);
  }

  add(rec: AuditRecord): void {
    const t = Date.parse(rec.time);
    if (this.filtered && !(t >= this.sinceMs && t < this.untilMs)) {
      this.outside++;
      return;
    }
    if (t < this.firstMs) this.firstMs = t;
    if (t > this.lastMs) this.lastMs = t;
    switch (rec.event) {
      case 'decision':
        this.events.decision++;
        this.addDecision(rec, t);
        break;
      case 'close':
        this.events.close++;
        this.addClose(rec);
        break;
      case 'reload':
        this.events.reload++;
        if (rec.result in this.reloads) this.reloads[rec.result]++;
        break;
    }
  }

  private rule(policy: string, rule: string, action: PolicyAction | null, mode: PolicyMode | null): RuleHits {
    const key = policy + RULE_SEP + rule;
    let h = this.rules.get(key);
    if (h === undefined) {
      h = { policy, rule, action, mode, decided: 0, audit: 0, dryRun: 0, evalErrors: 0, inPolicySet: null };
      this.rules.set(key, h);
    } else {
      if (h.action === null && action !== null) h.action = action;
      if (h.mode === null && mode !== null) h.mode = mode;
    }
    return h;
  }

  private addDecision(rec: DecisionRecord, t: number): void {
    const deny = rec.decision === 'deny';
    if (deny) this.deny++;
    else this.allow++;
    this.timeline.add(t, deny ? 'deny' : 'allow');
    let rc = this.reasonCounts.get(rec.reason);
    if (rc === undefined) {
      rc = { allow: 0, deny: 0 };
      this.reasonCounts.set(rec.reason, rc);
    }
    if (deny) {
      rc.deny++;
      const src = rec.source;
      this.deniedPrincipals.add(src.principal || NO_IDENTITY);
      this.deniedNamespaces.add(src.namespace || NO_IDENTITY);
      const d = rec.destination;
      this.deniedDestinations.add(d.authority || `${d.ip}:${d.port}`);
    } else rc.allow++;

    if (rec.policy != null && rec.rule != null) {
      const action: PolicyAction | null =
        rec.reason === 'explicit_deny' ? 'DENY' : rec.reason === 'allowed' ? 'ALLOW' : null;
      this.rule(rec.policy, rec.rule, action, action ? 'Enforce' : null).decided++;
    }
    const audit = rec.audit;
    if (audit !== undefined && audit !== null) {
      for (let i = 0; i < audit.length; i++) {
        const a = audit[i]!;
        this.rule(a.policy, a.rule, a.action, a.mode).audit++;
      }
    }
    const errs = rec.evalErrors;
    if (errs !== undefined && errs !== null) {
      for (let i = 0; i < errs.length; i++) {
        const e = errs[i]!;
        this.rule(e.policy, e.rule, null, null).evalErrors++;
      }
    }
    const dry = rec.dryRun;
    if (dry !== undefined && dry !== null) {
      this.dryEvaluated++;
      const key = dry.policy ?? `(${dry.reason})`;
      let p = this.dryByPolicy.get(key);
      if (p === undefined) {
        p = { wouldDeny: 0, wouldAllow: 0, matches: 0 };
        this.dryByPolicy.set(key, p);
      }
      // Relative to the POLICY verdict, which the engine compared it with (`wouldChange`): a
      // transport reason (destination_not_allowed, upstream_failed) overrides an allowing policy
      // verdict in the record's `decision`, and enforcing a dry-run ALLOW would not change that.
      if (dryRunWouldChange(rec)) {
        if (dry.decision === 'deny') {
          this.dryWouldDeny++;
          p.wouldDeny++;
        } else {
          this.dryWouldAllow++;
          p.wouldAllow++;
        }
      }
      const matches = dry.matches;
      if (matches) {
        for (let i = 0; i < matches.length; i++) {
          const m = matches[i]!;
          this.rule(m.policy, m.rule, m.action, m.mode).dryRun++;
          let mp = this.dryByPolicy.get(m.policy);
          if (mp === undefined) {
            mp = { wouldDeny: 0, wouldAllow: 0, matches: 0 };
            this.dryByPolicy.set(m.policy, mp);
          }
          mp.matches++;
        }
      }
    }
  }

  private addClose(rec: CloseRecord): void {
    this.closeCount++;
    if (typeof rec.bytesSent === 'number') this.bytesSent += rec.bytesSent;
    if (typeof rec.bytesReceived === 'number') this.bytesReceived += rec.bytesReceived;
    if (typeof rec.durationMs === 'number') this.durations.add(rec.durationMs);
    this.closeReasons.add(String(rec.closeReason));
  }

  /** The summary; `stats` are the reader's counters for the same scan. */
  result(stats: ReadStats): AuditSummary {
    const top = this.options.top ?? 10;
    const catalog = this.options.catalog ?? null;
    const known = new Set<string>();
    let neverFired: AuditSummary['neverFired'] = null;
    if (catalog) {
      neverFired = [];
      for (const p of catalog.policies) {
        for (const r of p.rules) {
          if (r === SELECTOR_RULE_NAME) continue;
          const key = p.name + RULE_SEP + r;
          known.add(key);
          const h = this.rules.get(key);
          if (h === undefined) neverFired.push({ policy: p.name, rule: r, action: p.action, mode: p.mode });
          else {
            h.action ??= p.action;
            h.mode ??= p.mode;
          }
        }
      }
    }
    const rules = [...this.rules.entries()]
      .map(([key, h]) => ({ ...h, inPolicySet: catalog ? known.has(key) || h.rule === SELECTOR_RULE_NAME : null }))
      .sort((a, b) => total(b) - total(a) || cmp(a.policy, b.policy) || cmp(a.rule, b.rule));
    const reasons: AuditSummary['reasons'] = [];
    const seen = new Set<string>();
    for (const r of [...ALL_REASONS, ...this.reasonCounts.keys()]) {
      if (seen.has(r)) continue;
      seen.add(r);
      const c = this.reasonCounts.get(r) ?? { allow: 0, deny: 0 };
      reasons.push({ reason: r, decision: c.allow && c.deny ? 'mixed' : c.allow ? 'allow' : 'deny', count: c.allow + c.deny });
    }
    reasons.sort((a, b) => b.count - a.count || cmp(a.reason, b.reason));
    return {
      input: {
        files: stats.files,
        bytes: stats.bytes,
        lines: stats.lines,
        records: stats.records,
        malformed: stats.malformed,
        unknownSchema: stats.unknownSchema,
        opsLog: stats.opsLog,
        issues: stats.issues,
        outsideWindow: this.outside,
      },
      window: {
        first: this.firstMs === Infinity ? null : new Date(this.firstMs).toISOString(),
        last: this.lastMs === -Infinity ? null : new Date(this.lastMs).toISOString(),
        since: this.options.sinceMs != null ? new Date(this.options.sinceMs).toISOString() : null,
        until: this.options.untilMs != null ? new Date(this.options.untilMs).toISOString() : null,
      },
      events: { ...this.events },
      decisions: { total: this.allow + this.deny, allow: this.allow, deny: this.deny },
      reasons,
      topDenied: {
        principals: this.deniedPrincipals.top(top),
        namespaces: this.deniedNamespaces.top(top),
        destinations: this.deniedDestinations.top(top),
        approximate: this.deniedPrincipals.approximate || this.deniedNamespaces.approximate || this.deniedDestinations.approximate,
      },
      rules,
      neverFired,
      dryRun: {
        evaluated: this.dryEvaluated,
        wouldDeny: this.dryWouldDeny,
        wouldAllow: this.dryWouldAllow,
        byPolicy: [...this.dryByPolicy]
          .map(([policy, v]) => ({ policy, ...v }))
          .filter((p) => p.wouldDeny + p.wouldAllow + p.matches > 0)
          .sort((a, b) => b.wouldDeny - a.wouldDeny || b.matches - a.matches || cmp(a.policy, b.policy)),
      },
      closes: {
        count: this.closeCount,
        bytesSent: this.bytesSent,
        bytesReceived: this.bytesReceived,
        durationMs: {
          sum: this.durations.sum,
          p50: this.durations.quantile(0.5),
          p95: this.durations.quantile(0.95),
          p99: this.durations.quantile(0.99),
          max: this.durations.count ? this.durations.max : null,
        },
        byReason: this.closeReasons.top(100).map((e) => ({ key: e.key, count: e.count })),
      },
      reloads: { ...this.reloads },
      timeline: this.timeline.result(),
    };
  }
}

const ENGINE_REASONS: ReadonlySet<string> = new Set(['allowed', 'default_allow', 'explicit_deny', 'no_allow_match', 'default_deny', 'eval_error']);

/**
 * The verdict the policy engine returned for a record: the record's own for engine reasons, allow
 * for the transport reasons that follow an engine allow, null when the engine did not decide.
 */
export function policyVerdictOf(rec: Pick<DecisionRecord, 'decision' | 'reason'>): 'allow' | 'deny' | null {
  if (ENGINE_REASONS.has(rec.reason)) return rec.decision;
  if (AFTER_POLICY_ALLOW_REASONS.has(rec.reason)) return 'allow';
  return null;
}

/**
 * Whether enforcing the dry-run policies would change the policy verdict: the engine's
 * `wouldChange`, or (records without it) the dry-run decision against policyVerdictOf().
 */
export function dryRunWouldChange(rec: Pick<DecisionRecord, 'decision' | 'reason' | 'dryRun'>): boolean {
  const dry = rec.dryRun;
  if (dry === null || dry === undefined) return false;
  if (typeof dry.wouldChange === 'boolean') return dry.wouldChange;
  const verdict = policyVerdictOf(rec);
  return verdict !== null && dry.decision !== verdict;
}

function total(h: RuleHits): number {
  return h.decided + h.audit + h.dryRun + h.evalErrors;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function pct(n: number, of: number): string {
  return of === 0 ? '-' : `${((100 * n) / of).toFixed(1)}%`;
}

type TableFn = (headers: readonly string[], rows: readonly (readonly (string | number)[])[], align?: readonly Align[]) => string;

/** Renders the summary as text tables (default) or Markdown (same sections, Markdown tables). */
export function renderSummary(s: AuditSummary, format: 'text' | 'markdown'): string {
  const md = format === 'markdown';
  const table: TableFn = md ? renderMarkdownTable : renderTextTable;
  const h = (title: string) => (md ? `### ${title}` : `== ${title} ==`);
  const out: string[] = [];
  const R: Align[] = ['left', 'right', 'right'];
  if (md) out.push('## waygate audit summary', '');
  const windowText = s.window.first ? `${s.window.first} .. ${s.window.last}` : 'no records';
  out.push(
    `${formatCount(s.input.records)} records from ${s.input.files} input(s) (${formatBytes(s.input.bytes)}), ${windowText}` +
      (s.window.since || s.window.until ? `; window ${s.window.since ?? '-'} .. ${s.window.until ?? '-'} (${formatCount(s.input.outsideWindow)} outside)` : ''),
  );
  out.push(
    `events: ${formatCount(s.events.decision)} decision, ${formatCount(s.events.close)} close, ${formatCount(s.events.reload)} reload` +
      `; skipped: ${formatCount(s.input.malformed)} malformed, ${formatCount(s.input.unknownSchema)} unknown schema` +
        (s.input.opsLog > 0 ? `, ${formatCount(s.input.opsLog)} operational log lines` : ''),
  );
  out.push('', h('Decisions'));
  out.push(
    table(
      ['decision', 'count', 'share'],
      [
        ['allow', formatCount(s.decisions.allow), pct(s.decisions.allow, s.decisions.total)],
        ['deny', formatCount(s.decisions.deny), pct(s.decisions.deny, s.decisions.total)],
        ['total', formatCount(s.decisions.total), ''],
      ],
      R,
    ),
  );
  out.push('', h('Reasons'));
  out.push(table(['reason', 'decision', 'count'], s.reasons.filter((r) => r.count > 0).map((r) => [r.reason, r.decision, formatCount(r.count)]), ['left', 'left', 'right']));
  const approx = s.topDenied.approximate ? ' (approximate: high cardinality)' : '';
  out.push('', h(`Top denied identities${approx}`));
  out.push(table(['principal', 'denies'], s.topDenied.principals.map((e) => [e.key, formatCount(e.count)]), ['left', 'right']));
  out.push('', h('Top denied namespaces'));
  out.push(table(['namespace', 'denies'], s.topDenied.namespaces.map((e) => [e.key, formatCount(e.count)]), ['left', 'right']));
  out.push('', h('Top denied destinations'));
  out.push(table(['destination', 'denies'], s.topDenied.destinations.map((e) => [e.key, formatCount(e.count)]), ['left', 'right']));
  out.push('', h('Rule hits'));
  out.push(
    table(
      ['policy', 'rule', 'action', 'mode', 'decided', 'audit', 'dry-run', 'eval errors', ...(s.neverFired ? ['in set'] : [])],
      s.rules.map((r) => [
        r.policy,
        r.rule,
        r.action ?? '-',
        r.mode ?? '-',
        formatCount(r.decided),
        formatCount(r.audit),
        formatCount(r.dryRun),
        formatCount(r.evalErrors),
        ...(s.neverFired ? [r.inPolicySet ? 'yes' : 'NO'] : []),
      ]),
      ['left', 'left', 'left', 'left', 'right', 'right', 'right', 'right', 'left'],
    ),
  );
  if (s.neverFired) {
    out.push('', h(`Rules that never fired (${s.neverFired.length})`));
    out.push(
      s.neverFired.length === 0
        ? 'every rule of the policy set fired at least once'
        : table(['policy', 'rule', 'action', 'mode'], s.neverFired.map((r) => [r.policy, r.rule, r.action, r.mode])),
    );
  }
  out.push('', h('Dry-run impact'));
  out.push(
    `${formatCount(s.dryRun.evaluated)} decisions had a dry-run outcome: ${formatCount(s.dryRun.wouldDeny)} would be denied, ${formatCount(s.dryRun.wouldAllow)} would be allowed by policy if dry-run policies were enforced (compared with the policy verdict, before transport refusals)`,
  );
  if (s.dryRun.byPolicy.length > 0) {
    out.push(
      table(
        ['dry-run policy', 'would deny', 'would allow', 'rule matches'],
        s.dryRun.byPolicy.map((p) => [p.policy, formatCount(p.wouldDeny), formatCount(p.wouldAllow), formatCount(p.matches)]),
        ['left', 'right', 'right', 'right'],
      ),
    );
  }
  out.push('', h('Closed tunnels'));
  const d = s.closes.durationMs;
  out.push(
    `${formatCount(s.closes.count)} closed; bytes to clients ${formatBytes(s.closes.bytesSent)}, from clients ${formatBytes(s.closes.bytesReceived)}; ` +
      `duration p50 ${formatDurationMs(d.p50)}, p95 ${formatDurationMs(d.p95)}, p99 ${formatDurationMs(d.p99)}, max ${formatDurationMs(d.max)}, total ${formatDurationMs(d.sum)}`,
  );
  if (s.closes.byReason.length > 0) out.push(table(['close reason', 'count'], s.closes.byReason.map((e) => [e.key, formatCount(e.count)]), ['left', 'right']));
  out.push('', h('Reloads'));
  out.push(`applied ${s.reloads.applied}, rejected ${s.reloads.rejected}, unchanged ${s.reloads.unchanged}`);
  out.push('', h(`Decisions over time (bucket ${formatDurationMs(s.timeline.bucketMs)})`));
  out.push(renderTimeline(s.timeline, table, md));
  if (s.input.issues.length > 0) {
    out.push('', h('Skipped lines'));
    const lines = s.input.issues.map((i) => `${i.file}:${i.line}: ${i.kind}: ${i.detail}`);
    const more = s.input.malformed + s.input.unknownSchema - s.input.issues.length;
    if (more > 0) lines.push(`... and ${more} more`);
    out.push(md ? lines.map((l) => `- ${l.replace(/[\\`*_[\]<>&|]/g, '\\$&')}`).join('\n') : lines.join('\n'));
  }
  return out.join('\n') + '\n';
}

function renderTimeline(t: TimeHistogramResult, table: TableFn, md: boolean): string {
  if (t.buckets.length === 0) return 'no decisions';
  const max = Math.max(...t.buckets.map((b) => b.allow + b.deny), 1);
  const width = 40;
  return table(
    ['bucket start', 'allow', 'deny', ...(md ? [] : [''])],
    t.buckets.map((b) => {
      const a = Math.round((b.allow / max) * width);
      const dn = Math.round((b.deny / max) * width);
      return [b.start, formatCount(b.allow), formatCount(b.deny), ...(md ? [] : ['+'.repeat(a) + 'x'.repeat(dn)])];
    }),
    ['left', 'right', 'right', 'left'],
  );
}
