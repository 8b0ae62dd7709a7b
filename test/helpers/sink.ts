/**
 * The audit sink of every in-process test (HBONE server and gateway fixtures alike): it keeps each
 * record (a copy, so a later mutation by the code under test cannot rewrite what a test saw) and
 * lets a test await the records it expects.
 *
 * Every wait is bounded (10 s by default): a record that never comes fails the test at once with
 * what it waited for and what did arrive, instead of hanging until the runner's 120 s timeout.
 */
import type { CloseRecord, DecisionRecord, MeshReloadRecord, ReloadRecord } from '../../src/audit/record.ts';
import type { AuditSink } from '../../src/audit/sink.ts';

/** How long a wait for a record lasts unless the sink or the call says otherwise. */
export const DEFAULT_RECORD_WAIT_MS = 10_000;

export interface WaitOptions {
  /** Named in the error when the wait times out; default the predicate's source text. */
  what?: string;
  timeoutMs?: number;
}

interface Waiter {
  pred: () => boolean;
  resolve: () => void;
}

export class RecordingSink implements AuditSink {
  readonly decisions: DecisionRecord[] = [];
  readonly closes: CloseRecord[] = [];
  /** Policy reloads, and with discovery the mesh reloads (`source: 'mesh'`). */
  readonly reloads: ReloadRecord[] = [];
  readonly waitTimeoutMs: number;
  #waiters: Waiter[] = [];

  constructor(opts: { waitTimeoutMs?: number } = {}) {
    this.waitTimeoutMs = opts.waitTimeoutMs ?? DEFAULT_RECORD_WAIT_MS;
  }

  decision(r: DecisionRecord): void {
    this.decisions.push(structuredClone(r));
    this.#wake();
  }
  close(r: CloseRecord): void {
    this.closes.push(structuredClone(r));
    this.#wake();
  }
  reload(r: ReloadRecord | MeshReloadRecord): void {
    this.reloads.push(structuredClone(r) as ReloadRecord);
    this.#wake();
  }
  async flush(): Promise<void> {}

  #wake(): void {
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.pred()) return true;
      w.resolve();
      return false;
    });
  }

  /**
   * Resolves once `pred` holds (checked now and after every record); rejects after the timeout
   * with `what` (or the predicate's source) and a count of the records that did arrive.
   */
  until(pred: () => boolean, opts: WaitOptions = {}): Promise<void> {
    if (pred()) return Promise.resolve();
    const timeoutMs = opts.timeoutMs ?? this.waitTimeoutMs;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        pred,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`audit sink: no ${opts.what ?? `record satisfying ${pred.toString()}`} within ${timeoutMs} ms (${this.#summary()})`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** The latest decision record of `streamId` (on `connectionId` if given), awaited. */
  async decisionFor(streamId: number, connectionId?: string, opts: Omit<WaitOptions, 'what'> = {}): Promise<DecisionRecord> {
    // The latest match: stream ids repeat across connections, and a test's own record is written
    // before its client sees the response.
    const find = () => this.decisions.findLast((d) => d.streamId === streamId && (connectionId === undefined || d.connectionId === connectionId));
    const what = `decision record for stream ${streamId}${connectionId === undefined ? '' : ` on connection ${connectionId}`}`;
    await this.until(() => find() !== undefined, { ...opts, what });
    return find()!;
  }

  /** The close record of the tunnel decided by `decisionId`, awaited. */
  async closeFor(decisionId: string, opts: Omit<WaitOptions, 'what'> = {}): Promise<CloseRecord> {
    const find = () => this.closes.find((c) => c.decisionId === decisionId);
    await this.until(() => find() !== undefined, { ...opts, what: `close record for decision ${decisionId}` });
    return find()!;
  }

  /** The reload record written after the first `after` ones (default: the next one), awaited. */
  async nextReload(after = this.reloads.length, opts: Omit<WaitOptions, 'what'> = {}): Promise<ReloadRecord> {
    await this.until(() => this.reloads.length > after, { ...opts, what: `reload record #${after + 1}` });
    return this.reloads[after]!;
  }

  #summary(): string {
    const last = (rs: { decisionId?: string; reason?: string; result?: string }[]): string => {
      const r = rs.at(-1);
      return r ? `, last ${r.reason ?? r.result ?? r.decisionId ?? '?'}` : '';
    };
    return `seen: ${this.decisions.length} decisions${last(this.decisions)}, ${this.closes.length} closes, ${this.reloads.length} reloads${last(this.reloads)}`;
  }
}
