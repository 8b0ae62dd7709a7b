/**
 * `waygate policy check|test|eval|fmt` (and `import`, src/cli/policy-import.ts): the policy author's loop (docs/writing-policies.md).
 *
 * Exit codes (src/cli/main.ts): 0 success; 1 the command ran and found a problem (lint error,
 * failing case, coverage below threshold, file needing formatting); 2 usage or input error (bad
 * flag, unreadable file, policy that does not load). `policy eval` answers the question it is
 * asked with its exit code: 0 allow, 3 deny — so a CI script can branch on a verdict without
 * mistaking a deny for a broken invocation (2) or a check failure (1).
 *
 * This module builds the commands only; what they do is src/cli/policy-run.ts, loaded when one of
 * them runs (docs/architecture.md, "Adding a CLI verb").
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { DefaultAction } from '../policy/decision.ts';
import { registerImport } from './policy-import.ts';
import { addOutputOption, type OutputFormat } from './output.ts';

/** What `policy check` is given; `policy test`, `eval` and `fmt` likewise below (src/cli/policy-run.ts runs them). */
export interface CheckOptions {
  output: PolicyOutput;
  strict: boolean;
}
export interface TestOptions {
  coverage: boolean;
  threshold?: number;
  output: PolicyOutput;
}
export interface EvalOptions {
  input: string;
  explain: boolean;
  defaultAction: DefaultAction;
  output: PolicyOutput;
}
export interface FmtOptions {
  write: boolean;
  check: boolean;
  diff: boolean;
}

/** Registers `waygate policy <verb>`. */
export function registerPolicy(program: Command): void {
  const policy = program
    .command('policy')
    .description('check, test, evaluate and format policy files');

  const check = policy
    .command('check')
    .description('load, type-check and lint policy files (exit 0 ok, 1 lint errors, 2 load errors)')
    .argument('<paths...>', 'policy files or directories (walked for *.yaml / *.yml)')
    .option('--strict', 'treat warnings as errors (exit 1 when any warning is found)', false);
  addOutputOption(check, POLICY_OUTPUTS).action(async (paths: string[], opts: CheckOptions) => {
    const { runCheck } = await import('./policy-run.ts');
    process.exitCode = await runCheck(paths, opts);
  });

  const test = policy
    .command('test')
    .description('run every PolicyTest against all policies of the paths (exit 1 on a failing case or low coverage)')
    .argument('<paths...>', 'policy and PolicyTest files or directories')
    .option('--coverage', 'also print how many cases reached each rule', false)
    .option('--threshold <percent>', 'fail when rule coverage is below this percentage (0-100)', parsePercent);
  addOutputOption(test, POLICY_OUTPUTS).action(async (paths: string[], opts: TestOptions) => {
    const { runTest } = await import('./policy-run.ts');
    process.exitCode = await runTest(paths, opts);
  });

  const evaluate = policy
    .command('eval')
    .description('decide one input against the policies (exit 0 allow, 3 deny, 2 bad input)')
    .argument('<paths...>', 'policy files or directories')
    .requiredOption('-i, --input <file>', 'decision input in the PolicyTest input shape, YAML or JSON ("-" reads stdin)')
    .option('--explain', 'show every policy and rule considered and the value of each sub-expression', false)
    .addOption(
      new Option('--default-action <action>', 'the gateway defaultAction to decide with')
        .choices(['ALLOW', 'DENY'])
        .argParser(parseDefaultAction)
        .default('DENY' satisfies DefaultAction),
    );
  addOutputOption(evaluate, POLICY_OUTPUTS).action(async (paths: string[], opts: EvalOptions) => {
    const { runEval } = await import('./policy-run.ts');
    process.exitCode = await runEval(paths, opts);
  });

  policy
    .command('fmt')
    .description('format policy files canonically (prints the result unless -w or --check)')
    .argument('<paths...>', 'policy files or directories ("-" formats stdin to stdout)')
    .addOption(new Option('-w, --write', 'rewrite files in place').conflicts(['check', 'diff']))
    .addOption(new Option('--check', 'list files that are not formatted and exit 1 if any').conflicts('diff'))
    .option('--diff', 'print a unified diff of what formatting would change (patch -p0 applies it) and exit 1 if any')
    .action(async (paths: string[], opts: { write?: boolean; check?: boolean; diff?: boolean }) => {
      const { runFmt } = await import('./policy-run.ts');
      process.exitCode = await runFmt(paths, { write: opts.write === true, check: opts.check === true, diff: opts.diff === true });
    });

  registerImport(policy);
}

/** What the policy verbs print: text for people, the same report as one JSON or YAML document for scripts. */
const POLICY_OUTPUTS = ['text', 'json', 'yaml'] as const satisfies readonly OutputFormat[];
export type PolicyOutput = (typeof POLICY_OUTPUTS)[number];

function parsePercent(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 100) {
    throw new InvalidArgumentError(`expected a percentage between 0 and 100, got "${value}"`);
  }
  return n;
}

function parseDefaultAction(value: string): DefaultAction {
  const v = value.toUpperCase();
  if (v === 'ALLOW' || v === 'DENY') return v;
  throw new InvalidArgumentError(`expected ALLOW or DENY, got "${value}"`);
}
