/**
 * Data-plane benchmark (issue 6): waygate against direct TCP, haproxy, stunnel and a plain node:tls
 * forwarder, in the same run, interleaved rounds, medians of same-round ratios.
 *
 *   node --import tsx bench/hbone.bench.ts [--quick] [--rounds N]
 *
 * The gateway and the baselines run as their own processes pinned to CPU 0 (taskset); this
 * process (load generator + backend) pins itself to CPU 1. CPU seconds come from /proc/<pid>/stat.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createCa, issueLeaf } from '../src/identity/dev-ca.ts';
import { connectHbone } from '../src/hbone/client.ts';
import {
  startHaproxy, startNodeTlsForwarder, startStunnel, type ForwarderFiles, type RunningForwarder,
} from './baselines/forwarders.ts';
import { startBackend, type Backend } from './lib/backend.ts';
import { startGateway, type RunningGateway } from './lib/gateway-process.ts';
import { cpuSeconds, hasTaskset, machineInfo, rssBytes } from './lib/proc.ts';
import { fmt, quantile, spread, table, type Spread } from './lib/stats.ts';
import {
  directOpener, download, echoLatency, echoOnce, runConcurrent, tlsOpener, upload, type ClientTls, type Opener,
} from './lib/traffic.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

export interface HboneBenchOptions {
  quick: boolean;
  rounds: number;
}

interface Pki {
  files: ForwarderFiles;
  client: ClientTls;
}

function mintPki(dir: string): Pki {
  const ca = createCa({ trustDomain: 'cluster.local' });
  const server = issueLeaf({
    ca,
    spiffeId: 'spiffe://cluster.local/ns/waygate/sa/gateway',
    dnsNames: ['localhost'],
    ips: ['127.0.0.1'],
  });
  const client = issueLeaf({ ca, spiffeId: 'spiffe://cluster.local/ns/bench/sa/loadgen' });
  const files: ForwarderFiles = {
    dir,
    certFile: path.join(dir, 'server.pem'),
    keyFile: path.join(dir, 'server-key.pem'),
    caFile: path.join(dir, 'ca.pem'),
  };
  writeFileSync(files.certFile, server.chainPem);
  writeFileSync(files.keyFile, server.keyPem, { mode: 0o600 });
  writeFileSync(files.caFile, ca.certPem);
  return { files, client: { cert: client.chainPem, key: client.keyPem, ca: ca.certPem } };
}

/** The policy set of the CONNECT scenarios: 100 rules, the loadgen's identity allowed by the last. */
export function writeBenchPolicies(dir: string, rules = 100): void {
  mkdirSync(dir, { recursive: true });
  const lines = [
    'apiVersion: waygate.dev/v1alpha1',
    'kind: AuthorizationPolicy',
    'metadata: { name: bench-allow }',
    'spec:',
    '  action: ALLOW',
    '  rules:',
  ];
  for (let i = 0; i < rules - 1; i++) {
    lines.push(`    - name: svc-${i}`, `      when: source.principal == "spiffe://cluster.local/ns/team-${i}/sa/svc" && destination.port == ${10000 + i}`);
  }
  lines.push('    - name: loadgen', '      when: source.namespace == "bench" && destination.ip == "127.0.0.1"');
  writeFileSync(path.join(dir, 'bench.yaml'), lines.join('\n') + '\n');
}

interface PathUnderTest {
  name: string;
  pid: number | null;
  open: Opener;
  /** Opens many streams on ONE connection when the path multiplexes (waygate), else one conn each. */
  openMany?: (n: number) => Promise<Opener>;
}

