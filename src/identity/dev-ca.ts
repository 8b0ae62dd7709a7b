/**
 * A development certificate authority that mints X.509-SVIDs the way SPIRE and istiod do:
 * ECDSA P-256 keys, ecdsa-with-SHA256 signatures, the SPIFFE ID as a URI SAN.
 *
 * node-forge can build ASN.1 but cannot generate or sign with EC keys, so the work is split:
 * node:crypto generates the P-256 key pair and signs; forge's `asn1` module assembles the DER of the
 * TBSCertificate (RFC 5280 §4.1) around them. Every certificate produced here is checked by
 * `crypto.X509Certificate` (parse + `verify(issuerPublicKey)`) before it is returned, so a
 * malformed encoding fails at issue time, not in a handshake.
 *
 * This is for development and tests (`waygate certs init|issue`); production identities come from
 * the mesh CA.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WaygateError } from '../errors.ts';
import { asn1, bool, der, extension, fromDerBuffer, generalNames, int, keyUsageBits, name, octets, OID, oid, pem, seq, signed, T, time, U, type Asn1 } from './der.ts';
import { firstSpiffeId, uriSansFromDer } from './peer-identity.ts';
import { DEFAULT_TRUST_DOMAIN, parseSpiffeId } from './spiffe.ts';

/** A certificate with its private key, as minted by {@link createCa} or {@link issueLeaf}. */
export interface IssuedCert {
  /** This certificate alone, PEM. */
  certPem: string;
  /** Its private key, PKCS#8 PEM. */
  keyPem: string;
  /** This certificate followed by every intermediate up to (not including) the root: what a TLS peer presents. */
  chainPem: string;
  /** The root of the hierarchy (the trust anchor peers need); for a root CA, its own certificate. */
  caPem?: string;
  /** The first URI SAN when it is a SPIFFE ID (`spiffe://<td>` for CA certificates). */
  spiffeId?: string;
  /** SHA-256 fingerprint in Node's format (`AB:CD:...`), as `tlsSocket.getPeerCertificate().fingerprint256`. */
  fingerprint256: string;
  /** True for CA certificates (basicConstraints CA:TRUE). */
  isCa: boolean;
  notBefore: Date;
  notAfter: Date;
}

/** Options of {@link createCa}. */
export interface CreateCaOptions {
  /** SPIFFE trust domain; the CA carries the URI SAN `spiffe://<trustDomain>`. Default: the parent's, else `cluster.local`. */
  trustDomain?: string;
  commonName?: string;
  /** Default 3650 days for a root, 1825 for an intermediate. */
  validityDays?: number;
  /** When given, the new CA is an intermediate signed by it; otherwise a self-signed root. */
  parent?: IssuedCert;
  /** basicConstraints pathLenConstraint; omitted (unlimited) by default. */
  pathLen?: number;
  /** Default: five minutes ago; with `notAfter`, a CA outside its validity (tests of chain checks). */
  notBefore?: Date;
  /** Default: notBefore + validityDays. */
  notAfter?: Date;
}

/** Options of {@link issueLeaf}. */
export interface IssueLeafOptions {
  ca: IssuedCert;
  /** The SPIFFE ID, written as the first URI SAN (before `uris`). */
  spiffeId?: string;
  /** Further URI SANs, written in this order after `spiffeId`. */
  uris?: string[];
  dnsNames?: string[];
  ips?: string[];
  commonName?: string;
  /** Default: five minutes ago (clock skew between peers). */
  notBefore?: Date;
  /** Default: notBefore + validityHours. */
  notAfter?: Date;
  /** Default 24 hours, istiod's workload certificate lifetime. */
  validityHours?: number;
  /** Extended key usages; both default to true (a mesh workload is client and server). */
  serverAuth?: boolean;
  clientAuth?: boolean;
  /**
   * Certify this public key instead of generating a key pair (a CA signing a CSR's key); the
   * result's `keyPem` is then empty, the private key staying with whoever made the request.
   */
  publicKey?: KeyObject;
}


// RFC 5280 §4.2.1.3 KeyUsage bit numbers.
const KU = { digitalSignature: 0, keyAgreement: 4, keyCertSign: 5, cRLSign: 6 } as const;

const ORGANIZATION = 'waygate dev';
const CLOCK_SKEW_MS = 5 * 60 * 1000;

