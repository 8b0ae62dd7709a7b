/**
 * Checks a certificate chain istiod returned before anything uses it: the leaf certifies our key,
 * names the identity we asked for, is valid now, allows client and server authentication, and
 * chains to the mesh root we were configured with (not merely to whatever root istiod appended)
 * through CA certificates that are valid now. Only then does it become TlsMaterial:
 * the leaf and its intermediates as the chain to present, the mesh root(s) as the trust anchors.
 */
import { createPrivateKey, type X509Certificate } from 'node:crypto';
import { WaygateError } from '../../errors.ts';
import { OID } from '../der.ts';
import { firstSpiffeId, uriSansFromDer } from '../peer-identity.ts';
import { parseSpiffeId } from '../spiffe.ts';
import { tlsMaterialFromPem, type TlsMaterial } from '../tls-material.ts';
import { chainsToAnchor, parsePemCertificates } from '../trust-bundle.ts';

/**
 * How far in the future a notBefore may lie: the clocks of istiod and this node disagree by a few
 * seconds at most when both run NTP. Beyond that the certificate is refused, since peers with a
 * correct clock would refuse it too.
 */
export const NOT_BEFORE_TOLERANCE_MS = 60_000;

/** What the response is checked against. */
export interface IssuedChainExpectations {
  /** The SPIFFE ID that was asked for. */
  identity: string;
  /** The private key whose public half the CSR carried (PKCS#8 PEM). */
  keyPem: string;
  /** The mesh root(s), already parsed. */
  anchors: readonly X509Certificate[];
  /** The files the anchors came from, for messages. */
  rootCertFiles: readonly string[];
  /** The token file, for the message when istiod issued another identity. */
  tokenFile: string;
  /** istiod's address, for messages. */
  address: string;
  /** The time to check validity against (ms since the epoch). */
  nowMs: number;
}

/** Verifies istiod's `cert_chain` and builds the material to serve; WG_CA saying what is wrong. */
export function verifyIssuedChain(certChain: readonly string[], x: IssuedChainExpectations): TlsMaterial {
  const from = `istiod at ${x.address}`;
  const pem = certChain.join('\n');
  if (pem.trim() === '') throw new WaygateError('WG_CA', `${from} answered without a certificate`);
  let chain: X509Certificate[];
  try {
    chain = parsePemCertificates(pem, `the certificate chain from ${from}`);
  } catch (err) {
    throw new WaygateError('WG_CA', (err as Error).message, { cause: err });
  }
  const leaf = chain[0]!;
  if (leaf.ca) throw new WaygateError('WG_CA', `${from} returned a CA certificate first, where the workload certificate belongs`);
  if (!leaf.checkPrivateKey(createPrivateKey(x.keyPem))) {
    throw new WaygateError('WG_CA', `${from} returned a certificate for another key than the one in our request: refused`);
  }
  const issued = firstSpiffeId(uriSansFromDer(leaf.raw))?.id;
  if (issued === undefined) {
    throw new WaygateError('WG_CA', `${from} returned a certificate without a SPIFFE ID (asked for ${x.identity}): refused`);
  }
  if (issued !== x.identity) throw new WaygateError('WG_CA', otherIdentity(from, issued, x));
  const anchorPrints = new Set(x.anchors.map((a) => a.fingerprint256));
  if (!chainsToAnchor(chain, x.anchors)) {
    throw new WaygateError(
      'WG_CA',
      `${from} returned ${issued} under a CA that does not chain to the mesh root in ${x.rootCertFiles.join(', ')} (issuer: ${oneLine(leaf.issuer)}): refused`,
    );
  }
  checkValidNow(leaf, 'a certificate', from, x.nowMs, 'check the clocks of istiod and this node');
  // RFC 5280 §4.2.1.9: only a CA certificate may sign others, and peers verifying the chain refuse
  // an expired link as they refuse an expired leaf (§6.1.3 (a)(2)). Every certificate after the
  // leaf is an intermediate or the root, whether or not the walk above went through it.
  for (const [i, c] of chain.entries()) {
    if (i === 0) continue;
    if (!c.ca) {
      throw new WaygateError('WG_CA', `${from} returned ${oneLine(c.subject)} (certificate #${i + 1} of the chain) as an intermediate, but it is not a CA certificate (basicConstraints CA:FALSE): refused`);
    }
    checkValidNow(c, `the CA certificate ${oneLine(c.subject)} (certificate #${i + 1} of the chain)`, from, x.nowMs, "istiod's signing CA (its cacerts Secret, or the CA it delegates to) needs renewing, or the clocks of istiod and this node disagree");
  }
  // RFC 5280 §4.2.1.12: with an extended key usage present, only the purposes it lists are allowed.
  // The certificate serves the listener (serverAuth) and the HBONE client (clientAuth).
  const usages = extendedKeyUsages(leaf);
  if (usages !== undefined && !usages.includes(ANY_EXTENDED_KEY_USAGE)) {
    const missing = (['serverAuth', 'clientAuth'] as const).filter((u) => !usages.includes(OID[u]));
    if (missing.length > 0) {
      throw new WaygateError(
        'WG_CA',
        `${from} returned ${issued} with an extended key usage without ${missing.join(' and ')}: refused, since the gateway's certificate serves both its listener (serverAuth) and its HBONE connections (clientAuth)`,
      );
    }
  }
  // Present the leaf and its intermediates; a root is the peers' own trust anchor, not sent.
  const presented = chain.filter((c) => !anchorPrints.has(c.fingerprint256));
  try {
    return tlsMaterialFromPem({
      cert: presented.map((c) => c.toString()).join(''),
      key: x.keyPem,
      ca: x.anchors.map((a) => a.toString()).join(''),
      origin: from,
    });
  } catch (err) {
    throw new WaygateError('WG_CA', (err as Error).message, { cause: err });
  }
}

