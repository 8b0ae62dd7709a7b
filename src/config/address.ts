/**
 * Socket addresses and destination specs as written in the config and on the command line.
 * Parsers return a message instead of throwing so the YAML loader can attach `file:line:col` and
 * the flag parser can print usage.
 */
import net from 'node:net';
import { parseAllowedNetwork, type ParsedCidr } from '../net/address.ts';
import { parseAuthority, parsePortText } from '../net/authority.ts';

/** A listen address: host (IP or `localhost`) and port (0 = any free port, used by tests). */
export interface HostPort {
  host: string;
  port: number;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/** Parses a listen address `ip:port`, `[v6]:port` or `localhost:port` (src/net/authority.ts). */
export function parseHostPort(text: string): Parsed<HostPort> {
  const a = parseAuthority(text, { allowPortZero: true });
  if (a === null) return { ok: false, message: `"${text}" is not host:port with a port 0-65535 ([v6]:port for IPv6)` };
  if (a.kind === 'host' && a.host !== 'localhost') {
    return { ok: false, message: `"${a.host}" is not an IP address (listen addresses are IPs or localhost)` };
  }
  return { ok: true, value: { host: a.kind === 'ip' ? a.ip : a.host, port: a.port } };
}

/**
 * Parses an address the gateway dials out to, such as istiod's CA: `name:port`, `ip:port` or
 * `[v6]:port`, port 1-65535 (src/net/authority.ts); names are resolved when dialed.
 */
export function parseDialAddress(text: string): Parsed<HostPort> {
  const a = parseAuthority(text);
  if (a === null) return { ok: false, message: `"${text}" is not host:port with a DNS name or IP and a port 1-65535 ([v6]:port for IPv6)` };
  return { ok: true, value: { host: a.kind === 'ip' ? a.ip : a.host, port: a.port } };
}

/**
 * Formats a host and port back into `host:port`, bracketing IPv6. Only an IPv6 address contains a
 * colon (a hostname or IPv4 address cannot), so a character test does it: this runs per CONNECT
 * on the routing path (src/hbone/route.ts), where a full IPv6 parse would be wasted.
 */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** True for 127.0.0.0/8, ::1, IPv4-mapped loopback and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  const v4 = host.startsWith('::ffff:') ? host.slice(7) : host;
  return net.isIPv4(v4) && v4.startsWith('127.');
}

/**
 * Validates an allowed network (`10.0.0.0/8`, `fd00::/8`; a bare IP means a single host, /32 or
 * /128) with the grammar the server compiles it with (src/net/address.ts parseAllowedNetwork).
 */
export function parseCidr(text: string): Parsed<ParsedCidr> {
  const r = parseAllowedNetwork(text);
  return 'cidr' in r ? { ok: true, value: r.cidr } : { ok: false, message: r.error };
}

/** Validates a port number (1-65535). */
export function parsePort(text: string | number): Parsed<number> {
  const s = String(text);
  const port = parsePortText(s);
  return port === null ? { ok: false, message: `"${s}" is not a port 1-65535` } : { ok: true, value: port };
}

/**
 * Parses the `--allow-destinations` syntax: comma-separated `CIDR[:PORT[+PORT...]]`. An IPv6 CIDR
 * must carry its `/prefix` so the port separator is unambiguous (`fd00::/8:443+8443`). Without
 * ports every port of the network is allowed.
 */
export function parseAllowDestinations(text: string): Parsed<{ cidr: string; ports?: number[] }[]> {
  const out: { cidr: string; ports?: number[] }[] = [];
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    let cidr = entry;
    let ports: number[] | undefined;
    // `/prefix:ports` (any family) or `a.b.c.d:ports` (IPv4 without prefix).
    const m = /^(.*\/\d+):([\d+]+)$/.exec(entry) ?? /^(\d+\.\d+\.\d+\.\d+):([\d+]+)$/.exec(entry);
    if (m) {
      cidr = m[1]!;
      ports = [];
      for (const p of m[2]!.split('+')) {
        const port = parsePort(p);
        if (!port.ok) return port;
        ports.push(port.value);
      }
    }
    const c = parseCidr(cidr);
    if (!c.ok) return c;
    out.push(ports ? { cidr, ports } : { cidr });
  }
  if (out.length === 0) return { ok: false, message: 'expected CIDR[:PORT[+PORT...]],...' };
  return { ok: true, value: out };
}

/** Validates a route target `ip:port` (IPv6 bracketed). */
export function parseRouteTarget(text: string): Parsed<HostPort> {
  const a = parseAuthority(text);
  if (a === null || a.kind !== 'ip') return { ok: false, message: `route target "${text}" must be ip:port with a port 1-65535 ([v6]:port for IPv6)` };
  return { ok: true, value: { host: a.ip, port: a.port } };
}

/** Validates a route key `host:port` (a DNS name, as CONNECT authorities carry; parsed as they are). */
export function parseRouteKey(text: string): Parsed<{ host: string; port: number }> {
  const a = parseAuthority(text);
  if (a === null || a.kind !== 'host') return { ok: false, message: `route key "${text}" must be host:port with a DNS name and a port 1-65535` };
  return { ok: true, value: { host: a.host, port: a.port } };
}
