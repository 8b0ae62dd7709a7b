/**
 * Shared fixture of the HBONE server tests: a gateway on 127.0.0.1:0 with the test PKI, the
 * shared test audit sink (test/helpers/sink.ts: records a test can await, with a timeout),
 * deterministic authorize functions, and upstream servers (echo, sink, silent) that count their
 * connections.
 */
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { connect as netConnect, createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { connectHbone, type HboneClientSession } from '../../src/hbone/client.ts';
import { createHboneServer, type HboneServer, type HboneServerOptions } from '../../src/hbone/server.ts';
import type { DecisionContext } from '../../src/policy/context.ts';
import type { Decision } from '../../src/policy/decision.ts';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { testPki, GATEWAY_SPIFFE_ID } from '../helpers/pki.ts';
import { RecordingSink } from '../helpers/sink.ts';

/** The HBONE tests' name for the shared test sink (test/helpers/sink.ts). */
export { RecordingSink as MemorySink } from '../helpers/sink.ts';
export { spiffe } from '../helpers/pki.ts';

export const SNAPSHOT = { version: 7, hash: 'sha256:test' };

/** A Decision as the engine would return it. */
export function makeDecision(allow: boolean, policy: string | null, rule: string | null, reason?: Decision['reason']): Decision {
  return {
    decision: allow ? 'allow' : 'deny',
    reason: reason ?? (allow ? 'allowed' : policy ? 'explicit_deny' : 'no_allow_match'),
    policy,
    rule,
    audit: [],
    dryRun: null,
    evalErrors: [],
    snapshot: SNAPSHOT,
    evalMicros: 3,
  };
}

/** Allows the listed service accounts (policy `allow-sa`, rule `sa-<name>`), denies the rest (no_allow_match). */
export function allowServiceAccounts(...sas: string[]): (ctx: DecisionContext) => Decision {
  return (ctx) =>
    sas.includes(ctx.source.serviceAccount)
      ? makeDecision(true, 'allow-sa', `sa-${ctx.source.serviceAccount}`)
      : makeDecision(false, null, null, 'no_allow_match');
}

/** An upstream TCP server counting connections; `mode` echo (half-close aware), sink or silent. */
export interface Upstream {
  server: Server;
  port: number;
  connections: number;
  sockets: Set<Socket>;
  /** Resolves with the next accepted socket. */
  nextSocket(): Promise<Socket>;
  close(): Promise<void>;
}

export async function startUpstream(mode: 'echo' | 'hold' = 'echo', host = '127.0.0.1'): Promise<Upstream> {
  const pending: ((s: Socket) => void)[] = [];
  const queue: Socket[] = [];
  const up: Upstream = {
    server: createServer({ allowHalfOpen: true }, (s) => {
      up.connections++;
      up.sockets.add(s);
      s.on('error', () => {});
      s.once('close', () => up.sockets.delete(s));
      if (mode === 'echo') s.pipe(s);
      const w = pending.shift();
      if (w) w(s);
      else queue.push(s);
    }),
    port: 0,
    connections: 0,
    sockets: new Set(),
    nextSocket() {
      const s = queue.shift();
      if (s) return Promise.resolve(s);
      return new Promise((resolve) => pending.push(resolve));
    },
    async close() {
      for (const s of up.sockets) s.destroy();
      await new Promise<void>((resolve) => up.server.close(() => resolve()));
    },
  };
  up.server.listen(0, host);
  await once(up.server, 'listening');
  up.port = (up.server.address() as AddressInfo).port;
  return up;
}

export interface Gateway {
  server: HboneServer;
  port: number;
  sink: RecordingSink;
  connect(spiffeId: string, certOverride?: { cert: string; key: string }): Promise<HboneClientSession>;
  close(): Promise<void>;
}

/** Starts a gateway allowing 127.0.0.1/32 destinations unless `overrides.destinations` says otherwise. */
export async function startGateway(overrides: Partial<HboneServerOptions> = {}): Promise<Gateway> {
  const pki = testPki();
  const sink = new RecordingSink();
  const server = createHboneServer({
    listen: { host: '127.0.0.1', port: 0 },
    tls: { cert: pki.serverCert.chainPem, key: pki.serverCert.keyPem, ca: pki.trustBundlePem },
    acceptedTrustDomains: ['cluster.local'],
    authorize: allowServiceAccounts('frontend'),
    audit: sink,
    destinations: { allow: [{ cidr: '127.0.0.1/32' }] },
    snapshotInfo: () => SNAPSHOT,
    ...overrides,
  });
  const addr = await server.listen();
  const sessions: HboneClientSession[] = [];
  return {
    server,
    port: addr.port,
    sink,
    async connect(spiffeId, certOverride) {
      const cert = certOverride ?? (() => {
        const c = pki.clientFor(spiffeId);
        return { cert: c.chainPem, key: c.keyPem };
      })();
      const s = await connectHbone({
        address: { host: '127.0.0.1', port: addr.port },
        cert: cert.cert,
        key: cert.key,
        ca: pki.trustBundlePem,
        expectedServerSpiffeId: GATEWAY_SPIFFE_ID,
      });
      sessions.push(s);
      return s;
    },
    async close() {
      for (const s of sessions) s.destroy();
      await server.close();
    },
  };
}

/**
 * Reads a stream to its end without destroying it (async iteration would destroy it at the end,
 * which for a half-open socket also closes the other direction).
 */
export function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** Resolves on 'close' (events.once would reject on an 'error' emitted first). */
export function closed(emitter: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => emitter.once('close', () => resolve()));
}

