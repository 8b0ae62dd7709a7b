/**
 * What `waygate policy import istio|networkpolicy` does: read, translate, report, write
 * (src/cli/policy-import.ts registers the commands, their exit codes and the `-o json` report).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ErrorCode } from '../errors.ts';
import { readPolicySources } from '../policy/sources.ts';
import {
  generateFiles, importIstio, type ImportInput, type ImportNote, type IstioImportResult, type IstioPolicy, type Refusal,
} from '../policy/import/istio.ts';
import { importNetworkPolicies } from '../policy/import/networkpolicy.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-codes.ts';
import { formatDiagnosticLine, stdout, styleFor, writeJson, writeLines, type Style } from './output.ts';
import type { ImportFinding, ImportIstioOptions, ImportOptions, ImportReport } from './policy-import.ts';


/** `import istio`; returns its exit code. */
export async function runImportIstio(paths: readonly string[], opts: ImportIstioOptions): Promise<number> {
  const translate = (inputs: readonly ImportInput[]) => importIstio(inputs, { rootNamespace: opts.rootNamespace, clusterDomain: opts.clusterDomain });
  return runImport('istio', paths, opts, translate, 'Istio allows a tunnel that no ALLOW policy governs');
}

/** `import networkpolicy`; returns its exit code. */
export async function runImportNetworkPolicy(paths: readonly string[], opts: ImportOptions): Promise<number> {
  return runImport('networkpolicy', paths, opts, importNetworkPolicies, 'Kubernetes allows ingress to a pod that no NetworkPolicy selects');
}

/** Read, translate, report, write: the steps every source kind shares. Returns the exit code. */
async function runImport(
  source: ImportReport['source'],
  paths: readonly string[],
  opts: ImportOptions,
  translate: (inputs: readonly ImportInput[]) => IstioImportResult,
  defaultAllows: string,
): Promise<number> {
  const json = opts.output === 'json';
  const style = styleFor(stdout());
  // Text goes out as it is found; JSON is one document at the end, whatever happened.
  const say = (lines: string[]) => {
    if (!json) writeLines(lines);
  };
  const report: ImportReport = {
    source, out: opts.out, exitCode: EXIT_OK, status: 'ok', written: false, policies: [], refusals: [], unreadable: [], notes: [], advice: [], destinationSide: [], error: null,
  };
  const finish = (code: number, status: ImportReport['status']): number => {
    report.exitCode = code;
    report.status = status;
    if (json) writeJson(report);
    return code;
  };
  const sources = await readPolicySources(paths);
  const ioErrors = sources.diagnostics.filter((d) => d.severity === 'error');
  if (ioErrors.length > 0) {
    report.unreadable = ioErrors.map((d) => ({ file: d.file, line: d.line, col: d.col, path: d.path, policy: null, message: d.message, code: 'WG_IMPORT_INPUT' }));
    say(ioErrors.map((d) => formatDiagnosticLine({ ...d, code: 'WG_IMPORT_INPUT' }, style)));
    say([`${style.red('failed')}: input cannot be read; nothing written`]);
    return finish(EXIT_USAGE, 'failed');
  }
  const result = translate(sources.files.map((f) => ({ file: f.path, text: f.text })));
  say(renderFindings(result, style));
  report.unreadable = byPosition(result.unreadable).map((r) => ({ ...finding(r), code: 'WG_IMPORT_INPUT' }));
  report.refusals = byPosition(result.refusals).map((r) => ({ ...finding(r), code: 'WG_IMPORT_REFUSED', reason: r.reason ?? 'invalid' }));
  report.notes = byPosition(result.notes).map((n) => ({ ...finding(n), kind: n.kind ?? 'translation' }));
  report.destinationSide = [...new Set(result.notes.filter((n) => n.kind === 'destination-side' && n.policy !== null).map((n) => n.policy!))];
  if (result.unreadable.length > 0) {
    say([`${style.red('failed')}: input cannot be read; nothing written`]);
    return finish(EXIT_USAGE, 'failed');
  }
  const refused = new Set(result.refusals.map((r) => r.policy));
  const translated = result.policies.filter((p) => !refused.has(`${p.namespace}/${p.name}`));
  const fileNames = (p: IstioPolicy) => [join(opts.out, `${p.waygateName}.yaml`), join(opts.out, `${p.waygateName}.test.yaml`)];
  report.policies = result.policies.map((p) => ({
    source: `${p.namespace}/${p.name}`, origin: p.origin, policy: p.waygateName, action: p.action, mode: p.dryRun ? 'DryRun' : 'Enforce',
    scope: p.scope, rules: p.rules.length, refused: refused.has(`${p.namespace}/${p.name}`), files: [],
  }));
  if (result.refusals.length > 0 && !opts.partial) {
    say([`${style.red('refused')}: ${result.refusals.length} finding(s) cannot be translated faithfully; nothing written (--partial writes the ${translated.length} policies that translate)`]);
    return finish(EXIT_FAILURE, 'refused');
  }
  const files = generateFiles(translated);
  try {
    await mkdir(opts.out, { recursive: true });
    for (const f of files) await writeFile(join(opts.out, f.name), f.text);
  } catch (e) {
    report.error = `cannot write ${opts.out}: ${e instanceof Error ? e.message : String(e)}`;
    say([`${style.red('failed')}: ${report.error}`]);
    return finish(EXIT_USAGE, 'failed');
  }
  report.written = true;
  for (const p of report.policies) if (!p.refused) p.files = fileNames(translated.find((t) => t.waygateName === p.policy)!);
  say(advice(result, translated.length, defaultAllows));
  report.advice = adviceData(result, translated, defaultAllows);
  const rules = translated.reduce((n, p) => n + Math.max(1, p.rules.length), 0);
  const summary = `imported ${translated.length} ${translated.length === 1 ? 'policy' : 'policies'} (${rules} rules) into ${opts.out}: ${files.length} files`;
  if (result.refusals.length > 0) {
    say([`${style.yellow('partial')}: ${summary}; ${refused.size} ${refused.size === 1 ? 'policy' : 'policies'} refused and not written`]);
    return finish(EXIT_FAILURE, 'partial');
  }
  say([`${style.green('ok')}: ${summary}`]);
  return finish(EXIT_OK, 'ok');
}