// RFC 5280 §4.2.1.12 object identifiers.
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

/** The extended key usage OIDs, undefined without the extension (Node 23.5 renamed keyUsage to extKeyUsage). */
function extendedKeyUsages(cert: X509Certificate): readonly string[] | undefined {
  return (cert as X509Certificate & { extKeyUsage?: string[] }).extKeyUsage ?? cert.keyUsage;
}

function checkValidNow(cert: X509Certificate, what: string, from: string, nowMs: number, expiredHint: string): void {
  const now = new Date(nowMs).toISOString();
  const notAfter = new Date(cert.validTo);
  if (notAfter.getTime() <= nowMs) {
    throw new WaygateError('WG_CA', `${from} returned ${what} that expired at ${notAfter.toISOString()} (now ${now}): refused; ${expiredHint}`);
  }
  const notBefore = new Date(cert.validFrom);
  if (notBefore.getTime() > nowMs + NOT_BEFORE_TOLERANCE_MS) {
    throw new WaygateError('WG_CA', `${from} returned ${what} not valid before ${notBefore.toISOString()} (now ${now}): refused; check the clocks of istiod and this node`);
  }
}

/** Why istiod issued another identity than the configured one, and what to change. */
function otherIdentity(from: string, issued: string, x: IssuedChainExpectations): string {
  const got = parseSpiffeId(issued);
  const want = parseSpiffeId(x.identity);
  const head = `${from} issued ${issued}, not the configured identity ${x.identity}`;
  if (got && want && got.trustDomain !== want.trustDomain && got.path === want.path) {
    // The token's service account is the right one: istiod signs in its own trust domain
    // (meshConfig.trustDomain), which the configuration names differently.
    return `${head}: the service account is right but istiod's trust domain is "${got.trustDomain}", not "${want.trustDomain}"; set trustDomains (its first entry makes the identity) to "${got.trustDomain}", or tls.istioCa.identity to ${issued}`;
  }
  return `${head}: istiod certifies the service account of the token in ${x.tokenFile}, so that token's service account differs from the configured identity (run the pod as that service account, or configure the identity it has)`;
}

function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}
