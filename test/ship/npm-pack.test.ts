/**
 * `npm pack` produces a package that `npm install -g` installs and whose `waygate` runs (issue 19
 * item 4). The tarball holds package.json's `files` (the compiled output, the entry point, the JSON
 * Schemas) and nothing else of the repository; installing it fetches the production dependencies
 * from the registry (a package carries no lockfile), so the install is skipped, saying why, only
 * when the registry cannot be reached. Packs the compiled output as it is: `npm test` builds it
 * first; run `npm run build` before running this file alone.
 */
// own-process: it mostly waits on npm pack and npm install -g (~18 s of wall time against <1 s of its own CPU).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { name: string; version: string; files: string[] };

const npm = (args: string[], cwd: string, timeoutMs = 300_000) => spawnSync('npm', args, { cwd, encoding: 'utf8', timeout: timeoutMs });

// npm install -g fetches the production dependencies: its bound is its own, not the per-test default.
describe('npm pack -> npm install -g -> waygate', { timeout: 900_000 }, () => {
  let tmp: string;
  let tarball: string;
  let files: string[];

  before(() => {
    assert.ok(existsSync(path.join(REPO, 'dist/src/cli/main.js')), 'dist/ is missing: run `npm run build` (npm test does)');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'waygate-pack-'));
    const r = npm(['pack', '--json', '--pack-destination', tmp], REPO);
    assert.equal(r.status, 0, r.stderr);
    const [packed] = JSON.parse(r.stdout) as { filename: string; files: { path: string }[] }[];
    tarball = path.join(tmp, packed!.filename);
    files = packed!.files.map((f) => f.path);
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('the tarball holds the compiled output, the entry point and the schemas: no sources, tests or keys', () => {
    assert.equal(path.basename(tarball), `${pkg.name}-${pkg.version}.tgz`);
    assert.deepEqual(pkg.files, ['bin/', 'dist/src/', 'schema/']);
    const outside = files.filter((f) => !/^(bin|dist\/src|schema)\//.test(f));
    assert.deepEqual(outside.sort(), ['README.md', 'package.json']);
    assert.ok(files.includes('bin/waygate.js'));
    assert.ok(files.includes('dist/src/cli/main.js'));
    assert.deepEqual(files.filter((f) => /\.ts$/.test(f)), []);
  });

  test('npm install -g --prefix installs it, and waygate --version and policy check run', (t) => {
    const ping = npm(['ping'], tmp, 30_000);
    if (ping.status !== 0) {
      t.skip(`the npm registry is unreachable (npm ping: ${(ping.stderr || String(ping.error)).trim().split('\n').at(-1)}); the install needs it for the dependencies`);
      return;
    }
    const prefix = path.join(tmp, 'prefix');
    const install = npm(['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], tmp);
    assert.equal(install.status, 0, install.stdout + install.stderr);
    const bin = path.join(prefix, 'bin', 'waygate');
    assert.ok(existsSync(bin), 'npm linked the waygate command');
    const version = spawnSync(bin, ['--version'], { cwd: tmp, encoding: 'utf8' });
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout, `${pkg.version}\n`);
    const check = spawnSync(bin, ['policy', 'check', path.join(REPO, 'policies')], { cwd: tmp, encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    // The installed copy runs its own files, not this repository's.
    assert.ok(!existsSync(path.join(prefix, 'lib', 'node_modules', 'waygate', 'src')));
    assert.ok(!existsSync(path.join(prefix, 'lib', 'node_modules', 'waygate', 'node_modules', 'typescript')));
  });
});
