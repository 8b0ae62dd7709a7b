/**
 * Waypoint (double-hop) benchmark: waygate deciding a tunnel and sending it on over HBONE to the
 * destination's ztunnel, against a re-encrypting haproxy, in the same run, interleaved rounds,
 * medians of same-round ratios (the method of hbone.bench.ts).
 *
 *   waygate   load generator --HBONE (loadgen identity)--> waygate under test (CPU 0: `discovery.meshFile`,
 *             the service VIP 10.96.0.10:80 resolves to workload bench/backend-0 on 127.0.0.2; 100-rule
 *             policy, audit on) --HBONE with the gateway's own certificate, pooled--> a second waygate
 *             standing in for the destination's ztunnel (127.0.0.2, presents bench/backend's identity,
 *             allows the gateway's SPIFFE ID) --TCP--> backend (127.0.0.2)
 *   haproxy   load generator --mTLS--> haproxy (CPU 0: terminates mTLS, originates mTLS with the
 *             gateway's certificate as client certificate) --mTLS--> haproxy terminator (127.0.0.2,
 *             bench/backend's certificate) --TCP--> the same backend
 *
 * Only the process under test runs on CPU 0 (taskset); the stand-in, the terminator, the backend
 * and the load generator share CPU 1. Every process's CPU is read from /proc (the load generator's
 * from process.cpuUsage()) around each measurement, so a table says whose cost is whose: the
 * targets use the process under test only.
 *
 * Scenarios (names accepted by `--scenarios`):
 *   bulk     1 tunnel, `bulkBytes` up then down
 *   connect  open, 100-byte echo, close, 1 and 64 in flight. waygate: a CONNECT on the load
 *            generator's open connection, sent on over the gateway's warm upstream pool (checked with
 *            `waygate_upstream_connect_duration_seconds_count{reused=...}` around each measurement);
 *            haproxy: a new mTLS connection in, and a new (resumed) mTLS connection out, each
 *   echo     64-byte ping-pong over one established tunnel: p50/p99 round trip, CPU per message
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { connectHbone, ztunnelHeaders, type HboneClientSession } from '../src/hbone/client.ts';
import type { RunningForwarder } from './baselines/forwarders.ts';
import { startHaproxyReencrypt, startHaproxyTerminator } from './baselines/reencrypt.ts';
import { startBackendProcess, type Backend } from './lib/backend.ts';
import { summariseCpuProfile } from './lib/cpuprofile.ts';
import { startGateway, type RunningGateway } from './lib/gateway-process.ts';
import { GATEWAY_SPIFFE_ID, type BenchPki } from './lib/pki.ts';
import { writeBenchPolicies } from './lib/policies.ts';
import { runRounds, warmUp, type RoundScenario } from './lib/rounds.ts';
import { cpuSeconds, cpuTimes, threadCpuSeconds } from './lib/proc.ts';
import { fmt, quantile, spread, table, type Spread } from './lib/stats.ts';
import { download, echoLatency, echoOnce, runConcurrent, tlsOpener, upload, type Opener } from './lib/traffic.ts';
import type { ProfileResult } from './hbone.bench.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** `waygate-1hop`: the same gateway, no discovery, dialing the backend over TCP (what the second hop adds). */
export const WAYPOINT_PATHS = ['waygate', 'haproxy', 'waygate-1hop'] as const;
export const WAYPOINT_SCENARIOS = ['bulk', 'connect', 'echo'] as const;

/** The destination pod's address: its ztunnel stand-in (or terminator) and the backend listen there. */
const POD_IP = '127.0.0.2';
/** The service the load generator addresses; never dialed (the gateway must pick the endpoint). */
const SERVICE_VIP = '10.96.0.10';
const SERVICE_PORT = 80;
const SERVICE_HOST = 'backend.bench.svc.cluster.local';

