/**
 * `waygate connect <authority>`: an HBONE client for debugging, used like `nc`. It opens one
 * CONNECT tunnel the way ztunnel would and pipes stdin/stdout through it.
 *
 *   waygate connect 10.0.1.7:8080 --address gateway:15008 --cert c.crt --key c.key --ca root.crt \
 *     [--header k=v]... [--ztunnel-headers] [--server-id spiffe://...]
 *
 * stdin EOF half-closes the tunnel (END_STREAM) and keeps reading; the tunnel's end flushes
 * stdout and exits 0. Exit 1: the gateway answered something other than 200, or reset the tunnel.
 * Exit 2: bad flags, unreadable files, or the connection could not be made.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseAuthority } from '../net/authority.ts';
import type { ClientHttp2Stream } from 'node:http2';
import { InvalidArgumentError, type Command } from 'commander';
import { WaygateError } from '../errors.ts';
import { connectHbone, ztunnelHeaders, type HboneClientSession } from '../hbone/client.ts';
import { identityFromCertificate } from '../identity/peer-identity.ts';
import { parseSpiffeId } from '../identity/spiffe.ts';
const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

interface ConnectOptions {
  address: { host: string; port: number };
  cert: string;
  key: string;
  ca: string;
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

function problem(message: string, exitCode: number): number {
  process.stderr.write(`waygate connect: ${message}\n`);
  return exitCode;
}

function readFile(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new WaygateError('WG_CERT', `${flag} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Headers ztunnel would add for this client: identity from our certificate, source from our socket. */
function ztunnelHeadersFor(client: HboneClientSession, certPem: string): Record<string, string> {
  const socket = client.session.socket;
  let namespace: string | undefined;
  let serviceAccount: string | undefined;
  try {
    const id = identityFromCertificate(new X509Certificate(certPem).raw).spiffeId;
    namespace = id?.namespace || undefined;
    serviceAccount = id?.serviceAccount || undefined;
  } catch {
    // A certificate that does not parse could not have completed the handshake; nothing to add.
  }
  return ztunnelHeaders({
    srcIp: socket.localAddress ?? '0.0.0.0',
    srcPort: socket.localPort ?? 0,
    ...(namespace ? { namespace } : {}),
    // Without workload metadata, the service account is the best stand-in for workload and service.
    ...(serviceAccount ? { workload: serviceAccount, service: serviceAccount } : {}),
  });
}

/** Pipes stdin -> tunnel -> stdout until the tunnel ends; resolves to the exit code. */
function pump(stream: ClientHttp2Stream): Promise<number> {
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number, message?: string): void => {
      if (done) return;
      done = true;
      process.stdin.unpipe(stream);
      // Stop reading stdin so the process can exit even if stdin never reaches EOF (like nc).
      process.stdin.pause();
      process.stdin.destroy();
      if (message) process.stderr.write(`waygate connect: ${message}\n`);
      // An empty write's callback runs after everything queued before it is flushed.
      process.stdout.write('', () => resolve(code));
    };
    stream.on('data', (chunk: Buffer) => {
      if (!process.stdout.write(chunk)) {
        stream.pause();
        process.stdout.once('drain', () => stream.resume());
      }
    });
    stream.on('end', () => finish(EXIT_OK));
    stream.on('error', (err: Error) => finish(EXIT_FAILURE, `tunnel failed: ${err.message}`));
    stream.on('close', () => {
      // RST_STREAM without END_STREAM first: NO_ERROR/CANCEL is EOF on the wire (docs/design.md §2), but
      // for a person debugging, a gateway-side reset (policy change, drain) is worth saying.
      if (!done) finish(EXIT_FAILURE, `tunnel reset by the server (RST_STREAM code ${stream.rstCode ?? 'unknown'})`);
    });
    // stdin EOF -> END_STREAM (half-close); keep reading the response.
    process.stdin.pipe(stream);
  });
}

async function runConnect(authority: string, opts: ConnectOptions): Promise<number> {
  let cert: string;
  let key: string;
  let ca: string;
  try {
    cert = readFile('--cert', opts.cert);
    key = readFile('--key', opts.key);
    ca = readFile('--ca', opts.ca);
  } catch (err) {
    return problem((err as Error).message, EXIT_USAGE);
  }
  let client: HboneClientSession;
  try {
    client = await connectHbone({
      address: opts.address,
      cert,
      key,
      ca,
      ...(opts.serverId ? { expectedServerSpiffeId: opts.serverId } : {}),
      ...(opts.connectTimeoutMs ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
    });
  } catch (err) {
    return problem((err as Error).message, EXIT_USAGE);
  }
  try {
    const headers: Record<string, string> = opts.ztunnelHeaders ? ztunnelHeadersFor(client, cert) : {};
    for (const [name, value] of opts.header ?? []) headers[name] = value;
    let tunnel;
    try {
      tunnel = await client.openTunnel(authority, headers);
    } catch (err) {
      return problem((err as Error).message, EXIT_USAGE);
    }
    if (tunnel.status !== 200) return problem(`CONNECT ${authority} answered ${tunnel.status}`, EXIT_FAILURE);
    return await pump(tunnel.stream);
  } finally {
    client.destroy();
  }
}

/** Registers `waygate connect`. */
export function registerConnect(program: Command): void {
  program
    .command('connect')
    .description('open one HBONE tunnel (HTTP/2 CONNECT over mTLS, like ztunnel) and pipe stdin/stdout through it')
    .argument('<authority>', 'the CONNECT :authority, e.g. 10.0.1.7:8080')
    .requiredOption('--address <host:port>', 'the HBONE server (gateway) to connect to', parseAddress)
    .requiredOption('--cert <file>', 'client certificate chain (PEM)')
    .requiredOption('--key <file>', 'client private key (PEM)')
    .requiredOption('--ca <file>', 'trust bundle for the server certificate (PEM)')
    .option('--header <name=value>', 'extra CONNECT header (repeatable)', parseHeader)
    .option('--ztunnel-headers', 'add baggage, forwarded and traceparent as ztunnel does')
    .option('--server-id <spiffe-id>', "require this SPIFFE ID in the server's URI SANs instead of a hostname check", parseServerId)
    .option('--connect-timeout-ms <ms>', 'TCP + TLS + HTTP/2 setup timeout (default 10000)', parseTimeout)
    .action(async (authority: string, opts: ConnectOptions) => {
      const code = await runConnect(authority, opts);
      if (code !== EXIT_OK) process.exitCode = code;
    });
}
