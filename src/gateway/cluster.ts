/**
 * Workers mode (`--workers N|auto`, docs/design.md §5 "Scale"): node:cluster workers share the HBONE
 * listener (the primary accepts and hands connections round-robin); each worker runs its own
 * runtime and holds its own policy snapshot.
 *
 * The primary is the composition root of gateway.ts with a `WorkerPool` as its data plane
 * (data-plane.ts); a worker serves its own `LocalDataPlane` over IPC (`runWorker`). The messages
 * and their types are in worker-ipc.ts.
 *
 * Who owns what, and why:
 * - The **primary** owns the side ports (readiness, metrics, admin), the policy watcher, the
 *   signals and the audit log. One watcher means one debounce and one decision "the files
 *   changed": the primary then tells every worker to reload with the same version number, so the
 *   workers never disagree about which snapshot version is which, and one `reload` record is
 *   written per reload (closed tunnels summed over workers).
 * - **Workers** load and compile the set themselves (a compiled snapshot holds closures and cannot
 *   cross a process boundary), decide, and send every audit record to the primary over IPC. An
 *   allowed CONNECT's decision record is write-ahead across the process boundary: the worker
 *   answers 200 only once the primary acknowledged that its write returned (`auditAck`,
 *   docs/operating.md "Audit log guarantees"). The
 *   primary is the only writer of the audit destination, so the stream stays valid JSON lines
 *   whatever the record size (concurrent O_APPEND writes are atomic only up to PIPE_BUF on pipes,
 *   and not promised at all for stdout redirected to a file).
 * - `/metrics` asks every worker for its registry as JSON and merges them with prom-client's
 *   `AggregatorRegistry.aggregate` (counters and histograms summed, gauges as each declares).
 *
 * Drain: the primary turns not ready, tells every worker to drain (GOAWAY, wait, reset the rest),
 * waits for every worker to exit (their records arrive before their exit), flushes the audit log
 * and exits. A worker that dies outside a drain is replaced.
 */
import cluster, { type Worker } from 'node:cluster';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ReadinessState, NotReadyReason } from '../admin/readiness.ts';
import type { DecisionRecord, ReloadRecord } from '../audit/record.ts';
import { WRITE_AHEAD_BOUND_MS } from '../audit/logger.ts';
import type { AheadResult, AuditSink } from '../audit/sink.ts';
import type { EffectiveConfig } from '../config/resolve.ts';
import { resolveWorkerCount, type LogLevel } from '../config/schema.ts';
import { WaygateError } from '../errors.ts';
import type { Explanation } from '../policy/explain.ts';
import { createOpsLogger, setLogLevel, type OpsLogger } from '../telemetry/log.ts';
import { aggregateMetricsText, countReloadErrors, PrimaryMetrics, registerAuditMetrics } from '../telemetry/metrics.ts';
import { findPackage } from '../util/package-root.ts';
import { LocalDataPlane, type ConnectionView, type DataPlane, type DataPlaneStarted, type PolicyView } from './data-plane.ts';
import type { ReloadTrigger } from './reload.ts';
import {
  describeStartupFailure, workerStartupError, WORKER_ENV,
  type AuditAcks, type FromWorker, type ToWorker, type WorkerFailure, type WorkerOp, type WorkerOps, type WorkerRequestOf, type WorkerResultOf, type WorkerStart,
} from './worker-ipc.ts';

/**
 * One record for a reload every worker performed: the result they agree on (any rejection wins
 * when they do not: the files changed between loads and the next event reloads again), the
 * snapshot, and the tunnels closed across all of them.
 */
export function mergeReloadRecords(records: readonly ReloadRecord[], log?: OpsLogger): ReloadRecord {
  if (records.length === 0) throw new WaygateError('WG_CONFIG', 'no worker answered the reload');
  const results = new Set(records.map((r) => r.result));
  const first = records.find((r) => r.result === 'rejected') ?? records.find((r) => r.result === 'applied') ?? records[0]!;
  if (results.size > 1 || new Set(records.map((r) => r.snapshot.hash)).size > 1) {
    log?.error({ results: [...results] }, 'workers loaded different policy sets (files changed during the reload); the watcher will reload again');
  }
  const merged: ReloadRecord = { ...first };
  const closed = records.reduce((n, r) => n + (r.closedTunnels ?? 0), 0);
  if (records.some((r) => r.closedTunnels !== undefined)) merged.closedTunnels = closed;
  return merged;
}

/* ------------------------------------------------------------------------------------------ */
/* Primary                                                                                    */
/* ------------------------------------------------------------------------------------------ */

