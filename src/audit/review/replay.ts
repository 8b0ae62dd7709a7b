/**
 * `waygate audit replay --policies NEW_DIR`: re-decide every recorded decision with a candidate
 * policy set and report what would flip. Trustworthy by construction: the context is rebuilt by
 * the same builder `policy test` and `policy eval` use (`contextFromAuditRecord`, `now` = the
 * record's time), and decided by the same pure `decide()` the gateway runs, against one immutable
 * snapshot for the whole replay.
 *
 * Only policy verdicts are comparable. Records the engine decided compare their own verdict.
 * `destination_not_allowed` and `upstream_failed` records were ALLOWED by policy and refused later
 * by the transport (src/hbone/connect-handler.ts, reasons and statuses in src/hbone/connect-outcome.ts): they replay against that policy allow (a candidate that
 * denies them is a real allow -> deny flip of the policy verdict) and are labelled so. Records
 * decided before or without policy (bad_request, no_identity, draining, policy_changed) are
 * counted as not replayable, by reason.
 *
 * Exactness: records carry only allow-listed headers, secrets redacted (docs/design.md §4). Each replay
 * runs with the record's headers and baggage behind a Proxy that notes every key the decision
 * actually looked up (CEL `&&`/`||` short-circuit, so a rule whose other conditions fail never
 * looks): a flip whose decision looked up a header or baggage key the record does not carry (or
 * carries redacted), or enumerated the header/baggage map, is INEXACT. Inexact flips are counted
 * and printed apart and do not fail `--fail-on-new-denies`. Lookups by AUDIT and dry-run rules
 * count too (conservative: they cannot change the verdict, but one decide() call cannot tell them
 * apart).
 */
import { contextFromAuditRecord } from '../../policy/context-input.ts';
import { AFTER_POLICY_ALLOW_REASONS, type DefaultAction, type Verdict } from '../../policy/decision.ts';
import { decide } from '../../policy/engine.ts';
import type { PolicySnapshot } from '../../policy/snapshot.ts';
import type { DecisionContext } from '../../policy/context.ts';
import type { AuditRecord, DecisionRecord } from '../record.ts';
import { REDACTED } from '../redact.ts';
import type { ReadStats } from './reader.ts';
import { formatCount, renderMarkdownTable, renderTextTable } from './table.ts';

/** Reasons the engine returns: the only records a candidate policy set can re-decide. */
export const REPLAYABLE_REASONS: ReadonlySet<string> = new Set([
  'allowed', 'default_allow', 'explicit_deny', 'no_allow_match', 'default_deny', 'eval_error',
]);

/** Transport reasons written after the policy engine allowed: replayed against that policy allow. */
export { AFTER_POLICY_ALLOW_REASONS };

export interface ReplayOptions {
  snapshot: PolicySnapshot;
  /** The gateway's defaultAction to replay with (docs/design.md §3 step 3). */
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
  /** The recorded POLICY verdict (for transport refusals: the allow that preceded them). */
  recorded: Outcome;
  candidate: Outcome;
  /** `destination_not_allowed` / `upstream_failed` when the transport refused after the policy allowed. */
  refusedByTransport: string | null;
  /** Why the flip is inexact (attributes the decision read that the record lacks); empty when exact. */
  inexact: string[];
}

export interface FlipGroup {
  key: string;
  count: number;
  examples: FlipExample[];
}