/** A positive 127-bit serial number (RFC 5280 §4.1.2.2: at most 20 octets, non-negative). */
function serialNumber(): Asn1 {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40; // positive, and no leading zero octet to strip
  return asn1.create(U, T.INTEGER, false, bytes.toString('binary'));
}

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING contents. */
function keyIdentifier(spkiDer: Buffer): string {
  const spki = fromDerBuffer(spkiDer);
  const bitString = (spki.value as Asn1[])[1]!;
  const contents = (bitString.value as string).slice(1); // drop the unused-bits octet
  return createHash('sha1').update(Buffer.from(contents, 'binary')).digest('binary');
}

/** The subject Name of a certificate, byte-exact, to use as the issuer of its children. */
function subjectOf(certPem: string): Asn1 {
  const cert = fromDerBuffer(new X509Certificate(certPem).raw);
  const tbs = (cert.value as Asn1[])[0]!;
  // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, ...
  return (tbs.value as Asn1[])[5]!;
}

// ---------------------------------------------------------------------------------------------

interface TbsParams {
  subject: Asn1;
  issuer: Asn1;
  notBefore: Date;
  notAfter: Date;
  spkiDer: Buffer;
  extensions: Asn1[];
}

/** Assembles the TBSCertificate, signs it with the issuer's key, and returns the certificate PEM. */
function signCertificate(p: TbsParams, issuerKey: KeyObject): string {
  const sigAlg = seq([oid(OID.ecdsaWithSha256)]); // RFC 5758 §3.2: parameters absent
  const tbs = seq([
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [int(2)]), // v3
    serialNumber(),
    sigAlg,
    p.issuer,
    seq([time(p.notBefore), time(p.notAfter)]),
    p.subject,
    fromDerBuffer(p.spkiDer),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 3, true, [seq(p.extensions)]),
  ]);
  const signature = sign('sha256', Buffer.from(der(tbs), 'binary'), issuerKey); // DER ECDSA-Sig-Value
  return pem('CERTIFICATE', signed(tbs, sigAlg, signature));
}

function newKeyPair(): { privateKey: KeyObject; spkiDer: Buffer; keyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privateKey,
    spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

/** Parses what was just signed and checks it against the issuer: a bad encoding fails here. */
function checked(certPem: string, issuerPem: string | null): X509Certificate {
  const cert = new X509Certificate(certPem);
  const issuer = issuerPem === null ? cert : new X509Certificate(issuerPem);
  if (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) {
    throw new WaygateError('WG_CERT', 'internal error: a freshly minted certificate does not verify against its issuer');
  }
  return cert;
}

function trustDomainOf(ca: IssuedCert): string | undefined {
  return ca.spiffeId ? parseSpiffeId(ca.spiffeId)?.trustDomain : undefined;
}

/**
 * Creates a CA: a self-signed root, or an intermediate when `parent` is given. Like SPIRE's, the CA
 * certificate carries the URI SAN `spiffe://<trustDomain>`; basicConstraints CA:TRUE and keyUsage
 * keyCertSign+cRLSign are critical (RFC 5280 §4.2.1.9, §4.2.1.3).
 */
export function createCa(opts: CreateCaOptions = {}): IssuedCert {
  const parent = opts.parent;
  if (parent && !parent.isCa) throw new WaygateError('WG_CERT', 'the parent of an intermediate CA must be a CA certificate');
  const trustDomain = opts.trustDomain ?? (parent && trustDomainOf(parent)) ?? DEFAULT_TRUST_DOMAIN;
  const spiffeId = `spiffe://${trustDomain}`;
  if (!parseSpiffeId(spiffeId)) {
    throw new WaygateError('WG_CERT', `invalid SPIFFE trust domain ${JSON.stringify(trustDomain)} (lower-case letters, digits, '.', '-', '_')`);
  }
  const validityDays = opts.validityDays ?? (parent ? 1825 : 3650);
  const notBefore = opts.notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + validityDays * 86_400_000);
  const keys = newKeyPair();
  const ski = keyIdentifier(keys.spkiDer);
  const commonName = opts.commonName ?? (parent ? `waygate dev intermediate CA (${trustDomain})` : `waygate dev root CA (${trustDomain})`);
  const subject = name([
    [OID.organization, ORGANIZATION],
    [OID.commonName, commonName],
  ]);
  const issuerKey = parent ? createPrivateKey(parent.keyPem) : keys.privateKey;
  const issuerSki = parent ? keyIdentifier(new X509Certificate(parent.certPem).publicKey.export({ type: 'spki', format: 'der' })) : ski;
  const constraints: Asn1[] = [bool(true)];
  if (opts.pathLen !== undefined) constraints.push(int(opts.pathLen));
  const certPem = signCertificate(
    {
      subject,
      issuer: parent ? subjectOf(parent.certPem) : subject,
      notBefore,
      notAfter,
      spkiDer: keys.spkiDer,
      extensions: [
        extension(OID.basicConstraints, true, seq(constraints)),
        extension(OID.keyUsage, true, keyUsageBits([KU.keyCertSign, KU.cRLSign])),
        extension(OID.subjectKeyIdentifier, false, octets(ski)),
        extension(OID.authorityKeyIdentifier, false, seq([asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, issuerSki)])),
        extension(OID.subjectAltName, false, generalNames([spiffeId], [], [])),
      ],
    },
    issuerKey,
  );
  const x509 = checked(certPem, parent ? parent.certPem : null);
  const parentIsRoot = parent !== undefined && parent.caPem === parent.certPem;
  return {
    certPem,
    keyPem: keys.keyPem,
    // A root presents nothing above itself; an intermediate presents itself plus its non-root ancestors.
    chainPem: parent && !parentIsRoot ? certPem + parent.chainPem : certPem,
    caPem: parent ? parent.caPem ?? parent.certPem : certPem,
    spiffeId,
    fingerprint256: x509.fingerprint256,
    isCa: true,
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
  };
}

