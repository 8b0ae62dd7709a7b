/**
 * What `waygate connect` does: settle the client's files, open one HBONE tunnel and pipe
 * stdin/stdout through it (src/cli/connect.ts registers the command, its flags and exit codes).
 */
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { ClientHttp2Stream } from 'node:http2';
import { DEV_PKI_DIR } from '../config/schema.ts';
import { WaygateError } from '../errors.ts';
import { ensureDevIdentity } from '../gateway/dev-pki.ts';
import { connectHbone, ztunnelHeaders, type HboneClientSession } from '../hbone/client.ts';
import { caFilePaths } from '../identity/dev-ca.ts';
import { identityFromCertificate } from '../identity/peer-identity.ts';
import { DEFAULT_ADDRESS, type ConnectOptions } from './connect.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit-codes.ts';


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

/** The files a connection uses, once every flag and default is settled. */
interface ClientFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/**
 * The certificate, key and trust bundle from the flags and the dev PKI's defaults, or every
 * missing or conflicting flag at once (a person fixes them in one go, not one run each).
 */
function settleFiles(authority: string | undefined, opts: ConnectOptions): { files: ClientFiles } | { identity: string; caFile: string } | { problems: string[] } {
  const missing: [flag: string, what: string][] = [];
  const problems: string[] = [];
  const devCa = caFilePaths(DEV_PKI_DIR);
  const hasDevPki = existsSync(devCa.cert) && existsSync(devCa.key);
  if (authority === undefined) missing.push(['<authority>', 'the destination to CONNECT to, e.g. 127.0.0.1:8080']);
  if (opts.identity !== undefined) {
    if (opts.cert !== undefined || opts.key !== undefined) problems.push('--identity picks the certificate and key from the dev PKI: give --identity or --cert/--key, not both');
    if (!hasDevPki) problems.push(`--identity needs the dev PKI in ${DEV_PKI_DIR}/ (\`npm start\` creates it, or \`waygate certs init\`)`);
  } else if (opts.cert === undefined && opts.key === undefined) {
    missing.push(['--cert and --key', 'the client certificate and its key, or --identity <namespace>/<service-account> for one from the dev PKI']);
  } else if (opts.key === undefined) {
    missing.push(['--key', `the private key of ${opts.cert}`]);
  } else if (opts.cert === undefined) {
    missing.push(['--cert', `the certificate of ${opts.key}`]);
  }
  let caFile = opts.ca;
  if (caFile === undefined) {
    if (existsSync(devCa.root)) caFile = devCa.root;
    else missing.push(['--ca', `the trust bundle for the gateway's certificate (there is no dev PKI at ${devCa.root} to default to)`]);
  }
  if (missing.length > 0) problems.unshift(`missing ${missing.map(([f]) => f).join(', ')}`, ...missing.map(([f, what]) => `  ${f}: ${what}`));
  if (problems.length > 0 || caFile === undefined) return { problems };
  if (opts.identity !== undefined) return { identity: opts.identity, caFile };
  return { files: { certFile: opts.cert!, keyFile: opts.key!, caFile } };
}

/** The PEM certificates in `pem`, in order (a chain file: leaf first). */
function certificatesIn(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((c) => new X509Certificate(c));
}

/**
 * The certificate parses, the key parses, and they belong together: TLS would otherwise fail
 * with OpenSSL's "key values mismatch", naming neither file.
 */
function checkPair(files: ClientFiles, certPem: string, keyPem: string): string | null {
  let leaf: X509Certificate | undefined;
  try {
    leaf = certificatesIn(certPem)[0];
  } catch (err) {
    return `--cert ${files.certFile}: not a valid PEM certificate (${(err as Error).message})`;
  }
  if (!leaf) return `--cert ${files.certFile}: no PEM certificate in the file`;
  let publicFromKey: string;
  try {
    publicFromKey = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'pem' }) as string;
  } catch (err) {
    return `--key ${files.keyFile}: not a valid PEM private key (${(err as Error).message})`;
  }
  if (publicFromKey !== leaf.publicKey.export({ type: 'spki', format: 'pem' })) {
    return `the key in --key ${files.keyFile} does not match the certificate in --cert ${files.certFile} (their public keys differ): pass the key issued with that certificate`;
  }
  return null;
}

/** TLS alerts a server sends about a client certificate (RFC 8446 §6.2), in words. */
const CERTIFICATE_ALERTS: [RegExp, string][] = [
  [/UNKNOWN_CA/, 'not signed by its trust bundle'],
  [/CERTIFICATE_EXPIRED/, 'expired or not yet valid'],
  [/CERTIFICATE_REQUIRED/, 'no client certificate was sent'],
  [/CERTIFICATE_REVOKED/, 'revoked'],
  [/BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE|DECRYPT_ERROR/, 'it did not verify'],
  [/ACCESS_DENIED/, 'access denied'],
];

/** The first system or TLS error code in `err`'s cause chain. */
function causeCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code && !code.startsWith('WG_')) return code;
  }
  return undefined;
}

/** The certificate alert somewhere in `err`'s cause chain, in words. */
function alertReason(err: unknown): string | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (!/ALERT/.test(code)) continue;
    for (const [re, words] of CERTIFICATE_ALERTS) if (re.test(code)) return `${words} (TLS alert ${code})`;
  }
  return null;
}

