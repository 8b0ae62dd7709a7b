/**
 * Where a CONNECT leads (docs/design.md §6, docs/waypoint.md): the destination the policy decides
 * on, and after an allow, the address the tunnel is sent to and how.
 *
 * Without discovery the `:authority` (or its configured route) is dialed over the configured
 * connector, as before (destination.ts). With a discovery source (src/discovery/), in two steps so
 * that no verdict depends on the endpoint the balancer picks:
 *
 *   resolve()  phase 1, before the policy: a service VIP:port or hostname:port -> the service
 *              (`destination.service`, `.namespace`); a workload's own address -> that workload
 *              (`.workload`, `.principal` too); anything else is unknown to the mesh.
 *   choose()   phase 2, after the policy allowed: one ready endpoint at its targetPort for the port
 *              (the balancer's pick), the allowed networks checked on the address actually
 *              dialed, and the protocol: HBONE to the pod's ztunnel, or plain TCP only where the
 *              config allows plaintext.
 *
 * An unknown destination is refused (503 with a `detail`) unless direct dials are allowed: a
 * discovery source that lags must not let a tunnel bypass every rule on `destination.namespace`
 * and leave the mesh's mTLS (docs/waypoint.md "Unknown destinations").
 */
import { formatHostPort } from '../config/address.ts';
import type { UpstreamRecord } from '../audit/record.ts';
import type { EndpointBalancer } from '../discovery/balancer.ts';
import { endpointTargetPort, type DiscoverySnapshot, type MeshService, type MeshServicePort, type MeshWorkload } from '../discovery/model.ts';
import { describeUnavailable, endpointAddress, formatTarget, resolveDestination, type Resolution } from '../discovery/resolve.ts';
import { WaygateError } from '../errors.ts';
import type { DecisionContext } from '../policy/context.ts';
import type { UpstreamEndpoint } from '../upstream/connector.ts';
import type { Authority } from './connect-request.ts';
import { OUTSIDE_MESH, type DestinationCheck, type DestinationPolicy, type ResolvedDestination } from './destination.ts';

/** The discovery side of the server's options. */
export interface DiscoveryRouting {
  /** The snapshot in force, read for every CONNECT; null before the first load (every destination unknown). */
  snapshot: () => DiscoverySnapshot | null;
  /** Dial destinations discovery does not know as their `:authority`, over plain TCP. */
  allowDirect: boolean;
  /** Plain TCP to workloads that do not speak HBONE (`protocol: TCP`). */
  allowPlaintext: boolean;
  balancer: EndpointBalancer;
}

/** How phase 1 found the destination. */
export type Route =
  /** Dial the destination's own address (no discovery, or an unknown one with direct dials allowed). */
  | { readonly kind: 'direct'; readonly viaDiscovery: boolean }
  | { readonly kind: 'service'; readonly service: MeshService; readonly port: MeshServicePort | null; readonly endpoints: readonly MeshWorkload[]; readonly family: 4 | 6 | 0 }
  | { readonly kind: 'workload'; readonly workload: MeshWorkload; readonly ip: string }
  | { readonly kind: 'unknown'; readonly detail: string };

/** Phase 1's result: what the policy sees, and how the tunnel would be carried. */
export interface Routed {
  readonly destination: ResolvedDestination;
  readonly route: Route;
}

/** Phase 2's result. */
export type Choice =
  | {
      readonly kind: 'dial';
      readonly ip: string;
      readonly port: number;
      /** The endpoint for the connector (null for a direct dial). */
      readonly endpoint: UpstreamEndpoint | null;
      /** The decision record's `upstream` before the dial (null without discovery). */
      readonly record: UpstreamRecord | null;
      /** Returns the balancer's slot (idempotent); a no-op without discovery. */
      readonly release: () => void;
    }
  /**
   * Not dialed: `not_allowed` (outside the allowed networks: the deny status), `self_call`,
   * `no_route`, `unavailable` (503 with `detail`).
   */
  | { readonly kind: 'refused'; readonly check: Exclude<DestinationCheck, 'ok'> | 'unavailable'; readonly detail: string; readonly record: UpstreamRecord | null };

const NOOP = (): void => {};

