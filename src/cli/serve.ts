/**
 * `waygate serve`: run the gateway. Without `--config` it starts from the embedded, loopback-only
 * development profile (what `npm start` runs on a fresh clone); with it, from the production
 * defaults. Flags override either. `--print-config` prints the effective config and exits 0.
 *
 * Exit codes: 0 after a graceful drain, 1 when the gateway cannot start (unreadable certificate,
 * port in use) or was stopped by a second signal, 2 for a bad flag or an invalid config file.
 */
import type { Command } from 'commander';
import { addServeFlags, flagsToLayer, type ServeFlagValues } from '../config/flags.ts';
import { ConfigError } from '../config/load.ts';
import { configToYaml, resolveConfig, type EffectiveConfig } from '../config/resolve.ts';
import { WaygateError } from '../errors.ts';

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description('run the HBONE gateway (no flags: embedded dev profile on 127.0.0.1:15008)');
  addServeFlags(cmd).action(async (flags: ServeFlagValues) => {
    process.exitCode = await serve(flags);
  });
}

async function serve(flags: ServeFlagValues): Promise<number> {
  // A worker started by the primary takes its config from the primary, not from its own argv.
  const { isGatewayWorker, runWorker } = await import('../gateway/cluster.ts');
  if (isGatewayWorker()) {
    const code = await runWorker();
    process.exit(code);
  }

  let effective: EffectiveConfig;
  try {
    effective = resolveConfig({ configFile: flags.config, flags: flagsToLayer(flags) });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\n');
      return 2;
    }
    throw err;
  }
  if (flags.printConfig) {
    process.stdout.write(configToYaml(effective));
    return 0;
  }

  const { startGateway } = await import('../gateway/gateway.ts');
  let gateway;
  try {
    gateway = await startGateway({ effective, handleSignals: true });
  } catch (err) {
    const message = err instanceof WaygateError ? `${err.code}: ${err.message}` : (err as Error)?.stack ?? String(err);
    process.stderr.write(`waygate serve: cannot start: ${message}\n`);
    return err instanceof WaygateError && err.code === 'WG_CONFIG' ? 2 : 1;
  }
  const code = await gateway.done;
  // Everything is closed and flushed; leave now rather than wait on a stray handle (the kubelet
  // counts the grace period down while we linger).
  process.exit(code);
}
