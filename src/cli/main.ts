/**
 * `waygate <verb>`: one file per verb group under src/cli/, which registers its commands; what a
 * verb does is its sibling `<verb>-run.ts`, imported by the action, so a process loads only the
 * verb it runs (docs/architecture.md, "Adding a CLI verb"). Exit codes are meaningful for CI:
 * 0 success, 1 the command ran and found a problem (failed test, lint error, flip), 2 usage or
 * input error (bad flag, unreadable file, invalid policy), 3 `policy eval` decided deny (so scripts
 * can branch on the verdict without parsing output).
 */
import { Command, CommanderError } from 'commander';
import { registerAudit } from './audit.ts';
import { registerCerts } from './certs.ts';
import { registerCompletion } from './completion.ts';
import { registerConnect } from './connect.ts';
import { registerDoctor } from './doctor.ts';
import { registerPolicy } from './policy.ts';
import { registerServe } from './serve.ts';
import { EXIT_OK, EXIT_USAGE } from './exit-codes.ts';
import { hintAfterErrors } from './output.ts';
import { packageVersion } from './version.ts';


/** Builds the command tree. Exported so tests can run verbs in-process. */
export function buildProgram(): Command {
  const program = new Command('waygate')
    .description('HBONE authorization gateway: terminate mTLS HTTP/2 CONNECT, decide with CEL policies, forward or refuse')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .version(packageVersion(), '-V, --version', 'print the version (package.json) and exit');
  program
    .command('version')
    .description('print the version (package.json)')
    .action(() => void process.stdout.write(`${packageVersion()}\n`));
  registerServe(program);
  registerPolicy(program);
  registerAudit(program);
  registerCerts(program);
  registerConnect(program);
  registerDoctor(program);
  registerCompletion(program); // last: its scripts describe every verb registered before it
  // One line of error and one of hint on a usage error, not the whole usage (issue 19 item 11).
  hintAfterErrors(program);
  return program;
}

/** Runs the CLI and resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit through here with exitCode 0; bad flags with 1 -> map to usage.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    throw err;
  }
}
