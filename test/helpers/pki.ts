/**
 * A test PKI minted by waygate's own dev CA, built once per process (EC P-256 key generation and
 * signing take about a millisecond each) and shared by every test file that needs certificates.
 *
 * Layout (what ztunnel meets in a real mesh: workload certs under an intermediate):
 *   root (spiffe://cluster.local, the trust anchor: `trustBundlePem`)
 *     └─ intermediate
 *          ├─ serverCert  spiffe://cluster.local/ns/waygate/sa/gateway + DNS localhost + IP 127.0.0.1
 *          └─ clientFor(id)  one leaf per SPIFFE ID (cached)
 *   foreignRoot (also claims spiffe://cluster.local, but nobody trusts it)
 *
 * Present `chainPem` (leaf + intermediate) as the TLS `cert`, `keyPem` as the `key`, and
 * `trustBundlePem` as the `ca`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, issueLeaf, type IssuedCert, type IssueLeafOptions } from '../../src/identity/dev-ca.ts';

/** The gateway's own identity in the test PKI. */
export const GATEWAY_SPIFFE_ID = 'spiffe://cluster.local/ns/waygate/sa/gateway';

/**
 * The SPIFFE ID of service account `sa` in namespace `ns` (default `default`) of trust domain `td`
 * (default `cluster.local`, the test PKI's): `spiffe://td/ns/ns/sa/sa`, the shape Istio issues.
 */
export const spiffe = (sa: string, ns = 'default', td = 'cluster.local'): string => `spiffe://${td}/ns/${ns}/sa/${sa}`;

/** Options of {@link TestPki.clientFor}; anything beyond the SPIFFE ID makes a separate cache entry. */
export interface ClientCertOptions {
  /** Who signs: the trusted intermediate (default), the trusted root directly, or the untrusted foreign root. */
  issuer?: 'intermediate' | 'root' | 'foreign';
  /** A certificate whose validity ended an hour ago. */
  expired?: boolean;
  /** URI SANs written after the SPIFFE ID. */
  extraUris?: string[];
  dnsNames?: string[];
  commonName?: string;
}

export interface TestPki {
  root: IssuedCert;
  intermediate: IssuedCert;
  /** The gateway's serving certificate: spiffe://cluster.local/ns/waygate/sa/gateway, DNS localhost, IP 127.0.0.1. */
  serverCert: IssuedCert;
  /** A client (workload) certificate for `spiffeId`, issued once per id + options and cached. */
  clientFor(spiffeId: string, opts?: ClientCertOptions): IssuedCert;
  /** A leaf with arbitrary options (not cached): two URI SANs, no URI SAN, SPIFFE-looking CN, ... */
  issue(opts: Omit<IssueLeafOptions, 'ca'> & { issuer?: ClientCertOptions['issuer'] }): IssuedCert;
  /** A CA nobody trusts, claiming the same trust domain. */
  foreignRoot: IssuedCert;
  /** PEM of the trusted root: the `ca` of every TLS endpoint in tests. */
  trustBundlePem: string;
}

let cached: TestPki | undefined;

/** The process-wide test PKI (built on first call). */
export function testPki(): TestPki {
  if (cached) return cached;
  const root = createCa({ trustDomain: 'cluster.local', commonName: 'waygate test root' });
  const intermediate = createCa({ parent: root, commonName: 'waygate test intermediate', pathLen: 0 });
  const foreignRoot = createCa({ trustDomain: 'cluster.local', commonName: 'untrusted foreign root' });
  const serverCert = issueLeaf({
    ca: intermediate,
    spiffeId: GATEWAY_SPIFFE_ID,
    dnsNames: ['localhost'],
    ips: ['127.0.0.1'],
  });
  const pick = (issuer: ClientCertOptions['issuer']): IssuedCert =>
    issuer === 'root' ? root : issuer === 'foreign' ? foreignRoot : intermediate;
  const clients = new Map<string, IssuedCert>();
  cached = {
    root,
    intermediate,
    serverCert,
    foreignRoot,
    trustBundlePem: root.certPem,
    clientFor(spiffeId, opts = {}) {
      const key = JSON.stringify([spiffeId, opts.issuer ?? 'intermediate', !!opts.expired, opts.extraUris ?? [], opts.dnsNames ?? [], opts.commonName ?? null]);
      let cert = clients.get(key);
      if (!cert) {
        const leafOpts: IssueLeafOptions = { ca: pick(opts.issuer), spiffeId };
        if (opts.extraUris) leafOpts.uris = opts.extraUris;
        if (opts.dnsNames) leafOpts.dnsNames = opts.dnsNames;
        if (opts.commonName !== undefined) leafOpts.commonName = opts.commonName;
        if (opts.expired) {
          leafOpts.notBefore = new Date(Date.now() - 2 * 3_600_000);
          leafOpts.notAfter = new Date(Date.now() - 3_600_000);
        }
        cert = issueLeaf(leafOpts);
        clients.set(key, cert);
      }
      return cert;
    },
    issue({ issuer, ...rest }) {
      return issueLeaf({ ...rest, ca: pick(issuer) });
    },
  };
  return cached;
}

/** Paths written by {@link writeTlsFiles}. */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/**
 * Writes a leaf (its chain as the cert file), its key and a trust bundle into `dir` under
 * `<prefix>.crt`, `<prefix>.key`, `<prefix>-ca.crt`: for tests of file loading, reload and the CLI.
 */
export function writeTlsFiles(dir: string, cert: IssuedCert, trustBundlePem: string, prefix = 'tls'): TlsFiles {
  mkdirSync(dir, { recursive: true });
  const files = { certFile: join(dir, `${prefix}.crt`), keyFile: join(dir, `${prefix}.key`), caFile: join(dir, `${prefix}-ca.crt`) };
  writeFileSync(files.certFile, cert.chainPem);
  writeFileSync(files.keyFile, cert.keyPem, { mode: 0o600 });
  writeFileSync(files.caFile, trustBundlePem);
  return files;
}
