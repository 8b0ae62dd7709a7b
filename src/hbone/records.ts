/**
 * The audit records of CONNECTs (docs/design.md §4), handed to the audit sink and the observer here and
 * nowhere else: the decision record of every CONNECT, built here (the connect handler,
 * connect-handler.ts, calls {@link ConnectRecorder.decision} exactly once per CONNECT, through
 * its attempt's `conclude()`, `open()` or `fail()`), and the close record of every tunnel that
 * passed authorization (built by the tunnel, tunnel.ts, when it ends).
 */
import type { Logger } from 'pino';
import { AUDIT_SCHEMA_VERSION, decisionRecord, type CloseRecord, type DecisionRecord, type DecisionRecordHead, type DecisionRecordTail, type UpstreamRecord } from '../audit/record.ts';
import type { HeaderAuditPolicy } from '../audit/redact.ts';
import type { AheadResult, AuditSink } from '../audit/sink.ts';
import type { DecisionContext } from '../policy/context.ts';
import type { Decision, Reason, Verdict } from '../policy/decision.ts';
import { notify, type HboneObserver } from './observer.ts';

/** What the decision record of one CONNECT is about (the connect handler's attempt carries it). */
export interface RecordBase {
  readonly decisionId: string;
  readonly streamId: number;
  /**
   * The evaluation input the record holds (src/audit/record.ts lays it out), its `now` the
   * record's time: the CONNECT's decision context, or for one refused before it had one (a
   * malformed CONNECT, a failure), what was known of it.
   */
  readonly context: DecisionContext;
  /** Where the tunnel went or was to go (with discovery, or a failed dial); undefined otherwise. */
  readonly upstream?: UpstreamRecord | undefined;
  /** Why the transport refused after the policy allowed (record field `detail`). */
  readonly detail?: string | undefined;
}

/** What the record says happened (a ConnectOutcome, or the allow of an opened tunnel). */
export interface RecordedOutcome {
  readonly verdict: Verdict;
  readonly reason: Reason;
  readonly decision: Decision | null;
  /** Keep policy/rule of `decision` (false when the transport, not the policy, decided). */
  readonly withRule: boolean;
}

export interface ConnectRecorderOptions {
  audit: AuditSink;
  observer: HboneObserver | undefined;
  log: Logger | undefined;
  /** Called per record: the gateway widens the allow-list to the headers the snapshot in force reads. */
  headerAuditPolicy: () => HeaderAuditPolicy;
  /** The snapshot in force, for records of CONNECTs refused before policy ran. */
  snapshotInfo: () => { version: number; hash: string };
}

export class ConnectRecorder {
  readonly #o: ConnectRecorderOptions;

  constructor(opts: ConnectRecorderOptions) {
    this.#o = opts;
  }

  /**
   * Writes the record of `b` with `outcome` and the status actually answered (0: none could be).
   * Throws only if building the record throws (the header policy hook); a sink that throws is
   * logged, an observer that throws is ignored.
   */
  decision(b: RecordBase, outcome: RecordedOutcome, status: number): void {
    const record = this.#build(b, outcome, status);
    try {
      this.#o.audit.decision(record);
    } catch (err) {
      this.#o.log?.error({ err: (err as Error).message }, 'audit sink failed to take a decision record');
    }
    notify(this.#o.observer, 'decision', record);
  }

  /**
   * Writes the record of an allow ahead of its answer (docs/operating.md, "Audit log
   * guarantees"): what became of it, synchronously when the sink has no write-ahead (test
   * doubles). A `withdrawn` record was never written and is not reported to the observer: the
   * refusal's own record is.
   */
  decisionAhead(b: RecordBase, outcome: RecordedOutcome, status: number): AheadResult | Promise<AheadResult> {
    const record = this.#build(b, outcome, status);
    const audit = this.#o.audit;
    if (!audit.decisionAhead) {
      audit.decision(record);
      notify(this.#o.observer, 'decision', record);
      return 'written';
    }
    return audit.decisionAhead(record).then((r) => {
      if (r !== 'withdrawn') notify(this.#o.observer, 'decision', record);
      return r;
    });
  }

  #build(b: RecordBase, outcome: RecordedOutcome, status: number): DecisionRecord {
    const d = outcome.decision;
    const withRule = outcome.withRule && d !== null;
    const ctx = b.context;
    const fields: DecisionRecordHead & DecisionRecordTail = {
      schema: AUDIT_SCHEMA_VERSION,
      event: 'decision',
      time: ctx.now.toISOString(),
      decisionId: b.decisionId,
      connectionId: ctx.connection.id,
      streamId: b.streamId,
      decision: outcome.verdict,
      reason: outcome.reason,
      status,
      policy: withRule ? d.policy : null,
      rule: withRule ? d.rule : null,
      dryRun: d ? d.dryRun : null,
      audit: d ? d.audit : [],
      evalErrors: d ? d.evalErrors.map((e) => ({ policy: e.policy, rule: e.rule, message: e.message })) : [],
      snapshot: d ? d.snapshot : this.#o.snapshotInfo(),
      evalMicros: d ? d.evalMicros : 0,
      upstream: b.upstream,
      detail: b.detail,
    };
    // The evaluation input, allow-listed and redacted headers included, as the catalogue lays it out.
    return decisionRecord(fields, ctx, this.#o.headerAuditPolicy());
  }

  /** A tunnel ended: its close record. */
  close(record: CloseRecord): void {
    try {
      this.#o.audit.close(record);
    } catch (err) {
      this.#o.log?.error({ err: (err as Error).message }, 'audit sink failed to take a close record');
    }
    notify(this.#o.observer, 'tunnelClosed', record);
  }
}
