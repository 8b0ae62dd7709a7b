/**
 * DER building blocks over node-forge's `asn1` (forge works on binary strings, Node on Buffers),
 * for the two structures waygate assembles around keys and signatures from node:crypto: the dev
 * CA's certificates (src/identity/dev-ca.ts, RFC 5280 §4.1) and the CSR sent to istiod
 * (src/identity/istio-ca/csr.ts, RFC 2986). node:crypto can sign but not build either; forge
 * can build them but knows RSA keys only.
 */
import { isIP } from 'node:net';
import forge from 'node-forge';
import { WaygateError } from '../errors.ts';

export const { asn1 } = forge;
export type Asn1 = forge.asn1.Asn1;
// forge's fromDer takes an options object; @types/node-forge only declares the legacy boolean.
const parseDer = asn1.fromDer as unknown as (bytes: string, options: { strict?: boolean; decodeBitStrings?: boolean }) => Asn1;

// Object identifiers: RFC 5280 §4.1.2.4 and §4.2.1 (names, extensions, key purposes), RFC 5758
// §3.2 (ecdsa-with-SHA256), RFC 8017 Appendix C (sha256WithRSAEncryption), RFC 2985 §5.4.2
// (extensionRequest).
export const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  extensionRequest: '1.2.840.113549.1.9.14',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

export const U = asn1.Class.UNIVERSAL;
export const T = asn1.Type;

export function seq(items: Asn1[]): Asn1 {
  return asn1.create(U, T.SEQUENCE, true, items);
}
export function set(items: Asn1[]): Asn1 {
  return asn1.create(U, T.SET, true, items);
}
export function oid(id: string): Asn1 {
  return asn1.create(U, T.OID, false, asn1.oidToDer(id).getBytes());
}
export function octets(bytes: string): Asn1 {
  return asn1.create(U, T.OCTETSTRING, false, bytes);
}
export function bool(value: boolean): Asn1 {
  return asn1.create(U, T.BOOLEAN, false, value ? '\xff' : '\x00');
}
export function int(value: number): Asn1 {
  return asn1.create(U, T.INTEGER, false, asn1.integerToDer(value).getBytes());
}
export function utf8(value: string): Asn1 {
  return asn1.create(U, T.UTF8, false, forge.util.encodeUtf8(value));
}
export function der(node: Asn1): string {
  return asn1.toDer(node).getBytes();
}
export function fromDerBuffer(buf: Buffer): Asn1 {
  // decodeBitStrings:false keeps BIT STRING contents (public keys, signatures) byte-exact.
  return parseDer(buf.toString('binary'), { decodeBitStrings: false, strict: true });
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
export function time(date: Date): Asn1 {
  const whole = new Date(Math.floor(date.getTime() / 1000) * 1000);
  return whole.getUTCFullYear() < 2050
    ? asn1.create(U, T.UTCTIME, false, asn1.dateToUtcTime(whole))
    : asn1.create(U, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(whole));
}

/** KeyUsage as a DER BIT STRING: named bits, trailing zero bits removed (X.690 §11.2.2). */
export function keyUsageBits(bits: number[]): Asn1 {
  const highest = Math.max(...bits);
  const byteCount = Math.floor(highest / 8) + 1;
  const bytes = new Array<number>(byteCount).fill(0);
  for (const b of bits) bytes[Math.floor(b / 8)]! |= 0x80 >> b % 8;
  const unused = byteCount * 8 - (highest + 1);
  return asn1.create(U, T.BITSTRING, false, String.fromCharCode(unused, ...bytes));
}

export function name(attrs: Array<[string, string]>): Asn1 {
  return seq(attrs.map(([type, value]) => set([seq([oid(type), utf8(value)])])));
}

export function extension(id: string, critical: boolean, value: Asn1): Asn1 {
  const parts = [oid(id)];
  if (critical) parts.push(bool(true));
  parts.push(octets(der(value)));
  return seq(parts);
}

/** SAN GeneralNames (RFC 5280 §4.2.1.6): uniformResourceIdentifier [6], dNSName [2], iPAddress [7]. */
export function generalNames(uris: string[], dnsNames: string[], ips: string[]): Asn1 {
  const ctx = asn1.Class.CONTEXT_SPECIFIC;
  const names: Asn1[] = [];
  for (const u of uris) names.push(asn1.create(ctx, 6, false, u));
  for (const d of dnsNames) names.push(asn1.create(ctx, 2, false, d));
  for (const ip of ips) names.push(asn1.create(ctx, 7, false, ipBytes(ip)));
  return seq(names);
}

function ipBytes(ip: string): string {
  const family = isIP(ip);
  if (family === 4) return String.fromCharCode(...ip.split('.').map(Number));
  if (family === 6) {
    // Expand "::" and an embedded dotted quad, then pack eight 16-bit groups.
    let text = ip;
    const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
    if (dotted) {
      const o = dotted[1]!.split('.').map(Number);
      text = text.slice(0, -dotted[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
    }
    const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
    const out = Buffer.alloc(16);
    groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
    return out.toString('binary');
  }
  throw new WaygateError('WG_CERT', `not an IP address for a certificate SAN: ${JSON.stringify(ip)}`);
}

/**
 * A signed structure (a Certificate, RFC 5280 §4.1.1; a CertificationRequest, RFC 2986 §4.2):
 * what was signed, the AlgorithmIdentifier, and the signature as a BIT STRING with no unused bits.
 */
export function signed(toBeSigned: Asn1, algorithm: Asn1, signature: Buffer): Asn1 {
  return seq([toBeSigned, algorithm, asn1.create(U, T.BITSTRING, false, '\x00' + signature.toString('binary'))]);
}

/** PEM (RFC 7468): the DER in base64, 64 characters a line, between BEGIN and END lines of `label`. */
export function pem(label: string, node: Asn1): string {
  const body = Buffer.from(der(node), 'binary').toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
}
