/**
 * `waygate policy import istio|networkpolicy FILE|DIR... --out DIR [--partial]`: reads Istio
 * AuthorizationPolicies (src/policy/import/istio.ts) or Kubernetes NetworkPolicies
 * (src/policy/import/networkpolicy.ts), translates
 * them and writes one waygate policy and one PolicyTest per source policy
 * (docs/writing-policies.md, "Migrating from Istio").
 *
 * Exit codes: 0 everything translated and written; 1 something was refused (nothing is written
 * unless --partial, which writes what did translate); 2 the input cannot be read (a missing path,
 * a YAML syntax error) or the output cannot be written. `-o json` prints the same outcome as one
 * document (ImportReport) instead of the text, with the same exit code.
 *
 * This module builds the commands and declares what they report; the import itself is
 * src/cli/policy-import-run.ts, loaded when one runs (docs/architecture.md, "Adding a CLI verb").
 */
import type { Command } from 'commander';
import type { ErrorCode } from '../errors.ts';
import type { ImportPosition, IstioPolicy, NoteKind, RefusalReason } from '../policy/import/istio.ts';
import { addOutputOption, type OutputFormat } from './output.ts';

export interface ImportIstioOptions {
  out: string;
  partial: boolean;
  rootNamespace: string;
  clusterDomain: string;
  /** `text` (default) or `json`: one report document on stdout (ImportReport). */
  output?: ImportOutput;
}

export interface ImportOptions {
  out: string;
  partial: boolean;
  output?: ImportOutput;
}

const IMPORT_OUTPUTS = ['text', 'json'] as const satisfies readonly OutputFormat[];
type ImportOutput = (typeof IMPORT_OUTPUTS)[number];

/** A finding with its position, as `-o json` reports it. */
export interface ImportFinding extends ImportPosition {
  policy: string | null;
  message: string;
}

/**
 * `policy import ... -o json`: the whole outcome as one document, for scripts and CI. `exitCode` is
 * the process's (0 all translated, 1 something refused, 2 unreadable input or unwritable output).
 */
export interface ImportReport {
  source: 'istio' | 'networkpolicy';
  out: string;
  exitCode: number;
  /** `ok`, `partial` (--partial wrote what translated), `refused` (nothing written), `failed` (exit 2). */
  status: 'ok' | 'partial' | 'refused' | 'failed';
  /** Whether files were written to `out`. */
  written: boolean;
  /** Every policy read, translated or not; `files` are the paths written (empty when not written). */
  policies: {
    source: string;
    origin: ImportPosition;
    policy: string;
    action: string;
    mode: 'Enforce' | 'DryRun';
    scope: IstioPolicy['scope'];
    rules: number;
    refused: boolean;
    files: string[];
  }[];
  /** `code` WG_IMPORT_REFUSED; `reason` says which kind of untranslatable input (RefusalReason). */
  refusals: (ImportFinding & { code: ErrorCode; reason: RefusalReason })[];
  /** Input that cannot be read (code WG_IMPORT_INPUT): the exit-2 cases. */
  unreadable: (ImportFinding & { code: ErrorCode })[];
  notes: (ImportFinding & { kind: NoteKind })[];
  /** What to configure so the imported set keeps the source's verdicts. */
  advice: { kind: 'default-action' | 'discovery'; message: string; defaultAction?: 'ALLOW'; policies?: string[] }[];
  /** Policies the destination's ztunnel enforces by identity: remove them from the mesh once waygate enforces the copy. */
  destinationSide: string[];
  /** Why the output could not be written (exit 2), else null. */
  error: string | null;
}

/** Registers `waygate policy import istio` under the `policy` command. */
export function registerImport(policy: Command): void {
  const imp = policy
    .command('import')
    .description('translate another system\'s policies into waygate policies and PolicyTests');
  const istio = imp
    .command('istio')
    .description('translate Istio AuthorizationPolicies (L4 subset) (exit 0 all translated, 1 something refused, 2 unreadable input)')
    .argument('<paths...>', 'Istio AuthorizationPolicy files or directories (walked for *.yaml / *.yml)')
    .requiredOption('--out <dir>', 'directory to write the waygate policies and PolicyTests to')
    .option('--partial', 'write what translates even when something was refused (still exit 1)', false)
    .option('--root-namespace <ns>', 'Istio\'s root namespace: its policies without selector/targetRefs govern the whole mesh', 'istio-system')
    .option('--cluster-domain <domain>', 'cluster domain of service hostnames (destination.service)', 'cluster.local');
  addOutputOption(istio, IMPORT_OUTPUTS).action(async (paths: string[], opts: ImportIstioOptions) => {
    const { runImportIstio } = await import('./policy-import-run.ts');
    process.exitCode = await runImportIstio(paths, opts);
  });
  const np = imp
    .command('networkpolicy')
    .description('translate Kubernetes NetworkPolicy ingress rules into ALLOW policies (exit 0 all translated, 1 something refused, 2 unreadable input)')
    .argument('<paths...>', 'NetworkPolicy files or directories (walked for *.yaml / *.yml)')
    .requiredOption('--out <dir>', 'directory to write the waygate policies and PolicyTests to')
    .option('--partial', 'write what translates even when something was refused (still exit 1)', false);
  addOutputOption(np, IMPORT_OUTPUTS).action(async (paths: string[], opts: ImportOptions) => {
    const { runImportNetworkPolicy } = await import('./policy-import-run.ts');
    process.exitCode = await runImportNetworkPolicy(paths, opts);
  });
}
