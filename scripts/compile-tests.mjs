// The pretest's second step (package.json): every .ts module a test can load (src/, test/, and the
// examples/, bench/ and scripts/ modules tests import) transpiled into dist-test/ by esbuild, one
// file per module, imports left as written; test/helpers/compiled.mjs then runs each under its .ts
// URL. Transpile only: types are checked by `npm run typecheck` (tsconfig.json covers test/) and,
// for src/, by the product build that runs just before (tsc -b tsconfig.build.json). Measured on
// the 2-core machine, 329 files: 1.9 s of CPU, against 27 s for a tsc build of the same files with
// type checking, and 20 s with tsc's noCheck (it still binds every file); a test process no longer
// pays for a TypeScript loader either (tsx: ~0.4 s of CPU per process). esbuild is what tsx runs:
// the suite ran on its output for the project's first sessions.
import { readdirSync } from 'node:fs';
import { build } from 'esbuild';

const DIRS = ['src', 'test', 'examples', 'bench', 'scripts'];

const entryPoints = [];
for (const dir of DIRS) {
  for (const file of readdirSync(dir, { recursive: true })) {
    if (file.endsWith('.ts') && !file.endsWith('.d.ts')) entryPoints.push(`${dir}/${file}`);
  }
}

await build({
  entryPoints,
  outdir: 'dist-test',
  outbase: '.',
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Maps beside the output; compiled-hooks.mjs points each module at its map, so stack traces and
  // failures name the .ts line.
  sourcemap: true,
  // target, useDefineForClassFields and the rest as tsc reads them.
  tsconfig: 'tsconfig.json',
  logLevel: 'warning',
});