/**
 * Issues a workload (leaf) certificate: CA:FALSE, keyUsage digitalSignature+keyAgreement,
 * extKeyUsage serverAuth+clientAuth by default, URI SANs in the order given (`spiffeId` first).
 * Nothing here checks that the SPIFFE ID is valid or in the CA's trust domain: tests need leaves
 * that are wrong on purpose. The CLI validates before calling.
 */
export function issueLeaf(opts: IssueLeafOptions): IssuedCert {
  const ca = opts.ca;
  if (!ca.isCa) throw new WaygateError('WG_CERT', 'a leaf certificate must be issued by a CA certificate');
  const uris = [...(opts.spiffeId !== undefined ? [opts.spiffeId] : []), ...(opts.uris ?? [])];
  const dnsNames = opts.dnsNames ?? [];
  const ips = opts.ips ?? [];
  const notBefore = opts.notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + (opts.validityHours ?? 24) * 3_600_000);
  if (notAfter.getTime() <= notBefore.getTime()) throw new WaygateError('WG_CERT', 'notAfter must be later than notBefore');
  const keys = opts.publicKey ? { spkiDer: opts.publicKey.export({ type: 'spki', format: 'der' }), keyPem: '' } : newKeyPair();
  const caSpki = new X509Certificate(ca.certPem).publicKey.export({ type: 'spki', format: 'der' });
  const subjectAttrs: Array<[string, string]> = [[OID.organization, ORGANIZATION]];
  if (opts.commonName !== undefined) subjectAttrs.push([OID.commonName, opts.commonName]);
  const eku: Asn1[] = [];
  if (opts.serverAuth ?? true) eku.push(oid(OID.serverAuth));
  if (opts.clientAuth ?? true) eku.push(oid(OID.clientAuth));
  const extensions: Asn1[] = [
    extension(OID.basicConstraints, true, seq([])), // CA:FALSE is the DEFAULT, so encoded as empty
    extension(OID.keyUsage, true, keyUsageBits([KU.digitalSignature, KU.keyAgreement])),
    extension(OID.subjectKeyIdentifier, false, octets(keyIdentifier(keys.spkiDer))),
    extension(OID.authorityKeyIdentifier, false, seq([asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, keyIdentifier(caSpki))])),
  ];
  if (eku.length > 0) extensions.push(extension(OID.extKeyUsage, false, seq(eku)));
  if (uris.length + dnsNames.length + ips.length > 0) {
    extensions.push(extension(OID.subjectAltName, false, generalNames(uris, dnsNames, ips)));
  }
  const certPem = signCertificate(
    { subject: name(subjectAttrs), issuer: subjectOf(ca.certPem), notBefore, notAfter, spkiDer: keys.spkiDer, extensions },
    createPrivateKey(ca.keyPem),
  );
  const x509 = checked(certPem, ca.certPem);
  const caIsRoot = ca.caPem === undefined || ca.caPem === ca.certPem;
  const first = uris[0];
  const result: IssuedCert = {
    certPem,
    keyPem: keys.keyPem,
    chainPem: caIsRoot ? certPem : certPem + ca.chainPem,
    caPem: ca.caPem ?? ca.certPem,
    fingerprint256: x509.fingerprint256,
    isCa: false,
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
  };
  if (first !== undefined && parseSpiffeId(first)) result.spiffeId = first;
  return result;
}

