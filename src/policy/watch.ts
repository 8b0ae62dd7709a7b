/**
 * Watches policy paths and reports when their content changes.
 *
 * Directories are watched, never single files: editors save by writing a temporary file and
 * renaming it over the old one, and Kubernetes updates a ConfigMap volume by writing a new
 * timestamped directory and atomically renaming a `..data` symlink onto it (the visible
 * `name.yaml` entries are symlinks through `..data`). A watch on the file itself would follow the
 * old inode and miss both; a watch on the directory sees the rename. A file path is therefore
 * watched through its parent directory, and a path that does not exist yet through the nearest
 * existing ancestor.
 *
 * A watched directory may hold other busy files (the audit log beside `--policies DIR/p.yaml`, or
 * `/tmp`). Three rules keep them from delaying a policy change (docs/operating.md, "Policy reload"):
 *
 * 1. **Only policy names count.** An event counts when its name is one the loader would read (a
 *    `*.yaml`/`*.yml` in a policy directory, the named file of a file path), `..data` (the
 *    ConfigMap swap), the next component of a path that does not exist yet, or a subdirectory
 *    appearing or going. An audit log written beside the policies raises events the watcher drops.
 * 2. **The debounce has a ceiling.** Events are debounced (a ConfigMap swap or `git checkout` is a
 *    burst), but a check runs at most `maxDelayMs` after the first event of a burst however many
 *    follow, so a steady stream of events can postpone a reload by at most that much.
 * 3. **A watch that dies is re-armed, else replaced by polling.** A directory that cannot be
 *    watched (inotify limits, a deleted directory, a file system without notifications) is checked
 *    every `pollIntervalMs` until it can be watched again; both transitions are reported through
 *    `onMode`. A directory deleted and recreated between two checks is a new inode: its old watch
 *    (on the dead inode) is replaced.
 *
 * After the debounce the content hash of the policy files (the snapshot hash, `hashSources`) is
 * compared with the last one: only a real change is reported, so `touch` or an editor's swap file
 * never triggers a reload.
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { POLICY_SET_LIMITS } from './load.ts';
import { hashSources, POLICY_FILE, readPolicySources } from './sources.ts';

export interface WatchOptions {
  /** Quiet period after the last event before the hash is compared. */
  debounceMs: number;
  /**
   * Longest a check waits after the first event of a burst, however many events follow (rule 2
   * above). Default `DEFAULT_MAX_DELAY_MS`; never less than `debounceMs`.
   */
  maxDelayMs?: number;
  /** Interval of the checks while some directory cannot be watched. Default `DEFAULT_POLL_INTERVAL_MS`. */
  pollIntervalMs?: number;
  /** Called with the new content hash after a change (the caller loads; the watcher only detects). */
  onChange: (hash: string) => void;
  /** Called when a watch cannot be set up or fails (the previous snapshot stays; watching goes on). */
  onError?: (err: Error) => void;
  /**
   * Called when the watcher falls back to polling because some directory cannot be watched
   * (`mode: 'poll'`, with the directory and why) and when every directory is watched again
   * (`mode: 'watch'`). The gateway logs both: an operator must know reloads may now take up to
   * `pollIntervalMs`.
   */
  onMode?: (mode: 'watch' | 'poll', detail: { dir: string; reason: string }) => void;
  /** Called after every comparison, changed or not (tests and debug logging). */
  onChecked?: (hash: string, changed: boolean) => void;
  /**
   * How a directory is watched; default `fs.watch`. Tests pass one that fails as exhausted
   * inotify limits do (ENOSPC), which cannot be provoked deterministically on a shared machine.
   */
  watchDirectory?: (dir: string, listener: (type: string, name: string | null) => void) => fs.FSWatcher;
}

const watchDirectory = (dir: string, listener: (type: string, name: string | null) => void): fs.FSWatcher =>
  fs.watch(dir, { persistent: false }, (type, name) => listener(type, name === null ? null : String(name)));

/** Default ceiling on the debounce: with the reload itself, a change applies well within 1 s. */
export const DEFAULT_MAX_DELAY_MS = 500;
/** Default interval of the fallback polling. */
export const DEFAULT_POLL_INTERVAL_MS = 2_000;

export interface PolicyWatcher {
  /** Content hash of the policy files as last seen. */
  readonly hash: string;
  /** `watch` while every directory has a live watch, `poll` while some are polled. */
  readonly mode: 'watch' | 'poll';
  /** Records a hash seen by an explicit reload (SIGHUP, admin) so the watcher does not repeat it. */
  setBaseline(hash: string): void;
  /** Re-checks now, without waiting for an event (also used after errors). */
  poke(): void;
  close(): void;
}

