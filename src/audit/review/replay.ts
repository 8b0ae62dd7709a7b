/**
 * `waygate audit replay --policies NEW_DIR`: re-decide every recorded decision with a candidate
 * policy set and report what would flip. Trustworthy by construction: the context is rebuilt by
 * the same builder `policy test` and `policy eval` use (`contextFromAuditRecord`, `now` = the
 * record's time), and decided by the same pure `decide()` the gateway runs, against one immutable
 * snapshot for the whole replay.
 *
 * Only decisions the policy engine made are comparable. A record whose reason came from the
 * transport (bad_request, no_identity, destination_not_allowed, upstream_failed, policy_changed,
 * draining) never reached the verdict the candidate would change, and is counted as not
 * replayable, by reason.
 */
import { contextFromAuditRecord } from '../../policy/context-input.ts';
import type { DefaultAction, Verdict } from '../../policy/decision.ts';
import { decide } from '../../policy/engine.ts';
import type { PolicySnapshot } from '../../policy/snapshot.ts';
import type { AuditRecord, DecisionRecord } from '../record.ts';
import { REDACTED } from '../redact.ts';
import type { ReadStats } from './reader.ts';
import { formatCount, renderMarkdownTable, renderTextTable } from './table.ts';

/** Reasons the engine returns: the only records a candidate policy set can re-decide. */
export const REPLAYABLE_REASONS: ReadonlySet<string> = new Set([
  'allowed', 'default_allow', 'explicit_deny', 'no_allow_match', 'default_deny', 'eval_error',
]);

export interface ReplayOptions {
  snapshot: PolicySnapshot;
  /** The gateway's defaultAction to replay with (DESIGN §3 step 3). */
  defaultAction: DefaultAction;
  /** Examples kept per group; default 3. */
  examples?: number;
  /** Groups listed per table; default 20. */
  top?: number;
  sinceMs?: number | null;
  untilMs?: number | null;
}

/** The outcome side of a flip. */
export interface Outcome {
  decision: Verdict;
  reason: string;
  policy: string | null;
  rule: string | null;
}

export interface FlipExample {
  decisionId: string;
  time: string;
  principal: string;
  sourceIp: string;
  destination: string;
  recorded: Outcome;
  candidate: Outcome;
}

export interface FlipGroup {
  key: string;
  count: number;
  examples: FlipExample[];
}

export interface FlipSet {
  count: number;
  /** Grouped by source identity (`(no identity)` when empty). */
  byIdentity: FlipGroup[];
  /** Grouped by the candidate's deciding rule (`policy/rule`, or `(reason)` for defaults). */
  byRule: FlipGroup[];
}

export interface ReplayResult {
  candidate: { version: number; hash: string; files: readonly string[] };
  defaultAction: DefaultAction;
  input: { files: number; records: number; malformed: number; unknownSchema: number };
  decisions: number;
  replayed: number;
  unchanged: number;
  /** Same verdict, different deciding policy/rule or reason. */
  sameVerdictOtherRule: number;
  notReplayable: { count: number; byReason: { reason: string; count: number }[] };
  /** Records whose input could not be rebuilt (e.g. a principal that is not a SPIFFE ID). */
  invalidInput: { count: number; examples: { decisionId: string; message: string }[] };
  allowToDeny: FlipSet;
  denyToAllow: FlipSet;
  /** Why some replays may not be exact (headers the records do not carry, default action, ...). */
  warnings: string[];
}

class Grouper {
  private readonly groups = new Map<string, FlipGroup>();
  constructor(
    private readonly examples: number,
    private readonly maxGroups = 10_000,
  ) {}
  add(key: string, ex: FlipExample): void {
    let g = this.groups.get(key);
    if (g === undefined) {
      // Bounded: past maxGroups distinct keys, further ones share one bucket.
      if (this.groups.size >= this.maxGroups) key = '(other)';
      g = this.groups.get(key);
      if (g === undefined) {
        g = { key, count: 0, examples: [] };
        this.groups.set(key, g);
      }
    }
    g.count++;
    if (g.examples.length < this.examples) g.examples.push(ex);
  }
  top(n: number): FlipGroup[] {
    return [...this.groups.values()].sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).slice(0, n);
  }
}

