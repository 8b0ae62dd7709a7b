/**
 * A `waygate` entry point with only the `audit` verbs, for child-process tests (stdin piping, exit
 * codes) that must not depend on the other verb groups loading. Same registerAudit as the real CLI.
 * Usage: node --import tsx test/helpers/audit-cli.ts audit summary ...
 */
import { Command, CommanderError } from 'commander';
import { registerAudit } from '../../src/cli/audit.ts';

const program = new Command('waygate').exitOverride();
registerAudit(program);
try {
  await program.parseAsync(process.argv.slice(2), { from: 'user' });
} catch (err) {
  if (!(err instanceof CommanderError)) throw err;
  process.exitCode = err.exitCode === 0 ? 0 : 2;
}
