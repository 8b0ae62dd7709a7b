/**
 * Kubernetes objects -> discovery snapshot (docs/waypoint.md): the Services, EndpointSlices and
 * Pods of the fronted namespaces become the same frozen {@link DiscoverySnapshot} a mesh file gives
 * (src/discovery/snapshot.ts). Pure: no I/O, no clock; the same objects in any order give the same
 * snapshot and the same {@link kubeObjectsHash}. The watch (watch.ts, provider.ts) calls it with
 * what it holds after every change.
 *
 * Objects are read as the API server returns them (plain JSON) or as @kubernetes/client-node hands
 * them out (its model classes have the same field names); only strings, numbers, booleans and
 * arrays are read, never a date, so both work. Each object is first reduced to exactly what the
 * mapping reads (`project*`): the mapping works on that, and the hash is over that, so a change of
 * `resourceVersion`, `managedFields` or a status field the mapping ignores changes neither.
 *
 * Services (core/v1 Service):
 * - hostname `<name>.<namespace>.svc.<clusterDomain>`;
 * - VIPs `spec.clusterIPs` (dual-stack: one per family; `spec.clusterIP` on objects without it);
 *   `None` is a headless service: no VIP, reachable by hostname only. `type: ExternalName` is a DNS
 *   alias with no endpoints: skipped.
 * - ports: TCP only (HBONE carries TCP; a UDP or SCTP port is skipped); `targetPort` absent = the
 *   port; a number is that number; a name is resolved per endpoint (below), and the service-level
 *   `targetPort` is then 0, as istiod's workload API sends it.
 *
 * Endpoints (discovery.k8s.io/v1 EndpointSlice, label `kubernetes.io/service-name`; any number of
 * slices per service, `IPv4` and `IPv6`; `FQDN` slices are skipped, as istiod does):
 * - an endpoint whose `targetRef` is a Pod of the service's namespace is that pod, with the
 *   addresses this service's slices list for it (a dual-stack service lists the pod in one slice
 *   per family: it gets both); an address that is not the pod's (a stale slice, or a slice
 *   claiming a pod's identity for some other address) is skipped, and so is an endpoint whose pod
 *   is unknown (not watched yet), ended (`Succeeded`/`Failed`: its address may already be another
 *   pod's) or of another namespace (the policy decided on this service's namespace);
 * - an endpoint with no Pod behind it (a selector-less service's hand-made slices) has no known
 *   identity: no service account, so no SPIFFE ID to require of it. It becomes a `TCP` endpoint
 *   with an empty principal, reachable only where plaintext upstreams are allowed
 *   (upstream.allowPlaintext), and it is not indexed by address (nothing says the address is one
 *   workload's). This is what istiod does (pilot/pkg/serviceregistry/ambient/workloads.go
 *   `endpointSlicesBuilder`: no service account, no tunnel, a shared address);
 * - the target port for each service port: the slice's port of the same name (a slice's
 *   `ports[].name` is the Service port's name, `ports[].port` the number on the endpoint); where
 *   the slice has none, the Service's numeric targetPort, or for a named one the pod's container
 *   port of that name (its containers', then its sidecar containers'); a pod without one does not
 *   serve that port (istiod leaves the port out of that workload's port list too);
 * - which endpoints may be picked, from `conditions` (nil `ready` and `serving` mean true, nil
 *   `terminating` false: the EndpointSlice API,
 *   https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/#conditions): the
 *   `ready` ones; only when a service has none, its `serving` and `terminating` ones, as kube-proxy
 *   does (https://kubernetes.io/docs/reference/networking/virtual-ips/#traffic-to-terminating-endpoints):
 *   `ready` is never true for a terminating pod, which still finishes what it was sent but should
 *   get new connections only while nothing better exists. An endpoint listed twice (the
 *   EndpointSlice docs: an endpoint may briefly be in more than one slice) counts as ready when any
 *   copy is.
 *
 * Pods (core/v1 Pod): principal `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccountName>`,
 * addresses `status.podIPs` (else `status.podIP`), ready when its `Ready` condition is True and it
 * is not being deleted. Indexed by address (`workloadByIp`) unless it ended or uses the host's
 * network (its address is the node's, shared by everything on it: istiod marks it
 * `HOST_NETWORK`); two live pods claiming one address are both left out of the index. The protocol,
 * as istiod decides it (pilot/pkg/serviceregistry/ambient/workloads.go `setTunnelProtocol`, the
 * later rule winning):
 * - `security.istio.io/tlsMode: istio` (a sidecar) -> `LEGACY_ISTIO_MTLS` (src/hbone/route.ts
 *   refuses it unless plaintext is allowed);
 * - annotation `ambient.istio.io/redirection: enabled` (istio-cni captured it) -> `HBONE`;
 * - label `networking.istio.io/tunnel` listing `http` (a sidecar that takes HBONE itself,
 *   pilot/pkg/model/service.go `SupportsTunnel`) -> `HBONE`;
 * - anything else -> `TCP`.
 */
