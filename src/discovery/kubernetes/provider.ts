/**
 * The Kubernetes discovery provider (docs/waypoint.md, "Kubernetes discovery"): Services,
 * EndpointSlices and Pods of the fronted namespaces, listed and watched (watch.ts), mapped to the
 * same frozen snapshot as the mesh file (map.ts), behind the same {@link DiscoveryProvider}
 * interface (src/discovery/provider.ts).
 *
 * - **First sync.** `reload('startup')` resolves only once every list of every namespace has
 *   completed, so the first snapshot is never half a mesh. The runtime awaits it before its
 *   listener opens, as it awaits the mesh file's first load: readiness stays false until then
 *   (src/gateway/runtime.ts), and an API server that cannot be reached keeps it false, retried
 *   with backoff and logged, rather than failing the start.
 * - **Changes.** Every change of a cache schedules a rebuild, debounced: `debounceMs` (100 ms)
 *   after the last change of a burst, and never more than `maxDelayMs` (1,000 ms) after its first,
 *   so a rollout's hundreds of events make one snapshot and a steady stream still gets one a
 *   second. The rebuild hashes what the mapping reads (`kubeObjectsHash`): the same hash is
 *   `unchanged` (not swapped; pods' status churn that the mapping ignores lands here), another
 *   is mapped and swapped atomically, version + 1.
 * - **The API server going away.** The caches and the snapshot in force stay; nothing is rebuilt
 *   from a partial view. `health()` says whether every watch is open and for how long the view
 *   has been stale (metrics), the first failure after a working state is logged at once, repeats
 *   of the same failure at most once per `logIntervalMs`, and the recovery is logged with how long
 *   it lasted. Changes made meanwhile arrive through the resumed watches (or a relist after 410).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Diagnostic } from '../../errors.ts';
import type { DiscoveryProvider, DiscoveryReload, DiscoveryTrigger } from '../provider.ts';
import { NO_SNAPSHOT, reloadResult } from '../provider.ts';
import type { DiscoverySnapshot, DiscoverySnapshotInfo } from '../model.ts';
import { kubeProjection, type KubeObjects } from './map.ts';
import { KUBE_RESOURCES, ListWatch, type BackoffOptions, type KubeResource, type WatchError, type WatchErrorReason } from './watch.ts';

/** The subset of the operational logger (pino) the provider writes to. */
export interface ProviderLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface KubernetesProviderOptions {
  /** Credentials (src/kube/client.ts `loadKubeConfig`). */
  config: KubeConfig;
  /** The API server's URL, for the snapshot's `source` and log lines. */
  server: string;
  /** The fronted namespaces (non-empty). */
  namespaces: readonly string[];
  /** Applied to Services only. */
  labelSelector?: string;
  trustDomain: string;
  clusterDomain: string;
  /** Quiet period after the last change of a burst. Default 100 ms. */
  debounceMs?: number;
  /** Longest wait after the first change of a burst. Default 1,000 ms. */
  maxDelayMs?: number;
  backoff?: BackoffOptions;
  /** See watch.ts `ListWatchOptions`. */
  idleTimeoutMs?: number;
  watchTimeoutSeconds?: number;
  /** Repeats of one failure (resource, namespace, reason) are logged at most this often. Default 60,000 ms. */
  logIntervalMs?: number;
  log?: ProviderLog;
  /** Every list/watch failure, unthrottled (tests, `waygate doctor`). */
  onWatchError?: (err: WatchError) => void;
  /** Clock for staleness, in ms (tests). Default `Date.now`. */
  now?: () => number;
}

/** What the metrics read (src/telemetry/metrics.ts `registerKubeDiscoveryMetrics`). */
export interface KubeDiscoveryHealth {
  /** Every list of every namespace has completed once. */
  synced: boolean;
  /** Every watch is open. */
  connected: boolean;
  /** 0 while connected; else seconds since the view was last known current (since start before the first sync). */
  staleSeconds: number;
  /** Failures so far, by resource and reason. */
  errors: { resource: KubeResource; reason: WatchErrorReason; count: number }[];
}

export interface KubernetesProvider extends DiscoveryProvider {
  readonly kind: 'kubernetes';
  /** `kubernetes https://... namespaces shop,payments`: the snapshots' `source`. */
  readonly source: string;
  health(): KubeDiscoveryHealth;
}

