/**
 * Runs `waygate` as a separate process, the way an operator does, for the sample-log script and
 * the end-to-end tests. `waygate serve` is started by the one spawner the tests use
 * (test/helpers/serve.ts: it waits for the "listening" line, which carries the bound addresses, so
 * every port can be 0); this file adds the one-shot verbs (`certs`, `connect`, `audit`).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAuthority } from '../../src/net/authority.ts';
import { WAYGATE_BIN } from '../../test/helpers/serve.ts';

export { WAYGATE_BIN, startServe, type ServeAddresses, type StartedServe } from '../../test/helpers/serve.ts';

/** The repository root (this file is examples/traffic/gateway-process.ts). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Splits `host:port` / `[v6]:port` with the project's one authority parser (src/net/authority.ts). */
export function splitHostPort(address: string): { host: string; port: number } {
  const a = parseAuthority(address);
  if (a === null) throw new Error(`not host:port: ${address}`);
  return { host: a.kind === 'ip' ? a.ip : a.host, port: a.port };
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