export class Router {
  readonly #destinations: DestinationPolicy;
  readonly #discovery: DiscoveryRouting | null;

  constructor(destinations: DestinationPolicy, discovery: DiscoveryRouting | null) {
    if (discovery && discovery.allowDirect && !discovery.allowPlaintext) {
      throw new WaygateError('WG_CONFIG', 'discovery.allowDirect: direct dials are plain TCP; set upstream.allowPlaintext too');
    }
    this.#destinations = destinations;
    this.#discovery = discovery;
  }

  /** Whether a discovery source decides where tunnels go. */
  get discovery(): boolean {
    return this.#discovery !== null;
  }

  /** Phase 1: the destination as the policy sees it, and its route. */
  resolve(target: Authority): Routed {
    const destination = this.#destinations.resolve(target);
    const d = this.#discovery;
    if (!d) return { destination, route: DIRECT };
    const snapshot = d.snapshot();
    const r = snapshot ? resolveDestination(snapshot, destination) : ({ kind: 'unknown' } as const);
    switch (r.kind) {
      case 'service': {
        const family = destination.ip === '' ? 0 : destination.ip.includes(':') ? 6 : 4;
        return {
          destination: { ...destination, ...meshFacts(r) },
          route: { kind: 'service', service: r.service, port: r.port, endpoints: r.endpoints, family },
        };
      }
      case 'workload':
        return {
          destination: { ...destination, ...meshFacts(r) },
          route: { kind: 'workload', workload: r.workload, ip: destination.ip },
        };
      default: {
        if (d.allowDirect) return { destination, route: DIRECT_UNKNOWN };
        const detail = describeUnavailable(r, destination, snapshot) ?? `${formatTarget(destination)} is unknown to discovery`;
        return {
          destination: { ...destination, ...OUTSIDE_MESH },
          route: { kind: 'unknown', detail: `${detail}; direct dials are off (discovery.allowDirect)` },
        };
      }
    }
  }

  /** Phase 2, after the policy allowed: where to dial, or why not. */
  choose(routed: Routed): Choice {
    const { destination, route } = routed;
    switch (route.kind) {
      case 'direct': {
        const check = this.#destinations.checkResolved(destination);
        const record = route.viaDiscovery ? directRecord(destination) : null;
        if (check !== 'ok') return { kind: 'refused', check, detail: directDetail(check, destination), record };
        return { kind: 'dial', ip: destination.ip, port: destination.port, endpoint: null, record, release: NOOP };
      }
      case 'unknown':
        return { kind: 'refused', check: 'unavailable', detail: route.detail, record: null };
      case 'service':
        return this.#chooseEndpoint(route.service, route.port, route.endpoints, route.family, destination);
      case 'workload':
        return this.#dialWorkload(route.workload, route.ip, destination.port, '', null);
    }
  }