export interface WaypointBenchOptions {
  quick: boolean;
  rounds: number;
  dir: string;
  pki: BenchPki;
  /** CPU of the process under test (waygate or haproxy), or null without taskset. */
  gatewayCpu: number | null;
  /** CPU of everything else (stand-in, terminator, backend; the load generator is pinned there by run.ts). */
  otherCpu: number | null;
  paths?: readonly string[];
  scenarios?: readonly string[];
  log?: (line: string) => void;
}

export interface WaypointRow {
  scenario: string;
  path: string;
  /** `proxy` (the process under test), `terminator` (stand-in / haproxy terminator), `client`, `backend`, or '' for path-level figures. */
  process: string;
  metric: string;
  unit: string;
  values: number[];
}

export interface WaypointComparison extends Spread {
  scenario: string;
  process: string;
  metric: string;
  /** `haproxy` (the baseline) or `waygate-1hop` (the reference). */
  baseline: string;
}

export interface WaypointTarget extends Spread {
  name: string;
  target: string;
  met: boolean | null;
}

export interface WaypointBenchResult {
  rows: WaypointRow[];
  /** waygate / haproxy and waygate / waygate-1hop, same round. */
  comparisons: WaypointComparison[];
  targets: WaypointTarget[];
  notes: string[];
}

/** The processes of one path, by role. */
interface PathUnderTest {
  name: string;
  proxyPid: number;
  /** null: no second hop (waygate-1hop). */
  terminatorPid: number | null;
  /** One end-to-end stream through both hops. */
  open: Opener;
  /** waygate only: counts of upstream connects (pooled connection reused or not), from /metrics. */
  upstreamConnects?: () => Promise<{ reused: number; fresh: number }>;
}

const ROLES = ['proxy', 'terminator', 'backend', 'client'] as const;
type Role = (typeof ROLES)[number];
const ROLE_NAMES: Record<string, Record<Role, string>> = {
  waygate: { proxy: 'waygate (under test)', terminator: 'waygate stand-in for ztunnel', backend: 'backend', client: 'load generator (HBONE client)' },
  haproxy: { proxy: 'haproxy re-encrypting (under test)', terminator: 'haproxy terminator', backend: 'backend', client: 'load generator (TLS client)' },
  'waygate-1hop': { proxy: 'waygate, one hop, TCP upstream', terminator: '-', backend: 'backend', client: 'load generator (HBONE client)' },
};

interface Measurement {
  wallSeconds: number;
  cpu: Record<Role, number>;
  /** The process under test's system (kernel) CPU seconds, part of cpu.proxy. */
  proxySystem: number;
  /** The process under test's CPU seconds by thread group (THREAD_GROUPS). */
  proxyThreads: Record<ThreadGroup, number>;
}

const THREAD_GROUPS = ['main thread', 'other threads (V8 GC and compiler workers, libuv pool)'] as const;
type ThreadGroup = (typeof THREAD_GROUPS)[number];

function threadGroups(pid: number): Record<ThreadGroup, number> {
  const t = threadCpuSeconds(pid);
  return { 'main thread': t.main, 'other threads (V8 GC and compiler workers, libuv pool)': t.others };
}

async function measure(p: PathUnderTest, backendPid: number | null, fn: () => Promise<void>): Promise<Measurement> {
  const read = () => ({
    proxy: cpuTimes(p.proxyPid),
    terminator: p.terminatorPid === null ? Number.NaN : cpuSeconds(p.terminatorPid),
    backend: backendPid === null ? Number.NaN : cpuSeconds(backendPid),
  });
  const t0Threads = threadGroups(p.proxyPid);
  const c0 = read();
  const self0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await fn();
  const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const self = process.cpuUsage(self0);
  const c1 = read();
  const t1Threads = threadGroups(p.proxyPid);
  return {
    wallSeconds,
    cpu: {
      proxy: c1.proxy.user + c1.proxy.system - (c0.proxy.user + c0.proxy.system),
      terminator: c1.terminator - c0.terminator,
      backend: c1.backend - c0.backend,
      client: (self.user + self.system) / 1e6,
    },
    proxySystem: c1.proxy.system - c0.proxy.system,
    proxyThreads: Object.fromEntries(THREAD_GROUPS.map((g) => [g, t1Threads[g] - t0Threads[g]])) as Record<ThreadGroup, number>,
  };
}

