/**
 * A `waygate` process loads only the verb it runs (docs/architecture.md, "Adding a CLI verb"): the
 * command tree is built from light modules, and each verb's implementation (src/cli/<verb>-run.ts)
 * with what it needs (the policy engine, the audit review stack, the dev CA and node-forge, ...)
 * is imported by the action that runs it. Each case runs bin/waygate.js, the compiled product
 * (`npm test` builds dist/ first), under a module loader hook that lists every module the process
 * loads, and checks that list: no timing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { WAYGATE_BIN } from '../helpers/serve.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

// Loader hooks (node:module register): each module's URL is appended to a file as it is loaded.
// Packages in CommonJS show as their entry file (what they require inside is not an ESM load).
const HOOKS = `
import { appendFileSync } from 'node:fs';
let log;
export function initialize(data) { log = data.log; }
export async function load(url, context, next) {
  appendFileSync(log, url + '\\n');
  return next(url, context);
}`;

const tmp = mkdtempSync(join(tmpdir(), 'waygate-lazy-verbs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let runs = 0;

/** Runs `waygate <args>` and returns the exit code and the URLs of the modules it loaded. */
function loadedBy(args: string[]): { code: number | null; stderr: string; loaded: string[] } {
  const log = join(tmp, `loaded-${++runs}.txt`);
  const hooks = `data:text/javascript,${encodeURIComponent(HOOKS)}`;
  const register = `import { register } from 'node:module'; register(${JSON.stringify(hooks)}, { data: { log: ${JSON.stringify(log)} } });`;
  const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, WAYGATE_BIN, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  const loaded = readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');
  return { code: r.status, stderr: r.stderr, loaded };
}

/** What each verb's implementation brings, by the module that shows it was loaded. */
const HEAVY: Record<string, RegExp> = {
  'a verb implementation (src/cli/*-run.ts)': /\/dist\/src\/cli\/[^/]+-run\.js$/,
  'the audit review stack': /\/dist\/src\/audit\/review\/(?!record-variables\.js$)[^/]+\.js$/,
  'the policy engine': /\/dist\/src\/policy\/(engine|load|cel\/[^/]+)\.js$/,
  'the dev CA': /\/dist\/src\/identity\/dev-ca\.js$/,
  'the gateway': /\/dist\/src\/(gateway|hbone|upstream)\//,
  'node-forge': /\/node_modules\/node-forge\//,
  'CEL (@marcbachmann/cel-js)': /\/node_modules\/@marcbachmann\/cel-js\//,
  yaml: /\/node_modules\/yaml\//,
  pino: /\/node_modules\/pino\//,
  '@kubernetes/client-node': /\/node_modules\/@kubernetes\/client-node\//,
  '@grpc/grpc-js': /\/node_modules\/@grpc\//,
};

function heavyIn(loaded: readonly string[]): Record<string, string[]> {
  const found: Record<string, string[]> = {};
  for (const [what, re] of Object.entries(HEAVY)) {
    const urls = loaded.filter((u) => re.test(u));
    if (urls.length > 0) found[what] = urls;
  }
  return found;
}

describe('a waygate process loads only the verb it runs', () => {
  for (const args of [['--version'], ['--help'], ['completion', 'zsh'], ['policy', 'check', '--help']]) {
    it(`\`waygate ${args.join(' ')}\` builds the command tree without loading any verb's implementation`, () => {
      const r = loadedBy(args);
      assert.equal(r.code, 0, r.stderr);
      // The hook did see the process load the CLI (a broken hook would pass the check below).
      assert.ok(r.loaded.some((u) => u.endsWith('/dist/src/cli/main.js')), 'main.js was loaded');
      assert.ok(r.loaded.some((u) => u.endsWith('/dist/src/cli/certs.js')), 'the certs verb was registered');
      assert.deepEqual(heavyIn(r.loaded), {});
    });
  }

  it('`policy check` loads the policy verbs\' implementation and the engine, not the other verbs\' (no dev CA, no audit review)', () => {
    const r = loadedBy(['policy', 'check', 'policies/']);
    assert.equal(r.code, 0, r.stderr);
    const heavy = heavyIn(r.loaded);
    assert.deepEqual(heavy['a verb implementation (src/cli/*-run.ts)']?.map((u) => u.replace(/.*\/dist\/src\//, '')), ['cli/policy-run.js']);
    assert.ok(heavy['the policy engine'], 'the policy engine was loaded');
    assert.ok(heavy['CEL (@marcbachmann/cel-js)'], 'CEL was loaded');
    assert.equal(heavy['node-forge'], undefined);
    assert.equal(heavy['the dev CA'], undefined);
    assert.equal(heavy['the audit review stack'], undefined);
  });

  it('`certs init` loads the dev CA and node-forge, not the policy engine or CEL', () => {
    const r = loadedBy(['certs', 'init', '--dir', join(tmp, 'pki')]);
    assert.equal(r.code, 0, r.stderr);
    const heavy = heavyIn(r.loaded);
    assert.deepEqual(heavy['a verb implementation (src/cli/*-run.ts)']?.map((u) => u.replace(/.*\/dist\/src\//, '')), ['cli/certs-run.js']);
    assert.ok(heavy['the dev CA'], 'the dev CA was loaded');
    assert.ok(heavy['node-forge'], 'node-forge was loaded');
    assert.equal(heavy['the policy engine'], undefined);
    assert.equal(heavy['CEL (@marcbachmann/cel-js)'], undefined);
  });
});