export interface FlipSet {
  /** Every flip, exact and inexact. */
  count: number;
  /** Flips whose decision read only attributes the records carry: what `--fail-on-new-denies` counts. */
  exact: number;
  /** Flips that depend on a header or baggage key the records do not carry (or carry redacted). */
  inexact: number;
  /** Inexact flips grouped by the attribute they depend on (a flip may appear under several). */
  inexactByDependency: FlipGroup[];
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
  /** Records allowed by policy and then refused by the transport, replayed against that allow. */
  afterPolicyAllow: { count: number; byReason: { reason: string; count: number }[] };
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
  add(key: string, ex: FlipExample, count = 1): void {
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
    g.count += count;
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
  private readonly afterAllow = new Map<string, number>();
  private readonly a2d: FlipAccumulator;
  private readonly d2a: FlipAccumulator;
  /** Header names present in replayed records, and whether any value was redacted. */
  private readonly headersSeen = new Map<string, { redacted: boolean }>();
  /** Baggage keys present in replayed records. */
  private readonly baggageSeen = new Set<string>();
  private recordedDefaultAllow = 0;
  private readonly since: number;
  private readonly until: number;

  constructor(private readonly options: ReplayOptions) {
    const ex = options.examples ?? 3;
    this.a2d = newFlipAccumulator(ex);
    this.d2a = newFlipAccumulator(ex);
    this.since = options.sinceMs ?? -Infinity;
    this.until = options.untilMs ?? Infinity;
  }

  /**
   * `count` > 1 stands for that many records the replay cannot tell apart from `rec` (the same
   * recorded outcome and the same value of every attribute the candidate reads: src/audit/review/suggest.ts
   * ReplayStore): one decision, counted `count` times.
   */
  add(rec: AuditRecord, count = 1): void {
    if (rec.event !== 'decision') return;
    if (this.options.sinceMs != null || this.options.untilMs != null) {
      const t = Date.parse(rec.time);
      if (!(t >= this.since && t < this.until)) return;
    }
    this.decisions += count;
    const afterAllow = AFTER_POLICY_ALLOW_REASONS.has(rec.reason);
    if (!REPLAYABLE_REASONS.has(rec.reason) && !afterAllow) {
      this.notReplayable.set(rec.reason, (this.notReplayable.get(rec.reason) ?? 0) + count);
      return;
    }
    if (rec.reason === 'default_allow') this.recordedDefaultAllow += count;
    let decision;
    const lookups = new LookupLog();
    try {
      decision = decide(this.options.snapshot, trackedContext(contextFromAuditRecord(rec), lookups), { defaultAction: this.options.defaultAction });
    } catch (err) {
      this.invalid.count += count;
      if (this.invalid.examples.length < 5) this.invalid.examples.push({ decisionId: rec.decisionId, message: (err as Error).message });
      return;
    }
    this.replayed += count;
    if (afterAllow) this.afterAllow.set(rec.reason, (this.afterAllow.get(rec.reason) ?? 0) + count);
    for (const [name, value] of Object.entries(rec.headers ?? {})) {
      const seen = this.headersSeen.get(name);
      if (seen === undefined) this.headersSeen.set(name, { redacted: value === REDACTED });
      else if (value === REDACTED) seen.redacted = true;
    }
    for (const key of Object.keys(rec.baggage ?? {})) this.baggageSeen.add(key);
    // The policy verdict: for a transport refusal after an allow, that allow (the record's
    // decision field holds the transport's answer; its policy/rule, when kept, the allowing rule).
    const recorded: Outcome = afterAllow
      ? { decision: 'allow', reason: rec.policy != null ? 'allowed' : rec.reason, policy: rec.policy ?? null, rule: rec.rule ?? null }
      : { decision: rec.decision, reason: rec.reason, policy: rec.policy ?? null, rule: rec.rule ?? null };
    const candidate: Outcome = { decision: decision.decision, reason: decision.reason, policy: decision.policy, rule: decision.rule };
    if (recorded.decision === candidate.decision) {
      this.unchanged += count;
      // A destination_not_allowed record does not name the allowing rule: nothing to compare.
      const comparable = !afterAllow || rec.policy != null;
      if (comparable && (recorded.policy !== candidate.policy || recorded.rule !== candidate.rule || (!afterAllow && recorded.reason !== candidate.reason))) this.otherRule += count;
      return;
    }
    const inexact = lookups.unrecorded(rec);
    const ex = exampleOf(rec, recorded, candidate, afterAllow ? rec.reason : null, inexact);
    addFlip(candidate.decision === 'deny' ? this.a2d : this.d2a, ex, count);
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
      notReplayable: countsByReason(this.notReplayable),
      afterPolicyAllow: countsByReason(this.afterAllow),
      invalidInput: this.invalid,
      allowToDeny: flipSet(this.a2d, top),
      denyToAllow: flipSet(this.d2a, top),
      warnings: this.warnings(),
    };
  }