function finding(r: Refusal | ImportNote): ImportFinding {
  return { file: r.file, line: r.line, col: r.col, path: r.path, policy: r.policy, message: r.message };
}

/** The advice of advice() as data: what to configure, and for which policies. */
function adviceData(result: IstioImportResult, translated: readonly IstioPolicy[], defaultAllows: string): ImportReport['advice'] {
  if (translated.length === 0) return [];
  const out: ImportReport['advice'] = [{
    kind: 'default-action',
    defaultAction: 'ALLOW',
    message: `${defaultAllows}: run the gateway with spec.defaultAction: ALLOW (or waygate serve --default-action ALLOW) to keep its verdicts; the gateway's default, DENY, refuses every tunnel no ALLOW policy governs`,
  }];
  const scoped = result.policies.filter((p) => p.scope.kind !== 'all').map((p) => p.waygateName);
  if (scoped.length > 0) {
    out.push({ kind: 'discovery', policies: scoped, message: 'policies scoped to a namespace or Service select on destination.namespace / destination.service, which only discovery fills (docs/kubernetes.md): without it they govern no tunnel, and the default action decides' });
  }
  return out;
}

/** Findings in file, line, column order: the text and the JSON list them alike. */
function byPosition<T extends { file: string; line: number; col: number }>(l: readonly T[]): T[] {
  return [...l].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col));
}

function renderFindings(result: IstioImportResult, style: Style): string[] {
  const line = (r: Refusal, code: ErrorCode) => formatDiagnosticLine({ ...r, code, severity: 'error' }, style);
  const note = (n: ImportNote) => `${n.file}:${n.line}:${n.col}: ${style.dim('note')} at ${n.path || '<document>'}: ${n.message}`;
  return [
    ...byPosition(result.unreadable).map((r) => line(r, 'WG_IMPORT_INPUT')),
    ...byPosition(result.refusals).map((r) => line(r, 'WG_IMPORT_REFUSED')),
    ...byPosition(result.notes).map(note),
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
    `  waygate policy test <out> --coverage${result.policies.some((p) => p.rules.length === 0) ? ' (a policy without rules has a `false` rule: coverage lists it apart, as matching nothing by construction)' : ''}`,
    ...(result.policies.some((p) => p.scope.kind !== 'all')
      ? ['advice: policies scoped to a namespace or Service select on destination.namespace / destination.service, which',
        '  only discovery fills (docs/kubernetes.md): without it they govern no tunnel, and the default action decides.']
      : []),
  ];
}
