/**
 * The data plane as the composition root (gateway.ts) drives it, whichever shape the process has:
 * `LocalDataPlane` runs the runtime in this process (single process, and inside each worker);
 * the workers-mode primary's `WorkerPool` (cluster.ts) runs one per worker and speaks to them
 * over IPC (worker-ipc.ts). The root writes the wiring around it once: the side listeners and
 * the admin handlers, the policy watch, the signals, and drain-then-close.
 */
import type { ReadinessState } from '../admin/readiness.ts';
import type { AuditSink } from '../audit/sink.ts';
import type { MeshReloadRecord, ReloadRecord } from '../audit/record.ts';
import { discoveryConfigured, type GatewayConfig, type LogLevel } from '../config/schema.ts';
import type { TunnelInfo } from '../hbone/tunnel.ts';
import type { Explanation } from '../policy/explain.ts';
import type { OpsLogger } from '../telemetry/log.ts';
import { GatewayMetrics, registerAuditMetrics } from '../telemetry/metrics.ts';
import { explainInput } from './explain.ts';
import type { ReloadTrigger } from './reload.ts';
import { startRuntime, type GatewayRuntime, type PolicyInfo, type RuntimeOptions } from './runtime.ts';
import type { MetricsJson } from './worker-ipc.ts';

/** A live tunnel as `/debug/connections` lists it; `worker` in workers mode. */
export type ConnectionView = TunnelInfo & { worker?: number };

/** `/debug/policy`: the snapshot in force, or in workers mode each worker's. */
export type PolicyView = PolicyInfo | { workers: (PolicyInfo & { worker: number })[] };

export interface DataPlaneStarted {
  /** The HBONE listener as `host:port`. */
  hbone: string;
  /** Hash of the policy set the startup load applied; '' when it was rejected. */
  policyHash: string;
}

export interface DataPlane {
  /**
   * Loads, listens, serves. `ownPorts` are the side listeners' ports (a tunnel to one is a
   * self-call). Rejects, having closed whatever it opened, when it cannot start.
   */
  start(ownPorts: readonly number[]): Promise<DataPlaneStarted>;
  /** `/healthz/ready`; answers before `start` resolves too (not ready yet, and why). */
  readiness(): ReadinessState;
  /** Loads the policy files; the reload record is written (audit, metrics) before it resolves. */
  reload(trigger: ReloadTrigger): Promise<ReloadRecord>;
  /** Every reload record written from now on, whatever triggered it. */
  onReload(listener: (record: ReloadRecord) => void): void;
  /** Reloads the mesh file (SIGHUP, POST /debug/reload); null without one. */
  reloadMesh(trigger: 'signal' | 'admin'): Promise<MeshReloadRecord | null>;
  /** Prometheus text exposition. */
  metricsText(): Promise<string>;
  policyInfo(): Promise<PolicyView>;
  connections(): Promise<ConnectionView[]>;
  /** `POST /debug/explain` against the snapshot in force; throws WaygateError for bad input. */
  explain(input: unknown): Promise<Explanation>;
  /** After the root changed its own logger's level: the same for loggers it does not own. */
  setLogLevel(level: LogLevel): void;
  /** What `GET /debug/config` shows of the data plane, besides the effective config. */
  configInfo(): Record<string, unknown>;
  /** Fields of the root's `listening` and `draining` log lines. */
  logFields(moment: 'listening' | 'draining'): Record<string, unknown>;
  /**
   * Not ready -> GOAWAY -> wait up to `deadlineMs` -> reset the rest -> close, records written.
   * Resolves with the exit code the process should end with (1 when the drain itself failed).
   */
  drainAndClose(deadlineMs: number): Promise<number>;
  /** Synchronous, before an immediate exit (a second SIGTERM): stop whatever would outlive it. */
  kill(): void;
}

/**
 * Resolves once every tunnel has ended, so its close record was handed to the audit sink before
 * the sink is ended: a tunnel reset by the drain or the close ends on its stream's 'close' event,
 * a few event-loop turns after the reset. Bounded (the sessions are destroyed already): a stream
 * that never reports its close costs its record, never the shutdown.
 */
const TUNNELS_GONE_BOUND_MS = 500;
async function tunnelsGone(rt: GatewayRuntime): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    rt.server.tunnels.whenEmpty(),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, TUNNELS_GONE_BOUND_MS);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}

/** Readiness before the runtime exists. */
const NOT_STARTED: ReadinessState = { ready: false, reasons: ['tls_material_not_loaded', 'policy_snapshot_not_loaded'] };

export interface LocalDataPlaneOptions {
  config: Readonly<GatewayConfig>;
  audit: AuditSink;
  log: OpsLogger;
  /** Passed to the runtime as they are (a worker's reload records and start-up version). */
  runtime?: Pick<RuntimeOptions, 'onReloadRecord' | 'initialVersion'>;
}

