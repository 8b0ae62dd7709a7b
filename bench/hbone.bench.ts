/**
 * Data-plane benchmark: waygate against direct TCP, haproxy, stunnel and a plain node:tls
 * forwarder, in the same run, interleaved rounds, medians of same-round ratios.
 *
 * The gateway and the baselines run as their own processes pinned to CPU 0 (taskset); this
 * process (load generator) pins itself to CPU 1, and the backend, its own process, inherits that CPU. CPU seconds come from /proc/<pid>/stat,
 * so every forwarder is measured the same way from outside.
 *
 * Scenarios (names accepted by `--scenarios`):
 *   bulk       1 stream up then down (`bulkBytes` each way)
 *   multi      8 and 64 streams at once, half up half down (one HBONE connection for waygate)
 *   echo       64-byte ping-pong over one established stream: p50/p99 round trip; forwarder and
 *              client CPU per message
 *   connect    open, 100-byte echo, close; 1 and 64 in flight. waygate: a CONNECT on its open
 *              connection (100-rule policy, audit log to a file); baselines: a new mTLS connection
 *   handshake  new connection + first exchange (waygate: TLS + HTTP/2 + first CONNECT), 8 in flight
 *   idle       RSS per idle tunnel at 1,000 and 10,000 tunnels, and per HTTP/2 connection (fresh gateway)
 *   reload     10,000-rule policy reloads while tunnels are being opened (fresh gateway); then, under
 *              the same traffic, policy changes by atomic rename to a watched file, with the audit
 *              log beside it and elsewhere: write to applied, to the first enforced CONNECT
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { connectHbone, ztunnelHeaders, type HboneClientSession } from '../src/hbone/client.ts';
import { DEFAULT_SETTLE_MS } from '../src/policy/sources.ts';
import {
  startHaproxy, startNodeTlsForwarder, startStunnel, type RunningForwarder,
} from './baselines/forwarders.ts';
import { startBackendProcess, type Backend } from './lib/backend.ts';
import { startGateway, type GatewayFiles, type RunningGateway } from './lib/gateway-process.ts';
import { GATEWAY_SPIFFE_ID, type BenchPki } from './lib/pki.ts';
import { summariseCpuProfile, type ProfileSummary } from './lib/cpuprofile.ts';
import { replaceBenchPolicyFile, writeBenchPolicies } from './lib/policies.ts';
import { runRounds, warmUp, type RoundScenario } from './lib/rounds.ts';
import { cpuSeconds, rssBytes } from './lib/proc.ts';
import { fmt, quantile, spread, table, type Spread } from './lib/stats.ts';
import {
  directOpener, download, echoLatency, echoOnce, runConcurrent, tlsOpener, upload, type Opener,
} from './lib/traffic.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

export const ALL_PATHS = ['direct', 'haproxy', 'stunnel', 'node-tls', 'waygate'] as const;
export const ALL_SCENARIOS = ['bulk', 'multi', 'echo', 'connect', 'handshake', 'idle', 'reload'] as const;

export interface HboneBenchOptions {
  quick: boolean;
  rounds: number;
  /** Working directory (certificates, configs, policies, audit logs). */
  dir: string;
  pki: BenchPki;
  /** CPU the measured processes are pinned to, or null without taskset. */
  gatewayCpu: number | null;
  /** Restrict to these paths (default all). */
  paths?: readonly string[];
  /** Restrict to these scenarios (default all). */
  scenarios?: readonly string[];
  /** Progress lines (stderr). */
  log?: (line: string) => void;
}

/** One measured quantity of one path, one value per round (NaN where a round did not run it). */
export interface Row {
  scenario: string;
  path: string;
  metric: string;
  unit: string;
  values: number[];
}

export interface Comparison extends Spread {
  scenario: string;
  metric: string;
  baseline: string;
}

export interface Target extends Spread {
  name: string;
  target: string;
  /** Whether the median meets the target; null when it could not be measured. */
  met: boolean | null;
  note?: string;
}

export interface HboneBenchResult {
  rows: Row[];
  /** waygate / baseline, same round, per scenario metric. */
  comparisons: Comparison[];
  targets: Target[];
  notes: string[];
  reload?: ReloadOutcome;
}

interface PathUnderTest {
  name: string;
  pid: number | null;
  /** One end-to-end stream (for waygate: a CONNECT on the shared connection). */
  open: Opener;
  /** A new connection plus its first stream, closed with the stream (the handshake scenario). */
  openFresh: Opener;
}

interface Measurement {
  wallSeconds: number;
  cpuSeconds: number;
}