/**
 * Why the gateway most likely refused `certPem`, judged here: a TLS 1.3 server verifies the
 * client's certificate after the client has finished its handshake, and Node's server then
 * closes the connection without an alert, so the client learns only that HTTP/2 never started.
 */
function localRejectionReason(files: ClientFiles, certPem: string, caPem: string, now = Date.now()): string {
  let chain: X509Certificate[];
  let anchors: X509Certificate[];
  try {
    chain = certificatesIn(certPem);
    anchors = certificatesIn(caPem);
  } catch {
    return 'its trust bundle or validity check refused it';
  }
  const leaf = chain[0]!;
  if (Date.parse(leaf.validTo) <= now) return `expired on ${new Date(leaf.validTo).toISOString()}`;
  if (Date.parse(leaf.validFrom) > now) return `not valid before ${new Date(leaf.validFrom).toISOString()}`;
  // Walk leaf -> intermediates (from the chain file) -> an anchor of --ca.
  let current = leaf;
  for (let hops = 0; hops < 5; hops++) {
    if (anchors.some((a) => current.checkIssued(a) && current.verify(a.publicKey))) {
      return `not signed by its trust bundle, or not valid for it (it does verify against --ca ${files.caFile}, so the gateway trusts another CA; the gateway's log names the reason in a "TLS handshake failed" line)`;
    }
    const next = chain.slice(1).find((c) => current.checkIssued(c) && current.verify(c.publicKey));
    if (!next || next === current) break;
    current = next;
  }
  return `not signed by its trust bundle (nor by --ca ${files.caFile}, the CA this client trusts)`;
}

/** `waygate connect [authority]`; resolves to the exit code. */
export async function runConnect(authority: string | undefined, opts: ConnectOptions): Promise<number> {
  const settled = settleFiles(authority, opts);
  if ('problems' in settled) {
    return problem(`${settled.problems.join('\n')}\nusage: waygate connect <host:port> [--identity <ns>/<sa> | --cert FILE --key FILE] [--ca FILE] [--address ${DEFAULT_ADDRESS}] (see --help)`, EXIT_USAGE);
  }
  let files: ClientFiles;
  if ('files' in settled) {
    files = settled.files;
  } else {
    try {
      const id = ensureDevIdentity(DEV_PKI_DIR, settled.identity);
      files = { certFile: id.certFile, keyFile: id.keyFile, caFile: settled.caFile };
      if (id.issued) process.stderr.write(`waygate connect: issued ${id.spiffeId} into ${id.certFile} and ${id.keyFile} (dev CA)\n`);
    } catch (err) {
      return problem((err as Error).message, EXIT_USAGE);
    }
  }
  let cert: string;
  let key: string;
  let ca: string;
  try {
    cert = readFile('--cert', files.certFile);
    key = readFile('--key', files.keyFile);
    ca = readFile('--ca', files.caFile);
  } catch (err) {
    return problem((err as Error).message, EXIT_USAGE);
  }
  const pairProblem = checkPair(files, cert, key);
  if (pairProblem) return problem(pairProblem, EXIT_USAGE);
  const rejected = (reason: string): number => problem(`the gateway rejected this certificate (${files.certFile}): ${reason}`, EXIT_FAILURE);

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
    const alert = alertReason(err);
    if (alert) return rejected(alert);
    // WG_CERT here is the other direction: this client does not trust the gateway's certificate.
    const refused = causeCode(err) === 'ECONNREFUSED';
    const hint = err instanceof WaygateError && err.code === 'WG_CERT'
      ? ` (the gateway's certificate does not verify against --ca ${files.caFile})`
      : refused ? `: is a gateway running there? (\`npm start\` listens on ${DEFAULT_ADDRESS}; --address picks another)` : '';
    return problem(`${(err as Error).message}${hint}`, EXIT_USAGE);
  }
  // The gateway's SETTINGS frame is the sign it accepted the connection: a server that rejects
  // the client certificate closes it before HTTP/2 starts (see localRejectionReason).
  let gatewaySpokeHttp2 = false;
  let sessionError: Error | undefined;
  client.session.once('remoteSettings', () => (gatewaySpokeHttp2 = true));
  client.session.on('error', (err: Error) => (sessionError ??= err));
  const rejection = (): string | null => {
    if (gatewaySpokeHttp2) return null;
    return alertReason(sessionError) ?? localRejectionReason(files, cert, ca);
  };
  try {
    const headers: Record<string, string> = opts.ztunnelHeaders ? ztunnelHeadersFor(client, cert) : {};
    for (const [name, value] of opts.header ?? []) headers[name] = value;
    let tunnel;
    try {
      tunnel = await client.openTunnel(authority!, headers);
    } catch (err) {
      const reason = rejection();
      if (reason) return rejected(reason);
      return problem((err as Error).message, EXIT_USAGE);
    }
    if (tunnel.status !== 200) return problem(`CONNECT ${authority} answered ${tunnel.status}`, EXIT_FAILURE);
    return await pump(tunnel.stream);
  } finally {
    client.destroy();
  }
}