/** Rebuilds an {@link IssuedCert} from PEM files (a CA read back by the CLI). */
export function issuedFromPem(certPem: string, keyPem: string, chainPem: string, caPem: string): IssuedCert {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw new WaygateError('WG_CERT', `cannot parse certificate: ${(err as Error).message}`, { cause: err });
  }
  let publicFromKey: string;
  try {
    publicFromKey = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'pem' }) as string;
  } catch (err) {
    throw new WaygateError('WG_CERT', `cannot parse private key: ${(err as Error).message}`, { cause: err });
  }
  if (publicFromKey !== x509.publicKey.export({ type: 'spki', format: 'pem' })) {
    throw new WaygateError('WG_CERT', 'the private key does not match the certificate');
  }
  const uri = firstSpiffeId(uriSansFromDer(x509.raw))?.id;
  const result: IssuedCert = {
    certPem,
    keyPem,
    chainPem,
    caPem,
    fingerprint256: x509.fingerprint256,
    isCa: x509.ca,
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
  };
  if (uri) result.spiffeId = uri;
  return result;
}

/** Writes a file readable by its owner only (private keys: 0600 even if the file existed). */
function writePrivate(path: string, data: string): void {
  writeFileSync(path, data, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/** File names used by {@link writeCaFiles} for a CA called `name` (default `ca`). */
export function caFilePaths(dir: string, name = 'ca'): { cert: string; key: string; chain: string; root: string } {
  return {
    cert: join(dir, `${name}.crt`),
    key: join(dir, `${name}.key`),
    chain: join(dir, `${name}-chain.crt`),
    root: join(dir, 'root.crt'),
  };
}

/**
 * Writes a CA to `dir`: `<name>.crt`, `<name>.key` (0600), `<name>-chain.crt`, and `root.crt` (the
 * trust anchor to give peers). Creates `dir` (0700) when missing.
 */
export function writeCaFiles(dir: string, ca: IssuedCert, name = 'ca'): ReturnType<typeof caFilePaths> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const paths = caFilePaths(dir, name);
  writeFileSync(paths.cert, ca.certPem);
  writePrivate(paths.key, ca.keyPem);
  writeFileSync(paths.chain, ca.chainPem);
  writeFileSync(paths.root, ca.caPem ?? ca.certPem);
  return paths;
}

/** Reads a CA written by {@link writeCaFiles}; `WG_CERT` naming the file when one is missing or broken. */
export function readCaFiles(dir: string, name = 'ca'): IssuedCert {
  const paths = caFilePaths(dir, name);
  const read = (file: string): string => {
    if (!existsSync(file)) throw new WaygateError('WG_CERT', `${file}: not found (run \`waygate certs init --dir ${dir}\` first)`);
    return readFileSync(file, 'utf8');
  };
  const certPem = read(paths.cert);
  const keyPem = read(paths.key);
  const chainPem = existsSync(paths.chain) ? readFileSync(paths.chain, 'utf8') : certPem;
  const rootPem = existsSync(paths.root) ? readFileSync(paths.root, 'utf8') : certPem;
  try {
    const ca = issuedFromPem(certPem, keyPem, chainPem, rootPem);
    if (!ca.isCa) throw new WaygateError('WG_CERT', 'the certificate is not a CA (basicConstraints CA:FALSE)');
    return ca;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new WaygateError('WG_CERT', `${paths.cert}: ${reason}`, { cause: err });
  }
}