function meets(target: string, value: number): boolean | null {
  const m = /^(<=|>=)\s*([\d.]+)/.exec(target);
  if (!m || !Number.isFinite(value)) return null;
  return m[1] === '<=' ? value <= Number(m[2]) : value >= Number(m[2]);
}

/** The mesh of the scenario: one service whose one endpoint is an HBONE workload on POD_IP. */
function meshYaml(backendPort: number, standInPort: number): string {
  return [
    'apiVersion: waygate.dev/v1alpha1',
    'kind: Mesh',
    'services:',
    `  - hostname: ${SERVICE_HOST}`,
    '    namespace: bench',
    `    vips: ["${SERVICE_VIP}"]`,
    `    ports: [{ port: ${SERVICE_PORT}, targetPort: ${backendPort} }]`,
    '    endpoints: [backend-0]',
    'workloads:',
    '  - name: backend-0',
    '    namespace: bench',
    `    ips: ["${POD_IP}"]`,
    '    serviceAccount: backend',
    '    protocol: HBONE',
    `    tunnelPort: ${standInPort}`,
    '',
  ].join('\n');
}

/** The stand-in's policy: the destination ztunnel allows the waypoint's identity, nothing else. */
function standInPolicy(): string {
  return [
    'apiVersion: waygate.dev/v1alpha1',
    'kind: AuthorizationPolicy',
    'metadata: { name: from-waypoint }',
    'spec:',
    '  action: ALLOW',
    '  rules:',
    '    - name: waypoint',
    `      when: source.principal == "${GATEWAY_SPIFFE_ID}"`,
    '',
  ].join('\n');
}

let srcPort = 40000;
function meshHeaders(): Record<string, string> {
  srcPort = srcPort >= 60000 ? 40000 : srcPort + 1;
  return ztunnelHeaders({ srcIp: '10.0.0.5', srcPort, namespace: 'bench', workload: 'loadgen', service: 'loadgen', cluster: 'bench' });
}

/** Sums `waygate_upstream_connect_duration_seconds_count{result="ok",protocol="hbone"}` by `reused`. */
export function parseUpstreamConnects(metricsText: string): { reused: number; fresh: number } {
  const out = { reused: 0, fresh: 0 };
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('waygate_upstream_connect_duration_seconds_count{')) continue;
    const labels = line.slice(line.indexOf('{') + 1, line.lastIndexOf('}'));
    if (!labels.includes('result="ok"') || !labels.includes('protocol="hbone"')) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (labels.includes('reused="true"')) out.reused += value;
    else if (labels.includes('reused="false"')) out.fresh += value;
  }
  return out;
}

interface Started {
  path: PathUnderTest;
  close(): Promise<void>;
}

interface WaygatePair {
  gw: RunningGateway;
  standIn: RunningGateway;
  close(): Promise<void>;
}

