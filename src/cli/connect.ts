/**
 * `waygate connect <authority>`: an HBONE client for debugging, used like `nc`. It opens one
 * CONNECT tunnel the way ztunnel would and pipes stdin/stdout through it.
 *
 *   waygate connect 10.0.1.7:8080 --address gateway:15008 --cert c.crt --key c.key --ca root.crt \
 *     [--header k=v]... [--ztunnel-headers] [--server-id spiffe://...]
 *   waygate connect 127.0.0.1:8080 --identity prod/frontend     # the embedded gateway (npm start)
 *
 * Defaults fit the embedded gateway: `--address 127.0.0.1:15008`, `--ca` the dev PKI's trust
 * anchor (`.waygate/pki/root.crt`), and `--identity ns/sa` picks (issuing it on first use) the
 * dev PKI's certificate for `spiffe://<its trust domain>/ns/<ns>/sa/<sa>`.
 *
 * stdin EOF half-closes the tunnel (END_STREAM) and keeps reading; the tunnel's end flushes
 * stdout and exits 0. Exit 1: the gateway answered something other than 200, reset the tunnel,
 * or rejected the client certificate. Exit 2: bad or missing flags (every missing one in one
 * message), unreadable files, a key that does not match its certificate, or the connection
 * could not be made.
 *
 * This module builds the command and parses its flags; the client is src/cli/connect-run.ts,
 * loaded when it runs (docs/architecture.md, "Adding a CLI verb").
 */
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { DEV_PKI_DIR } from '../config/schema.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
import { parseAuthority } from '../net/authority.ts';

/** The embedded gateway's HBONE listener (`npm start`). */
export const DEFAULT_ADDRESS = '127.0.0.1:15008';

export interface ConnectOptions {
  address: { host: string; port: number };
  identity?: string;
  cert?: string;
  key?: string;
  ca?: string;
  header?: Array<[string, string]>;
  ztunnelHeaders?: boolean;
  serverId?: string;
  connectTimeoutMs?: number;
}

/** `host:port`, `[v6]:port` or `v4:port` (src/net/authority.ts). */
export function parseAddress(value: string): { host: string; port: number } {
  const a = parseAuthority(value);
  if (a === null) throw new InvalidArgumentError(`expected host:port or [ipv6]:port with a port 1-65535, got "${value}"`);
  return { host: a.kind === 'ip' ? a.ip : a.host, port: a.port };
}

// RFC 9110 §5.1 field-name token; RFC 9113 §8.2.2 forbids connection-specific fields in HTTP/2.
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host']);

function parseHeader(value: string, previous: Array<[string, string]> = []): Array<[string, string]> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`expected name=value, got "${value}"`);
  const name = value.slice(0, eq).trim().toLowerCase();
  if (!TOKEN.test(name)) throw new InvalidArgumentError(`"${name}" is not a valid header name (pseudo-headers are set by the client)`);
  if (CONNECTION_SPECIFIC.has(name)) throw new InvalidArgumentError(`"${name}" is connection-specific and not allowed in HTTP/2 (RFC 9113 §8.2.2)`);
  return [...previous, [name, value.slice(eq + 1)]];
}

function parseServerId(value: string): string {
  if (!parseSpiffeId(value)) throw new InvalidArgumentError(`"${value}" is not a valid SPIFFE ID`);
  return value;
}

function parseTimeout(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number of milliseconds, got "${value}"`);
  return n;
}

/** Registers `waygate connect`. */
export function registerConnect(program: Command): void {
  program
    .command('connect')
    .description('open one HBONE tunnel (HTTP/2 CONNECT over mTLS, like ztunnel) and pipe stdin/stdout through it')
    .argument('[authority]', 'the CONNECT :authority, e.g. 10.0.1.7:8080')
    .addOption(new Option('--address <host:port>', 'the HBONE server (gateway) to connect to').argParser(parseAddress).default(parseAddress(DEFAULT_ADDRESS), `${DEFAULT_ADDRESS}, the embedded gateway`))
    .option('--identity <ns/sa>', `a workload certificate from the dev PKI (${DEV_PKI_DIR}/), issued on first use: prod/frontend or a SPIFFE ID`)
    .option('--cert <file>', 'client certificate chain (PEM)')
    .option('--key <file>', 'client private key (PEM)')
    .option('--ca <file>', `trust bundle for the server certificate (PEM; default ${path.join(DEV_PKI_DIR, 'root.crt')} when it exists)`)
    .option('--header <name=value>', 'extra CONNECT header (repeatable)', parseHeader)
    .option('--ztunnel-headers', 'add baggage, forwarded and traceparent as ztunnel does')
    .option('--server-id <spiffe-id>', "require this SPIFFE ID in the server's URI SANs instead of a hostname check", parseServerId)
    .option('--connect-timeout-ms <ms>', 'TCP + TLS + HTTP/2 setup timeout (default 10000)', parseTimeout)
    .action(async (authority: string | undefined, opts: ConnectOptions) => {
      const { runConnect } = await import('./connect-run.ts');
      process.exitCode = await runConnect(authority, opts);
    });
}
