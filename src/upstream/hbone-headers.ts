/**
 * The headers of the CONNECT the gateway sends to a destination's ztunnel (docs/design.md §6
 * "HBONE origination", §8.3 "CONNECT sent"). Exactly what an Istio waypoint sends, nothing else:
 *
 * - `:method CONNECT` and `:authority podIP:targetPort` (RFC 9113 §8.5: no `:scheme`, no `:path`;
 *   the destination ztunnel answers 400 when the IP is not its pod's);
 * - `traceparent`: the client's own, passed on unchanged when it is well-formed (W3C Trace Context
 *   §3.2, parsed as src/hbone/request-headers.ts does), so the destination ztunnel logs the same
 *   trace; omitted otherwise (a malformed one would only be dropped further on);
 * - `forwarded: for="<client ip>:<port>"` (RFC 7239 §5.2; §6: the node is quoted because it carries
 *   a port, an IPv6 address bracketed) naming the original client, the verified peer of the first
 *   hop (never a header it sent), plus `;host=<service hostname>` when the tunnel was addressed to a
 *   service (ztunnel attributes the service from it);
 * - `baggage`: the gateway's own description, as given by the caller (omitted when empty).
 *
 * Pure functions: table-tested in test/upstream/hbone-headers.test.ts.
 */
import { isIPv6 } from 'node:net';
import { parseTraceparent } from '../hbone/request-headers.ts';

/** What the CONNECT's headers are built from: the fields of an UpstreamRequest (connector.ts) they read. */
export interface ConnectHeaderInput {
  /** The pod IP and target port: the `:authority`. */
  readonly ip: string;
  readonly port: number;
  readonly context: {
    /** The verified peer of the first hop: the original client. */
    readonly source: { readonly ip: string; readonly port: number };
    /** The client's CONNECT headers, lower-case names. */
    readonly request: { readonly headers: Readonly<Record<string, string>> };
  };
  /** `service` is the hostname the client addressed, `""` for a workload address. */
  readonly endpoint: { readonly service: string } | null;
}

/** `ip:port` with an IPv6 address bracketed (RFC 3986 §3.2.2), as an `:authority` is written. */
export function authorityOf(ip: string, port: number): string {
  return isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

// RFC 7230 §3.2.6 token: what an RFC 7239 parameter value may be without quotes.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * An RFC 7239 `forwarded` element naming a client `ip:port`, with `;host=` when `host` is
 * non-empty. The node is always quoted (§6: `:` is not a token character); a host that is not a
 * token (it never is for a DNS name) would be quoted too, with `"` and `\` escaped (RFC 7230 §3.2.6).
 */
export function forwardedFor(ip: string, port: number, host?: string): string {
  let value = `for="${authorityOf(ip, port)}"`;
  if (host) value += `;host=${TOKEN.test(host) ? host : `"${host.replace(/["\\]/g, '\\$&')}"`}`;
  return value;
}

/** The CONNECT's headers, pseudo-headers included, ready for `session.request()`. */
export function hboneConnectHeaders(input: ConnectHeaderInput, baggage: string): Record<string, string> {
  const headers: Record<string, string> = {
    ':method': 'CONNECT',
    ':authority': authorityOf(input.ip, input.port),
  };
  const traceparent = input.context.request.headers['traceparent'];
  if (parseTraceparent(traceparent) !== null) headers['traceparent'] = traceparent!.trim();
  const source = input.context.source;
  // A tunnel always has a verified peer; a context without one (tests, replays) names nobody.
  if (source.ip !== '') headers['forwarded'] = forwardedFor(source.ip, source.port, input.endpoint?.service);
  if (baggage !== '') headers['baggage'] = baggage;
  return headers;
}
