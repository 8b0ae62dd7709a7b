/**
 * `waygate --version` and `waygate version` print package.json's version and exit 0 (issue 19
 * "the first hour": both used to be usage errors).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { packageVersion } from '../../src/cli/version.ts';

const bin = new URL('../../bin/waygate.js', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

describe('waygate --version', () => {
  for (const args of [['--version'], ['-V'], ['version']]) {
    it(`waygate ${args.join(' ')} prints ${pkg.version} and exits 0`, () => {
      const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${pkg.version}\n`);
    });
  }

  it('finds the package from any file inside it, and says "unknown" outside one', () => {
    assert.equal(packageVersion(new URL('../../src/policy/', import.meta.url).pathname), pkg.version);
    assert.equal(packageVersion('/'), 'unknown');
  });
});

describe('the product runs its compiled JavaScript', () => {
  it('bin/waygate.js loads dist/ (no TypeScript loader at run time) and tsx is a development dependency only', () => {
    const pkgJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    assert.equal(pkgJson.dependencies['tsx'], undefined);
    assert.ok(pkgJson.devDependencies['tsx']);
    const binText = readFileSync(bin, 'utf8');
    assert.match(binText, /dist\/src\/cli\/main\.js/);
    assert.doesNotMatch(binText, /tsx/);
    // The child runs without any --import: only the compiled output can answer.
    const r = spawnSync(process.execPath, [bin, 'policy', 'check', new URL('../../policies', import.meta.url).pathname], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });
});