  /**
   * Records carry only allow-listed headers (docs/design.md §4), redacted where secret. A candidate rule
   * that reads another header sees it absent on replay, exactly as if the client had not sent it:
   * such replays are not exact, so say which headers (and baggage keys) and why. Which flips are
   * affected is decided per record (`inexact` on each flip).
   */
  private warnings(): string[] {
    const out: string[] = [];
    const reads = [...this.options.snapshot.reads];
    const headerReads = reads.filter((r) => r === HEADERS || r.startsWith(`${HEADERS}.`));
    for (const r of headerReads.sort()) {
      if (r === HEADERS) {
        out.push('the candidate policies read request.headers with a computed key: replays of decisions that depend on headers outside the audit allow-list may not be exact');
        continue;
      }
      const name = r.slice(HEADERS.length + 1);
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

const HEADERS = 'request.headers';
const BAGGAGE = 'request.baggage';

/**
 * The header and baggage keys one decide() call looked up, and whether it enumerated either map.
 * Filled by the Proxies of trackedContext().
 */
class LookupLog {
  readonly headers = new Set<string>();
  readonly baggage = new Set<string>();
  headersEnumerated = false;
  baggageEnumerated = false;

  /**
   * What the decision read that the record does not hold as sent: keys it lacks, keys it holds
   * redacted, or a whole-map enumeration (the record holds an allow-listed part of the headers).
   */
  unrecorded(rec: DecisionRecord): string[] {
    const out: string[] = [];
    const headers = rec.headers ?? {};
    if (this.headersEnumerated) out.push(`${HEADERS} (the whole map), which the log records only in part (allow-listed headers)`);
    for (const name of [...this.headers].sort()) {
      if (!Object.hasOwn(headers, name)) out.push(`${HEADERS}.${name}, which the log does not record`);
      else if (headers[name] === REDACTED) out.push(`${HEADERS}.${name}, which the log records redacted`);
    }
    // Baggage is not checked: the transport records every parsed baggage member (bounded by the
    // header list size), so a key a record lacks was absent on the wire and replays exactly.
    return out;
  }
}

/**
 * `ctx` with its header and baggage maps behind Proxies that log lookups into `log`. The engine and
 * cel-js probe a map's `constructor` to type it (celStringMap, cel-js's type lookup): that is not
 * a header read. A map holding an own `constructor` key is turned into a `Map` by celStringMap,
 * which a Proxy cannot observe: such a record counts as enumerating the map (inexact).
 */
function trackedContext(ctx: DecisionContext, log: LookupLog): DecisionContext {
  const track = (m: Record<string, string>, keys: Set<string>, enumerated: () => void): Record<string, string> => {
    if (Object.hasOwn(m, 'constructor')) {
      enumerated();
      return m;
    }
    const note = (k: string | symbol): void => {
      if (typeof k === 'string' && k !== 'constructor') keys.add(k);
    };
    return new Proxy(m, {
      get(t, k, receiver) {
        note(k);
        return Reflect.get(t, k, receiver);
      },
      has(t, k) {
        note(k);
        return Reflect.has(t, k);
      },
      getOwnPropertyDescriptor(t, k) {
        note(k);
        return Reflect.getOwnPropertyDescriptor(t, k);
      },
      ownKeys(t) {
        enumerated();
        return Reflect.ownKeys(t);
      },
    });
  };
  return {
    ...ctx,
    request: {
      ...ctx.request,
      headers: track(ctx.request.headers as Record<string, string>, log.headers, () => (log.headersEnumerated = true)),
      baggage: track(ctx.request.baggage as Record<string, string>, log.baggage, () => (log.baggageEnumerated = true)),
    },
  };
}

interface FlipAccumulator {
  count: number;
  inexact: number;
  id: Grouper;
  rule: Grouper;
  dependency: Grouper;
}

function newFlipAccumulator(examples: number): FlipAccumulator {
  return { count: 0, inexact: 0, id: new Grouper(examples), rule: new Grouper(examples), dependency: new Grouper(examples) };
}

function addFlip(set: FlipAccumulator, ex: FlipExample, count: number): void {
  set.count += count;
  set.id.add(ex.principal || '(no identity)', ex, count);
  const c = ex.candidate;
  set.rule.add(c.policy !== null ? `${c.policy}/${c.rule}` : `(${c.reason})`, ex, count);
  if (ex.inexact.length > 0) {
    set.inexact += count;
    for (const why of ex.inexact) set.dependency.add(why, ex, count);
  }
}

function flipSet(set: FlipAccumulator, top: number): FlipSet {
  return {
    count: set.count,
    exact: set.count - set.inexact,
    inexact: set.inexact,
    inexactByDependency: set.dependency.top(top),
    byIdentity: set.id.top(top),
    byRule: set.rule.top(top),
  };
}

function countsByReason(m: ReadonlyMap<string, number>): { count: number; byReason: { reason: string; count: number }[] } {
  return {
    count: [...m.values()].reduce((s, n) => s + n, 0),
    byReason: [...m].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1)),
  };
}

function exampleOf(rec: DecisionRecord, recorded: Outcome, candidate: Outcome, refusedByTransport: string | null, inexact: string[]): FlipExample {
  const d = rec.destination;
  return {
    decisionId: rec.decisionId,
    time: rec.time,
    principal: rec.source.principal,
    sourceIp: rec.source.ip,
    destination: d.authority || `${d.ip}:${d.port}`,
    recorded,
    candidate,
    refusedByTransport,
    inexact,
  };
}

function outcomeText(o: Outcome): string {
  return `${o.decision} ${o.policy !== null ? `${o.policy}/${o.rule}` : `(${o.reason})`}`;
}

function recordedText(e: FlipExample): string {
  // Label the policy allow that a transport refusal followed, so nobody reads it as a served tunnel.
  if (e.refusedByTransport === null) return outcomeText(e.recorded);
  // destination_not_allowed records do not keep the allowing rule (src/hbone/connect-handler.ts).
  const allow = e.recorded.policy !== null ? outcomeText(e.recorded) : 'allow (rule not recorded)';
  return `${allow}, then refused: ${e.refusedByTransport}`;
}

/** Renders the replay as text (default) or Markdown (for a PR comment in CI). */
export function renderReplay(r: ReplayResult, format: 'text' | 'markdown'): string {
  const md = format === 'markdown';
  const table = md ? renderMarkdownTable : renderTextTable;
  const h = (t: string) => (md ? `### ${t}` : `== ${t} ==`);
  const out: string[] = [];
  const flipCount = (set: FlipSet) => `${formatCount(set.count)}${set.inexact > 0 ? ` (${formatCount(set.exact)} exact, ${formatCount(set.inexact)} inexact)` : ''}`;
  if (md) out.push('## waygate audit replay', '');
  out.push(
    `candidate ${r.candidate.hash} (${r.candidate.files.length} file(s)), defaultAction ${r.defaultAction}`,
    `${formatCount(r.decisions)} decision records: ${formatCount(r.replayed)} replayed (${formatCount(r.afterPolicyAllow.count)} of them allowed by policy then refused by the transport), ${formatCount(r.notReplayable.count)} not replayable, ${formatCount(r.invalidInput.count)} invalid input`,
    `flips: ${flipCount(r.allowToDeny)} allow -> deny, ${flipCount(r.denyToAllow)} deny -> allow; ${formatCount(r.unchanged)} unchanged (${formatCount(r.sameVerdictOtherRule)} decided by another rule)`,
  );
  if (r.warnings.length > 0) {
    out.push('', h('Warnings'));
    for (const w of r.warnings) out.push(`${md ? '- ' : 'warning: '}${w}`);
  }
  if (r.afterPolicyAllow.count > 0) {
    out.push('', h('Replayed against the policy verdict (allowed by policy, then refused by the transport)'));
    out.push(table(['reason', 'records'], r.afterPolicyAllow.byReason.map((x) => [x.reason, formatCount(x.count)]), ['left', 'right']));
  }
  if (r.notReplayable.count > 0) {
    out.push('', h('Not replayable (decided before or without the policy engine)'));
    out.push(table(['reason', 'records'], r.notReplayable.byReason.map((x) => [x.reason, formatCount(x.count)]), ['left', 'right']));
  }
  for (const [title, set] of [['allow -> deny', r.allowToDeny], ['deny -> allow', r.denyToAllow]] as const) {
    out.push('', h(`${title}: ${flipCount(set)}`));
    if (set.count === 0) {
      out.push('none');
      continue;
    }
    out.push(table(['identity', 'flips'], set.byIdentity.map((g) => [g.key, formatCount(g.count)]), ['left', 'right']));
    out.push('');
    out.push(table(['candidate rule', 'flips'], set.byRule.map((g) => [g.key, formatCount(g.count)]), ['left', 'right']));
    if (set.inexact > 0) {
      out.push('', `${formatCount(set.inexact)} of these flips are inexact (the decision read what the log does not record; not counted by --fail-on-new-denies):`);
      out.push(table(['inexact: depends on', 'flips'], set.inexactByDependency.map((g) => [g.key, formatCount(g.count)]), ['left', 'right']));
    }
    out.push('', md ? '#### Examples' : 'examples:');
    const rows: string[][] = [];
    for (const g of set.byRule) {
      for (const e of g.examples) {
        rows.push([
          e.time,
          e.principal || '(no identity)',
          e.destination,
          recordedText(e),
          outcomeText(e.candidate),
          e.inexact.length > 0 ? `inexact: depends on ${e.inexact.join('; ')}` : 'exact',
          e.decisionId,
        ]);
      }
    }
    out.push(table(['time', 'identity', 'destination', 'recorded', 'candidate', 'exactness', 'decisionId'], rows));
  }
  return out.join('\n') + '\n';
}
