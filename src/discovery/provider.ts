/**
 * Discovery providers: where the gateway's view of the mesh comes from (docs/design.md §6). Each
 * produces immutable snapshots (model.ts) and swaps them atomically, as the policy store swaps
 * policy snapshots: a rejected change keeps the last good snapshot, an unchanged one is not swapped,
 * and versions count applied snapshots. The mesh file is the provider here; the Kubernetes API
 * (Services, EndpointSlices, Pods) implements the same interface in kubernetes/provider.ts.
 */
import path from 'node:path';
import type { Diagnostic } from '../errors.ts';
import { watchPolicyPaths, type PolicyWatcher, type WatchOptions } from '../policy/watch.ts';
import { DEFAULT_SETTLE_MS } from '../policy/sources.ts';
import { meshHash, parseMeshText, readMeshFile } from './mesh-file.ts';
import type { DiscoverySnapshot, DiscoverySnapshotInfo } from './model.ts';

/** What started a reload, as the `reload` record names it. */
export type DiscoveryTrigger = 'startup' | 'watch' | 'signal' | 'admin';

export interface DiscoveryReload {
  result: 'applied' | 'rejected' | 'unchanged';
  trigger: DiscoveryTrigger;
  /** The snapshot in force after this reload ({@link NO_SNAPSHOT} when none has loaded yet). */
  snapshot: DiscoverySnapshotInfo;
  /** On `applied`: the one it replaced (absent for the first); on `rejected`: the one that stays. */
  previous?: DiscoverySnapshotInfo;
  /** Of the snapshot in force. */
  services: number;
  workloads: number;
  /** Why a reload was rejected, each at file:line:col. */
  errors: Diagnostic[];
}

export interface DiscoveryProvider {
  readonly kind: 'mesh-file' | 'kubernetes';
  /** The snapshot in force; null only before the first successful load. */
  current(): DiscoverySnapshot | null;
  /** Loads now. Never rejects for bad or unreadable content: that is a `rejected` result. */
  reload(trigger: DiscoveryTrigger): Promise<DiscoveryReload>;
  /** Hot reload: calls onReload after every reload the watch triggered; onError for watch problems. */
  watch(onReload: (r: DiscoveryReload) => void, onError?: (err: Error) => void): void;
  /** Called synchronously after every swap, with the new and the previous snapshot. */
  onSwap(listener: (next: DiscoverySnapshot, previous: DiscoverySnapshot | null) => void): void;
  close(): void;
}

/** The `snapshot` of a reload before any snapshot has loaded. */
export const NO_SNAPSHOT: DiscoverySnapshotInfo = Object.freeze({ version: 0, hash: '' });

export interface MeshFileProviderOptions {
  /** Principals of workloads in a file that names no trust domain: the gateway's first. */
  trustDomain: string;
  /** Torn-write guard: use the file only once its mtime is this old (src/policy/sources.ts). Default 100. */
  settleMs?: number;
  /** Quiet period after the last file event before a watched reload. Default 250, as policies.debounceMs. */
  debounceMs?: number;
  /** Longest wait after the first event of a burst (src/policy/watch.ts). */
  maxDelayMs?: number;
  /** Interval of the polling fallback while the directory cannot be watched. */
  pollIntervalMs?: number;
  /** How the directory is watched (tests: a watch that fails as exhausted inotify limits do). */
  watchDirectory?: WatchOptions['watchDirectory'];
  /** Watch/poll transitions, for the operational log (src/policy/watch.ts `onMode`). */
  onMode?: WatchOptions['onMode'];
}

function info(s: DiscoverySnapshot): DiscoverySnapshotInfo {
  return { version: s.version, hash: s.hash };
}

/**
 * A reload's result as every provider reports it: `current` is the snapshot in force after it,
 * `previous` the one it replaced (`applied`) or that stays (`rejected`).
 */
export function reloadResult(
  current: DiscoverySnapshot | null,
  trigger: DiscoveryTrigger,
  kind: DiscoveryReload['result'],
  errors: Diagnostic[],
  previous?: DiscoverySnapshot | null,
): DiscoveryReload {
  const r: DiscoveryReload = {
    result: kind,
    trigger,
    snapshot: current ? info(current) : NO_SNAPSHOT,
    services: current?.services.length ?? 0,
    workloads: current?.workloads.length ?? 0,
    errors,
  };
  if (previous) r.previous = info(previous);
  return r;
}

