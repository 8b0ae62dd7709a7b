/**
 * A seeded traffic generator for a running gateway: opens HBONE connections as the workloads of
 * the demo cluster (identities.ts) and sends the mix of scenarios.ts, moving real bytes through the
 * allowed tunnels (each echo is checked byte for byte), so the gateway's audit log gets every
 * reason code, AUDIT and dry-run matches, and close records with bytes.
 *
 *   node --import tsx examples/traffic/generate.ts [--gateway 127.0.0.1:15008] [--pki .waygate/pki]
 *     [--start-backends | --backend-host H] [--backend-port 8080] [--count 200] [--seed 1] [--hold N]
 *
 * With the defaults it drives `npm start` from the repository root: the gateway on 127.0.0.1:15008
 * and its dev CA in .waygate/pki. `--start-backends` starts echo backends on a random 127.x.y.z on
 * the ports the example policies name (8080 API, 5432 database, 9090 metrics); without it they must
 * already listen on --backend-host. `--hold N` then keeps N tunnels open until the gateway is
 * stopped, to watch a drain.
 *
 * Like ztunnel, each workload keeps one HBONE connection and multiplexes its tunnels on it. Only
 * loopback addresses are ever dialed by this script; the non-loopback authorities of the mix
 * (10.0.1.7, 169.254.169.254, a service name) are sent to the gateway, which must refuse them
 * without dialing.
 *
 * Exit codes: 0 every answer was the expected one, 1 some were not (listed), 2 bad flags or the
 * gateway could not be reached.
 */
import { createHash } from 'node:crypto';
import http2, { type ClientHttp2Stream } from 'node:http2';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DEV_SERVER_SPIFFE_ID } from '../../src/gateway/dev-pki.ts';
import { connectHbone, ztunnelHeaders, type HboneClientSession } from '../../src/hbone/client.ts';
import { isPortClosed, randomLoopbackAddress, startEchoBackends, type EchoBackends } from './echo-backend.ts';
import { mintClientCast, type ClientCast, type ClientIdentity, type ClientName } from './identities.ts';
import {
  DEFAULT_TARGETS, payloadSize, planMix, SCENARIOS, seededHex, seededRandom, type Scenario, type Targets,
} from './scenarios.ts';

export interface TrafficOptions {
  gateway: { host: string; port: number };
  /** CA directory the gateway trusts (`ca.crt`, `ca.key`, `root.crt`): client certificates are minted from it. */
  pkiDir: string;
  /** Loopback address of the echo backends, and the ports the example policies name. */
  targets: Targets;
  /** CONNECTs to send (every scenario at least once when count >= the number of scenarios). */
  count: number;
  seed: number;
  /** Tunnels in flight at once, over all workloads. Default 8. */
  concurrency?: number;
  /** The gateway's SPIFFE ID (checked like ztunnel does); default the embedded profile's. */
  serverId?: string;
  /** Mean pause between two requests of one worker, to spread the log over time. Default 0. */
  paceMs?: number;
}

/** What one scenario got. */
export interface ScenarioTally {
  name: string;
  expected: string;
  sent: number;
  /** `:status` (or `handshake`, `error: ...`) -> count. */
  outcomes: Record<string, number>;
  mismatches: number;
}

export interface TrafficResult {
  scenarios: ScenarioTally[];
  /** Payload bytes echoed back intact through allowed tunnels. */
  bytesEchoed: number;
  /** Human-readable mismatches, at most one per scenario. */
  problems: string[];
}

/** Fake pod addresses ztunnel would report in `forwarded: for=` (informational only). */
const POD_IPS: Record<ClientName, string> = {
  frontend: '10.0.0.5',
  api: '10.0.1.7',
  migrate: '10.0.1.20',
  prometheus: '10.0.2.3',
  'dev-web': '10.8.0.4',
  sandbox: '10.9.0.12',
  'no-spiffe': '10.0.5.9',
  partner: '192.168.50.3',
  'foreign-ca': '192.168.60.8',
};

