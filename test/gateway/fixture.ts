/**
 * Fixture of the gateway (composition root) tests: a real `startGateway` from a real GatewayConfig
 * file on 127.0.0.1 port 0, TLS files from the test PKI, a policy directory the test edits, and
 * an audit sink whose records a test can await.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CloseRecord, DecisionRecord, ReloadRecord } from '../../src/audit/record.ts';
import type { AuditSink } from '../../src/audit/sink.ts';
import { resolveConfig } from '../../src/config/resolve.ts';
import { startGateway, type RunningGateway } from '../../src/gateway/gateway.ts';
import { connectHbone, type HboneClientSession } from '../../src/hbone/client.ts';
import { createOpsLogger } from '../../src/telemetry/log.ts';
import { GATEWAY_SPIFFE_ID, testPki, writeTlsFiles, type TlsFiles } from '../helpers/pki.ts';

/** Keeps every record; tests await the ones they expect. */
export class RecordingSink implements AuditSink {
  readonly decisions: DecisionRecord[] = [];
  readonly closes: CloseRecord[] = [];
  readonly reloads: ReloadRecord[] = [];
  #waiters: { pred: () => boolean; resolve: () => void }[] = [];
  decision(r: DecisionRecord): void { this.decisions.push(structuredClone(r)); this.#wake(); }
  close(r: CloseRecord): void { this.closes.push(structuredClone(r)); this.#wake(); }
  reload(r: ReloadRecord): void { this.reloads.push(structuredClone(r)); this.#wake(); }
  async flush(): Promise<void> {}
  #wake(): void {
    this.#waiters = this.#waiters.filter((w) => (w.pred() ? (w.resolve(), false) : true));
  }
  /** Resolves once `pred` holds (checked after every record). */
  until(pred: () => boolean): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }));
  }
}

export const spiffeId = (sa: string, ns = 'prod'): string => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

/** An ALLOW policy admitting the listed service accounts of `prod` to any port. */
export function allowPolicy(name: string, ...sas: string[]): string {
  const rules = sas.map((sa) => `    - name: ${sa}\n      when: source.principal == "${spiffeId(sa)}"\n`).join('');
  return `apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\nspec:\n  action: ALLOW\n  rules:\n${rules}`;
}

export interface TestGateway {
  gw: RunningGateway;
  sink: RecordingSink;
  dir: string;
  policyDir: string;
  tls: TlsFiles;
  /** `host:port` -> `{host, port}`. */
  hbone: { host: string; port: number };
  connect(sa: string, opts?: { expectedServerSpiffeId?: string }): Promise<HboneClientSession>;
  writePolicy(file: string, text: string): void;
  /** Resolves with the next reload record after `count` records so far. */
  nextReload(after?: number): Promise<ReloadRecord>;
  /** `GET`/`POST` against one of the side ports. */
  http(port: 'ready' | 'metrics' | 'admin', path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

export function hostPort(a: string): { host: string; port: number } {
  const i = a.lastIndexOf(':');
  return { host: a.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(a.slice(i + 1)) };
}

export async function startTestGateway(opts: { policies: Record<string, string>; spec?: string }): Promise<TestGateway> {
  const pki = testPki();
  const dir = mkdtempSync(join(tmpdir(), 'waygate-gw-'));
  // The same file `waygate serve` reads in the child-process tests; its audit destination is unused
  // here because the in-process gateway writes to the RecordingSink passed below.
  const { configFile, policyDir, tls } = writeServeConfig(dir, opts.policies, opts.spec ?? '');
  const sink = new RecordingSink();
  const log = createOpsLogger({ level: (process.env['WAYGATE_TEST_LOG'] as 'info' | undefined) ?? 'silent' });
  const gw = await startGateway({ effective: resolveConfig({ configFile, env: {} }), log, audit: sink });
  const hbone = hostPort(gw.addresses.hbone);
  const sessions: HboneClientSession[] = [];
  return {
    gw, sink, dir, policyDir, tls, hbone,
    async connect(sa, o = {}) {
      const c = pki.clientFor(spiffeId(sa));
      const s = await connectHbone({
        address: hbone, cert: c.chainPem, key: c.keyPem, ca: pki.trustBundlePem,
        expectedServerSpiffeId: o.expectedServerSpiffeId ?? GATEWAY_SPIFFE_ID,
      });
      sessions.push(s);
      return s;
    },
    writePolicy(file, text) {
      writeFileSync(join(policyDir, file), text);
    },
    nextReload(after = sink.reloads.length) {
      return sink.until(() => sink.reloads.length > after).then(() => sink.reloads[after]!);
    },
    http(port, path, init) {
      return fetch(`http://${gw.addresses[port]}${path}`, init);
    },
    async close() {
      for (const s of sessions) s.destroy();
      await gw.shutdown('test');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A `waygate serve` child process whose operational log (stderr JSON lines) tests can await. */
export interface ServeProcess {
  child: ChildProcess;
  /** Every parsed stderr line so far. */
  lines: Record<string, unknown>[];
  /** Resolves with the first line (already seen or future) matching `pred`. */
  waitForLine(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

export function spawnServe(args: string[], env: NodeJS.ProcessEnv = {}): ServeProcess {
  const bin = new URL('../../bin/waygate.js', import.meta.url).pathname;
  const child = spawn(process.execPath, [bin, 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buf = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        line = { raw: text };
      }
      lines.push(line);
      if (process.env['WAYGATE_TEST_LOG']) process.stderr.write(text + '\n');
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(line)) waiters.splice(i, 1)[0]!.resolve(line);
      }
    }
  });
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    lines,
    exited,
    waitForLine(pred) {
      const seen = lines.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ pred, resolve });
        void exited.then((code) => reject(new Error(`waygate serve exited (${code}) before the expected log line; log:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`)));
      });
    },
  };
}

