/**
 * Loading a policy set: read every file, parse every document, check names across files, compile
 * every expression — all or nothing. One bad file and nothing loads; the caller keeps the previous
 * snapshot in force (DESIGN §3 "A policy set that fails to load is rejected whole").
 */
import type { Diagnostic } from '../errors.ts';
import { compilePolicySet } from './compile.ts';
import { findDuplicateNames, parsePolicyDocuments } from './documents.ts';
import type { PolicyLoadCache } from './load-cache.ts';
import type { AuthorizationPolicy, PolicyDocument, PolicyTest } from './model.ts';
import type { PolicySnapshot } from './snapshot.ts';
import { hashSources, readPolicySources, type PolicySourceFile } from './sources.ts';

/** The outcome of a load: a snapshot plus the PolicyTests found beside the policies, or every error. */
export type LoadResult =
  | { ok: true; snapshot: PolicySnapshot; tests: PolicyTest[]; files: string[]; warnings: Diagnostic[] }
  | { ok: false; diagnostics: Diagnostic[] };

export interface LoadOptions {
  /** Version to stamp on the snapshot (the caller's monotonic reload counter). */
  version: number;
  /**
   * Parses and compiled expressions kept from the previous load (load-cache.ts): unchanged files
   * are not parsed again and their expressions not compiled again. The result is the same.
   */
  cache?: PolicyLoadCache;
}

/** Reads, parses and compiles the policy files under `paths` (files or directories). */
export async function loadPolicySet(paths: readonly string[], opts: LoadOptions): Promise<LoadResult> {
  const sources = await readPolicySources(paths);
  if (sources.diagnostics.some(isError)) {
    // An unreadable file could hold a DENY policy: loading the rest would fail open.
    return { ok: false, diagnostics: sources.diagnostics };
  }
  return compileSources(sources.files, opts.version, sources.diagnostics, opts.cache);
}

/**
 * The same as `loadPolicySet` for files already in memory (tests, the admin API, `policy check`
 * on stdin). Files are taken in path order, as the loader reads them.
 */
export function compileFromTexts(files: readonly PolicySourceFile[], version: number): LoadResult {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return compileSources(sorted, version, []);
}

function compileSources(files: readonly PolicySourceFile[], version: number, earlier: Diagnostic[], cache?: PolicyLoadCache): LoadResult {
  const documents: PolicyDocument[] = [];
  const diagnostics: Diagnostic[] = [...earlier];
  cache?.begin();
  for (const f of files) {
    // Ordinals run across files: "first" in a decision is file order, then document order.
    const first = documents.length;
    if (cache === undefined) {
      const parsed = parsePolicyDocuments(f.text, f.path, first);
      documents.push(...parsed.documents);
      diagnostics.push(...parsed.diagnostics);
      continue;
    }
    // Cached parses are made as if the file came first; shift them to the file's place.
    const parsed = cache.parsed(f.path, f.text, () => parsePolicyDocuments(f.text, f.path, 0));
    for (const d of parsed.documents) documents.push(first === 0 ? d : withOrdinalShift(d, first));
    diagnostics.push(...parsed.diagnostics);
  }
  cache?.commit();
  diagnostics.push(...findDuplicateNames(documents));
  if (diagnostics.some(isError)) return { ok: false, diagnostics };

  const policies = documents.filter((d): d is AuthorizationPolicy => d.kind === 'AuthorizationPolicy');
  const tests = documents.filter((d): d is PolicyTest => d.kind === 'PolicyTest');
  const paths = files.map((f) => f.path);
  const compiled = compilePolicySet(policies, { version, hash: hashSources(files), files: paths, ...(cache ? { cache } : {}) });
  if ('diagnostics' in compiled) return { ok: false, diagnostics: [...diagnostics, ...compiled.diagnostics] };
  return { ok: true, snapshot: compiled.snapshot, tests, files: paths, warnings: diagnostics };
}

/** A document parsed at ordinal offset 0, placed `by` documents later (only policies carry an ordinal). */
function withOrdinalShift(d: PolicyDocument, by: number): PolicyDocument {
  return d.kind === 'AuthorizationPolicy' ? Object.freeze({ ...d, ordinal: d.ordinal + by }) : d;
}

function isError(d: Diagnostic): boolean {
  return d.severity === 'error';
}
