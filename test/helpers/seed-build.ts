/**
 * Seeds a copy of this repository (a `git clone`, a Docker build stage) with the repository's own
 * `npm run build` output, so the `npm run build` that copy still runs for real (tsc -p
 * tsconfig.build.json, incremental) finds nothing to do instead of compiling src/ from scratch: a
 * full compile costs tens of seconds of CPU, and `npm test` has already made one in its pretest.
 *
 * Only when that is sound, i.e. the repository's dist/ was compiled from exactly the sources the
 * copy builds:
 * - `git status --porcelain -- tsconfig*.json package.json` is empty (package.json's "type" decides
 *   what NodeNext emits), and so is `git status --porcelain -- src` when the copy is a clone of HEAD
 *   (`sources: 'head'`): then the working tree's sources, which the build info is checked against
 *   below, are HEAD's. A copy of the working tree itself (`sources: 'working-tree'`, a Docker build
 *   context) needs no such check: uncommitted sources are in the copy too;
 * - dist/.tsbuildinfo exists, every src/ file it records still has the content hash it records
 *   (tsc's own up-to-date test: a file's `version` is the SHA-256 of its text), and it records
 *   every source file under src/;
 * - dist/src/ holds one output per recorded source and nothing else: tsc -p does not re-emit an
 *   output the build info says it emitted, nor delete one whose source is gone.
 * Otherwise nothing is seeded and the copy builds from scratch, as it would without this helper;
 * the returned reason says why, for the test's output. The declaration files the build read
 * (TypeScript's lib, @types) are not re-hashed: the copies use this repository's node_modules, the
 * one its build read. Should it have changed since without a rebuild, tsc in the copy still sees
 * it (the seed only saves work, every input is compared) and recompiles, which the callers'
 * up-to-date assertion then reports.
 *
 * The build info names files relative to its own directory, after resolving symlinks: the copies'
 * node_modules is a symlink to this repository's, so there tsc sees the compiler's lib files and
 * @types/node under the symlink's target, not under `<copy>/node_modules`. The seeded build info's
 * file names are rewritten to what tsc in the copy resolves, or it would see ~1000 files "change".
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface SeedResult {
  seeded: boolean;
  /** Why it was or was not seeded, one line for the test output. */
  reason: string;
  /** The seeded build info's text: the copy's build found nothing to do if it is unchanged after. */
  buildInfo: string | null;
}

interface BuildInfo {
  fileNames: string[];
  fileInfos: (string | { version: string })[];
}

/** `tsBuildInfoFile` of tsconfig.build.json, relative to the repository (dist/.tsbuildinfo). */
function buildInfoPath(root: string): string {
  const config = JSON.parse(readFileSync(path.join(root, 'tsconfig.build.json'), 'utf8')) as { compilerOptions?: { tsBuildInfoFile?: string } };
  const file = config.compilerOptions?.tsBuildInfoFile;
  if (!file) throw new Error('tsconfig.build.json sets no tsBuildInfoFile: seed-build.ts has nothing to seed from');
  return path.normalize(file);
}

function walk(dir: string, rel = ''): string[] {
  return readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const r = rel ? `${rel}/${e.name}` : e.name;
    return e.isDirectory() ? walk(dir, r) : [r];
  });
}

/** Where the copy's sources come from: a clone of HEAD, or the working tree as it is. */
export type SeedSources = 'head' | 'working-tree';

