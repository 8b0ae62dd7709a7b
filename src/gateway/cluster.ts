/**
 * Workers mode (`--workers N|auto`, docs/design.md §5 "Scale"): node:cluster workers share the HBONE
 * listener (the primary accepts and hands connections round-robin); each worker runs its own
 * runtime and holds its own policy snapshot.
 *
 * Who owns what, and why:
 * - The **primary** owns the side ports (readiness, metrics, admin), the policy watcher, the
 *   signals and the audit log. One watcher means one debounce and one decision "the files
 *   changed": the primary then tells every worker to reload with the same version number, so the
 *   workers never disagree about which snapshot version is which, and one `reload` record is
 *   written per reload (closed tunnels summed over workers).
 * - **Workers** load and compile the set themselves (a compiled snapshot holds closures and cannot
 *   cross a process boundary), decide, and send every audit record to the primary over IPC. The
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
import { fileURLToPath } from 'node:url';
import { createAuditLogger } from '../audit/logger.ts';
import { type AuditRecord, type CloseRecord, type DecisionRecord, type ReloadRecord } from '../audit/record.ts';
import type { AuditSink } from '../audit/sink.ts';
import type { ReadinessState, NotReadyReason } from '../admin/readiness.ts';
import type { AdminHandlers } from '../admin/server.ts';
import type { EffectiveConfig } from '../config/resolve.ts';
import { resolveWorkerCount, type LogLevel } from '../config/schema.ts';
import { WaygateError } from '../errors.ts';
import type { PolicyWatcher } from '../policy/watch.ts';
import { createOpsLogger, setLogLevel, type OpsLogger } from '../telemetry/log.ts';
import { aggregateMetricsText, countReloadErrors, GatewayMetrics, METRICS_CONTENT_TYPE, PrimaryMetrics } from '../telemetry/metrics.ts';
import { explainInput } from './explain.ts';
import { startPolicyWatch } from './policy-watch.ts';
import { closeAudit, configView, failStartup, sidePorts, startSideListeners, type GatewayOptions, type RunningGateway } from './process-shape.ts';
import type { ReloadTrigger } from './reload.ts';
import { startRuntime } from './runtime.ts';
import { installSignalHandlers } from './signals.ts';

/** Environment variable carrying a worker's start parameters. */
export const WORKER_ENV = 'WAYGATE_WORKER_CONFIG';

interface WorkerStart {
  effective: EffectiveConfig;
  ownPorts: number[];
  initialVersion: number;
}

type Op = 'reload' | 'metrics' | 'policy' | 'connections' | 'explain' | 'logLevel' | 'drain';

type ToWorker = { t: 'req'; id: number; op: Op; arg?: unknown };
/** Why a worker could not start: its error, and the operating-system error under it if any. */
interface StartupFailure {
  message: string;
  code?: string;
  system?: { message: string; code: string; syscall: string; address?: string; port?: number; path?: string };
}

type FromWorker =
  | { t: 'up'; hbone: string; startup: ReloadRecord; readiness: ReadinessState }
  | { t: 'failed'; failure: StartupFailure }
  | { t: 'readiness'; state: ReadinessState }
  | { t: 'audit'; kind: 'decision'; record: DecisionRecord }
  | { t: 'audit'; kind: 'close'; record: CloseRecord }
  | { t: 'audit'; kind: 'reload'; record: ReloadRecord }
  | { t: 'res'; id: number; ok: true; value: unknown }
  | { t: 'res'; id: number; ok: false; error: string; code?: string };

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
  up: boolean;
  readiness: ReadinessState;
  exited: Promise<void>;
}