/**
 * Which events in a watched directory concern the policies: every policy-file name and
 * subdirectory of a policy directory (`tree`), or only the listed names (the directory of a named
 * file, or an ancestor of a path that does not exist yet).
 */
export interface Relevance {
  tree: boolean;
  names: Set<string>;
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p); // follows symlinks: ConfigMap entries are symlinks through ..data
  } catch {
    return null;
  }
}

/**
 * The content hash of the policy files under `paths`, computed exactly as a loaded snapshot's
 * `hash` is (`readPolicySources` + `hashSources`), so "changed" means "would load differently".
 */
export async function hashPolicyPaths(paths: readonly string[]): Promise<string> {
  // A set over the byte limit is not read (the load refuses it anyway): its hash is the refusal's,
  // which changes when the file that passes the limit or the total changes.
  const { files, diagnostics } = await readPolicySources(paths, { maxBytes: POLICY_SET_LIMITS.maxBytes });
  const refused = diagnostics.find((d) => d.code === 'WG_POLICY_LIMIT');
  return refused ? `limit:${refused.file}:${refused.message}` : hashSources(files);
}

/** Directories to watch so that any change under `paths` raises an event, and which names count. */
export function directoriesFor(paths: readonly string[]): Map<string, Relevance> {
  const dirs = new Map<string, Relevance>();
  const entry = (dir: string): Relevance => {
    let r = dirs.get(dir);
    if (!r) dirs.set(dir, (r = { tree: false, names: new Set() }));
    return r;
  };
  const addTree = (dir: string, depth: number): void => {
    const r = entry(dir);
    if (r.tree) return;
    r.tree = true;
    if (depth > 16) return;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      // Real subdirectories only: `..data` and timestamped ConfigMap dirs are covered by the
      // watch on their parent, which sees the symlink swap.
      if (e.isDirectory() && !e.name.startsWith('.')) addTree(path.join(dir, e.name), depth + 1);
    }
  };
  for (const p of paths) {
    const st = statOrNull(p);
    if (st?.isDirectory()) {
      addTree(p, 0);
      continue;
    }
    // A file (or a path that does not exist yet): watch the nearest existing ancestor, for the
    // one name on the way to `p`. `..data` counts too: a ConfigMap file is a symlink through it.
    let child = p;
    let dir = path.dirname(p);
    while (!statOrNull(dir)?.isDirectory() && path.dirname(dir) !== dir) {
      child = dir;
      dir = path.dirname(dir);
    }
    const r = entry(dir);
    r.names.add(path.basename(child));
    r.names.add('..data');
  }
  return dirs;
}

/** True when an event named `name` (eventType `type`) in `dir` may change what the loader reads. */
export function concerns(dir: string, r: Relevance, type: string, name: string | null, watched: ReadonlyMap<string, unknown>): boolean {
  if (name === null) return true; // the platform did not say which entry: assume it matters
  // inotify reports the watched directory itself moved or deleted under its own name.
  if (r.names.has(name) || name === path.basename(dir)) return true;
  if (!r.tree) return false;
  if (POLICY_FILE.test(name) || name === '..data') return true;
  // Content changes of other files (`change`) never matter; a `rename` (created, deleted,
  // renamed) matters when the entry is, or was, a subdirectory the loader walks.
  if (type !== 'rename' || name.startsWith('.')) return false;
  const child = path.join(dir, name);
  return watched.has(child) || statOrNull(child)?.isDirectory() === true;
}

interface Watched {
  relevance: Relevance;
  /** The live watch, or null while the directory is polled. */
  watcher: fs.FSWatcher | null;
  /** `dev:ino` of the directory the watch is on (a recreated directory is a new inode). */
  inode: string;
  /** The directory itself was reported deleted or moved: its watch sees nothing any more. */
  stale: boolean;
}

/**
 * Starts watching. `baseline` is the hash of the snapshot in force (its `hash`); until a change
 * is seen it is what new content is compared against.
 */