/** The runtime of this process behind the {@link DataPlane} interface. */
export class LocalDataPlane implements DataPlane {
  readonly metrics: GatewayMetrics;
  readonly #o: LocalDataPlaneOptions;
  #runtime: GatewayRuntime | undefined;
  readonly #reloadListeners: ((record: ReloadRecord) => void)[] = [];

  constructor(opts: LocalDataPlaneOptions) {
    this.#o = opts;
    // As a waypoint (discovery configured) Istio's series report `reporter="waypoint"` (metrics.ts).
    this.metrics = new GatewayMetrics({ reporter: discoveryConfigured(opts.config) ? 'waypoint' : 'destination' });
    // The writer's series, where this process writes the log (not a worker's IPC sink).
    const health = opts.audit.health?.bind(opts.audit);
    if (health) registerAuditMetrics(this.metrics.registry, health);
  }

  /** The runtime, once started (tests reach into its store and events). */
  get runtime(): GatewayRuntime | undefined {
    return this.#runtime;
  }

  #started(): GatewayRuntime {
    if (!this.#runtime) throw new Error('the gateway is still starting');
    return this.#runtime;
  }

  async start(ownPorts: readonly number[]): Promise<DataPlaneStarted> {
    const { config, audit, log } = this.#o;
    const rt = await startRuntime({ config, audit, log, metrics: this.metrics, ownPorts, ...this.#o.runtime });
    this.#runtime = rt;
    // Not ready while the audit log refuses CONNECTs; ready again when it recovers.
    if (audit.health) rt.readiness.setAuditUnavailable(audit.health().refusing);
    audit.onHealthChange?.((h) => rt.readiness.setAuditUnavailable(h.refusing));
    rt.events.on('reload', (r: ReloadRecord) => {
      for (const l of this.#reloadListeners) l(r);
    });
    return { hbone: rt.hboneAddress, policyHash: rt.store.current()?.hash ?? '' };
  }

  readiness(): ReadinessState {
    return this.#runtime?.readiness.state() ?? NOT_STARTED;
  }

  /** `version`: the primary's number for this load, in a worker. */
  reload(trigger: ReloadTrigger, version?: number): Promise<ReloadRecord> {
    return this.#started().reload(trigger, version);
  }

  onReload(listener: (record: ReloadRecord) => void): void {
    this.#reloadListeners.push(listener);
  }

  async reloadMesh(trigger: 'signal' | 'admin'): Promise<MeshReloadRecord | null> {
    return this.#runtime ? this.#runtime.reloadMesh(trigger) : null;
  }

  metricsText(): Promise<string> {
    return this.metrics.text();
  }

  /** The registry as JSON, for a workers-mode primary to merge. */
  metricsJson(): Promise<MetricsJson> {
    return this.metrics.registry.getMetricsAsJSON();
  }

  async policyInfo(): Promise<PolicyInfo> {
    return this.#runtime?.policyInfo() ?? { loaded: false };
  }

  async connections(): Promise<TunnelInfo[]> {
    return this.#runtime?.connections() ?? [];
  }

  async explain(input: unknown): Promise<Explanation> {
    return explainInput(this.#runtime?.store.current(), this.#o.config.defaultAction, input);
  }

  setLogLevel(): void {
    // The runtime logs through the root's logger, whose level the root has set already.
  }

  configInfo(): Record<string, unknown> {
    // The sandwich listener as bound (port 0 resolved), next to the config's sandwich.listen.
    const sandwichAddress = this.#runtime?.sandwichAddress ?? null;
    const sandwich = { on: sandwichAddress !== null, address: sandwichAddress, headerTimeoutMs: this.#o.config.sandwich.headerTimeoutMs };
    return { tls: this.#runtime?.tlsInfo() ?? null, workers: 1, discovery: this.#runtime?.discoveryInfo() ?? null, sandwich };
  }

  logFields(moment: 'listening' | 'draining'): Record<string, unknown> {
    const rt = this.#runtime;
    if (moment === 'draining') return { tunnels: rt?.server.tunnels.size ?? 0 };
    const s = rt?.store.current();
    return { snapshot: s ? { version: s.version, hash: s.hash } : null };
  }

  /** Drains the tunnels (without closing the listener's resources): a worker closes on its own. */
  drain(deadlineMs: number): Promise<{ remaining: number }> {
    return this.#started().drain(deadlineMs);
  }

  async close(): Promise<void> {
    const rt = this.#runtime;
    if (!rt) return;
    await rt.close();
    await tunnelsGone(rt);
  }

  async drainAndClose(deadlineMs: number): Promise<number> {
    const rt = this.#started();
    const { log } = this.#o;
    try {
      const { remaining } = await rt.drain(deadlineMs);
      await rt.close();
      await tunnelsGone(rt);
      log.info({ reset: remaining }, 'drained; flushing the audit log');
      return 0;
    } catch (err) {
      log.error({ err: (err as Error)?.message }, 'drain failed; closing anyway');
      await rt.close().catch(() => undefined);
      return 1;
    }
  }

  kill(): void {
    // Nothing outlives this process: its sockets go with it.
  }
}
