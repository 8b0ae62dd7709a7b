/**
 * Baseline forwarders started as their own processes: haproxy (mode tcp, `verify required`),
 * stunnel (verifyChain) and the node:tls forwarder. Each terminates mutual TLS with the same ECDSA
 * P-256 certificates the gateway uses and forwards one TCP stream per connection to the backend.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';

export interface RunningForwarder {
  name: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export interface ForwarderFiles {
  dir: string;
  certFile: string;
  keyFile: string;
  caFile: string;
}

const children = new Set<ChildProcess>();

/**
 * Registers a child process to be killed if the bench process exits without stopping it (an
 * uncaught error skips the `finally` blocks; a stray haproxy would hold its CPU and port).
 */
export function trackChild(child: ChildProcess): void {
  if (children.size === 0) {
    process.once('exit', () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    });
  }
  children.add(child);
  child.once('exit', () => children.delete(child));
}

/** Prefix that pins a command to one CPU when taskset exists (the gateway core). */
export function pinned(cpu: number | null, command: string, args: string[]): [string, string[]] {
  return cpu === null ? [command, args] : ['taskset', ['-c', String(cpu), command, ...args]];
}

export function which(command: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${command}`]);
  return r.status === 0 ? r.stdout.toString().trim() : null;
}

/** A port that was free a moment ago on `host` (the child binds it; the race is harmless on a bench machine). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  s.listen(0, host);
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function waitForPort(port: number, child: ChildProcess, name: string, host = '127.0.0.1'): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode} before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25)); // polling a port another process opens: no event to await
  }
  throw new Error(`${name} did not listen on ${port}`);
}

export function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
}

export async function startHaproxy(files: ForwarderFiles, upstreamPort: number, cpu: number | null): Promise<RunningForwarder | null> {
  const bin = which('haproxy');
  if (!bin) return null;
  const port = await freePort();
  const cfg = path.join(files.dir, 'haproxy.cfg');
  // haproxy wants certificate and key in one PEM (crt); ca-file + verify required = mutual TLS.
  const combined = path.join(files.dir, 'haproxy-crt.pem');
  writeFileSync(combined, readFileSync(files.certFile, 'utf8') + readFileSync(files.keyFile, 'utf8'));
  writeFileSync(cfg, [
    'global',
    '  nbthread 1',
    // 4,000 connections need ~8,000 fds, under the usual 20,000 hard limit haproxy must stay within.
    '  maxconn 4000',
    'defaults',
    '  mode tcp',
    '  timeout connect 10s',
    '  timeout client 60s',
    '  timeout server 60s',
    'frontend fe',
    `  bind 127.0.0.1:${port} ssl crt ${combined} ca-file ${files.caFile} verify required ssl-min-ver TLSv1.3`,
    '  default_backend be',
    'backend be',
    `  server s1 127.0.0.1:${upstreamPort}`,
    '',
  ].join('\n'));
  const [cmd, args] = pinned(cpu, bin, ['-db', '-f', cfg]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  trackChild(child);
  await waitForPort(port, child, 'haproxy');
  return { name: 'haproxy', port, pid: child.pid!, stop: stopper(child) };
}

export async function startStunnel(files: ForwarderFiles, upstreamPort: number, cpu: number | null): Promise<RunningForwarder | null> {
  const bin = which('stunnel4') ?? which('stunnel');
  if (!bin) return null;
  const port = await freePort();
  const cfg = path.join(files.dir, 'stunnel.conf');
  writeFileSync(cfg, [
    'foreground = yes',
    `pid =`,
    'debug = 3',
    '[bench]',
    `accept = 127.0.0.1:${port}`,
    `connect = 127.0.0.1:${upstreamPort}`,
    `cert = ${files.certFile}`,
    `key = ${files.keyFile}`,
    `CAfile = ${files.caFile}`,
    'verifyChain = yes',
    'sslVersionMin = TLSv1.3',
    'socket = l:TCP_NODELAY=1',
    'socket = r:TCP_NODELAY=1',
    '',
  ].join('\n'));
  const [cmd, args] = pinned(cpu, bin, [cfg]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'ignore'] });
  trackChild(child);
  await waitForPort(port, child, 'stunnel');
  return { name: 'stunnel', port, pid: child.pid!, stop: stopper(child) };
}

export async function startNodeTlsForwarder(files: ForwarderFiles, upstreamPort: number, cpu: number | null): Promise<RunningForwarder> {
  const cfg = path.join(files.dir, 'tls-forwarder.json');
  writeFileSync(cfg, JSON.stringify({ certFile: files.certFile, keyFile: files.keyFile, caFile: files.caFile, upstreamPort }));
  const script = new URL('./tls-forwarder.ts', import.meta.url).pathname;
  const [cmd, args] = pinned(cpu, process.execPath, ['--import', 'tsx', script, cfg]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  trackChild(child);
  const lines = createInterface({ input: child.stdout! });
  const [line] = (await once(lines, 'line')) as [string];
  const port = Number(/listening (\d+)/.exec(line)?.[1]);
  return { name: 'node-tls', port, pid: child.pid!, stop: stopper(child) };
}
