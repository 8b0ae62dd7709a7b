/**
 * `waygate policy import istio|networkpolicy FILE|DIR... --out DIR [--partial]`: reads Istio
 * AuthorizationPolicies (istio.ts) or Kubernetes NetworkPolicies (networkpolicy.ts), translates
 * them and writes one waygate policy and one PolicyTest per source policy
 * (docs/writing-policies.md, "Migrating from Istio").
 *
 * Exit codes: 0 everything translated and written; 1 something was refused (nothing is written
 * unless --partial, which writes what did translate); 2 the input cannot be read (a missing path,
 * a YAML syntax error) or the output cannot be written.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { ErrorCode } from '../../errors.ts';
import { readPolicySources } from '../sources.ts';
import { generateFiles, importIstio, type ImportInput, type ImportNote, type IstioImportResult, type Refusal } from './istio.ts';
import { importNetworkPolicies } from './networkpolicy.ts';
import { formatDiagnosticLine, stdout, styleFor, writeLines, type Style } from '../../cli/output.ts';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

export interface ImportIstioOptions {
  out: string;
  partial: boolean;
  rootNamespace: string;
  clusterDomain: string;
}

/** Registers `waygate policy import istio` under the `policy` command. */
export function registerImport(policy: Command): void {
  const imp = policy
    .command('import')
    .description('translate another system\'s policies into waygate policies and PolicyTests');
  imp
    .command('istio')
    .description('translate Istio AuthorizationPolicies (L4 subset) (exit 0 all translated, 1 something refused, 2 unreadable input)')
    .argument('<paths...>', 'Istio AuthorizationPolicy files or directories (walked for *.yaml / *.yml)')
    .requiredOption('--out <dir>', 'directory to write the waygate policies and PolicyTests to')
    .option('--partial', 'write what translates even when something was refused (still exit 1)', false)
    .option('--root-namespace <ns>', 'Istio\'s root namespace: its policies without selector/targetRefs govern the whole mesh', 'istio-system')
    .option('--cluster-domain <domain>', 'cluster domain of service hostnames (destination.service)', 'cluster.local')
    .action(async (paths: string[], opts: ImportIstioOptions) => {
      process.exitCode = await runImportIstio(paths, opts);
    });
  imp
    .command('networkpolicy')
    .description('translate Kubernetes NetworkPolicy ingress rules into ALLOW policies (exit 0 all translated, 1 something refused, 2 unreadable input)')
    .argument('<paths...>', 'NetworkPolicy files or directories (walked for *.yaml / *.yml)')
    .requiredOption('--out <dir>', 'directory to write the waygate policies and PolicyTests to')
    .option('--partial', 'write what translates even when something was refused (still exit 1)', false)
    .action(async (paths: string[], opts: { out: string; partial: boolean }) => {
      process.exitCode = await runImport(paths, opts, importNetworkPolicies, 'Kubernetes allows ingress to a pod that no NetworkPolicy selects');
    });
}

/** `import istio`; returns its exit code. */
export async function runImportIstio(paths: readonly string[], opts: ImportIstioOptions): Promise<number> {
  const translate = (inputs: readonly ImportInput[]) => importIstio(inputs, { rootNamespace: opts.rootNamespace, clusterDomain: opts.clusterDomain });
  return runImport(paths, opts, translate, 'Istio allows a tunnel that no ALLOW policy governs');
}