import { createHash } from 'node:crypto';
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import { canonicalIp } from '../../net/address.ts';
import { DEFAULT_TUNNEL_PORT, type DiscoverySnapshot, type MeshService, type MeshServicePort, type MeshWorkload, type WorkloadProtocol } from '../model.ts';
import { buildSnapshot } from '../snapshot.ts';

export interface KubeObjects {
  readonly services: readonly V1Service[];
  readonly endpointSlices: readonly V1EndpointSlice[];
  readonly pods: readonly V1Pod[];
}

export interface KubeMapOptions {
  /** Principals `spiffe://<trustDomain>/ns/<ns>/sa/<sa>`. */
  trustDomain: string;
  /** Hostnames `<svc>.<ns>.svc.<clusterDomain>`. */
  clusterDomain: string;
  /** The snapshot's version (the provider counts applied snapshots). */
  version: number;
  /** For operators, e.g. `kubernetes https://10.96.0.1:443 namespaces shop,payments`. */
  source: string;
}

export interface KubeMapResult {
  snapshot: DiscoverySnapshot;
  /** Things skipped, one line each, for the ops log: an endpoint whose pod is unknown, ... */
  skipped: string[];
}

/** The label that ties an EndpointSlice to its Service (discovery.k8s.io/v1). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const TLS_MODE_LABEL = 'security.istio.io/tlsMode';
const TUNNEL_LABEL = 'networking.istio.io/tunnel';
const REDIRECTION_ANNOTATION = 'ambient.istio.io/redirection';

// --- what the mapping reads of each object --------------------------------------------------

interface ServiceFacts {
  namespace: string;
  name: string;
  externalName: boolean;
  /** As written (canonicalised later, so a bad one is reported once, at mapping). */
  clusterIPs: string[];
  ports: { name: string; port: number; protocol: string; targetPort: number | string | null }[];
}

interface EndpointFacts {
  addresses: string[];
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** The Pod it names (`targetRef` of kind Pod), or null. */
  pod: { namespace: string; name: string; uid: string } | null;
}

interface SliceFacts {
  namespace: string;
  name: string;
  service: string;
  addressType: string;
  ports: { name: string; port: number | null; protocol: string }[];
  endpoints: EndpointFacts[];
}

interface PodFacts {
  namespace: string;
  name: string;
  uid: string;
  serviceAccount: string;
  ips: string[];
  ended: boolean;
  hostNetwork: boolean;
  ready: boolean;
  protocol: WorkloadProtocol;
  /** Named TCP container ports, name -> number, sorted by name. */
  namedPorts: [string, number][];
}

interface Facts {
  services: ServiceFacts[];
  slices: SliceFacts[];
  pods: PodFacts[];
}

function byKey<T extends { namespace: string; name: string }>(a: T, b: T): number {
  return cmp(a.namespace, b.namespace) || cmp(a.name, b.name);
}

/** Code-unit order, not locale order: the same on every machine. */
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function list<T>(v: readonly T[] | undefined | null): readonly T[] {
  return Array.isArray(v) ? v : [];
}

function projectService(s: V1Service): ServiceFacts {
  const spec = s.spec;
  const ips = list(spec?.clusterIPs).length > 0 ? [...list(spec?.clusterIPs)] : spec?.clusterIP ? [spec.clusterIP] : [];
  return {
    namespace: text(s.metadata?.namespace),
    name: text(s.metadata?.name),
    externalName: spec?.type === 'ExternalName',
    clusterIPs: ips.map(text),
    ports: list(spec?.ports).map((p) => ({
      name: text(p.name),
      port: p.port,
      protocol: p.protocol || 'TCP',
      targetPort: p.targetPort === undefined || p.targetPort === null ? null : p.targetPort,
    })),
  };
}