/** Streams records through the candidate set; call add() per record, then result(). */
export class ReplayAccumulator {
  private decisions = 0;
  private replayed = 0;
  private unchanged = 0;
  private otherRule = 0;
  private readonly notReplayable = new Map<string, number>();
  private readonly invalid = { count: 0, examples: [] as { decisionId: string; message: string }[] };
  private readonly a2d: { count: number; id: Grouper; rule: Grouper };
  private readonly d2a: { count: number; id: Grouper; rule: Grouper };
  /** Header names present in replayed records, and whether any value was redacted. */
  private readonly headersSeen = new Map<string, { redacted: boolean }>();
  private recordedDefaultAllow = 0;
  private readonly since: number;
  private readonly until: number;

  constructor(private readonly options: ReplayOptions) {
    const ex = options.examples ?? 3;
    this.a2d = { count: 0, id: new Grouper(ex), rule: new Grouper(ex) };
    this.d2a = { count: 0, id: new Grouper(ex), rule: new Grouper(ex) };
    this.since = options.sinceMs ?? -Infinity;
    this.until = options.untilMs ?? Infinity;
  }

  add(rec: AuditRecord): void {
    if (rec.event !== 'decision') return;
    if (this.options.sinceMs != null || this.options.untilMs != null) {
      const t = Date.parse(rec.time);
      if (!(t >= this.since && t < this.until)) return;
    }
    this.decisions++;
    if (!REPLAYABLE_REASONS.has(rec.reason)) {
      this.notReplayable.set(rec.reason, (this.notReplayable.get(rec.reason) ?? 0) + 1);
      return;
    }
    if (rec.reason === 'default_allow') this.recordedDefaultAllow++;
    let decision;
    try {
      decision = decide(this.options.snapshot, contextFromAuditRecord(rec), { defaultAction: this.options.defaultAction });
    } catch (err) {
      this.invalid.count++;
      if (this.invalid.examples.length < 5) this.invalid.examples.push({ decisionId: rec.decisionId, message: (err as Error).message });
      return;
    }
    this.replayed++;
    for (const [name, value] of Object.entries(rec.headers ?? {})) {
      const seen = this.headersSeen.get(name);
      if (seen === undefined) this.headersSeen.set(name, { redacted: value === REDACTED });
      else if (value === REDACTED) seen.redacted = true;
    }
    const recorded: Outcome = { decision: rec.decision, reason: rec.reason, policy: rec.policy ?? null, rule: rec.rule ?? null };
    const candidate: Outcome = { decision: decision.decision, reason: decision.reason, policy: decision.policy, rule: decision.rule };
    if (recorded.decision === candidate.decision) {
      this.unchanged++;
      if (recorded.policy !== candidate.policy || recorded.rule !== candidate.rule || recorded.reason !== candidate.reason) this.otherRule++;
      return;
    }
    const ex = exampleOf(rec, recorded, candidate);
    const set = candidate.decision === 'deny' ? this.a2d : this.d2a;
    set.count++;
    set.id.add(rec.source.principal || '(no identity)', ex);
    set.rule.add(candidate.policy !== null ? `${candidate.policy}/${candidate.rule}` : `(${candidate.reason})`, ex);
  }

  result(stats: ReadStats, files: readonly string[]): ReplayResult {
    const top = this.options.top ?? 20;
    return {
      candidate: { version: this.options.snapshot.version, hash: this.options.snapshot.hash, files },
      defaultAction: this.options.defaultAction,
      input: { files: stats.files, records: stats.records, malformed: stats.malformed, unknownSchema: stats.unknownSchema },
      decisions: this.decisions,
      replayed: this.replayed,
      unchanged: this.unchanged,
      sameVerdictOtherRule: this.otherRule,
      notReplayable: {
        count: [...this.notReplayable.values()].reduce((s, n) => s + n, 0),
        byReason: [...this.notReplayable].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count),
      },
      invalidInput: this.invalid,
      allowToDeny: { count: this.a2d.count, byIdentity: this.a2d.id.top(top), byRule: this.a2d.rule.top(top) },
      denyToAllow: { count: this.d2a.count, byIdentity: this.d2a.id.top(top), byRule: this.d2a.rule.top(top) },
      warnings: this.warnings(),
    };
  }

  /**
   * Records carry only allow-listed headers (DESIGN §4), redacted where secret. A candidate rule
   * that reads another header sees it absent on replay, exactly as if the client had not sent it:
   * such replays are not exact, so say which headers and why.
   */
  private warnings(): string[] {
    const out: string[] = [];
    const reads = [...this.options.snapshot.reads];
    const headerReads = reads.filter((r) => r === 'request.headers' || r.startsWith('request.headers.'));
    for (const r of headerReads.sort()) {
      if (r === 'request.headers') {
        out.push('the candidate policies read request.headers with a computed key: replays of decisions that depend on headers outside the audit allow-list may not be exact');
        continue;
      }
      const name = r.slice('request.headers.'.length);
      const seen = this.headersSeen.get(name);
      if (seen === undefined) {
        out.push(`the candidate policies read header "${name}", which no replayed record carries (not in the audit header allow-list?): it replays as absent, so those decisions may not be exact`);
      } else if (seen.redacted) {
        out.push(`the candidate policies read header "${name}", whose value is redacted in the records: it replays as "${REDACTED}"`);
      }
    }
    if (this.recordedDefaultAllow > 0 && this.options.defaultAction === 'DENY') {
      out.push(`${this.recordedDefaultAllow} record(s) were decided with defaultAction ALLOW (reason default_allow) but the replay uses DENY: pass --default-action ALLOW to replay with the gateway's setting`);
    }
    if (this.invalid.count > 0) out.push(`${this.invalid.count} record(s) could not be rebuilt into a decision input and were skipped`);
    return out;
  }
}

