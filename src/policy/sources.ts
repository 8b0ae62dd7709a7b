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
import { open, readdir, realpath, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
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

/** Names the directory walk reads as policy files. */
export const POLICY_FILE = /\.ya?ml$/;

/**
 * How a file is read. Policy files are read by the gateway while other programs may be writing
 * them; a half-written file parsed as if complete can drop a DENY (docs/operating.md, "Updating
 * policies safely"). Atomic replacement (write a temporary file, rename it over the old one) is the
 * guarantee; these two checks are defence in depth for writers that do not do that:
 *
 * - **stable read**: each file is read through one descriptor between two `fstat`s; if its size or
 *   modification time moved during the read, or the bytes read are not the size it reports, it is
 *   read again;
 * - **settle**: a file modified less than `settleMs` ago is waited for until it is that old and
 *   then read again, so a writer that writes in several steps is likely to have finished.
 *
 * A file still unstable after `maxAttempts` reads is a `WG_POLICY_UNSTABLE` error: the set is
 * rejected (the previous snapshot stays) and the next change event loads it again.
 */
export interface ReadOptions {
  /** Wait until every file is at least this old (by mtime) before it is used. Default 0 (off). */
  settleMs?: number;
  /** Reads per file before it is reported as unstable. Default 5. */
  maxAttempts?: number;
  /**
   * Refuse the set by the sizes `stat` reports, before reading any file, when they add up to more
   * than this (`WG_POLICY_LIMIT`): a stray multi-gigabyte file must not be read into memory only to
   * be refused by the loader's own size check (load.ts POLICY_SET_LIMITS). Default: no check.
   */
  maxBytes?: number;
}

/**
 * The error for a policy set over its byte limit, at the first file (in load order) where the
 * running total passes it. Shared by the size check before reading (here) and after (load.ts).
 */
export function policySetTooLarge(file: string, total: number, fileBytes: number, maxBytes: number): Diagnostic {
  const where = total === fileBytes ? `this file alone is ${total} bytes` : `the policy files up to and including this one total ${total} bytes`;
  const mib = `${Math.round((maxBytes / (1024 * 1024)) * 100) / 100} MiB`;
  return {
    code: 'WG_POLICY_LIMIT', file, line: 1, col: 1, path: '', severity: 'error',
    message: `policy set too large: ${where}, over the limit of ${maxBytes} bytes (${mib}) for a whole set. ` +
      'Nothing was parsed; the previous snapshot stays in force. Split the set across gateways, or remove unused policies (docs/operating.md, "Limits")',
  };
}

/** Settle time the gateway uses for its reloads: short next to the 1 s reload budget. */
export const DEFAULT_SETTLE_MS = 100;

/**
 * Reads every policy file under `paths`. A path named explicitly is read whatever its extension;
 * files found by walking a directory must end in `.yaml` or `.yml`. Hidden names (starting with
 * `.`) are skipped while walking. A path that cannot be read yields a `WG_POLICY_IO` diagnostic
 * (line 1, col 1) and the others are still read, so the caller sees every problem at once.
 */
export async function readPolicySources(paths: readonly string[], opts: ReadOptions = {}): Promise<PolicySources> {
  const found = new Map<string, string>(); // resolved display path -> display path
  const sizes = new Map<string, number>(); // display path -> size as stat saw it
  const diagnostics: Diagnostic[] = [];
  const io = (path: string, message: string, code: 'WG_POLICY_IO' | 'WG_POLICY_UNSTABLE' = 'WG_POLICY_IO'): void => {
    diagnostics.push({ code, message, file: path, line: 1, col: 1, path: '', severity: 'error' });
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
      else if (st.value.isFile() && POLICY_FILE.test(name)) {
        found.set(resolve(child), child);
        sizes.set(child, st.value.size);
      }
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
    else {
      found.set(resolve(path), path);
      sizes.set(path, st.size);
    }
  }

  const files: PolicySourceFile[] = [];
  const ordered = [...found.values()].sort(comparePaths);
  if (opts.maxBytes !== undefined) {
    let total = 0;
    for (const path of ordered) {
      const bytes = sizes.get(path) ?? 0;
      total += bytes;
      if (total > opts.maxBytes) {
        diagnostics.push(policySetTooLarge(path, total, bytes, opts.maxBytes));
        return { files, diagnostics };
      }
    }
  }
  const settleMs = Math.max(0, opts.settleMs ?? 0);
  const maxAttempts = Math.max(1, opts.maxAttempts ?? 5);
  const texts = await settleAll(ordered, (path) => readStable(path, settleMs, maxAttempts));
  for (let i = 0; i < ordered.length; i++) {
    const text = texts[i]!;
    if (text.status === 'fulfilled') files.push({ path: ordered[i]!, text: text.value });
    else if (text.reason instanceof UnstableFileError) io(ordered[i]!, text.reason.message, 'WG_POLICY_UNSTABLE');
    else io(ordered[i]!, `cannot read policy file: ${errorMessage(text.reason)}`);
  }
  return { files, diagnostics };
}

class UnstableFileError extends Error {}

/**
 * Reads one file as UTF-8, again while it changes under the read or is younger than `settleMs`
 * (ReadOptions). The descriptor pins the inode: an atomic rename during the read leaves this read
 * consistent (the old file), and the rename raises a new change event of its own.
 */
async function readStable(path: string, settleMs: number, maxAttempts: number): Promise<string> {
  let why = '';
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const fh = await open(path, 'r');
    let bytes: Buffer;
    let before;
    let after;
    try {
      before = await fh.stat();
      bytes = await fh.readFile();
      after = await fh.stat();
    } finally {
      await fh.close();
    }
    if (before.size !== after.size || before.mtimeMs !== after.mtimeMs || bytes.length !== after.size) {
      why = `it changed while it was read (${before.size} -> ${after.size} bytes)`;
      continue;
    }
    // Clock reads here are the I/O edge's, never the decision core's. A modification time in the
    // future (a skewed network file system) also waits, at most maxAttempts times.
    const ageMs = Date.now() - after.mtimeMs;
    if (settleMs > 0 && ageMs < settleMs) {
      why = ageMs >= 0
        ? `it was modified ${Math.round(ageMs)} ms before it was read`
        : `its modification time is ${Math.round(-ageMs)} ms in the future (a writer still touching it, or a clock ahead of this one)`;
      if (attempt < maxAttempts) await delay(Math.min(settleMs, Math.max(1, settleMs - ageMs)));
      continue;
    }
    return bytes.toString('utf8');
  }
  throw new UnstableFileError(
    `policy file is still being written: ${why}, ${maxAttempts} reads in a row. It is not applied; ` +
      'the next change loads it again. Replace policy files atomically (write a temporary file, then rename it over the old one)',
  );
}