function projectSlice(s: V1EndpointSlice): SliceFacts | null {
  const service = s.metadata?.labels?.[SERVICE_NAME_LABEL];
  if (!service) return null; // not a Service's slice: an arbitrary set of addresses, nothing to route to
  const namespace = text(s.metadata?.namespace);
  return {
    namespace,
    name: text(s.metadata?.name),
    service,
    addressType: text(s.addressType),
    ports: list(s.ports)
      .map((p) => ({ name: text(p.name), port: typeof p.port === 'number' ? p.port : null, protocol: p.protocol || 'TCP' }))
      .sort((a, b) => cmp(a.name, b.name) || cmp(a.protocol, b.protocol)),
    endpoints: list(s.endpoints)
      .map((e): EndpointFacts => {
        const ready = e.conditions?.ready ?? true;
        const ref = e.targetRef;
        return {
          addresses: [...list(e.addresses)].map(text).sort(),
          ready,
          serving: e.conditions?.serving ?? true,
          terminating: e.conditions?.terminating ?? false,
          pod: ref && ref.kind === 'Pod' && ref.name ? { namespace: ref.namespace || namespace, name: ref.name, uid: text(ref.uid) } : null,
        };
      })
      .sort((a, b) => cmp(JSON.stringify(a), JSON.stringify(b))),
  };
}

/** Whether a comma-separated `networking.istio.io/tunnel` value lists `http` (pilot/pkg/model/service.go `SupportsTunnel`). */
function supportsHttpTunnel(value: string | undefined): boolean {
  return value !== undefined && value.split(',').includes('http');
}

function podProtocol(labels: Record<string, string>, annotations: Record<string, string>): WorkloadProtocol {
  let protocol: WorkloadProtocol = 'TCP';
  if (labels[TLS_MODE_LABEL] === 'istio') protocol = 'LEGACY_ISTIO_MTLS';
  if (annotations[REDIRECTION_ANNOTATION] === 'enabled') protocol = 'HBONE';
  if (supportsHttpTunnel(labels[TUNNEL_LABEL])) protocol = 'HBONE';
  return protocol;
}

function projectPod(p: V1Pod): PodFacts {
  const spec = p.spec;
  const status = p.status;
  const podIPs = list(status?.podIPs).map((x) => text(x.ip)).filter(Boolean);
  const ips = podIPs.length > 0 ? podIPs : status?.podIP ? [status.podIP] : [];
  const readyCondition = list(status?.conditions).some((c) => c.type === 'Ready' && c.status === 'True');
  const deleting = p.metadata?.deletionTimestamp !== undefined && p.metadata?.deletionTimestamp !== null;
  // Where Kubernetes finds a named port (pkg/api/v1/pod FindPort): the containers, then the
  // sidecar containers (init containers with restartPolicy Always); the first of that name wins.
  const named = new Map<string, number>();
  const sidecars = list(spec?.initContainers).filter((c) => c.restartPolicy === 'Always');
  for (const c of [...list(spec?.containers), ...sidecars]) {
    for (const cp of list(c.ports)) {
      if (cp.name && (cp.protocol || 'TCP') === 'TCP' && !named.has(cp.name)) named.set(cp.name, cp.containerPort);
    }
  }
  return {
    namespace: text(p.metadata?.namespace),
    name: text(p.metadata?.name),
    uid: text(p.metadata?.uid),
    // `serviceAccount` is the deprecated alias; the API server fills serviceAccountName (default "default").
    serviceAccount: spec?.serviceAccountName || spec?.serviceAccount || 'default',
    ips,
    ended: status?.phase === 'Succeeded' || status?.phase === 'Failed',
    hostNetwork: spec?.hostNetwork === true,
    ready: readyCondition && !deleting,
    protocol: podProtocol(p.metadata?.labels ?? {}, p.metadata?.annotations ?? {}),
    namedPorts: [...named].sort((a, b) => cmp(a[0], b[0])),
  };
}