interface WorkerState {
  worker: Worker;
  /** Write-ahead acknowledgements settled this turn, not yet sent. */
  acks: [number, AheadResult][];
  up: boolean;
  readiness: ReadinessState;
  exited: Promise<void>;
}

interface PendingRequest {
  /** Takes the answer's value: the result of the operation asked (see `request`). */
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  workerId: number;
}

export interface WorkerPoolOptions {
  effective: EffectiveConfig;
  /** The primary's sink: every worker's records arrive here, the primary is their only writer. */
  audit: AuditSink;
  log: OpsLogger;
}

/** The workers of a `--workers N` primary behind the {@link DataPlane} interface. */
export class WorkerPool implements DataPlane {
  readonly #effective: EffectiveConfig;
  readonly #audit: AuditSink;
  readonly #log: OpsLogger;
  readonly #count: number;
  readonly #metrics = new PrimaryMetrics();
  readonly #workers = new Map<number, WorkerState>();
  readonly #pending = new Map<number, PendingRequest>();
  readonly #reloadListeners: ((record: ReloadRecord) => void)[] = [];
  #nextReq = 1;
  #version = 1;
  #draining = false;

  constructor(opts: WorkerPoolOptions) {
    this.#effective = opts.effective;
    this.#audit = opts.audit;
    this.#log = opts.log;
    this.#count = resolveWorkerCount(opts.effective.config.workers);
    const health = opts.audit.health?.bind(opts.audit);
    if (health) registerAuditMetrics(this.#metrics.registry, health);
  }

  /**
   * A worker's write-ahead record: written here (the only writer), then acknowledged. The acks a
   * turn settles for one worker leave in one message.
   */
  #writeAhead(state: WorkerState, record: DecisionRecord, seq: number): void {
    const audit = this.#audit;
    const ack = (result: AheadResult): void => {
      if (state.acks.length === 0) setImmediate(() => this.#sendAcks(state));
      state.acks.push([seq, result]);
    };
    if (!audit.decisionAhead) {
      audit.decision(record);
      ack('written');
      return;
    }
    void audit.decisionAhead(record).then(ack);
  }

  #sendAcks(state: WorkerState): void {
    const msg: AuditAcks = { t: 'auditAck', acks: state.acks };
    state.acks = [];
    if (state.worker.isConnected()) state.worker.send(msg);
  }

  #live(): WorkerState[] {
    return [...this.#workers.values()].filter((w) => w.up && w.worker.isConnected());
  }

