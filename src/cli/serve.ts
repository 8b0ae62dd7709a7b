/**
 * `waygate serve`: run the gateway. Without `--config` it starts from the embedded, loopback-only
 * development profile (what `npm start` runs on a fresh clone); with it, from the production
 * defaults. Flags override either. `--print-config` prints the effective config and exits 0.
 *
 * Exit codes (docs/operating.md, "Exit codes"): 0 after a graceful drain; 1 when the gateway
 * cannot start (a port in use, an unreadable certificate or audit log) or a second signal cut the
 * drain short; 2 for a bad flag or an invalid config file. Code 2 is decided before anything is
 * opened: the config is validated whole first, so whatever fails after that is the environment
 * refusing it (1), and the reason is printed as one line on stderr.
 *
 * This module builds the command (its flags are src/config/flags.ts's); what it does is
 * src/cli/serve-run.ts, loaded when it runs (docs/architecture.md, "Adding a CLI verb").
 */
import type { Command } from 'commander';
import { addServeFlags, type ServeFlagValues } from '../config/flags.ts';

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description('run the HBONE gateway (no flags: embedded dev profile on 127.0.0.1:15008)');
  addServeFlags(cmd).action(async (flags: ServeFlagValues) => {
    const { serve } = await import('./serve-run.ts');
    process.exitCode = await serve(flags);
  });
}
