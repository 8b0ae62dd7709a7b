/**
 * Starts waygate as its own process, pinned to the gateway CPU, exactly as an operator would
 * (`waygate serve` with flags), so its CPU and RSS are read from /proc like haproxy's.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pinned, type RunningForwarder } from '../baselines/forwarders.ts';

export interface GatewayFiles {
  dir: string;
  certFile: string;
  keyFile: string;
  caFile: string;
  policiesDir: string;
  auditFile: string;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface RunningGateway extends RunningForwarder {
  adminPort: number;
  readyPort: number;
  metricsPort: number;
}

export async function startGateway(files: GatewayFiles, cpu: number | null, extraArgs: string[] = []): Promise<RunningGateway> {
  const [port, adminPort, readyPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const configFile = path.join(files.dir, 'gateway.yaml');
  writeFileSync(configFile, [
    'apiVersion: waygate.dev/v1alpha1',
    'kind: GatewayConfig',
    'spec:',
    `  listen: 127.0.0.1:${port}`,
    '  tls:',
    `    certFile: ${files.certFile}`,
    `    keyFile: ${files.keyFile}`,
    `    trustBundleFiles: [${files.caFile}]`,
    '  trustDomains: [cluster.local]',
    '  policies:',
    `    paths: [${files.policiesDir}]`,
    '  defaultAction: DENY',
    '  destinations:',
    '    allow:',
    '      - cidr: 127.0.0.1/32',
    '  audit:',
    `    destination: ${files.auditFile}`,
    '  log:',
    '    level: warn',
    '  admin:',
    `    adminAddress: 127.0.0.1:${adminPort}`,
    `    readyAddress: 127.0.0.1:${readyPort}`,
    `    metricsAddress: 127.0.0.1:${metricsPort}`,
    '',
  ].join('\n'));
  const bin = new URL('../../bin/waygate.js', import.meta.url).pathname;
  const [cmd, args] = pinned(cpu, process.execPath, [bin, 'serve', '--config', configFile, ...extraArgs]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NODE_ENV: 'production' } });
  // Ready means TLS material and a policy snapshot are loaded (DESIGN §5): poll the probe like kubelet.
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null) throw new Error(`waygate exited with ${child.exitCode} before becoming ready`);
    const ok = await fetch(`http://127.0.0.1:${readyPort}/healthz/ready`).then((r) => r.ok, () => false);
    if (ok) break;
    if (attempt > 400) throw new Error('waygate did not become ready within 20 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name: 'waygate',
    port,
    pid: child.pid!,
    adminPort,
    readyPort,
    metricsPort,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}
