/**
 * `npm run bench [-- --quick] [-- --only hbone,decision,audit] [-- --paths haproxy,waygate]
 *   [-- --scenarios bulk,connect] [-- --rounds N] [-- --profile]`
 *
 * Runs the benchmark suites, prints their tables on stdout and writes one JSON file with the
 * machine it ran on into bench/results/. Progress goes to stderr.
 *   hbone     the data plane against direct TCP, haproxy, stunnel and a node:tls forwarder
 *   waypoint  the double hop (waygate -> HBONE -> a destination ztunnel stand-in) against a
 *             re-encrypting haproxy (bench/waypoint.bench.ts)
 *   decision  decision time vs number of rules (bench/decision.bench.ts, policy engine)
 *   audit     audit review throughput (bench/audit-summary.bench.ts)
 *   audit-sync  CPU per CONNECT and latency for each audit.sync value against the build from before
 *             write-ahead audit records, same run (bench/audit-sync.bench.ts; `--audit-before REF`)
 * `--profile` instead runs the bulk and CONNECT workloads against a gateway started with
 * `node --cpu-prof` and prints the top self-time functions (the one-hop gateway; with
 * `--only waypoint` or `--only hbone,waypoint`, the waypoint's gateway under test too).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  ALL_PATHS, ALL_SCENARIOS, profileHbone, renderHboneBench, renderProfiles, runHboneBench,
} from './hbone.bench.ts';
import { mintPki } from './lib/pki.ts';
import { hasTaskset, machineInfo } from './lib/proc.ts';
import { renderAuditSyncBench, runAuditSyncBench } from './audit-sync.bench.ts';
import { profileWaypoint, renderWaypointBench, runWaypointBench, WAYPOINT_PATHS, WAYPOINT_SCENARIOS } from './waypoint.bench.ts';

const SUITES = ['hbone', 'waypoint', 'decision', 'audit', 'audit-sync'] as const;

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    paths: { type: 'string' },
    scenarios: { type: 'string' },
    rounds: { type: 'string' },
    profile: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'audit-before': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  allowPositionals: false,
});

if (values.help) {
  process.stdout.write([
    'usage: npm run bench -- [--quick] [--only hbone,waypoint,decision,audit] [--paths direct,haproxy,stunnel,node-tls,waygate]',
    `                        [--scenarios ${ALL_SCENARIOS.join(',')}] [--rounds N] [--profile] [--keep]`,
    '  --quick     smaller transfers, 3 rounds (< 2 min)        --rounds   rounds (default 5; quick 3)',
    '  --profile   CPU-profile the gateway under bulk and CONNECT load instead of benchmarking',
    '  --keep      keep the working directory (certificates, configs, audit logs, profiles)',
    '',
  ].join('\n'));
  process.exit(0);
}

function list(flag: string | undefined, allowed: readonly string[], name: string): string[] | undefined {
  if (flag === undefined) return undefined;
  const items = flag.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = items.filter((i) => !allowed.includes(i));
  if (unknown.length) {
    process.stderr.write(`bench: unknown ${name} ${unknown.join(', ')} (known: ${allowed.join(', ')})\n`);
    process.exit(2);
  }
  return items;
}

const quick = values.quick;
const only = list(values.only, SUITES, 'suite') ?? [...SUITES];
const paths = list(values.paths, [...new Set([...ALL_PATHS, ...WAYPOINT_PATHS])], 'path');
const scenarios = list(values.scenarios, [...new Set([...ALL_SCENARIOS, ...WAYPOINT_SCENARIOS])], 'scenario');
const rounds = values.rounds ? Number(values.rounds) : quick ? 3 : 5;
if (!Number.isInteger(rounds) || rounds < 1) {
  process.stderr.write('bench: --rounds must be a positive integer\n');
  process.exit(2);
}
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

function ulimit(flag: '-n' | '-Hn'): number {
  try {
    return Number(execFileSync('sh', ['-c', `ulimit ${flag}`]).toString().trim());
  } catch {
    return Number.NaN;
  }
}

// Everything measured runs on CPU 0; this process (load generator + backends) on CPU 1.
// Count the CPUs before pinning: afterwards this process sees only one.
const cpuCount = os.availableParallelism();
const pin = hasTaskset() && cpuCount >= 2;
if (pin) execFileSync('taskset', ['-pc', '1', String(process.pid)], { stdio: 'ignore' });
else log('taskset unavailable or one CPU: the gateway and the load generator share CPUs (ratios only)');

const started = new Date();
const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-bench-'));
const resultsDir = new URL('./results/', import.meta.url).pathname;
mkdirSync(resultsDir, { recursive: true });
const stamp = started.toISOString().replace(/[:.]/g, '-');
const machine = {
  ...machineInfo(),
  cpus: cpuCount,
  memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
  kernel: os.release(),
  pinned: pin,
  openFilesSoft: ulimit('-n'),
  openFilesHard: ulimit('-Hn'),
  loadAverageAtStart: os.loadavg(),
};
const output: Record<string, unknown> = {
  started: started.toISOString(),
  machine,
  options: { quick, rounds, only, paths: paths ?? 'all', scenarios: scenarios ?? 'all', profile: values.profile },
};
let exitCode = 0;

try {
  const pki = mintPki(dir);
  const hboneOpts = { quick, rounds, dir, pki, gatewayCpu: pin ? 0 : null, log, ...(paths ? { paths } : {}), ...(scenarios ? { scenarios } : {}) };

  // The waypoint's process under test on the gateway CPU; its stand-in and terminator beside this process.
  const waypointOpts = { ...hboneOpts, otherCpu: pin ? 1 : null };
  if (values.profile) {
    // Without --only: the one-hop gateway, as before; --only picks hbone and/or waypoint.
    const profiles = [
      ...(values.only === undefined || only.includes('hbone') ? await profileHbone(hboneOpts) : []),
      ...(values.only !== undefined && only.includes('waypoint') ? await profileWaypoint(waypointOpts) : []),
    ];
    process.stdout.write(renderProfiles(profiles) + '\n');
    output['profiles'] = profiles;
    if (!values.keep) log(`profiles are deleted with ${dir}; pass --keep to keep them`);
  } else {
    for (const suite of only) {
      const t0 = Date.now();
      if (suite === 'hbone') {
        const result = await runHboneBench(hboneOpts);
        process.stdout.write(`\n== hbone (data plane), ${rounds} rounds${quick ? ', quick' : ''} ==\n${renderHboneBench(result)}\n`);
        output['hbone'] = result;
      } else if (suite === 'waypoint') {
        const result = await runWaypointBench(waypointOpts);
        process.stdout.write(`\n== waypoint (double hop), ${rounds} rounds${quick ? ', quick' : ''} ==\n${renderWaypointBench(result)}\n`);
        output['waypoint'] = result;
      } else if (suite === 'audit-sync') {
        const result = await runAuditSyncBench({ ...hboneOpts, ...(values['audit-before'] ? { before: values['audit-before'] } : {}) });
        process.stdout.write(`\n== audit-sync (durability cost per CONNECT), ${rounds} rounds${quick ? ', quick' : ''} ==\n${renderAuditSyncBench(result)}\n`);
        output['audit-sync'] = result;
      } else {
        output[suite] = await runExternalSuite(suite as 'decision' | 'audit', { quick, rounds, log, write: false });
      }
      log(`${suite} took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  }
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
  output['error'] = String((err as Error)?.message ?? err);
  exitCode = 1;
} finally {
  output['durationSeconds'] = (Date.now() - started.getTime()) / 1000;
  const file = path.join(resultsDir, `${values.profile ? 'profile' : 'bench'}-${stamp}.json`);
  writeFileSync(file, JSON.stringify(output, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
  process.stdout.write(`\nwrote ${path.relative(process.cwd(), file)} (${(output['durationSeconds'] as number).toFixed(0)} s)\n`);
  if (values.keep) log(`working directory kept: ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);

/**
 * The decision and audit suites belong to their modules' owners; each exports
 * `run<Name>Bench(opts)` and optionally `render<Name>Bench(result)`. A suite whose file is not
 * there yet is reported as missing, never faked.
 */
