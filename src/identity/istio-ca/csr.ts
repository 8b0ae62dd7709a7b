/**
 * The key pair and certificate signing request istio-agent sends istiod: an RSA 2048 key
 * (istio-agent's default) or, as istio-agent makes with ECC_SIGNATURE_ALGORITHM=ECDSA, an ECDSA
 * P-256 key (its default ECC_CURVE); an empty subject, and the requested SPIFFE ID as the only
 * name, a URI SAN in the PKCS#10 extensionRequest attribute (RFC 2986 §4.1, RFC 2985 §5.4.2),
 * marked critical because the subject is empty (RFC 5280 §4.2.1.6). istiod certifies the CSR's
 * public key and writes the identity of the caller's token, whatever the CSR asks for; the SAN is
 * what istio-agent sends.
 *
 * node:crypto generates the key (native, off the main thread) and signs; node-forge's `asn1`
 * assembles the PKCS#10 structure around them (node:crypto cannot build a CSR, and forge's pki
 * knows RSA keys only), as src/identity/dev-ca.ts assembles its certificates. An RSA key costs
 * 100-700 ms of CPU to generate on a busy two-core machine, a P-256 key well under 1 ms.
 */
import { generateKeyPair, sign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import type { IstioCaKeyAlgorithm } from '../../config/schema.ts';

const generateKeyPairAsync = promisify(generateKeyPair);


/** istio-agent's default workload key size (WORKLOAD_RSA_KEY_SIZE). */
export const RSA_KEY_BITS = 2048;
/** istio-agent's default ECC_CURVE, P256, in OpenSSL's name. */
export const EC_CURVE = 'prime256v1';

/** A fresh key and a CSR for it. */
export interface CertificateSigningRequest {
  /** PKCS#10 PEM (`-----BEGIN CERTIFICATE REQUEST-----`). */
  csrPem: string;
  /** The private key, PKCS#8 PEM; it never leaves the process. */
  keyPem: string;
  /** The public key, SPKI PEM: the issued leaf must carry exactly this key. */
  publicKeyPem: string;
}

// Object identifiers: RFC 8017 Appendix C (sha256WithRSAEncryption), RFC 5758 §3.2
// (ecdsa-with-SHA256), RFC 2985 §5.4.2 (extensionRequest), RFC 5280 §4.2.1.6 (subjectAltName).
const OID = {
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
} as const;

const { asn1 } = forge;
type Asn1 = forge.asn1.Asn1;
const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;
const seq = (items: Asn1[]): Asn1 => asn1.create(U, T.SEQUENCE, true, items);
const oid = (id: string): Asn1 => asn1.create(U, T.OID, false, asn1.oidToDer(id).getBytes());
const der = (node: Asn1): Buffer => Buffer.from(asn1.toDer(node).getBytes(), 'binary');
// forge's fromDer takes an options object; @types/node-forge only declares the legacy boolean.
const parseDer = asn1.fromDer as unknown as (bytes: string, options: { strict?: boolean; decodeBitStrings?: boolean }) => Asn1;
/** A DER structure (the SPKI node:crypto exports) to embed; decodeBitStrings false keeps the key's BIT STRING byte-exact. */
const raw = (bytes: Buffer): Asn1 => parseDer(bytes.toString('binary'), { strict: true, decodeBitStrings: false });

/**
 * The signature AlgorithmIdentifier: RSASSA-PKCS1-v1_5 with SHA-256, NULL parameters (RFC 4055
 * §5), or ECDSA with SHA-256, parameters absent (RFC 5758 §3.2).
 */
function signatureAlgorithm(keyAlgorithm: IstioCaKeyAlgorithm): Asn1 {
  return keyAlgorithm === 'RSA' ? seq([oid(OID.sha256WithRSAEncryption), asn1.create(U, T.NULL, false, '')]) : seq([oid(OID.ecdsaWithSha256)]);
}

async function newKeyPair(keyAlgorithm: IstioCaKeyAlgorithm): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  return keyAlgorithm === 'RSA' ? generateKeyPairAsync('rsa', { modulusLength: RSA_KEY_BITS }) : generateKeyPairAsync('ec', { namedCurve: EC_CURVE });
}

/** Generates a key of `keyAlgorithm` (default RSA, istio-agent's) and a CSR asking for `spiffeId` as its URI SAN. */
export async function createCsr(spiffeId: string, keyAlgorithm: IstioCaKeyAlgorithm = 'RSA'): Promise<CertificateSigningRequest> {
  const { privateKey, publicKey } = await newKeyPair(keyAlgorithm);
  // GeneralName uniformResourceIdentifier [6] (RFC 5280 §4.2.1.6), in a critical extension.
  const san = seq([asn1.create(asn1.Class.CONTEXT_SPECIFIC, 6, false, spiffeId)]);
  const extensions = seq([seq([oid(OID.subjectAltName), asn1.create(U, T.BOOLEAN, false, '\xff'), asn1.create(U, T.OCTETSTRING, false, der(san).toString('binary'))])]);
  // CertificationRequestInfo (RFC 2986 §4.1): version 0, empty subject, the key, attributes [0].
  const info = seq([
    asn1.create(U, T.INTEGER, false, '\x00'),
    seq([]),
    raw(publicKey.export({ type: 'spki', format: 'der' })),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [seq([oid(OID.extensionRequest), asn1.create(U, T.SET, true, [extensions])])]),
  ]);
  // RFC 2986 §4.2: the signature over the DER of the CertificationRequestInfo; node:crypto signs
  // RSASSA-PKCS1-v1_5 for an RSA key (RFC 8017 §8.2) and DER ECDSA-Sig-Value for an EC key.
  const signature = sign('sha256', der(info), privateKey);
  const csr = seq([info, signatureAlgorithm(keyAlgorithm), asn1.create(U, T.BITSTRING, false, '\x00' + signature.toString('binary'))]);
  const body = der(csr).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return {
    csrPem: `-----BEGIN CERTIFICATE REQUEST-----\n${body}\n-----END CERTIFICATE REQUEST-----\n`,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}
