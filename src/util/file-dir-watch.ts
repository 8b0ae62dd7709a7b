/**
 * Watches the directories of a set of files and calls back, debounced, when something in them
 * changes, plus a slow poll for file systems that deliver no events (some network and overlay
 * mounts). The caller decides whether the files' content really changed (a content hash or a
 * parse): events are only a hint.
 *
 * Directories, not files: Kubernetes updates a Secret or ConfigMap volume by building a new
 * timestamped directory and atomically renaming the `..data` symlink over the old one, so the file
 * inodes a per-file watch would hold never change; a directory watch sees the rename. The same
 * holds for editors that save by renaming a temporary file.
 */
import { watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** A rename shows up as several events within a few milliseconds: one check after they settle. */
export const DEFAULT_DEBOUNCE_MS = 200;
/** A mount that delivers no events is still noticed within a minute. */
export const DEFAULT_POLL_INTERVAL_MS = 60_000;

export interface FileDirWatchOptions {
  /** Quiet period after the last event before `onCheck` (DEFAULT_DEBOUNCE_MS for most callers). */
  debounceMs: number;
  /** Also call `onCheck` this often without events; 0 disables (DEFAULT_POLL_INTERVAL_MS for most callers). */
  pollIntervalMs: number;
  /** Something may have changed: re-read the files. */
  onCheck: () => void;
  /** A directory's watch failed after it was set up (the poll, if any, goes on). */
  onWatchError: (dir: string, err: Error) => void;
}

/** A directory could not be watched at start; `dir` names it. */
export class FileDirWatchError extends Error {
  readonly dir: string;
  constructor(dir: string, cause: Error) {
    super(cause.message, { cause });
    this.dir = dir;
  }
}

/** A running watch; `close()` releases every watcher and timer (idempotent). */
export interface FileDirWatch {
  close(): void;
}

/** Starts watching the directories of `files`; throws FileDirWatchError (nothing left running) when one cannot be watched. */
export function watchFileDirectories(files: readonly string[], opts: FileDirWatchOptions): FileDirWatch {
  const watchers: FSWatcher[] = [];
  let debounce: NodeJS.Timeout | undefined;
  let poll: NodeJS.Timeout | undefined;
  let closed = false;
  const close = (): void => {
    closed = true;
    if (debounce) clearTimeout(debounce);
    if (poll) clearInterval(poll);
    debounce = undefined;
    poll = undefined;
    for (const w of watchers.splice(0)) w.close();
  };
  const touched = (): void => {
    if (closed) return;
    if (debounce) clearTimeout(debounce);
    debounce = setTimeout(() => {
      debounce = undefined;
      opts.onCheck();
    }, opts.debounceMs);
    debounce.unref();
  };
  for (const dir of new Set(files.map((f) => dirname(resolve(f))))) {
    try {
      const w = watch(dir, { persistent: false }, touched);
      w.on('error', (err) => opts.onWatchError(dir, err));
      watchers.push(w);
    } catch (err) {
      close();
      throw new FileDirWatchError(dir, err as Error);
    }
  }
  if (opts.pollIntervalMs > 0) {
    poll = setInterval(() => opts.onCheck(), opts.pollIntervalMs);
    poll.unref();
  }
  return { close };
}
