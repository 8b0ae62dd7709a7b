/**
 * The mesh file (docs/design.md §6): one `kind: Mesh` YAML document listing services and workloads,
 * for tests and for meshes without a Kubernetes API. Strict like the config and the policies,
 * through the same walker (src/config/yaml-walk.ts): an unknown field, a wrong type, a duplicate,
 * an endpoint naming no workload or an address that is not one is an error at `file:line:col` with
 * its field path (code `WG_MESH`), every problem in one pass, and nothing of the file is used.
 *
 * ```yaml
 * apiVersion: waygate.dev/v1alpha1
 * kind: Mesh
 * trustDomain: cluster.local          # optional; default: the gateway's first trust domain
 * services:
 *   - hostname: echo.shop.svc.cluster.local
 *     namespace: shop
 *     vips: ["10.96.0.10"]            # optional (a headless service has none)
 *     ports: [{ port: 80, targetPort: 8080 }]   # targetPort defaults to port, as in Kubernetes
 *     endpoints: [echo-1, echo-2]     # workload names in the service's namespace
 * workloads:
 *   - name: echo-1
 *     namespace: shop
 *     ips: ["10.244.1.7"]             # one per family
 *     serviceAccount: echo            # principal spiffe://<trust domain>/ns/shop/sa/echo
 *     protocol: HBONE                 # HBONE (default) | TCP
 *     tunnelPort: 15008               # default 15008
 *     ready: true                     # default true
 * ```
 *
 * Names follow Kubernetes' rules (k8s.io/apimachinery validation): a namespace is an RFC 1123
 * label, a workload (pod) and a service account name an RFC 1123 subdomain. Addresses are stored
 * canonical (src/net/address.ts; IPv4-mapped IPv6 as the IPv4 address), so lookups by the canonical
 * text of a CONNECT's address match whatever spelling the file used.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { isMap, isSeq } from 'yaml';
import type { Diagnostic } from '../errors.ts';
import { formatIp, isMulticast, isUnspecified, parseIp } from '../net/address.ts';
import { hashSources, readPolicySources } from '../policy/sources.ts';
import {
  describe, report, singleDocument, walkContext, yamlWalker, type V, type WalkContext, type YamlNode,
} from '../config/yaml-walk.ts';
import {
  DEFAULT_TUNNEL_PORT, type DiscoverySnapshot, type MeshService, type MeshServicePort, type MeshWorkload, type WorkloadProtocol,
} from './model.ts';
import { buildSnapshot } from './snapshot.ts';

export const MESH_API_VERSION = 'waygate.dev/v1alpha1';
export const MESH_KIND = 'Mesh';

export interface MeshParseOptions {
  /** Used when the file names none: the gateway's first trust domain. */
  trustDomain: string;
  /** The snapshot's version (the provider counts applied snapshots). */
  version: number;
}

export type MeshParseResult = { snapshot: DiscoverySnapshot } | { diagnostics: Diagnostic[] };

const { str, int, bool, oneOf, list, object } = yamlWalker<WalkContext>();

/** A value with the node and field path it came from, for the checks across entries. */
interface Located<T> {
  value: T;
  node: YamlNode | null;
  at: string;
}

function located<T>(v: V<T>): V<Located<T>> {
  return (node, at, cx) => {
    const value = v(node, at, cx);
    return value === undefined ? undefined : { value, node, at };
  };
}

// RFC 1123 §2.1 labels, as Kubernetes validates them (IsDNS1123Label / IsDNS1123Subdomain).
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function dnsLabel(what: string): (s: string) => string | null {
  return (s) => (s.length <= 63 && DNS_LABEL.test(s) ? null : `"${s}" is not a valid ${what}: an RFC 1123 label (at most 63 lower-case letters, digits and "-", starting and ending with a letter or digit)`);
}

function dnsSubdomain(what: string): (s: string) => string | null {
  return (s) => (s.length <= 253 && DNS_SUBDOMAIN.test(s) && s.split('.').every((l) => l.length <= 63)
    ? null
    : `"${s}" is not a valid ${what}: an RFC 1123 subdomain (labels of lower-case letters, digits and "-" joined by ".", each at most 63, in all at most 253)`);
}

/** A service hostname: a DNS name in any case (stored lower-case), never an address. */
const hostname: V<string> = (node, at, cx) => {
  const v = str()(node, at, cx);
  if (v === undefined) return undefined;
  const lower = v.toLowerCase();
  if (parseIp(v) !== null) return report(cx, node, at, `"${v}" is an IP address; a service's addresses are its "vips"`);
  const problem = dnsSubdomain('hostname')(lower);
  if (problem) return report(cx, node, at, problem);
  return lower;
};

