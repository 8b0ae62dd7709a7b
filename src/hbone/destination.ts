/**
 * Where a tunnel may go (docs/design.md §2 "Upstream"): the destination is the `:authority` (or a
 * configured route for a `host:port` authority), and only addresses inside the configured allowed
 * networks/ports are dialed, so the gateway is never an open proxy.
 *
 * Special ranges are never reached through a broad entry: `0.0.0.0/0` does not open loopback,
 * link-local or cloud-metadata addresses. Each needs an allow entry that lies wholly inside that
 * range (`127.0.0.1/32` for loopback, the exact `/32` or `/128` for a metadata address), i.e. an
 * operator who listed it on purpose. Unspecified (`0.0.0.0`, `::`: Linux dials them as the local
 * host), multicast and the limited broadcast address are never dialed.
 *
 * No DNS is ever resolved here: a `host:port` authority without a route has no destination
 * (`no_route`; the server answers 503 as ztunnel does for a hostname it has no upstream for,
 * while an address outside the allowed networks is a refusal with the deny status).
 */
import { networkInterfaces } from 'node:os';
import { WaygateError } from '../errors.ts';
import {
  cidrContains,
  formatIp,
  isLinkLocal,
  isLoopback,
  isMetadataAddress,
  isMulticast,
  isUnspecified,
  parseAllowedNetwork,
  parseIp,
  type ParsedCidr,
  type ParsedIp,
} from '../net/address.ts';
import { parseAuthority, type Authority } from '../net/authority.ts';

/** One allowed network: a CIDR block and, optionally, the only ports allowed in it. */
export interface AllowedNetwork {
  cidr: string;
  /** Allowed ports (each 1..65535); every port when omitted. `cidr` may be a bare IP: one host. */
  ports?: readonly number[];
}

/** Destination configuration of the HBONE server. */
export interface DestinationOptions {
  allow: readonly AllowedNetwork[];
  /** `host:port` authority -> `ip:port` (or `[ipv6]:port`) to dial. Keys are matched case-insensitively. */
  routes?: Readonly<Record<string, string>>;
}

/** A resolved destination: what the decision context's `destination` carries. */
export interface ResolvedDestination {
  /** Canonical address the authority names (or its route's); `""` when a `host:port` authority has no route. */
  ip: string;
  /** Host of a `host:port` authority, `""` for an IP authority. */
  host: string;
  port: number;
  /** What discovery knows of it (src/hbone/route.ts), `""` without discovery or outside the mesh. */
  service: string;
  namespace: string;
  workload: string;
  principal: string;
}

/** The discovery fields of a destination outside the mesh. */
export const OUTSIDE_MESH = Object.freeze({ service: '', namespace: '', workload: '', principal: '' });

/**
 * Outcome of {@link DestinationPolicy.check} / {@link DestinationPolicy.checkResolved}:
 * `no_route` only for a `host:port` authority that no route maps to an address.
 */
export type DestinationCheck = 'ok' | 'not_allowed' | 'self_call' | 'no_route';

interface CompiledEntry {
  cidr: ParsedCidr;
  ports: ReadonlySet<number> | null;
  /** Whether the entry lies wholly inside each special range (an explicit listing of it). */
  listsLoopback: boolean;
  listsLinkLocal: boolean;
  listsMetadata: boolean;
}

const LIMITED_BROADCAST = 0xffffffff;

function hostBits(c: ParsedCidr): number {
  return (c.family === 4 ? 32 : 128) - c.prefixLength;
}

function compileEntry(entry: AllowedNetwork, path: string): CompiledEntry {
  if (!entry || typeof entry !== 'object') throw new WaygateError('WG_CONFIG', `${path}: expected {cidr, ports?}`);
  const parsed = parseAllowedNetwork(entry.cidr);
  if ('error' in parsed) throw new WaygateError('WG_CONFIG', `${path}.cidr: ${parsed.error}`);
  const cidr = parsed.cidr;
  let ports: Set<number> | null = null;
  if (entry.ports !== undefined) {
    if (!Array.isArray(entry.ports) || entry.ports.length === 0) {
      throw new WaygateError('WG_CONFIG', `${path}.ports: expected a non-empty list of ports (omit it to allow every port)`);
    }
    ports = new Set();
    entry.ports.forEach((p, i) => {
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw new WaygateError('WG_CONFIG', `${path}.ports[${i}]: ${String(p)} is not a port (1..65535)`);
      ports!.add(p);
    });
  }
  // The network address is inside the range and the block is no wider than the range.
  const v4 = cidr.family === 4;
  const listsLoopback = isLoopback(cidr.network) && cidr.prefixLength >= (v4 ? 8 : 128);
  const listsLinkLocal = isLinkLocal(cidr.network) && cidr.prefixLength >= (v4 ? 16 : 10);
  const listsMetadata = isMetadataAddress(cidr.network) && hostBits(cidr) === 0;
  return { cidr, ports, listsLoopback, listsLinkLocal, listsMetadata };
}

