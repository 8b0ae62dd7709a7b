/**
 * A small glob for the review CLI's path arguments (Node 20 has no `fs.glob`, and no new dependency
 * is worth it): `*` and `?` within one path segment, `[abc]` classes, and `**` for any number of
 * directories. Shell-expanded arguments arrive as plain paths and pass through untouched; quoted
 * ones (`'logs/**\/audit-*.jsonl.gz'`) are expanded here, sorted, so runs are reproducible.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

/** True when `pattern` holds a glob metacharacter. */
export function hasGlobMagic(pattern: string): boolean {
  return /[*?[]/.test(pattern);
}

/** Compiles one path segment (no `/`) to an anchored RegExp. */
export function segmentToRegExp(segment: string): RegExp {
  let re = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close === -1) {
        re += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, close);
      const negate = body.startsWith('!') || body.startsWith('^');
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\\\]]/g, '\\$&')}]`;
      i = close;
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * Converts a whole-string glob (as used for `--principal`) to a RegExp where `*` matches any run
 * of characters, `/` included: SPIFFE IDs are paths, and `spiffe://td/ns/prod/*` should match
 * every service account of the namespace.
 */
export function wildcardToRegExp(glob: string): RegExp {
  let re = '';
  for (const c of glob) {
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else re += c.replace(/[.+^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

/** Expands one pattern to the sorted list of existing regular files it matches. */
export async function expandGlob(pattern: string): Promise<string[]> {
  if (!hasGlobMagic(pattern)) return [pattern];
  const absolute = path.isAbsolute(pattern);
  const parts = pattern.split(/[\\/]+/).filter((p, i) => p !== '' || i === 0);
  let base = absolute ? path.sep : '.';
  let start = absolute ? 1 : 0;
  // The literal prefix is walked directly; only the segments from the first magic one are matched.
  while (start < parts.length - 1 && !hasGlobMagic(parts[start]!)) {
    base = path.join(base, parts[start]!);
    start++;
  }
  const segments = parts.slice(start);
  const out: string[] = [];
  await walk(base, segments, 0, out, absolute || base !== '.' ? base : '');
  return [...new Set(out)].sort();
}

async function walk(dir: string, segments: string[], index: number, out: string[], shown: string): Promise<void> {
  const seg = segments[index];
  if (seg === undefined) return;
  const last = index === segments.length - 1;
  if (seg === '**') {
    // `**` matches zero directories (continue with the next segment here) or one more level.
    if (last) {
      await collectAll(dir, out, shown);
      return;
    }
    await walk(dir, segments, index + 1, out, shown);
    for (const entry of await listDir(dir)) {
      if (entry.isDirectory() && !entry.name.startsWith('.')) {
        await walk(path.join(dir, entry.name), segments, index, out, join(shown, entry.name));
      }
    }
    return;
  }
  if (!hasGlobMagic(seg)) {
    const next = path.join(dir, seg);
    if (last) {
      if (await isFile(next)) out.push(join(shown, seg));
    } else await walk(next, segments, index + 1, out, join(shown, seg));
    return;
  }
  const re = segmentToRegExp(seg);
  for (const entry of await listDir(dir)) {
    // Like shells, a wildcard does not match a leading dot unless the pattern starts with one.
    if (entry.name.startsWith('.') && !seg.startsWith('.')) continue;
    if (!re.test(entry.name)) continue;
    const full = path.join(dir, entry.name);
    if (last) {
      if (entry.isFile() || (entry.isSymbolicLink() && (await isFile(full)))) out.push(join(shown, entry.name));
    } else if (entry.isDirectory() || entry.isSymbolicLink()) {
      await walk(full, segments, index + 1, out, join(shown, entry.name));
    }
  }
}

async function collectAll(dir: string, out: string[], shown: string): Promise<void> {
  for (const entry of await listDir(dir)) {
    if (entry.name.startsWith('.')) continue;
    if (entry.isFile()) out.push(join(shown, entry.name));
    else if (entry.isDirectory()) await collectAll(path.join(dir, entry.name), out, join(shown, entry.name));
  }
}

function join(shown: string, name: string): string {
  return shown === '' ? name : path.join(shown, name);
}

async function listDir(dir: string) {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}
