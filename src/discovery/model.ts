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

/** `HBONE`: the workload is in the ambient mesh and its ztunnel takes HBONE on `tunnelPort`; `TCP`: plain. */
export type WorkloadProtocol = 'HBONE' | 'TCP';

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
  /** Whether it may be picked as an endpoint (Kubernetes: ready and serving). Default true. */
  readonly ready: boolean;
}

export interface MeshServicePort {
  /** The service port a client dials (the VIP's). */
  readonly port: number;
  /** The port on the endpoint. */
  readonly targetPort: number;
}

export interface MeshService {
  /** Lower-case FQDN, e.g. `echo.shop.svc.cluster.local`. */
  readonly hostname: string;
  readonly namespace: string;
  /** Canonical VIPs (empty for a headless service). */
  readonly vips: readonly string[];
  readonly ports: readonly MeshServicePort[];
  /** Its workloads, ready or not, in the order the source lists them. */
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