async function hbonePath(gw: RunningGateway, pki: Pki, backend: Backend): Promise<{ path: PathUnderTest; close(): Promise<void> }> {
  const sessions: { close(): void | Promise<void> }[] = [];
  const newSession = async () => {
    const s = await connectHbone({ address: { host: '127.0.0.1', port: gw.port }, cert: pki.client.cert, key: pki.client.key, ca: pki.client.ca });
    sessions.push(s);
    return s;
  };
  const shared = await newSession();
  const authority = `127.0.0.1:${backend.port}`;
  const tunnelOn = (session: Awaited<ReturnType<typeof connectHbone>>): Opener => async () => {
    const t = await session.openTunnel(authority);
    if (t.status !== 200) throw new Error(`CONNECT answered ${t.status}`);
    return t.stream;
  };
  return {
    path: {
      name: 'waygate',
      pid: gw.pid,
      open: tunnelOn(shared),
      openMany: async () => tunnelOn(shared),
    },
    close: async () => {
      for (const s of sessions) await s.close();
    },
  };
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

function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let x = seed || 1;
  for (let i = out.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

type Row = { scenario: string; path: string; metric: string; unit: string; values: number[] };

export async function runHboneBench(opts: HboneBenchOptions): Promise<{ rows: Row[]; ratios: Record<string, Spread & { target: string }> ; skipped: string[] }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waygate-bench-'));
  const pin = hasTaskset();
  if (pin) {
    // The load generator and backend live on CPU 1; everything measured lives on CPU 0.
    execFileSync('taskset', ['-pc', '1', String(process.pid)]);
  }
  const gatewayCpu = pin ? 0 : null;
  const pki = mintPki(dir);
  const policiesDir = path.join(dir, 'policies');
  writeBenchPolicies(policiesDir);
  const backend = await startBackend();
  const skipped: string[] = [];

  const haproxy = await startHaproxy(pki.files, backend.port, gatewayCpu);
  if (!haproxy) skipped.push('haproxy not installed (npm run bench:setup): its ratios are skipped');
  const stunnel = await startStunnel(pki.files, backend.port, gatewayCpu);
  if (!stunnel) skipped.push('stunnel not installed (npm run bench:setup): its ratios are skipped');
  const nodeTls = await startNodeTlsForwarder(pki.files, backend.port, gatewayCpu);
  const gw = await startGateway({ ...pki.files, policiesDir, auditFile: path.join(dir, 'audit.jsonl') }, gatewayCpu);
  const hb = await hbonePath(gw, pki, backend);

  const forwarders: RunningForwarder[] = [haproxy, stunnel, nodeTls].filter((f): f is RunningForwarder => f !== null);
  const paths: PathUnderTest[] = [
    { name: 'direct', pid: null, open: directOpener(backend.port) },
    ...forwarders.map((f) => ({ name: f.name, pid: f.pid, open: tlsOpener(f.port, pki.client) })),
    hb.path,
  ];

  const bulkBytes = opts.quick ? 128 * MiB : 1 * GiB;
  const connectOps = opts.quick ? 2_000 : 10_000;
  const echoMessages = opts.quick ? 1_000 : 5_000;
  const rows = new Map<string, Row>();
  const record = (scenario: string, pathName: string, metric: string, unit: string, value: number) => {
    const key = `${scenario}|${pathName}|${metric}`;
    let row = rows.get(key);
    if (!row) rows.set(key, (row = { scenario, path: pathName, metric, unit, values: [] }));
    row.values.push(value);
  };
  const ratioRounds = new Map<string, number[]>();
  const ratio = (name: string, value: number) => {
    const list = ratioRounds.get(name) ?? [];
    list.push(value);
    ratioRounds.set(name, list);
  };

  try {
    for (let round = 0; round < opts.rounds; round++) {
      const perRound = new Map<string, number>();
      for (const p of shuffle(paths, round + 7)) {
        // bulk, one stream each way
        const up = await measure(p.pid, () => upload(p.open, bulkBytes));
        const down = await measure(p.pid, () => download(p.open, bulkBytes));
        const gib = (2 * bulkBytes) / GiB;
        record('bulk 1 stream', p.name, 'throughput', 'MiB/s', (2 * bulkBytes) / MiB / (up.wallSeconds + down.wallSeconds));
        perRound.set(`${p.name}:throughput`, (2 * bulkBytes) / (up.wallSeconds + down.wallSeconds));
        if (p.pid !== null) {
          record('bulk 1 stream', p.name, 'cpu', 's/GiB', (up.cpuSeconds + down.cpuSeconds) / gib);
          perRound.set(`${p.name}:cpuPerGiB`, (up.cpuSeconds + down.cpuSeconds) / gib);
        }
        // bulk, 8 and 64 streams (one HBONE connection for waygate; one connection each for the rest)
        for (const streams of [8, 64]) {
          const per = Math.max(MiB, Math.floor(bulkBytes / streams));
          const opener = p.openMany ? await p.openMany(streams) : p.open;
          const m = await measure(p.pid, () => Promise.all(Array.from({ length: streams }, () => upload(opener, per))).then(() => undefined));
          record(`bulk ${streams} streams`, p.name, 'throughput', 'MiB/s', (per * streams) / MiB / m.wallSeconds);
          if (p.pid !== null) record(`bulk ${streams} streams`, p.name, 'cpu', 's/GiB', m.cpuSeconds / ((per * streams) / GiB));
        }
        // small-message echo latency over one established stream
        const rtts = await echoLatency(p.open, echoMessages);
        record('echo 64 B', p.name, 'p50', 'µs', quantile(rtts, 0.5));
        record('echo 64 B', p.name, 'p99', 'µs', quantile(rtts, 0.99));
        perRound.set(`${p.name}:echoP50`, quantile(rtts, 0.5));
        // a new stream per exchange: CONNECT on the open connection (waygate) vs a new mTLS connection
        for (const inFlight of [1, 64]) {
          const m = await measure(p.pid, () => runConcurrent(connectOps, inFlight, () => echoOnce(p.open, 100)));
          record(`open+100 B echo+close, ${inFlight} in flight`, p.name, 'rate', 'ops/s', connectOps / m.wallSeconds);
          if (p.pid !== null) record(`open+100 B echo+close, ${inFlight} in flight`, p.name, 'cpu', 'ms/op', (m.cpuSeconds * 1000) / connectOps);
          perRound.set(`${p.name}:ops${inFlight}`, connectOps / m.wallSeconds);
          if (p.pid !== null) perRound.set(`${p.name}:cpuPerOp${inFlight}`, (m.cpuSeconds * 1000) / connectOps);
        }
      }
      // same-round ratios (issue 6 targets)
      const g = (k: string) => perRound.get(k) ?? Number.NaN;
      ratio('gateway CPU s/GiB vs haproxy', g('waygate:cpuPerGiB') / g('haproxy:cpuPerGiB'));
      ratio('gateway CPU s/GiB vs node-tls', g('waygate:cpuPerGiB') / g('node-tls:cpuPerGiB'));
      ratio('bulk throughput 1 tunnel vs stunnel', g('waygate:throughput') / g('stunnel:throughput'));
      ratio('gateway CPU ms per CONNECT, 64 in flight (absolute)', g('waygate:cpuPerOp64'));
      ratio('CONNECT/s on one connection vs haproxy new mTLS conn/s', g('waygate:ops64') / g('haproxy:ops64'));
      ratio('echo p50 vs haproxy', g('waygate:echoP50') / g('haproxy:echoP50'));
      process.stderr.write(`round ${round + 1}/${opts.rounds} done\n`);
    }

    // new HBONE connection + first CONNECT (handshake cost), gateway only
    {
      const n = opts.quick ? 200 : 1000;
      const m = await measure(gw.pid, () => runConcurrent(n, 8, async () => {
        const s = await connectHbone({ address: { host: '127.0.0.1', port: gw.port }, cert: pki.client.cert, key: pki.client.key, ca: pki.client.ca });
        const t = await s.openTunnel(`127.0.0.1:${backend.port}`);
        if (t.status !== 200) throw new Error(`CONNECT answered ${t.status}`);
        const reading = (async () => { for await (const _ of t.stream as AsyncIterable<Buffer>) { /* drain */ } })();
        t.stream.write('E');
        t.stream.end(Buffer.alloc(100));
        await reading;
        await s.close();
      }));
      record('new connection + first CONNECT', 'waygate', 'cpu', 'ms/op', (m.cpuSeconds * 1000) / n);
      record('new connection + first CONNECT', 'waygate', 'rate', 'ops/s', n / m.wallSeconds);
    }

    // idle tunnels: RSS per tunnel and per HTTP/2 connection
    for (const tunnels of opts.quick ? [1000] : [1000, 10_000]) {
      const perConnection = 100; // ztunnel opens at most 100 streams per connection (FACTS.md)
      const rss0 = rssBytes(gw.pid);
      const sessions = [];
      const streams = [];
      for (let c = 0; c < tunnels / perConnection; c++) {
        const s = await connectHbone({ address: { host: '127.0.0.1', port: gw.port }, cert: pki.client.cert, key: pki.client.key, ca: pki.client.ca });
        sessions.push(s);
        const opened = await Promise.all(Array.from({ length: perConnection }, () => s.openTunnel(`127.0.0.1:${backend.port}`)));
        for (const t of opened) {
          if (t.status !== 200) throw new Error(`CONNECT answered ${t.status}`);
          t.stream.write('E');
          streams.push(t.stream);
        }
      }
      const rss1 = rssBytes(gw.pid);
      record(`idle tunnels x${tunnels}`, 'waygate', 'rss per tunnel', 'KiB', (rss1 - rss0) / 1024 / tunnels);
      for (const t of streams) t.destroy();
      for (const s of sessions) await s.close();
    }
  } finally {
    await hb.close();
    await gw.stop();
    for (const f of forwarders) await f.stop();
    await backend.close();
  }

  const ratios: Record<string, Spread & { target: string }> = {};
  const targets: Record<string, string> = {
    'gateway CPU s/GiB vs haproxy': '<= 1.5x',
    'gateway CPU s/GiB vs node-tls': '(reference)',
    'bulk throughput 1 tunnel vs stunnel': '>= 0.8x',
    'gateway CPU ms per CONNECT, 64 in flight (absolute)': '<= 0.25 ms',
    'CONNECT/s on one connection vs haproxy new mTLS conn/s': '>= 8x',
    'echo p50 vs haproxy': '<= 1.2x',
  };
  for (const [name, values] of ratioRounds) ratios[name] = { ...spread(values), target: targets[name] ?? '' };
  return { rows: [...rows.values()], ratios, skipped };
}

export function renderHboneBench(result: Awaited<ReturnType<typeof runHboneBench>>): string {
  const out: string[] = [];
  out.push(table(
    ['scenario', 'path', 'metric', 'median', 'min', 'max', 'unit'],
    result.rows.map((r) => {
      const s = spread(r.values);
      return [r.scenario, r.path, r.metric, fmt(s.median), fmt(s.min), fmt(s.max), r.unit];
    }),
  ));
  out.push('');
  out.push(table(
    ['target (same-round ratio)', 'median', 'min', 'max', 'target'],
    Object.entries(result.ratios).map(([k, s]) => [k, fmt(s.median), fmt(s.min), fmt(s.max), s.target]),
  ));
  for (const s of result.skipped) out.push(`skipped: ${s}`);
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const roundsFlag = process.argv.indexOf('--rounds');
  const rounds = roundsFlag > 0 ? Number(process.argv[roundsFlag + 1]) : quick ? 3 : 5;
  const result = await runHboneBench({ quick, rounds });
  process.stdout.write(renderHboneBench(result) + '\n');
  const file = path.join(new URL('./results/', import.meta.url).pathname, `hbone-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ machine: machineInfo(), options: { quick, rounds }, ...result }, null, 2));
  process.stdout.write(`wrote ${file}\n`);
}
