/**
 * Checks a certificate chain istiod returned before anything uses it: the leaf certifies our key,
 * names the identity we asked for, is valid now, and chains to the mesh root we were configured
 * with (not merely to whatever root istiod appended). Only then does it become TlsMaterial:
 * the leaf and its intermediates as the chain to present, the mesh root(s) as the trust anchors.
 */
import { createPrivateKey, type X509Certificate } from 'node:crypto';
import { WaygateError } from '../../errors.ts';
import { firstSpiffeId, uriSansFromDer } from '../peer-identity.ts';
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
  if (issued !== x.identity) {
    throw new WaygateError(
      'WG_CA',
      `${from} issued ${issued}, not the configured identity ${x.identity}: istiod certifies the service account of the token in ${x.tokenFile}, so that token's service account differs from the configured identity (run the pod as that service account, or configure the identity it has)`,
    );
  }
  const anchorPrints = new Set(x.anchors.map((a) => a.fingerprint256));
  if (!chainsToAnchor(chain, x.anchors)) {
    throw new WaygateError(
      'WG_CA',
      `${from} returned ${issued} under a CA that does not chain to the mesh root in ${x.rootCertFiles.join(', ')} (issuer: ${oneLine(leaf.issuer)}): refused`,
    );
  }
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= x.nowMs) {
    throw new WaygateError('WG_CA', `${from} returned a certificate that expired at ${notAfter.toISOString()} (now ${new Date(x.nowMs).toISOString()}): refused; check the clocks of istiod and this node`);
  }
  if (notBefore.getTime() > x.nowMs + NOT_BEFORE_TOLERANCE_MS) {
    throw new WaygateError('WG_CA', `${from} returned a certificate not valid before ${notBefore.toISOString()} (now ${new Date(x.nowMs).toISOString()}): refused; check the clocks of istiod and this node`);
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

function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}
