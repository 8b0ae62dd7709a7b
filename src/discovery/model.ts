/**
 * What discovery knows about the mesh (docs/design.md §6): services (hostname, VIPs, ports with
 * their target ports, endpoints) and workloads (addresses, identity, the protocol they speak). A
 * provider (the mesh file, mesh-file.ts; the Kubernetes API later) builds one immutable
 * {@link DiscoverySnapshot} per change, and the gateway swaps it in atomically, as it swaps policy
 * snapshots: a CONNECT is resolved against exactly one snapshot.
 *
 * Everything here is plain data, frozen; lookups are by canonical address text (src/net/address.ts
 * `formatIp`) and lower-case hostname.
 */

/**
 * What the workload accepts, as istiod's workload API names it (`TunnelProtocol`):
 * - `HBONE`: in the ambient mesh (or a sidecar that takes HBONE natively); its ztunnel takes HBONE
 *   on `tunnelPort`;
 * - `TCP`: plain TCP, no identity;
 * - `LEGACY_ISTIO_MTLS`: an Istio sidecar that takes only Istio's older mTLS (TLS with Istio's ALPN
 *   values, no HBONE). waygate does not originate it: src/hbone/route.ts refuses such a workload
 *   unless plaintext upstreams are allowed, and then sends plain TCP (a sidecar in PERMISSIVE mode
 *   takes it; STRICT PeerAuthentication refuses it).
 */
export type WorkloadProtocol = 'HBONE' | 'TCP' | 'LEGACY_ISTIO_MTLS';

/** Where Istio's ztunnel accepts HBONE. */
export const DEFAULT_TUNNEL_PORT = 15008;

export interface MeshWorkload {
  readonly name: string;
  readonly namespace: string;
  /** Canonical addresses (one per family for dual-stack pods). */
  readonly ips: readonly string[];
  readonly serviceAccount: string;
  /** `spiffe://<trust domain>/ns/<namespace>/sa/<serviceAccount>`: what its ztunnel must present. */
  readonly principal: string;
  readonly protocol: WorkloadProtocol;
  /** Where its ztunnel accepts HBONE; default {@link DEFAULT_TUNNEL_PORT}. */
  readonly tunnelPort: number;
  /**
   * Whether it may be picked as an endpoint. Default true. Kubernetes (kubernetes/map.ts): the
   * EndpointSlice says ready, or, in a service with no ready endpoint, serving while terminating.
   */
  readonly ready: boolean;
  /**
   * As one service's endpoint: service port -> the port on this endpoint, where it is not that
   * service port's `targetPort` (Kubernetes resolves a named targetPort per pod). 0: this endpoint
   * does not serve that port (its pod has no port of that name). Absent: every port's `targetPort`.
   * Read it through {@link endpointTargetPort}.
   */
  readonly targetPorts?: ReadonlyMap<number, number>;
}

export interface MeshServicePort {
  /** The service port a client dials (the VIP's). */
  readonly port: number;
  /**
   * The port on the endpoint; 0 when it is known per endpoint only: a Kubernetes named targetPort,
   * which each pod resolves by its own container ports (each endpoint's `targetPorts` says), as
   * istiod's workload API sends it (a Service's named target port is 0; each workload's port list
   * carries the number, or leaves the port out when the pod has none of that name).
   */
  readonly targetPort: number;
}

/** The port a tunnel to `endpoint` for service port `port` goes to; 0 when that endpoint does not serve it. */
export function endpointTargetPort(port: MeshServicePort, endpoint: MeshWorkload): number {
  return endpoint.targetPorts?.get(port.port) ?? port.targetPort;
}

export interface MeshService {
  /** Lower-case FQDN, e.g. `echo.shop.svc.cluster.local`. */
  readonly hostname: string;
  readonly namespace: string;
  /** Canonical VIPs (empty for a headless service). */
  readonly vips: readonly string[];
  readonly ports: readonly MeshServicePort[];
  /**
   * Its workloads, ready or not, in the order the source lists them. An endpoint may be a view of a
   * workload of {@link DiscoverySnapshot.workloads} with this service's readiness, addresses and
   * target ports (Kubernetes: what this service's EndpointSlices say of the pod), or, for an
   * endpoint with no pod behind it, a workload listed nowhere else.
   */
  readonly endpoints: readonly MeshWorkload[];
}

/** Version and content hash of a snapshot, as records and `/debug` show them. */
export interface DiscoverySnapshotInfo {
  readonly version: number;
  readonly hash: string;
}

/** One immutable view of the mesh. */
export interface DiscoverySnapshot extends DiscoverySnapshotInfo {
  /** Where it came from, for operators: `mesh-file /etc/waygate/mesh.yaml`. */
  readonly source: string;
  readonly services: readonly MeshService[];
  readonly workloads: readonly MeshWorkload[];
  /** The service owning a VIP (canonical text), if any. */
  serviceByVip(ip: string): MeshService | undefined;
  /** The service with this hostname (matched case-insensitively), if any. */
  serviceByHostname(host: string): MeshService | undefined;
  /** The workload owning an address (canonical text), if any. */
  workloadByIp(ip: string): MeshWorkload | undefined;
}
