/**
 * Resolution of a CONNECT's destination against one discovery snapshot (docs/design.md §6). Pure:
 * no I/O, no clock, no randomness (the balancer, balancer.ts, picks among what this returns), so
 * what the policy decides on, the service and its namespace, never depends on the endpoint picked.
 *
 * - a service VIP:port or hostname:port -> the service, the port entry (null when it has no such
 *   port) and the endpoints that may be picked: ready, with an address; for an IP authority, those
 *   with an address of its family when there are any (an IPv6 client of a dual-stack service stays
 *   on IPv6, as kube-proxy keeps a Service's families apart);
 * - a workload's own address -> that workload (the CONNECT's port is dialed as it is: ztunnel sends
 *   a waypoint pod IP:port authorities for workload-addressed traffic);
 * - anything else -> unknown.
 */
import { endpointTargetPort, type DiscoverySnapshot, type MeshService, type MeshServicePort, type MeshWorkload } from './model.ts';

/** What a CONNECT names, as the transport parsed it: exactly one of `ip` (canonical) and `host` is usually set. */
export interface ResolveTarget {
  readonly ip: string;
  readonly host: string;
  readonly port: number;
}

export type Resolution =
  | {
      readonly kind: 'service';
      readonly service: MeshService;
      /** The service port the CONNECT names; null when the service has none such. */
      readonly port: MeshServicePort | null;
      /** Endpoints that may be picked (ready, with an address; same family first for an IP authority). */
      readonly endpoints: readonly MeshWorkload[];
    }
  | { readonly kind: 'workload'; readonly workload: MeshWorkload }
  | { readonly kind: 'unknown' };

const UNKNOWN: Resolution = Object.freeze({ kind: 'unknown' });

/**
 * Resolves `target` against `snapshot`. A host is looked up as a service hostname (any case); an
 * address as a VIP, then as a workload's address. When both are set (a `host:port` authority with
 * a configured route, src/hbone/destination.ts), the hostname is tried first, then the address.
 */
export function resolveDestination(snapshot: DiscoverySnapshot, target: ResolveTarget): Resolution {
  if (target.host !== '') {
    const service = snapshot.serviceByHostname(target.host);
    if (service) return serviceResolution(service, target.port, 0);
  }
  if (target.ip !== '') {
    const service = snapshot.serviceByVip(target.ip);
    if (service) return serviceResolution(service, target.port, familyOf(target.ip));
    const workload = snapshot.workloadByIp(target.ip);
    if (workload) return Object.freeze({ kind: 'workload', workload });
  }
  return UNKNOWN;
}

function serviceResolution(service: MeshService, port: number, family: 0 | 4 | 6): Resolution {
  const p = service.ports.find((x) => x.port === port) ?? null;
  return Object.freeze({ kind: 'service', service, port: p, endpoints: pickable(service, p, family) });
}

interface Pickable {
  all: readonly MeshWorkload[];
  v4: readonly MeshWorkload[];
  v6: readonly MeshWorkload[];
}

/**
 * The pickable endpoints of each service, per family, computed once per service object: a snapshot
 * is immutable, so a service's lists never change, and a CONNECT costs a lookup, not a filter. A
 * port some endpoint does not serve (model.ts `targetPorts`: a Kubernetes named targetPort its pod
 * lacks) has lists of its own, without those endpoints.
 */
const PICKABLE = new WeakMap<MeshService | MeshServicePort, Pickable>();

function pickable(service: MeshService, port: MeshServicePort | null, family: 0 | 4 | 6): readonly MeshWorkload[] {
  let p = PICKABLE.get(service);
  if (!p) {
    p = pickableOf(service.endpoints.filter((w) => w.ready && w.ips.length > 0));
    PICKABLE.set(service, p);
    for (const sp of service.ports) {
      if (p.all.some((w) => endpointTargetPort(sp, w) === 0)) PICKABLE.set(sp, pickableOf(p.all.filter((w) => endpointTargetPort(sp, w) !== 0)));
    }
  }
  if (port !== null) p = PICKABLE.get(port) ?? p;
  if (family === 4 && p.v4.length > 0) return p.v4;
  if (family === 6 && p.v6.length > 0) return p.v6;
  return p.all;
}

function pickableOf(all: MeshWorkload[]): Pickable {
  const v4 = all.filter((w) => w.ips.some((a) => familyOf(a) === 4));
  const v6 = all.filter((w) => w.ips.some((a) => familyOf(a) === 6));
  return Object.freeze({ all: Object.freeze(all), v4: Object.freeze(v4), v6: Object.freeze(v6) });
}

function familyOf(ip: string): 4 | 6 {
  return ip.includes(':') ? 6 : 4;
}

/**
 * Which of `workload`'s addresses to dial: its first of `family` when it has one, else its first
 * (a dual-stack VIP reached over IPv6 with IPv4-only pods still reaches them). Undefined when it
 * has no address at all.
 */
export function endpointAddress(workload: MeshWorkload, family?: 4 | 6): string | undefined {
  if (family !== undefined) {
    for (const a of workload.ips) if (familyOf(a) === family) return a;
  }
  return workload.ips[0];
}

/** `ip:port`, `[v6]:port` or `host:port`, as an operator would type it. */
export function formatTarget(target: ResolveTarget): string {
  if (target.host !== '') return `${target.host}:${target.port}`;
  return target.ip.includes(':') ? `[${target.ip}]:${target.port}` : `${target.ip}:${target.port}`;
}

/**
 * The operator-facing `detail` of a 503 for a resolution no tunnel can follow, or null when one
 * can (a service port with a pickable endpoint, or a workload):
 *
 * - `service echo.shop.svc.cluster.local has no port 81 (ports: 80, 9090)`
 * - `service echo.shop.svc.cluster.local has no ready endpoint (2 not ready)` (or `(no endpoints)`,
 *   `(1 without an address)`, `(1 without port 80)`: its pod has no port of the targetPort's name)
 * - `10.96.0.99:80 is not a service or workload known to discovery (mesh-file /x/mesh.yaml, version 3)`
 *
 * `snapshot` names the source and version for the unknown case (null: none loaded yet).
 */
export function describeUnavailable(
  resolution: Resolution,
  target: ResolveTarget,
  snapshot: Pick<DiscoverySnapshot, 'source' | 'version'> | null,
): string | null {
  switch (resolution.kind) {
    case 'workload':
      return null;
    case 'unknown': {
      const where = snapshot ? `${snapshot.source}, version ${snapshot.version}` : 'no discovery snapshot loaded yet';
      return `${formatTarget(target)} is not a service or workload known to discovery (${where})`;
    }
    case 'service': {
      const s = resolution.service;
      if (resolution.port === null) {
        return `service ${s.hostname} has no port ${target.port} (ports: ${s.ports.map((p) => p.port).join(', ') || 'none'})`;
      }
      if (resolution.endpoints.length > 0) return null;
      const port = resolution.port;
      const notReady = s.endpoints.filter((w) => !w.ready).length;
      const noAddress = s.endpoints.filter((w) => w.ready && w.ips.length === 0).length;
      const noPort = s.endpoints.filter((w) => w.ready && w.ips.length > 0 && endpointTargetPort(port, w) === 0).length;
      const why = s.endpoints.length === 0
        ? 'no endpoints'
        : [
            notReady ? `${notReady} not ready` : '',
            noAddress ? `${noAddress} without an address` : '',
            noPort ? `${noPort} without port ${port.port}` : '',
          ].filter(Boolean).join(', ');
      return `service ${s.hostname} has no ready endpoint (${why})`;
    }
  }
}
