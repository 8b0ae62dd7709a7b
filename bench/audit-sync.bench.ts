/**
 * What the audit log's durability costs per CONNECT (issue 16, docs/operating.md "Audit log
 * guarantees"): the gateway with each `audit.sync` value (`none`, `batch`, `always`: write-ahead
 * decision records, group commit, an fsync per group or per record) against the build from before
 * write-ahead ("before": records buffered up to 16 KiB or 1 s, the 200 sent at once), in the same
 * run, interleaved rounds, medians of same-round ratios.
 *
 * "before" is built from git into the working directory (this checkout's node_modules linked,
 * compiled with tsc): by default this checkout's HEAD with the audit writer of the commit before
 * write-ahead (src/audit/logger.ts as it was: no write-ahead, so the CONNECT path records and
 * answers at once, src/hbone/records.ts), so the two differ only in the writer; with
 * `--audit-before REF`, the whole tree at REF. Without git it is skipped (and said so).
 *
 * Per variant and round, a fresh gateway pinned to the gateway CPU (audit log to a file in the
 * working directory, 100-rule policy):
 *   connect x1   open, 100-byte echo, close, one at a time: gateway CPU per CONNECT and the p50 of
 *                the whole exchange (the 200 waits for the record's write)
 *   connect x64  the same with 64 in flight (several records per group): gateway CPU per CONNECT
 *   echo         64-byte ping-pong over one established tunnel: p50 round trip (no record written)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { connectHbone, ztunnelHeaders, type HboneClientSession } from '../src/hbone/client.ts';
import { startBackendProcess } from './lib/backend.ts';
import { startGateway, type GatewayFiles } from './lib/gateway-process.ts';
import { GATEWAY_SPIFFE_ID, type BenchPki } from './lib/pki.ts';
import { writeBenchPolicies } from './lib/policies.ts';
import { cpuSeconds } from './lib/proc.ts';
import { fmt, median, quantile, table } from './lib/stats.ts';
import { echoLatency, echoOnce, runConcurrent } from './lib/traffic.ts';

export const AUDIT_SYNC_VARIANTS = ['before', 'none', 'batch', 'always'] as const;
export type AuditSyncVariant = (typeof AUDIT_SYNC_VARIANTS)[number];

export interface AuditSyncBenchOptions {
  quick: boolean;
  rounds: number;
  dir: string;
  pki: BenchPki;
  gatewayCpu: number | null;
  log?: (line: string) => void;
  /** Git ref of the "before" build; default the parent of the write-ahead commit. */
  before?: string;
}

export interface AuditSyncRow {
  variant: AuditSyncVariant;
  metric: 'connect1CpuUs' | 'connect1P50Us' | 'connect64CpuUs' | 'echoP50Us';
  /** One value per round. */
  values: number[];
}

export interface AuditSyncBenchResult {
  rows: AuditSyncRow[];
  /** variant / before, per metric: the median of the same-round ratios. */
  ratios: { variant: AuditSyncVariant; metric: AuditSyncRow['metric']; median: number }[];
  before: { ref: string; commit: string } | { skipped: string };
  settings: { connect1: number; connect64: number; echoMessages: number; rounds: number };
  notes: string[];
}

const REPO = new URL('..', import.meta.url).pathname;

/**
 * The writer of before write-ahead, made to build in today's tree: its `sync` option was a boolean
 * (today's config passes `sync: 'none'`, which it would take as true: synchronous writes), and the
 * workers code imports the write-ahead bound from it.
 */
function oldWriterInTodaysTree(source: string): string {
  const patched = source
    .replace('const sync = options.sync ?? false;', 'const sync = false; // before write-ahead: asynchronous, buffered')
    .replace('export interface AuditLoggerOptions {', 'export interface AuditLoggerOptions {\n  onFailure?: unknown;\n  log?: unknown;')
    .replace('  sync?: boolean;', '  sync?: unknown;');
  if (!patched.includes('const sync = false;') || !patched.includes('sync?: unknown;')) throw new Error('the old src/audit/logger.ts no longer has the lines this bench patches');
  return `${patched}\nexport const WRITE_AHEAD_BOUND_MS = 1000;\n`;
}