/**
 * The mesh-file provider. The file is read as policy files are (settle, re-read while it changes:
 * mesh-file.ts `readMeshFile`), and watched as a policy file is: through its directory, for its
 * name and a ConfigMap's `..data`, so replacement by rename (editors, the kubelet's `..data` swap)
 * is seen, with polling while the directory cannot be watched (src/policy/watch.ts).
 *
 * Reloads run one at a time, in the order asked, so versions increase by one per applied snapshot
 * and swap listeners see swaps in order. The startup load is the caller's: `reload('startup')`
 * gives `rejected` with `current()` null when the file is missing or invalid.
 */
export function meshFileProvider(file: string, opts: MeshFileProviderOptions): DiscoveryProvider {
  const absolute = path.resolve(file);
  const settleMs = opts.settleMs ?? DEFAULT_SETTLE_MS;
  let current: DiscoverySnapshot | null = null;
  /** Hash of the text last read, applied or not: the watcher's baseline. */
  let lastRead = '';
  let watcher: PolicyWatcher | null = null;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();
  const swapListeners: ((next: DiscoverySnapshot, previous: DiscoverySnapshot | null) => void)[] = [];

  const result = (trigger: DiscoveryTrigger, kind: DiscoveryReload['result'], errors: Diagnostic[], previous?: DiscoverySnapshot | null): DiscoveryReload =>
    reloadResult(current, trigger, kind, errors, previous);

  const load = async (trigger: DiscoveryTrigger): Promise<DiscoveryReload> => {
    const read = await readMeshFile(absolute, { settleMs });
    if ('diagnostics' in read) return result(trigger, 'rejected', read.diagnostics, current);
    const hash = meshHash(absolute, read.text);
    // What was read is what the watcher compares against from now on, whatever it becomes: the
    // watcher hashes exactly as meshHash does (hashSources over the one file, by its absolute path).
    lastRead = hash;
    watcher?.setBaseline(hash);
    if (current && current.hash === hash) return result(trigger, 'unchanged', []);
    const parsed = parseMeshText(read.text, absolute, { trustDomain: opts.trustDomain, version: (current?.version ?? 0) + 1 });
    if ('diagnostics' in parsed) return result(trigger, 'rejected', parsed.diagnostics, current);
    const previous = current;
    current = parsed.snapshot;
    for (const listener of swapListeners) listener(current, previous);
    return result(trigger, 'applied', [], previous);
  };

  const reload = (trigger: DiscoveryTrigger): Promise<DiscoveryReload> => {
    const next = queue.then(() => load(trigger));
    queue = next.catch(() => undefined);
    return next;
  };

  return {
    kind: 'mesh-file',
    current: () => current,
    reload,
    watch(onReload, onError) {
      if (closed) throw new Error('meshFileProvider: watch() after close()');
      if (watcher) throw new Error('meshFileProvider: watch() called twice');
      const watchOpts: WatchOptions = {
        debounceMs: opts.debounceMs ?? 250,
        onChange: () => {
          reload('watch').then(
            (r) => { if (!closed) onReload(r); },
            (err: unknown) => onError?.(err instanceof Error ? err : new Error(String(err))),
          );
        },
      };
      if (onError) watchOpts.onError = onError;
      if (opts.maxDelayMs !== undefined) watchOpts.maxDelayMs = opts.maxDelayMs;
      if (opts.pollIntervalMs !== undefined) watchOpts.pollIntervalMs = opts.pollIntervalMs;
      if (opts.watchDirectory) watchOpts.watchDirectory = opts.watchDirectory;
      if (opts.onMode) watchOpts.onMode = opts.onMode;
      watcher = watchPolicyPaths([absolute], lastRead, watchOpts);
    },
    onSwap(listener) {
      swapListeners.push(listener);
    },
    close() {
      closed = true;
      watcher?.close();
      watcher = null;
    },
  };
}
