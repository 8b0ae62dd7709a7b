/**
 * Trust bundles: the CA certificates a peer's chain must verify against (docs/design.md §2). A bundle is
 * one or more PEM files, each holding one or more certificates (a mesh CA rotation briefly trusts
 * the old root and the new one). Every certificate must parse and be a CA: a bundle that silently
 * drops an entry would turn into refused handshakes far from the cause.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { WaygateError } from '../errors.ts';

/** Parsed trust anchors plus the PEM to hand to `tls.createSecureContext({ ca })`. */
export interface TrustBundle {
  /** Every anchor, deduplicated by fingerprint, in file order. */
  certificates: X509Certificate[];
  /** The anchors re-joined as PEM. */
  pem: string;
  /** The files read, in order. */
  files: string[];
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/**
 * Parses every `CERTIFICATE` block of `pem`. `source` names the origin in error messages.
 * Throws `WG_CERT` when there is none, when a block does not parse, or when `requireCa` is set and
 * a certificate is not a CA.
 */
export function parsePemCertificates(pem: string, source: string, opts: { requireCa?: boolean } = {}): X509Certificate[] {
  const out: X509Certificate[] = [];
  let index = 0;
  for (const m of pem.matchAll(PEM_BLOCK)) {
    if (m[1] !== 'CERTIFICATE') continue; // keys or parameters next to certificates are not anchors
    index += 1;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(m[0]);
    } catch (err) {
      throw new WaygateError('WG_CERT', `${source}: certificate #${index} does not parse: ${(err as Error).message}`, { cause: err });
    }
    if (opts.requireCa && !cert.ca) {
      throw new WaygateError(
        'WG_CERT',
        `${source}: certificate #${index} (${oneLine(cert.subject)}) is not a CA certificate; a trust bundle holds CA certificates, not a workload's own certificate`,
      );
    }
    out.push(cert);
  }
  if (out.length === 0) throw new WaygateError('WG_CERT', `${source}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)`);
  return out;
}

/** Loads a trust bundle from one or several PEM files; `WG_CERT` names the file and the reason. */
export function loadTrustBundle(files: string | readonly string[]): TrustBundle {
  const list = typeof files === 'string' ? [files] : [...files];
  if (list.length === 0) throw new WaygateError('WG_CERT', 'no trust bundle file given');
  const certificates: X509Certificate[] = [];
  const seen = new Set<string>();
  for (const file of list) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new WaygateError('WG_CERT', `${file}: cannot read the trust bundle: ${(err as Error).message}`, { cause: err });
    }
    for (const cert of parsePemCertificates(text, file, { requireCa: true })) {
      if (seen.has(cert.fingerprint256)) continue;
      seen.add(cert.fingerprint256);
      certificates.push(cert);
    }
  }
  return { certificates, pem: certificates.map((c) => c.toString()).join(''), files: list };
}

/** Parses a trust bundle held in memory (for PEM passed inline rather than by file). */
export function trustBundleFromPem(pem: string, source = '<inline>'): TrustBundle {
  const certificates = parsePemCertificates(pem, source, { requireCa: true });
  return { certificates, pem: certificates.map((c) => c.toString()).join(''), files: [] };
}

/**
 * Whether `chain` (leaf first, then the intermediates it was presented with) leads to one of
 * `anchors`: each link checked by issuer name and signature, like a TLS peer would (RFC 5280 §6,
 * without policy or name-constraint processing). Validity periods are not checked here: a reload
 * must be able to load a certificate whose notBefore is a few seconds in the future.
 */
export function chainsToAnchor(chain: readonly X509Certificate[], anchors: readonly X509Certificate[]): boolean {
  const leaf = chain[0];
  if (!leaf) return false;
  const pool = chain.slice(1);
  let current = leaf;
  // Bounded walk: every step consumes an intermediate or ends at an anchor.
  for (let depth = 0; depth <= pool.length; depth++) {
    for (const anchor of anchors) {
      if (current.fingerprint256 === anchor.fingerprint256) return true;
      if (current.checkIssued(anchor) && current.verify(anchor.publicKey)) return true;
    }
    const next = pool.find((c) => c !== current && current.checkIssued(c) && current.verify(c.publicKey));
    if (!next) return false;
    current = next;
  }
  return false;
}

function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}