/** One pooled HBONE connection per workload, reconnected when it went away. */
class SessionPool {
  private readonly sessions = new Map<ClientName, Promise<HboneClientSession>>();

  constructor(
    private readonly cast: ClientCast,
    private readonly gateway: TrafficOptions['gateway'],
    private readonly serverId: string,
  ) {}

  /** A fresh, unpooled connection (the foreign-CA client: it must fail every time). */
  connectOnce(client: ClientIdentity): Promise<HboneClientSession> {
    return connectHbone({
      address: this.gateway,
      cert: client.certPem,
      key: client.keyPem,
      ca: this.cast.caPem,
      expectedServerSpiffeId: this.serverId,
      connectTimeoutMs: 5_000,
    });
  }

  async get(name: ClientName): Promise<HboneClientSession> {
    const existing = this.sessions.get(name);
    if (existing) {
      const s = await existing.catch(() => null);
      if (s && !s.session.closed && !s.session.destroyed) return s;
    }
    const fresh = this.connectOnce(this.cast.clients[name]);
    this.sessions.set(name, fresh);
    return fresh;
  }

  async closeAll(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => null))?.close()));
  }
}

function headersFor(s: Scenario, client: ClientIdentity, random: () => number): Record<string, string> {
  if (s.request.kind !== 'tunnel' || s.request.headers === 'none') return { ...(s.request.kind === 'tunnel' ? s.request.extra : {}) };
  const h = ztunnelHeaders({
    srcIp: POD_IPS[client.name],
    srcPort: 32768 + Math.floor(random() * 28_000),
    namespace: client.namespace,
    workload: client.workload,
    service: client.workload,
    serviceVersion: 'v1',
    traceId: seededHex(random, 16),
    spanId: seededHex(random, 8),
  });
  if (s.request.headers === 'ztunnel-untraced') delete h.traceparent;
  return { ...h, ...s.request.extra };
}

/** A seeded payload (not crypto-random: the same seed moves the same bytes). */
function makePayload(size: number, random: () => number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) {
    const word = Math.floor(random() * 0x1_0000_0000);
    for (let b = 0; b < 4 && i + b < size; b++) buf[i + b] = (word >>> (8 * b)) & 0xff;
  }
  return buf;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Sends `payload`, half-closes, and resolves with everything read until the server's END_STREAM. */
function echoThrough(stream: ClientHttp2Stream, payload: Buffer): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
    stream.once('close', () => reject(new Error(`tunnel reset before END_STREAM (RST_STREAM code ${stream.rstCode ?? 'none'})`)));
    stream.end(payload);
  });
}

/** Sends part of `payload`, waits for some echo, then resets the stream as a crashing client would. */
function abortMidway(stream: ClientHttp2Stream, payload: Buffer): Promise<void> {
  return new Promise<void>((resolve) => {
    stream.on('error', () => {});
    stream.once('data', () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    stream.once('close', () => resolve());
    stream.write(payload.subarray(0, Math.ceil(payload.length / 2)));
  });
}

/** A raw node:http2 request: the HBONE client helper only sends well-formed CONNECTs. */
function rawRequest(session: HboneClientSession, method: 'CONNECT' | 'GET', authority: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const headers: http2.OutgoingHttpHeaders = method === 'GET'
      ? { ':method': 'GET', ':path': '/metrics', ':authority': authority }
      : { ':method': 'CONNECT', ':authority': authority };
    const stream = session.session.request(headers, { endStream: method === 'GET' });
    stream.on('error', reject);
    stream.once('response', (h) => {
      stream.close(http2.constants.NGHTTP2_NO_ERROR);
      resolve(Number(h[':status']));
    });
    stream.once('close', () => reject(new Error(`reset before a response (RST_STREAM code ${stream.rstCode ?? 'none'})`)));
  });
}

