/**
 * What the config tests share: a GatewayConfig document's header, the ConfigError a text must
 * raise (parsed as `/etc/waygate/gw.yaml`), and `waygate serve`'s flags parsed as the CLI does.
 */
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { addServeFlags, type ServeFlagValues } from '../../src/config/flags.ts';
import { ConfigError, parseConfigText } from '../../src/config/load.ts';

/** `apiVersion`, `kind` and `spec:`: append the spec's lines, indented by two. */
export const HEADER = 'apiVersion: waygate.dev/v1alpha1\nkind: GatewayConfig\nspec:\n';

/** The ConfigError `text` raises, read as gw.yaml in /etc/waygate; fails the test if it loads. */
export function errorsOf(text: string): ConfigError {
  try {
    parseConfigText(text, 'gw.yaml', '/etc/waygate');
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err;
  }
  assert.fail('expected a ConfigError');
}

/** `waygate serve ARGV...` parsed into flag values (throws on a bad flag instead of exiting). */
export function serveFlags(...argv: string[]): ServeFlagValues {
  const cmd = addServeFlags(new Command('serve').exitOverride());
  cmd.parse(argv, { from: 'user' });
  return cmd.opts<ServeFlagValues>();
}

/** `text` fails to load with exactly one WG_CONFIG diagnostic, at line:col on `path`, whose message matches. */
export function assertOneConfigError(text: string, line: number, col: number, path: string, message: RegExp): void {
  const err = errorsOf(text);
  assert.equal(err.diagnostics.length, 1, err.message);
  const d = err.diagnostics[0]!;
  assert.deepEqual([d.code, d.line, d.col, d.path], ['WG_CONFIG', line, col, path], err.message);
  assert.match(d.message, message);
}
