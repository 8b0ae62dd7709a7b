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
import { WaygateError } from '../errors.ts';
import { caFilePaths, createCa, issueLeaf, readCaFiles, writeCaFiles, type IssuedCert } from '../identity/dev-ca.ts';
import { DEFAULT_TRUST_DOMAIN, parseSpiffeId } from '../identity/spiffe.ts';

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
    ca = createCa({ trustDomain: DEFAULT_TRUST_DOMAIN, commonName: 'waygate dev CA' });
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

/** A workload certificate of the dev PKI, as `waygate connect --identity` uses it. */
export interface DevIdentityFiles {
  spiffeId: string;
  certFile: string;
  keyFile: string;
  /** True when it was issued by this call (missing, expiring, or from a CA since replaced). */
  issued: boolean;
}

/** Workload certificates issued on demand live 30 days, as `waygate certs issue`'s default. */
const IDENTITY_VALIDITY_HOURS = 30 * 24;

/**
 * `prod/frontend` (namespace/service-account, in the dev CA's trust domain) or a full SPIFFE ID,
 * as the SPIFFE ID it names. WG_USAGE for anything else, or for another trust domain.
 */
export function devIdentitySpiffeId(identity: string, trustDomain: string): string {
  let id: string;
  if (identity.startsWith('spiffe://')) {
    id = identity;
  } else {
    const m = /^([^/]+)\/([^/]+)$/.exec(identity);
    if (!m) throw new WaygateError('WG_USAGE', `--identity "${identity}": expected <namespace>/<service-account> (e.g. prod/frontend) or a SPIFFE ID`);
    id = `spiffe://${trustDomain}/ns/${m[1]}/sa/${m[2]}`;
  }
  const parsed = parseSpiffeId(id);
  if (!parsed || parsed.path === '') throw new WaygateError('WG_USAGE', `--identity "${identity}": ${id} is not a valid workload SPIFFE ID`);
  if (parsed.trustDomain !== trustDomain) {
    throw new WaygateError('WG_USAGE', `--identity "${identity}" is in trust domain "${parsed.trustDomain}", but the dev CA issues for "${trustDomain}"`);
  }
  return id;
}

/** `ns-sa` for Istio IDs, the path with '/' as '-' otherwise: the names `waygate certs issue` writes. */
function identityFileStem(id: string): string {
  const p = parseSpiffeId(id)!;
  return p.namespace && p.serviceAccount ? `${p.namespace}-${p.serviceAccount}` : p.path.replace(/\//g, '-');
}

/** The certificate in `certFile` is for `id`, chains to `ca` (directly or through the next certificate in the file), and is not close to expiry. */
function identityStillGood(certFile: string, keyFile: string, id: string, ca: X509Certificate, now: number): boolean {
  try {
    if (!fs.existsSync(keyFile)) return false;
    const pems = fs.readFileSync(certFile, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    const [leaf, next] = pems.map((pem) => new X509Certificate(pem));
    if (!leaf || !(leaf.subjectAltName ?? '').split(', ').includes(`URI:${id}`)) return false;
    const issuer = next && next.checkIssued(ca) && next.verify(ca.publicKey) ? next : ca;
    return leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey) && Date.parse(leaf.validTo) - now > RENEW_BEFORE_MS;
  } catch {
    return false;
  }
}

/**
 * The dev PKI's certificate and key for `identity` (`prod/frontend` or a SPIFFE ID), issued by
 * its CA on first use, and again when missing, close to expiry, or issued by a CA since replaced.
 * The files are the ones `waygate certs issue` writes (`<pkiDir>/<ns>-<sa>.crt|.key`), so a
 * certificate issued either way is reused by the other. WG_CERT when the dev CA is missing.
 */
export function ensureDevIdentity(pkiDir: string, identity: string, now: number = Date.now()): DevIdentityFiles {
  const ca = readCaFiles(pkiDir);
  const trustDomain = (ca.spiffeId ? parseSpiffeId(ca.spiffeId)?.trustDomain : undefined) ?? DEFAULT_TRUST_DOMAIN;
  const spiffeId = devIdentitySpiffeId(identity, trustDomain);
  const stem = identityFileStem(spiffeId);
  const certFile = path.join(pkiDir, `${stem}.crt`);
  const keyFile = path.join(pkiDir, `${stem}.key`);
  if (identityStillGood(certFile, keyFile, spiffeId, new X509Certificate(ca.certPem), now)) {
    return { spiffeId, certFile, keyFile, issued: false };
  }
  const leaf = issueLeaf({ ca, spiffeId, validityHours: IDENTITY_VALIDITY_HOURS });
  // Key first, then the certificate, as for the server certificate above.
  fs.writeFileSync(keyFile, leaf.keyPem, { mode: 0o600 });
  fs.chmodSync(keyFile, 0o600);
  fs.writeFileSync(certFile, leaf.chainPem);
  return { spiffeId, certFile, keyFile, issued: true };
}