function project(objects: KubeObjects): Facts {
  return {
    services: objects.services.map(projectService).sort(byKey),
    slices: objects.endpointSlices.map(projectSlice).filter((s): s is SliceFacts => s !== null).sort(byKey),
    pods: objects.pods.map(projectPod).sort(byKey),
  };
}

/**
 * Content hash over exactly what the mapping reads (stable under object order and
 * resourceVersion changes): sha256 of the projected objects, sorted, with the trust and cluster
 * domains.
 */
export function kubeObjectsHash(objects: KubeObjects, opts: Pick<KubeMapOptions, 'trustDomain' | 'clusterDomain'>): string {
  return kubeProjection(objects, opts).hash;
}

/**
 * The objects reduced to what the mapping reads, with their content hash, computed once: the
 * provider compares the hash with the snapshot in force and maps only when it moved, from the
 * same projection (no second reduction of every object).
 */
export interface KubeProjection {
  readonly hash: string;
  map(opts: Pick<KubeMapOptions, 'version' | 'source'>): KubeMapResult;
}

export function kubeProjection(objects: KubeObjects, opts: Pick<KubeMapOptions, 'trustDomain' | 'clusterDomain'>): KubeProjection {
  const facts = project(objects);
  const hash = hashFacts(facts, opts);
  return { hash, map: (m) => mapFacts(facts, hash, { ...opts, ...m }) };
}

function hashFacts(facts: Facts, opts: Pick<KubeMapOptions, 'trustDomain' | 'clusterDomain'>): string {
  return createHash('sha256')
    .update(JSON.stringify({ trustDomain: opts.trustDomain, clusterDomain: opts.clusterDomain, ...facts }))
    .digest('hex');
}

// --- the mapping ------------------------------------------------------------------------------

/** One endpoint of a service while its slices are merged: a pod, or an address with nothing behind it. */
interface EndpointAcc {
  pod: PodFacts | null;
  name: string;
  namespace: string;
  ips: Set<string>;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** Service port name -> the number the first slice listing it gives. */
  slicePorts: Map<string, number>;
}

export function kubeSnapshot(objects: KubeObjects, opts: KubeMapOptions): KubeMapResult {
  return kubeProjection(objects, opts).map(opts);
}

