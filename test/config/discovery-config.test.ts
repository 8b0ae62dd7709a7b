/**
 * The discovery and upstream config fields (src/config/schema.ts): defaults in both profiles, the
 * file syntax, the rule that direct dials need plaintext upstreams, and `--mesh FILE`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Command } from 'commander';
import { addServeFlags, flagsToLayer, type ServeFlagValues } from '../../src/config/flags.ts';
import { parseConfigText } from '../../src/config/load.ts';
import { configToYaml, resolveConfig } from '../../src/config/resolve.ts';
import { embeddedDefaults, productionDefaults } from '../../src/config/schema.ts';
import { HEADER, assertOneConfigError, errorsOf } from './fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'waygate-discovery-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('discovery and upstream config', () => {
  test('defaults, the same in both profiles: no mesh file, no direct dials, no plaintext, ztunnel\'s pool', () => {
    for (const config of [productionDefaults({}), embeddedDefaults('/repo', {})]) {
      assert.deepEqual(config.discovery, { meshFile: null, kubernetes: null, allowDirect: false });
      assert.deepEqual(config.upstream, { allowPlaintext: false, maxStreamsPerConnection: 100, poolIdleTimeoutMs: 300_000 });
    }
  });

  test('from the file: the mesh file resolves against the file\'s directory; null is no mesh file', () => {
    const layer = parseConfigText(
      `${HEADER}  discovery:\n    meshFile: mesh/mesh.yaml\n    allowDirect: true\n  upstream:\n    allowPlaintext: true\n    maxStreamsPerConnection: 50\n    poolIdleTimeoutMs: 1000\n`,
      'gw.yaml', '/etc/waygate',
    );
    assert.deepEqual(layer.discovery, { meshFile: '/etc/waygate/mesh/mesh.yaml', allowDirect: true });
    assert.deepEqual(layer.upstream, { allowPlaintext: true, maxStreamsPerConnection: 50, poolIdleTimeoutMs: 1000 });
    assert.deepEqual(parseConfigText(`${HEADER}  discovery:\n    meshFile: null\n`, 'gw.yaml', '/etc').discovery, { meshFile: null });
    assert.deepEqual(parseConfigText(`${HEADER}  discovery:\n    meshFile: /abs/mesh.yaml\n`, 'gw.yaml', '/etc').discovery, { meshFile: '/abs/mesh.yaml' });
  });

  const table: [string, string, [number, number, string, RegExp]][] = [
    ['allowDirect without allowPlaintext', `${HEADER}  discovery:\n    allowDirect: true\n`,
      [5, 18, 'spec.discovery.allowDirect', /^direct dials are plain TCP: set upstream\.allowPlaintext too$/]],
    ['allowDirect with allowPlaintext: false', `${HEADER}  upstream:\n    allowPlaintext: false\n  discovery:\n    allowDirect: true\n`,
      [7, 18, 'spec.discovery.allowDirect', /set upstream\.allowPlaintext too/]],
    ['empty mesh file path', `${HEADER}  discovery:\n    meshFile: ""\n`, [5, 15, 'spec.discovery.meshFile', /must not be empty/]],
    ['mesh file path a number', `${HEADER}  discovery:\n    meshFile: 7\n`, [5, 15, 'spec.discovery.meshFile', /expected a string, got number 7/]],
    ['unknown discovery field', `${HEADER}  discovery:\n    meshfile: x\n`, [5, 5, 'spec.discovery.meshfile', /unknown field "meshfile" \(known: meshFile, kubernetes, allowDirect\)/]],
    ['allowPlaintext not a boolean', `${HEADER}  upstream:\n    allowPlaintext: yes\n`, [5, 21, 'spec.upstream.allowPlaintext', /expected true or false, got string "yes"/]],
    ['zero streams per connection', `${HEADER}  upstream:\n    maxStreamsPerConnection: 0\n`, [5, 30, 'spec.upstream.maxStreamsPerConnection', /0 is out of range/]],
    ['zero pool idle timeout', `${HEADER}  upstream:\n    poolIdleTimeoutMs: 0\n`, [5, 24, 'spec.upstream.poolIdleTimeoutMs', /0 is out of range/]],
  ];
  for (const [name, text, [line, col, path, message]] of table) {
    test(`rejects: ${name}`, () => assertOneConfigError(text, line, col, path, message));
  }

  test('the across-fields rule waits for the fields themselves to be valid (one error, not two)', () => {
    const err = errorsOf(`${HEADER}  discovery:\n    allowDirect: true\n  upstream:\n    allowPlaintext: maybe\n`);
    assert.deepEqual(err.diagnostics.map((d) => d.path), ['spec.upstream.allowPlaintext']);
  });

  test('--mesh FILE: resolved against the working directory, merged with the file\'s discovery fields, in the usage', () => {
    const file = join(dir, 'gw.yaml');
    writeFileSync(file, `${HEADER}  discovery:\n    meshFile: from-file.yaml\n    allowDirect: true\n  upstream:\n    allowPlaintext: true\n`);
    const cmd = addServeFlags(new Command('serve').exitOverride());
    cmd.parse(['--mesh', 'mesh.yaml'], { from: 'user' });
    const { config } = resolveConfig({ configFile: file, flags: flagsToLayer(cmd.opts<ServeFlagValues>(), '/work'), env: {} });
    assert.deepEqual(config.discovery, { meshFile: '/work/mesh.yaml', kubernetes: null, allowDirect: true });
    assert.equal(config.upstream.allowPlaintext, true);
    assert.match(addServeFlags(new Command('serve')).helpInformation(), /--mesh <file> +discovery: a kind: Mesh file/);
    const empty = addServeFlags(new Command('serve').exitOverride().configureOutput({ writeErr: () => {} }));
    assert.throws(() => empty.parse(['--mesh', ''], { from: 'user' }), /must not be empty/);
  });

  test('--print-config shows the new fields and loads back to the same values', () => {
    const file = join(dir, 'with-mesh.yaml');
    writeFileSync(file, `${HEADER}  discovery:\n    meshFile: /etc/waygate/mesh.yaml\n  upstream:\n    poolIdleTimeoutMs: 60000\n`);
    const effective = resolveConfig({ configFile: file, env: {} });
    const printed = configToYaml(effective);
    assert.match(printed, /\n {2}discovery:\n {4}meshFile: \/etc\/waygate\/mesh\.yaml\n {4}kubernetes: null\n {4}allowDirect: false\n {2}upstream:\n {4}allowPlaintext: false\n {4}maxStreamsPerConnection: 100\n {4}poolIdleTimeoutMs: 60000\n/);
    const again = join(dir, 'printed.yaml');
    writeFileSync(again, printed);
    assert.deepEqual(resolveConfig({ configFile: again, env: {} }).config, effective.config);
  });
});