/** Runs one scenario; resolves with its outcome label and the bytes echoed. */
async function runOne(s: Scenario, pool: SessionPool, cast: ClientCast, targets: Targets, random: () => number): Promise<{ outcome: string; bytes: number; problem?: string }> {
  const client = cast.clients[s.client];
  const req = s.request;
  const authority = req.authority(targets);
  if (client.failsHandshake) {
    // TLS 1.3: the client may finish its side before the server verifies the client certificate,
    // so the refusal shows either in connect or as the connection dying on the first request.
    let session: HboneClientSession | undefined;
    try {
      session = await pool.connectOnce(client);
      const t = await session.openTunnel(authority, headersFor(s, client, random));
      return { outcome: String(t.status), bytes: 0, problem: `answered ${t.status} instead of failing the handshake` };
    } catch {
      return { outcome: 'handshake', bytes: 0 };
    } finally {
      session?.destroy();
    }
  }
  const session = await pool.get(s.client);
  if (req.kind === 'raw') return { outcome: String(await rawRequest(session, req.method, authority)), bytes: 0 };

  const headers = headersFor(s, client, random);
  const payload = s.payload ? makePayload(payloadSize(s.payload, random), random) : Buffer.alloc(0);
  const tunnel = await session.openTunnel(authority, headers);
  const outcome = String(tunnel.status);
  if (tunnel.status !== 200) return { outcome, bytes: 0 };
  if (req.abortMidway) {
    await abortMidway(tunnel.stream, payload);
    return { outcome, bytes: 0 };
  }
  const echoed = await echoThrough(tunnel.stream, payload);
  if (echoed.length !== payload.length || sha256(echoed) !== sha256(payload)) {
    return { outcome, bytes: 0, problem: `echo mismatch: sent ${payload.length} B, got ${echoed.length} B back` };
  }
  return { outcome, bytes: payload.length };
}

/** Runs the mix against the gateway and tallies the answers per scenario. */
export async function runTraffic(opts: TrafficOptions): Promise<TrafficResult> {
  const random = seededRandom(opts.seed);
  const cast = mintClientCast(opts.pkiDir);
  const pool = new SessionPool(cast, opts.gateway, opts.serverId ?? DEV_SERVER_SPIFFE_ID);
  const plan = planMix(opts.count, random);
  // One PRNG per request, seeded in plan order: workers interleave by timing, yet request i always
  // gets the same source port, trace id and payload for a given seed.
  const requestSeeds = plan.map(() => Math.floor(random() * 0x1_0000_0000));
  const pace = seededRandom(opts.seed ^ 0x9ace);
  const tallies = new Map<string, ScenarioTally>();
  for (const s of SCENARIOS) {
    tallies.set(s.name, { name: s.name, expected: String(s.expectStatus), sent: 0, outcomes: {}, mismatches: 0 });
  }
  const problems = new Map<string, string>();
  let bytesEchoed = 0;
  let next = 0;
  const paceMs = opts.paceMs ?? 0;

  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      const s = plan[i];
      if (s === undefined) return;
      const tally = tallies.get(s.name)!;
      tally.sent++;
      let result: { outcome: string; bytes: number; problem?: string };
      try {
        result = await runOne(s, pool, cast, opts.targets, seededRandom(requestSeeds[i]!));
      } catch (err) {
        result = { outcome: 'error', bytes: 0, problem: (err as Error).message };
      }
      tally.outcomes[result.outcome] = (tally.outcomes[result.outcome] ?? 0) + 1;
      bytesEchoed += result.bytes;
      if (result.outcome !== String(s.expectStatus) || result.problem) {
        tally.mismatches++;
        if (!problems.has(s.name)) problems.set(s.name, `${s.name}: expected ${s.expectStatus}, got ${result.outcome}${result.problem ? ` (${result.problem})` : ''}`);
      }
      if (paceMs > 0) await new Promise((r) => setTimeout(r, pace() * 2 * paceMs));
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 8) }, worker));
  } finally {
    await pool.closeAll();
  }
  return { scenarios: [...tallies.values()], bytesEchoed, problems: [...problems.values()] };
}