  #chooseEndpoint(service: MeshService, port: MeshServicePort | null, endpoints: readonly MeshWorkload[], fam: 4 | 6 | 0, destination: ResolvedDestination): Choice {
    if (port === null || endpoints.length === 0) {
      // Only a refusal builds its detail: the path of every allowed CONNECT allocates nothing here.
      const detail = describeUnavailable({ kind: 'service', service, port, endpoints }, destination, null) ?? '';
      return { kind: 'refused', check: 'unavailable', detail, record: null };
    }
    const balancer = this.#discovery!.balancer;
    const w = balancer.pick(endpoints);
    const ip = endpointAddress(w, fam === 0 ? undefined : fam);
    if (ip === undefined) {
      return { kind: 'refused', check: 'unavailable', detail: `endpoint ${w.namespace}/${w.name} of ${service.hostname} has no address`, record: null };
    }
    // resolve.ts offers only endpoints that serve this port, so the target port is never 0 here.
    return this.#dialWorkload(w, ip, endpointTargetPort(port, w), service.hostname, balancer);
  }

  #dialWorkload(w: MeshWorkload, ip: string, port: number, service: string, balancer: EndpointBalancer | null): Choice {
    const protocol = w.protocol === 'HBONE' ? 'hbone' : 'tcp';
    const record: UpstreamRecord = {
      service,
      workload: `${w.namespace}/${w.name}`,
      address: formatHostPort(ip, port),
      protocol,
      principal: '',
      reused: false,
      connectMs: 0,
    };
    // The allowed networks apply to the address the tunnel actually reaches (docs/waypoint.md).
    const check = this.#destinations.check(ip, port);
    if (check !== 'ok') return { kind: 'refused', check, detail: directDetail(check, { ip, port, host: '' }), record };
    if (protocol === 'tcp' && !this.#discovery!.allowPlaintext) {
      // An Istio sidecar that takes only Istio's older mTLS: waygate does not originate it, so the
      // only way there is plain TCP, which its PERMISSIVE mode takes (STRICT refuses it).
      const detail = w.protocol === 'LEGACY_ISTIO_MTLS'
        ? `workload ${w.namespace}/${w.name} is an Istio sidecar that takes only Istio mTLS, not HBONE (security.istio.io/tlsMode: istio without networking.istio.io/tunnel: http); waygate does not originate Istio sidecar mTLS, and plaintext upstreams are off (upstream.allowPlaintext)`
        : `workload ${w.namespace}/${w.name} speaks plain TCP (protocol: TCP) and plaintext upstreams are off (upstream.allowPlaintext)`;
      return { kind: 'refused', check: 'unavailable', detail, record };
    }
    const release = balancer ? balancer.acquire(w) : NOOP;
    const endpoint: UpstreamEndpoint = {
      workload: w.name,
      namespace: w.namespace,
      principal: w.principal,
      protocol: protocol === 'hbone' ? 'HBONE' : 'TCP',
      tunnelPort: w.tunnelPort,
      service,
    };
    return { kind: 'dial', ip, port, endpoint, record, release };
  }
}

/** What discovery contributes to `destination.*`: service-level for a service, workload-level for a workload address. */
export function meshFacts(r: Resolution): MeshFacts {
  switch (r.kind) {
    case 'service':
      return { service: r.service.hostname, namespace: r.service.namespace, workload: '', principal: '' };
    case 'workload':
      return { service: '', namespace: r.workload.namespace, workload: r.workload.name, principal: r.workload.principal };
    default:
      return OUTSIDE_MESH;
  }
}

export type MeshFacts = Pick<ResolvedDestination, 'service' | 'namespace' | 'workload' | 'principal'>;

/**
 * A live tunnel's decision context as the discovery snapshot `snapshot` now sees its destination:
 * the same object when its mesh facts did not change (the re-check then decides as before, a
 * decision-cache hit), else a copy with the new facts. After a discovery swap every live tunnel is
 * re-decided with it (src/gateway/runtime.ts): a VIP that moved to another namespace, or a workload
 * address now owned by another service account, must not keep a tunnel the policy no longer allows.
 */
export function withMeshFacts(ctx: DecisionContext, snapshot: DiscoverySnapshot): DecisionContext {
  const d = ctx.destination;
  const f = meshFacts(resolveDestination(snapshot, d));
  if (f.service === d.service && f.namespace === d.namespace && f.workload === d.workload && f.principal === d.principal) return ctx;
  return { ...ctx, destination: { ...d, ...f } };
}

const DIRECT: Route = Object.freeze({ kind: 'direct', viaDiscovery: false });
const DIRECT_UNKNOWN: Route = Object.freeze({ kind: 'direct', viaDiscovery: true });

function directRecord(d: ResolvedDestination): UpstreamRecord {
  return { service: '', workload: '', address: d.ip === '' ? `${d.host}:${d.port}` : formatHostPort(d.ip, d.port), protocol: 'tcp', principal: '', reused: false, connectMs: 0 };
}

function directDetail(check: DestinationCheck, d: { ip: string; host: string; port: number }): string {
  const at = d.ip === '' ? `${d.host}:${d.port}` : formatHostPort(d.ip, d.port);
  switch (check) {
    case 'no_route':
      return `${at}: no route for this host (destinations.routes)`;
    case 'self_call':
      return `${at} is the gateway itself`;
    case 'not_allowed':
      return `${at} is outside the allowed destinations (destinations.allow)`;
    default:
      return '';
  }
}
