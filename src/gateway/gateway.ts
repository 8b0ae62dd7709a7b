/**
 * The composition root of `waygate serve`: builds everything from the effective config and wires
 *
 *   policy files --watch/SIGHUP/POST /debug/reload--> reloader -> store.swap -> server.recheck
 *   certificate files --TlsMaterialWatcher--> server.setSecureContext
 *   SIGTERM / POST /quitquitquit -> not ready -> server.drain(deadline) -> audit flush -> exit 0
 *
 * With `workers > 1` the primary/worker split of cluster.ts takes over (same wiring, spread over
 * processes). Resources have one owner each and are closed in reverse order of creation.
 */
import cluster from 'node:cluster';
import { createAuditLogger } from '../audit/logger.ts';
import { WaygateError } from '../errors.ts';
import type { AdminHandlers } from '../admin/server.ts';
import { resolveWorkerCount, type GatewayConfig, type LogLevel } from '../config/schema.ts';
import type { ReloadRecord } from '../audit/record.ts';
import type { PolicyWatcher } from '../policy/watch.ts';
import { createOpsLogger, setLogLevel, type OpsLogger } from '../telemetry/log.ts';
import { GatewayMetrics, METRICS_CONTENT_TYPE } from '../telemetry/metrics.ts';
import { ensureDevPki } from './dev-pki.ts';
import { explainInput } from './explain.ts';
import { startPolicyWatch } from './policy-watch.ts';
import { startRuntime, type GatewayRuntime } from './runtime.ts';
import { installSignalHandlers } from './signals.ts';
import type { ReloadTrigger } from './reload.ts';

import { closeAudit, configView, failStartup, sidePorts, startSideListeners, usesEmbeddedPki, type GatewayOptions, type RunningGateway } from './process-shape.ts';

export type { GatewayAddresses, GatewayOptions, RunningGateway } from './process-shape.ts';

/** Starts the gateway described by `opts.effective`. */
export async function startGateway(opts: GatewayOptions): Promise<RunningGateway> {
  const config = opts.effective.config;
  const log = opts.log ?? createOpsLogger({ level: config.log.level });
  const pkiDir = usesEmbeddedPki(opts.effective);
  if (pkiDir) {
    const pki = ensureDevPki(pkiDir);
    if (pki.minted !== 'none') log.info({ dir: pkiDir, minted: pki.minted }, 'development PKI minted (embedded profile)');
  }
  if (resolveWorkerCount(config.workers) > 1 && config.discovery.meshFile !== null) {
    // One discovery source per process would mean one watch, one version sequence and one
    // `reload` record per worker for each edit; the primary does not coordinate mesh loads yet.
    throw new WaygateError('WG_CONFIG', 'discovery.meshFile (--mesh) runs with one process for now: drop --workers (or set workers: 1) and scale with replicas');
  }
  if (resolveWorkerCount(config.workers) > 1 && cluster.isPrimary) {
    const { startPrimary } = await import('./cluster.ts');
    return startPrimary({ ...opts, log });
  }
  return startSingle(opts, config, log);
}

