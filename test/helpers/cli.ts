/**
 * `waygate <args>` run in this test process: src/cli/main.ts with its output captured
 * (src/cli/output.ts captureOutput). Verbs report through process.exitCode, which main() reads
 * back: it is cleared before the run, so an earlier verb's code is not returned for this one, and
 * after, so none is left for the test runner to exit with. For the process boundary itself (bin/,
 * stdin pipes, signals) use test/helpers/cli-batch.ts or a child process.
 */
import assert from 'node:assert/strict';
import { main } from '../../src/cli/main.ts';
import { captureOutput } from '../../src/cli/output.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCli(args: string[]): Promise<CliRun> {
  process.exitCode = undefined;
  try {
    const r = await captureOutput(() => main(args));
    return { code: r.value, stdout: r.stdout, stderr: r.stderr };
  } finally {
    process.exitCode = undefined;
  }
}

/** `policy check`, `policy fmt --check` and `policy test` on a policy directory, as the CLI runs them: each exits 0. */
export async function assertPolicyVerbsPass(dir: string): Promise<void> {
  for (const args of [['policy', 'check', dir], ['policy', 'fmt', '--check', dir], ['policy', 'test', dir]]) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  }
}
