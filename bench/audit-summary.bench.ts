/**
 * `waygate audit summary` throughput: records/s and peak RSS over a generated
 * 1,000,000-record log, against `jq -c 'select(.decision=="deny")' | wc -l` on the same file in the
 * same run, reported as a ratio (> 1 means the summary is faster than the jq pipeline, which only
 * filters while the summary computes every aggregate). Flat memory is shown by running the summary
 * on a quarter of the log too: peak RSS must not grow with the input.
 *
 *   node --import tsx bench/audit-summary.bench.ts [--records N] [--quick] [--keep]
 *   npm run bench -- --only audit
 *
 * Results: a table on stdout and JSON in bench/results/audit-summary-<time>.json.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { writeAuditLog } from '../test/helpers/audit-log.ts';
import { fmt, table } from './lib/stats.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface AuditBenchOptions {
  /** Records (decision + close + reload) in the big log; default 1,000,000 (100,000 with `quick`). */
  records?: number;
  /** bench/run.ts --quick: a 100,000-record log. */
  quick?: boolean;
  /** Keep the generated logs (printed paths) instead of deleting them. */
  keep?: boolean;
  /** Where the JSON result goes; default bench/results. */
  resultsDir?: string;
  /** Progress lines; default console.error. */
  log?: (line: string) => void;
}

export interface SummaryRun {
  records: number;
  fileBytes: number;
  /** Wall time of the whole child process (startup included), like jq's. */
  wallMs: number;
  /** Time inside the summary (read + aggregate + render). */
  scanMs: number;
  recordsPerSecond: number;
  maxRssMiB: number;
  /** Heap still in use after a full GC at the end of the scan (what the aggregates retain). */
  retainedHeapMiB: number | null;
  deny: number;
}

export interface JqRun {
  wallMs: number;
  recordsPerSecond: number;
  maxRssMiB: number | null;
  deny: number;
}

export interface AuditBenchResult {
  machine: { cpus: number; cpuModel: string; node: string; jq: string | null };
  big: SummaryRun;
  quarter: SummaryRun;
  jq: JqRun | null;
  /** jq wall time / summary wall time: > 1 means the summary is faster. */
  speedRatio: number | null;
  /** Peak RSS at N divided by peak RSS at N/4: ~1 means flat memory. */
  rssGrowth: number;
  note: string;
}

function hasJq(): string | null {
  try {
    return execFileSync('jq', ['--version']).toString().trim();
  } catch {
    return null;
  }
}

