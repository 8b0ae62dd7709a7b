/**
 * The one `host:port` parser (RFC 3986 §3.2.2 authority): a CONNECT's `:authority`, route keys and
 * targets, listen addresses and `waygate connect --address` all go through it, so what the config
 * accepts is what the data plane will match.
 */
import { formatIp, parseIp } from './address.ts';

/** A parsed `host:port`. */
export type Authority =
  | { kind: 'ip'; ip: string; port: number; family: 4 | 6 }
  | { kind: 'host'; host: string; port: number };

// RFC 1123 §2.1 host names: labels of letters, digits and '-', 1-63 octets, not starting or ending
// with '-'; at most 253 octets overall. Underscores are accepted because Kubernetes service names
// never contain them but some DNS names (SRV-style) do; they cannot smuggle any separator.
const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
const PORT = /^[1-9][0-9]{0,4}$/;

/** Parses a port string: decimal, no sign, no leading zero, 1..65535 (0 too with `allowPortZero`). */
export function parsePortText(text: string, allowPortZero = false): number | null {
  if (allowPortZero && text === '0') return 0;
  if (!PORT.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}

/**
 * Parses an authority: `ip:port`, `[ipv6]:port` or `host:port`. Returns null when it is none.
 * IPs come out canonical (IPv4-mapped IPv6 as IPv4), host names lower-case without a final dot.
 * `allowPortZero` is for listen addresses, where port 0 asks for any free port.
 */
export function parseAuthority(authority: string, opts?: { allowPortZero?: boolean }): Authority | null {
  const zero = opts?.allowPortZero === true;
  if (authority.length === 0 || authority.length > 261) return null;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1 || authority[close + 1] !== ':') return null;
    const ip = authority.slice(1, close);
    // Only IPv6 goes in brackets; a zone id (`%eth0`) names an interface of the *client's* host
    // and fails to parse. IPv4-mapped IPv6 comes out as IPv4 (docs/design.md §3 "Types").
    const parsed = ip.includes(':') ? parseIp(ip) : null;
    if (!parsed) return null;
    const port = parsePortText(authority.slice(close + 2), zero);
    if (port === null) return null;
    return { kind: 'ip', ip: formatIp(parsed), port, family: parsed.family };
  }
  const colon = authority.lastIndexOf(':');
  if (colon <= 0) return null;
  const host = authority.slice(0, colon);
  // An unbracketed IPv6 literal is ambiguous (RFC 3986 §3.2.2 requires brackets).
  if (host.includes(':')) return null;
  const port = parsePortText(authority.slice(colon + 1), zero);
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
