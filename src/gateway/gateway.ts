/**
 * The composition root of `waygate serve`: builds everything from the effective config and wires
 *
 *   policy files --watch/SIGHUP/POST /debug/reload--> data plane reload -> store.swap -> recheck
 *   certificate files --TlsMaterialWatcher--> server.setSecureContext (in the runtime)
 *   SIGTERM / POST /quitquitquit -> not ready -> data plane drain(deadline) -> audit flush -> exit 0
 *
 * The data plane (data-plane.ts) is this process's runtime (`LocalDataPlane`), or with
 * `workers > 1` the primary's pool of worker processes (`WorkerPool`, cluster.ts); everything
 * around it is written once here: the side listeners and their admin handlers, the policy
 * watch, the signals, drain-then-close. Resources have one owner each and are closed in reverse
 * order of creation. A worker process does not come here: `waygate serve` runs `runWorker`.
 */
import cluster from 'node:cluster';
import type { AdminHandlers } from '../admin/server.ts';
import { createAuditLogger } from '../audit/logger.ts';
import { discoveryConfigured, resolveWorkerCount, type LogLevel } from '../config/schema.ts';
import { WaygateError } from '../errors.ts';
import type { GatewayRegistration } from '../kube/gateway-status.ts';
import type { PolicyWatcher } from '../policy/watch.ts';
import { createOpsLogger, setLogLevel } from '../telemetry/log.ts';
import { METRICS_CONTENT_TYPE } from '../telemetry/metrics.ts';
import { WorkerPool } from './cluster.ts';
import { LocalDataPlane, type DataPlane } from './data-plane.ts';
import { ensureDevPki } from './dev-pki.ts';
import { startPolicyWatch } from './policy-watch.ts';
import { closeAudit, configView, failStartup, sidePorts, startSideListeners, usesEmbeddedPki, type GatewayOptions, type RunningGateway } from './process-shape.ts';
import { installSignalHandlers } from './signals.ts';

export type { GatewayAddresses, GatewayOptions, RunningGateway } from './process-shape.ts';