function hasGnuTime(): boolean {
  try {
    execFileSync('/usr/bin/time', ['-f', '%M', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Decision records to generate for about `records` records in total (closes follow allows). */
function decisionsFor(records: number): number {
  // The generator writes about 0.805 close records per decision (allowed tunnels + policy_changed).
  return Math.max(1, Math.round((records - 1) / 1.805));
}

async function runSummary(file: string): Promise<SummaryRun> {
  const started = performance.now();
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(ROOT, 'test/helpers/audit-bench-child.ts'), file], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const wallMs = performance.now() - started;
  if (code !== 0) throw new Error(`summary child exited ${code}`);
  const r = JSON.parse(out) as { scanMs: number; maxRssKiB: number; retainedHeapKiB: number | null; records: number; deny: number };
  return {
    records: r.records,
    fileBytes: statSync(file).size,
    wallMs,
    scanMs: r.scanMs,
    recordsPerSecond: r.records / (wallMs / 1000),
    maxRssMiB: r.maxRssKiB / 1024,
    retainedHeapMiB: r.retainedHeapKiB === null ? null : r.retainedHeapKiB / 1024,
    deny: r.deny,
  };
}

async function runJq(file: string, records: number, gnuTime: boolean): Promise<JqRun> {
  // The baseline exactly as its target is stated, through a shell pipe; GNU time reports jq's peak RSS.
  const jq = `jq -c 'select(.decision=="deny")' ${JSON.stringify(file)}`;
  const cmd = gnuTime ? `/usr/bin/time -f 'MAXRSS %M' ${jq} | wc -l` : `${jq} | wc -l`;
  const started = performance.now();
  const child = spawn('sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const wallMs = performance.now() - started;
  if (code !== 0) throw new Error(`jq pipeline exited ${code}: ${err}`);
  const rss = /MAXRSS (\d+)/.exec(err);
  return {
    wallMs,
    recordsPerSecond: records / (wallMs / 1000),
    maxRssMiB: rss ? Number(rss[1]) / 1024 : null,
    deny: Number(out.trim()),
  };
}

/** Generates the logs, runs the summary (N and N/4) and the jq baseline, prints and saves results. */
export async function runAuditBench(opts: AuditBenchOptions = {}): Promise<AuditBenchResult> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const records = opts.records ?? (opts.quick ? 100_000 : 1_000_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-audit-bench-'));
  try {
    const bigFile = path.join(dir, 'audit-big.jsonl');
    const quarterFile = path.join(dir, 'audit-quarter.jsonl');
    log(`generating ${records.toLocaleString('en-US')} records in ${dir} ...`);
    // No malformed lines: jq stops at the first parse error, and the baseline must see the whole file.
    await writeAuditLog(bigFile, { decisions: decisionsFor(records), anomalies: false, seed: 1 });
    await writeAuditLog(quarterFile, { decisions: decisionsFor(records / 4), anomalies: false, seed: 2 });

    const jqVersion = hasJq();
    log('summary (N/4) ...');
    const quarter = await runSummary(quarterFile);
    log('summary (N) ...');
    const big = await runSummary(bigFile);
    let jq: JqRun | null = null;
    if (jqVersion) {
      log(`${jqVersion} baseline ...`);
      jq = await runJq(bigFile, big.records, hasGnuTime());
      if (jq.deny !== big.deny) throw new Error(`jq counted ${jq.deny} denies, the summary ${big.deny}: not the same input`);
    } else {
      log('jq is not installed (apt-get install -y jq): the ratio is skipped');
    }
    const cpus = os.cpus();
    const result: AuditBenchResult = {
      machine: { cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', node: process.version, jq: jqVersion },
      big,
      quarter,
      jq,
      speedRatio: jq ? jq.wallMs / big.wallMs : null,
      rssGrowth: big.maxRssMiB / quarter.maxRssMiB,
      note: 'summary computes every aggregate; jq only filters denies. Wall times are whole processes (node+tsx startup included).',
    };

    const resultsDir = opts.resultsDir ?? path.join(ROOT, 'bench/results');
    mkdirSync(resultsDir, { recursive: true });
    const out = path.join(resultsDir, `audit-summary-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    log(`wrote ${out}`);
    return result;
  } finally {
    if (opts.keep) log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/** The result as a table plus the two ratios (bench/run.ts prints this). */
export function renderAuditBench(result: AuditBenchResult): string {
  const { big, quarter, jq } = result;
  const rows = [
    ['waygate audit summary (N/4)', count(quarter.records), fmt(quarter.fileBytes / 2 ** 20), fmt(quarter.wallMs / 1000), fmt(quarter.recordsPerSecond), fmt(quarter.maxRssMiB), heap(quarter)],
    ['waygate audit summary (N)', count(big.records), fmt(big.fileBytes / 2 ** 20), fmt(big.wallMs / 1000), fmt(big.recordsPerSecond), fmt(big.maxRssMiB), heap(big)],
    ...(jq ? [["jq -c 'select(.decision==\"deny\")' | wc -l", count(big.records), fmt(big.fileBytes / 2 ** 20), fmt(jq.wallMs / 1000), fmt(jq.recordsPerSecond), jq.maxRssMiB === null ? 'n/a' : fmt(jq.maxRssMiB), 'n/a']] : []),
  ];
  return [
    table(['run', 'records', 'MiB', 'wall s', 'records/s', 'peak RSS MiB', 'heap after GC MiB'], rows),
    `speed vs jq: ${result.speedRatio === null ? 'n/a (jq not installed)' : `${result.speedRatio.toFixed(2)}x`}; ` +
      `peak RSS N vs N/4: ${result.rssGrowth.toFixed(2)}x (flat memory ~1.0)`,
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--records');
  const result = await runAuditBench({ records: i >= 0 ? Number(args[i + 1]) : undefined, quick: args.includes('--quick'), keep: args.includes('--keep') });
  console.log(renderAuditBench(result));
}

function heap(r: SummaryRun): string {
  return r.retainedHeapMiB === null ? 'n/a' : fmt(r.retainedHeapMiB);
}

function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