/** Builds the "before" gateway; returns its bin/waygate.js, or why not. */
function buildBefore(dir: string, ref: string | undefined, log: (l: string) => void): { bin: string; ref: string; commit: string } | { skipped: string } {
  try {
    const git = (...args: string[]): string => execFileSync('git', ['-C', REPO, ...args], { encoding: 'utf8' }).trim();
    const out = path.join(dir, 'before');
    mkdirSync(out, { recursive: true });
    let commit: string;
    if (ref) {
      commit = git('rev-parse', ref);
      log(`audit-sync: building "before" (${commit.slice(0, 12)}, the whole tree) in ${out}`);
      execFileSync('sh', ['-c', `git -C "${REPO}" archive ${commit} | tar -x -C "${out}"`]);
    } else {
      const introduced = git('log', '--format=%H', '-1', '--grep=write-ahead decision records with group commit');
      if (!introduced) return { skipped: 'no write-ahead commit in this history (pass --audit-before REF)' };
      commit = git('rev-parse', `${introduced}^`);
      const head = git('rev-parse', 'HEAD');
      ref = `HEAD (${head.slice(0, 12)}) with src/audit/logger.ts of ${introduced.slice(0, 7)}^`;
      log(`audit-sync: building "before" (${ref}) in ${out}`);
      execFileSync('sh', ['-c', `git -C "${REPO}" archive ${head} | tar -x -C "${out}"`]);
      writeFileSync(path.join(out, 'src/audit/logger.ts'), oldWriterInTodaysTree(git('show', `${commit}:src/audit/logger.ts`)));
    }
    symlinkSync(path.join(REPO, 'node_modules'), path.join(out, 'node_modules'));
    execFileSync(process.execPath, [path.join(REPO, 'node_modules/typescript/bin/tsc'), '-p', path.join(out, 'tsconfig.build.json')], { stdio: 'inherit' });
    const bin = path.join(out, 'bin', 'waygate.js');
    if (!existsSync(bin)) return { skipped: `the build of ${ref} has no bin/waygate.js` };
    return { bin, ref, commit };
  } catch (err) {
    return { skipped: `cannot build the "before" gateway from git: ${(err as Error).message.split('\n')[0]}` };
  }
}

function hboneConnect(pki: BenchPki, port: number): Promise<HboneClientSession> {
  return connectHbone({ address: { host: '127.0.0.1', port }, cert: pki.client.cert, key: pki.client.key, ca: pki.client.ca, expectedServerSpiffeId: GATEWAY_SPIFFE_ID });
}

let srcPort = 40000;
async function openTunnel(session: HboneClientSession, authority: string): Promise<Duplex> {
  srcPort = srcPort >= 60000 ? 40000 : srcPort + 1;
  const t = await session.openTunnel(authority, ztunnelHeaders({ srcIp: '10.0.0.5', srcPort, namespace: 'bench', workload: 'loadgen', service: 'loadgen', cluster: 'bench' }));
  if (t.status !== 200) throw new Error(`CONNECT ${authority} answered ${t.status}`);
  return t.stream;
}