/** Starts the stand-in, writes the mesh file naming it, then the gateway under test (optionally with --cpu-prof). */
async function startWaygatePair(opts: WaypointBenchOptions, backend: Backend, tag: string, cpuProfileDir?: string): Promise<WaygatePair> {
  const { dir, pki } = opts;
  const standInPolicies = path.join(dir, `policies-waypoint-standin-${tag}`);
  mkdirSync(standInPolicies, { recursive: true });
  writeFileSync(path.join(standInPolicies, 'bench.yaml'), standInPolicy());
  const standIn = await startGateway(
    { dir, certFile: pki.destination.certFile, keyFile: pki.destination.keyFile, caFile: pki.files.caFile, policiesDir: standInPolicies, auditFile: path.join(dir, `audit-waypoint-standin-${tag}.jsonl`) },
    { cpu: opts.otherCpu, configName: `gateway-waypoint-standin-${tag}.yaml`, listenHost: POD_IP, destinations: [`${POD_IP}/32`] },
  );
  try {
    const meshFile = path.join(dir, `mesh-waypoint-${tag}.yaml`);
    writeFileSync(meshFile, meshYaml(backend.port, standIn.port));
    const policiesDir = path.join(dir, `policies-waypoint-${tag}`);
    // The same 100-rule shape as the one-hop scenarios; the load generator's rule names the service.
    writeBenchPolicies(policiesDir, { rules: 100, loadgenWhen: `source.namespace == "bench" && destination.service == "${SERVICE_HOST}"` });
    const gw = await startGateway(
      { ...pki.files, policiesDir, auditFile: path.join(dir, `audit-waypoint-${tag}.jsonl`) },
      {
        cpu: opts.gatewayCpu,
        configName: `gateway-waypoint-${tag}.yaml`,
        // The allow-list applies to the address dialed: the pod's.
        destinations: [`${POD_IP}/32`],
        extraSpec: ['discovery:', `  meshFile: ${meshFile}`],
        ...(cpuProfileDir ? { cpuProfileDir } : {}),
      },
    );
    return {
      gw,
      standIn,
      close: async () => {
        await gw.stop();
        await standIn.stop();
      },
    };
  } catch (err) {
    await standIn.stop();
    throw err;
  }
}

/** The load generator's HBONE connection to a gateway, as ztunnel's (hbone.bench.ts). */
function loadgenSession(opts: WaypointBenchOptions, port: number): Promise<HboneClientSession> {
  return connectHbone({
    address: { host: '127.0.0.1', port },
    cert: opts.pki.client.cert,
    key: opts.pki.client.key,
    ca: opts.pki.client.ca,
    expectedServerSpiffeId: GATEWAY_SPIFFE_ID,
  });
}

function tunnelOpener(session: HboneClientSession, authority: string): Opener {
  return async (): Promise<Duplex> => {
    const t = await session.openTunnel(authority, meshHeaders());
    if (t.status !== 200) throw new Error(`CONNECT ${authority} answered ${t.status}`);
    return t.stream;
  };
}

async function waygatePath(opts: WaypointBenchOptions, backend: Backend): Promise<Started> {
  const pair = await startWaygatePair(opts, backend, 'main');
  let shared: HboneClientSession;
  try {
    shared = await loadgenSession(opts, pair.gw.port);
  } catch (err) {
    await pair.close();
    throw err;
  }
  return {
    path: {
      name: 'waygate',
      proxyPid: pair.gw.pid,
      terminatorPid: pair.standIn.pid,
      open: tunnelOpener(shared, `${SERVICE_VIP}:${SERVICE_PORT}`),
      upstreamConnects: async () => {
        const res = await fetch(`http://127.0.0.1:${pair.gw.metricsPort}/metrics`);
        return parseUpstreamConnects(await res.text());
      },
    },
    close: async () => {
      await shared.close();
      await pair.close();
    },
  };
}

/** The reference: the same gateway and policy shape, no discovery, the backend dialed over TCP. */
async function oneHopPath(opts: WaypointBenchOptions, backend: Backend): Promise<Started> {
  const { dir, pki } = opts;
  const policiesDir = path.join(dir, 'policies-waypoint-1hop');
  writeBenchPolicies(policiesDir, { rules: 100, loadgenWhen: `source.namespace == "bench" && destination.ip == "${POD_IP}"` });
  const gw = await startGateway(
    { ...pki.files, policiesDir, auditFile: path.join(dir, 'audit-waypoint-1hop.jsonl') },
    { cpu: opts.gatewayCpu, configName: 'gateway-waypoint-1hop.yaml', destinations: [`${POD_IP}/32`] },
  );
  let shared: HboneClientSession;
  try {
    shared = await loadgenSession(opts, gw.port);
  } catch (err) {
    await gw.stop();
    throw err;
  }
  return {
    path: { name: 'waygate-1hop', proxyPid: gw.pid, terminatorPid: null, open: tunnelOpener(shared, `${POD_IP}:${backend.port}`) },
    close: async () => {
      await shared.close();
      await gw.stop();
    },
  };
}