/** Tunnels kept open on purpose, to show what a drain does to live tunnels. */
export interface HeldTunnels {
  readonly count: number;
  /** Resolves when every held tunnel has ended; each entry says how (END_STREAM seen, RST_STREAM code). */
  readonly ended: Promise<string[]>;
  /** Closes them from the client side (NO_ERROR) and the connection. */
  release(): Promise<void>;
}

/**
 * Opens `count` allowed frontend -> API tunnels, moves a few bytes through each and keeps them
 * open until the gateway ends them (drain: GOAWAY, then RST_STREAM at the deadline) or
 * {@link HeldTunnels.release} is called.
 */
export async function holdTunnels(opts: TrafficOptions, count: number): Promise<HeldTunnels> {
  const random = seededRandom(opts.seed ^ 0x5eed);
  const cast = mintClientCast(opts.pkiDir);
  const pool = new SessionPool(cast, opts.gateway, opts.serverId ?? DEV_SERVER_SPIFFE_ID);
  const frontend = cast.clients.frontend;
  const session = await pool.get('frontend');
  const scenario = SCENARIOS[0]!;
  const endings: Promise<string>[] = [];
  const streams: ClientHttp2Stream[] = [];
  for (let i = 0; i < count; i++) {
    const t = await session.openTunnel(`${opts.targets.backendHost}:${opts.targets.apiPort}`, headersFor(scenario, frontend, random));
    if (t.status !== 200) throw new Error(`held tunnel ${i} answered ${t.status}`);
    const hello = Buffer.from(`long-lived stream ${i}\n`);
    const echoed = new Promise<void>((resolve) => t.stream.once('data', () => resolve()));
    t.stream.write(hello);
    await echoed;
    t.stream.on('data', () => {});
    t.stream.on('error', () => {});
    endings.push(new Promise<string>((resolve) => {
      let sawEnd = false;
      t.stream.once('end', () => (sawEnd = true));
      // Node reports an RST_STREAM from the server as rstCode (8 = CANCEL, docs/design.md §2 for a drain).
      t.stream.once('close', () => resolve(`${sawEnd ? 'END_STREAM' : 'no END_STREAM'}, RST_STREAM code ${t.stream.rstCode ?? 'none'}`));
    }));
    streams.push(t.stream);
  }
  return {
    count,
    ended: Promise.all(endings),
    release: async () => {
      for (const s of streams) if (!s.closed) s.close(http2.constants.NGHTTP2_NO_ERROR);
      await Promise.all(endings);
      await pool.closeAll();
    },
  };
}

/** The result as a table for people. */
export function formatResult(r: TrafficResult): string {
  const rows = r.scenarios.map((t) => [
    t.mismatches > 0 ? '!' : ' ',
    String(t.sent),
    t.expected,
    Object.entries(t.outcomes).map(([k, v]) => `${k}x${v}`).join(' ') || '-',
    t.name,
  ]);
  const head = [' ', 'sent', 'expect', 'got', 'scenario'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const out = [line(head), ...rows.map(line)];
  out.push('', `${r.scenarios.reduce((s, t) => s + t.sent, 0)} requests, ${r.bytesEchoed} payload bytes echoed intact`);
  for (const p of r.problems) out.push(`MISMATCH ${p}`);
  return out.join('\n') + '\n';
}

function hostPort(flag: string, value: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:[\]]+):(\d+)$/.exec(value);
  if (!m) throw new Error(`${flag}: expected host:port, got "${value}"`);
  return { host: m[1]!, port: Number(m[2]) };
}

function intFlag(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new Error(`${flag}: expected a non-negative integer, got "${value}"`);
  return Number(value);
}