/** Starts the gateway described by `opts.effective`. */
export async function startGateway(opts: GatewayOptions): Promise<RunningGateway> {
  const { effective } = opts;
  const config = effective.config;
  const log = opts.log ?? createOpsLogger({ level: config.log.level });
  const pkiDir = usesEmbeddedPki(effective);
  if (pkiDir) {
    const pki = ensureDevPki(pkiDir);
    if (pki.minted !== 'none') log.info({ dir: pkiDir, minted: pki.minted }, 'development PKI minted (embedded profile)');
  }
  const workers = resolveWorkerCount(config.workers);
  if (workers > 1 && discoveryConfigured(config)) {
    // One discovery source per process would mean one watch, one version sequence and one
    // `reload` record per worker for each edit; the primary does not coordinate mesh loads yet.
    const source = config.discovery.meshFile !== null ? 'discovery.meshFile (--mesh)' : 'discovery.kubernetes';
    throw new WaygateError('WG_CONFIG', `${source} runs with one process for now: drop --workers (or set workers: 1) and scale with replicas`);
  }
  if (workers > 1 && config.tls.istioCa !== null) {
    // Each worker would send its own CSR and hold its own key; the primary does not hand material
    // to workers yet.
    throw new WaygateError('WG_CONFIG', 'tls.istioCa runs with one process for now: drop --workers (or set workers: 1) and scale with replicas');
  }
  const audit = opts.audit ?? createAuditLogger({ destination: config.audit.destination, sync: config.audit.sync, onFailure: config.audit.onFailure ?? undefined, log });
  const plane: DataPlane = workers > 1 && cluster.isPrimary
    ? new WorkerPool({ effective, audit, log })
    : new LocalDataPlane({ config, audit, log });

  let watcher: PolicyWatcher | undefined;
  let registration: GatewayRegistration | undefined;
  let shutdownPromise: Promise<void> | undefined;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  // Assigned once everything is up; a quit that arrives during startup is acted on right after.
  let shutdown: ((reason: string) => Promise<void>) | undefined;
  let quitDuringStartup = false;

  // An explicit reload (SIGHUP, admin) tells the watcher which content is in force, so it does
  // not load the same files again; so does a replacement worker's start-up load.
  plane.onReload((record) => {
    if (record.result !== 'rejected' && record.snapshot.hash) watcher?.setBaseline(record.snapshot.hash);
  });
  const reload = plane.reload.bind(plane);

  const handlers: AdminHandlers = {
    readiness: () => plane.readiness(),
    // The registration controller's series live on its own registry (src/kube/gateway-status.ts).
    metrics: async () => (await plane.metricsText()) + (registration ? await registration.metrics.text() : ''),
    metricsContentType: METRICS_CONTENT_TYPE,
    config: () => configView(effective, plane.configInfo()),
    policy: () => plane.policyInfo(),
    connections: async () => ({ tunnels: await plane.connections() }),
    explain: (input) => plane.explain(input),
    reload: async () => {
      // POST /debug/reload reloads the mesh file too (as SIGHUP does): one command after an edit.
      const record = await reload('admin');
      const mesh = await plane.reloadMesh('admin');
      return mesh ? { ...record, mesh } : record;
    },
    setLogLevel: (level: LogLevel) => {
      const previous = setLogLevel(log, level);
      plane.setLogLevel(level);
      return { previous, level };
    },
    quit: () => {
      if (shutdown) void shutdown('POST /quitquitquit');
      else quitDuringStartup = true;
    },
  };

  const admin = await startSideListeners(config, handlers, audit, log);
  let started;
  try {
    started = await plane.start(sidePorts(admin.addresses));
  } catch (err) {
    await admin.close().catch((e: unknown) => log.error({ err: (e as Error)?.message }, 'closing the side listeners failed after a failed start-up'));
    return failStartup(err, audit, log);
  }

  if (config.policies.watch) {
    watcher = startPolicyWatch(config, started.policyHash, log, () => reload('watch'));
  }

  // Registration (config `registration`): imported only when enabled, so a gateway without it never
  // loads client-node. Started once serving: the status it writes sends istiod's traffic here.
  if (config.registration.enabled) {
    try {
      const { startRegistrationFromConfig } = await import('../kube/gateway-status.ts');
      registration = await startRegistrationFromConfig(config, log);
    } catch (err) {
      watcher?.close();
      await plane.drainAndClose(0).catch((e: unknown) => log.error({ err: (e as Error)?.message }, 'closing the data plane failed after a failed start-up'));
      await admin.close().catch((e: unknown) => log.error({ err: (e as Error)?.message }, 'closing the side listeners failed after a failed start-up'));
      return failStartup(err, audit, log);
    }
  }

  let removeSignals: (() => void) | undefined;
  const drainAndClose = (reason: string): Promise<void> => {
    shutdownPromise ??= (async () => {
      const deadlineMs = config.timeouts.drainTimeoutMs;
      log.info({ reason, deadlineMs, ...plane.logFields('draining') }, 'draining');
      watcher?.close();
      await registration?.close().catch((err: unknown) => log.error({ err: (err as Error)?.message }, 'registration close failed'));
      const code = await plane.drainAndClose(deadlineMs);
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
        void plane.reloadMesh('signal').catch((err) => log.error({ err: (err as Error).message }, 'mesh reload failed'));
      },
      onForcedExit: () => {
        plane.kill();
        audit.flushSync?.();
      },
    });
  }

  const addresses = { hbone: started.hbone, ...admin.addresses };
  log.info({ ...addresses, profile: effective.profile, ...plane.logFields('listening') }, 'listening');
  if (quitDuringStartup) void drainAndClose('POST /quitquitquit');
  return { addresses, reload, shutdown: drainAndClose, done, runtime: plane instanceof LocalDataPlane ? plane.runtime : undefined };
}