async function haproxyPath(opts: WaypointBenchOptions, backend: Backend): Promise<Started | null> {
  const files = {
    dir: opts.dir,
    caFile: opts.pki.files.caFile,
    proxyCertFile: opts.pki.files.certFile,
    proxyKeyFile: opts.pki.files.keyFile,
    terminatorCertFile: opts.pki.destination.certFile,
    terminatorKeyFile: opts.pki.destination.keyFile,
  };
  const terminator = await startHaproxyTerminator(files, POD_IP, backend, opts.otherCpu);
  if (!terminator) return null;
  let proxy: RunningForwarder | null;
  try {
    proxy = await startHaproxyReencrypt(files, { host: POD_IP, port: terminator.port }, opts.gatewayCpu);
  } catch (err) {
    await terminator.stop();
    throw err;
  }
  if (!proxy) {
    await terminator.stop();
    return null;
  }
  const p = proxy;
  return {
    path: { name: 'haproxy', proxyPid: p.pid, terminatorPid: terminator.pid, open: tlsOpener(p.port, opts.pki.client) },
    close: async () => {
      await p.stop();
      await terminator.stop();
    },
  };
}

export async function runWaypointBench(opts: WaypointBenchOptions): Promise<WaypointBenchResult> {
  const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const want = (p: string) => !opts.paths || opts.paths.includes(p);
  const scenario = (s: string) => !opts.scenarios || opts.scenarios.includes(s);
  const notes: string[] = [];
  const rows = new Map<string, WaypointRow>();
  const record = (scn: string, pathName: string, proc: string, metric: string, unit: string, round: number, value: number) => {
    const key = `${scn}|${pathName}|${proc}|${metric}`;
    let row = rows.get(key);
    if (!row) rows.set(key, (row = { scenario: scn, path: pathName, process: proc, metric, unit, values: [] }));
    row.values[round] = value;
  };
  /** CPU of every role per unit of work, and each role's share of a CPU while it ran. */
  const recordCpu = (scn: string, p: PathUnderTest, m: Measurement, perUnit: number, unit: string, scale: number, round: number) => {
    for (const role of ROLES) {
      if (role === 'terminator' && p.terminatorPid === null) continue;
      record(scn, p.name, role, 'cpu', unit, round, (m.cpu[role] * scale) / perUnit);
      record(scn, p.name, role, 'busy', '% of a CPU', round, (m.cpu[role] / m.wallSeconds) * 100);
    }
    // Kernel work (loopback TCP, syscalls) is the same kind for every forwarder; the rest is its own code.
    record(scn, p.name, 'proxy', 'cpu in the kernel', '% of its cpu', round, (m.proxySystem / m.cpu.proxy) * 100);
    // A Node process's CPU is not all its event loop: V8's workers mark and sweep concurrently.
    if (p.name !== 'haproxy') {
      for (const g of THREAD_GROUPS) record(scn, p.name, 'proxy', `cpu, ${g}`, '% of its cpu', round, (m.proxyThreads[g] / m.cpu.proxy) * 100);
    }
  };

  const backend = await startBackendProcess(POD_IP);
  const cleanups: (() => Promise<void>)[] = [];
  const paths: PathUnderTest[] = [];
  try {
    if (want('waygate')) {
      const w = await waygatePath(opts, backend);
      cleanups.push(() => w.close());
      paths.push(w.path);
    }
    if (want('haproxy')) {
      const h = await haproxyPath(opts, backend);
      if (h) {
        cleanups.push(() => h.close());
        paths.push(h.path);
      } else {
        notes.push('haproxy is not installed (npm run bench:setup): the baseline and every ratio to it are skipped');
      }
    }
    if (want('waygate-1hop')) {
      const r = await oneHopPath(opts, backend);
      cleanups.push(() => r.close());
      paths.push(r.path);
    }

    const bulkBytes = opts.quick ? 64 * MiB : 1 * GiB;
    const echoMessages = opts.quick ? 1_000 : 5_000;
    const connectOps = (p: PathUnderTest, inFlight: number) =>
      p.name !== 'haproxy' ? (opts.quick ? 500 : inFlight === 1 ? 1_000 : 4_000) : opts.quick ? 50 : 150;

    await warmUp(paths, { connects: { count: 200, inFlight: 64 } }, log, 'waypoint: warm-up');

    // Scenario-major, path order shuffled per round (bench/lib/rounds.ts: ratios seconds apart).
    const scenarios: RoundScenario<PathUnderTest>[] = [
      {
        name: 'bulk',
        run: async (p, round) => {
          const up = await measure(p, backend.pid, () => upload(p.open, bulkBytes));
          const down = await measure(p, backend.pid, () => download(p.open, bulkBytes));
          const scn = 'bulk 1 tunnel';
          const both: Measurement = {
            wallSeconds: up.wallSeconds + down.wallSeconds,
            cpu: Object.fromEntries(ROLES.map((r) => [r, up.cpu[r] + down.cpu[r]])) as Record<Role, number>,
            proxySystem: up.proxySystem + down.proxySystem,
            proxyThreads: Object.fromEntries(THREAD_GROUPS.map((g) => [g, up.proxyThreads[g] + down.proxyThreads[g]])) as Record<ThreadGroup, number>,
          };
          record(scn, p.name, '', 'throughput', 'MiB/s', round, (2 * bulkBytes) / MiB / both.wallSeconds);
          record(scn, p.name, '', 'throughput up', 'MiB/s', round, bulkBytes / MiB / up.wallSeconds);
          record(scn, p.name, '', 'throughput down', 'MiB/s', round, bulkBytes / MiB / down.wallSeconds);
          recordCpu(scn, p, both, (2 * bulkBytes) / GiB, 's/GiB', 1, round);
          record(scn, p.name, 'proxy', 'cpu up', 's/GiB', round, up.cpu.proxy / (bulkBytes / GiB));
          record(scn, p.name, 'proxy', 'cpu down', 's/GiB', round, down.cpu.proxy / (bulkBytes / GiB));
        },
      },
      {
        name: 'connect',
        run: async (p, round) => {
          for (const inFlight of [1, 64]) {
            const n = connectOps(p, inFlight);
            const before = p.upstreamConnects ? await p.upstreamConnects() : null;
            const m = await measure(p, backend.pid, () => runConcurrent(n, inFlight, () => echoOnce(p.open, 100)));
            const scn = `open+echo 100 B+close, ${inFlight} in flight`;
            record(scn, p.name, '', 'rate', 'ops/s', round, n / m.wallSeconds);
            recordCpu(scn, p, m, n, 'ms/op', 1000, round);
            if (before && p.upstreamConnects) {
              const after = await p.upstreamConnects();
              const reused = after.reused - before.reused;
              const fresh = after.fresh - before.fresh;
              record(scn, p.name, 'proxy', 'upstream CONNECTs on a reused pooled connection', '%', round, (reused / (reused + fresh)) * 100);
              record(scn, p.name, 'proxy', 'new upstream connections', 'count', round, fresh);
              if (reused + fresh !== n) notes.push(`round ${round + 1}, ${scn}: ${reused + fresh} upstream connects counted for ${n} CONNECTs`);
            }
          }
        },
      },
      {
        name: 'echo',
        run: async (p, round) => {
          let rtts: number[] = [];
          const m = await measure(p, backend.pid, async () => {
            rtts = await echoLatency(p.open, echoMessages);
          });
          const scn = 'echo 64 B';
          record(scn, p.name, '', 'p50', 'µs', round, quantile(rtts, 0.5));
          record(scn, p.name, '', 'p99', 'µs', round, quantile(rtts, 0.99));
          recordCpu(scn, p, m, echoMessages, 'µs/msg', 1e6, round);
        },
      },
    ];
    await runRounds({ paths, rounds: opts.rounds, seed: 11, scenarios: scenarios.filter((x) => scenario(x.name)), log, suite: 'waypoint' });
  } finally {
    while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
    await backend.close();
  }

  const rowList = [...rows.values()];
  const comparisons: WaypointComparison[] = [];
  for (const w of rowList.filter((r) => r.path === 'waygate' && r.metric !== 'busy' && !['%', '% of its cpu', 'count'].includes(r.unit))) {
    for (const baseline of ['haproxy', 'waygate-1hop']) {
      const b = rowList.find((r) => r.path === baseline && r.scenario === w.scenario && r.process === w.process && r.metric === w.metric);
      if (!b) continue;
      comparisons.push({ scenario: w.scenario, process: w.process, metric: w.metric, baseline, ...spread(w.values.map((v, i) => v / (b.values[i] ?? Number.NaN))) });
    }
  }
  const ratio = (scn: string, proc: string, metric: string): Spread =>
    comparisons.find((c) => c.scenario === scn && c.process === proc && c.metric === metric && c.baseline === 'haproxy') ?? spread([]);
  const values = (scn: string, proc: string, metric: string): number[] =>
    rowList.find((r) => r.scenario === scn && r.path === 'waygate' && r.process === proc && r.metric === metric)?.values ?? [];
  const targets: WaypointTarget[] = [];
  const add = (name: string, target: string, s: Spread) => targets.push({ name, target, ...s, met: meets(target, s.median) });
  add('gateway CPU s/GiB vs re-encrypting haproxy (bulk 1 tunnel, up + down)', '<= 2x', ratio('bulk 1 tunnel', 'proxy', 'cpu'));
  add('gateway CPU ms per CONNECT, warm upstream pool, 64 in flight (absolute)', '<= 0.35 ms', spread(values('open+echo 100 B+close, 64 in flight', 'proxy', 'cpu')));
  add('echo 64 B p50 vs re-encrypting haproxy', '<= 1.3x', ratio('echo 64 B', '', 'p50'));
  return { rows: rowList, comparisons, targets, notes: [...new Set(notes)] };
}

