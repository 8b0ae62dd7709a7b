/**
 * The container image without a Docker engine (issue 19, "a container image recipe"): assembles in
 * a temporary directory exactly the files the Dockerfile's last stage COPYs, derived from the
 * Dockerfile itself (test/ship/dockerfile.ts), and runs the product from there with no sources,
 * no TypeScript and no development dependency present: `waygate --version`, `serve` on the
 * embedded default (until ready, then SIGTERM and a clean exit), `policy check`, and `serve` with
 * examples/kubernetes/'s config against the fake Kubernetes API (the path that loads
 * @kubernetes/client-node, which the embedded default never does).
 *
 * How each stage is reproduced:
 * - context COPYs: from this repository, filtered by .dockerignore;
 * - the build stage's `npm ci && npm run build`: its COPYs plus this repository's node_modules
 *   (the same package-lock.json, development dependencies included), then `npm run build` for real,
 *   so dist/ is exactly what src/ compiles to, with nothing stale. Before it, the stage's dist/ is
 *   seeded with this repository's build (test/helpers/seed-build.ts) when that was compiled from
 *   exactly these sources (the working tree's, uncommitted changes included), so the incremental tsc finds nothing to do instead of compiling the tree
 *   a second time (asserted: it leaves the seeded build info as it was); otherwise it compiles from
 *   scratch (the test output says which). A last test changes a source in the stage and checks the
 *   build recompiles it, so a seed can never stand in for a source it was not made from;
 * - the production stage's `npm ci --omit=dev`: the production tree computed from
 *   package-lock.json (every `packages` entry not marked `dev`), copied from this repository's
 *   node_modules. Not `npm ci --omit=dev --offline`: this repository's lock entries carry no
 *   `resolved` URLs, so npm asks the registry for each package's metadata, which an offline npm
 *   cache does not necessarily hold (ENOTCACHED for `ws` here); the lockfile is what npm would
 *   install, without the network;
 * - the last stage's `COPY --from=prod-deps`: hard links to that stage's files (scratch copies
 *   made above, never this repository's), so the 85 MB production tree is written once, not twice.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { httpGet } from '../../examples/traffic/gateway-process.ts';
import { startServe } from '../helpers/serve.ts';
import { runExampleAgainstFakeApi } from '../k8s/example-cluster.ts';
import { buildWasUpToDate, seedBuild, type SeedResult } from '../helpers/seed-build.ts';
import { copyInto, dockerignore, parseDockerfile, type Stage } from './dockerfile.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string; devDependencies: Record<string, string> };
const lock = JSON.parse(readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; link?: boolean }> };

/** The production dependency tree `npm ci --omit=dev` installs: every lock entry not marked dev. */
function productionPackages(): string[] {
  return Object.entries(lock.packages)
    .filter(([key, entry]) => key !== '' && entry.dev !== true)
    .map(([key, entry]) => {
      if (entry.link) throw new Error(`package-lock.json: ${key} is a link; not reproduced here`);
      return key;
    });
}

/** Copies one installed package without its nested node_modules (those are lock entries of their own). */
function copyPackage(key: string, into: string): void {
  const from = path.join(REPO, key);
  if (!existsSync(from)) throw new Error(`${key} is in package-lock.json but not installed here: run npm ci`);
  cpSync(from, path.join(into, key), { recursive: true, filter: (src) => !path.relative(from, src).split(path.sep).includes('node_modules') });
}

/** The build stage's seeding of dist/ and its directory, for the tests below (set by run()). */
const seeded: { dir: string; seed: SeedResult }[] = [];

/** Runs one `RUN` line of a stage, for the commands this Dockerfile uses; anything else is an error. */
function run(stage: Stage, line: string, dir: string): void {
  for (const command of line.split('&&').map((c) => c.trim())) {
    const words = command.split(/\s+/);
    if (words[0] === 'npm' && words[1] === 'ci') {
      const flags = words.slice(2);
      for (const f of flags) assert.ok(['--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'].includes(f), `stage ${stage.name}: npm ci ${f} is not reproduced here`);
      if (flags.includes('--omit=dev')) {
        for (const key of productionPackages()) copyPackage(key, dir);
      } else {
        // The full install from the same lockfile: this repository's own.
        symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
      }
    } else if (words[0] === 'npm' && words[1] === 'run' && words.length === 3) {
      // After `npm ci` (the seed's file names follow where node_modules resolves).
      // The stage's sources are the working tree's (COPY src from the build context), committed or not.
      if (words[2] === 'build') seeded.push({ dir, seed: seedBuild(REPO, dir, 'working-tree') });
      const r = spawnSync('npm', ['run', '--silent', words[2]!], { cwd: dir, encoding: 'utf8' });
      assert.equal(r.status, 0, `stage ${stage.name}: npm run ${words[2]}: ${r.stdout}${r.stderr}`);
    } else {
      throw new Error(`stage ${stage.name}: RUN ${command} is not reproduced by test/ship/runtime-files.test.ts`);
    }
  }
}