/**
 * Editor artefacts that mean a file is being edited in place: vim swap files (`.x.yaml.swp`,
 * `.swo`...), vim's write probe `4913`, emacs lock and auto-save files (`.#x.yaml`, `#x.yaml#`),
 * backup files (`x.yaml~`), kate swap files.
 */
const EDITOR_ARTEFACT = /^(\..*\.sw[a-p]|4913|\.#.*|#.*#|.*~|\..*\.kate-swp)$/;

/**
 * Warnings for `waygate policy check` about how the policy paths are being updated, where that can
 * be seen from the files: editor swap, lock or backup files beside policy files mean someone edits
 * them in place, and a gateway watching the directory may read a half-saved file. A Kubernetes
 * ConfigMap volume (a `..data` symlink) is updated atomically by the kubelet and gets no warning.
 * (A "modified moments ago" warning was tried and dropped: it fired on every save-then-check.)
 */
export async function inspectPolicyUpdates(paths: readonly string[]): Promise<Diagnostic[]> {
  const out: Diagnostic[] = [];
  const warn = (file: string, message: string): void => {
    out.push({ code: 'WG_POLICY_UNSAFE_UPDATE', message, file, line: 1, col: 1, path: '', severity: 'warning' });
  };
  const seen = new Set<string>();
  const visit = async (dir: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      const real = await realpath(dir);
      if (seen.has(real) || depth > 16) return;
      seen.add(real);
      names = await readdir(dir);
    } catch {
      return; // unreadable paths are the loader's WG_POLICY_IO errors
    }
    if (names.includes('..data')) return; // kubelet AtomicWriter: swapped atomically
    for (const name of names.sort()) {
      const child = join(dir, name);
      if (EDITOR_ARTEFACT.test(name)) {
        warn(child, `editor swap or backup file beside the policy files: a policy file is being edited in place, and the gateway may read it half-saved. Edit a copy and rename it into place (docs/operating.md, "Updating policies safely")`);
        continue;
      }
      if (name.startsWith('.')) continue;
      const st = await stat(child).catch(() => null);
      if (st?.isDirectory()) await visit(child, depth + 1);
    }
  };
  for (const p of paths) {
    const st = await stat(p).catch(() => null);
    if (st?.isDirectory()) await visit(p, 0);
    else if (st?.isFile()) {
      // A single file: its directory may still hold the editor's swap file for it.
      const dir = resolve(p, '..');
      const names = await readdir(dir).catch(() => [] as string[]);
      const base = basename(p);
      for (const name of names) {
        if (EDITOR_ARTEFACT.test(name) && name.includes(base)) {
          warn(join(dir, name), `editor swap or backup file for ${p}: it is being edited in place, and the gateway may read it half-saved. Edit a copy and rename it into place (docs/operating.md, "Updating policies safely")`);
        }
      }
    }
  }
  return out;
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
