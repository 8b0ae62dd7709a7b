/**
 * Loading a policy set: read every file, parse every document, check names across files, compile
 * every expression — all or nothing. One bad file and nothing loads; the caller keeps the previous
 * snapshot in force (docs/design.md §3 "Semantics").
 */
import type { Diagnostic } from '../errors.ts';
import { compilePolicySetSteps } from './compile.ts';
import { findDuplicateNames, parsePolicyDocumentsSteps, type ParsedPolicyDocuments } from './documents.ts';
import type { PolicyLoadCache } from './load-cache.ts';
import type { AuthorizationPolicy, PolicyDocument, PolicyTest } from './model.ts';
import type { PolicySnapshot } from './snapshot.ts';
import { hashSources, policySetTooLarge, readPolicySources, type PolicySourceFile, type ReadOptions } from './sources.ts';
import { runInSlices, runToEnd, type Steps } from './steps.ts';

/** The outcome of a load: a snapshot plus the PolicyTests found beside the policies, or every error. */
export type LoadResult =
  | { ok: true; snapshot: PolicySnapshot; tests: PolicyTest[]; files: string[]; warnings: Diagnostic[] }
  | { ok: false; diagnostics: Diagnostic[] };

/**
 * Bounds on one policy set, checked at load (docs/operating.md, "Limits"). A set over
 * either is rejected whole with a `WG_POLICY_LIMIT` error naming the file and the limit, and the
 * previous snapshot stays in force.
 */
export interface PolicySetLimits {
  /**
   * Total UTF-8 bytes of the policy files, checked before any YAML is parsed, so an oversized
   * set costs a read and nothing more.
   */
  maxBytes: number;
  /**
   * Rules over every AuthorizationPolicy (each has at least one, so this bounds policies too),
   * checked after each file is parsed and before any expression is compiled.
   */
  maxRules: number;
}

/**
 * The defaults, from what a set costs here (2-core EPYC, Node 20; bench/README.md, "Policy set
 * limits"), in the benchmark's rule shape (one principal and one port per rule):
 *   - 10,000 rules: 1.25 MiB of YAML at 100 rules a policy, 2.5 MiB at one; 0.65-0.9 s and 1.8 s
 *     of loading from scratch; 38-45 MiB of heap for the snapshot;
 *   - 20,000 rules: 2.5-5 MiB; 1.3-3.6 s of loading (in event-loop slices: the data path keeps
 *     running, the new set applies that much later); 76-90 MiB of heap, and as much again while
 *     the next set loads beside the one in force.
 * 20,000 rules is twice the largest set the benchmark reloads and keeps a reload within seconds
 * and the policy heap within a few hundred MiB. 8 MiB leaves room for comments and longer
 * expressions at that count, and refuses before parsing the kind of set that stalled the gateway
 * (11 MB, 37,000 policies).
 */
export const POLICY_SET_LIMITS: Readonly<PolicySetLimits> = Object.freeze({ maxBytes: 8 * 1024 * 1024, maxRules: 20_000 });

export interface LoadOptions {
  /** Version to stamp on the snapshot (the caller's monotonic reload counter). */
  version: number;
  /**
   * Parses and compiled expressions kept from the previous load (load-cache.ts): unchanged files
   * are not parsed again and their expressions not compiled again. The result is the same.
   */
  cache?: PolicyLoadCache;
  /** Overrides of POLICY_SET_LIMITS. */
  limits?: Partial<PolicySetLimits>;
  /**
   * Longest run of parsing and compiling between two event-loop turns (steps.ts SLICE_MS by
   * default); 0 yields after every step.
   */
  sliceMs?: number;
  /** How files are read (sources.ts ReadOptions): the gateway waits for files being written to settle. */
  read?: ReadOptions;
}

/**
 * Reads, parses and compiles the policy files under `paths` (files or directories). Parsing and
 * compiling run in event-loop slices (steps.ts): a gateway keeps serving while a large set loads.
 */
export async function loadPolicySet(paths: readonly string[], opts: LoadOptions): Promise<LoadResult> {
  const limits = limitsOf(opts.limits);
  // Sizes are checked by stat before anything is read, then again on the bytes read (a file may
  // have grown in between).
  const sources = await readPolicySources(paths, { ...opts.read, maxBytes: limits.maxBytes });
  if (sources.diagnostics.some(isError)) {
    // An unreadable file could hold a DENY policy: loading the rest would fail open.
    return { ok: false, diagnostics: sources.diagnostics };
  }
  return runInSlices(compileSources(sources.files, opts.version, sources.diagnostics, limits, opts.cache), opts.sliceMs);
}