/** Every file under `dir`, relative, `/`-separated (symlinks are not followed). */
function listFiles(dir: string, rel = ''): string[] {
  return readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const r = rel ? `${rel}/${e.name}` : e.name;
    return e.isDirectory() ? listFiles(dir, r) : [r];
  });
}

// The assembly compiles src/ and copies the production tree (about 90 MB): minutes on a loaded
// machine, so the suite's bound is its own, not the per-test default.
describe('the container image: the runtime stage\'s files alone run waygate', { timeout: 900_000 }, () => {
  const stages = parseDockerfile(readFileSync(path.join(REPO, 'Dockerfile'), 'utf8'));
  const admit = dockerignore(readFileSync(path.join(REPO, '.dockerignore'), 'utf8'));
  const runtime = stages.at(-1)!;
  let tmp: string;
  let app: string;
  let work: string;
  let entry: string;
  /** Every path under the image's files with its size and mtime, before anything ran. */
  let before0: Map<string, string>;
  const snapshot = (): Map<string, string> => new Map(listFiles(app).map((f) => {
    const st = statSync(path.join(app, f));
    return [f, `${st.size}:${st.mtimeMs}`];
  }));

  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'waygate-image-'));
    const built = new Map<string, string>();
    const build = (stage: Stage): string => {
      const done = built.get(stage.name);
      if (done) return done;
      const dir = path.join(tmp, `stage-${stage.name}`);
      mkdirSync(dir, { recursive: true });
      for (const c of stage.copies) {
        assert.equal(c.from, null, `stage ${stage.name}: only the last stage copies from other stages`);
        for (const s of c.sources) copyInto(REPO, s, dir, c.dest, c.sources.length > 1, admit);
      }
      for (const line of stage.runs) run(stage, line, dir);
      built.set(stage.name, dir);
      return dir;
    };
    app = path.join(tmp, 'image', ...runtime.workdir.split('/'));
    mkdirSync(app, { recursive: true });
    for (const c of runtime.copies) {
      for (const s of c.sources) {
        if (c.from === null) {
          copyInto(REPO, s, app, c.dest, c.sources.length > 1, admit);
          continue;
        }
        const from = stages.find((st) => st.name === c.from);
        assert.ok(from, `COPY --from=${c.from}: no such stage`);
        assert.ok(s.startsWith(from.workdir + '/'), `COPY --from=${c.from} ${s}: outside the stage's WORKDIR ${from.workdir}`);
        // A stage's files are this test's own scratch copies, written once (the production tree is
        // 85 MB): the image gets hard links to them, the same files at the same paths. Not the build
        // stage's: the last test rebuilds it in place (tsc rewrites its outputs), which a link would
        // carry into the image.
        const dir = build(from);
        const place = seeded.some((b) => b.dir === dir) ? cpSync : linkSync;
        copyInto(dir, path.posix.relative(from.workdir, s), app, c.dest, c.sources.length > 1, undefined, place);
      }
    }
    assert.ok(runtime.entrypoint, 'the image has an ENTRYPOINT');
    entry = path.join(app, runtime.entrypoint[1]!);
    // A working directory of its own, as a mounted volume would be: the embedded default reads
    // policies/ from it and mints its development PKI into it.
    work = path.join(tmp, 'work');
    cpSync(path.join(REPO, 'policies'), path.join(work, 'policies'), { recursive: true });
    before0 = snapshot();
  }, { timeout: 600_000 });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('the image: distroless Node 24 as uid 65532, running bin/waygate.js with node', () => {
    assert.match(runtime.base, /^gcr\.io\/distroless\/nodejs24-debian\d+(:nonroot)?$|^node:24-slim$/);
    assert.equal(runtime.user, '65532:65532');
    assert.deepEqual(runtime.entrypoint, ['/nodejs/bin/node', 'bin/waygate.js']);
  });

  test('holds package.json, bin/, dist/ and the production dependencies, and no source or development tool', () => {
    assert.deepEqual(readdirSync(app).sort(), ['bin', 'dist', 'node_modules', 'package.json']);
    assert.deepEqual(readdirSync(path.join(app, 'bin')), ['waygate.js']);
    const files = listFiles(app);
    const own = files.filter((f) => !f.startsWith('node_modules/'));
    assert.deepEqual(own.filter((f) => !/^dist\/src\/.+\.js(\.map)?$/.test(f)).sort(), ['bin/waygate.js', 'package.json']);
    assert.ok(own.includes('dist/src/cli/main.js'));
    // Every compiled module comes from a source module (nothing stale) and no TypeScript is left.
    for (const f of own.filter((x) => x.endsWith('.js') && x.startsWith('dist/'))) {
      assert.ok(existsSync(path.join(REPO, f.replace(/^dist\//, '').replace(/\.js$/, '.ts'))), `${f} has a source`);
    }
    const installed = new Set(productionPackages());
    for (const key of installed) assert.ok(statSync(path.join(app, key)).isDirectory(), key);
    // A development dependency nothing in production needs (@types/node is also a dependency of
    // @kubernetes/client-node, so it stays) is absent; the compiler and the loader among them.
    const devOnly = Object.keys(pkg.devDependencies).filter((d) => lock.packages[`node_modules/${d}`]?.dev === true);
    assert.ok(devOnly.includes('typescript') && devOnly.includes('tsx'));
    for (const dev of [...devOnly, 'esbuild']) assert.ok(!existsSync(path.join(app, 'node_modules', dev)), `development dependency ${dev} is absent`);
  });

  test('waygate --version', () => {
    // From the image's WORKDIR, as the container runs it.
    const r = spawnSync(process.execPath, [entry, '--version'], { cwd: app, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${pkg.version}\n`);
  });

  test('waygate policy check', () => {
    const r = spawnSync(process.execPath, [entry, 'policy', 'check', path.join(work, 'policies')], { cwd: app, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  test('waygate serve on the embedded default: ready, then SIGTERM drains and exits 0', async () => {
    const gateway = await startServe([
      '--listen', '127.0.0.1:0',
      '--ready-address', '127.0.0.1:0',
      '--metrics-address', '127.0.0.1:0',
      '--admin-address', '127.0.0.1:0',
      '--drain-timeout-ms', '2000',
    ], { bin: entry, cwd: work });
    try {
      const listening = await gateway.waitForLine((l) => l['msg'] === 'listening');
      assert.equal(listening['profile'], 'embedded');
      const ready = await httpGet(gateway.addresses.ready, '/healthz/ready');
      assert.equal(ready.status, 200, ready.body);
      assert.equal(await gateway.stop('SIGTERM'), 0, gateway.stderr());
    } finally {
      await gateway.stop('SIGKILL');
    }
  });

  test('waygate serve with the Kubernetes example\'s config: discovery syncs and the Gateway is registered', async () => {
    const run = await runExampleAgainstFakeApi({ bin: entry, cwd: app });
    assert.equal(run.readyStatus, 200, run.stderr);
    assert.equal(run.exitCode, 0, run.stderr);
    const conditions = (run.gateway['status'] as { conditions: { type: string; status: string }[] }).conditions;
    assert.ok(conditions.some((c) => c.type === 'Programmed' && c.status === 'True'), JSON.stringify(conditions));
  });

  test('the build stage\'s npm run build: seeded, it had nothing to recompile; a source changed after seeding is recompiled', (t) => {
    assert.equal(seeded.length, 1, 'one stage runs npm run build');
    const { dir, seed } = seeded[0]!;
    t.diagnostic(`build stage's dist/: ${seed.reason}`);
    if (seed.seeded) assert.ok(buildWasUpToDate(dir, seed), 'npm run build recompiled the seeded stage: this checkout\'s node_modules changed since its last npm run build, or the seed missed (test/helpers/seed-build.ts)');
    // A change nothing imports (the CLI's entry module), so only that module is rechecked; its
    // output must carry the change, seeded or not.
    const probe = `// seed probe ${process.pid}`;
    const main = path.join(dir, 'src/cli/main.ts');
    writeFileSync(main, `${readFileSync(main, 'utf8')}\n${probe}\n`);
    const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, `npm run build after the change: ${r.stdout}${r.stderr}`);
    assert.ok(readFileSync(path.join(dir, 'dist/src/cli/main.js'), 'utf8').includes(probe), 'dist/src/cli/main.js holds the change');
  });

  test('nothing above wrote under the image\'s files (the Deployment mounts the root filesystem read-only)', () => {
    // --version, policy check and serve with the Kubernetes config ran with the image's WORKDIR as
    // their working directory (the embedded default mints its PKI into its own, elsewhere). The
    // tests run as root here, so file modes cannot show a write; what is there afterwards can.
    const after = snapshot();
    const changed = [...new Set([...before0.keys(), ...after.keys()])].filter((f) => before0.get(f) !== after.get(f)).sort();
    assert.deepEqual(changed, [], 'files created, changed or removed under the image\'s files');
  });
});
