/**
 * SPIFFE ID parsing per the SPIFFE ID spec (spiffe/spiffe standards/SPIFFE-ID.md §2) and Istio's
 * workload identity convention `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
 */

export interface SpiffeId {
  /** The full ID exactly as parsed, e.g. `spiffe://cluster.local/ns/prod/sa/api`. */
  id: string;
  trustDomain: string;
  /** Path without the leading slash, `""` for a trust-domain-only ID. */
  path: string;
  /** Istio namespace and service account, `""` when the path is not `ns/<ns>/sa/<sa>`. */
  namespace: string;
  serviceAccount: string;
}

/** The trust domain used when none is given, Istio's default. */
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

// SPIFFE-ID §2.1: trust domain chars are lower-case letters, digits, '.', '-' and '_'.
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
// SPIFFE-ID §2.2: path segments use letters, digits, '.', '-' and '_'; no empty, '.' or '..' segments.
const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;
// SPIFFE-ID §2.3: the whole ID is at most 2048 bytes.
const MAX_SPIFFE_ID_BYTES = 2048;

/** Parses a SPIFFE ID, returning null (never throwing) for anything that is not one. */
export function parseSpiffeId(uri: string): SpiffeId | null {
  if (typeof uri !== 'string' || !uri.startsWith('spiffe://')) return null;
  if (Buffer.byteLength(uri) > MAX_SPIFFE_ID_BYTES) return null;
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash + 1);
  if (trustDomain.length === 0 || trustDomain.length > 255 || !TRUST_DOMAIN.test(trustDomain)) return null;
  // §2.2: no query, fragment, port or userinfo (those characters fail the segment class anyway).
  if (slash !== -1) {
    if (path.length === 0) return null; // trailing slash is not allowed
    for (const seg of path.split('/')) {
      if (seg === '' || seg === '.' || seg === '..' || !PATH_SEGMENT.test(seg)) return null;
    }
  }
  let namespace = '';
  let serviceAccount = '';
  const parts = path.split('/');
  if (parts.length === 4 && parts[0] === 'ns' && parts[2] === 'sa') {
    namespace = parts[1]!;
    serviceAccount = parts[3]!;
  }
  return { id: uri, trustDomain, path, namespace, serviceAccount };
}