function isLoopback(host: string): boolean {
  return host === '::1' || host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const USAGE = `usage: generate.ts [--gateway 127.0.0.1:15008] [--pki .waygate/pki] [--start-backends | --backend-host H]
       [--backend-port 8080] [--db-port 5432] [--metrics-port 9090] [--closed-port 15020] [--count 200]
       [--seed 1] [--concurrency 8] [--pace-ms 0] [--server-id ${DEV_SERVER_SPIFFE_ID}] [--hold 0]
`;

async function main(argv: string[]): Promise<number> {
  let opts: TrafficOptions;
  let startBackends: boolean;
  let hold: number;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        gateway: { type: 'string', default: '127.0.0.1:15008' },
        pki: { type: 'string', default: '.waygate/pki' },
        'backend-host': { type: 'string' },
        'backend-port': { type: 'string' },
        'db-port': { type: 'string' },
        'metrics-port': { type: 'string' },
        'closed-port': { type: 'string' },
        'start-backends': { type: 'boolean', default: false },
        count: { type: 'string' },
        seed: { type: 'string' },
        concurrency: { type: 'string' },
        'pace-ms': { type: 'string' },
        'server-id': { type: 'string' },
        hold: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    startBackends = values['start-backends'];
    // Backends we start ourselves go on a random 127.x.y.z, clear of whatever already listens on
    // 127.0.0.1:8080 (and of the gateway's own 127.0.0.1:15020, the closed-port scenario's port).
    const backendHost = values['backend-host'] ?? (startBackends ? randomLoopbackAddress() : '127.0.0.1');
    if (!isLoopback(backendHost)) throw new Error(`--backend-host ${backendHost}: only loopback backends are used`);
    const gateway = hostPort('--gateway', values.gateway);
    // A demo that sends deliberately bad traffic: it only ever talks to a gateway on this machine.
    if (!isLoopback(gateway.host)) throw new Error(`--gateway ${values.gateway}: only a gateway on a loopback address is driven`);
    hold = intFlag('--hold', values.hold, 0);
    opts = {
      gateway,
      pkiDir: values.pki,
      targets: {
        ...DEFAULT_TARGETS,
        backendHost,
        apiPort: intFlag('--backend-port', values['backend-port'], DEFAULT_TARGETS.apiPort),
        dbPort: intFlag('--db-port', values['db-port'], DEFAULT_TARGETS.dbPort),
        metricsPort: intFlag('--metrics-port', values['metrics-port'], DEFAULT_TARGETS.metricsPort),
        closedPort: intFlag('--closed-port', values['closed-port'], DEFAULT_TARGETS.closedPort),
      },
      count: intFlag('--count', values.count, 200),
      seed: intFlag('--seed', values.seed, 1),
      concurrency: intFlag('--concurrency', values.concurrency, 8),
      paceMs: intFlag('--pace-ms', values['pace-ms'], 0),
      ...(values['server-id'] ? { serverId: values['server-id'] } : {}),
    };
  } catch (err) {
    process.stderr.write(`generate: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }

  let backends: EchoBackends | undefined;
  try {
    const t = opts.targets;
    if (startBackends) {
      backends = await startEchoBackends({ host: t.backendHost, ports: [t.apiPort, t.dbPort, t.metricsPort] });
      process.stdout.write(`echo backends on ${t.backendHost}:${[t.apiPort, t.dbPort, t.metricsPort].join(',')}\n`);
    }
    if (!(await isPortClosed(t.backendHost, t.closedPort))) {
      process.stderr.write(`generate: warning: ${t.backendHost}:${t.closedPort} is in use, so the upstream_failed scenario may be answered 200; pick a free port with --closed-port\n`);
    }
    const result = await runTraffic(opts);
    process.stdout.write(formatResult(result));
    if (hold > 0) {
      const held = await holdTunnels(opts, hold);
      process.stdout.write(`holding ${held.count} tunnels open; stop the gateway (SIGTERM) to see them drained\n`);
      const endings = await held.ended;
      process.stdout.write(`held tunnels ended: ${endings.join('; ')}\n`);
      await held.release();
    }
    return result.problems.length > 0 ? 1 : 0;
  } catch (err) {
    process.stderr.write(`generate: ${(err as Error).message}\n`);
    return 2;
  } finally {
    await backends?.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
