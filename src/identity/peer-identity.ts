/**
 * The identity of a TLS peer, read from its certificate the way ztunnel and Istio do: the **first
 * URI SAN that parses as a SPIFFE ID** (X.509-SVID spec §2 allows exactly one SPIFFE URI SAN;
 * ztunnel takes the first parsable one). The subject CN is never consulted.
 *
 * The SAN extension is decoded from the certificate DER with forge.asn1 instead of Node's
 * `subjectaltname` string: that string joins entries with ", " and does not escape a URI that
 * itself contains ", URI:spiffe://...", so it cannot be trusted to delimit names.
 */
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import forge from 'node-forge';
import { BoundedCache } from '../util/bounded-cache.ts';
import { WaygateError } from '../errors.ts';
import { OID } from './der.ts';
import { parseSpiffeId, type SpiffeId } from './spiffe.ts';

const { asn1 } = forge;
type Asn1 = forge.asn1.Asn1;
// forge's fromDer takes an options object; @types/node-forge only declares the legacy boolean.
const parseDer = asn1.fromDer as unknown as (bytes: string, options: { strict?: boolean; decodeBitStrings?: boolean }) => Asn1;

/** Who is on the other end of a TLS connection. */
export interface PeerIdentity {
  /** The first URI SAN that is a SPIFFE ID, or null when none is. */
  spiffeId: SpiffeId | null;
  /** Every URI SAN, in certificate order. */
  uris: string[];
  /** SHA-256 fingerprint, Node's `AB:CD:...` format. */
  fingerprint256: string;
  notAfter: Date;
}

// RFC 5280 §4.2.1.6 GeneralName: uniformResourceIdentifier [6] IMPLICIT IA5String.
const GENERAL_NAME_URI = 6;

function children(node: Asn1 | undefined): Asn1[] {
  return node && Array.isArray(node.value) ? (node.value as Asn1[]) : [];
}

/**
 * Every URI SAN of a DER certificate, in order. Throws `WG_CERT` when the DER is not a certificate.
 */
export function uriSansFromDer(der: Buffer): string[] {
  let cert: Asn1;
  try {
    cert = parseDer(der.toString('binary'), { decodeBitStrings: false, strict: true });
  } catch (err) {
    throw new WaygateError('WG_CERT', `not a DER certificate: ${(err as Error).message}`, { cause: err });
  }
  const tbs = children(cert)[0];
  // TBSCertificate ends with the optional [3] EXPLICIT Extensions (RFC 5280 §4.1).
  const extsWrapper = children(tbs).find((n) => n.tagClass === asn1.Class.CONTEXT_SPECIFIC && n.type === 3);
  const extensions = children(children(extsWrapper)[0]);
  for (const ext of extensions) {
    const parts = children(ext);
    const id = parts[0];
    if (!id || id.type !== asn1.Type.OID || asn1.derToOid(id.value as string) !== OID.subjectAltName) continue;
    const valueNode = parts[parts.length - 1]!; // extnValue OCTET STRING, after the optional `critical`
    let names: Asn1;
    try {
      names = parseDer(valueNode.value as string, { decodeBitStrings: false, strict: true });
    } catch (err) {
      throw new WaygateError('WG_CERT', `malformed subjectAltName extension: ${(err as Error).message}`, { cause: err });
    }
    const uris: string[] = [];
    for (const gn of children(names)) {
      if (gn.tagClass === asn1.Class.CONTEXT_SPECIFIC && gn.type === GENERAL_NAME_URI && typeof gn.value === 'string') {
        uris.push(gn.value);
      }
    }
    return uris;
  }
  return [];
}

/** The first URI SAN that parses as a SPIFFE ID, or null. Non-SPIFFE URIs before it are skipped. */
export function firstSpiffeId(uris: readonly string[]): SpiffeId | null {
  for (const u of uris) {
    const id = parseSpiffeId(u);
    if (id) return id;
  }
  return null;
}

/** Reads the peer identity from a DER certificate. */
export function identityFromCertificate(der: Buffer): PeerIdentity {
  const uris = uriSansFromDer(der);
  const x509 = new X509Certificate(der);
  return { spiffeId: firstSpiffeId(uris), uris, fingerprint256: x509.fingerprint256, notAfter: new Date(x509.validTo) };
}

/** Options of {@link PeerIdentityCache}. */
export interface PeerIdentityCacheOptions {
  /** Most identities kept; default 10,000 (a handshake's identity is looked up once per connection). */
  maxEntries?: number;
}

/**
 * Peer identities cached by certificate fingerprint: the same workload certificate reconnects
 * many times, and decoding DER costs more than a map lookup.
 */
export class PeerIdentityCache {
  readonly #cache: BoundedCache<string, PeerIdentity>;

  constructor(opts: PeerIdentityCacheOptions = {}) {
    this.#cache = new BoundedCache<string, PeerIdentity>(opts.maxEntries ?? 10_000);
  }

  /** The identity of the certificate the peer presented on `socket`, or null when it presented none. */
  resolve(socket: TLSSocket): PeerIdentity | null {
    const peer = socket.getPeerCertificate(false);
    // Node returns {} (no `raw`) when the peer sent no certificate.
    if (!peer || !peer.raw || !peer.fingerprint256) return null;
    const hit = this.#cache.get(peer.fingerprint256);
    if (hit) return hit;
    const identity = identityFromCertificate(peer.raw);
    this.#cache.set(identity.fingerprint256, identity);
    return identity;
  }

  /** Identities currently cached. */
  get size(): number {
    return this.#cache.size;
  }

  clear(): void {
    this.#cache.clear();
  }
}

/** Result of {@link checkTrustDomain}. */
export type TrustDomainCheck =
  | { ok: true; trustDomain: string }
  | { ok: false; reason: 'no_identity' | 'untrusted_domain'; message: string };

/**
 * Whether the peer's SPIFFE trust domain is one the gateway accepts (docs/design.md §2
 * "TLS"). Comparison is exact; trust domains are lower-case by spec.
 */
export function checkTrustDomain(identity: PeerIdentity | null, accepted: readonly string[]): TrustDomainCheck {
  const id = identity?.spiffeId;
  if (!id) return { ok: false, reason: 'no_identity', message: 'the peer certificate has no URI SAN that is a SPIFFE ID' };
  if (!accepted.includes(id.trustDomain)) {
    return {
      ok: false,
      reason: 'untrusted_domain',
      message: `trust domain ${JSON.stringify(id.trustDomain)} is not accepted (accepted: ${accepted.join(', ') || 'none'})`,
    };
  }
  return { ok: true, trustDomain: id.trustDomain };
}

/**
 * ztunnel's server identity check: the URI SANs of the server certificate must include the expected
 * SPIFFE ID exactly (ztunnel `tls/workload.rs` verifies the chain, then compares identities).
 * Returns an Error to fail the handshake, undefined to accept. Used by the HBONE client
 * (src/hbone/client.ts) and the HBONE upstream connector (src/upstream/hbone.ts).
 */
export function checkSpiffeIdentity(expected: string, cert: PeerCertificate): Error | undefined {
  if (!cert?.raw) return new WaygateError('WG_IDENTITY', 'the server presented no certificate');
  let uris: string[];
  try {
    uris = identityFromCertificate(cert.raw).uris;
  } catch (err) {
    return err as Error;
  }
  if (uris.includes(expected)) return undefined;
  return new WaygateError(
    'WG_IDENTITY',
    `the server certificate does not carry the expected identity ${expected} (URI SANs: ${uris.join(', ') || 'none'})`,
  );
}