async function measure(pid: number | null, fn: () => Promise<void>): Promise<Measurement> {
  const cpu0 = pid === null ? 0 : cpuSeconds(pid);
  const t0 = process.hrtime.bigint();
  await fn();
  const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu1 = pid === null ? 0 : cpuSeconds(pid);
  return { wallSeconds, cpuSeconds: cpu1 - cpu0 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function hboneConnect(pki: BenchPki, port: number): Promise<HboneClientSession> {
  return connectHbone({
    address: { host: '127.0.0.1', port },
    cert: pki.client.cert,
    key: pki.client.key,
    ca: pki.client.ca,
    expectedServerSpiffeId: GATEWAY_SPIFFE_ID,
  });
}

let srcPort = 40000;
/** The headers ztunnel sends, so the gateway parses what it parses in a mesh. */
function meshHeaders(): Record<string, string> {
  srcPort = srcPort >= 60000 ? 40000 : srcPort + 1;
  return ztunnelHeaders({ srcIp: '10.0.0.5', srcPort, namespace: 'bench', workload: 'loadgen', service: 'loadgen', cluster: 'bench' });
}

async function openTunnel(session: HboneClientSession, authority: string): Promise<Duplex> {
  const t = await session.openTunnel(authority, meshHeaders());
  if (t.status !== 200) throw new Error(`CONNECT ${authority} answered ${t.status}`);
  return t.stream;
}

/** The waygate path: tunnels on one shared HBONE connection; fresh connections for the handshake scenario. */
async function hbonePath(gw: RunningGateway, pki: BenchPki, backend: Backend): Promise<{ path: PathUnderTest; close(): Promise<void> }> {
  const shared = await hboneConnect(pki, gw.port);
  const authority = `127.0.0.1:${backend.port}`;
  return {
    path: {
      name: 'waygate',
      pid: gw.pid,
      open: () => openTunnel(shared, authority),
      openFresh: async () => {
        const session = await hboneConnect(pki, gw.port);
        const stream = await openTunnel(session, authority);
        // The connection lives as long as its one tunnel, like a TLS forwarder's.
        stream.once('close', () => session.destroy());
        return stream;
      },
    },
    close: () => shared.close(),
  };
}

/** Parses "<= 1.5" / ">= 0.8" and checks a median against it. */
function meets(target: string, value: number): boolean | null {
  const m = /^(<=|>=)\s*([\d.]+)/.exec(target);
  if (!m || !Number.isFinite(value)) return null;
  return m[1] === '<=' ? value <= Number(m[2]) : value >= Number(m[2]);
}

export async function runHboneBench(opts: HboneBenchOptions): Promise<HboneBenchResult> {
  const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const want = (p: string) => !opts.paths || opts.paths.includes(p);
  const scenario = (s: string) => !opts.scenarios || opts.scenarios.includes(s);
  const { dir, pki, gatewayCpu, quick } = opts;
  const notes: string[] = [];

  const backend = await startBackendProcess();
  const forwarders: RunningForwarder[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  const paths: PathUnderTest[] = [];
  const rows = new Map<string, Row>();
  const record = (scn: string, pathName: string, metric: string, unit: string, round: number, value: number) => {
    const key = `${scn}|${pathName}|${metric}`;
    let row = rows.get(key);
    if (!row) rows.set(key, (row = { scenario: scn, path: pathName, metric, unit, values: [] }));
    row.values[round] = value;
  };
  let reload: ReloadOutcome | undefined;

  try {
    if (want('direct')) {
      const open = directOpener(backend.port);
      paths.push({ name: 'direct', pid: null, open, openFresh: open });
    }
    const starters = [
      ['haproxy', () => startHaproxy(pki.files, backend.port, gatewayCpu)],
      ['stunnel', () => startStunnel(pki.files, backend.port, gatewayCpu)],
      ['node-tls', () => startNodeTlsForwarder(pki.files, backend.port, gatewayCpu)],
    ] as const;
    for (const [name, start] of starters) {
      if (!want(name)) continue;
      const f = await start();
      if (!f) {
        notes.push(`${name} is not installed (npm run bench:setup): its ratios are skipped`);
        continue;
      }
      forwarders.push(f);
      cleanups.push(() => f.stop());
      const open = tlsOpener(f.port, pki.client);
      paths.push({ name: f.name, pid: f.pid, open, openFresh: open });
    }
    const mainScenarios = ['bulk', 'multi', 'echo', 'connect', 'handshake'].some(scenario);
    if (want('waygate') && mainScenarios) {
      const policiesDir = path.join(dir, 'policies-main');
      writeBenchPolicies(policiesDir, { rules: 100 });
      const gw = await startGateway(gatewayFiles(opts, policiesDir, 'audit-main.jsonl'), { cpu: gatewayCpu, configName: 'gateway-main.yaml' });
      const hb = await hbonePath(gw, pki, backend);
      cleanups.push(async () => {
        await hb.close();
        await gw.stop();
      });
      paths.push(hb.path);
    }

    const bulkBytes = quick ? 64 * MiB : 1 * GiB;
    const multiBytes = quick ? 32 * MiB : 256 * MiB;
    const echoMessages = quick ? 1_000 : 5_000;
    // Operations per measurement: handshake-bound paths run fewer (CPU per op is normalised anyway).
    const connectOps = (p: PathUnderTest, inFlight: number) =>
      p.name === 'waygate' || p.name === 'direct' ? (quick ? 500 : inFlight === 1 ? 2_000 : 4_000) : quick ? 50 : 150;
    const handshakeOps = quick ? 40 : 150;

    // Warm-up: JIT, TLS session caches and lazy initialisation happen before round 1.
    await warmUp(paths, { connects: { count: 100, inFlight: 16 }, freshConnects: { count: 20, inFlight: 4 } }, log, 'warm-up');

    const scenarios: RoundScenario<PathUnderTest>[] = [
      {
        name: 'bulk',
        run: async (p, round) => {
          const up = await measure(p.pid, () => upload(p.open, bulkBytes));
          const down = await measure(p.pid, () => download(p.open, bulkBytes));
          const wall = up.wallSeconds + down.wallSeconds;
          record('bulk 1 stream', p.name, 'throughput', 'MiB/s', round, (2 * bulkBytes) / MiB / wall);
          if (p.pid !== null) record('bulk 1 stream', p.name, 'cpu', 's/GiB', round, (up.cpuSeconds + down.cpuSeconds) / ((2 * bulkBytes) / GiB));
          // Each direction on its own: the two take different paths through the gateway (DATA
          // frames in and socket writes out, socket reads in and DATA frames out).
          record('bulk 1 stream', p.name, 'throughput up', 'MiB/s', round, bulkBytes / MiB / up.wallSeconds);
          record('bulk 1 stream', p.name, 'throughput down', 'MiB/s', round, bulkBytes / MiB / down.wallSeconds);
          if (p.pid !== null) {
            record('bulk 1 stream', p.name, 'cpu up', 's/GiB', round, up.cpuSeconds / (bulkBytes / GiB));
            record('bulk 1 stream', p.name, 'cpu down', 's/GiB', round, down.cpuSeconds / (bulkBytes / GiB));
          }
        },
      },
      {
        name: 'multi',
        run: async (p, round) => {
          for (const streams of [8, 64]) {
            const per = Math.floor(multiBytes / streams);
            const m = await measure(p.pid, () =>
              Promise.all(Array.from({ length: streams }, (_, i) => (i % 2 === 0 ? upload(p.open, per) : download(p.open, per)))).then(() => undefined));
            const total = per * streams;
            record(`bulk ${streams} streams`, p.name, 'throughput', 'MiB/s', round, total / MiB / m.wallSeconds);
            if (p.pid !== null) record(`bulk ${streams} streams`, p.name, 'cpu', 's/GiB', round, m.cpuSeconds / (total / GiB));
          }
        },
      },
      {
        name: 'echo',
        run: async (p, round) => {
          let rtts: number[] = [];
          const client0 = process.cpuUsage();
          const m = await measure(p.pid, async () => {
            rtts = await echoLatency(p.open, echoMessages);
          });
          const client = process.cpuUsage(client0);
          record('echo 64 B', p.name, 'p50', 'µs', round, quantile(rtts, 0.5));
          record('echo 64 B', p.name, 'p99', 'µs', round, quantile(rtts, 0.99));
          // A round trip is serial: its latency is the CPU work on the path plus the wake-ups. The
          // forwarder's CPU per message and the client's (TLS for the baselines, TLS + HTTP/2 for
          // waygate, the HBONE client playing ztunnel) say whose work a latency gap is.
          if (p.pid !== null) record('echo 64 B', p.name, 'cpu', 'µs/msg', round, (m.cpuSeconds * 1e6) / echoMessages);
          record('echo 64 B', p.name, 'client cpu', 'µs/msg', round, (client.user + client.system) / echoMessages);
        },
      },
      {
        name: 'connect',
        run: async (p, round) => {
          for (const inFlight of [1, 64]) {
            const n = connectOps(p, inFlight);
            const m = await measure(p.pid, () => runConcurrent(n, inFlight, () => echoOnce(p.open, 100)));
            const name = `open+echo 100 B+close, ${inFlight} in flight`;
            record(name, p.name, 'rate', 'ops/s', round, n / m.wallSeconds);
            if (p.pid !== null) record(name, p.name, 'cpu', 'ms/op', round, (m.cpuSeconds * 1000) / n);
          }
        },
      },
      {
        name: 'handshake',
        run: async (p, round) => {
          const m = await measure(p.pid, () => runConcurrent(handshakeOps, 8, () => echoOnce(p.openFresh, 100)));
          const name = 'new connection + first exchange, 8 in flight';
          record(name, p.name, 'rate', 'ops/s', round, handshakeOps / m.wallSeconds);
          if (p.pid !== null) record(name, p.name, 'cpu', 'ms/op', round, (m.cpuSeconds * 1000) / handshakeOps);
        },
      },
    ];
    await runRounds({ paths, rounds: opts.rounds, seed: 7, scenarios: scenarios.filter((x) => scenario(x.name)), log });

    // The gateway's forwarders must not take CPU from the scenarios that follow.
    while (cleanups.length) await cleanups.pop()!();

    if (want('waygate') && scenario('idle')) {
      const repeats = quick ? 1 : Math.min(3, opts.rounds);
      for (const tunnels of quick ? [1_000] : [1_000, 10_000]) {
        for (let r = 0; r < repeats; r++) {
          const idle = await idleScenario(opts, backend, tunnels, notes);
          if (!idle) break;
          record(`idle tunnels x${tunnels}`, 'waygate', 'rss per tunnel', 'KiB', r, idle.perTunnelKiB);
          record(`idle tunnels x${tunnels}`, 'waygate', `rss per HTTP/2 connection (x${idle.connections})`, 'KiB', r, idle.perConnectionKiB);
          log(`idle ${tunnels}: ${idle.perTunnelKiB.toFixed(2)} KiB/tunnel, ${idle.perConnectionKiB.toFixed(1)} KiB/connection`);
        }
      }
    }

    if (want('waygate') && scenario('reload')) {
      reload = await reloadScenario(opts, backend, log);
      // Then the same traffic against a gateway that watches its policy file, each layout on a fresh one.
      reload.byFile = [];
      for (const layout of Object.keys(AUDIT_LAYOUTS) as AuditLayout[]) reload.byFile.push(await policyChangeByFile(opts, backend, layout, log));
      for (const o of reload.byFile) {
        const scn = `policy change by file under traffic, ${AUDIT_LAYOUTS[o.layout]}`;
        for (const trigger of ['watch', 'admin'] as const) {
          const of = o.samples.filter((x) => x.trigger === trigger);
          const label = trigger === 'watch' ? 'watch' : 'admin (rename, then POST /debug/reload)';
          of.forEach((x, i) => record(scn, 'waygate', `${label}: write to applied`, 'ms', i, x.writeToAppliedMs));
          of.forEach((x, i) => record(scn, 'waygate', `${label}: write to first enforced CONNECT`, 'ms', i, x.writeToEnforcedMs));
          of.filter((x) => x.change === 'revoke').forEach((x, i) =>
            record(scn, 'waygate', `${label}: revoked B answered 200 after the write`, 'count', i, x.oldVerdictAfterWrite));
          of.filter((x) => x.change === 'revoke').forEach((x, i) =>
            record(scn, 'waygate', `${label}: allowed B after the write, decided after the apply (audit)`, 'count', i, x.auditOldVerdictAfterApply));
        }
        record(scn, 'waygate', 'CONNECT rate during the changes', 'ops/s', 0, o.connectsPerSecond);
        record(scn, 'waygate', 'gateway CPU during the changes', '% of a CPU', 0, o.gatewayCpuShare * 100);
        record(scn, 'waygate', 'audit log events in the policy directory', 'per s', 0, o.directoryEvents.audit / o.directoryEvents.seconds);
        record(scn, 'waygate', 'dropped + wrongly decided', 'count', 0, o.dropped + o.wronglyDecided);
      }
      reload.reloadMs.forEach((ms, i) => record('reload 10,000 rules under load', 'waygate', 'reload time', 'ms', i, ms));
      reload.oneFileMs.forEach((ms, i) => record('reload 10,000 rules under load', 'waygate', 'reload time, 1 of 100 files changed', 'ms', i, ms));
      record('reload 10,000 rules under load', 'waygate', 'tunnels opened during reloads', 'count', 0, reload.tunnelsOpened);
      record('reload 10,000 rules under load', 'waygate', 'dropped', 'count', 0, reload.dropped);
      record('reload 10,000 rules under load', 'waygate', 'wrongly decided', 'count', 0, reload.wronglyDecided);
      for (const kind of Object.keys(RELOAD_KINDS) as ReloadKind[]) {
        const of = reload.samples.filter((x) => x.kind === kind);
        const scn = `reload under load: ${RELOAD_KINDS[kind]}`;
        if (kind !== 'none') of.forEach((x, i) => record(scn, 'waygate', 'reload time', 'ms', i, x.ms));
        of.forEach((x, i) => record(scn, 'waygate', 'longest event-loop block (gateway)', 'ms', i, x.blockMs));
        of.forEach((x, i) => record(scn, 'waygate', 'slowest CONNECT during it (client)', 'ms', i, x.connectMaxMs));
      }
      if (reload.heap) {
        const h = reload.heap;
        record('reload heap after GC', 'waygate', 'heap, 100 rules, before the large sets', 'MiB', 0, h.beforeMiB);
        record('reload heap after GC', 'waygate', 'heap, 10,000 rules in force', 'MiB', 0, h.largeMiB);
        record('reload heap after GC', 'waygate', 'heap, 100 rules again (large set replaced)', 'MiB', 0, h.afterMiB);
        record('reload heap after GC', 'waygate', 'same without code space: before / 10,000 / after', 'MiB', 0, h.beforeNoCodeMiB);
        record('reload heap after GC', 'waygate', 'same without code space: before / 10,000 / after', 'MiB', 1, h.largeNoCodeMiB);
        record('reload heap after GC', 'waygate', 'same without code space: before / 10,000 / after', 'MiB', 2, h.afterNoCodeMiB);
        record('reload heap after GC', 'waygate', 'RSS before / 10,000 rules / after', 'MiB', 0, h.rssBeforeMiB);
        record('reload heap after GC', 'waygate', 'RSS before / 10,000 rules / after', 'MiB', 1, h.rssLargeMiB);
        record('reload heap after GC', 'waygate', 'RSS before / 10,000 rules / after', 'MiB', 2, h.rssAfterMiB);
      }
    }
  } finally {
    while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
    await backend.close();
  }

  const rowList = [...rows.values()];
  const comparisons = compare(rowList);
  return { rows: rowList, comparisons, targets: evaluateTargets(rowList, comparisons, reload), notes, ...(reload ? { reload } : {}) };
}

function gatewayFiles(opts: HboneBenchOptions, policiesDir: string, auditName: string): GatewayFiles {
  return { ...opts.pki.files, policiesDir, auditFile: path.join(opts.dir, auditName) };
}

/** waygate / baseline for every scenario metric both measured in the same round. */
function compare(rows: readonly Row[]): Comparison[] {
  const out: Comparison[] = [];
  for (const w of rows.filter((r) => r.path === 'waygate')) {
    for (const b of rows.filter((r) => r.path !== 'waygate' && r.scenario === w.scenario && r.metric === w.metric)) {
      const ratios = w.values.map((v, i) => v / (b.values[i] ?? Number.NaN));
      out.push({ scenario: w.scenario, metric: w.metric, baseline: b.path, ...spread(ratios) });
    }
  }
  return out;
}

function rowValues(rows: readonly Row[], scenario: string, pathName: string, metric: string): number[] {
  return rows.find((r) => r.scenario === scenario && r.path === pathName && r.metric === metric)?.values ?? [];
}

function evaluateTargets(rows: readonly Row[], comparisons: readonly Comparison[], reload: ReloadOutcome | undefined): Target[] {
  const ratio = (scenario: string, metric: string, baseline: string): Spread =>
    comparisons.find((c) => c.scenario === scenario && c.metric === metric && c.baseline === baseline) ?? spread([]);
  const targets: Target[] = [];
  const add = (name: string, target: string, s: Spread, note?: string) =>
    targets.push({ name, target, ...s, met: meets(target, s.median), ...(note ? { note } : {}) });
  add('gateway CPU s/GiB vs haproxy (bulk 1 stream)', '<= 1.5x', ratio('bulk 1 stream', 'cpu', 'haproxy'));
  add('bulk throughput 1 tunnel vs stunnel', '>= 0.8x', ratio('bulk 1 stream', 'throughput', 'stunnel'));
  add('gateway CPU ms per CONNECT, 64 in flight (absolute)', '<= 0.25 ms',
    spread(rowValues(rows, 'open+echo 100 B+close, 64 in flight', 'waygate', 'cpu')));
  add('CONNECT/s on one connection vs haproxy new mTLS conn/s (64 in flight)', '>= 8x',
    ratio('open+echo 100 B+close, 64 in flight', 'rate', 'haproxy'),
    'rates are bounded by the one load-generator core; the CPU-capacity ratio is in the comparisons');
  add('echo p50 vs haproxy', '<= 1.2x', ratio('echo 64 B', 'p50', 'haproxy'));
  add('idle RSS per tunnel at 10,000 tunnels (absolute KiB)', '<= 12 KiB', spread(rowValues(rows, 'idle tunnels x10000', 'waygate', 'rss per tunnel')));
  if (reload) {
    add('10,000-rule reload under load (absolute ms)', '<= 1000 ms', spread(reload.reloadMs));
    add('dropped or wrongly decided tunnels during reloads', '<= 0', spread([reload.dropped + reload.wronglyDecided]));
    const blocks = (kinds: readonly ReloadKind[]) => reload.samples.filter((x) => kinds.includes(x.kind)).map((x) => x.blockMs);
    add('longest event-loop block during a 10,000-rule reload under load (worst of all)', '<= 50 ms',
      spread([Math.max(...blocks(['allNew', 'allNewFiles', 'oneFile']))]));
    add('longest event-loop block, 10,000 rules in 100 files (worst)', '<= 50 ms', spread([Math.max(...blocks(['allNewFiles', 'oneFile']))]));
    add('heap after GC once the large set is replaced, vs before it (ratio)', '<= 1.1x',
      spread(reload.heap ? [reload.heap.afterMiB / reload.heap.beforeMiB] : []));
    // A change must apply within 1 s of the write under any load (docs/operating.md "Policy reload"): the worst change counts.
    const byFile = reload.byFile ?? [];
    const watched = (layout: AuditLayout) => byFile.filter((o) => o.layout === layout).flatMap((o) => o.samples.filter((x) => x.trigger === 'watch'));
    for (const layout of Object.keys(AUDIT_LAYOUTS) as AuditLayout[]) {
      const w = watched(layout);
      // A change never enforced counts as the time the bench waited for it (a lower bound).
      const flipped = w.filter((x) => x.flips);
      const never = flipped.filter((x) => !Number.isFinite(x.writeToEnforcedMs)).length;
      add(`policy change by file, watched, ${AUDIT_LAYOUTS[layout]}: write to first enforced CONNECT (worst)`, '<= 1000 ms',
        spread(flipped.length ? [Math.max(...flipped.map((x) => (Number.isFinite(x.writeToEnforcedMs) ? x.writeToEnforcedMs : x.waitedMs)))] : []),
        never ? `${never} of ${flipped.length} changes never enforced while traffic flowed: the time waited is shown` : undefined);
    }
    add('policy changes by file: CONNECTs decided by the previous set after a change applied, dropped, wrongly decided', '<= 0',
      spread(byFile.length ? [byFile.reduce((n, o) => n + o.dropped + o.wronglyDecided + o.samples.reduce((m, x) => m + x.auditOldVerdictAfterApply, 0), 0)] : []));
  } else {
    add('10,000-rule reload under load (absolute ms)', '<= 1000 ms', spread([]));
  }
  return targets;
}

/* ------------------------------------------------------------------------------------------ idle */

interface IdleOutcome {
  perTunnelKiB: number;
  perConnectionKiB: number;
  connections: number;
}

/** Hard limit on open files of this process (the backend holds one socket per idle tunnel). */
function openFileLimit(): number {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -n']).toString().trim()) || 1024;
  } catch {
    return 1024;
  }
}

/**
 * On a fresh gateway: RSS after start, after opening the connections (idle, no tunnels), after
 * opening `tunnels` tunnels across them (100 per connection, as ztunnel caps its pools). Each
 * tunnel is a real upstream socket in echo mode, then idle.
 */
async function idleScenario(opts: HboneBenchOptions, backend: Backend, tunnels: number, notes: string[]): Promise<IdleOutcome | null> {
  const limit = openFileLimit();
  const perConnection = 100;
  const connections = Math.max(100, Math.ceil(tunnels / perConnection));
  // The backend (this process) holds one socket per tunnel; the gateway one upstream socket per tunnel.
  if (limit < tunnels + connections + 512) {
    notes.push(`idle x${tunnels} skipped: ulimit -n is ${limit}; raise it (ulimit -n ${tunnels + 2048}) to measure`);
    return null;
  }
  const policiesDir = path.join(opts.dir, 'policies-idle');
  writeBenchPolicies(policiesDir, { rules: 100 });
  const gw = await startGateway(gatewayFiles(opts, policiesDir, 'audit-idle.jsonl'), { cpu: opts.gatewayCpu, configName: 'gateway-idle.yaml' });
  const sessions: HboneClientSession[] = [];
  const streams: Duplex[] = [];
  try {
    // One warm-up tunnel so lazily loaded code is not counted as per-tunnel memory.
    const warm = await hboneConnect(opts.pki, gw.port);
    await runConcurrent(50, 10, () => echoOnce(() => openTunnel(warm, `127.0.0.1:${backend.port}`), 100));
    await warm.close();
    await sleep(500);
    const rss0 = rssBytes(gw.pid);
    for (let c = 0; c < connections; c++) sessions.push(await hboneConnect(opts.pki, gw.port));
    await sleep(500);
    const rss1 = rssBytes(gw.pid);
    const authority = `127.0.0.1:${backend.port}`;
    for (let c = 0; c * perConnection < tunnels; c++) {
      const session = sessions[c]!;
      const opened = await Promise.all(Array.from({ length: Math.min(perConnection, tunnels - c * perConnection) }, () => openTunnel(session, authority)));
      for (const s of opened) {
        s.on('error', () => undefined);
        s.write('E');
        streams.push(s);
      }
    }
    // Prove they are live tunnels, not refused streams: one round trip on a sample.
    for (const s of streams.filter((_, i) => i % Math.max(1, Math.floor(tunnels / 20)) === 0)) {
      s.write('x');
      await once(s, 'data');
    }
    await sleep(1000);
    const rss2 = rssBytes(gw.pid);
    return {
      perTunnelKiB: (rss2 - rss1) / 1024 / tunnels,
      perConnectionKiB: (rss1 - rss0) / 1024 / connections,
      connections,
    };
  } finally {
    for (const s of sessions) s.destroy();
    await gw.stop();
  }
}

/* ---------------------------------------------------------------------------------------- reload */

export interface ReloadOutcome {
  reloadMs: number[];
  /** Reloads of the same 10,000 rules kept in 100 files, one file changed each time. */
  oneFileMs: number[];
  /** Every timed reload, by kind (see RELOAD_KINDS), with its longest event-loop block. */
  samples: ReloadSample[];
  /** Heap after a full GC, with the startup-sized set, with 10,000 rules, and after replacing them. */
  heap: ReloadHeap | null;
  tunnelsOpened: number;
  /** Tunnels to the always-allowed destination that failed, plus long-lived tunnels that died. */
  dropped: number;
  /** Decision records whose verdict differs from what their snapshot version must decide. */
  wronglyDecided: number;
  decisionsChecked: number;
  failures: string[];
  /** Policy changes by atomic rename under the same traffic, watched vs admin-triggered, per audit-log layout (policyChangeByFile). */
  byFile?: PolicyChangeOutcome[];
}

/** The reloads the scenario times, in the order it runs them. */
export const RELOAD_KINDS = {
  none: 'no reload, traffic only (floor)',
  small: '100 rules, 1 file (baseline)',
  allNew: '10,000 rules, 1 file, every rule new',
  allNewFiles: '10,000 rules in 100 files, every rule new',
  oneFile: '10,000 rules in 100 files, 1 file changed',
  oversized: '8.8 MiB set (70,000 rules), refused by the size limit',
} as const;
export type ReloadKind = keyof typeof RELOAD_KINDS;

export interface ReloadSample {
  kind: ReloadKind;
  /** Wall time of `POST /debug/reload` (the response is the reload record). */
  ms: number;
  /** Longest event-loop block inside the gateway during the reload (gateway-probe.ts). */
  blockMs: number;
  /** Slowest CONNECT (request to 200) to the always-allowed destination that overlapped the reload, seen by the client. */
  connectMaxMs: number;
  result: string;
}

export interface ReloadHeap {
  /** After the baseline reloads, before any large set: heapUsed after two full GCs. */
  beforeMiB: number;
  /** With the 10,000-rule set in force. */
  largeMiB: number;
  /** After the large set was replaced by a 100-rule set again. */
  afterMiB: number;
  /** The same three without the code space (JIT code of what ran, e.g. the YAML parser optimised by the large loads). */
  beforeNoCodeMiB: number;
  largeNoCodeMiB: number;
  afterNoCodeMiB: number;
  rssBeforeMiB: number;
  rssLargeMiB: number;
  rssAfterMiB: number;
}

/**
 * Two 10,000-rule sets that differ in one verdict: both allow the load generator to backend A;
 * only set Y allows backend B. While 16 workers keep opening tunnels to A and B and 100 long-lived
 * tunnels to A stay open, the sets are swapped with `POST /debug/reload` (the admin trigger; the
 * response is the reload record, so its wall time is the reload time). Then the common edit is
 * timed too: the same rules in 100 files, one file changed per reload. Afterwards:
 *   - dropped: any tunnel to A refused, reset or short; any long-lived tunnel that no longer echoes;
 *     any answer to B other than 200/401;
 *   - wrongly decided: every decision record is checked against the set its `snapshot.version`
 *     names (A always allowed; B allowed exactly under Y). The audit log is read after a graceful
 *     stop, which flushes it.
 *
 * The reload scenario also measures, in the same run and under the same traffic: the longest event-loop block inside
 * the gateway during each reload (bench/lib/gateway-probe.ts, loaded into the gateway process) and
 * the slowest CONNECT the client saw meanwhile, for every kind of reload in RELOAD_KINDS, 100-rule
 * reloads first as the baseline; and the gateway's heap after a full GC before the large sets,
 * with one in force, and after it was replaced by a 100-rule set (traffic paused for each reading,
 * so in-flight tunnels are not counted).
 */
async function reloadScenario(opts: HboneBenchOptions, backendA: Backend, log: (line: string) => void): Promise<ReloadOutcome> {
  const backendB = await startBackendProcess();
  const policiesDir = path.join(opts.dir, 'policies-reload');
  mkdirSync(policiesDir, { recursive: true });
  writeBenchPolicies(policiesDir, { rules: 100, allowPorts: [backendA.port], salt: 'start' });
  const auditFile = path.join(opts.dir, 'audit-reload.jsonl');
  const gw = await startGateway({ ...opts.pki.files, policiesDir, auditFile }, { cpu: opts.gatewayCpu, configName: 'gateway-reload.yaml', probe: true });
  const failures: string[] = [];
  const fail = (what: string) => {
    if (failures.length < 20) failures.push(what);
  };
  const allowsB = new Map<number, boolean>();
  const reloadMs: number[] = [];
  const oneFileMs: number[] = [];
  const samples: ReloadSample[] = [];
  let heap: ReloadHeap | null = null;
  let traffic: ReloadTraffic | null = null;
  // [start, end] of every CONNECT to A (ms, this process's clock), to find the slowest during a reload.
  let connectTimes: number[] = [];
  const probe = `http://127.0.0.1:${gw.probePort}`;
  const now = () => performance.now();
  try {
    traffic = await startReloadTraffic(opts.pki, gw.port, `127.0.0.1:${backendA.port}`, `127.0.0.1:${backendB.port}`, fail);
    connectTimes = traffic.connectTimes;

    /** One timed `POST /debug/reload`, with the gateway's longest loop block and the slowest CONNECT meanwhile. */
    const timedReload = async (kind: ReloadKind, allowB: boolean): Promise<ReloadSample & { rules?: number; version?: number; errors?: { code: string }[] }> => {
      // The files were written just now: the loader would wait until they are DEFAULT_SETTLE_MS
      // old (src/policy/sources.ts). Waiting here keeps that idle wait out of the reload time.
      await sleep(DEFAULT_SETTLE_MS + 20);
      await fetch(`${probe}/loop/reset`, { method: 'POST' });
      const fromConnect = connectTimes.length;
      const t0 = now();
      const res = await fetch(`http://127.0.0.1:${gw.adminPort}/debug/reload`, { method: 'POST' });
      const t1 = now();
      const loop = (await (await fetch(`${probe}/loop`)).json()) as { maxMs: number };
      const rec = (await res.json()) as { result?: string; snapshot?: { version: number }; rules?: number; errors?: { code: string }[] };
      // CONNECTs that started before the reload and ended during it are looked for among the last
      // ones recorded before it, too (16 workers: at most 16 are open at any time).
      let connectMaxMs = 0;
      for (let i = Math.max(0, fromConnect - 64); i < connectTimes.length; i += 2) {
        const start = connectTimes[i]!;
        const end = connectTimes[i + 1]!;
        if (end >= t0 && start <= t1) connectMaxMs = Math.max(connectMaxMs, end - start);
      }
      const sample: ReloadSample = { kind, ms: t1 - t0, blockMs: loop.maxMs, connectMaxMs, result: rec.result ?? `HTTP ${res.status}` };
      samples.push(sample);
      if (rec.result === 'applied' && rec.snapshot) allowsB.set(rec.snapshot.version, allowB);
      log(`reload (${RELOAD_KINDS[kind]}): ${rec.result}, ${sample.ms.toFixed(0)} ms, longest loop block ${sample.blockMs.toFixed(1)} ms, slowest CONNECT ${connectMaxMs.toFixed(1)} ms`);
      return { ...sample, ...(rec.rules !== undefined ? { rules: rec.rules } : {}), ...(rec.snapshot ? { version: rec.snapshot.version } : {}), ...(rec.errors ? { errors: rec.errors } : {}) };
    };
    /** Heap after two full GCs in the gateway, with traffic paused (no CONNECT in flight), and its RSS. */
    const heapNow = async (): Promise<{ heapMiB: number; noCodeMiB: number; rssMiB: number }> => {
      const resume = await traffic!.pause();
      const m = (await (await fetch(`${probe}/gc`, { method: 'POST' })).json()) as { heapUsed: number; codeSpaceUsed: number };
      const rssMiB = rssBytes(gw.pid) / MiB;
      resume();
      return { heapMiB: m.heapUsed / MiB, noCodeMiB: (m.heapUsed - m.codeSpaceUsed) / MiB, rssMiB };
    };

    await sleep(500);
    // The floor: the same traffic and no reload, over about as long as a large reload takes.
    for (let i = 0; i < (opts.quick ? 2 : 3); i++) {
      await fetch(`${probe}/loop/reset`, { method: 'POST' });
      const fromConnect = connectTimes.length;
      const t0 = now();
      await sleep(1000);
      const t1 = now();
      const loop = (await (await fetch(`${probe}/loop`)).json()) as { maxMs: number };
      let connectMaxMs = 0;
      for (let j = Math.max(0, fromConnect - 64); j < connectTimes.length; j += 2) {
        if (connectTimes[j + 1]! >= t0 && connectTimes[j]! <= t1) connectMaxMs = Math.max(connectMaxMs, connectTimes[j + 1]! - connectTimes[j]!);
      }
      samples.push({ kind: 'none', ms: t1 - t0, blockMs: loop.maxMs, connectMaxMs, result: 'none' });
      log(`no reload, 1 s of traffic: longest loop block ${loop.maxMs.toFixed(1)} ms, slowest CONNECT ${connectMaxMs.toFixed(1)} ms`);
    }
    // Baseline: the startup-sized set, reloaded under the same traffic.
    const smalls = opts.quick ? 2 : 3;
    for (let i = 0; i < smalls; i++) {
      writeBenchPolicies(policiesDir, { rules: 100, allowPorts: [backendA.port], salt: `small${i}` });
      const r = await timedReload('small', false);
      if (r.result !== 'applied') fail(`100-rule reload ${i}: ${r.result}`);
      await sleep(300);
    }
    const before = await heapNow();

    const reloads = opts.quick ? 3 : 6;
    for (let i = 0; i < reloads; i++) {
      const toY = i % 2 === 0;
      writeBenchPolicies(policiesDir, { rules: 10_000, allowPorts: toY ? [backendA.port, backendB.port] : [backendA.port], salt: `${toY ? 'y' : 'x'}${i}` });
      const r = await timedReload('allNew', toY);
      if (r.result !== 'applied') {
        fail(`reload ${i}: ${r.result} ${JSON.stringify(r.errors ?? []).slice(0, 300)}`);
        continue;
      }
      reloadMs.push(r.ms);
      await sleep(400);
    }
    // The same 10,000 rules in 100 files: each file is parsed in its own slice. Every rule new
    // (different salts) for the first loads, then the common edit: one file changed per reload,
    // the other 99 reused from the reload cache (load-cache.ts). The edits are not part of the
    // 10,000-rule target above (that one is the worst case, every rule new); reported beside it.
    const fullLoads = opts.quick ? 1 : 3;
    for (let i = 0; i < fullLoads; i++) {
      writeBenchPolicies(policiesDir, { rules: 10_000, allowPorts: [backendA.port], salt: `split${i}`, files: 100 });
      const r = await timedReload('allNewFiles', false);
      if (r.result !== 'applied') fail(`100-file reload ${i}: ${r.result}`);
      await sleep(400);
    }
    const large = await heapNow();
    const edits = opts.quick ? 2 : 4;
    for (let i = 0; i < edits; i++) {
      const fileSalts = new Map<number, string>([[(17 + 31 * i) % 100, `edit${i}`]]);
      writeBenchPolicies(policiesDir, { rules: 10_000, allowPorts: [backendA.port], salt: `split${fullLoads - 1}`, files: 100, fileSalts });
      const r = await timedReload('oneFile', false);
      if (r.result !== 'applied') {
        fail(`one-file reload ${i}: ${r.result}`);
        continue;
      }
      oneFileMs.push(r.ms);
      await sleep(400);
    }
    // 8.8 MiB, over the 8 MiB limit (src/policy/load.ts): refused after reading, before parsing.
    writeBenchPolicies(policiesDir, { rules: 70_000, allowPorts: [backendA.port], salt: 'huge', files: 10 });
    const huge = await timedReload('oversized', false);
    if (huge.result !== 'rejected' || huge.errors?.[0]?.code !== 'WG_POLICY_LIMIT') fail(`8.8 MiB set: ${huge.result} ${JSON.stringify(huge.errors ?? []).slice(0, 300)}`);
    await sleep(400);
    // The large set replaced by a small one; the replaced set's memory must be released.
    writeBenchPolicies(policiesDir, { rules: 100, allowPorts: [backendA.port], salt: 'end' });
    const back = await timedReload('small', false);
    if (back.result !== 'applied') fail(`final 100-rule reload: ${back.result}`);
    await sleep(1000);
    const after = await heapNow();
    heap = {
      beforeMiB: before.heapMiB, largeMiB: large.heapMiB, afterMiB: after.heapMiB,
      beforeNoCodeMiB: before.noCodeMiB, largeNoCodeMiB: large.noCodeMiB, afterNoCodeMiB: after.noCodeMiB,
      rssBeforeMiB: before.rssMiB, rssLargeMiB: large.rssMiB, rssAfterMiB: after.rssMiB,
    };
    log(`gateway heap after GC: ${before.heapMiB.toFixed(1)} MiB before the large sets, ${large.heapMiB.toFixed(1)} with 10,000 rules, ${after.heapMiB.toFixed(1)} after they were replaced (RSS ${before.rssMiB.toFixed(0)} / ${large.rssMiB.toFixed(0)} / ${after.rssMiB.toFixed(0)} MiB)`);

    await traffic.finish();
  } finally {
    traffic?.destroy();
    await gw.stop();
    await backendB.close();
  }
  const opened = traffic?.opened ?? 0;
  const dropped = traffic?.dropped ?? 0;

  // Versions not reloaded by us (startup) allow only A.
  let wronglyDecided = 0;
  let decisionsChecked = 0;
  for (const line of readFileSync(auditFile, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    const r = JSON.parse(line) as { event: string; decision?: string; snapshot?: { version: number }; destination?: { port?: number } };
    if (r.event !== 'decision') continue;
    decisionsChecked++;
    const port = r.destination?.port;
    const expectAllow = port === backendA.port || (port === backendB.port && allowsB.get(r.snapshot?.version ?? -1) === true);
    if ((r.decision === 'allow') !== expectAllow) {
      wronglyDecided++;
      fail(`decision ${r.decision} for port ${port} under snapshot ${r.snapshot?.version}`);
    }
  }
  if (decisionsChecked < opened) fail(`only ${decisionsChecked} decision records for ${opened} CONNECTs`);
  return { reloadMs, oneFileMs, samples, heap, tunnelsOpened: opened, dropped, wronglyDecided, decisionsChecked, failures };
}

/**
 * The reload scenario's traffic, shared by every part of it: 16 workers open tunnels back to back,
 * alternately to A (always allowed) and B (the destination policy changes flip), each an open,
 * 100-byte echo and close; 100 long-lived tunnels to A stay open.
 */
interface ReloadTraffic {
  /** CONNECTs opened so far. */
  readonly opened: number;
  /** Tunnels to A refused, reset or short; answers to B other than 200/401; long-lived tunnels that died. */
  readonly dropped: number;
  /** [start, end] of every CONNECT to A (performance.now(), ms), flat. */
  readonly connectTimes: number[];
  /** Called with every answer to a CONNECT to B: its status, when it was sent and when it was answered. */
  onB: ((status: number, sentMs: number, answeredMs: number) => void) | null;
  /** Holds the workers and waits until no CONNECT is in flight; returns the function that lets them go on. */
  pause(): Promise<() => void>;
  /** Stops the workers and checks that every long-lived tunnel still echoes. */
  finish(): Promise<void>;
  /** Tears every connection down (the scenario's `finally`). */
  destroy(): void;
}

async function startReloadTraffic(
  pki: BenchPki,
  gwPort: number,
  authA: string,
  authB: string,
  fail: (what: string) => void,
): Promise<ReloadTraffic> {
  const sessions: HboneClientSession[] = [];
  const longLived: Duplex[] = [];
  const connectTimes: number[] = [];
  let dropped = 0;
  let opened = 0;
  let stop = false;
  // Paused workers wait on `gate`; `inFlight` counts CONNECTs not finished yet.
  let gate: { promise: Promise<void>; open: () => void } | null = null;
  let inFlight = 0;
  const now = () => performance.now();
  const traffic = {
    get opened() {
      return opened;
    },
    get dropped() {
      return dropped;
    },
    connectTimes,
    onB: null as ReloadTraffic['onB'],
    pause: async () => {
      let open!: () => void;
      gate = { promise: new Promise<void>((r) => { open = r; }), open };
      while (inFlight > 0) await sleep(5); // the workers' own CONNECTs: no event to await across all of them
      const g = gate;
      return () => {
        if (gate === g) gate = null;
        g.open();
      };
    },
    finish: async () => {
      stop = true;
      await load;
      for (const s of longLived) {
        try {
          s.write('z');
          await Promise.race([once(s, 'data'), sleep(5000).then(() => { throw new Error('no echo within 5 s'); })]);
        } catch (err) {
          dropped++;
          fail(`long-lived tunnel died: ${(err as Error).message}`);
        }
      }
      for (const s of longLived) s.destroy();
    },
    destroy: () => {
      stop = true;
      for (const s of longLived) s.destroy();
      for (const s of sessions) s.destroy();
    },
  };
  for (let i = 0; i < 3; i++) sessions.push(await hboneConnect(pki, gwPort));
  for (let i = 0; i < 100; i++) {
    const s = await openTunnel(sessions[0]!, authA);
    s.on('error', () => undefined);
    s.write('E');
    longLived.push(s);
  }
  // Tunnels to B go over their own connections, replaced every 400 CONNECTs: the client library
  // answered a 401 with RST_STREAM, and nghttp2 closes a connection after ~1,000 resets (rapid-reset
  // limit), which would fail A's tunnels for a client-side reason.
  let bSession = await hboneConnect(pki, gwPort);
  let bCount = 0;
  let bSwap: Promise<void> | null = null;
  const sessionForB = async (): Promise<HboneClientSession> => {
    while (bSwap) await bSwap;
    if (++bCount % 400 === 0) {
      bSwap = (async () => {
        const old = bSession;
        bSession = await hboneConnect(pki, gwPort);
        sessions.push(old);
        void old.close();
      })().finally(() => { bSwap = null; });
      await bSwap;
    }
    return bSession;
  };
  sessions.push({ close: async () => bSession.close(), destroy: () => bSession.destroy() } as HboneClientSession);
  let n = 0;
  const worker = async (w: number) => {
    while (!stop) {
      if (gate) {
        await gate.promise;
        continue;
      }
      const toB = n++ % 2 === 1;
      const session = toB ? await sessionForB() : sessions[1 + (w % 2)]!;
      opened++;
      inFlight++;
      try {
        const start = now();
        const t = await session.openTunnel(toB ? authB : authA, meshHeaders());
        if (toB) traffic.onB?.(t.status, start, now());
        else connectTimes.push(start, now());
        if (t.status === 200) {
          await echoOnce(async () => t.stream, 100);
        } else if (!toB || t.status !== 401) {
          dropped++;
          fail(`CONNECT ${toB ? 'B' : 'A'} answered ${t.status}`);
        }
      } catch (err) {
        // A tunnel to B opened under a set that allows it may be closed by the re-check to one that
        // does not (policy_changed): expected.
        if (!toB) {
          dropped++;
          fail(`tunnel to A failed: ${(err as Error).message}`);
        }
      } finally {
        inFlight--;
      }
    }
  };
  const load = Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
  return traffic;
}

/* ------------------------------------------------------------------- policy change by file */

/** Where the gateway's audit log is, relative to the watched policy file. */
export type AuditLayout = 'beside' | 'apart';

export const AUDIT_LAYOUTS: Record<AuditLayout, string> = {
  beside: 'audit log beside the policy file',
  apart: 'audit log in another directory',
};

export interface PolicyChangeSample {
  /** What made the gateway load: its policy watch, or `POST /debug/reload` right after the rename (the baseline). */
  trigger: 'watch' | 'admin';
  /** revoke: B goes from allowed to denied; restore: back. */
  change: 'revoke' | 'restore';
  /**
   * rename(2) returned -> the applied `reload` record's `time` (read from the audit log after the
   * run; the record is stamped in the step that swaps the snapshot and re-checks the tunnels).
   * Both clocks are this machine's wall clock; the record has millisecond resolution.
   */
  writeToAppliedMs: number;
  /**
   * rename(2) returned -> the first answer to a CONNECT to B that the new set decided (401 after a
   * revoke, 200 after a restore), as the client saw it; NaN when none came within `waitedMs`.
   */
  writeToEnforcedMs: number;
  /** How long the bench waited for that answer before making the next change. */
  waitedMs: number;
  /**
   * False when the previous change never applied: this one then writes the set still in force, so
   * nothing flips and its figures are NaN (only seen when the watch is starved).
   */
  flips: boolean;
  /** Answers to B the client received after the rename with the previous set's verdict (200 after a revoke). */
  oldVerdictAfterWrite: number;
  /** The gateway's decisions for B stamped at or after the rename with the previous verdict: under the previous snapshot (decided before the apply) ... */
  auditOldVerdictBeforeApply: number;
  /** ... and under the new snapshot (wrongly decided: must be 0). */
  auditOldVerdictAfterApply: number;
  /** The snapshot version the change produced (0 if none was found). */
  version: number;
}

export interface PolicyChangeOutcome {
  layout: AuditLayout;
  samples: PolicyChangeSample[];
  /**
   * Events the bench's own `fs.watch` on the policy file's directory saw while the changes ran, by
   * entry: the audit log's, the policy file's, and any other (the temporary file). Shows what the
   * gateway's watcher had to sift.
   */
  directoryEvents: { audit: number; policy: number; other: number; seconds: number };
  tunnelsOpened: number;
  connectsPerSecond: number;
  /** Share of one CPU the gateway used while the changes ran (/proc; it is pinned to one). */
  gatewayCpuShare: number;
  dropped: number;
  wronglyDecided: number;
  decisionsChecked: number;
  failures: string[];
}

/**
 * A policy change written by atomic rename must apply within 1 s of the write
 * under any load, with the audit log in the same directory as the policy file (each batch of audit
 * records raises a directory event; the watcher used to restart its debounce on every one).
 *
 * A fresh gateway watches one policy file (`policies.paths: [DIR/bench.yaml]`, `watch: true`, the
 * default debounce) under the reload scenario's traffic (startReloadTraffic: 16 workers, A and B
 * alternately, 100 long-lived tunnels). The 100-rule set is replaced by writing a temporary file and
 * renaming it over `bench.yaml` (docs/operating.md, "Updating policies safely"), alternately revoking
 * and restoring destination B. Each change is made either by the rename alone (`watch`) or by the
 * rename followed at once by `POST /debug/reload` (`admin`, the baseline: the same set, the same
 * gateway, interleaved). Per change: write to applied, write to the first CONNECT the client sees
 * decided by the new set, and answers with the previous verdict after the write, split by the
 * snapshot that decided them (audit log). Run once with the audit log beside the policy file and once
 * with it in another directory.
 *
 * The applied moment is the `reload` record's `time`, not a poll of `GET /debug/policy`: the admin
 * API runs on the gateway's own event loop, so polling it every few milliseconds would add load to
 * the process under test and time its own queueing.
 */
async function policyChangeByFile(opts: HboneBenchOptions, backendA: Backend, layout: AuditLayout, log: (line: string) => void): Promise<PolicyChangeOutcome> {
  const backendB = await startBackendProcess();
  const policyDir = path.join(opts.dir, `policy-change-${layout}`);
  mkdirSync(policyDir, { recursive: true });
  const policyFile = path.join(policyDir, 'bench.yaml');
  const auditFile = layout === 'beside' ? path.join(policyDir, 'audit.jsonl') : path.join(opts.dir, `audit-policy-change-${layout}.jsonl`);
  const setFor = (allowB: boolean) => ({ rules: 100, allowPorts: allowB ? [backendA.port, backendB.port] : [backendA.port], salt: 'change' });
  replaceBenchPolicyFile(policyFile, setFor(true));
  const gw = await startGateway({ ...opts.pki.files, policiesDir: policyFile, auditFile }, {
    cpu: opts.gatewayCpu, configName: `gateway-policy-change-${layout}.yaml`, watchPolicies: true,
  });
  const failures: string[] = [];
  const fail = (what: string) => {
    if (failures.length < 20) failures.push(what);
  };
  interface Pending {
    trigger: 'watch' | 'admin';
    allowB: boolean;
    flips: boolean;
    waitedMs: number;
    renameWallMs: number;
    renamePerfMs: number;
    enforcedPerfMs: number;
    oldVerdictAfterWrite: number;
  }
  const changes: Pending[] = [];
  const events = { audit: 0, policy: 0, other: 0, seconds: 0 };
  let traffic: ReloadTraffic | null = null;
  let dirWatch: FSWatcher | null = null;
  let opened0 = 0;
  let t0 = 0;
  let cpu0 = 0;
  let cpuShare = Number.NaN;
  try {
    traffic = await startReloadTraffic(opts.pki, gw.port, `127.0.0.1:${backendA.port}`, `127.0.0.1:${backendB.port}`, fail);
    let current: (Pending & { enforced: () => void }) | null = null;
    traffic.onB = (status, _sentMs, answeredMs) => {
      const c = current;
      if (!c || answeredMs < c.renamePerfMs) return;
      const newVerdict = c.allowB ? 200 : 401;
      if (status === newVerdict) {
        if (c.enforcedPerfMs === 0) {
          c.enforcedPerfMs = answeredMs;
          c.enforced();
        }
      } else if (status === (c.allowB ? 401 : 200)) {
        c.oldVerdictAfterWrite++;
      }
    };
    await sleep(1000);
    const auditName = path.basename(auditFile);
    dirWatch = watch(policyDir, { persistent: false }, (_type, name) => {
      if (name === auditName) events.audit++;
      else if (name === 'bench.yaml') events.policy++;
      else events.other++;
    });
    opened0 = traffic.opened;
    cpu0 = cpuSeconds(gw.pid);
    t0 = performance.now();
    const change = async (trigger: 'watch' | 'admin', allowB: boolean): Promise<void> => {
      let enforced!: () => void;
      const seen = new Promise<void>((r) => (enforced = r));
      replaceBenchPolicyFile(policyFile, setFor(allowB));
      const previous = changes.at(-1);
      const flips = !previous || previous.enforcedPerfMs > 0;
      const c = { trigger, allowB, flips, waitedMs: 0, renameWallMs: Date.now(), renamePerfMs: performance.now(), enforcedPerfMs: 0, oldVerdictAfterWrite: 0, enforced };
      current = c;
      changes.push(c);
      if (trigger === 'admin') {
        const res = await fetch(`http://127.0.0.1:${gw.adminPort}/debug/reload`, { method: 'POST' });
        const rec = (await res.json()) as { result?: string };
        if (rec.result !== 'applied') fail(`admin reload after the rename: ${rec.result ?? `HTTP ${res.status}`}`);
      }
      const timedOut = await Promise.race([seen.then(() => false), sleep(5000).then(() => true)]);
      if (timedOut && flips) fail(`${trigger} ${allowB ? 'restore' : 'revoke'}: no CONNECT to B decided by the new set within 5 s of the rename`);
      // Let answers to CONNECTs decided before the apply arrive, and (admin) the watcher's own
      // check of the rename pass (it finds the hash the admin reload applied: no second load).
      await sleep(700);
      c.waitedMs = performance.now() - c.renamePerfMs;
      log(`policy change by file (${AUDIT_LAYOUTS[layout]}), ${trigger} ${allowB ? 'restore' : 'revoke'}: first CONNECT decided by the new set ${c.enforcedPerfMs ? (c.enforcedPerfMs - c.renamePerfMs).toFixed(0) : '-'} ms after the rename, ${c.oldVerdictAfterWrite} answers with the previous verdict after it`);
    };
    const pairs = opts.quick ? 2 : 3;
    for (let i = 0; i < pairs; i++) {
      for (const trigger of ['admin', 'watch'] as const) {
        await change(trigger, false);
        await change(trigger, true);
      }
    }
    current = null;
    events.seconds = (performance.now() - t0) / 1000;
    cpuShare = (cpuSeconds(gw.pid) - cpu0) / events.seconds;
    dirWatch.close();
    dirWatch = null;
    await traffic.finish();
  } finally {
    dirWatch?.close();
    traffic?.destroy();
    await gw.stop();
    await backendB.close();
  }
  const opened = traffic?.opened ?? 0;

  // After a graceful stop the audit log is complete. A change's reload is the applied one stamped
  // between its rename and the next change's (a change that never applied has none).
  const reloads: { version: number; trigger: string; timeMs: number }[] = [];
  const decisions: { allow: boolean; version: number; timeMs: number }[] = [];
  let startupVersion = -1;
  let decisionsChecked = 0;
  let wronglyDecided = 0;
  const bPort = backendB.port;
  const allowsB = new Map<number, boolean>();
  for (const line of readFileSync(auditFile, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    const r = JSON.parse(line) as { event: string; time: string; result?: string; trigger?: string; decision?: string; snapshot?: { version: number }; destination?: { port?: number } };
    if (r.event === 'reload' && r.result === 'applied') {
      if (r.trigger === 'startup') startupVersion = r.snapshot!.version;
      else reloads.push({ version: r.snapshot!.version, trigger: r.trigger ?? '', timeMs: Date.parse(r.time) });
    } else if (r.event === 'decision') {
      decisionsChecked++;
      if (r.destination?.port === bPort) decisions.push({ allow: r.decision === 'allow', version: r.snapshot?.version ?? -1, timeMs: Date.parse(r.time) });
      else if (r.decision !== 'allow') {
        wronglyDecided++;
        fail(`decision ${r.decision} for port ${r.destination?.port} (always allowed)`);
      }
    }
  }
  allowsB.set(startupVersion, true);
  const samples: PolicyChangeSample[] = changes.map((c, i) => {
    const next = changes[i + 1]?.renameWallMs ?? Number.POSITIVE_INFINITY;
    const mine = reloads.filter((r) => r.timeMs >= c.renameWallMs && r.timeMs < next);
    const rec = mine[0];
    if (mine.length !== (c.flips ? 1 : 0)) fail(`change ${i} (${c.trigger}, ${c.allowB ? 'restore' : 'revoke'}): ${mine.length} applied reloads before the next change`);
    if (rec) {
      allowsB.set(rec.version, c.allowB);
      if (rec.trigger !== c.trigger) fail(`change ${i} (${c.trigger}) was applied by trigger ${rec.trigger}`);
    }
    const old = decisions.filter((d) => d.timeMs >= c.renameWallMs && d.timeMs < next && d.allow !== c.allowB);
    return {
      trigger: c.trigger,
      change: c.allowB ? 'restore' : 'revoke',
      writeToAppliedMs: rec ? rec.timeMs - c.renameWallMs : Number.NaN,
      writeToEnforcedMs: c.enforcedPerfMs && c.flips ? c.enforcedPerfMs - c.renamePerfMs : Number.NaN,
      waitedMs: c.waitedMs,
      flips: c.flips,
      oldVerdictAfterWrite: c.flips ? c.oldVerdictAfterWrite : Number.NaN,
      auditOldVerdictBeforeApply: old.filter((d) => d.version !== rec?.version).length,
      auditOldVerdictAfterApply: old.filter((d) => d.version === rec?.version).length,
      version: rec?.version ?? 0,
    };
  });
  for (const d of decisions) {
    const expect = allowsB.get(d.version);
    if (expect === undefined) {
      fail(`decision for B under snapshot ${d.version}, which no change produced`);
    } else if (d.allow !== expect) {
      wronglyDecided++;
      fail(`decision ${d.allow ? 'allow' : 'deny'} for B under snapshot ${d.version}`);
    }
  }
  if (decisionsChecked < opened) fail(`only ${decisionsChecked} decision records for ${opened} CONNECTs`);
  return {
    layout,
    samples,
    directoryEvents: events,
    tunnelsOpened: opened,
    connectsPerSecond: events.seconds > 0 ? (opened - opened0) / events.seconds : Number.NaN,
    gatewayCpuShare: cpuShare,
    dropped: traffic?.dropped ?? 0,
    wronglyDecided,
    decisionsChecked,
    failures,
  };
}

/* ---------------------------------------------------------------------------------------- render */

const range = (s: Spread) => `${fmt(s.min)}-${fmt(s.max)}`;

export function renderHboneBench(result: HboneBenchResult): string {
  const out: string[] = [];
  out.push(table(
    ['scenario', 'path', 'metric', 'median', 'min-max', 'unit'],
    result.rows.map((r) => {
      const s = spread(r.values);
      return [r.scenario, r.path, r.metric, fmt(s.median), range(s), r.unit];
    }),
  ));
  if (result.comparisons.length) {
    out.push('', 'waygate / baseline, same-round ratios: median (min-max)');
    const baselines = [...new Set(result.comparisons.map((c) => c.baseline))];
    const keys = [...new Set(result.comparisons.map((c) => `${c.scenario}|${c.metric}`))];
    out.push(table(['scenario', 'metric', ...baselines.map((b) => `vs ${b}`)], keys.map((k) => {
      const [scn, metric] = k.split('|') as [string, string];
      return [scn, metric, ...baselines.map((b) => {
        const c = result.comparisons.find((x) => x.scenario === scn && x.metric === metric && x.baseline === b);
        return c ? `${fmt(c.median)} (${range(c)})` : '';
      })];
    })));
  }
  out.push('', 'targets');
  out.push(table(
    ['target', 'median', 'min-max', 'n', 'target', 'met'],
    result.targets.map((t) => [t.name, fmt(t.median), range(t), String(t.n), t.target, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
  ));
  if (result.reload?.failures.length) out.push('', 'reload scenario failures:', ...result.reload.failures.map((f) => `  ${f}`));
  for (const o of result.reload?.byFile ?? []) {
    out.push('', `policy change by file under traffic, ${AUDIT_LAYOUTS[o.layout]}: ${fmt(o.connectsPerSecond)} CONNECT/s, gateway ${fmt(o.gatewayCpuShare * 100)}% of a CPU, directory events during the changes: audit log ${o.directoryEvents.audit}, policy file ${o.directoryEvents.policy}, other ${o.directoryEvents.other} in ${fmt(o.directoryEvents.seconds)} s`);
    out.push(table(
      ['trigger', 'change', 'write->applied ms', 'write->first enforced ms', 'old verdict after write (client)', 'audit: before apply / after apply', 'snapshot'],
      o.samples.map((x) => [x.trigger, x.change, fmt(x.writeToAppliedMs),
        Number.isFinite(x.writeToEnforcedMs) || !x.flips ? fmt(x.writeToEnforcedMs) : `not within ${fmt(x.waitedMs)}`,
        x.flips ? String(x.oldVerdictAfterWrite) : 'no flip (previous change not applied)',
        `${x.auditOldVerdictBeforeApply} / ${x.auditOldVerdictAfterApply}`, String(x.version)]),
    ));
    if (o.failures.length) out.push('failures:', ...o.failures.map((f) => `  ${f}`));
  }
  for (const n of result.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

/* --------------------------------------------------------------------------------------- profile */

export interface ProfileResult {
  scenario: string;
  profileFile: string | null;
  summary: ProfileSummary | null;
}

/**
 * Runs the bulk and CONNECT scenarios against a gateway started with `--cpu-prof` (one gateway
 * per scenario, so each profile holds one workload) and summarises the top self-time functions.
 */
export async function profileHbone(opts: HboneBenchOptions): Promise<ProfileResult[]> {
  const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const backend = await startBackendProcess();
  const out: ProfileResult[] = [];
  try {
    const workloads: [string, (open: Opener) => Promise<void>][] = [
      ['bulk', async (open) => {
        const bytes = opts.quick ? 256 * MiB : 1 * GiB;
        await upload(open, bytes);
        await download(open, bytes);
      }],
      ['connect', (open) => runConcurrent(opts.quick ? 5_000 : 20_000, 64, () => echoOnce(open, 100))],
    ];
    for (const [name, run] of workloads) {
      const policiesDir = path.join(opts.dir, `policies-profile-${name}`);
      writeBenchPolicies(policiesDir, { rules: 100 });
      const profileDir = path.join(opts.dir, `cpu-profile-${name}`);
      const gw = await startGateway(gatewayFiles(opts, policiesDir, `audit-profile-${name}.jsonl`), {
        cpu: opts.gatewayCpu, configName: `gateway-profile-${name}.yaml`, cpuProfileDir: profileDir,
      });
      const hb = await hbonePath(gw, opts.pki, backend);
      try {
        log(`profiling ${name}`);
        await run(hb.path.open);
      } finally {
        await hb.close();
        await gw.stop();
      }
      // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (tsx's loader
      // runs in a worker thread that writes its own profile).
      const file = readdirSync(profileDir).filter((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f)).map((f) => path.join(profileDir, f))[0] ?? null;
      out.push({ scenario: name, profileFile: file, summary: file ? summariseCpuProfile(file) : null });
    }
  } finally {
    await backend.close();
  }
  return out;
}

export function renderProfiles(results: readonly ProfileResult[]): string {
  const out: string[] = [];
  for (const r of results) {
    if (!r.summary) {
      out.push(`profile ${r.scenario}: no .cpuprofile was written (the gateway did not exit normally)`);
      continue;
    }
    const s = r.summary;
    out.push(`profile ${r.scenario}: ${r.profileFile} (${fmt(s.totalMs)} ms sampled, idle ${fmt(s.idlePercent)}%, GC ${fmt(s.gcPercent)}% of busy)`);
    out.push(table(['self ms', '% busy', 'function', 'location'], s.top.map((e) => [fmt(e.selfMs), fmt(e.selfPercent), e.functionName, e.location])));
    if (s.inclusive.length) {
      out.push('', `profile ${r.scenario}: inclusive time of the gateway's functions and its dependencies (a function and all it called)`);
      out.push(table(['total ms', '% busy', 'function', 'location'], s.inclusive.map((e) => [fmt(e.selfMs), fmt(e.selfPercent), e.functionName, e.location])));
    }
    out.push('');
  }
  return out.join('\n');
}
