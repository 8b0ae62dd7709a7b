/**
 * The key pair and certificate signing request istio-agent sends istiod: an RSA 2048 key
 * (istio-agent's default) or, as istio-agent makes with ECC_SIGNATURE_ALGORITHM=ECDSA, an ECDSA
 * P-256 key (its default ECC_CURVE); an empty subject, and the requested SPIFFE ID as the only
 * name, a URI SAN in the PKCS#10 extensionRequest attribute (RFC 2986 §4.1, RFC 2985 §5.4.2),
 * marked critical because the subject is empty (RFC 5280 §4.2.1.6). istiod certifies the CSR's
 * public key and writes the identity of the caller's token, whatever the CSR asks for; the SAN is
 * what istio-agent sends.
 *
 * node:crypto generates the key (native, off the main thread) and signs; src/identity/der.ts
 * assembles the PKCS#10 structure around them (node:crypto cannot build a CSR, and forge's pki
 * knows RSA keys only), with the blocks src/identity/dev-ca.ts assembles its certificates from. An RSA key costs
 * 100-700 ms of CPU to generate on a busy two-core machine, a P-256 key well under 1 ms.
 */
import { generateKeyPair, sign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type { IstioCaKeyAlgorithm } from '../../config/schema.ts';
import { asn1, der, extension, fromDerBuffer, generalNames, int, OID, oid, pem, seq, set, signed, T, U, type Asn1 } from '../der.ts';

const generateKeyPairAsync = promisify(generateKeyPair);

/** istio-agent's default workload key size (WORKLOAD_RSA_KEY_SIZE). */
export const RSA_KEY_BITS = 2048;
/** istio-agent's default ECC_CURVE, P256, in OpenSSL's name. */
const EC_CURVE = 'prime256v1';

/** A fresh key and a CSR for it. */
export interface CertificateSigningRequest {
  /** PKCS#10 PEM (`-----BEGIN CERTIFICATE REQUEST-----`). */
  csrPem: string;
  /** The private key, PKCS#8 PEM; it never leaves the process. */
  keyPem: string;
  /** The public key, SPKI PEM: the issued leaf must carry exactly this key. */
  publicKeyPem: string;
}

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
  // The URI SAN in a critical extension (RFC 5280 §4.2.1.6: the subject is empty).
  const extensions = seq([extension(OID.subjectAltName, true, generalNames([spiffeId], [], []))]);
  // CertificationRequestInfo (RFC 2986 §4.1): version 0, empty subject, the key, attributes [0].
  const info = seq([
    int(0),
    seq([]),
    fromDerBuffer(publicKey.export({ type: 'spki', format: 'der' })),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [seq([oid(OID.extensionRequest), set([extensions])])]),
  ]);
  // RFC 2986 §4.2: the signature over the DER of the CertificationRequestInfo; node:crypto signs
  // RSASSA-PKCS1-v1_5 for an RSA key (RFC 8017 §8.2) and DER ECDSA-Sig-Value for an EC key.
  const signature = sign('sha256', Buffer.from(der(info), 'binary'), privateKey);
  return {
    csrPem: pem('CERTIFICATE REQUEST', signed(info, signatureAlgorithm(keyAlgorithm), signature)),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}
