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
 * Events are debounced (a ConfigMap swap or `git checkout` produces a burst) and then the content
 * hash of the policy files (the snapshot hash, `hashSources`) is compared with the last one: only
 * a real change is reported, so `touch` or an editor's swap file never triggers a reload.
 */
import fs from 'node:fs';
import path from 'node:path';
import { hashSources, readPolicySources } from './sources.ts';

export interface WatchOptions {
  /** Quiet period after the last event before the hash is compared. */
  debounceMs: number;
  /** Called with the new content hash after a change (the caller loads; the watcher only detects). */
  onChange: (hash: string) => void;
  /** Called when a watch cannot be set up (the previous snapshot stays; watching goes on). */
  onError?: (err: Error) => void;
  /** Called after every comparison, changed or not (tests and debug logging). */
  onChecked?: (hash: string, changed: boolean) => void;
}

export interface PolicyWatcher {
  /** Content hash of the policy files as last seen. */
  readonly hash: string;
  /** Records a hash seen by an explicit reload (SIGHUP, admin) so the watcher does not repeat it. */
  setBaseline(hash: string): void;
  /** Re-checks now, without waiting for an event (also used after errors). */
  poke(): void;
  close(): void;
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
  const { files } = await readPolicySources(paths);
  return hashSources(files);
}

/** Directories to watch so that any change under `paths` raises an event. */
function directoriesFor(paths: readonly string[]): Set<string> {
  const dirs = new Set<string>();
  const addTree = (dir: string, depth: number): void => {
    dirs.add(dir);
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
    // A file (or a path that does not exist yet): watch the nearest existing ancestor.
    let dir = path.dirname(p);
    while (!statOrNull(dir)?.isDirectory() && path.dirname(dir) !== dir) dir = path.dirname(dir);
    dirs.add(dir);
  }
  return dirs;
}

/**
 * Starts watching. `baseline` is the hash of the snapshot in force (its `hash`); until a change
 * is seen it is what new content is compared against.
 */
export function watchPolicyPaths(paths: readonly string[], baseline: string, opts: WatchOptions): PolicyWatcher {
  let lastHash = baseline;
  const watchers = new Map<string, fs.FSWatcher>();
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  let checking = false;
  let again = false;

  const schedule = (): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void check(), opts.debounceMs);
    timer.unref();
  };

  const arm = (): void => {
    const wanted = directoriesFor(paths);
    for (const [dir, w] of watchers) {
      if (!wanted.has(dir)) {
        w.close();
        watchers.delete(dir);
      }
    }
    for (const dir of wanted) {
      if (watchers.has(dir)) continue;
      try {
        const w = fs.watch(dir, { persistent: false }, schedule);
        w.on('error', (err) => {
          // The directory went away (deleted, unmounted): drop it and re-arm on the next check.
          w.close();
          watchers.delete(dir);
          opts.onError?.(err);
          schedule();
        });
        watchers.set(dir, w);
      } catch (err) {
        opts.onError?.(err as Error);
      }
    }
  };

  async function check(): Promise<void> {
    timer = null;
    if (closed) return;
    if (checking) {
      again = true; // an event during a read: read once more afterwards
      return;
    }
    checking = true;
    try {
      arm(); // new subdirectories, a recreated directory, a path that now exists
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
    setBaseline(hash: string) {
      lastHash = hash;
    },
    poke: schedule,
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}