/**
 * The same as `loadPolicySet` for files already in memory (tests, the admin API, `policy check`
 * on stdin), run at once. Files are taken in path order, as the loader reads them. With `cache`,
 * files unchanged since the cache's last committed load are not parsed again (LoadOptions.cache).
 */
export function compileFromTexts(files: readonly PolicySourceFile[], version: number, limits?: Partial<PolicySetLimits>, cache?: PolicyLoadCache): LoadResult {
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return runToEnd(compileSources(sorted, version, [], limitsOf(limits), cache));
}

function limitsOf(overrides: Partial<PolicySetLimits> | undefined): PolicySetLimits {
  return { ...POLICY_SET_LIMITS, ...overrides };
}

function* compileSources(
  files: readonly PolicySourceFile[],
  version: number,
  earlier: Diagnostic[],
  limits: PolicySetLimits,
  cache?: PolicyLoadCache,
): Steps<LoadResult> {
  const tooLarge = checkBytes(files, limits.maxBytes);
  if (tooLarge !== null) return { ok: false, diagnostics: [...earlier, tooLarge] };

  const documents: PolicyDocument[] = [];
  const diagnostics: Diagnostic[] = [...earlier];
  let rules = 0;
  cache?.begin();
  for (const f of files) {
    // Ordinals run across files: "first" in a decision is file order, then document order.
    const first = documents.length;
    let parsed: ParsedPolicyDocuments;
    if (cache === undefined) {
      parsed = yield* parsePolicyDocumentsSteps(f.text, f.path, first);
      for (const d of parsed.documents) documents.push(d);
    } else {
      // Cached parses are made as if the file came first; shift them to the file's place.
      const hit = cache.lookup(f.path, f.text);
      parsed = hit ?? (yield* parsePolicyDocumentsSteps(f.text, f.path, 0));
      if (hit === undefined) cache.keep(f.path, f.text, parsed);
      for (const d of parsed.documents) documents.push(first === 0 ? d : withOrdinalShift(d, first));
    }
    for (const d of parsed.diagnostics) diagnostics.push(d);
    for (let i = first; i < documents.length; i++) {
      const d = documents[i]!;
      if (d.kind !== 'AuthorizationPolicy') continue;
      rules += d.rules.length;
      if (rules > limits.maxRules) {
        // Nothing is compiled: the set is rejected whole whatever else is wrong with it.
        cache?.abort();
        return { ok: false, diagnostics: [...earlier, tooManyRules(d, rules, limits.maxRules)] };
      }
    }
  }
  diagnostics.push(...findDuplicateNames(documents));
  if (diagnostics.some(isError)) {
    cache?.abort();
    return { ok: false, diagnostics };
  }

  const policies = documents.filter((d): d is AuthorizationPolicy => d.kind === 'AuthorizationPolicy');
  const tests = documents.filter((d): d is PolicyTest => d.kind === 'PolicyTest');
  const paths = files.map((f) => f.path);
  const compiled = yield* compilePolicySetSteps(policies, { version, hash: hashSources(files), files: paths, ...(cache ? { cache } : {}) });
  if ('diagnostics' in compiled) {
    cache?.abort();
    return { ok: false, diagnostics: [...diagnostics, ...compiled.diagnostics] };
  }
  cache?.commit();
  return { ok: true, snapshot: compiled.snapshot, tests, files: paths, warnings: diagnostics };
}

/**
 * The size check, before any parsing: the first file at which the running total of UTF-8 bytes
 * (files in load order) passes `maxBytes`, as an error naming it, or null.
 */
function checkBytes(files: readonly PolicySourceFile[], maxBytes: number): Diagnostic | null {
  let total = 0;
  for (const f of files) {
    const bytes = Buffer.byteLength(f.text, 'utf8');
    total += bytes;
    if (total > maxBytes) return policySetTooLarge(f.path, total, bytes, maxBytes);
  }
  return null;
}

function tooManyRules(d: AuthorizationPolicy, rules: number, maxRules: number): Diagnostic {
  return {
    code: 'WG_POLICY_LIMIT', file: d.location.file, line: d.location.line, col: d.location.col, path: d.location.path, severity: 'error',
    message: `policy set too large: policy "${d.name}" brings it to ${rules} rules, over the limit of ${maxRules} rules for a whole set. ` +
      'Nothing was compiled; the previous snapshot stays in force. Merge rules (`in [...]` lists, CIDRs), or split the set across gateways (docs/operating.md, "Limits")',
  };
}


/** A document parsed at ordinal offset 0, placed `by` documents later (only policies carry an ordinal). */
function withOrdinalShift(d: PolicyDocument, by: number): PolicyDocument {
  return d.kind === 'AuthorizationPolicy' ? Object.freeze({ ...d, ordinal: d.ordinal + by }) : d;
}

function isError(d: Diagnostic): boolean {
  return d.severity === 'error';
}
