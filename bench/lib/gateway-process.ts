/**
 * Starts waygate as its own process, pinned to the gateway CPU, exactly as an operator would
 * (`waygate serve --config gateway.yaml`), so its CPU and RSS are read from /proc like haproxy's.
 * The config follows src/config/schema.ts (`kind: GatewayConfig`); one worker, so the one pid we
 * measure is the whole gateway.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, pinned, trackChild, type RunningForwarder } from '../baselines/forwarders.ts';

export interface GatewayFiles {
  dir: string;
  certFile: string;
  keyFile: string;
  caFile: string;
  policiesDir: string;
  auditFile: string;
}

export interface GatewayProcessOptions {
  /** CPU to pin the gateway to (taskset), or null to leave it unpinned. */
  cpu: number | null;
  /** When set, node writes a V8 CPU profile (`--cpu-prof`) into this directory when the gateway exits. */
  cpuProfileDir?: string;
  /** Name of the config file inside `files.dir` (several gateways may share one directory). */
  configName?: string;
  /** Extra `waygate serve` flags. */
  extraArgs?: string[];
  /** Extra node flags (e.g. `--heapsnapshot-signal=SIGUSR2`, `--diagnostic-dir=DIR`). */
  nodeFlags?: string[];
  /**
   * Watches `files.policiesDir` (a directory or one policy file) with the default debounce
   * (`policies.watch: true`), as an operator runs it; otherwise only explicit reloads load.
   */
  watchPolicies?: boolean;
  /**
   * Loads `gateway-probe.ts` into the gateway (with `--expose-gc`): event-loop delay and heap after
   * a full GC, read over HTTP on `probePort`.
   */
  probe?: boolean;
  /** Address the HBONE listener binds (default 127.0.0.1); the side ports stay on 127.0.0.1. */
  listenHost?: string;
  /** CIDRs of `destinations.allow` (default 127.0.0.1/32). */
  destinations?: string[];
  /** More lines under `spec:` (indented two spaces), e.g. `discovery:` for the waypoint scenario. */
  extraSpec?: string[];
  /** More lines under `audit:` (indented four spaces), e.g. `sync: batch` (bench/audit-sync.bench.ts). */
  auditLines?: string[];
  /** The entry point to run instead of this checkout's bin/waygate.js (another build, for a before/after run). */
  bin?: string;
}

/** The parts of the config that vary between the benchmark's gateways. */
export interface GatewayConfigShape {
  watch?: boolean;
  listenHost?: string;
  destinations?: string[];
  extraSpec?: string[];
  auditLines?: string[];
}

export interface RunningGateway extends RunningForwarder {
  adminPort: number;
  readyPort: number;
  metricsPort: number;
  configFile: string;
  /** The probe's port (`GatewayProcessOptions.probe`), else 0. */
  probePort: number;
}

/** The gateway config of the benchmark: loopback only, one worker, audit to a file, no file watch unless `watch`. */
export function gatewayConfigYaml(files: GatewayFiles, ports: { hbone: number; admin: number; ready: number; metrics: number }, shape: GatewayConfigShape = {}): string {
  const watch = shape.watch ?? false;
  return [
    'apiVersion: waygate.dev/v1alpha1',
    'kind: GatewayConfig',
    'metadata: { name: bench }',
    'spec:',
    `  listen: ${shape.listenHost ?? '127.0.0.1'}:${ports.hbone}`,
    '  tls:',
    `    certFile: ${files.certFile}`,
    `    keyFile: ${files.keyFile}`,
    `    trustBundleFiles: [${files.caFile}]`,
    '  trustDomains: [cluster.local]',
    '  policies:',
    `    paths: [${files.policiesDir}]`,
    // Reloads are triggered explicitly (POST /debug/reload) so the reload scenario times exactly one
    // load; the policy-change-by-file part watches (default debounce, src/config/schema.ts).
    `    watch: ${watch}`,
    '  defaultAction: DENY',
    '  destinations:',
    '    allow:',
    ...(shape.destinations ?? ['127.0.0.1/32']).map((cidr) => `      - cidr: ${cidr}`),
    '  limits:',
    // The idle scenario holds 10,000 tunnels over 50+ connections; the default cap is 10,000 connections.
    '    maxConnections: 0',
    '  audit:',
    `    destination: ${files.auditFile}`,
    ...(shape.auditLines ?? []).map((l) => `    ${l}`),
    '  log:',
    '    level: warn',
    '  admin:',
    `    adminAddress: 127.0.0.1:${ports.admin}`,
    `    readyAddress: 127.0.0.1:${ports.ready}`,
    `    metricsAddress: 127.0.0.1:${ports.metrics}`,
    '  workers: 1',
    ...(shape.extraSpec ?? []).map((l) => `  ${l}`),
    '',
  ].join('\n');
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  // A graceful drain (docs/design.md §5) finishes within drainTimeoutMs; SIGKILL only if it hangs well past it.
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

export async function startGateway(files: GatewayFiles, opts: GatewayProcessOptions): Promise<RunningGateway> {
  const ports = { hbone: await freePort(opts.listenHost), admin: await freePort(), ready: await freePort(), metrics: await freePort() };
  const configFile = path.join(files.dir, opts.configName ?? 'gateway.yaml');
  writeFileSync(configFile, gatewayConfigYaml(files, ports, {
    watch: opts.watchPolicies ?? false,
    ...(opts.listenHost ? { listenHost: opts.listenHost } : {}),
    ...(opts.destinations ? { destinations: opts.destinations } : {}),
    ...(opts.extraSpec ? { extraSpec: opts.extraSpec } : {}),
    ...(opts.auditLines ? { auditLines: opts.auditLines } : {}),
  }));
  const bin = opts.bin ?? new URL('../../bin/waygate.js', import.meta.url).pathname;
  const nodeFlags: string[] = [...(opts.nodeFlags ?? [])];
  const probePort = opts.probe ? await freePort() : 0;
  if (opts.probe) nodeFlags.push('--expose-gc', '--import', 'tsx', '--import', new URL('./gateway-probe.ts', import.meta.url).pathname);
  if (opts.cpuProfileDir) {
    mkdirSync(opts.cpuProfileDir, { recursive: true });
    nodeFlags.push('--cpu-prof', '--cpu-prof-dir', opts.cpuProfileDir);
  }
  const [cmd, args] = pinned(opts.cpu, process.execPath, [...nodeFlags, bin, 'serve', '--config', configFile, ...(opts.extraArgs ?? [])]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_ENV: 'production', ...(opts.probe ? { WAYGATE_BENCH_PROBE_PORT: String(probePort) } : {}) } });
  trackChild(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    // Keep the tail for the error message; warnings are forwarded so a broken run is visible.
    stderr = (stderr + d).slice(-8192);
    process.stderr.write(`[waygate] ${d}`);
  });
  // Ready means TLS material and a policy snapshot are loaded (docs/design.md §5): poll the probe like kubelet.
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null) throw new Error(`waygate exited with ${child.exitCode} before becoming ready:\n${stderr}`);
    const ok = await fetch(`http://127.0.0.1:${ports.ready}/healthz/ready`).then((r) => r.ok, () => false);
    if (ok) break;
    if (attempt > 600) {
      await stopChild(child);
      throw new Error(`waygate did not become ready within 30 s:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50)); // another process's port: no event to await
  }
  return {
    name: 'waygate',
    port: ports.hbone,
    pid: child.pid!,
    adminPort: ports.admin,
    readyPort: ports.ready,
    metricsPort: ports.metrics,
    configFile,
    probePort,
    stop: () => stopChild(child),
  };
}
