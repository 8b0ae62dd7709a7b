/**
 * Finding and reading policy files. Paths name files or directories; directories are walked for
 * `*.yaml` / `*.yml`. The result is sorted by path so document ordinals, snapshot hashes and error
 * order are the same on every machine.
 *
 * Kubernetes ConfigMap volumes (kubelet's AtomicWriter) look like this:
 *
 *   x.yaml -> ..data/x.yaml      (visible names, symlinks)
 *   ..data -> ..2026_01_01_...   (symlink swapped atomically on update)
 *   ..2026_01_01_.../x.yaml      (the real files)
 *
 * Skipping every name that starts with `.` and following symlinks reads each file exactly once
 * through its visible name, and never half of an old and half of a new timestamped directory.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir, realpath, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Diagnostic } from '../errors.ts';

/** One policy file as read: the path as named (not resolved through symlinks) and its text. */
export interface PolicySourceFile {
  path: string;
  text: string;
}

export interface PolicySources {
  files: PolicySourceFile[];
  diagnostics: Diagnostic[];
}

const POLICY_FILE = /\.ya?ml$/;

/**
 * Reads every policy file under `paths`. A path named explicitly is read whatever its extension;
 * files found by walking a directory must end in `.yaml` or `.yml`. Hidden names (starting with
 * `.`) are skipped while walking. A path that cannot be read yields a `WG_POLICY_IO` diagnostic
 * (line 1, col 1) and the others are still read, so the caller sees every problem at once.
 */
export async function readPolicySources(paths: readonly string[]): Promise<PolicySources> {
  const found = new Map<string, string>(); // resolved display path -> display path
  const diagnostics: Diagnostic[] = [];
  const io = (path: string, message: string): void => {
    diagnostics.push({ code: 'WG_POLICY_IO', message, file: path, line: 1, col: 1, path: '', severity: 'error' });
  };

  // Directories already walked, by real path: a symlink loop must not walk forever.
  const walked = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    let real: string;
    let names: string[];
    try {
      real = await realpath(dir);
      if (walked.has(real)) return;
      walked.add(real);
      names = await readdir(dir);
    } catch (err) {
      io(dir, `cannot read directory: ${errorMessage(err)}`);
      return;
    }
    const visible = names.filter((name) => !name.startsWith('.')).sort();
    // stat follows symlinks (ConfigMap names point into ..data/).
    const stats = await settleAll(visible, (name) => stat(join(dir, name)));
    for (let i = 0; i < visible.length; i++) {
      const name = visible[i]!;
      const child = join(dir, name);
      const st = stats[i]!;
      if (st.status === 'rejected') {
        // A dangling symlink is worth reporting only if it looks like a policy file.
        if (POLICY_FILE.test(name)) io(child, `cannot read policy file: ${errorMessage(st.reason)}`);
        continue;
      }
      if (st.value.isDirectory()) await walk(child);
      else if (st.value.isFile() && POLICY_FILE.test(name)) found.set(resolve(child), child);
    }
  };

  for (const path of paths) {
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      io(path, `cannot read policy path: ${errorMessage(err)}`);
      continue;
    }
    if (st.isDirectory()) await walk(path);
    else found.set(resolve(path), path);
  }

  const files: PolicySourceFile[] = [];
  const ordered = [...found.values()].sort(comparePaths);
  const texts = await settleAll(ordered, (path) => readFile(path, 'utf8'));
  for (let i = 0; i < ordered.length; i++) {
    const text = texts[i]!;
    if (text.status === 'fulfilled') files.push({ path: ordered[i]!, text: text.value });
    else io(ordered[i]!, `cannot read policy file: ${errorMessage(text.reason)}`);
  }
  return { files, diagnostics };
}

/**
 * How many file operations are in flight at once. One at a time, every file cost a round trip
 * through the event loop, and under load each of those turns also served the tunnels that were
 * ready: a reload of 100 files waited for ~200 such turns (stat, then read, per file). libuv's
 * pool runs 4 operations at a time; more than that in flight keeps it busy, and the bound keeps
 * a directory of thousands of files from holding thousands of descriptors open (EMFILE).
 */
const FILE_OPS_IN_FLIGHT = 16;

/** `Promise.allSettled(items.map(fn))` with at most FILE_OPS_IN_FLIGHT pending; results in `items`' order. */
async function settleAll<I, T>(items: readonly I[], fn: (item: I) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  const out = new Array<PromiseSettledResult<T>>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = { status: 'fulfilled', value: await fn(items[i]!) };
      } catch (reason) {
        out[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(FILE_OPS_IN_FLIGHT, items.length) }, worker));
  return out;
}

/**
 * A SHA-256 (hex) over the files sorted by path: for each, the path, NUL, the content's UTF-8 byte
 * length, NUL, then the content. The length prefix keeps the framing unambiguous whatever a file
 * holds. Equal hashes mean the same policy text, so a reload can be skipped and a snapshot named.
 */
export function hashSources(files: readonly PolicySourceFile[]): string {
  const h = createHash('sha256');
  for (const f of [...files].sort((a, b) => comparePaths(a.path, b.path))) {
    h.update(f.path);
    h.update('\0');
    h.update(String(Buffer.byteLength(f.text)));
    h.update('\0');
    h.update(f.text);
  }
  return h.digest('hex');
}

/** Code-unit order, not locale order: the same on every machine. */
function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function errorMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code} ${e.message.replace(/^[A-Z]+: /, '')}` : String(err);
}