  /** Asks worker `ws` for operation `op`; rejects when it answers an error, exits, or times out. */
  #request<K extends WorkerOp>(ws: WorkerState, op: K, arg: WorkerOps[K]['arg'], timeoutMs = 30_000): Promise<WorkerOps[K]['result']> {
    return new Promise((resolve, reject) => {
      const id = this.#nextReq++;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new WaygateError('WG_CONFIG', `worker ${ws.worker.id} did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.#pending.set(id, {
        // The answer carries this request's id, and the worker answers each request with the
        // result of the operation asked (`handleRequest`): the value is this operation's result.
        resolve: (v) => { clearTimeout(timer); resolve(v as WorkerOps[K]['result']); },
        reject: (e) => { clearTimeout(timer); reject(e); },
        workerId: ws.worker.id,
      });
      const msg: WorkerRequestOf<K> = { t: 'req', id, op, arg };
      ws.worker.send(msg);
    });
  }

  /** Asks every live worker; the answers in the order of `live()`, paired with their worker. */
  #askAll<K extends WorkerOp>(op: K, arg: WorkerOps[K]['arg'], timeoutMs?: number): Promise<{ worker: number; value: WorkerOps[K]['result'] }[]> {
    return Promise.all(this.#live().map(async (w) => ({ worker: w.worker.id, value: await this.#request(w, op, arg, timeoutMs) })));
  }

  readiness(): ReadinessState {
    if (this.#draining) return { ready: false, reasons: ['draining'] };
    const up = this.#live();
    const reasons = new Set<NotReadyReason>();
    if (up.length < this.#count) reasons.add('workers_not_ready');
    if (this.#audit.health?.().refusing) reasons.add('audit_unavailable');
    for (const w of up) for (const r of w.readiness.reasons) reasons.add(r);
    return { ready: reasons.size === 0, reasons: [...reasons] };
  }

  #writeReload(record: ReloadRecord): void {
    this.#metrics.reloads.inc({ result: record.result, trigger: record.trigger });
    countReloadErrors(this.#metrics.reloadErrors, record);
    this.#audit.reload(record);
    for (const l of this.#reloadListeners) l(record);
  }

  onReload(listener: (record: ReloadRecord) => void): void {
    this.#reloadListeners.push(listener);
  }

  async reload(trigger: ReloadTrigger): Promise<ReloadRecord> {
    const version = ++this.#version;
    const answers = await this.#askAll('reload', { trigger, version });
    const merged = mergeReloadRecords(answers.map((a) => a.value), this.#log);
    this.#writeReload(merged);
    return merged;
  }

  async reloadMesh(): Promise<null> {
    // A mesh file runs with one process (gateway.ts refuses it with workers).
    return null;
  }

  async metricsText(): Promise<string> {
    const parts = await this.#askAll('metrics', null, 10_000);
    return aggregateMetricsText([await this.#metrics.registry.getMetricsAsJSON(), ...parts.map((p) => p.value)]);
  }

  async policyInfo(): Promise<PolicyView> {
    return { workers: (await this.#askAll('policy', null)).map((a) => ({ worker: a.worker, ...a.value })) };
  }

  async connections(): Promise<ConnectionView[]> {
    return (await this.#askAll('connections', null)).flatMap((a) => a.value.map((t) => ({ worker: a.worker, ...t })));
  }

  explain(input: unknown): Promise<Explanation> {
    const w = this.#live()[0];
    if (!w) return Promise.reject(new WaygateError('WG_USAGE', 'no worker is running'));
    return this.#request(w, 'explain', input);
  }

  setLogLevel(level: LogLevel): void {
    for (const w of this.#live()) void this.#request(w, 'logLevel', level).catch(() => undefined);
  }

  configInfo(): Record<string, unknown> {
    return { workers: this.#count };
  }

  logFields(moment: 'listening' | 'draining'): Record<string, unknown> {
    return { workers: moment === 'listening' ? this.#count : this.#workers.size };
  }

  /** Forks the workers; resolves once every one is up, rejects (all of them killed) if one fails. */
  async start(ownPorts: readonly number[]): Promise<DataPlaneStarted> {
    cluster.setupPrimary({
      // The package's own entry point, found from the package root: `../../bin` is right for the
      // sources but not for the compiled output (dist/src/gateway/), which workers must run too.
      exec: workerEntry(),
      args: ['serve'],
    });
    const initial = { remaining: this.#count, records: [] as ReloadRecord[], hbone: '' };
    try {
      const hbone = await new Promise<string>((resolve, reject) => {
        for (let i = 0; i < this.#count; i++) this.#fork([...ownPorts], { initial, up: resolve, fail: reject });
      });
      const current = initial.records.find((r) => r.result !== 'rejected');
      return { hbone, policyHash: current?.snapshot.hash ?? '' };
    } catch (err) {
      this.#draining = true;
      for (const w of this.#workers.values()) w.worker.process.kill('SIGKILL');
      await Promise.all([...this.#workers.values()].map((w) => w.exited));
      throw err;
    }
  }

  /**
   * Forks one worker. `first`: one of the workers of the start-up (its record is merged with the
   * others', the start resolves when all are up); without it a replacement.
   */
  #fork(
    ownPorts: number[],
    first?: { initial: { remaining: number; records: ReloadRecord[]; hbone: string }; up: (hbone: string) => void; fail: (err: Error) => void },
  ): void {
    const start: WorkerStart = { effective: this.#effective, ownPorts, initialVersion: this.#version };
    const worker = cluster.fork({ [WORKER_ENV]: JSON.stringify(start) });
    const state: WorkerState = {
      worker, acks: [], up: false, readiness: { ready: false, reasons: ['workers_not_ready'] },
      exited: new Promise((resolve) => worker.once('exit', () => resolve())),
    };
    this.#workers.set(worker.id, state);
    this.#metrics.workers.set(this.#workers.size);
    worker.on('message', (msg: FromWorker) => {
      switch (msg.t) {
        case 'up':
          state.up = true;
          state.readiness = msg.readiness;
          if (first) {
            first.initial.records.push(msg.startup);
            first.initial.hbone ||= msg.hbone;
            if (--first.initial.remaining === 0) {
              this.#writeReload(mergeReloadRecords(first.initial.records, this.#log));
              first.up(first.initial.hbone);
            }
          } else {
            this.#writeReload(msg.startup);
            this.#log.info({ worker: worker.id }, 'replacement worker up');
          }
          break;
        case 'failed':
          // Rejected now rather than on the worker's exit, with the worker's own error: the
          // operator sees "port in use", not "worker 1 exited".
          if (first) first.fail(workerStartupError(worker.id, msg.failure));
          else this.#log.error({ worker: worker.id, err: msg.failure.message }, 'replacement worker failed to start');
          break;
        case 'readiness':
          state.readiness = msg.state;
          break;
        case 'audit':
          if (msg.kind === 'decision' && msg.seq !== undefined) this.#writeAhead(state, msg.record, msg.seq);
          else if (msg.kind === 'decision') this.#audit.decision(msg.record);
          else if (msg.kind === 'close') this.#audit.close(msg.record);
          else this.#audit.reload(msg.record);
          break;
        case 'res': {
          const p = this.#pending.get(msg.id);
          if (!p) break;
          this.#pending.delete(msg.id);
          if (msg.ok) p.resolve(msg.value);
          else p.reject(new WaygateError(msg.code ?? 'WG_CONFIG', msg.error));
          break;
        }
      }
    });
    worker.once('exit', (code, signal) => {
      this.#workers.delete(worker.id);
      this.#metrics.workers.set(this.#workers.size);
      for (const [id, p] of this.#pending) {
        if (p.workerId === worker.id) {
          this.#pending.delete(id);
          p.reject(new WaygateError('WG_CONFIG', `worker ${worker.id} exited`));
        }
      }
      if (!state.up && first) {
        first.fail(new WaygateError('WG_CONFIG', `worker ${worker.id} failed to start (exit ${code ?? signal}); see the log above`));
        return;
      }
      if (this.#draining) return;
      this.#metrics.workerRestarts.inc();
      this.#log.error({ worker: worker.id, code, signal }, 'worker exited unexpectedly; starting a replacement');
      // The replacement loads the files as they are now under the version in force, so identical
      // content carries the same version on every worker; a change since is the watcher's to load.
      const t = setTimeout(() => { if (!this.#draining) this.#fork(ownPorts); }, 1_000);
      t.unref();
    });
  }

  /** Every worker drains (the records arrive before its exit); one that does not is killed. */
  async drainAndClose(deadlineMs: number): Promise<number> {
    this.#draining = true;
    await Promise.all([...this.#workers.values()].map(async (w) => {
      try {
        await this.#request(w, 'drain', { deadlineMs }, deadlineMs + 10_000);
      } catch (err) {
        this.#log.error({ worker: w.worker.id, err: (err as Error).message }, 'worker did not drain in time; killing it');
        w.worker.process.kill('SIGKILL');
      }
      await w.exited;
    }));
    this.#log.info('workers drained; flushing the audit log');
    return 0;
  }

  kill(): void {
    for (const w of this.#workers.values()) w.worker.process.kill('SIGKILL');
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Worker                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/**
 * How long a worker waits for the primary's acknowledgement of a write-ahead record: the
 * primary's own bound, plus as much again for the two IPC hops. Past it (a primary that stopped
 * answering) the CONNECT is refused; the primary may still write the record.
 */
const ACK_BOUND_MS = 2 * WRITE_AHEAD_BOUND_MS;

/**
 * An AuditSink that hands every record to the primary; flush() waits until IPC took them all.
 * Write-ahead records wait for the primary's {@link AuditAcks}; `onAcks` is fed those messages.
 */
function ipcAuditSink(): AuditSink & { onAcks(msg: AuditAcks): void } {
  let seq = 0;
  // Insertion order is sequence order: the oldest wait first, one timer for it.
  const waiting = new Map<number, { resolve: (r: AheadResult) => void; deadline: number }>();
  let ackTimer: NodeJS.Timeout | null = null;
  const armAckTimer = (): void => {
    if (ackTimer || waiting.size === 0) return;
    const first = waiting.values().next().value!;
    ackTimer = setTimeout(expire, Math.max(0, first.deadline - performance.now()));
    ackTimer.unref();
  };
  function expire(): void {
    ackTimer = null;
    const now = performance.now();
    for (const [s, w] of waiting) {
      if (w.deadline > now) break;
      waiting.delete(s);
      w.resolve('in_flight');
    }
    armAckTimer();
  }
  let inFlight = 0;
  let waiters: (() => void)[] = [];
  const settle = (): void => {
    if (--inFlight === 0) {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    }
  };
  const send = (msg: FromWorker & { t: 'audit' }): void => {
    if (!process.connected) return;
    inFlight++;
    process.send!(msg, undefined, undefined, settle);
  };
  return {
    decision: (record) => send({ t: 'audit', kind: 'decision', record }),
    decisionAhead: (record) => {
      if (!process.connected) return Promise.resolve('withdrawn');
      const s = ++seq;
      return new Promise<AheadResult>((resolve) => {
        waiting.set(s, { resolve, deadline: performance.now() + ACK_BOUND_MS });
        armAckTimer();
        send({ t: 'audit', kind: 'decision', record, seq: s });
      });
    },
    onAcks: (msg) => {
      for (const [s, result] of msg.acks) {
        const w = waiting.get(s);
        if (!w) continue;
        waiting.delete(s);
        w.resolve(result);
      }
      if (waiting.size === 0 && ackTimer) {
        clearTimeout(ackTimer);
        ackTimer = null;
      }
    },
    close: (record) => send({ t: 'audit', kind: 'close', record }),
    // A worker writes no mesh reloads (a mesh file runs with one process).
    reload: (record) => send({ t: 'audit', kind: 'reload', record }),
    flush: () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))),
  };
}

function reply(msg: FromWorker | WorkerResultOf<WorkerOp>): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(msg, undefined, undefined, () => resolve());
  });
}

/** How a worker answers each operation. */
type WorkerHandlers = { [K in WorkerOp]: (arg: WorkerOps[K]['arg']) => Promise<WorkerOps[K]['result']> };

/** Runs the handler of `req.op` and shapes its answer (typed per operation, no casts). */
async function handleRequest<K extends WorkerOp>(req: WorkerRequestOf<K>, handlers: WorkerHandlers): Promise<WorkerResultOf<K> | WorkerFailure> {
  try {
    const value = await handlers[req.op](req.arg);
    return { t: 'res', id: req.id, op: req.op, ok: true, value };
  } catch (err) {
    return { t: 'res', id: req.id, op: req.op, ok: false, error: (err as Error)?.message ?? String(err), code: err instanceof WaygateError ? err.code : undefined };
  }
}

/** Runs this process as a worker; resolves with the exit code when the primary drained it. */
export async function runWorker(): Promise<number> {
  const start = JSON.parse(process.env[WORKER_ENV]!) as WorkerStart;
  const config = start.effective.config;
  const id = cluster.worker?.id ?? 0;
  const log = createOpsLogger({ level: config.log.level, base: { worker: id } });
  // The primary coordinates shutdown: Ctrl-C reaches the whole process group, and a worker that
  // died on it would skip its drain and lose its records.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  process.on('SIGHUP', () => undefined);

  const audit = ipcAuditSink();
  const plane = new LocalDataPlane({
    config, audit, log,
    // Records go back to the primary in the answer to its request (it writes one per reload).
    runtime: { initialVersion: start.initialVersion, onReloadRecord: () => undefined },
  });
  try {
    await plane.start(start.ownPorts);
  } catch (err) {
    // The primary prints the one line that explains the failed start-up and exits 1; a worker
    // without its primary has no one to tell, so it says it itself.
    if (process.connected) await reply({ t: 'failed', failure: describeStartupFailure(err) });
    else log.error({ err: (err as Error)?.message }, 'worker failed to start');
    return 1;
  }
  const runtime = plane.runtime!;
  runtime.readiness.onChange((state) => void reply({ t: 'readiness', state }));

  let resolveExit!: (code: number) => void;
  const exit = new Promise<number>((r) => (resolveExit = r));
  let draining = false;

  const handlers: WorkerHandlers = {
    reload: ({ trigger, version }) => plane.reload(trigger, version),
    metrics: () => plane.metricsJson(),
    policy: () => plane.policyInfo(),
    connections: () => plane.connections(),
    explain: (input) => plane.explain(input),
    logLevel: async (level) => ({ previous: setLogLevel(log, level) }),
    drain: async ({ deadlineMs }) => {
      draining = true;
      const result = await plane.drain(deadlineMs);
      await plane.close();
      await audit.flush();
      return result;
    },
  };

  process.on('message', (req: ToWorker) => {
    if (req?.t === 'auditAck') return audit.onAcks(req);
    if (req?.t !== 'req') return;
    void handleRequest(req, handlers).then(async (res) => {
      await reply(res);
      if (res.ok && res.op === 'drain') resolveExit(0);
    });
  });
  process.on('disconnect', () => {
    // The primary is gone: nobody can receive records or route connections any more.
    if (draining) return;
    log.error('primary process went away; worker exiting');
    void plane.close().finally(() => resolveExit(1));
  });

  await reply({ t: 'up', hbone: runtime.hboneAddress, startup: runtime.startupRecord, readiness: runtime.readiness.state() });
  log.info({ hbone: runtime.hboneAddress }, 'worker serving');
  return exit;
}

/** `bin/waygate.js` of the package this module belongs to (the same entry the primary runs). */
function workerEntry(): string {
  const pkg = findPackage(dirname(fileURLToPath(import.meta.url)));
  if (!pkg) throw new WaygateError('WG_CONFIG', 'cannot find the waygate package root to start workers from');
  return join(pkg.root, 'bin', 'waygate.js');
}