async function runExternalSuite(suite: 'decision' | 'audit', opts: { quick: boolean; rounds: number; log: (l: string) => void; write: boolean }): Promise<unknown> {
  const spec = suite === 'decision'
    ? { file: './decision.bench.ts', run: 'runDecisionBench', render: 'renderDecisionBench', title: 'decision time vs rules' }
    : { file: './audit-summary.bench.ts', run: 'runAuditBench', render: 'renderAuditBench', title: 'audit review' };
  if (!existsSync(new URL(spec.file, import.meta.url))) {
    const msg = `${spec.file} does not exist yet: suite ${suite} not run`;
    process.stdout.write(`\n== ${suite} ==\n${msg}\n`);
    return { missing: msg };
  }
  const mod = (await import(spec.file)) as Record<string, unknown>;
  const run = mod[spec.run];
  if (typeof run !== 'function') {
    const msg = `${spec.file} does not export ${spec.run}(opts): suite ${suite} not run`;
    process.stdout.write(`\n== ${suite} ==\n${msg}\n`);
    return { missing: msg };
  }
  const result: unknown = await (run as (o: typeof opts) => Promise<unknown>)(opts);
  const render = mod[spec.render];
  let text: string;
  if (typeof render === 'function') text = String((render as (r: unknown) => unknown)(result));
  else if (typeof result === 'string') text = result;
  else if (result && typeof result === 'object' && typeof (result as { table?: unknown }).table === 'string') text = (result as { table: string }).table;
  else text = JSON.stringify(result, null, 2);
  process.stdout.write(`\n== ${suite}: ${spec.title} ==\n${text}\n`);
  return result;
}