function info(s: DiscoverySnapshot): DiscoverySnapshotInfo {
  return { version: s.version, hash: s.hash };
}

export function kubernetesProvider(opts: KubernetesProviderOptions): KubernetesProvider {
  if (opts.namespaces.length === 0) throw new Error('kubernetesProvider: no namespaces');
  const now = opts.now ?? Date.now;
  const debounceMs = opts.debounceMs ?? 100;
  const maxDelayMs = Math.max(opts.maxDelayMs ?? 1_000, debounceMs);
  const logIntervalMs = opts.logIntervalMs ?? 60_000;
  const source = `kubernetes ${opts.server} namespaces ${opts.namespaces.join(',')}` + (opts.labelSelector ? ` services ${opts.labelSelector}` : '');
  const log = opts.log;

  let current: DiscoverySnapshot | null = null;
  let closed = false;
  let started = false;
  let watching: { onReload: (r: DiscoveryReload) => void; onError?: (err: Error) => void } | null = null;
  let queue: Promise<unknown> = Promise.resolve();
  const swapListeners: ((next: DiscoverySnapshot, previous: DiscoverySnapshot | null) => void)[] = [];

  // Connection state, for health and the log.
  let everConnected = false;
  /** When the view stopped being current (null while every watch is open). */
  let staleSince: number | null = now();
  const errorCounts = new Map<string, { resource: KubeResource; reason: WatchErrorReason; count: number }>();
  const lastLogged = new Map<string, { at: number; suppressed: number }>();

  let resolveClosed!: () => void;
  const closedPromise = new Promise<void>((r) => { resolveClosed = r; });
  let resolveSynced!: () => void;
  const firstSync = new Promise<void>((r) => { resolveSynced = r; });

  const watches: ListWatch[] = [];
  const allSynced = (): boolean => watches.every((w) => w.synced);
  const allConnected = (): boolean => watches.every((w) => w.connected);

  // Debounced rebuilds.
  let debounce: NodeJS.Timeout | null = null;
  let burstStartedAt: number | null = null;
  const scheduleRebuild = (): void => {
    if (closed || !watching || !allSynced()) return;
    const t = performance.now();
    burstStartedAt ??= t;
    const wait = Math.max(0, Math.min(debounceMs, burstStartedAt + maxDelayMs - t));
    if (debounce) clearTimeout(debounce);
    debounce = setTimeout(() => {
      debounce = null;
      burstStartedAt = null;
      const w = watching;
      reload('watch').then(
        (r) => { if (!closed && r.result !== 'unchanged') w?.onReload(r); },
        (err: unknown) => w?.onError?.(err instanceof Error ? err : new Error(String(err))),
      );
    }, wait);
  };

  const onChange = (): void => {
    if (!allSynced()) return;
    if (!current) return; // the startup reload builds the first snapshot
    scheduleRebuild();
  };

  const onConnected = (): void => {
    if (!allConnected()) return;
    const wasStale = staleSince;
    staleSince = null;
    if (everConnected && wasStale !== null) {
      log?.info({ source, downSeconds: Math.round((now() - wasStale) / 1000), version: current?.version ?? 0 },
        'Kubernetes API watches restored; discovery is current again');
    }
    everConnected = true;
    lastLogged.clear();
  };

  const onError = (e: WatchError): void => {
    const key = `${e.resource}|${e.reason}`;
    const counted = errorCounts.get(key);
    if (counted) counted.count++;
    else errorCounts.set(key, { resource: e.resource, reason: e.reason, count: 1 });
    opts.onWatchError?.(e);
    const firstLoss = staleSince === null;
    if (firstLoss) staleSince = now();
    if (!log) return;
    const logKey = `${e.resource}|${e.namespace}|${e.reason}`;
    const last = lastLogged.get(logKey);
    const t = now();
    if (!firstLoss && last && t - last.at < logIntervalMs) {
      last.suppressed++;
      return;
    }
    lastLogged.set(logKey, { at: t, suppressed: 0 });
    const fields = {
      source, resource: e.resource, namespace: e.namespace, verb: e.verb, reason: e.reason,
      ...(e.status !== undefined ? { status: e.status } : {}),
      retryInMs: e.retryInMs,
      ...(last?.suppressed ? { repeatedSinceLastLine: last.suppressed } : {}),
      keeps: current ? info(current) : NO_SNAPSHOT,
    };
    const msg = current
      ? `${e.message}; the last good discovery snapshot stays in force`
      : `${e.message}; waiting for the first full sync (not ready)`;
    if (e.reason === 'forbidden' || e.reason === 'unauthorized') log.error(fields, msg);
    else log.warn(fields, msg);
  };

  for (const namespace of opts.namespaces) {
    for (const resource of KUBE_RESOURCES) {
      watches.push(new ListWatch({
        config: opts.config,
        resource,
        namespace,
        ...(resource === 'services' && opts.labelSelector ? { labelSelector: opts.labelSelector } : {}),
        ...(opts.backoff ? { backoff: opts.backoff } : {}),
        ...(opts.idleTimeoutMs !== undefined ? { idleTimeoutMs: opts.idleTimeoutMs } : {}),
        ...(opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: opts.watchTimeoutSeconds } : {}),
        onChange,
        onSynced: () => { if (allSynced()) resolveSynced(); },
        onConnected,
        onError,
      }));
    }
  }

  const objects = (): KubeObjects => {
    const byResource = (r: KubeResource): never[] => watches.filter((w) => w.resource === r).flatMap((w) => w.objects()) as never[];
    return { services: byResource('services'), endpointSlices: byResource('endpointslices'), pods: byResource('pods') };
  };

  const result = (trigger: DiscoveryTrigger, kind: DiscoveryReload['result'], errors: Diagnostic[], previous?: DiscoverySnapshot | null): DiscoveryReload =>
    reloadResult(current, trigger, kind, errors, previous);

  let lastSkipped = '';
  const build = (trigger: DiscoveryTrigger): DiscoveryReload => {
    const held = objects();
    const mapOpts = { trustDomain: opts.trustDomain, clusterDomain: opts.clusterDomain };
    const projection = kubeProjection(held, mapOpts);
    if (current && current.hash === projection.hash) return result(trigger, 'unchanged', []);
    const mapped = projection.map({ version: (current?.version ?? 0) + 1, source });
    const previous = current;
    current = mapped.snapshot;
    // Logged when the list changes, not on every snapshot (a pod left out stays left out).
    const skipped = mapped.skipped.join('\n');
    if (skipped !== lastSkipped && mapped.skipped.length > 0) {
      log?.info({ source, version: current.version, skipped: mapped.skipped.slice(0, 20), more: Math.max(0, mapped.skipped.length - 20) },
        'Kubernetes objects left out of the discovery snapshot');
    }
    lastSkipped = skipped;
    for (const listener of swapListeners) listener(current, previous);
    return result(trigger, 'applied', [], previous);
  };

  const load = async (trigger: DiscoveryTrigger): Promise<DiscoveryReload> => {
    if (!started) {
      started = true;
      for (const w of watches) w.start();
    }
    await Promise.race([firstSync, closedPromise]);
    if (closed && !current) {
      return result(trigger, 'rejected', [{
        code: 'WG_KUBE', message: 'closed before the first full sync of the Kubernetes API', file: source, line: 0, col: 0, path: '', severity: 'error',
      }]);
    }
    return build(trigger);
  };

  const reload = (trigger: DiscoveryTrigger): Promise<DiscoveryReload> => {
    const next = queue.then(() => load(trigger));
    queue = next.catch(() => undefined);
    return next;
  };

  return {
    kind: 'kubernetes',
    source,
    current: () => current,
    reload,
    watch(onReload, onWatchError) {
      if (closed) throw new Error('kubernetesProvider: watch() after close()');
      if (watching) throw new Error('kubernetesProvider: watch() called twice');
      watching = onWatchError ? { onReload, onError: onWatchError } : { onReload };
      // Whatever changed between the startup load and now.
      if (current) scheduleRebuild();
    },
    onSwap(listener) {
      swapListeners.push(listener);
    },
    health() {
      const stale = staleSince === null ? 0 : (now() - staleSince) / 1000;
      return { synced: allSynced(), connected: allConnected(), staleSeconds: stale, errors: [...errorCounts.values()].map((e) => ({ ...e })) };
    },
    close() {
      if (closed) return;
      closed = true;
      if (debounce) clearTimeout(debounce);
      debounce = null;
      for (const w of watches) w.close();
      resolveClosed();
    },
  };
}
