/**
 * Validation of an HBONE CONNECT request (RFC 9113 §8.5, docs/design.md §2 "CONNECT"): `:method CONNECT`
 * and `:authority` only. `:scheme`, `:path` or `:protocol` make the request malformed (an
 * extended CONNECT, RFC 8441, is not HBONE). Every failure maps to `400` and audit reason
 * `bad_request`, as ztunnel answers a non-CONNECT method or an unparsable authority.
 *
 * nghttp2 already resets some malformed CONNECTs (missing `:authority`, `:path` present) with
 * RST_STREAM(PROTOCOL_ERROR) before Node emits them; this module checks everything again so the
 * gateway's contract does not rest on the HTTP/2 library's choices.
 */
import { parseAuthority, type Authority } from '../net/authority.ts';

// The one host:port parser (src/net/authority.ts); re-exported for the request's own tests.
export { parseAuthority, type Authority };

/** A CONNECT that passed validation. */
export interface ConnectRequest {
  /** `:authority` exactly as received. */
  authority: string;
  target: Authority;
}

/** Why a request is malformed; the message goes to the operational log, never on the wire. */
export interface ConnectRequestError {
  message: string;
  /** `:authority` as received, `""` when absent. */
  authority: string;
}

/** At most this many peer-sent characters of one header go into a log message. */
const MAX_QUOTED_CHARS = 300;

/**
 * A peer's header value as JSON text for a log message, cut to {@link MAX_QUOTED_CHARS}: a header
 * as large as the header list allows (`:method` included) must not become a log line as large.
 */
function quote(value: string | string[] | undefined): string {
  const text = typeof value === 'string' ? value : String(value ?? '');
  return text.length > MAX_QUOTED_CHARS ? `${JSON.stringify(text.slice(0, MAX_QUOTED_CHARS))}... (${text.length} chars)` : JSON.stringify(text);
}

/**
 * Validates the pseudo-headers of one request (Node's header object, where pseudo-headers are
 * keys starting with ':'). Returns the parsed CONNECT or why it is malformed.
 */
export function parseConnectRequest(
  headers: Readonly<Record<string, string | string[] | undefined>>,
): { ok: true; request: ConnectRequest } | { ok: false; error: ConnectRequestError } {
  const rawAuthority = headers[':authority'];
  const authority = typeof rawAuthority === 'string' ? rawAuthority : '';
  const fail = (message: string): { ok: false; error: ConnectRequestError } => ({ ok: false, error: { message, authority } });
  const method = headers[':method'];
  if (method !== 'CONNECT') return fail(`method ${quote(method)} is not CONNECT (RFC 9113 §8.5)`);
  for (const pseudo of [':scheme', ':path', ':protocol'] as const) {
    if (headers[pseudo] !== undefined) return fail(`a CONNECT request must not carry ${pseudo} (RFC 9113 §8.5)`);
  }
  if (typeof rawAuthority !== 'string' || rawAuthority.length === 0) return fail('a CONNECT request needs :authority (RFC 9113 §8.5)');
  const target = parseAuthority(rawAuthority);
  if (!target) return fail(`:authority ${quote(rawAuthority)} is not ip:port, [ipv6]:port or host:port`);
  return { ok: true, request: { authority: rawAuthority, target } };
}
