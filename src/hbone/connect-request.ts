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
import { formatIp, parseIp } from '../net/address.ts';

/** The parsed `:authority` of a CONNECT. */
export type Authority =
  | { kind: 'ip'; ip: string; port: number; family: 4 | 6 }
  | { kind: 'host'; host: string; port: number };

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

// RFC 1123 §2.1 host names: labels of letters, digits and '-', 1-63 octets, not starting or ending
// with '-'; at most 253 octets overall. Underscores are accepted because Kubernetes service names
// never contain them but some DNS names (SRV-style) do; they cannot smuggle any separator.
const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
const PORT = /^[1-9][0-9]{0,4}$/;

/** Parses a port string: decimal, no sign, no leading zero, 1..65535. */
export function parsePort(text: string): number | null {
  if (!PORT.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}

/** Parses an authority: `ip:port`, `[ipv6]:port` or `host:port`. Returns null when it is none. */
export function parseAuthority(authority: string): Authority | null {
  if (authority.length === 0 || authority.length > 261) return null;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1 || authority[close + 1] !== ':') return null;
    const ip = authority.slice(1, close);
    // Only IPv6 goes in brackets; a zone id (`%eth0`) names an interface of the *client's* host
    // and fails to parse. IPv4-mapped IPv6 comes out as IPv4 (docs/design.md §3 "Types").
    const parsed = ip.includes(':') ? parseIp(ip) : null;
    if (!parsed) return null;
    const port = parsePort(authority.slice(close + 2));
    if (port === null) return null;
    return { kind: 'ip', ip: formatIp(parsed), port, family: parsed.family };
  }
  const colon = authority.lastIndexOf(':');
  if (colon <= 0) return null;
  const host = authority.slice(0, colon);
  // An unbracketed IPv6 literal is ambiguous (RFC 3986 §3.2.2 requires brackets).
  if (host.includes(':')) return null;
  const port = parsePort(authority.slice(colon + 1));
  if (port === null) return null;
  const v4 = parseIp(host);
  if (v4) return { kind: 'ip', ip: formatIp(v4), port, family: 4 };
  // Something that looks like a dotted quad but is not one (`1.2.3.256`, `01.2.3.4`) is not a name.
  if (/^[0-9.]+$/.test(host)) return null;
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return null;
  for (const label of name.split('.')) if (!LABEL.test(label)) return null;
  return { kind: 'host', host: name.toLowerCase(), port };
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
