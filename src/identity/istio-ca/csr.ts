/**
 * The key pair and certificate signing request istio-agent sends istiod: RSA 2048 (istio-agent's
 * default key), an empty subject, and the requested SPIFFE ID as the only name, a URI SAN in the
 * PKCS#10 extensionRequest attribute (RFC 2986 §4.1, RFC 2985 §5.4.2), marked critical because
 * the subject is empty (RFC 5280 §4.2.1.6). istiod certifies the CSR's public key and writes the
 * identity of the caller's token, whatever the CSR asks for; the SAN is what istio-agent sends.
 *
 * node:crypto generates the key (native, off the main thread); node-forge, which only does RSA,
 * builds and signs the CSR (node:crypto cannot).
 */
import { generateKeyPair } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';

const generateKeyPairAsync = promisify(generateKeyPair);

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
  csr.sign(forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return { csrPem: forge.pki.certificationRequestToPem(csr), keyPem: privateKey, publicKeyPem: publicKey };
}
