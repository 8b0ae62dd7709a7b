/**
 * Where audit records go. The transport and the reload path write through this interface; the
 * pino-backed implementation lives in logger.ts. Writes never block the data path; `flush()` is
 * awaited on shutdown so no record is lost (pino's docs: asynchronous destinations lose lines on a
 * crash unless flushed).
 */
import type { CloseRecord, DecisionRecord, MeshReloadRecord, ReloadRecord } from './record.ts';

export interface AuditSink {
  decision(record: DecisionRecord): void;
  close(record: CloseRecord): void;
  /** A policy load, or a load of the discovery source (`source: mesh`). */
  reload(record: ReloadRecord | MeshReloadRecord): void;
  /** Resolves once every record written so far has reached its destination. */
  flush(): Promise<void>;
}