/** An address in any RFC 4291 text form, stored canonical; unspecified and multicast are refused. */
const ip: V<string> = (node, at, cx) => {
  const v = str()(node, at, cx);
  if (v === undefined) return undefined;
  const parsed = parseIp(v);
  if (parsed === null) return report(cx, node, at, `"${v}" is not an IPv4 or IPv6 address (no brackets, ports, zones or leading zeros)`);
  if (isUnspecified(parsed) || isMulticast(parsed)) return report(cx, node, at, `"${v}" is not a unicast address`);
  return formatIp(parsed);
};

const port = int(1, 65_535);

const trustDomain = str((s) => (/^[a-z0-9._-]+$/.test(s) ? null : `"${s}" is not a SPIFFE trust domain (lower-case letters, digits, . _ -)`));

interface RawPort { port: number; targetPort: number }
interface RawService {
  hostname: Located<string>;
  namespace: string;
  vips: Located<string>[];
  ports: Located<RawPort>[];
  endpoints: Located<string>[];
}
interface RawWorkload {
  name: Located<string>;
  namespace: string;
  ips: Located<string>[];
  serviceAccount: string;
  protocol: WorkloadProtocol;
  tunnelPort: number;
  ready: boolean;
}

/** Reports each field of `required` absent from the mapping `node` (a field present but invalid is reported already). */
function requireFields<T extends object>(required: readonly (keyof T & string)[], node: YamlNode | null, at: string, cx: WalkContext): void {
  for (const field of required) {
    if (isMap(node) && !node.has(field)) report(cx, node, at ? `${at}.${field}` : field, `missing required field "${field}"`);
  }
}

/** Reports the list at `node.<field>` when it is written and empty. */
function requireNonEmpty(node: YamlNode | null, field: string, at: string, cx: WalkContext, message: string): void {
  const value = isMap(node) ? node.get(field, true) : undefined;
  if (isSeq(value) && value.items.length === 0) report(cx, value as YamlNode, `${at}.${field}`, message);
}

const servicePort: V<Located<RawPort>> = (node, at, cx) => {
  const o = object<RawPort>({ port, targetPort: port })(node, at, cx);
  requireFields<RawPort>(['port'], node, at, cx);
  if (o?.port === undefined) return undefined;
  return { value: { port: o.port, targetPort: o.targetPort ?? o.port }, node, at };
};

/**
 * An entry of `services` or `workloads`: what of it is valid, even when some field is not, so the
 * checks across entries (duplicates, endpoints) still see it and every problem is found in one pass.
 */
const service: V<Partial<RawService>> = (node, at, cx) => {
  const o = object<RawService>({
    hostname: located(hostname),
    namespace: str(dnsLabel('namespace')),
    vips: list(located(ip)),
    ports: list(servicePort),
    endpoints: list(located(str(dnsSubdomain('workload name')))),
  })(node, at, cx);
  requireFields<RawService>(['hostname', 'namespace', 'ports'], node, at, cx);
  requireNonEmpty(node, 'ports', at, cx, 'a service needs at least one port: a CONNECT to a service is always to one of its ports');
  return o;
};

const workload: V<Partial<RawWorkload>> = (node, at, cx) => {
  const o = object<RawWorkload>({
    name: located(str(dnsSubdomain('workload name'))),
    namespace: str(dnsLabel('namespace')),
    ips: list(located(ip)),
    serviceAccount: str(dnsSubdomain('service account name')),
    protocol: oneOf(['HBONE', 'TCP'] as const),
    tunnelPort: port,
    ready: bool,
  })(node, at, cx);
  requireFields<RawWorkload>(['name', 'namespace', 'ips', 'serviceAccount'], node, at, cx);
  requireNonEmpty(node, 'ips', at, cx, 'a workload needs at least one address');
  return o;
};

/** Items of a list by index (undefined where one failed), so the checks across entries see every position. */
function indexed<T>(item: V<T>): V<(T | undefined)[]> {
  return (node, at, cx) => {
    if (!isSeq(node)) return report(cx, node, at, `expected a list, got ${describe(node)}`);
    return node.items.map((child, i) => item(child as YamlNode, `${at}[${i}]`, cx));
  };
}

interface RawMesh {
  apiVersion: string;
  kind: string;
  trustDomain: string;
  services: (Partial<RawService> | undefined)[];
  workloads: (Partial<RawWorkload> | undefined)[];
}

const documentSchema = object<RawMesh>({
  apiVersion: oneOf([MESH_API_VERSION] as const),
  kind: oneOf([MESH_KIND] as const),
  trustDomain,
  services: indexed(service),
  workloads: indexed(workload),
});