/** Why `root`'s build output cannot stand for a build of the copy's sources; null when it can. */
function unsound(root: string, infoRel: string, sources: SeedSources): string | null {
  const paths = sources === 'head' ? ['src', 'tsconfig*.json', 'package.json'] : ['tsconfig*.json', 'package.json'];
  const status = spawnSync('git', ['status', '--porcelain', '--', ...paths], { cwd: root, encoding: 'utf8' });
  if (status.status !== 0) return `git status failed: ${status.stderr.trim()}`;
  if (status.stdout.trim() !== '') return `uncommitted changes: ${status.stdout.trim().split('\n').join('; ')}`;
  const infoFile = path.join(root, infoRel);
  if (!existsSync(infoFile)) return `no ${infoRel} (run npm run build)`;
  const info = JSON.parse(readFileSync(infoFile, 'utf8')) as BuildInfo;
  const infoDir = path.dirname(infoFile);
  const recorded = new Set<string>();
  for (const [i, name] of info.fileNames.entries()) {
    const rel = path.relative(root, path.resolve(infoDir, name)).split(path.sep).join('/');
    if (!rel.startsWith('src/')) continue;
    recorded.add(rel);
    const entry = info.fileInfos[i];
    const version = typeof entry === 'string' ? entry : entry?.version;
    const file = path.join(root, rel);
    if (!existsSync(file)) return `${rel} is gone since the last build`;
    if (createHash('sha256').update(readFileSync(file, 'utf8')).digest('hex') !== version) return `${rel} changed since the last build`;
  }
  for (const f of walk(path.join(root, 'src'))) if (/\.[cm]?tsx?$/.test(f) && !recorded.has(`src/${f}`)) return `src/${f} is not in the last build`;
  // Outputs: outDir (dist) mirrors the repository (rootDir .), so src/x.ts compiles to dist/src/x.js.
  const outSrc = path.join(infoDir, 'src');
  const outputs = existsSync(outSrc) ? walk(outSrc) : [];
  const expected = new Set([...recorded].filter((r) => r.endsWith('.ts') && !r.endsWith('.d.ts')).flatMap((r) => {
    const js = r.slice('src/'.length).replace(/\.ts$/, '.js');
    return [js, `${js}.map`];
  }));
  const extra = outputs.filter((o) => !expected.has(o));
  if (extra.length > 0) return `stale outputs without a source: ${extra.slice(0, 3).map((o) => `dist/src/${o}`).join(', ')}`;
  const missing = [...expected].filter((o) => !outputs.includes(o));
  if (missing.length > 0) return `outputs missing: ${missing.slice(0, 3).map((o) => `dist/src/${o}`).join(', ')}`;
  return null;
}

/**
 * Copies `root`'s dist/ (build info included) into `dir`, a copy of the repository (`sources`: of
 * its HEAD or of its working tree) whose node_modules already resolves (tsc in `dir` must see the
 * same files: call this after linking it), when sound; see the file comment.
 */
export function seedBuild(root: string, dir: string, sources: SeedSources = 'head'): SeedResult {
  const infoRel = buildInfoPath(root);
  const why = unsound(root, infoRel, sources);
  if (why !== null) return { seeded: false, reason: `not seeded, building from scratch: ${why}`, buildInfo: null };
  const fromDir = path.dirname(path.join(root, infoRel));
  const toDir = path.dirname(path.join(dir, infoRel));
  cpSync(fromDir, toDir, { recursive: true });
  const info = JSON.parse(readFileSync(path.join(root, infoRel), 'utf8')) as BuildInfo & Record<string, unknown>;
  info.fileNames = info.fileNames.map((name) => {
    const abs = path.resolve(fromDir, name);
    const rel = path.relative(root, abs);
    const there = rel.startsWith('..') || path.isAbsolute(rel) ? abs : path.join(dir, rel);
    const resolved = existsSync(there) ? realpathSync(there) : there;
    return path.relative(toDir, resolved).split(path.sep).join('/');
  });
  const text = JSON.stringify(info);
  writeFileSync(path.join(dir, infoRel), text);
  return { seeded: true, reason: `seeded from this repository's ${infoRel}: the build should find nothing to do`, buildInfo: text };
}

/** Whether the copy's build left the seeded build info as it was: tsc found nothing to recompile. */
export function buildWasUpToDate(dir: string, seed: SeedResult): boolean {
  if (!seed.seeded) return false;
  return readFileSync(path.join(dir, buildInfoPath(dir)), 'utf8') === seed.buildInfo;
}
