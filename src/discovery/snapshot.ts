/**
 * The one way a provider turns its services and workloads into a {@link DiscoverySnapshot}: frozen,
 * with its indexes by canonical address (src/net/address.ts `formatIp`) and by lower-case hostname.
 * The mesh file (mesh-file.ts) and the Kubernetes mapping (kubernetes/map.ts) both build theirs here,
 * so lookups behave the same whatever the source.
 *
 * The caller has already checked what its source guarantees (unique hostnames, VIPs and workload
 * addresses): a later entry for the same key replaces an earlier one in the index.
 */
import { canonicalIp } from '../net/address.ts';
import type { DiscoverySnapshot, MeshService, MeshWorkload } from './model.ts';

export interface SnapshotParts {
  readonly version: number;
  readonly hash: string;
  /** Where it came from, for operators: `mesh-file /etc/waygate/mesh.yaml`. */
  readonly source: string;
  readonly services: MeshService[];
  /** The workloads indexed by address (`workloadByIp`). */
  readonly workloads: MeshWorkload[];
}

/** The frozen snapshot with its indexes (by canonical address, by lower-case hostname). */
export function buildSnapshot(parts: SnapshotParts): DiscoverySnapshot {
  const byHostname = new Map<string, MeshService>();
  const byVip = new Map<string, MeshService>();
  for (const s of parts.services) {
    byHostname.set(s.hostname, s);
    for (const v of s.vips) byVip.set(v, s);
  }
  const byIp = new Map<string, MeshWorkload>();
  for (const w of parts.workloads) for (const a of w.ips) byIp.set(a, w);
  return Object.freeze({
    version: parts.version,
    hash: parts.hash,
    source: parts.source,
    services: Object.freeze(parts.services),
    workloads: Object.freeze(parts.workloads),
    // Callers pass canonical text (the CONNECT's address, parsed once); another spelling is
    // canonicalised on a miss rather than missed.
    serviceByVip: (addr: string) => byVip.get(addr) ?? byVip.get(canonicalIp(addr) ?? ''),
    serviceByHostname: (host: string) => byHostname.get(normalHost(host)),
    workloadByIp: (addr: string) => byIp.get(addr) ?? byIp.get(canonicalIp(addr) ?? ''),
  });
}

/** Lower case, without the root label's trailing dot (`echo.shop.svc.cluster.local.`). */
export function normalHost(host: string): string {
  const lower = host.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}