/**
 * Parses mesh file text into a snapshot, or every problem found (in file order). `file` names it
 * in diagnostics and, made absolute, in the snapshot's `source`; the hash is {@link meshHash}.
 */
export function parseMeshText(text: string, file: string, opts: MeshParseOptions): MeshParseResult {
  const cx = walkContext('WG_MESH', file, text);
  const root = singleDocument(text, cx, 'a mesh file holds exactly one Mesh document');
  if (root === undefined) return { diagnostics: cx.diags };
  const doc = documentSchema(root, '', cx);
  if (doc === undefined) return { diagnostics: cx.diags };
  requireFields<RawMesh>(['apiVersion', 'kind'], root, '', cx);
  const td = doc.trustDomain ?? opts.trustDomain;

  // Workloads: unique names per namespace, unique addresses across all of them, one per family.
  const declared = declaredWorkloads(root);
  const workloadByKey = new Map<string, MeshWorkload>();
  const nameAt = new Map<string, string>();
  const ipOwner = new Map<string, { label: string; at: string }>();
  const workloads: MeshWorkload[] = [];
  for (const w of doc.workloads ?? []) {
    if (w?.name === undefined || w.namespace === undefined) {
      for (const a of w?.ips ?? []) ipOwner.set(a.value, { label: 'another workload', at: a.at });
      continue;
    }
    const key = `${w.namespace}/${w.name.value}`;
    const label = `workload ${key}`;
    const firstAt = nameAt.get(key);
    if (firstAt !== undefined) report(cx, w.name.node, w.name.at, `duplicate workload "${w.name.value}" in namespace ${w.namespace} (also ${firstAt})`);
    else nameAt.set(key, w.name.at);
    const families = new Set<number>();
    for (const a of w.ips ?? []) {
      const owner = ipOwner.get(a.value);
      if (owner) {
        report(cx, a.node, a.at, `${a.value} is already the address of ${owner.label} (${owner.at})`);
        continue;
      }
      ipOwner.set(a.value, { label, at: a.at });
      const family = a.value.includes(':') ? 6 : 4;
      if (families.has(family)) report(cx, a.node, a.at, `a workload has at most one IPv${family} address (as a dual-stack pod has); ${a.value} is a second one`);
      families.add(family);
    }
    if (firstAt !== undefined) continue;
    const mw: MeshWorkload = Object.freeze({
      name: w.name.value,
      namespace: w.namespace,
      ips: Object.freeze((w.ips ?? []).map((a) => a.value)),
      serviceAccount: w.serviceAccount ?? '',
      principal: `spiffe://${td}/ns/${w.namespace}/sa/${w.serviceAccount ?? ''}`,
      protocol: w.protocol ?? 'HBONE',
      tunnelPort: w.tunnelPort ?? DEFAULT_TUNNEL_PORT,
      ready: w.ready ?? true,
    });
    workloadByKey.set(key, mw);
    workloads.push(mw);
  }

  // Services: unique hostnames and VIPs, no VIP that is a workload's address, unique ports,
  // endpoints that name workloads of the service's namespace.
  const hostnameAt = new Map<string, string>();
  const vipAt = new Map<string, string>();
  const services: MeshService[] = [];
  for (const s of doc.services ?? []) {
    if (!s) continue;
    if (s.hostname !== undefined) {
      const firstAt = hostnameAt.get(s.hostname.value);
      if (firstAt !== undefined) report(cx, s.hostname.node, s.hostname.at, `duplicate service hostname "${s.hostname.value}" (also ${firstAt})`);
      else hostnameAt.set(s.hostname.value, s.hostname.at);
    }
    for (const v of s.vips ?? []) {
      const other = vipAt.get(v.value);
      const owner = ipOwner.get(v.value);
      if (other !== undefined) report(cx, v.node, v.at, `VIP ${v.value} is already ${other}`);
      else if (owner) report(cx, v.node, v.at, `VIP ${v.value} is also the address of ${owner.label} (${owner.at}): a CONNECT to it could not tell the service from the workload`);
      else vipAt.set(v.value, `a VIP of ${s.hostname ? `service ${s.hostname.value}` : 'another service'} (${v.at})`);
    }
    const portAt = new Map<number, string>();
    for (const p of s.ports ?? []) {
      const other = portAt.get(p.value.port);
      if (other !== undefined) report(cx, p.node, p.at, `duplicate port ${p.value.port} (also ${other})`);
      else portAt.set(p.value.port, p.at);
    }
    const endpoints: MeshWorkload[] = [];
    const endpointAt = new Map<string, string>();
    for (const e of s.endpoints ?? []) {
      const other = endpointAt.get(e.value);
      if (other !== undefined) {
        report(cx, e.node, e.at, `duplicate endpoint "${e.value}" (also ${other})`);
        continue;
      }
      endpointAt.set(e.value, e.at);
      if (s.namespace === undefined) continue; // reported at the namespace
      const key = `${s.namespace}/${e.value}`;
      const w = workloadByKey.get(key);
      if (w) endpoints.push(w);
      // A workload declared with errors of its own is reported there, not again here.
      else if (!declared.has(key)) report(cx, e.node, e.at, `no workload "${e.value}" in namespace ${s.namespace} (endpoints name workloads in the service's namespace)`);
    }
    if (s.hostname === undefined || s.namespace === undefined) continue;
    services.push(Object.freeze({
      hostname: s.hostname.value,
      namespace: s.namespace,
      vips: Object.freeze((s.vips ?? []).map((v) => v.value)),
      ports: Object.freeze((s.ports ?? []).map((p): MeshServicePort => Object.freeze({ ...p.value }))),
      endpoints: Object.freeze(endpoints),
    }));
  }

  if (cx.diags.length) return { diagnostics: inFileOrder(cx.diags) };
  return { snapshot: meshSnapshot(file, text, opts.version, services, workloads) };
}

