// Module hooks for `npm test` (registered by compiled.mjs): a repository .ts module runs as tsc's
// output in dist-test/ (tsconfig.test.json, compiled by the pretest) but under its own .ts URL, so
// import.meta.url, import.meta.dirname and the paths tests build from them mean what they mean in
// the source tree. It costs a test process far less than tsx, which loads itself and esbuild in
// every one (~0.4 s of CPU each, 100+ processes per run). It runs what was last compiled: a .ts
// edited since runs its old output until `npx tsc -b tsconfig.test.json` (or `npm test`); run one
// file under tsx instead while editing (README, "Running the tests").
import { readFileSync } from 'node:fs';

const ROOT = new URL('../../', import.meta.url).href;
const OUT = `${ROOT}dist-test/`;

const own = (url) => url.startsWith(ROOT) && !url.startsWith(OUT) && !url.includes('/node_modules/');

export async function resolve(specifier, context, nextResolve) {
  // tsc rewrote `./x.ts` to `./x.js` (rewriteRelativeImportExtensions): back to the source's URL.
  const parent = context.parentURL;
  if (parent !== undefined && parent.endsWith('.ts') && own(parent) && specifier.endsWith('.js') && (specifier.startsWith('./') || specifier.startsWith('../'))) {
    const url = new URL(`${specifier.slice(0, -3)}.ts`, parent).href;
    try {
      return await nextResolve(url, context);
    } catch {
      // not a source file: a real .js beside the test (fixtures)
    }
  }
  return nextResolve(specifier, context);
}

export async function load(url, context, nextLoad) {
  if (!url.endsWith('.ts') || !own(url)) return nextLoad(url, context);
  const out = new URL(`${OUT}${url.slice(ROOT.length, -3)}.js`);
  let source;
  try {
    source = readFileSync(out, 'utf8');
  } catch (err) {
    throw new Error(`${url}: no compiled output ${out.pathname} (npm test compiles it in its pretest: tsc -b tsconfig.test.json)`, { cause: err });
  }
  // The source map sits beside the output, not beside the .ts URL the module runs under; Node
  // reads a map file only from a path relative to the module (an absolute file: URL is ignored).
  const rel = url.slice(ROOT.length);
  const up = '../'.repeat(rel.split('/').length - 1);
  source = source.replace(/\/\/# sourceMappingURL=(\S+)\s*$/, (_, map) => `//# sourceMappingURL=${up}dist-test/${rel.slice(0, rel.lastIndexOf('/') + 1)}${map}\n`);
  return { format: 'module', source, shortCircuit: true };
}
