/**
 * `limits.maxPendingDialsPerConnection` above `limits.maxStreamsPerConnection`
 * is clamped to it in the effective config (src/config/schema.ts withEffectiveLimits): a
 * connection never holds more CONNECTs than streams, and lowering only the stream limit must not
 * stop the gateway over the dial cap's default.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Command } from 'commander';
import { addServeFlags, flagsToLayer, type ServeFlagValues } from '../../src/config/flags.ts';
import { configToYaml, resolveConfig } from '../../src/config/resolve.ts';

const dir = mkdtempSync(join(tmpdir(), 'waygate-dial-clamp-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const HEADER = 'apiVersion: waygate.dev/v1alpha1\nkind: GatewayConfig\nspec:\n';

function configFile(name: string, limits: string): string {
  const file = join(dir, name);
  writeFileSync(file, `${HEADER}  limits:\n${limits}`);
  return file;
}

function flags(args: string[]): ServeFlagValues {
  const cmd = addServeFlags(new Command('serve').exitOverride().configureOutput({ writeErr: () => {} }));
  cmd.parse(args, { from: 'user' });
  return cmd.opts<ServeFlagValues>();
}

describe('limits.maxPendingDialsPerConnection is clamped to limits.maxStreamsPerConnection', () => {
  test('a lower stream limit alone lowers the default dial cap with it', () => {
    const { config } = resolveConfig({ configFile: configFile('streams-only.yaml', '    maxStreamsPerConnection: 50\n'), env: {} });
    assert.equal(config.limits.maxStreamsPerConnection, 50);
    assert.equal(config.limits.maxPendingDialsPerConnection, 50);
  });

  test('an explicit cap above the stream limit is clamped, and --print-config shows the value in force', () => {
    const effective = resolveConfig({ configFile: configFile('above.yaml', '    maxStreamsPerConnection: 200\n    maxPendingDialsPerConnection: 300\n'), env: {} });
    assert.equal(effective.config.limits.maxPendingDialsPerConnection, 200);
    assert.match(configToYaml(effective), /maxPendingDialsPerConnection: 200\n/);
  });

  test('across layers: the file sets the cap, a flag lowers the stream limit (and the other way round)', () => {
    const file = configFile('cap-100.yaml', '    maxPendingDialsPerConnection: 100\n');
    const lowered = resolveConfig({ configFile: file, flags: flagsToLayer(flags(['--max-streams-per-connection', '64']), dir), env: {} });
    assert.deepEqual([lowered.config.limits.maxStreamsPerConnection, lowered.config.limits.maxPendingDialsPerConnection], [64, 64]);
    const raised = resolveConfig({ configFile: file, flags: flagsToLayer(flags(['--max-pending-dials-per-connection', '500']), dir), env: {} });
    assert.deepEqual([raised.config.limits.maxStreamsPerConnection, raised.config.limits.maxPendingDialsPerConnection], [200, 200]);
  });

  test('a cap at or below the stream limit is kept as written', () => {
    const { config } = resolveConfig({ configFile: configFile('below.yaml', '    maxStreamsPerConnection: 50\n    maxPendingDialsPerConnection: 8\n'), env: {} });
    assert.equal(config.limits.maxPendingDialsPerConnection, 8);
    const equal = resolveConfig({ configFile: configFile('equal.yaml', '    maxStreamsPerConnection: 50\n    maxPendingDialsPerConnection: 50\n'), env: {} });
    assert.equal(equal.config.limits.maxPendingDialsPerConnection, 50);
    // The embedded profile's defaults (200 streams, 100 dials) are untouched.
    assert.equal(resolveConfig({ cwd: dir, env: {} }).config.limits.maxPendingDialsPerConnection, 100);
  });
});
