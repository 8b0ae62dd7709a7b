/**
 * Runs `waygate` as a separate process, the way an operator does, for the sample-log script and
 * the end-to-end tests: `waygate serve` (waiting for its "listening" line, which carries the bound
 * addresses, so every port can be 0) and one-shot verbs (`certs`, `connect`, `audit`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is examples/traffic/gateway-process.ts). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The CLI entry point `npm start` runs (`node bin/waygate.js serve`). */
export const WAYGATE_BIN = path.join(REPO_ROOT, 'bin', 'waygate.js');

/** Bound addresses from the gateway's "listening" log line, `host:port` each. */
export interface ServeAddresses {
  hbone: string;
  ready: string;
  metrics: string;
  admin: string;
}

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly addresses: ServeAddresses;
  /** Every operational log line so far (JSON lines on stderr), parsed when they parse. */
  readonly logLines: unknown[];
  /** Raw stderr so far, for failure messages. */
  stderr(): string;
  /** Sends `signal` (default SIGTERM) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the exit code once the process has exited (whoever stopped it). */
  readonly exited: Promise<number | null>;
}

export interface ServeOptions {
  /** `waygate serve` flags. */
  args: string[];
  /** Working directory: the embedded profile mints its PKI into `<cwd>/.waygate/pki`. */
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Give up (and kill the process) when it has not logged "listening" by then; default 20 s. */
  startTimeoutMs?: number;
}

/** Splits `host:port` / `[v6]:port`. */
export function splitHostPort(address: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:[\]]+):(\d+)$/.exec(address);
  if (!m) throw new Error(`not host:port: ${address}`);
  return { host: m[1]!, port: Number(m[2]) };
}

/**
 * Starts `node bin/waygate.js serve ARGS` and resolves once it logged "listening" (after the
 * policy snapshot loaded and every listener bound). Rejects with its stderr if it exits first.
 * The "listening" line is logged at `info`: a `--log-level` above it hides the addresses.
 */
export async function startServe(opts: ServeOptions): Promise<ServeProcess> {
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  const child = spawn(process.execPath, [WAYGATE_BIN, 'serve', ...opts.args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  const logLines: unknown[] = [];
  child.stdout!.resume();
  const lines = createInterface({ input: child.stderr! });
  const addresses = await new Promise<ServeAddresses>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`waygate serve did not log "listening" within ${startTimeoutMs} ms:\n${stderr}`));
    }, startTimeoutMs);
    timer.unref();
    lines.on('line', (line) => {
      stderr += line + '\n';
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        return;
      }
      logLines.push(parsed);
      const rec = parsed as Partial<ServeAddresses> & { msg?: string };
      if (rec.msg === 'listening' && rec.hbone && rec.ready && rec.metrics && rec.admin) {
        clearTimeout(timer);
        resolve({ hbone: rec.hbone, ready: rec.ready, metrics: rec.metrics, admin: rec.admin });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`waygate serve exited with ${code} before listening:\n${stderr}`));
    });
  });
  return {
    child,
    addresses,
    logLines,
    stderr: () => stderr,
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface CliResult {
  code: number | null;
  /** Raw bytes: `connect` pipes binary tunnel data to stdout. */
  stdout: Buffer;
  stderr: string;
}

/** Runs `node bin/waygate.js ARGS` to completion, feeding `input` on stdin. */
export async function runWaygate(args: string[], opts: { cwd: string; input?: Buffer | string; env?: NodeJS.ProcessEnv }): Promise<CliResult> {
  const child = spawn(process.execPath, [WAYGATE_BIN, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (c: Buffer) => out.push(c));
  child.stderr!.on('data', (c: Buffer) => err.push(c));
  // The child may exit before reading all of stdin (a refused tunnel): that EPIPE is expected.
  child.stdin!.on('error', () => {});
  child.stdin!.end(opts.input ?? '');
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') };
}

/** GET `http://address/path`; resolves with the status and body. */
export async function httpGet(address: string, urlPath: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${address}${urlPath}`);
  return { status: res.status, body: await res.text() };
}
