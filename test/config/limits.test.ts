import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Command, CommanderError } from 'commander';
import { addServeFlags, flagsToLayer, type ServeFlagValues } from '../../src/config/flags.ts';
import { ConfigError, loadConfigFile, parseConfigText } from '../../src/config/load.ts';
import { resolveConfig } from '../../src/config/resolve.ts';
import { embeddedDefaults, productionDefaults } from '../../src/config/schema.ts';

const dir = mkdtempSync(join(tmpdir(), 'waygate-limits-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const HEADER = 'apiVersion: waygate.dev/v1alpha1\nkind: GatewayConfig\nspec:\n';

function pendingDials(value: string): number | undefined {
  return parseConfigText(`${HEADER}  limits:\n    maxPendingDialsPerConnection: ${value}\n`, 'gw.yaml', '/etc/waygate').limits?.maxPendingDialsPerConnection;
}

function parseFlags(args: string[]): ServeFlagValues {
  const cmd = addServeFlags(new Command('serve').exitOverride().configureOutput({ writeErr: () => {} }));
  cmd.parse(args, { from: 'user' });
  return cmd.opts<ServeFlagValues>();
}

describe('limits.maxPendingDialsPerConnection', () => {
  test('defaults to 100 in both profiles (ztunnel opens at most 100 streams per connection)', () => {
    assert.equal(productionDefaults({}).limits.maxPendingDialsPerConnection, 100);
    assert.equal(embeddedDefaults('/repo', {}).limits.maxPendingDialsPerConnection, 100);
  });

  test('parsed from the file', () => {
    assert.equal(pendingDials('1'), 1);
    assert.equal(pendingDials('250'), 250);
    assert.equal(pendingDials(String(2 ** 31 - 1)), 2 ** 31 - 1);
  });

  const rejected: [string, RegExp][] = [
    ['0', /0 is out of range 1-2147483647/],
    ['-5', /-5 is out of range 1-/],
    [String(2 ** 31), /out of range 1-2147483647/],
    ['2.5', /expected an integer/],
    ['"100"', /expected an integer/],
  ];
  for (const [value, message] of rejected) {
    test(`rejects ${value} at its position`, () => {
      assert.throws(() => pendingDials(value), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        const d = err.diagnostics.find((x) => message.test(x.message));
        assert.ok(d, err.message);
        assert.equal(d.line, 5);
        assert.match(d.path, /limits\.maxPendingDialsPerConnection/);
        return true;
      });
    });
  }

  test('--max-pending-dials-per-connection overrides the file; other limits keep the file values', () => {
    const file = join(dir, 'gw.yaml');
    writeFileSync(file, `${HEADER}  limits:\n    maxPendingDialsPerConnection: 8\n    maxStreamsPerConnection: 50\n`);
    const fromFile = resolveConfig({ configFile: file, env: {} }).config;
    assert.equal(fromFile.limits.maxPendingDialsPerConnection, 8);
    const layer = flagsToLayer(parseFlags(['--max-pending-dials-per-connection', '16']), '/work');
    assert.deepEqual(layer.limits, { maxPendingDialsPerConnection: 16 });
    const { config } = resolveConfig({ configFile: file, flags: layer, env: {} });
    assert.deepEqual(config.limits, { maxConnections: 10_000, maxStreamsPerConnection: 50, maxHeaderListBytes: 65_536, maxPendingDialsPerConnection: 16 });
    // Without the flag the layer leaves the field alone.
    assert.equal(flagsToLayer(parseFlags([]), '/work').limits, undefined);
  });

  test('the flag rejects 0 and non-integers before anything starts', () => {
    for (const bad of ['0', 'abc', '-1', '1.5']) {
      assert.throws(() => parseFlags(['--max-pending-dials-per-connection', bad]), (err: unknown) => {
        assert.ok(err instanceof CommanderError, String(err));
        assert.equal(err.code, 'commander.invalidArgument', err.message);
        return true;
      }, bad);
    }
  });

  test('examples/gateway.yaml sets it to the default and loads', () => {
    const example = new URL('../../examples/gateway.yaml', import.meta.url).pathname;
    assert.match(readFileSync(example, 'utf8'), /maxPendingDialsPerConnection: 100/);
    assert.equal(loadConfigFile(example).limits?.maxPendingDialsPerConnection, 100);
  });
});
