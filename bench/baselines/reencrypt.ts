/**
 * The baseline of the waypoint scenario (waypoint.bench.ts): a re-encrypting TCP proxy in front of
 * a TLS terminator, what an operator could put where waygate stands as a waypoint.
 *
 *   load generator --mTLS--> haproxy (re-encrypts) --mTLS, haproxy's client certificate--> haproxy
 *   (terminator, where the destination's ztunnel stands) --TCP--> backend
 *
 * Both are haproxy in `mode tcp`, one thread each. The re-encrypting one terminates mutual TLS with
 * the gateway's certificate (`verify required`) and originates mutual TLS with the same
 * certificate as its client certificate (`ssl verify required ca-file ... crt ...`), no SNI, as
 * waygate originates HBONE. It checks the terminator's chain, not its SPIFFE ID (haproxy can only
 * match a DNS name, `verifyhost`): a little less work than waygate's exact-identity check. By
 * default haproxy resumes its TLS sessions to a server (`ssl-reuse`), so a new client connection
 * costs it a full handshake on the client side and a resumed one on the server side.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  freePort, pinned, stopper, trackChild, waitForPort, which, type RunningForwarder,
} from './forwarders.ts';

export interface ReencryptFiles {
  dir: string;
  caFile: string;
  /** What the re-encrypting proxy presents to clients and to the terminator (the gateway's leaf). */
  proxyCertFile: string;
  proxyKeyFile: string;
  /** What the terminator presents (the destination workload's leaf). */
  terminatorCertFile: string;
  terminatorKeyFile: string;
}

function combinedPem(dir: string, name: string, certFile: string, keyFile: string): string {
  // haproxy wants certificate and key in one PEM (crt).
  const file = path.join(dir, name);
  writeFileSync(file, readFileSync(certFile, 'utf8') + readFileSync(keyFile, 'utf8'), { mode: 0o600 });
  return file;
}

async function startHaproxyWith(name: string, cfgFile: string, lines: string[], port: number, host: string, cpu: number | null): Promise<RunningForwarder | null> {
  const bin = which('haproxy');
  if (!bin) return null;
  writeFileSync(cfgFile, lines.join('\n') + '\n');
  const [cmd, args] = pinned(cpu, bin, ['-db', '-f', cfgFile]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  trackChild(child);
  await waitForPort(port, child, name, host);
  return { name, port, pid: child.pid!, stop: stopper(child) };
}

const GLOBAL_AND_DEFAULTS = [
  'global',
  '  nbthread 1',
  '  maxconn 4000',
  'defaults',
  '  mode tcp',
  '  timeout connect 10s',
  '  timeout client 60s',
  '  timeout server 60s',
];

/** The terminator where the destination's ztunnel stands: mTLS on `host`, plain TCP to the backend. */
export async function startHaproxyTerminator(files: ReencryptFiles, host: string, backend: { host: string; port: number }, cpu: number | null): Promise<RunningForwarder | null> {
  const port = await freePort(host);
  const crt = combinedPem(files.dir, 'haproxy-terminator-crt.pem', files.terminatorCertFile, files.terminatorKeyFile);
  return startHaproxyWith('haproxy terminator', path.join(files.dir, 'haproxy-terminator.cfg'), [
    ...GLOBAL_AND_DEFAULTS,
    'frontend fe',
    `  bind ${host}:${port} ssl crt ${crt} ca-file ${files.caFile} verify required ssl-min-ver TLSv1.3`,
    '  default_backend be',
    'backend be',
    `  server s1 ${backend.host}:${backend.port}`,
  ], port, host, cpu);
}

/** The re-encrypting proxy: mTLS in on 127.0.0.1, mTLS out to the terminator with its own client certificate. */
export async function startHaproxyReencrypt(files: ReencryptFiles, terminator: { host: string; port: number }, cpu: number | null): Promise<RunningForwarder | null> {
  const port = await freePort();
  const crt = combinedPem(files.dir, 'haproxy-reencrypt-crt.pem', files.proxyCertFile, files.proxyKeyFile);
  return startHaproxyWith('haproxy', path.join(files.dir, 'haproxy-reencrypt.cfg'), [
    ...GLOBAL_AND_DEFAULTS,
    'frontend fe',
    `  bind 127.0.0.1:${port} ssl crt ${crt} ca-file ${files.caFile} verify required ssl-min-ver TLSv1.3`,
    '  default_backend be',
    'backend be',
    `  server s1 ${terminator.host}:${terminator.port} ssl verify required ca-file ${files.caFile} crt ${crt} ssl-min-ver TLSv1.3`,
  ], port, '127.0.0.1', cpu);
}