export function watchPolicyPaths(paths: readonly string[], baseline: string, opts: WatchOptions): PolicyWatcher {
  const maxDelayMs = Math.max(opts.debounceMs, opts.maxDelayMs ?? DEFAULT_MAX_DELAY_MS);
  const pollIntervalMs = Math.max(1, opts.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS);
  let lastHash = baseline;
  const watched = new Map<string, Watched>();
  let timer: NodeJS.Timeout | null = null;
  /** performance.now() of the first event not yet checked (the ceiling counts from it). */
  let burstStartMs: number | null = null;
  let pollTimer: NodeJS.Timeout | null = null;
  let mode: 'watch' | 'poll' = 'watch';
  let closed = false;
  let checking = false;
  let again = false;

  const schedule = (): void => {
    if (closed) return;
    const nowMs = performance.now();
    burstStartMs ??= nowMs;
    const leftMs = Math.max(0, maxDelayMs - (nowMs - burstStartMs));
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void check(), Math.min(opts.debounceMs, leftMs));
    timer.unref();
  };

  const setMode = (next: 'watch' | 'poll', dir: string, reason: string): void => {
    if (next === mode) return;
    mode = next;
    if (next === 'poll') {
      pollTimer = setInterval(schedule, pollIntervalMs);
      pollTimer.unref();
    } else if (pollTimer) {
      clearInterval(pollTimer);
      pollTimer = null;
    }
    opts.onMode?.(next, { dir, reason });
  };

  const inodeOf = (dir: string): string => {
    const st = statOrNull(dir);
    return st ? `${st.dev}:${st.ino}` : '';
  };

  const watch = (dir: string, w: Watched): void => {
    try {
      const fsw = (opts.watchDirectory ?? watchDirectory)(dir, (type, name) => {
        // inotify names the watched directory itself when it is deleted or moved: this watch is
        // dead from now on (IN_IGNORED). The next check replaces it, even when a directory
        // recreated at once got the same inode number back (ext4 and tmpfs reuse them).
        if (name === path.basename(dir) && w.watcher === fsw) w.stale = true;
        if (concerns(dir, w.relevance, type, name, watched)) schedule();
      });
      fsw.on('error', (err) => {
        // The directory went away (deleted, unmounted) or the watch broke: poll until a check
        // can arm it again.
        fsw.close();
        if (w.watcher === fsw) w.watcher = null;
        opts.onError?.(err);
        setMode('poll', dir, (err as NodeJS.ErrnoException).code ?? err.message);
        schedule();
      });
      w.watcher = fsw;
    } catch (err) {
      w.watcher = null;
      opts.onError?.(err as Error);
      setMode('poll', dir, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
    }
  };

  const arm = (): void => {
    const wanted = directoriesFor(paths);
    for (const [dir, w] of watched) {
      if (!wanted.has(dir)) {
        w.watcher?.close();
        watched.delete(dir);
      }
    }
    let failedDir: string | null = null;
    for (const [dir, relevance] of wanted) {
      const inode = inodeOf(dir);
      let w = watched.get(dir);
      if (w && (w.inode !== inode || w.stale || w.watcher === null)) {
        // Deleted and recreated (the old watch sees nothing any more), or polled.
        w.watcher?.close();
        w.watcher = null;
        w.stale = false;
      }
      if (!w) watched.set(dir, (w = { relevance, watcher: null, inode, stale: false }));
      w.relevance = relevance;
      w.inode = inode;
      if (w.watcher === null) watch(dir, w);
      if (w.watcher === null) failedDir ??= dir;
    }
    if (failedDir === null) setMode('watch', [...wanted.keys()].join(', '), 'every directory is watched again');
  };

  async function check(): Promise<void> {
    timer = null;
    if (closed) return;
    if (checking) {
      again = true; // an event during a read: read once more afterwards
      return;
    }
    checking = true;
    burstStartMs = null;
    try {
      arm(); // new subdirectories, a recreated directory, a path that now exists, a failed watch
      const hash = await hashPolicyPaths(paths);
      if (closed) return;
      const changed = hash !== lastHash;
      if (changed) {
        lastHash = hash;
        opts.onChange(hash);
      }
      opts.onChecked?.(hash, changed);
    } catch (err) {
      opts.onError?.(err as Error);
    } finally {
      checking = false;
      if (again && !closed) {
        again = false;
        schedule();
      }
    }
  }

  arm();
  return {
    get hash() {
      return lastHash;
    },
    get mode() {
      return mode;
    },
    setBaseline(hash: string) {
      lastHash = hash;
    },
    poke: schedule,
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (pollTimer) clearInterval(pollTimer);
      for (const w of watched.values()) w.watcher?.close();
      watched.clear();
    },
  };
}