/**
 * Writes a GatewayConfig for a child process: test PKI files, policies, all ports 0 on loopback.
 * `opts.policyPaths` replaces the policy directory as `policies.paths` (the files are still written
 * to `policyDir`); `opts.debounceMs` the watcher's debounce (20 ms by default, for quick tests).
 */
export function writeServeConfig(
  dir: string,
  policies: Record<string, string>,
  extraSpec = '',
  opts: { policyPaths?: string[]; debounceMs?: number } = {},
): { configFile: string; policyDir: string; auditFile: string; tls: TlsFiles } {
  const pki = testPki();
  const policyDir = join(dir, 'policies');
  mkdirSync(policyDir, { recursive: true });
  for (const [file, text] of Object.entries(policies)) writeFileSync(join(policyDir, file), text);
  const tls = writeTlsFiles(join(dir, 'tls'), pki.serverCert, pki.trustBundlePem);
  const auditFile = join(dir, 'audit.jsonl');
  const configFile = join(dir, 'gateway.yaml');
  writeFileSync(configFile, [
    'apiVersion: waygate.dev/v1alpha1',
    'kind: GatewayConfig',
    'spec:',
    '  listen: 127.0.0.1:0',
    `  tls: { certFile: ${tls.certFile}, keyFile: ${tls.keyFile}, trustBundleFiles: [${tls.caFile}] }`,
    `  policies: { paths: [${(opts.policyPaths ?? [policyDir]).join(', ')}], watch: true, debounceMs: ${opts.debounceMs ?? 20} }`,
    '  destinations: { allow: [{ cidr: 127.0.0.0/8 }] }',
    '  admin: { readyAddress: 127.0.0.1:0, metricsAddress: 127.0.0.1:0, adminAddress: 127.0.0.1:0 }',
    `  audit: { destination: ${auditFile} }`,
    extraSpec,
  ].join('\n') + '\n');
  return { configFile, policyDir, auditFile, tls };
}

/** Opens an HBONE session to `address` as `prod/<sa>`. */
export function connectAs(address: string, sa: string): Promise<HboneClientSession> {
  const pki = testPki();
  const c = pki.clientFor(spiffeId(sa));
  return connectHbone({ address: hostPort(address), cert: c.chainPem, key: c.keyPem, ca: pki.trustBundlePem, expectedServerSpiffeId: GATEWAY_SPIFFE_ID });
}
