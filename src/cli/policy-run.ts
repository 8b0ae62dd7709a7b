/**
 * What `waygate policy check|test|eval|fmt` do (src/cli/policy.ts registers them and loads this
 * module when one of them runs). Exit codes: src/cli/policy.ts.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { WaygateError, type Diagnostic } from '../errors.ts';
import { contextFromInput } from '../policy/context-input.ts';
import type { Decision, DefaultAction } from '../policy/decision.ts';
import { parsePolicyDocuments } from '../policy/documents.ts';
import { decide } from '../policy/engine.ts';
import { explainDecision, renderExplanation } from '../policy/explain.ts';
import { formatPolicyText } from '../policy/fmt.ts';
import { lintPolicies, type LintDiagnostic } from '../policy/lint.ts';
import { loadPolicySet, type LoadResult } from '../policy/load.ts';
import type { PolicyDocument } from '../policy/model.ts';
import { runPolicyTests, type CaseResult, type RuleCoverage, type TestReport } from '../policy/policy-test.ts';
import { summarizeSnapshot } from '../policy/snapshot.ts';
import { inspectPolicyUpdates, readPolicySources } from '../policy/sources.ts';
import { unifiedDiff } from './diff.ts';
import {
  formatDiagnosticLine,
  sortDiagnostics,
  stderr,
  stdout,
  styleFor,
  writeLines,
  type DiagnosticLike,
  type Style,
} from './output.ts';
import type { CheckOptions, EvalOptions, FmtOptions, PolicyOutput, TestOptions } from './policy.ts';
import { EXIT_DENY, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-codes.ts';
import { writeData } from './write-data.ts';


// ---------------------------------------------------------------------------------------------
// check

interface CheckJson {
  ok: boolean;
  errors: DiagnosticLike[];
  warnings: DiagnosticLike[];
  summary: { files: number; policies: number; rules: number; tests: number } | null;
}

export async function runCheck(paths: string[], opts: CheckOptions): Promise<number> {
  const style = styleFor(stdout());
  const loaded = await loadPolicySet(paths, { version: 1 });
  let findings: DiagnosticLike[];
  let summary: CheckJson['summary'] = null;
  let loadFailed = false;
  if (loaded.ok) {
    findings = [...loaded.warnings, ...lintPolicies(loaded.snapshot)];
    const s = summarizeSnapshot(loaded.snapshot);
    summary = { files: loaded.files.length, policies: s.policies, rules: s.rules, tests: loaded.tests.length };
  } else {
    loadFailed = true;
    // Lint what did parse, so a file with one type error still gets its other findings.
    findings = [...loaded.diagnostics, ...(await lintUncompiled(paths, loaded.diagnostics))];
  }
  // How the files are being updated, where that shows (editor swap files, a write moments ago):
  // the gateway may read such a file half-written (docs/operating.md, "Updating policies safely").
  findings.push(...(await inspectPolicyUpdates(paths)));
  findings = sortDiagnostics(dedupe(findings));
  const errors = findings.filter((d) => d.severity === 'error');
  const warnings = findings.filter((d) => d.severity === 'warning');
  const code = loadFailed ? EXIT_USAGE : errors.length > 0 || (opts.strict && warnings.length > 0) ? EXIT_FAILURE : EXIT_OK;

  if (opts.output !== 'text') {
    writeData({ ok: code === EXIT_OK, errors, warnings, summary } satisfies CheckJson, opts.output);
    return code;
  }
  writeLines(findings.map((d) => formatDiagnosticLine(d, style)));
  const counts = `${plural(errors.length, 'error')}, ${plural(warnings.length, 'warning')}`;
  if (summary) {
    const what = `${plural(summary.policies, 'policy', 'policies')} (${plural(summary.rules, 'rule')}) and ` +
      `${plural(summary.tests, 'test')} in ${plural(summary.files, 'file')}`;
    const verdict = code === EXIT_OK ? style.green('ok') : style.red('failed');
    writeLines([`${verdict}: ${what}: ${counts}${opts.strict && warnings.length > 0 ? ' (--strict)' : ''}`]);
  } else {
    writeLines([`${style.red('failed')}: the policy set does not load: ${counts}`]);
  }
  return code;
}

/**
 * Text-level lint of documents that parsed, when the set as a whole failed to load (the compiled
 * checks need a snapshot). Findings the loader already reported (same file, path and code) are
 * left to the loader's wording.
 */
