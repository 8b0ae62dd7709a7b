// Module hooks for `npm test` (registered by compiled.mjs): a repository .ts module runs as its
// transpiled output in dist-test/ (scripts/compile-tests.mjs, run by the pretest) but under its own .ts URL, so
// import.meta.url, import.meta.dirname and the paths tests build from them mean what they mean in
// the source tree. It costs a test process far less than tsx, which loads itself and esbuild in
// every one (~0.4 s of CPU each, 100+ processes per run). It runs what was last compiled: a .ts
// edited since runs its old output until `node scripts/compile-tests.mjs` (or `npm test`); run one
// file under tsx instead while editing (README, "Running the tests").
//
// Only a load hook: the transpiled modules keep their `./x.ts` imports, which resolve to the
// sources' URLs as written. Two shapes of it: `loadSync` for module.registerHooks (Node 22.15+ and
// 24: in the loading thread), and the async `load` this file exports for module.register (Node 20:
// the hooks run on their own thread, a message round trip per module loaded).
import { readFileSync } from 'node:fs';

const ROOT = new URL('../../', import.meta.url).href;
const OUT = `${ROOT}dist-test/`;

const own = (url) => url.startsWith(ROOT) && !url.startsWith(OUT) && !url.includes('/node_modules/');

/** The compiled module for a repository .ts URL, or null for anything else. */
function compiled(url) {
  if (!url.endsWith('.ts') || !own(url)) return null;
  const out = new URL(`${OUT}${url.slice(ROOT.length, -3)}.js`);
  let source;
  try {
    source = readFileSync(out, 'utf8');
  } catch (err) {
    throw new Error(`${url}: no compiled output ${out.pathname} (npm test compiles it in its pretest: node scripts/compile-tests.mjs)`, { cause: err });
  }
  // The source map sits beside the output, not beside the .ts URL the module runs under; Node
  // reads a map file only from a path relative to the module (an absolute file: URL is ignored).
  const rel = url.slice(ROOT.length);
  const up = '../'.repeat(rel.split('/').length - 1);
  source = source.replace(/\/\/# sourceMappingURL=(\S+)\s*$/, (_, map) => `//# sourceMappingURL=${up}dist-test/${rel.slice(0, rel.lastIndexOf('/') + 1)}${map}\n`);
  return { format: 'module', source, shortCircuit: true };
}

export function loadSync(url, context, nextLoad) {
  return compiled(url) ?? nextLoad(url, context);
}

export async function load(url, context, nextLoad) {
  return compiled(url) ?? nextLoad(url, context);
}