/* ---------------------------------------------------------------------------------------- render */

const range = (s: Spread) => `${fmt(s.min)}-${fmt(s.max)}`;

function roleName(pathName: string, proc: string): string {
  if (proc === '') return '';
  return ROLE_NAMES[pathName]?.[proc as Role] ?? proc;
}

export function renderWaypointBench(result: WaypointBenchResult): string {
  const out: string[] = [];
  out.push(table(
    ['scenario', 'path', 'process', 'metric', 'median', 'min-max', 'unit'],
    result.rows.filter((r) => r.metric !== 'busy' && r.unit !== '% of its cpu').map((r) => {
      const s = spread(r.values);
      return [r.scenario, r.path, roleName(r.path, r.process), r.metric, fmt(s.median), range(s), r.unit];
    }),
  ));
  // Where the cost goes: every process's share of a CPU while the scenario ran (medians).
  const busy = result.rows.filter((r) => r.metric === 'busy');
  if (busy.length) {
    out.push('', 'CPU share of each process during each scenario (% of one CPU, median over rounds; the process under test has CPU 0 to itself, the others share CPU 1)');
    const keys = [...new Set(busy.map((r) => `${r.scenario}|${r.path}`))];
    out.push(table(['scenario', 'path', ...ROLES, 'proxy: kernel share of its cpu'], keys.map((k) => {
      const [scn, p] = k.split('|') as [string, string];
      return [scn, p, ...ROLES.map((role) => {
        const r = busy.find((x) => x.scenario === scn && x.path === p && x.process === role);
        return r ? fmt(spread(r.values).median) : '-';
      }), (() => {
        const r = result.rows.find((x) => x.scenario === scn && x.path === p && x.metric === 'cpu in the kernel');
        return r ? `${fmt(spread(r.values).median)}%` : '';
      })()];
    })));
    const threadKeys = keys.filter((k) => !k.endsWith('|haproxy'));
    if (threadKeys.length) {
      out.push('', 'waygate under test, its CPU by thread (% of its CPU, median)');
      out.push(table(['scenario', 'path', ...THREAD_GROUPS], threadKeys.map((k) => {
        const [scn, p] = k.split('|') as [string, string];
        return [scn, p, ...THREAD_GROUPS.map((g) => {
          const r = result.rows.find((x) => x.scenario === scn && x.path === p && x.metric === `cpu, ${g}`);
          return r ? `${fmt(spread(r.values).median)}%` : '';
        })];
      })));
    }
    out.push(`roles: proxy = the process under test (waygate / re-encrypting haproxy), terminator = ${ROLE_NAMES['waygate']!.terminator} / ${ROLE_NAMES['haproxy']!.terminator}, client = the load generator`);
  }
  if (result.comparisons.length) {
    out.push('', 'waygate (two hops) / baseline, same-round ratios: median (min-max); vs waygate-1hop = what the HBONE hop adds');
    const baselines = [...new Set(result.comparisons.map((c) => c.baseline))];
    const keys = [...new Set(result.comparisons.map((c) => `${c.scenario}|${c.process}|${c.metric}`))];
    out.push(table(['scenario', 'process', 'metric', ...baselines.map((b) => `vs ${b}`)], keys.map((k) => {
      const [scn, proc, metric] = k.split('|') as [string, string, string];
      return [scn, proc, metric, ...baselines.map((b) => {
        const c = result.comparisons.find((x) => x.scenario === scn && x.process === proc && x.metric === metric && x.baseline === b);
        return c ? `${fmt(c.median)} (${range(c)})` : '';
      })];
    })));
  }
  out.push('', 'targets');
  out.push(table(
    ['target', 'median', 'min-max', 'n', 'target', 'met'],
    result.targets.map((t) => [t.name, fmt(t.median), range(t), String(t.n), t.target, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
  ));
  for (const n of result.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

/* --------------------------------------------------------------------------------------- profile */

/**
 * Runs the bulk and CONNECT workloads through a gateway under test started with `--cpu-prof` (one
 * pair of gateways per workload, so each profile holds one workload) and summarises the top
 * self-time functions of its main thread. The stand-in is not profiled.
 */
export async function profileWaypoint(opts: WaypointBenchOptions): Promise<ProfileResult[]> {
  const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const backend = await startBackendProcess(POD_IP);
  const out: ProfileResult[] = [];
  try {
    const workloads: [string, (open: Opener) => Promise<void>][] = [
      ['waypoint bulk', async (open) => {
        const bytes = opts.quick ? 256 * MiB : 1 * GiB;
        await upload(open, bytes);
        await download(open, bytes);
      }],
      ['waypoint connect', (open) => runConcurrent(opts.quick ? 5_000 : 20_000, 64, () => echoOnce(open, 100))],
    ];
    for (const [name, run] of workloads) {
      const tag = `profile-${name.replace(/\W+/g, '-')}`;
      const profileDir = path.join(opts.dir, `cpu-${tag}`);
      const pair = await startWaygatePair(opts, backend, tag, profileDir);
      let session: HboneClientSession | null = null;
      try {
        session = await loadgenSession(opts, pair.gw.port);
        log(`profiling ${name}`);
        await run(tunnelOpener(session, `${SERVICE_VIP}:${SERVICE_PORT}`));
      } finally {
        await session?.close();
        await pair.close();
      }
      // Thread 0 is the main thread (tsx's loader runs in a worker that writes its own profile).
      const file = readdirSync(profileDir).filter((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f)).map((f) => path.join(profileDir, f))[0] ?? null;
      out.push({ scenario: name, profileFile: file, summary: file ? summariseCpuProfile(file) : null });
    }
  } finally {
    await backend.close();
  }
  return out;
}