function exampleOf(rec: DecisionRecord, recorded: Outcome, candidate: Outcome): FlipExample {
  const d = rec.destination;
  return {
    decisionId: rec.decisionId,
    time: rec.time,
    principal: rec.source.principal,
    sourceIp: rec.source.ip,
    destination: d.authority || `${d.ip}:${d.port}`,
    recorded,
    candidate,
  };
}

function outcomeText(o: Outcome): string {
  return `${o.decision} ${o.policy !== null ? `${o.policy}/${o.rule}` : `(${o.reason})`}`;
}

/** Renders the replay as text (default) or Markdown (for a PR comment in CI). */
export function renderReplay(r: ReplayResult, format: 'text' | 'markdown'): string {
  const md = format === 'markdown';
  const table = md ? renderMarkdownTable : renderTextTable;
  const h = (t: string) => (md ? `### ${t}` : `== ${t} ==`);
  const out: string[] = [];
  if (md) out.push('## waygate audit replay', '');
  out.push(
    `candidate ${r.candidate.hash} (${r.candidate.files.length} file(s)), defaultAction ${r.defaultAction}`,
    `${formatCount(r.decisions)} decision records: ${formatCount(r.replayed)} replayed, ${formatCount(r.notReplayable.count)} not replayable, ${formatCount(r.invalidInput.count)} invalid input`,
    `flips: ${formatCount(r.allowToDeny.count)} allow -> deny, ${formatCount(r.denyToAllow.count)} deny -> allow; ${formatCount(r.unchanged)} unchanged (${formatCount(r.sameVerdictOtherRule)} decided by another rule)`,
  );
  if (r.warnings.length > 0) {
    out.push('', h('Warnings'));
    for (const w of r.warnings) out.push(`${md ? '- ' : 'warning: '}${w}`);
  }
  if (r.notReplayable.count > 0) {
    out.push('', h('Not replayable (decided outside the policy engine)'));
    out.push(table(['reason', 'records'], r.notReplayable.byReason.map((x) => [x.reason, formatCount(x.count)]), ['left', 'right']));
  }
  for (const [title, set] of [['allow -> deny', r.allowToDeny], ['deny -> allow', r.denyToAllow]] as const) {
    out.push('', h(`${title} (${formatCount(set.count)})`));
    if (set.count === 0) {
      out.push('none');
      continue;
    }
    out.push(table(['identity', 'flips'], set.byIdentity.map((g) => [g.key, formatCount(g.count)]), ['left', 'right']));
    out.push('');
    out.push(table(['candidate rule', 'flips'], set.byRule.map((g) => [g.key, formatCount(g.count)]), ['left', 'right']));
    out.push('', md ? '#### Examples' : 'examples:');
    const rows: string[][] = [];
    for (const g of set.byRule) {
      for (const e of g.examples) rows.push([e.time, e.principal || '(no identity)', e.destination, outcomeText(e.recorded), outcomeText(e.candidate), e.decisionId]);
    }
    out.push(table(['time', 'identity', 'destination', 'recorded', 'candidate', 'decisionId'], rows));
  }
  return out.join('\n') + '\n';
}