function mapFacts(facts: Facts, hash: string, opts: KubeMapOptions): KubeMapResult {
  const skipped: string[] = [];
  const principal = (ns: string, sa: string): string => `spiffe://${opts.trustDomain}/ns/${ns}/sa/${sa}`;

  // Pods: a workload each; the live ones with their own addresses are indexed by address.
  const podByKey = new Map<string, { facts: PodFacts; workload: MeshWorkload }>();
  const owners = new Map<string, string[]>();
  for (const p of facts.pods) {
    const ips: string[] = [];
    for (const a of p.ips) {
      const c = canonicalIp(a);
      if (c === null) skipped.push(`pod ${p.namespace}/${p.name}: "${a}" is not an IP address; address left out`);
      else ips.push(c);
    }
    const workload: MeshWorkload = Object.freeze({
      name: p.name,
      namespace: p.namespace,
      ips: Object.freeze(ips),
      serviceAccount: p.serviceAccount,
      principal: principal(p.namespace, p.serviceAccount),
      protocol: p.protocol,
      tunnelPort: DEFAULT_TUNNEL_PORT,
      ready: p.ready,
    });
    podByKey.set(`${p.namespace}/${p.name}`, { facts: p, workload });
    if (p.ended || p.hostNetwork) continue;
    for (const a of ips) {
      const claimed = owners.get(a);
      if (claimed) claimed.push(`${p.namespace}/${p.name}`);
      else owners.set(a, [`${p.namespace}/${p.name}`]);
    }
  }
  for (const [a, keys] of owners) {
    if (keys.length > 1) skipped.push(`address ${a} is claimed by pods ${keys.join(', ')}; left out of the address index until one is gone`);
  }
  // The address index: live pods off the host network, with the addresses no other live pod claims.
  const workloads: MeshWorkload[] = [];
  for (const { facts: p, workload: w } of podByKey.values()) {
    if (p.ended || p.hostNetwork) continue;
    const own = w.ips.filter((a) => owners.get(a)!.length === 1);
    if (own.length === w.ips.length && own.length > 0) workloads.push(w);
    else if (own.length > 0) workloads.push(Object.freeze({ ...w, ips: Object.freeze(own) }));
  }

  const slicesByService = new Map<string, SliceFacts[]>();
  for (const s of facts.slices) {
    const key = `${s.namespace}/${s.service}`;
    const those = slicesByService.get(key);
    if (those) those.push(s);
    else slicesByService.set(key, [s]);
  }

  const takenVips = new Map<string, string>();
  const services: MeshService[] = [];
  for (const svc of facts.services) {
    const key = `${svc.namespace}/${svc.name}`;
    if (svc.externalName) {
      skipped.push(`service ${key}: type ExternalName is a DNS alias with no endpoints; not routed`);
      continue;
    }
    const hostname = `${svc.name}.${svc.namespace}.svc.${opts.clusterDomain}`.toLowerCase();
    const vips: string[] = [];
    for (const raw of svc.clusterIPs) {
      if (raw === 'None' || raw === '') continue; // headless
      const c = canonicalIp(raw);
      if (c === null) skipped.push(`service ${key}: cluster IP "${raw}" is not an IP address; left out`);
      else if (takenVips.has(c)) skipped.push(`service ${key}: cluster IP ${c} is already service ${takenVips.get(c)}'s; left out`);
      else if (owners.has(c)) skipped.push(`service ${key}: cluster IP ${c} is also pod ${owners.get(c)!.join(', ')}'s address; left out`);
      else {
        takenVips.set(c, key);
        vips.push(c);
      }
    }
    const ports: (MeshServicePort & { name: string; named: string | null })[] = [];
    for (const p of svc.ports) {
      if (p.protocol !== 'TCP') {
        skipped.push(`service ${key}: ${p.protocol} port ${p.port} is not routed (HBONE tunnels carry TCP)`);
        continue;
      }
      const named = typeof p.targetPort === 'string' ? p.targetPort : null;
      const targetPort = named !== null ? 0 : typeof p.targetPort === 'number' && p.targetPort > 0 ? p.targetPort : p.port;
      ports.push({ port: p.port, targetPort, name: p.name, named });
    }

    // Merge the service's slices into one entry per pod (both families) or per pod-less address.
    const acc = new Map<string, EndpointAcc>();
    for (const slice of slicesByService.get(key) ?? []) {
      if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') {
        skipped.push(`EndpointSlice ${slice.namespace}/${slice.name}: address type ${slice.addressType || '(none)'} is not routed (IPv4 and IPv6 are)`);
        continue;
      }
      const slicePorts = new Map<string, number>();
      for (const sp of slice.ports) if (sp.protocol === 'TCP' && sp.port !== null && !slicePorts.has(sp.name)) slicePorts.set(sp.name, sp.port);
      for (const e of slice.endpoints) {
        const addresses: string[] = [];
        for (const a of e.addresses) {
          const c = canonicalIp(a);
          if (c === null) skipped.push(`EndpointSlice ${slice.namespace}/${slice.name}: "${a}" is not an IP address; left out`);
          else addresses.push(c);
        }
        if (e.pod) {
          const podKey = `${e.pod.namespace}/${e.pod.name}`;
          const pod = podByKey.get(podKey);
          const at = `service ${key}: endpoint ${addresses.join(', ')} (EndpointSlice ${slice.name})`;
          if (e.pod.namespace !== svc.namespace) {
            // The EndpointSlice controller names pods of the service's namespace only; a hand-made
            // slice naming another namespace's pod would lend that pod's identity to this service,
            // whose namespace is what the policy decided on.
            skipped.push(`${at} names pod ${podKey} of another namespace; skipped`);
            continue;
          }
          if (!pod || (e.pod.uid !== '' && pod.facts.uid !== '' && e.pod.uid !== pod.facts.uid)) {
            skipped.push(`${at} names pod ${podKey}, which is not known${pod ? ' (a pod of that name with another uid is)' : ''}; skipped until it is`);
            continue;
          }
          if (pod.facts.ended) {
            skipped.push(`${at}: pod ${podKey} has ended; skipped`);
            continue;
          }
          const own = addresses.filter((a) => pod.workload.ips.includes(a));
          for (const a of addresses) if (!own.includes(a)) skipped.push(`${at}: ${a} is not an address of pod ${podKey}; left out`);
          if (own.length === 0) continue;
          merge(acc, `pod ${podKey}`, { pod: pod.facts, name: pod.facts.name, namespace: pod.facts.namespace }, own, e, slicePorts);
        } else {
          for (const a of addresses) merge(acc, `address ${a}`, { pod: null, name: a, namespace: svc.namespace }, [a], e, slicePorts);
        }
      }
    }

    // Which endpoints may be picked: the ready ones, else the serving terminating ones (kube-proxy).
    const entries = [...acc.values()];
    const anyReady = entries.some((e) => e.ready);
    const endpoints: MeshWorkload[] = [];
    for (const e of entries.sort((a, b) => cmp(a.namespace, b.namespace) || cmp(a.name, b.name))) {
      const pickable = anyReady ? e.ready : e.serving && e.terminating;
      const targetPorts = new Map<number, number>();
      for (const p of ports) {
        const target = endpointPort(p, e);
        if (target === 0) skipped.push(`service ${key}: endpoint ${e.pod ? `pod ${e.namespace}/${e.name}` : e.name} has no port "${p.named ?? p.name}" for port ${p.port}; it does not serve that port`);
        if (target !== p.targetPort) targetPorts.set(p.port, target);
      }
      const base = e.pod ? podByKey.get(`${e.namespace}/${e.name}`)!.workload : null;
      const ips = base ? base.ips.filter((a) => e.ips.has(a)) : [...e.ips];
      // The pod's own workload object where this service sees it as it is (the common case).
      if (base && ips.length === base.ips.length && pickable === base.ready && targetPorts.size === 0) {
        endpoints.push(base);
        continue;
      }
      const view: MeshWorkload = {
        name: e.name,
        namespace: e.namespace,
        ips: Object.freeze(ips),
        serviceAccount: base?.serviceAccount ?? '',
        principal: base?.principal ?? '',
        protocol: base?.protocol ?? 'TCP',
        tunnelPort: DEFAULT_TUNNEL_PORT,
        ready: pickable,
        ...(targetPorts.size > 0 ? { targetPorts } : {}),
      };
      endpoints.push(Object.freeze(view));
    }
    services.push(Object.freeze({
      hostname,
      namespace: svc.namespace,
      vips: Object.freeze(vips),
      ports: Object.freeze(ports.map((p): MeshServicePort => Object.freeze({ port: p.port, targetPort: p.targetPort }))),
      endpoints: Object.freeze(endpoints),
    }));
  }

  const snapshot = buildSnapshot({ version: opts.version, hash, source: opts.source, services, workloads });
  return { snapshot, skipped };
}