async function startSingle(opts: GatewayOptions, config: Readonly<GatewayConfig>, log: OpsLogger): Promise<RunningGateway> {
  const audit = opts.audit ?? createAuditLogger({ destination: config.audit.destination });
  // As a waypoint (discovery configured) Istio's series report `reporter="waypoint"` (metrics.ts).
  const metrics = new GatewayMetrics({ reporter: config.discovery.meshFile !== null ? 'waypoint' : 'destination' });
  let runtime: GatewayRuntime | undefined;
  let watcher: PolicyWatcher | undefined;
  let shutdownPromise: Promise<void> | undefined;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  // Assigned once everything is up; a quit that arrives during startup is acted on right after.
  let shutdown: ((reason: string) => Promise<void>) | undefined;
  let quitDuringStartup = false;

  const notStarted = { ready: false, reasons: ['tls_material_not_loaded', 'policy_snapshot_not_loaded'] as ('tls_material_not_loaded' | 'policy_snapshot_not_loaded')[] };
  const reload = async (trigger: ReloadTrigger): Promise<ReloadRecord> => {
    if (!runtime) throw new Error('the gateway is still starting');
    const record = await runtime.reload(trigger);
    if (record.result !== 'rejected' && runtime.store.current()) watcher?.setBaseline(runtime.store.current()!.hash);
    return record;
  };
  const handlers: AdminHandlers = {
    readiness: () => runtime?.readiness.state() ?? notStarted,
    metrics: () => metrics.text(),
    metricsContentType: METRICS_CONTENT_TYPE,
    config: () => configView(opts.effective, { tls: runtime?.tlsInfo() ?? null, workers: 1, discovery: runtime?.discoveryInfo() ?? null }),
    policy: () => runtime?.policyInfo() ?? { loaded: false },
    connections: () => ({ tunnels: runtime?.connections() ?? [] }),
    explain: (input) => explainInput(runtime?.store.current(), config.defaultAction, input),
    reload: async () => {
      // POST /debug/reload reloads the mesh file too (as SIGHUP does): one command after an edit.
      const record = await reload('admin');
      const mesh = await runtime?.reloadMesh('admin');
      return mesh ? { ...record, mesh } : record;
    },
    setLogLevel: (level: LogLevel) => ({ previous: setLogLevel(log, level), level }),
    quit: () => {
      if (shutdown) void shutdown('POST /quitquitquit');
      else quitDuringStartup = true;
    },
  };

  const admin = await startSideListeners(config, handlers, audit, log);
  try {
    runtime = await startRuntime({ config, audit, log, metrics, ownPorts: sidePorts(admin.addresses) });
  } catch (err) {
    await admin.close().catch((e: unknown) => log.error({ err: (e as Error)?.message }, 'closing the side listeners failed after a failed start-up'));
    return failStartup(err, audit, log);
  }
  const rt = runtime;

  if (config.policies.watch) {
    watcher = startPolicyWatch(config, rt.store.current()?.hash ?? '', log, () => reload('watch'));
  }

  let removeSignals: (() => void) | undefined;
  const drainAndClose = (reason: string): Promise<void> => {
    shutdownPromise ??= (async () => {
      const deadlineMs = config.timeouts.drainTimeoutMs;
      log.info({ reason, deadlineMs, tunnels: rt.server.tunnels.size }, 'draining');
      watcher?.close();
      let code = 0;
      try {
        const { remaining } = await rt.drain(deadlineMs);
        await rt.close();
        log.info({ reset: remaining }, 'drained; flushing the audit log');
      } catch (err) {
        code = 1;
        log.error({ err: (err as Error)?.message }, 'drain failed; closing anyway');
        await rt.close().catch(() => undefined);
      }
      await closeAudit(audit).catch((err) => log.error({ err: (err as Error)?.message }, 'audit flush failed'));
      await admin.close();
      removeSignals?.();
      resolveDone(code);
    })();
    return shutdownPromise;
  };
  shutdown = drainAndClose;
  if (opts.handleSignals) {
    removeSignals = installSignalHandlers({
      log,
      onDrain: (signal) => void drainAndClose(signal),
      onReload: () => {
        void reload('signal').catch((err) => log.error({ err: (err as Error).message }, 'reload failed'));
        void rt.reloadMesh('signal').catch((err) => log.error({ err: (err as Error).message }, 'mesh reload failed'));
      },
      onForcedExit: () => audit.flushSync?.(),
    });
  }

  const addresses = { hbone: rt.hboneAddress, ...admin.addresses };
  log.info({ ...addresses, profile: opts.effective.profile, snapshot: rt.store.current() ? { version: rt.store.current()!.version, hash: rt.store.current()!.hash } : null }, 'listening');
  if (quitDuringStartup) void drainAndClose('POST /quitquitquit');
  return { addresses, reload, shutdown: drainAndClose, done, runtime: rt };
}