/**
 * A loopback port whose connects hang: Linux drops SYNs to a listener whose accept queue is full,
 * so a dial waits until its own timeout. python3 listens with backlog 0 and never accepts; the
 * queue is filled first. Deterministic, and loopback only.
 */
export async function startBlackhole(): Promise<{ port: number; close(): void }> {
  const py = spawn('/usr/bin/python3', ['-c', [
    'import socket, sys',
    's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.read()',
  ].join('\n')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(py.stdout!, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  const fillers: Socket[] = [];
  // Fill the accept queue until a connect no longer completes.
  for (let i = 0; i < 8; i++) {
    const s = netConnect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    fillers.push(s);
    let timer: NodeJS.Timeout | undefined;
    const ok = await Promise.race([
      once(s, 'connect').then(() => true),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), 200);
      }),
    ]);
    clearTimeout(timer);
    if (!ok) break;
  }
  return {
    port,
    close() {
      for (const s of fillers) s.destroy();
      py.stdin!.end();
      py.kill();
    },
  };
}

// Raw HTTP/2 frames, for peers a well-behaved client cannot imitate.
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK literal header fields without indexing, new names, no Huffman (RFC 7541 §6.2.2). */
export function hpack(headers: [string, string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [n, v] of headers) {
    if (n.length >= 127 || v.length >= 127) throw new Error('hpack(): names and values under 127 bytes only');
    parts.push(Buffer.from([0x00, n.length]), Buffer.from(n), Buffer.from([v.length]), Buffer.from(v));
  }
  return Buffer.concat(parts);
}

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** A raw HTTP/2 peer over mTLS that sends exactly the bytes it is told to, and never answers PING. */
export async function rawPeer(port: number, spiffeId: string): Promise<{ socket: TLSSocket; frames: Frame[]; next(pred: (f: Frame) => boolean): Promise<Frame> }> {
  const pki = testPki();
  const c = pki.clientFor(spiffeId);
  const socket = tlsConnect({ host: '127.0.0.1', port, cert: c.chainPem, key: c.keyPem, ca: pki.trustBundlePem, ALPNProtocols: ['h2'], servername: '', checkServerIdentity: () => undefined });
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  const frames: Frame[] = [];
  const waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3);
      if (buf.length < 9 + len) break;
      const f = { type: buf[3]!, flags: buf[4]!, streamId: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) };
      buf = buf.subarray(9 + len);
      frames.push(f);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(f)) {
          waiters[i]!.resolve(f);
          waiters.splice(i, 1);
        }
      }
    }
  });
  return {
    socket,
    frames,
    next(pred) {
      const hit = frames.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
  };
}

export const HEADERS = 0x1;
export const RST_STREAM = 0x3;
export const SETTINGS = 0x4;
export const PING = 0x6;
export const GOAWAY = 0x7;
export const END_HEADERS = 0x4;

