/**
 * The embedded profile's development PKI (`npm start` on a fresh clone): a dev CA and a server
 * certificate minted into `.waygate/pki/` (gitignored) on first run and reused after. That is the
 * directory `waygate certs init|issue` use by default, so `waygate certs issue spiffe://...` signs
 * client certificates this gateway trusts, and a developer can open a tunnel with no other set-up.
 * A CA replaced with `waygate certs init --force` gets a new server certificate on the next start.
 *
 * The server certificate carries the gateway's SPIFFE ID (what ztunnel verifies) plus
 * `DNS:localhost` and `IP:127.0.0.1`/`::1` for tools that check hostnames. It is re-issued from
 * the same CA when it is missing, unreadable or within a day of expiring.
 */
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { caFilePaths, createCa, issueLeaf, readCaFiles, writeCaFiles, type IssuedCert } from '../identity/dev-ca.ts';

export const DEV_SERVER_SPIFFE_ID = 'spiffe://cluster.local/ns/waygate/sa/waygate';
/** A dev server certificate lives a year; re-issued automatically when close to expiry. */
const SERVER_VALIDITY_HOURS = 24 * 365;
const RENEW_BEFORE_MS = 24 * 3600 * 1000;

export interface DevPkiFiles {
  certFile: string;
  keyFile: string;
  /** The trust anchor (`root.crt`). */
  trustBundleFile: string;
  /** What was done: nothing, a new server certificate, or a new CA and certificate. */
  minted: 'none' | 'server' | 'ca+server';
}

/** The server certificate is present, issued by the current CA, and not close to expiry. */
function stillGood(certFile: string, keyFile: string, caFile: string, now: number): boolean {
  try {
    if (!fs.existsSync(keyFile)) return false;
    const cert = new X509Certificate(fs.readFileSync(certFile));
    const ca = new X509Certificate(fs.readFileSync(caFile));
    return cert.checkIssued(ca) && cert.verify(ca.publicKey) && Date.parse(cert.validTo) - now > RENEW_BEFORE_MS;
  } catch {
    return false;
  }
}

/** Ensures the dev CA and server certificate exist in `pkiDir`; returns their paths. */
export function ensureDevPki(pkiDir: string, now: number = Date.now()): DevPkiFiles {
  const certFile = path.join(pkiDir, 'server.crt');
  const keyFile = path.join(pkiDir, 'server.key');
  const caPaths = caFilePaths(pkiDir);
  let minted: DevPkiFiles['minted'] = 'none';
  let ca: IssuedCert | undefined;
  if (!fs.existsSync(caPaths.cert) || !fs.existsSync(caPaths.key)) {
    ca = createCa({ trustDomain: 'cluster.local', commonName: 'waygate dev CA' });
    writeCaFiles(pkiDir, ca);
    minted = 'ca+server';
  }
  if (minted === 'ca+server' || !stillGood(certFile, keyFile, caPaths.cert, now)) {
    ca ??= readCaFiles(pkiDir);
    const leaf = issueLeaf({
      ca,
      spiffeId: DEV_SERVER_SPIFFE_ID,
      dnsNames: ['localhost'],
      ips: ['127.0.0.1', '::1'],
      commonName: 'waygate',
      validityHours: SERVER_VALIDITY_HOURS,
    });
    fs.mkdirSync(pkiDir, { recursive: true, mode: 0o700 });
    // Key first, then the certificate: a watcher never sees a new certificate with an old key.
    fs.writeFileSync(keyFile, leaf.keyPem, { mode: 0o600 });
    fs.writeFileSync(certFile, leaf.chainPem);
    if (minted === 'none') minted = 'server';
  }
  return { certFile, keyFile, trustBundleFile: caPaths.root, minted };
}
