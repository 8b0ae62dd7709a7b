/**
 * `waygate audit suggest` wall time and peak RSS on a generated log (test/helpers/audit-log.ts):
 * the compiled CLI (bin/waygate.js, so `npm run build` first) as a whole process, suggestion and
 * the replay of the log against it included (one read of the file: src/audit/review/suggest.ts
 * ReplayStore keeps what the replay needs). The target (issue 18): under 10 s for 100,000 records.
 * Run at N and N/4: peak RSS must not grow with the input.
 *
 *   npm run build && node --import tsx bench/audit-suggest.bench.ts [--decisions N] [--keep]
 *
 * Results: a table on stdout and JSON in bench/results/audit-suggest-<time>.json.
 *
 * Measured 2026-12-07 (2-core AMD EPYC, Node 20, load average 6.9-8.6 from other work on the
 * machine; CPU s is the process's user + system time, steadier than wall), 100,000 decisions
 * (180,252 lines, 131 MiB), the builds before and after one read, alternated in one run:
 *   before (two reads):          CPU 4.4-5.8 s, wall 5.1-7.7 s, peak RSS 115-120 MiB (10 runs)
 *   after (one read, 428 groups): CPU 2.5-3.9 s, wall 3.2-5.3 s, peak RSS 122-123 MiB (6 runs)
 *   after, --policies policies/:  CPU 5.9 s, wall 6.6 s, peak RSS 119 MiB (the key's attributes read
 *                                 from a context built per record)
 *   after, this bench: N/4 118 MiB, N 121 MiB: peak RSS at N vs N/4 1.03x (before: 1.05-1.16x)
 * In-process split before: reading and parsing ~1.9 s per pass (two passes), suggestion ~0.05 s,
 * replay decisions ~1.4 s; after: one read, the replay decides each group once.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeAuditLog } from '../test/helpers/audit-log.ts';
import { fmt, table } from './lib/stats.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface SuggestRun {
  decisions: number;
  records: number;
  fileMiB: number;
  wallMs: number;
  recordsPerSecond: number;
  maxRssMiB: number | null;
  /** user + system CPU seconds of the process (GNU time): steadier than wall time on a shared machine. */
  cpuSeconds: number | null;
  policies: number;
  allowToDeny: number;
}

function hasGnuTime(): boolean {
  try {
    execFileSync('/usr/bin/time', ['-f', '%M', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function runSuggest(file: string, out: string, decisions: number, records: number, gnuTime: boolean): Promise<SuggestRun> {
  const argv = [path.join(ROOT, 'bin/waygate.js'), 'audit', 'suggest', file, '--out', out, '-o', 'json'];
  const [cmd, args] = gnuTime ? ['/usr/bin/time', ['-f', 'MAXRSS %M CPU %U %S', process.execPath, ...argv]] : [process.execPath, argv];
  const started = performance.now();
  const child = spawn(cmd, args as string[], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const wallMs = performance.now() - started;
  if (code !== 0) throw new Error(`audit suggest exited ${code}: ${stderr}`);
  const r = JSON.parse(stdout) as { suggestion: { destinations: unknown[] }; replay: { allowToDeny: { count: number } } };
  const rss = /MAXRSS (\d+)/.exec(stderr);
  const cpu = /CPU ([\d.]+) ([\d.]+)/.exec(stderr);
  return {
    decisions,
    records,
    fileMiB: statSync(file).size / 2 ** 20,
    wallMs,
    recordsPerSecond: records / (wallMs / 1000),
    maxRssMiB: rss ? Number(rss[1]) / 1024 : null,
    cpuSeconds: cpu ? Number(cpu[1]) + Number(cpu[2]) : null,
    policies: r.suggestion.destinations.length,
    allowToDeny: r.replay.allowToDeny.count,
  };
}

export async function runSuggestBench(opts: { decisions?: number; keep?: boolean; log?: (l: string) => void } = {}): Promise<{ big: SuggestRun; quarter: SuggestRun; rssGrowth: number | null }> {
  const log = opts.log ?? ((l: string) => console.error(l));
  if (!existsSync(path.join(ROOT, 'dist/src/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  const decisions = opts.decisions ?? 100_000;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-suggest-bench-'));
  try {
    const gnuTime = hasGnuTime();
    const runs: SuggestRun[] = [];
    for (const [name, n, seed] of [['quarter', Math.round(decisions / 4), 2], ['big', decisions, 1]] as const) {
      const file = path.join(dir, `${name}.jsonl`);
      log(`generating ${n.toLocaleString('en-US')} decisions ...`);
      const truth = await writeAuditLog(file, { decisions: n, seed });
      log(`audit suggest (${name}) ...`);
      runs.push(await runSuggest(file, path.join(dir, `${name}-out`), n, truth.lines, gnuTime));
    }
    const [quarter, big] = runs as [SuggestRun, SuggestRun];
    const rssGrowth = big.maxRssMiB !== null && quarter.maxRssMiB !== null ? big.maxRssMiB / quarter.maxRssMiB : null;
    const cpus = os.cpus();
    const result = { machine: { cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', node: process.version }, big, quarter, rssGrowth };
    const resultsDir = path.join(ROOT, 'bench/results');
    mkdirSync(resultsDir, { recursive: true });
    const out = path.join(resultsDir, `audit-suggest-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    log(`wrote ${out}`);
    return { big, quarter, rssGrowth };
  } finally {
    if (opts.keep) log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

export function renderSuggestBench(r: { big: SuggestRun; quarter: SuggestRun; rssGrowth: number | null }): string {
  const row = (name: string, x: SuggestRun) => [
    name, x.decisions.toLocaleString('en-US'), x.records.toLocaleString('en-US'), fmt(x.fileMiB), fmt(x.wallMs / 1000), x.cpuSeconds === null ? 'n/a' : fmt(x.cpuSeconds), fmt(x.recordsPerSecond),
    x.maxRssMiB === null ? 'n/a' : fmt(x.maxRssMiB), String(x.policies), String(x.allowToDeny),
  ];
  return [
    table(['run', 'decisions', 'lines', 'MiB', 'wall s', 'CPU s', 'lines/s', 'peak RSS MiB', 'policies', 'allow->deny'], [row('audit suggest (N/4)', r.quarter), row('audit suggest (N)', r.big)]),
    `peak RSS N vs N/4: ${r.rssGrowth === null ? 'n/a (no GNU time)' : `${r.rssGrowth.toFixed(2)}x (flat memory ~1.0)`}`,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { decisions: { type: 'string' }, keep: { type: 'boolean', default: false } } });
  const r = await runSuggestBench({ decisions: values.decisions ? Number(values.decisions) : undefined, keep: values.keep });
  process.stdout.write(renderSuggestBench(r) + '\n');
}