function compileRoutes(routes: Readonly<Record<string, string>>): Map<string, { ip: string; port: number }> {
  const out = new Map<string, { ip: string; port: number }>();
  if (!routes || typeof routes !== 'object') throw new WaygateError('WG_CONFIG', 'destinations.routes: expected a map of host:port -> ip:port');
  for (const [from, to] of Object.entries(routes)) {
    const key = parseAuthority(from);
    if (!key || key.kind !== 'host') {
      throw new WaygateError('WG_CONFIG', `destinations.routes[${JSON.stringify(from)}]: the key must be a host:port authority (IP authorities are dialed as they are)`);
    }
    const target = typeof to === 'string' ? parseAuthority(to) : null;
    if (!target || target.kind !== 'ip') {
      throw new WaygateError('WG_CONFIG', `destinations.routes[${JSON.stringify(from)}]: ${JSON.stringify(to)} is not ip:port or [ipv6]:port`);
    }
    out.set(`${key.host}:${key.port}`, { ip: target.ip, port: target.port });
  }
  return out;
}

/** Every address of this host's interfaces, canonical (for self-call detection). */
function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      const ip = parseIp(a.address);
      if (ip) out.add(formatIp(ip));
    }
  }
  return out;
}

/**
 * The compiled destination rules: route lookup, allowed networks, special ranges and self-call
 * detection. Built once (configuration errors throw `WG_CONFIG` with the field path); checks are
 * allocation-free apart from parsing the address.
 */
export class DestinationPolicy {
  readonly #entries: CompiledEntry[];
  readonly #routes: Map<string, { ip: string; port: number }>;
  readonly #ownPorts = new Set<number>();
  readonly #localAddresses: Set<string>;

  constructor(opts: DestinationOptions, ownPorts: readonly number[] = []) {
    if (!opts || typeof opts !== 'object' || !Array.isArray(opts.allow)) {
      throw new WaygateError('WG_CONFIG', 'destinations.allow: expected a list of {cidr, ports?} (an empty list allows nothing)');
    }
    this.#entries = opts.allow.map((e, i) => compileEntry(e, `destinations.allow[${i}]`));
    this.#routes = compileRoutes(opts.routes ?? {});
    ownPorts.forEach((p) => this.addOwnPort(p));
    this.#localAddresses = localAddresses();
  }

  /** Registers a port the gateway itself listens on (dialing it on a local address is a self-call). */
  addOwnPort(port: number): void {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new WaygateError('WG_CONFIG', `ownPorts: ${String(port)} is not a port (1..65535)`);
    this.#ownPorts.add(port);
  }

  /** Resolves an authority to the address to dial (routes for `host:port`; no DNS). */
  resolve(target: Authority): ResolvedDestination {
    if (target.kind === 'ip') return { ip: target.ip, host: '', port: target.port, ...OUTSIDE_MESH };
    const route = this.#routes.get(`${target.host}:${target.port}`);
    return route ? { ip: route.ip, host: target.host, port: route.port, ...OUTSIDE_MESH } : { ip: '', host: target.host, port: target.port, ...OUTSIDE_MESH };
  }

  /** Whether a resolved destination may be dialed: `no_route` for a host without a route, else {@link check}. */
  checkResolved(d: ResolvedDestination): DestinationCheck {
    if (d.ip === '') return d.host !== '' ? 'no_route' : 'not_allowed';
    return this.check(d.ip, d.port);
  }

  /** Whether `ip:port` may be dialed. `self_call` wins over the allow-list (it is a loop, not a choice). */
  check(ipText: string, port: number): DestinationCheck {
    const ip = parseIp(ipText);
    if (!ip) return 'not_allowed';
    if (this.#ownPorts.has(port) && this.#isLocal(ip, ipText)) return 'self_call';
    if (isUnspecified(ip) || isMulticast(ip) || (ip.family === 4 && ip.words[0] === LIMITED_BROADCAST)) return 'not_allowed';
    const meta = isMetadataAddress(ip);
    const loop = isLoopback(ip);
    const link = isLinkLocal(ip);
    for (const e of this.#entries) {
      if (!cidrContains(e.cidr, ip)) continue;
      if (e.ports !== null && !e.ports.has(port)) continue;
      if (meta ? !e.listsMetadata : loop ? !e.listsLoopback : link ? !e.listsLinkLocal : false) continue;
      return 'ok';
    }
    return 'not_allowed';
  }

  #isLocal(ip: ParsedIp, text: string): boolean {
    return isLoopback(ip) || isUnspecified(ip) || this.#localAddresses.has(text) || this.#localAddresses.has(formatIp(ip));
  }
}