export async function runAuditSyncBench(opts: AuditSyncBenchOptions): Promise<AuditSyncBenchResult> {
  const log = opts.log ?? (() => undefined);
  const notes: string[] = [];
  const settings = opts.quick
    ? { connect1: 300, connect64: 1_000, echoMessages: 500, rounds: opts.rounds }
    : { connect1: 2_000, connect64: 4_000, echoMessages: 5_000, rounds: opts.rounds };
  const built = buildBefore(opts.dir, opts.before, log);
  const before = 'skipped' in built ? built : { ref: built.ref, commit: built.commit };
  if ('skipped' in built) notes.push(`"before" not measured: ${built.skipped}; no ratios`);
  const variants = AUDIT_SYNC_VARIANTS.filter((v) => v !== 'before' || !('skipped' in built));
  const policiesDir = path.join(opts.dir, 'policies-audit-sync');
  writeBenchPolicies(policiesDir, { rules: 100 });
  const backend = await startBackendProcess();
  const authority = `127.0.0.1:${backend.port}`;
  const rows = new Map<string, AuditSyncRow>();
  const put = (variant: AuditSyncVariant, metric: AuditSyncRow['metric'], round: number, v: number): void => {
    const key = `${variant}/${metric}`;
    let row = rows.get(key);
    if (!row) rows.set(key, (row = { variant, metric, values: Array.from({ length: opts.rounds }, () => Number.NaN) }));
    row.values[round] = v;
  };
  try {
    for (let round = 0; round < opts.rounds; round++) {
      // Rotated per round, so no variant always runs first (a cold page cache, a warming CPU).
      const order = variants.map((_, i) => variants[(i + round) % variants.length]!);
      for (const variant of order) {
        log(`audit-sync: round ${round + 1}/${opts.rounds}, ${variant}`);
        const files: GatewayFiles = { ...opts.pki.files, policiesDir, auditFile: path.join(opts.dir, `audit-sync-${variant}-${round}.jsonl`) };
        const gw = await startGateway(files, {
          cpu: opts.gatewayCpu,
          configName: `gateway-audit-sync-${variant}.yaml`,
          ...(variant === 'before' ? { bin: (built as { bin: string }).bin } : { auditLines: [`sync: ${variant}`] }),
        });
        const session = await hboneConnect(opts.pki, gw.port);
        try {
          const open = (): Promise<Duplex> => openTunnel(session, authority);
          await runConcurrent(200, 8, () => echoOnce(open, 100)); // warm-up: JIT, caches, file
          // connect x1: CPU and the exchange's latency.
          const times: number[] = [];
          let cpu0 = cpuSeconds(gw.pid);
          await runConcurrent(settings.connect1, 1, async () => {
            const t0 = process.hrtime.bigint();
            await echoOnce(open, 100);
            times.push(Number(process.hrtime.bigint() - t0) / 1000);
          });
          put(variant, 'connect1CpuUs', round, ((cpuSeconds(gw.pid) - cpu0) / settings.connect1) * 1e6);
          put(variant, 'connect1P50Us', round, quantile(times, 0.5));
          cpu0 = cpuSeconds(gw.pid);
          await runConcurrent(settings.connect64, 64, () => echoOnce(open, 100));
          put(variant, 'connect64CpuUs', round, ((cpuSeconds(gw.pid) - cpu0) / settings.connect64) * 1e6);
          put(variant, 'echoP50Us', round, quantile(await echoLatency(open, settings.echoMessages), 0.5));
        } finally {
          session.destroy();
          await gw.stop();
        }
      }
    }
  } finally {
    await backend.close();
  }
  const ratios: AuditSyncBenchResult['ratios'] = [];
  for (const row of rows.values()) {
    const base = rows.get(`before/${row.metric}`);
    if (!base || row.variant === 'before') continue;
    ratios.push({ variant: row.variant, metric: row.metric, median: median(row.values.map((v, i) => v / base.values[i]!)) });
  }
  return { rows: [...rows.values()], ratios, before, settings, notes };
}

const METRIC_LABEL: Record<AuditSyncRow['metric'], string> = {
  connect1CpuUs: 'CPU/CONNECT x1 (us)',
  connect1P50Us: 'CONNECT+echo p50 x1 (us)',
  connect64CpuUs: 'CPU/CONNECT x64 (us)',
  echoP50Us: 'echo p50 (us)',
};

export function renderAuditSyncBench(r: AuditSyncBenchResult): string {
  const metrics = Object.keys(METRIC_LABEL) as AuditSyncRow['metric'][];
  const variants = [...new Set(r.rows.map((x) => x.variant))];
  const cell = (v: AuditSyncVariant, m: AuditSyncRow['metric']): string => {
    const row = r.rows.find((x) => x.variant === v && x.metric === m);
    const ratio = r.ratios.find((x) => x.variant === v && x.metric === m);
    return row ? `${fmt(median(row.values))}${ratio ? ` (x${fmt(ratio.median, 2)})` : ''}` : '-';
  };
  const lines = [
    table(['variant', ...metrics.map((m) => METRIC_LABEL[m])], variants.map((v) => [v, ...metrics.map((m) => cell(v, m))])),
    'medians over rounds; (xN): median of the same-round ratios to "before"',
    'commit' in r.before ? `before: ${r.before.ref} = ${r.before.commit.slice(0, 12)}` : '',
    ...r.notes,
  ];
  return lines.filter(Boolean).join('\n');
}