export async function startPrimary(opts: GatewayOptions & { log: OpsLogger }): Promise<RunningGateway> {
  const { effective, log } = opts;
  const config = effective.config;
  const count = resolveWorkerCount(config.workers);
  const audit = opts.audit ?? createAuditLogger({ destination: config.audit.destination });
  const primaryMetrics = new PrimaryMetrics();
  const workers = new Map<number, WorkerState>();
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; workerId: number }>();
  let nextReq = 1;
  let version = 1;
  let draining = false;
  let watcher: PolicyWatcher | undefined;
  let shutdownPromise: Promise<void> | undefined;
  // Assigned once every worker is up; a quit that arrives during startup is acted on right after.
  let shutdown: ((reason: string) => Promise<void>) | undefined;
  let quitDuringStartup = false;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));

  const live = (): WorkerState[] => [...workers.values()].filter((w) => w.up && w.worker.isConnected());

  const request = (ws: WorkerState, op: Op, arg?: unknown, timeoutMs = 30_000): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextReq++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new WaygateError('WG_CONFIG', `worker ${ws.worker.id} did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
        workerId: ws.worker.id,
      });
      const msg: ToWorker = { t: 'req', id, op, arg };
      ws.worker.send(msg);
    });

  const readiness = (): ReadinessState => {
    if (draining) return { ready: false, reasons: ['draining'] };
    const up = live();
    const reasons = new Set<NotReadyReason>();
    if (up.length < count) reasons.add('workers_not_ready');
    for (const w of up) for (const r of w.readiness.reasons) reasons.add(r);
    return { ready: reasons.size === 0, reasons: [...reasons] };
  };

  const writeReload = (record: ReloadRecord): void => {
    primaryMetrics.reloads.inc({ result: record.result, trigger: record.trigger });
    countReloadErrors(primaryMetrics.reloadErrors, record);
    audit.reload(record);
    if (record.result !== 'rejected' && record.snapshot.hash) watcher?.setBaseline(record.snapshot.hash);
  };

  const reloadAll = async (trigger: ReloadTrigger): Promise<ReloadRecord> => {
    const v = ++version;
    const targets = live();
    const records = (await Promise.all(targets.map((w) => request(w, 'reload', { trigger, version: v })))) as ReloadRecord[];
    const merged = mergeReloadRecords(records, log);
    writeReload(merged);
    return merged;
  };

  const handlers: AdminHandlers = {
    readiness,
    metrics: async () => {
      const parts = await Promise.all(live().map((w) => request(w, 'metrics', undefined, 10_000)));
      return aggregateMetricsText([await primaryMetrics.registry.getMetricsAsJSON(), ...(parts as never[])]);
    },
    metricsContentType: METRICS_CONTENT_TYPE,
    config: () => configView(effective, { workers: count }),
    policy: async () => ({
      workers: await Promise.all(live().map(async (w) => ({ worker: w.worker.id, ...(await request(w, 'policy')) as object }))),
    }),
    connections: async () => ({
      tunnels: (await Promise.all(live().map(async (w) => ((await request(w, 'connections')) as object[]).map((t) => ({ worker: w.worker.id, ...t }))))).flat(),
    }),
    explain: async (input) => {
      const w = live()[0];
      if (!w) throw new WaygateError('WG_USAGE', 'no worker is running');
      return request(w, 'explain', input);
    },
    reload: () => reloadAll('admin'),
    setLogLevel: (level: LogLevel) => {
      const previous = setLogLevel(log, level);
      for (const w of live()) void request(w, 'logLevel', level).catch(() => undefined);
      return { previous, level };
    },
    quit: () => {
      if (shutdown) void shutdown('POST /quitquitquit');
      else quitDuringStartup = true;
    },
  };
  const admin = await startSideListeners(config, handlers, audit, log);
  const ownPorts = sidePorts(admin.addresses);

  cluster.setupPrimary({
    exec: fileURLToPath(new URL('../../bin/waygate.js', import.meta.url)),
    args: ['serve'],
  });

  let firstUp: ((hbone: string) => void) | undefined;
  let firstFail: ((err: Error) => void) | undefined;
  const initial = { remaining: count, records: [] as ReloadRecord[], hbone: '' };

  const fork = (initialVersion: number, isInitial: boolean): void => {
    const start: WorkerStart = { effective, ownPorts, initialVersion };
    const worker = cluster.fork({ [WORKER_ENV]: JSON.stringify(start) });
    const state: WorkerState = {
      worker, up: false, readiness: { ready: false, reasons: ['workers_not_ready'] },
      exited: new Promise((resolve) => worker.once('exit', () => resolve())),
    };
    workers.set(worker.id, state);
    primaryMetrics.workers.set(workers.size);
    worker.on('message', (msg: FromWorker) => {
      switch (msg.t) {
        case 'up':
          state.up = true;
          state.readiness = msg.readiness;
          if (isInitial) {
            initial.records.push(msg.startup);
            initial.hbone ||= msg.hbone;
            if (--initial.remaining === 0) {
              writeReload(mergeReloadRecords(initial.records, log));
              firstUp?.(initial.hbone);
            }
          } else {
            writeReload(msg.startup);
            log.info({ worker: worker.id }, 'replacement worker up');
          }
          break;
        case 'failed':
          // Rejected now rather than on the worker's exit, with the worker's own error: the
          // operator sees "port in use", not "worker 1 exited".
          if (isInitial) firstFail?.(workerStartupError(worker.id, msg.failure));
          else log.error({ worker: worker.id, err: msg.failure.message }, 'replacement worker failed to start');
          break;
        case 'readiness':
          state.readiness = msg.state;
          break;
        case 'audit':
          if (msg.kind === 'decision') audit.decision(msg.record);
          else if (msg.kind === 'close') audit.close(msg.record);
          else audit.reload(msg.record);
          break;
        case 'res': {
          const p = pending.get(msg.id);
          if (!p) break;
          pending.delete(msg.id);
          if (msg.ok) p.resolve(msg.value);
          else p.reject(new WaygateError((msg.code as never) ?? 'WG_CONFIG', msg.error));
          break;
        }
      }
    });
    worker.once('exit', (code, signal) => {
      workers.delete(worker.id);
      primaryMetrics.workers.set(workers.size);
      for (const [id, p] of pending) {
        if (p.workerId === worker.id) {
          pending.delete(id);
          p.reject(new WaygateError('WG_CONFIG', `worker ${worker.id} exited`));
        }
      }
      if (!state.up && isInitial) {
        firstFail?.(new WaygateError('WG_CONFIG', `worker ${worker.id} failed to start (exit ${code ?? signal}); see the log above`));
        return;
      }
      if (draining) return;
      primaryMetrics.workerRestarts.inc();
      log.error({ worker: worker.id, code, signal }, 'worker exited unexpectedly; starting a replacement');
      // The replacement loads the files as they are now under the version in force, so identical
      // content carries the same version on every worker; a change since is the watcher's to load.
      const t = setTimeout(() => { if (!draining) fork(version, false); }, 1_000);
      t.unref();
    });
  };

  const hbone = await new Promise<string>((resolve, reject) => {
    firstUp = resolve;
    firstFail = reject;
    for (let i = 0; i < count; i++) fork(version, true);
  }).catch(async (err: Error) => {
    draining = true;
    for (const w of workers.values()) w.worker.process.kill('SIGKILL');
    await Promise.all([...workers.values()].map((w) => w.exited));
    await admin.close().catch((e: unknown) => log.error({ err: (e as Error)?.message }, 'closing the side listeners failed after a failed start-up'));
    return failStartup(err, audit, log);
  });

  if (config.policies.watch) {
    const current = initial.records.find((r) => r.result !== 'rejected');
    watcher = startPolicyWatch(config, current?.snapshot.hash ?? '', log, () => reloadAll('watch'));
  }

  let removeSignals: (() => void) | undefined;
  const drainAll = (reason: string): Promise<void> => {
    shutdownPromise ??= (async () => {
      draining = true;
      const deadlineMs = config.timeouts.drainTimeoutMs;
      log.info({ reason, deadlineMs, workers: workers.size }, 'draining');
      watcher?.close();
      const states = [...workers.values()];
      await Promise.all(states.map(async (w) => {
        try {
          await request(w, 'drain', deadlineMs, deadlineMs + 10_000);
        } catch (err) {
          log.error({ worker: w.worker.id, err: (err as Error).message }, 'worker did not drain in time; killing it');
          w.worker.process.kill('SIGKILL');
        }
        await w.exited;
      }));
      log.info('workers drained; flushing the audit log');
      await closeAudit(audit).catch((err) => log.error({ err: (err as Error)?.message }, 'audit flush failed'));
      await admin.close();
      removeSignals?.();
      resolveDone(0);
    })();
    return shutdownPromise;
  };
  shutdown = drainAll;
  if (opts.handleSignals) {
    removeSignals = installSignalHandlers({
      log,
      onDrain: (signal) => void drainAll(signal),
      onReload: () => void reloadAll('signal').catch((err) => log.error({ err: (err as Error).message }, 'reload failed')),
      onForcedExit: () => {
        for (const w of workers.values()) w.worker.process.kill('SIGKILL');
        audit.flushSync?.();
      },
    });
  }

  const addresses = { hbone, ...admin.addresses };
  log.info({ ...addresses, profile: effective.profile, workers: count }, 'listening');
  if (quitDuringStartup) void drainAll('POST /quitquitquit');
  return { addresses, reload: reloadAll, shutdown: drainAll, done };
}

/* ------------------------------------------------------------------------------------------ */
/* Worker                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/** An AuditSink that hands every record to the primary; flush() waits until IPC took them all. */
function ipcAuditSink(): AuditSink {
  let inFlight = 0;
  let waiters: (() => void)[] = [];
  const settle = (): void => {
    if (--inFlight === 0) {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    }
  };
  const send = (kind: 'decision' | 'close' | 'reload', record: AuditRecord): void => {
    if (!process.connected) return;
    inFlight++;
    process.send!({ t: 'audit', kind, record }, undefined, undefined, settle);
  };
  return {
    decision: (r) => send('decision', r),
    close: (r) => send('close', r),
    reload: (r) => send('reload', r),
    flush: () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))),
  };
}

function reply(msg: FromWorker): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(msg, undefined, undefined, () => resolve());
  });
}

/** A worker's start-up error as plain data, for the primary to rebuild and report. */
function describeStartupFailure(err: unknown): StartupFailure {
  const failure: StartupFailure = { message: (err as Error)?.message ?? String(err) };
  if (err instanceof WaygateError) failure.code = err.code;
  const seen = new Set<unknown>();
  for (let e: unknown = err; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const s = e as NodeJS.ErrnoException & { address?: string; port?: number };
    if (typeof s.code === 'string' && typeof s.syscall === 'string') {
      failure.system = { message: s.message, code: s.code, syscall: s.syscall, address: s.address, port: s.port, path: s.path };
      break;
    }
  }
  return failure;
}

/** The primary's copy of a worker's start-up error, the OS error (address, port) as its cause. */
function workerStartupError(workerId: number, f: StartupFailure): WaygateError {
  const cause = f.system ? Object.assign(new Error(f.system.message), f.system) : undefined;
  const code = (f.code as WaygateError['code'] | undefined) ?? 'WG_CONFIG';
  return new WaygateError(code, `worker ${workerId}: ${f.message}`, { cause });
}

/** True in a worker started by {@link startPrimary}. */
export function isGatewayWorker(): boolean {
  return cluster.isWorker && typeof process.env[WORKER_ENV] === 'string';
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
  const metrics = new GatewayMetrics();
  let runtime: Awaited<ReturnType<typeof startRuntime>>;
  try {
    runtime = await startRuntime({
      config, audit, log, metrics, ownPorts: start.ownPorts, initialVersion: start.initialVersion,
      // Records go back to the primary in the answer to its request (it writes one per reload).
      onReloadRecord: () => undefined,
    });
  } catch (err) {
    // The primary prints the one line that explains the failed start-up and exits 1; a worker
    // without its primary has no one to tell, so it says it itself.
    if (process.connected) await reply({ t: 'failed', failure: describeStartupFailure(err) });
    else log.error({ err: (err as Error)?.message }, 'worker failed to start');
    return 1;
  }
  runtime.readiness.onChange((state) => void reply({ t: 'readiness', state }));

  let resolveExit!: (code: number) => void;
  const exit = new Promise<number>((r) => (resolveExit = r));
  let draining = false;

  const handle = async (req: ToWorker): Promise<unknown> => {
    switch (req.op) {
      case 'reload': {
        const { trigger, version } = req.arg as { trigger: ReloadTrigger; version: number };
        return runtime.reload(trigger, version);
      }
      case 'metrics':
        return metrics.registry.getMetricsAsJSON();
      case 'policy':
        return runtime.policyInfo();
      case 'connections':
        return runtime.connections();
      case 'explain':
        return explainInput(runtime.store.current(), config.defaultAction, req.arg);
      case 'logLevel':
        return { previous: setLogLevel(log, req.arg as LogLevel) };
      case 'drain': {
        draining = true;
        const result = await runtime.drain(req.arg as number);
        await runtime.close();
        await audit.flush();
        return result;
      }
    }
  };

  process.on('message', (req: ToWorker) => {
    if (req?.t !== 'req') return;
    handle(req).then(
      async (value) => {
        await reply({ t: 'res', id: req.id, ok: true, value });
        if (req.op === 'drain') resolveExit(0);
      },
      (err: unknown) => void reply({ t: 'res', id: req.id, ok: false, error: (err as Error)?.message ?? String(err), code: (err as WaygateError)?.code }),
    );
  });
  process.on('disconnect', () => {
    // The primary is gone: nobody can receive records or route connections any more.
    if (draining) return;
    log.error('primary process went away; worker exiting');
    void runtime.close().finally(() => resolveExit(1));
  });

  await reply({ t: 'up', hbone: runtime.hboneAddress, startup: runtime.startupRecord, readiness: runtime.readiness.state() });
  log.info({ hbone: runtime.hboneAddress }, 'worker serving');
  return exit;
}