/** Diagnostics by position (a stable sort: the order found among equal positions). */
function inFileOrder(diags: Diagnostic[]): Diagnostic[] {
  return [...diags].sort((a, b) => a.line - b.line || a.col - b.col);
}

/** The frozen snapshot with its indexes (snapshot.ts, shared with the Kubernetes mapping). */
function meshSnapshot(file: string, text: string, version: number, services: MeshService[], workloads: MeshWorkload[]): DiscoverySnapshot {
  const absolute = path.resolve(file);
  return buildSnapshot({ version, hash: meshHash(absolute, text), source: `mesh-file ${absolute}`, services, workloads });
}

/**
 * `namespace/name` of every workload entry that names both as strings, even one with errors
 * elsewhere: an endpoint naming it is then not reported a second time.
 */
function declaredWorkloads(root: YamlNode): Set<string> {
  const out = new Set<string>();
  const items = isMap(root) ? root.get('workloads', true) : undefined;
  if (!isSeq(items)) return out;
  for (const item of items.items) {
    if (!isMap(item)) continue;
    const name = item.get('name');
    const namespace = item.get('namespace');
    if (typeof name === 'string' && typeof namespace === 'string') out.add(`${namespace}/${name}`);
  }
  return out;
}

/** The snapshot hash of mesh file text: `hashSources` (src/policy/sources.ts) over this one file. */
export function meshHash(absoluteFile: string, text: string): string {
  return hashSources([{ path: absoluteFile, text }]);
}

export interface MeshReadOptions {
  /** Wait until the file is at least this old (by mtime) before using it (src/policy/sources.ts ReadOptions). */
  settleMs?: number;
  /** Reads before a file that keeps changing is reported. Default 5. */
  maxAttempts?: number;
}

/**
 * Reads the mesh file as policy files are read (src/policy/sources.ts `readPolicySources`: one
 * descriptor between two `fstat`s, again while it changes, settle), so a torn write is re-read or
 * refused, never parsed as if complete. Problems come back as `WG_MESH` diagnostics.
 */
export async function readMeshFile(file: string, opts: MeshReadOptions = {}): Promise<{ text: string } | { diagnostics: Diagnostic[] }> {
  const io = (message: string): { diagnostics: Diagnostic[] } => ({
    diagnostics: [{ code: 'WG_MESH', message, file, line: 1, col: 1, path: '', severity: 'error' }],
  });
  // readPolicySources would walk a directory: the mesh file is one file.
  if ((await stat(file).catch(() => null))?.isDirectory()) return io('is a directory: the mesh file is one YAML file');
  const read = await readPolicySources([file], { settleMs: opts.settleMs ?? 0, maxAttempts: opts.maxAttempts ?? 5 });
  if (read.diagnostics.length) {
    const d = read.diagnostics[0]!;
    return io(d.message.replace(/^cannot read policy (?:path|file): /, 'cannot read mesh file: ').replace(/policy file/g, 'mesh file'));
  }
  if (read.files.length !== 1) return io('is a directory: the mesh file is one YAML file'); // replaced by one since the stat
  return { text: read.files[0]!.text };
}

/** Reads and parses a mesh file (see readMeshFile and parseMeshText). */
export async function loadMeshFile(file: string, opts: MeshParseOptions & MeshReadOptions): Promise<MeshParseResult> {
  const read = await readMeshFile(file, opts);
  if ('diagnostics' in read) return read;
  return parseMeshText(read.text, file, opts);
}
