/**
 * Baseline forwarders started as their own processes: haproxy (mode tcp, `verify required`),
 * stunnel (verifyChain) and the node:tls forwarder. Each terminates mutual TLS with the same ECDSA
 * P-256 certificates the gateway uses and forwards one TCP stream per connection to the backend.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
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

/** Prefix that pins a command to one CPU when taskset exists (the gateway core). */
export function pinned(cpu: number | null, command: string, args: string[]): [string, string[]] {
  return cpu === null ? [command, args] : ['taskset', ['-c', String(cpu), command, ...args]];
}

export function which(command: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${command}`]);
  return r.status === 0 ? r.stdout.toString().trim() : null;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, name: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode} before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25)); // polling a port another process opens: no event to await
  }
  throw new Error(`${name} did not listen on ${port}`);
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await once(child, 'exit');
  };
}

export async function startHaproxy(files: ForwarderFiles, upstreamPort: number, cpu: number | null): Promise<RunningForwarder | null> {
  const bin = which('haproxy');
  if (!bin) return null;
  const port = await freePort();
  const cfg = path.join(files.dir, 'haproxy.cfg');
  // haproxy wants certificate and key in one PEM (crt); ca-file + verify required = mutual TLS.
  const combined = path.join(files.dir, 'haproxy-crt.pem');
  const { readFileSync } = await import('node:fs');
  writeFileSync(combined, readFileSync(files.certFile, 'utf8') + readFileSync(files.keyFile, 'utf8'));
  writeFileSync(cfg, [
    'global',
    '  nbthread 1',
    '  maxconn 20000',
    '  tune.ssl.default-dh-param 2048',
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
  await waitForPort(port, child, 'stunnel');
  return { name: 'stunnel', port, pid: child.pid!, stop: stopper(child) };
}

export async function startNodeTlsForwarder(files: ForwarderFiles, upstreamPort: number, cpu: number | null): Promise<RunningForwarder> {
  const cfg = path.join(files.dir, 'tls-forwarder.json');
  writeFileSync(cfg, JSON.stringify({ certFile: files.certFile, keyFile: files.keyFile, caFile: files.caFile, upstreamPort }));
  const script = new URL('./tls-forwarder.ts', import.meta.url).pathname;
  const [cmd, args] = pinned(cpu, process.execPath, ['--import', 'tsx', script, cfg]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const [line] = (await once(lines, 'line')) as [string];
  const port = Number(/listening (\d+)/.exec(line)?.[1]);
  return { name: 'node-tls', port, pid: child.pid!, stop: stopper(child) };
}