/** Read, translate, report, write: the steps every source kind shares. Returns the exit code. */
async function runImport(
  paths: readonly string[],
  opts: { out: string; partial: boolean },
  translate: (inputs: readonly ImportInput[]) => IstioImportResult,
  defaultAllows: string,
): Promise<number> {
  const style = styleFor(stdout());
  const sources = await readPolicySources(paths);
  const ioErrors = sources.diagnostics.filter((d) => d.severity === 'error');
  if (ioErrors.length > 0) {
    writeLines(ioErrors.map((d) => formatDiagnosticLine({ ...d, code: 'WG_IMPORT_INPUT' }, style)));
    writeLines([`${style.red('failed')}: input cannot be read; nothing written`]);
    return EXIT_USAGE;
  }
  const result = translate(sources.files.map((f) => ({ file: f.path, text: f.text })));
  writeLines(renderFindings(result, style));
  if (result.unreadable.length > 0) {
    writeLines([`${style.red('failed')}: input cannot be read; nothing written`]);
    return EXIT_USAGE;
  }
  const refused = new Set(result.refusals.map((r) => r.policy));
  const translated = result.policies.filter((p) => !refused.has(`${p.namespace}/${p.name}`));
  if (result.refusals.length > 0 && !opts.partial) {
    writeLines([`${style.red('refused')}: ${result.refusals.length} finding(s) cannot be translated faithfully; nothing written (--partial writes the ${translated.length} policies that translate)`]);
    return EXIT_FAILURE;
  }
  const files = generateFiles(translated);
  try {
    await mkdir(opts.out, { recursive: true });
    for (const f of files) await writeFile(join(opts.out, f.name), f.text);
  } catch (e) {
    writeLines([`${style.red('failed')}: cannot write ${opts.out}: ${e instanceof Error ? e.message : String(e)}`]);
    return EXIT_USAGE;
  }
  writeLines(advice(result, translated.length, defaultAllows));
  const rules = translated.reduce((n, p) => n + Math.max(1, p.rules.length), 0);
  const summary = `imported ${translated.length} ${translated.length === 1 ? 'policy' : 'policies'} (${rules} rules) into ${opts.out}: ${files.length} files`;
  if (result.refusals.length > 0) {
    writeLines([`${style.yellow('partial')}: ${summary}; ${refused.size} ${refused.size === 1 ? 'policy' : 'policies'} refused and not written`]);
    return EXIT_FAILURE;
  }
  writeLines([`${style.green('ok')}: ${summary}`]);
  return EXIT_OK;
}

function renderFindings(result: IstioImportResult, style: Style): string[] {
  const line = (r: Refusal, code: ErrorCode) => formatDiagnosticLine({ ...r, code, severity: 'error' }, style);
  const note = (n: ImportNote) => `${n.file}:${n.line}:${n.col}: ${style.dim('note')} at ${n.path || '<document>'}: ${n.message}`;
  const sorted = <T extends { file: string; line: number; col: number }>(l: T[]) =>
    [...l].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col));
  return [
    ...sorted(result.unreadable).map((r) => line(r, 'WG_IMPORT_INPUT')),
    ...sorted(result.refusals).map((r) => line(r, 'WG_IMPORT_REFUSED')),
    ...sorted(result.notes).map(note),
  ];
}

/**
 * Istio (and Kubernetes) allow a tunnel no ALLOW policy governs; the gateway's `defaultAction` is DENY unless set.
 * The importer never changes the gateway configuration: it says what to set.
 */
function advice(result: IstioImportResult, count: number, defaultAllows: string): string[] {
  if (count === 0) return [];
  return [
    `advice: ${defaultAllows}. To keep its verdicts, run the gateway with`,
    '  `spec.defaultAction: ALLOW` in its GatewayConfig (or `waygate serve --default-action ALLOW`); its default is',
    '  DENY, which refuses every tunnel no ALLOW policy governs. The generated PolicyTests state defaultAction: ALLOW;',
    '  check them with',
    `  waygate policy test <out> --coverage${result.policies.some((p) => p.rules.length === 0) ? ' (a policy without rules has a `false` rule no case reaches)' : ''}`,
    ...(result.policies.some((p) => p.scope.kind !== 'all')
      ? ['advice: policies scoped to a namespace or Service select on destination.namespace / destination.service, which',
        '  only discovery fills (docs/kubernetes.md): without it they govern no tunnel, and the default action decides.']
      : []),
  ];
}