function merge(
  acc: Map<string, EndpointAcc>,
  key: string,
  who: Pick<EndpointAcc, 'pod' | 'name' | 'namespace'>,
  ips: string[],
  e: EndpointFacts,
  slicePorts: Map<string, number>,
): void {
  let a = acc.get(key);
  if (!a) {
    a = { ...who, ips: new Set(), ready: false, serving: false, terminating: false, slicePorts: new Map() };
    acc.set(key, a);
  }
  for (const ip of ips) a.ips.add(ip);
  a.ready ||= e.ready;
  a.serving ||= e.serving;
  a.terminating ||= e.terminating;
  for (const [name, port] of slicePorts) if (!a.slicePorts.has(name)) a.slicePorts.set(name, port);
}

/**
 * The port on endpoint `e` for a service port: its slice's port of the same name; else the
 * Service's numeric targetPort (for a pod) or, for a named one, the pod's container port of that
 * name; 0 when none (the endpoint does not serve that port).
 */
function endpointPort(p: { port: number; targetPort: number; name: string; named: string | null }, e: EndpointAcc): number {
  const fromSlice = e.slicePorts.get(p.name);
  if (fromSlice !== undefined) return fromSlice;
  if (!e.pod) return 0;
  if (p.named === null) return p.targetPort;
  return e.pod.namedPorts.find(([n]) => n === p.named)?.[1] ?? 0;
}