async function lintUncompiled(paths: string[], loadDiagnostics: readonly Diagnostic[]): Promise<LintDiagnostic[]> {
  const sources = await readPolicySources(paths);
  const docs: PolicyDocument[] = [];
  for (const f of sources.files) docs.push(...parsePolicyDocuments(f.text, f.path, docs.length).documents);
  const known = new Set(loadDiagnostics.map((d) => `${d.file}\0${d.path}\0${d.code}`));
  return lintPolicies(docs).filter((d) => !known.has(`${d.file}\0${d.path}\0${d.code}`));
}

function dedupe<T extends DiagnosticLike>(list: readonly T[]): T[] {
  const seen = new Set<string>();
  return list.filter((d) => {
    const k = `${d.file}:${d.line}:${d.col}:${d.code}:${d.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// test

export async function runTest(paths: string[], opts: TestOptions): Promise<number> {
  const style = styleFor(stdout());
  const loaded = await loadPolicySet(paths, { version: 1 });
  if (!loaded.ok) return reportLoadFailure(loaded, opts.output, style);
  const runOpts = opts.threshold === undefined ? {} : { threshold: opts.threshold };
  const report = runPolicyTests(loaded.snapshot, loaded.tests, runOpts);
  // A run with no case proves nothing; most likely the path missed the *.test.yaml files.
  const empty = report.total === 0;
  const code = report.ok && !empty ? EXIT_OK : EXIT_FAILURE;

  if (opts.output !== 'text') {
    writeData({ ...report, ok: code === EXIT_OK, files: loaded.files }, opts.output);
    return code;
  }
  writeLines(renderTestReport(report, { coverage: opts.coverage, style }));
  if (empty) writeLines([style.red('no PolicyTest cases found under ' + paths.join(' ') + ' (kind: PolicyTest documents)')]);
  return code;
}

/** Text form of a test report: one line per case, a diff under each failure, a summary, coverage. */
export function renderTestReport(report: TestReport, opts: { coverage: boolean; style: Style }): string[] {
  const { style } = opts;
  const lines: string[] = [];
  for (const c of report.cases) {
    if (c.passed) {
      lines.push(`${style.green('PASS')} ${c.test} > ${c.case}`);
      continue;
    }
    lines.push(`${style.red('FAIL')} ${c.test} > ${c.case}  ${style.dim(`(${c.location.file}:${c.location.line}:${c.location.col})`)}`);
    lines.push(...renderCaseFailure(c, style).map((l) => '    ' + l));
  }
  const cov = report.coverage;
  const summary = `${plural(report.total, 'case')}: ${report.passed} passed, ${report.failed} failed; ` +
    `rule coverage ${cov.reachedRules}/${cov.countedRules} (${cov.percent}%)`;
  lines.push('', report.failed === 0 ? style.green(summary) : style.red(summary));
  if (report.threshold !== null && !report.coverageOk) {
    lines.push(style.red(`coverage ${cov.percent}% is below the threshold of ${report.threshold}%`));
  }
  // docs/design.md §3: the run always names the rules no case reached; --coverage adds the hit counts.
  const where = (r: RuleCoverage) => style.dim(`${r.location.file}:${r.location.line}:${r.location.col}`);
  const label = (r: RuleCoverage) => `${r.policy}/${r.rule} (${r.action}${r.mode === 'DryRun' ? ', DryRun' : ''})`;
  if (cov.unreached.length > 0) {
    lines.push(style.yellow('rules no case reached:'));
    for (const r of cov.unreached) lines.push(`  ${label(r)}  ${where(r)}`);
  } else if (opts.coverage) {
    lines.push('every rule was reached by some case');
  }
  if (cov.matchesNothing.length > 0) {
    lines.push('rules that match nothing by construction (`false`: no case can reach them; not counted):');
    for (const r of cov.matchesNothing) lines.push(`  ${label(r)}  ${where(r)}`);
  }
  if (opts.coverage && cov.rules.length > 0) {
    const width = String(Math.max(...cov.rules.map((r) => r.hits))).length;
    lines.push('cases reaching each rule:');
    for (const r of cov.rules) lines.push(`  ${String(r.hits).padStart(width)}  ${label(r)}  ${where(r)}`);
  }
  return lines;
}

function renderCaseFailure(c: CaseResult, style: Style): string[] {
  if (c.inputError !== undefined) return [`input: ${c.inputError}`];
  const width = Math.max(...c.diffs.map((d) => d.field.length));
  const lines = c.diffs.map((d) =>
    `${(d.field + ':').padEnd(width + 1)} expected ${style.green(show(d.expected))}, got ${style.red(show(d.actual))}`);
  const a = c.actual;
  const by = a.policy !== null ? ` by ${a.policy}/${a.rule}` : '';
  lines.push(style.dim(`decided: ${a.decision} (${a.reason})${by}; defaultAction ${c.defaultAction}`));
  if (!a.dryRunApplied && c.diffs.some((d) => d.field === 'dryRun')) {
    lines.push(style.dim('no dry-run policy applies to this input, so the dry-run verdict is the actual one'));
  }
  for (const e of a.evalErrors) lines.push(style.yellow(`evaluation error: ${e}`));
  return lines;
}

function show(v: unknown): string {
  if (Array.isArray(v)) return `[${v.join(', ')}]`;
  return v === null ? 'null' : String(v);
}

// ---------------------------------------------------------------------------------------------
// eval

export async function runEval(paths: string[], opts: EvalOptions): Promise<number> {
  const style = styleFor(stdout());
  let raw: unknown;
  try {
    const text = opts.input === '-' ? await readStdin() : await readFile(opts.input, 'utf8');
    raw = parseYaml(text);
  } catch (e) {
    stderr().write(`waygate policy eval: cannot read input ${opts.input}: ${messageOf(e)}\n`);
    return EXIT_USAGE;
  }
  let ctx;
  try {
    ctx = contextFromInput(raw);
  } catch (e) {
    stderr().write(`waygate policy eval: ${opts.input}: ${messageOf(e)}\n`);
    return EXIT_USAGE;
  }
  const loaded = await loadPolicySet(paths, { version: 1 });
  if (!loaded.ok) return reportLoadFailure(loaded, opts.output, style);

  // explainDecision carries exactly decide()'s Decision, so one call serves both forms.
  const explanation = opts.explain ? explainDecision(loaded.snapshot, ctx, { defaultAction: opts.defaultAction }) : undefined;
  const decision = explanation?.decision ?? decide(loaded.snapshot, ctx, { defaultAction: opts.defaultAction });
  const code = decision.decision === 'allow' ? EXIT_OK : EXIT_DENY;
  if (opts.output !== 'text') {
    writeData(explanation === undefined ? { decision } : { decision, explanation }, opts.output);
    return code;
  }
  // The explanation opens with the same verdict, audit and dry-run lines, then every policy.
  if (explanation !== undefined) stdout().write(trimEndNewline(renderExplanation(explanation)) + '\n');
  else writeLines(renderDecision(decision, opts.defaultAction, style));
  return code;
}

/** Text form of a decision: verdict line, then audit, dry-run and evaluation errors when present. */
export function renderDecision(d: Decision, defaultAction: DefaultAction, style: Style): string[] {
  const verdict = d.decision === 'allow' ? style.green('allow') : style.red('deny');
  const by = d.policy !== null ? ` by ${d.policy}/${d.rule}` : '';
  const lines = [`${verdict} (${d.reason})${by}`];
  if (d.audit.length > 0) lines.push(`  audit:   ${d.audit.map((a) => `${a.policy}/${a.rule}`).join(', ')}`);
  if (d.dryRun !== null) {
    const dr = d.dryRun;
    const drBy = dr.policy !== null ? ` by ${dr.policy}/${dr.rule}` : '';
    const change = dr.wouldChange ? style.yellow(' (would change the verdict)') : '';
    lines.push(`  dry run: ${dr.decision} (${dr.reason})${drBy}${change}`);
  }
  for (const e of d.evalErrors) lines.push(style.yellow(`  evaluation error in ${e.policy}/${e.rule}: ${e.message}`));
  lines.push(style.dim(`  defaultAction ${defaultAction}, snapshot ${d.snapshot.hash.slice(0, 12)}`));
  return lines;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

// ---------------------------------------------------------------------------------------------
// fmt

export async function runFmt(paths: string[], opts: FmtOptions): Promise<number> {
  const style = styleFor(stdout());
  if (paths.includes('-')) {
    if (paths.length > 1 || opts.write) {
      stderr().write('waygate policy fmt: "-" (stdin) cannot be combined with other paths or -w\n');
      return EXIT_USAGE;
    }
    const text = await readStdin();
    try {
      const formatted = formatPolicyText(text, '<stdin>');
      if (opts.diff) {
        stdout().write(unifiedDiff(text, formatted, '<stdin>'));
        return formatted === text ? EXIT_OK : EXIT_FAILURE;
      }
      if (opts.check) {
        if (formatted !== text) writeLines(['<stdin>']);
        return formatted === text ? EXIT_OK : EXIT_FAILURE;
      }
      stdout().write(formatted);
      return EXIT_OK;
    } catch (e) {
      stderr().write(`${messageOf(e)}\n`);
      return EXIT_USAGE;
    }
  }

  const sources = await readPolicySources(paths);
  let code = EXIT_OK;
  for (const d of sources.diagnostics) {
    stderr().write(formatDiagnosticLine(d, styleFor(stderr())) + '\n');
    if (d.severity === 'error') code = EXIT_USAGE;
  }
  const changed: string[] = [];
  for (const f of sources.files) {
    let formatted: string;
    try {
      formatted = formatPolicyText(f.text, f.path);
    } catch (e) {
      stderr().write(`${e instanceof WaygateError ? e.message : `${f.path}: ${messageOf(e)}`}\n`);
      code = EXIT_USAGE;
      continue;
    }
    if (opts.diff) {
      if (formatted !== f.text) changed.push(f.path);
      stdout().write(unifiedDiff(f.text, formatted, f.path));
    } else if (opts.check) {
      if (formatted !== f.text) changed.push(f.path);
    } else if (opts.write) {
      if (formatted !== f.text) {
        await writeFile(f.path, formatted);
        changed.push(f.path);
      }
    } else {
      stdout().write(formatted);
    }
  }
  if (opts.check) {
    writeLines(changed.map((p) => `${style.yellow('would reformat')} ${p}`));
  }
  if (opts.check || opts.diff) {
    if (changed.length > 0 && code === EXIT_OK) code = EXIT_FAILURE;
  } else if (opts.write) {
    writeLines(changed.map((p) => `formatted ${p}`));
  }
  return code;
}

// ---------------------------------------------------------------------------------------------
// shared

function reportLoadFailure(loaded: Extract<LoadResult, { ok: false }>, output: PolicyOutput, style: Style): number {
  const diagnostics = sortDiagnostics(loaded.diagnostics);
  if (output !== 'text') {
    writeData({
      ok: false,
      errors: diagnostics.filter((d) => d.severity === 'error'),
      warnings: diagnostics.filter((d) => d.severity === 'warning'),
    }, output);
  } else {
    writeLines(diagnostics.map((d) => formatDiagnosticLine(d, style)));
    writeLines([`${style.red('failed')}: the policy set does not load (${plural(diagnostics.filter((d) => d.severity === 'error').length, 'error')})`]);
  }
  return EXIT_USAGE;
}

function plural(n: number, one: string, many = one + 's'): string {
  return `${n} ${n === 1 ? one : many}`;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function trimEndNewline(s: string): string {
  return s.endsWith('\n') ? s.slice(0, -1) : s;
}
