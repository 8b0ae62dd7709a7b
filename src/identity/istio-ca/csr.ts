/**
 * The key pair and certificate signing request istio-agent sends istiod: RSA 2048 (istio-agent's
 * default key), an empty subject, and the requested SPIFFE ID as the only name, a URI SAN in the
 * PKCS#10 extensionRequest attribute (RFC 2986 §4.1, RFC 2985 §5.4.2), marked critical because
 * the subject is empty (RFC 5280 §4.2.1.6). istiod certifies the CSR's public key and writes the
 * identity of the caller's token, whatever the CSR asks for; the SAN is what istio-agent sends.
 *
 * node:crypto generates the key (native, off the main thread) and signs; node-forge assembles the
 * PKCS#10 structure around them (node:crypto cannot build a CSR). forge's own pure-JavaScript RSA
 * signature held the event loop for up to ~100 ms on a busy two-core machine, tunnels included.
 */
import { generateKeyPair, sign } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';

const generateKeyPairAsync = promisify(generateKeyPair);
// Present in node-forge (lib/x509.js), missing from @types/node-forge: the DER to sign.
const pki = forge.pki as typeof forge.pki & { getCertificationRequestInfo(csr: forge.pki.CertificateSigningRequest): forge.asn1.Asn1 };

/** istio-agent's default workload key size. */
export const RSA_KEY_BITS = 2048;

/** A fresh key and a CSR for it. */
export interface CertificateSigningRequest {
  /** PKCS#10 PEM (`-----BEGIN CERTIFICATE REQUEST-----`). */
  csrPem: string;
  /** The private key, PKCS#8 PEM; it never leaves the process. */
  keyPem: string;
  /** The public key, SPKI PEM: the issued leaf must carry exactly this key. */
  publicKeyPem: string;
}

/** Generates an RSA key and a CSR asking for `spiffeId` as its URI SAN. */
export async function createCsr(spiffeId: string): Promise<CertificateSigningRequest> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
    modulusLength: RSA_KEY_BITS,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKey);
  csr.setSubject([]);
  csr.setAttributes([
    {
      name: 'extensionRequest',
      // GeneralName uniformResourceIdentifier [6] (RFC 5280 §4.2.1.6).
      extensions: [{ name: 'subjectAltName', critical: true, altNames: [{ type: 6, value: spiffeId }] }],
    },
  ]);
  // What csr.sign() does, with node:crypto's RSASSA-PKCS1-v1_5 (RFC 8017 §8.2) over the DER of the
  // CertificationRequestInfo (RFC 2986 §4.2).
  csr.signatureOid = pki.oids['sha256WithRSAEncryption']!;
  csr.certificationRequestInfo = pki.getCertificationRequestInfo(csr);
  const info = Buffer.from(forge.asn1.toDer(csr.certificationRequestInfo).getBytes(), 'binary');
  csr.signature = sign('sha256', info, privateKey).toString('binary');
  return { csrPem: forge.pki.certificationRequestToPem(csr), keyPem: privateKey, publicKeyPem: publicKey };
}
