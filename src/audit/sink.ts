/**
 * Where audit records go. The transport and the reload path write through this interface; the
 * pino-backed implementation lives in logger.ts, the workers-mode one (records sent to the
 * primary, the only writer) in src/gateway/cluster.ts.
 *
 * Durability (docs/operating.md, "Audit log guarantees"): an allowed CONNECT's decision record
 * goes through {@link AuditSink.decisionAhead}, which resolves once the record was handed to the
 * operating system (group commit: the records of one event-loop turn in one write), and the
 * CONNECT is answered 200 only then. Every other record is written the same way without anyone
 * waiting for it: within the event-loop turn after it was written, never held for a buffer to fill.
 */
import type { CloseRecord, DecisionRecord, MeshReloadRecord, ReloadRecord } from './record.ts';

/**
 * What became of a write-ahead decision record:
 * - `written`: handed to the operating system (and fsync'ed when `audit.sync` says so): answer 200;
 * - `bypassed`: the log cannot be written and `audit.onFailure` is `allow`: answer 200 without it
 *   (the record stays queued while the bounded buffer has room, else it is dropped and counted);
 * - `withdrawn`: not written within the bound (or refused at once while the log is failing and
 *   `audit.onFailure` is `deny`), and taken back out of the queue: refuse with `audit_unavailable`;
 * - `in_flight`: not written within the bound, but already handed to a write call that has not
 *   returned (a stalled pipe): refuse all the same; the record may still reach the log later.
 */
export type AheadResult = 'written' | 'bypassed' | 'withdrawn' | 'in_flight';

/** `ok`; `slow`: the destination takes bytes slower than they come (backpressure, no error); `failed`: writes fail. */
export type AuditState = 'ok' | 'slow' | 'failed';

/** The writer's health, for readiness, metrics and `/debug/config`. */
export interface AuditHealth {
  state: AuditState;
  /** The bounded buffer is full: new records are dropped (and counted). */
  backlogFull: boolean;
  /** New CONNECTs are refused with `audit_unavailable` (onFailure `deny`, and failed or backlog full). */
  refusing: boolean;
  /** Groups handed to a write call so far (records per write = group commit at work). */
  writes: number;
  /** Failed write (or fsync) calls so far. */
  writeErrors: number;
  /** Records dropped so far (buffer full, or still queued when the shutdown deadline passed). */
  droppedRecords: number;
  /** Bytes queued and not yet handed to the operating system. */
  queuedBytes: number;
  lastError: string | null;
}

export interface AuditSink {
  /** A decision nobody waits for (a refusal): written within the turn, like close and reload records. */
  decision(record: DecisionRecord): void;
  /**
   * A write-ahead decision record (an allow about to be answered 200). Never rejects. Sinks
   * without it (test doubles) are treated as writing at once.
   */
  decisionAhead?(record: DecisionRecord): Promise<AheadResult>;
  close(record: CloseRecord): void;
  /** A policy load, or a load of the discovery source (`source: mesh`). */
  reload(record: ReloadRecord | MeshReloadRecord): void;
  /** Resolves once every record written so far has reached its destination. */
  flush(): Promise<void>;
  /** The writer's health; only on the sink of the process that writes the destination. */
  health?(): AuditHealth;
  /** Called after every change of `health().state`, `backlogFull` or `refusing`. */
  onHealthChange?(listener: (h: AuditHealth) => void): void;
}
