/**
 * Validates examples/kubernetes/ without kubectl or a network schema download: renders the
 * kustomization the way kustomize does (resources, labels, images, configMapGenerator with
 * name-suffix hashes and reference rewriting) and checks each object structurally, then loads the
 * generated gateway config and policies with waygate's own loaders. Beyond shape, it checks what
 * istiod needs to accept waygate as the waypoint of the fronted namespace
 * (pilot/pkg/serviceregistry/ambient/waypoints.go in istio/istio, docs/kubernetes.md): the Gateway in
 * the namespace of the Service its address names, its HBONE listener and allowedRoutes, the pods'
 * gateway-name label, the namespace labels; and that the RBAC grants exactly the API calls the
 * Kubernetes discovery and the registration make, nothing more.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseConfigText } from '../../src/config/load.ts';
import { ISTIO_CA_DEFAULTS, type IstioCaConfig } from '../../src/config/schema.ts';
import { istioCaIdentity } from '../../src/gateway/tls-source.ts';
import { loadPolicySet } from '../../src/policy/load.ts';
import { parseDockerfile } from '../ship/dockerfile.ts';
import { runWaygate } from '../../examples/traffic/gateway-process.ts';
import { EXAMPLE_CLUSTER_IP, runExampleAgainstFakeApi } from './example-cluster.ts';

const ROOT = new URL('../../examples/kubernetes/', import.meta.url).pathname;
const REPO = new URL('../../', import.meta.url).pathname;

// Manifests are free-form YAML; the checks below are what give them shape.
type Obj = Record<string, any>;

interface Kustomization {
  namespace?: string;
  labels?: { pairs: Record<string, string> }[];
  resources: string[];
  configMapGenerator?: { name: string; namespace?: string; files: string[]; options?: { disableNameSuffixHash?: boolean } }[];
  images?: { name: string; newName?: string; newTag?: string }[];
}

const KNOWN: Record<string, { namespaced: boolean }> = {
  'v1/Namespace': { namespaced: false },
  'v1/ServiceAccount': { namespaced: true },
  'v1/Service': { namespaced: true },
  'v1/ConfigMap': { namespaced: true },
  'v1/Secret': { namespaced: true },
  'apps/v1/Deployment': { namespaced: true },
  'policy/v1/PodDisruptionBudget': { namespaced: true },
  'autoscaling/v2/HorizontalPodAutoscaler': { namespaced: true },
  'cert-manager.io/v1/Certificate': { namespaced: true },
  'gateway.networking.k8s.io/v1/Gateway': { namespaced: true },
  'gateway.networking.k8s.io/v1/GatewayClass': { namespaced: false },
  'rbac.authorization.k8s.io/v1/Role': { namespaced: true },
  'rbac.authorization.k8s.io/v1/RoleBinding': { namespaced: true },
  'rbac.authorization.k8s.io/v1/ClusterRole': { namespaced: false },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': { namespaced: false },
  'security.istio.io/v1/AuthorizationPolicy': { namespaced: true },
};

/**
 * The API calls of docs/kubernetes.md ("RBAC"), as `apiGroup/resource:verb` (core group: `core`),
 * per scope: each fronted namespace (discovery), the gateway's own namespace (registration) and the
 * cluster (GatewayClasses). The Roles must grant exactly these.
 */
const API_CALLS = {
  fronted: [
    'core/services:list', 'core/services:watch',
    'core/pods:list', 'core/pods:watch',
    'discovery.k8s.io/endpointslices:list', 'discovery.k8s.io/endpointslices:watch',
  ],
  gatewayNamespace: [
    'gateway.networking.k8s.io/gateways:get', 'gateway.networking.k8s.io/gateways:list', 'gateway.networking.k8s.io/gateways:watch',
    'gateway.networking.k8s.io/gateways/status:update', 'gateway.networking.k8s.io/gateways/status:patch',
    'core/services:get',
  ],
  cluster: [
    'gateway.networking.k8s.io/gatewayclasses:get', 'gateway.networking.k8s.io/gatewayclasses:list', 'gateway.networking.k8s.io/gatewayclasses:watch',
    'gateway.networking.k8s.io/gatewayclasses/status:update', 'gateway.networking.k8s.io/gatewayclasses/status:patch',
  ],
};

const kindOf = (o: Obj): string => `${o['apiVersion']}/${o['kind']}`;

function readDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const list = Array.isArray(docs) ? docs : [];
  for (const d of list) assert.equal(d.errors.length, 0, `${file}: ${d.errors.map((e) => e.message).join('; ')}`);
  return list.map((d) => d.toJS() as Obj).filter((o) => o !== null);
}

/** kustomize's rendering, restricted to the features this kustomization uses. */
function render(): { k: Kustomization; objects: Obj[]; generated: Map<string, { name: string; data: Record<string, string> }> } {
  const k = parseYaml(readFileSync(join(ROOT, 'kustomization.yaml'), 'utf8')) as Kustomization;
  const objects = k.resources.flatMap((r) => readDocs(join(ROOT, r)));
  const generated = new Map<string, { name: string; data: Record<string, string> }>();
  for (const g of k.configMapGenerator ?? []) {
    const data: Record<string, string> = {};
    for (const f of g.files) data[basename(f)] = readFileSync(join(ROOT, f), 'utf8');
    // kustomize appends a content hash so a change produces a new name (and a rollout); ours is
    // not kustomize's exact hash function, but it has the same effect on references.
    const suffix = g.options?.disableNameSuffixHash ? '' : '-' + createHash('sha256').update(JSON.stringify(data)).digest('hex').slice(0, 10);
    generated.set(g.name, { name: g.name + suffix, data });
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: g.name + suffix, ...(g.namespace ? { namespace: g.namespace } : {}) }, data });
  }
  for (const o of objects) {
    o['metadata'] ??= {};
    if (k.namespace && KNOWN[kindOf(o)]?.namespaced) o['metadata']['namespace'] = k.namespace;
    for (const l of k.labels ?? []) o['metadata']['labels'] = { ...(o['metadata']['labels'] ?? {}), ...l.pairs };
    if (o['kind'] === 'Deployment') {
      const pod = o['spec']['template']['spec'];
      for (const v of pod['volumes'] ?? []) {
        const gen = v.configMap && generated.get(v.configMap.name);
        if (gen) v.configMap.name = gen.name;
      }
      for (const c of pod['containers']) {
        const img = (k.images ?? []).find((i) => i.name === c.image);
        if (img) c.image = `${img.newName ?? img.name}:${img.newTag ?? 'latest'}`;
      }
    }
  }
  return { k, objects, generated };
}

/**
 * The base's rendering, made once: the overlays and the comparisons with the base each take a copy
 * of it (renderOverlay changes the objects it is given), instead of reading and parsing the files
 * again for every caller. Nothing hands out the original.
 */
const RENDERED = render();
const renderedBase = (): ReturnType<typeof render> => structuredClone(RENDERED);
const { k, objects, generated } = renderedBase();
const findIn = (objs: Obj[], kind: string, name?: string): Obj[] => objs.filter((o) => o['kind'] === kind && (name === undefined || o['metadata']['name'] === name));
/** The one object of `kind` (and `name`) in a rendering: the base's, or an overlay's. */
const oneIn = (objs: Obj[], kind: string, name?: string): Obj => {
  const found = findIn(objs, kind, name);
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ` ${name}` : ''}`);
  return found[0]!;
};
/** gateway.yaml of an overlay's rendering: the ConfigMap the Deployment mounts as `config`. */
const configTextIn = (objs: Obj[]): string => {
  const vol = (oneIn(objs, 'Deployment', 'waygate')['spec']['template']['spec']['volumes'] as Obj[]).find((v) => v['name'] === 'config')!;
  return oneIn(objs, 'ConfigMap', vol['configMap']['name'])['data']['gateway.yaml'];
};
const find = (kind: string, name?: string): Obj[] => findIn(objects, kind, name);
const one = (kind: string, name?: string): Obj => oneIn(objects, kind, name);
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}): boolean =>
  Object.entries(selector).every(([key, v]) => labels[key] === v);

const GATEWAY_NAMESPACE = 'waygate';
const deployment = (): Obj => one('Deployment', 'waygate');
const container = (): Obj => deployment()['spec']['template']['spec']['containers'][0];
const gatewayConfigText = (): string => generated.get('waygate-config')!.data['gateway.yaml']!;
const gatewayConfigSpec = () => parseConfigText(gatewayConfigText(), 'gateway.yaml', '/');
/** The fronted namespaces, as the Gateway's allowedRoutes admit them. */
const frontedByGateway = (): string[] => {
  const gw = one('Gateway', 'waygate');
  const exprs = gw['spec']['listeners'][0]['allowedRoutes']['namespaces']['selector']['matchExpressions'] as Obj[];
  assert.equal(exprs.length, 1);
  assert.deepEqual([exprs[0]!['key'], exprs[0]!['operator']], ['kubernetes.io/metadata.name', 'In']);
  return [...(exprs[0]!['values'] as string[])].sort();
};

describe('examples/kubernetes renders to valid objects', () => {
  test('every object has a known apiVersion/kind, a DNS-1123 name, and its own namespace when namespaced', () => {
    assert.equal(k.namespace, undefined, 'no kustomization-wide namespace: it would move the Roles of the fronted namespaces into waygate');
    assert.ok(objects.length >= 16);
    const fronted = frontedByGateway();
    for (const o of objects) {
      const known = KNOWN[kindOf(o)];
      assert.ok(known, `unknown apiVersion/kind ${kindOf(o)}`);
      const name = o['metadata']['name'] as string;
      assert.match(name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${kindOf(o)} name ${name}`);
      assert.ok(name.length <= 63);
      if (known.namespaced) {
        const ns = o['metadata']['namespace'];
        // Only discovery's Role and RoleBinding live in the fronted namespaces.
        if (name === 'waygate-discovery') assert.ok(fronted.includes(ns), `${kindOf(o)} ${name} in a fronted namespace (${ns})`);
        else assert.equal(ns, GATEWAY_NAMESPACE, `${kindOf(o)} ${name}`);
      } else {
        assert.equal(o['metadata']['namespace'], undefined, `${kindOf(o)} ${name} is cluster-scoped`);
      }
      assert.equal(o['metadata']['labels']['app.kubernetes.io/part-of'], 'waygate');
    }
    for (const kind of ['Namespace', 'ServiceAccount', 'Deployment', 'Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler', 'GatewayClass', 'Gateway', 'ClusterRole', 'ClusterRoleBinding']) one(kind);
    assert.equal(one('Namespace')['metadata']['labels']['istio.io/dataplane-mode'], 'none', 'ztunnel does not capture the gateway');
  });

  test('the Deployment: image, uid 65532, read-only root, probes, ports, resources, grace period, volumes', () => {
    const d = deployment();
    const tpl = d['spec']['template'];
    assert.ok(matches(d['spec']['selector']['matchLabels'], tpl['metadata']['labels']), 'selector matches the pod template');
    const pod = tpl['spec'];
    one('ServiceAccount', pod['serviceAccountName']);
    assert.equal(pod['automountServiceAccountToken'], true, 'the API token for discovery and registration');
    assert.equal(pod['securityContext']['runAsNonRoot'], true);
    assert.ok(pod['affinity']['podAntiAffinity'], 'anti-affinity');
    assert.equal(pod['containers'].length, 1);
    const c = container();
    // The image the Dockerfile builds, tagged with package.json's version, runs as the Dockerfile's user.
    const { version } = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
    assert.equal(c['image'], `ghcr.io/example/waygate:${version}`, 'images: override applied');
    const imageUser = parseDockerfile(readFileSync(join(REPO, 'Dockerfile'), 'utf8')).at(-1)!.user;
    assert.equal(imageUser, '65532:65532');
    assert.equal(pod['securityContext']['runAsUser'], 65532);
    assert.equal(pod['securityContext']['runAsGroup'], 65532);
    assert.equal(c['securityContext']['readOnlyRootFilesystem'], true);
    assert.equal(c['securityContext']['allowPrivilegeEscalation'], false);
    assert.deepEqual(c['securityContext']['capabilities']['drop'], ['ALL']);
    assert.ok(c['resources']['requests']['cpu'] && c['resources']['requests']['memory'], 'resource requests');
    const ports = new Map<string | number, number>();
    for (const p of c['ports']) {
      ports.set(p['name'], p['containerPort']);
      ports.set(p['containerPort'], p['containerPort']);
    }
    assert.deepEqual([...new Set(ports.values())].sort(), [15008, 15020, 15021]);
    for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
      const pr = c[probe];
      const port = pr['httpGet']?.['port'] ?? pr['tcpSocket']?.['port'];
      assert.ok(ports.has(port), `${probe} port ${port} is a container port`);
      assert.equal(ports.get(port), 15021, `${probe} uses the readiness port`);
    }
    assert.equal(c['readinessProbe']['httpGet']['path'], '/healthz/ready');
    const env = new Map((c['env'] as Obj[]).map((e) => [e['name'], e]));
    assert.equal(Number(env.get('TERMINATION_GRACE_PERIOD_SECONDS')!['value']), pod['terminationGracePeriodSeconds'], 'drain deadline derives from the real grace period');
    assert.equal(env.get('POD_NAMESPACE')!['valueFrom']['fieldRef']['fieldPath'], 'metadata.namespace');
    assert.equal(env.get('SERVICE_ACCOUNT')!['valueFrom']['fieldRef']['fieldPath'], 'spec.serviceAccountName', 'the identity asked of the mesh CA');

    const volumes = new Map((pod['volumes'] as Obj[]).map((v) => [v['name'], v]));
    for (const m of c['volumeMounts']) {
      assert.ok(volumes.has(m['name']), `volumeMount ${m['name']} has a volume`);
      assert.equal(m['readOnly'], true, `${m['name']} is mounted read-only: the gateway writes nothing`);
    }
    // Nothing writable: the compiled JavaScript needs no transform cache (no /tmp emptyDir).
    for (const v of volumes.values()) {
      const token = v['projected']?.['sources']?.length === 1 && v['projected']['sources'][0]['serviceAccountToken'];
      assert.ok(v['configMap'] || v['secret'] || token, `volume ${v['name']} is a ConfigMap, a Secret or a projected token`);
    }
    const configMaps = new Set(find('ConfigMap').map((o) => o['metadata']['name']));
    const secrets = new Set([...find('Secret').map((o) => o['metadata']['name']), ...find('Certificate').map((o) => o['spec']['secretName'])]);
    for (const v of volumes.values()) {
      // istiod writes istio-ca-root-cert into every namespace (its namespace controller).
      if (v['configMap'] && v['configMap']['name'] !== 'istio-ca-root-cert') assert.ok(configMaps.has(v['configMap']['name']), `ConfigMap ${v['configMap']['name']} exists`);
      if (v['secret']) assert.ok(secrets.has(v['secret']['secretName']), `Secret ${v['secret']['secretName']} exists or is issued`);
    }
    assert.match(volumes.get('config')!['configMap']['name'], /^waygate-config-[0-9a-f]{10}$/, 'the config ConfigMap is hash-suffixed');
    assert.equal(volumes.get('policies')!['configMap']['name'], 'waygate-policies', 'the policies ConfigMap keeps its name (hot reload)');
  });

  test('the Service, PDB and HPA point at the Deployment', () => {
    const d = deployment();
    const podLabels = d['spec']['template']['metadata']['labels'];
    const containerPorts = container()['ports'] as Obj[];
    const svc = one('Service', 'waygate');
    assert.ok(matches(svc['spec']['selector'], podLabels));
    const byPort = new Map(svc['spec']['ports'].map((p: Obj) => [p['port'], p]));
    assert.deepEqual([...byPort.keys()].sort(), [15008, 15020]);
    for (const p of svc['spec']['ports'] as Obj[]) {
      const target = containerPorts.find((cp) => cp['name'] === p['targetPort'] || cp['containerPort'] === p['targetPort']);
      assert.ok(target, `Service port ${p['name']} targets container port ${p['targetPort']}`);
      assert.equal(target['containerPort'], p['port']);
    }
    const pdb = one('PodDisruptionBudget');
    assert.ok(matches(pdb['spec']['selector']['matchLabels'], podLabels));
    assert.ok(pdb['spec']['minAvailable'] >= 1);
    const hpa = one('HorizontalPodAutoscaler');
    assert.deepEqual(hpa['spec']['scaleTargetRef'], { apiVersion: 'apps/v1', kind: 'Deployment', name: 'waygate' });
    assert.ok(hpa['spec']['minReplicas'] >= 2 && hpa['spec']['maxReplicas'] >= hpa['spec']['minReplicas']);
  });

  test('the certificate from the mesh CA: a token of audience istio-ca, the mesh root, the ServiceAccount\'s SPIFFE ID', () => {
    const spec = gatewayConfigSpec();
    const ca = spec.tls!.istioCa!;
    assert.ok(ca, 'tls.istioCa');
    assert.equal(spec.tls!.certFile, undefined);
    assert.equal(spec.tls!.keyFile, undefined);
    assert.equal(ca.address, 'istiod.istio-system.svc:15012');
    const pod = deployment()['spec']['template']['spec'];
    const mounted = (file: string): { volume: Obj; inner: string } => {
      const m = (container()['volumeMounts'] as Obj[]).find((vm) => file.startsWith(`${vm['mountPath']}/`))!;
      assert.ok(m, `${file} is on a mounted volume`);
      return { volume: (pod['volumes'] as Obj[]).find((v) => v['name'] === m['name'])!, inner: file.slice(m['mountPath'].length + 1) };
    };
    const token = mounted(ca.tokenFile);
    const source = (token.volume['projected']['sources'] as Obj[]).find((x) => x['serviceAccountToken']?.['path'] === token.inner)!['serviceAccountToken'];
    assert.equal(source['audience'], 'istio-ca', 'istiod authenticates CSRs with tokens of audience istio-ca');
    assert.ok(source['expirationSeconds'] >= 600, 'the kubelet rotates it; waygate re-reads it for every request');
    const root = mounted(spec.tls!.trustBundleFiles![0]!);
    assert.deepEqual([root.volume['configMap']['name'], root.inner], ['istio-ca-root-cert', 'root-cert.pem']);
    // The identity asked for is built as istio-agent builds it, from the Downward API's values.
    const sa = one('ServiceAccount');
    assert.equal(pod['serviceAccountName'], sa['metadata']['name']);
    const identity = istioCaIdentity({ ...ISTIO_CA_DEFAULTS, ...ca } as IstioCaConfig, spec.trustDomains!,
      { POD_NAMESPACE: deployment()['metadata']['namespace'], SERVICE_ACCOUNT: pod['serviceAccountName'] });
    assert.equal(identity, `spiffe://cluster.local/ns/${sa['metadata']['namespace']}/sa/${sa['metadata']['name']}`);
  });

  test('the Gateway istiod accepts as a waypoint: in the Service\'s namespace, HBONE on 15008, allowedRoutes, class, pod label', () => {
    const cls = one('GatewayClass', 'waygate');
    assert.equal(cls['spec']['controllerName'], 'waygate.dev/gateway-controller');
    const gw = one('Gateway', 'waygate');
    assert.equal(gw['spec']['gatewayClassName'], cls['metadata']['name']);
    // A Hostname status address is resolved as a Service of the Gateway's own namespace.
    const svc = one('Service', 'waygate');
    assert.equal(gw['metadata']['namespace'], svc['metadata']['namespace']);
    assert.ok((svc['spec']['ports'] as Obj[]).some((p) => p['port'] === 15008), 'the Service carries HBONE');
    assert.equal(gw['metadata']['labels']['istio.io/waypoint-for'], 'all');
    assert.deepEqual(gw['spec']['listeners'].map((l: Obj) => [l['name'], l['port'], l['protocol']]), [['mesh', 15008, 'HBONE']]);
    assert.equal(gw['spec']['listeners'][0]['allowedRoutes']['namespaces']['from'], 'Selector');
    assert.deepEqual(frontedByGateway(), ['shop']);
    // No hand-written status: waygate (config registration) writes it.
    assert.equal(gw['status'], undefined);
    const podLabels = deployment()['spec']['template']['metadata']['labels'];
    assert.equal(podLabels['gateway.networking.k8s.io/gateway-name'], gw['metadata']['name']);
    assert.equal(podLabels['istio.io/dataplane-mode'], 'none');
  });

  test('the fronted namespaces are labelled to use the Gateway (fronted-namespace.yaml, applied last)', () => {
    const gw = one('Gateway', 'waygate');
    const docs = readDocs(join(ROOT, 'fronted-namespace.yaml'));
    assert.ok(!k.resources.includes('fronted-namespace.yaml'), 'not in the kustomization: `kubectl delete -k` must never delete a fronted namespace');
    assert.deepEqual(docs.map((o) => o['metadata']['name']).sort(), frontedByGateway());
    for (const ns of docs) {
      assert.equal(kindOf(ns), 'v1/Namespace');
      assert.deepEqual(ns['metadata']['labels'], {
        'istio.io/dataplane-mode': 'ambient',
        'istio.io/use-waypoint': gw['metadata']['name'],
        'istio.io/use-waypoint-namespace': gw['metadata']['namespace'],
      });
    }
  });

  test('RBAC: the ServiceAccount may make exactly the API calls of discovery and registration', () => {
    const sa = one('ServiceAccount');
    const isSa = (s: Obj): boolean => s['kind'] === 'ServiceAccount' && s['name'] === sa['metadata']['name'] && s['namespace'] === sa['metadata']['namespace'];
    const granted = new Map<string, Set<string>>();
    const resourceNames: string[] = [];
    for (const b of [...find('RoleBinding'), ...find('ClusterRoleBinding')]) {
      assert.ok((b['subjects'] as Obj[]).every(isSa), `${b['kind']} ${b['metadata']['name']} binds only waygate's ServiceAccount`);
      const ref = b['roleRef'];
      assert.equal(ref['apiGroup'], 'rbac.authorization.k8s.io');
      const scope = b['kind'] === 'ClusterRoleBinding' ? 'cluster' : b['metadata']['namespace'];
      assert.ok(b['kind'] === 'ClusterRoleBinding' || ref['kind'] === 'Role', 'a RoleBinding grants a Role of its own namespace');
      const role = find(ref['kind'], ref['name']).find((r) => ref['kind'] === 'ClusterRole' || r['metadata']['namespace'] === b['metadata']['namespace']);
      assert.ok(role, `${b['kind']} ${b['metadata']['name']}: ${ref['kind']} ${ref['name']} exists`);
      for (const rule of role['rules'] as Obj[]) {
        for (const list of ['apiGroups', 'resources', 'verbs']) assert.ok(!rule[list].includes('*'), `no wildcard ${list} in ${role['metadata']['name']}`);
        for (const g of rule['apiGroups']) for (const r of rule['resources']) for (const v of rule['verbs']) {
          const call = `${g === '' ? 'core' : g}/${r}:${v}`;
          if (!granted.has(scope)) granted.set(scope, new Set());
          granted.get(scope)!.add(call);
          if (rule['resourceNames']) resourceNames.push(`${call}=${[...rule['resourceNames']].sort().join(',')}`);
        }
      }
    }
    const expected = new Map<string, string[]>([
      ['cluster', API_CALLS.cluster],
      [GATEWAY_NAMESPACE, API_CALLS.gatewayNamespace],
      ...frontedByGateway().map((ns): [string, string[]] => [ns, API_CALLS.fronted]),
    ]);
    assert.deepEqual([...granted.keys()].sort(), [...expected.keys()].sort());
    for (const [scope, calls] of expected) assert.deepEqual([...granted.get(scope)!].sort(), [...calls].sort(), `scope ${scope}`);
    // Where a call reads or writes one named object, only that one: the Service the Gateway's
    // address names, the status of waygate's own GatewayClass.
    assert.deepEqual(resourceNames.sort(), [
      'core/services:get=waygate',
      'gateway.networking.k8s.io/gatewayclasses/status:patch=waygate',
      'gateway.networking.k8s.io/gatewayclasses/status:update=waygate',
    ]);
  });

  test('the lockdown (lockdown.yaml, optional): each fronted namespace admits waygate\'s principal only, enforced by ztunnel', () => {
    assert.ok(!k.resources.includes('lockdown.yaml'), 'optional: not in the kustomization');
    const sa = one('ServiceAccount');
    const docs = readDocs(join(ROOT, 'lockdown.yaml'));
    assert.deepEqual(docs.map((o) => o['metadata']['namespace']).sort(), frontedByGateway());
    for (const p of docs) {
      assert.equal(kindOf(p), 'security.istio.io/v1/AuthorizationPolicy');
      // No selector and no targetRefs: a namespace-wide policy, which istiod sends to ztunnel
      // (a policy with targetRefs to a waypoint is never sent to ztunnel).
      assert.deepEqual(Object.keys(p['spec']).sort(), ['action', 'rules']);
      assert.equal(p['spec']['action'], 'DENY');
      assert.deepEqual(p['spec']['rules'], [{ from: [{ source: { notPrincipals: [`cluster.local/ns/${sa['metadata']['namespace']}/sa/${sa['metadata']['name']}`] } }] }]);
    }
  });

  test('the generated gateway config loads and reads the files the Deployment mounts', () => {
    const c = container();
    const mounts = new Map((c['volumeMounts'] as Obj[]).map((m) => [m['name'], m['mountPath'] as string]));
    const spec = gatewayConfigSpec();
    assert.deepEqual(c['args'], ['serve', '--config', `${mounts.get('config')}/gateway.yaml`]);
    assert.ok(spec.tls!.istioCa!.tokenFile.startsWith(mounts.get('istio-token')! + '/'));
    assert.deepEqual(spec.tls!.trustBundleFiles, [`${mounts.get('istio-ca-root-cert')}/root-cert.pem`]);
    assert.deepEqual(spec.policies!.paths, [mounts.get('policies')]);
    assert.equal(spec.listen, '0.0.0.0:15008');
    assert.equal(spec.admin!.readyAddress, '0.0.0.0:15021');
    assert.equal(spec.admin!.metricsAddress, '0.0.0.0:15020');
    assert.match(spec.admin!.adminAddress!, /^127\.0\.0\.1:/);
    assert.ok(spec.destinations!.allow!.length > 0);
  });

  test('the config turns on Kubernetes discovery of the fronted namespaces and the registration of this Gateway', () => {
    const spec = gatewayConfigSpec();
    // Discovery: in-cluster credentials, exactly the namespaces the Gateway admits and the RBAC covers.
    const kube = spec.discovery!.kubernetes!;
    assert.deepEqual([...kube.namespaces].sort(), frontedByGateway());
    assert.equal(kube.kubeconfig ?? null, null, 'in-cluster credentials (the pod\'s ServiceAccount token)');
    assert.equal(spec.discovery!.meshFile ?? null, null, 'one discovery source');
    // Registration: the class, controller and Service of gateway-api.yaml and service.yaml, in the
    // pod's own namespace (POD_NAMESPACE from the Downward API).
    const reg = spec.registration!;
    const cls = one('GatewayClass', 'waygate');
    assert.equal(reg.enabled, true);
    assert.equal(reg.gatewayClassName, cls['metadata']['name']);
    assert.equal(reg.controllerName, cls['spec']['controllerName']);
    assert.equal(reg.serviceName, one('Service', 'waygate')['metadata']['name']);
    assert.ok(!reg.namespace, 'the pod\'s namespace');
    assert.ok((container()['env'] as Obj[]).some((e) => e['name'] === 'POD_NAMESPACE'));
    assert.equal(one('Gateway', 'waygate')['metadata']['namespace'], deployment()['metadata']['namespace']);
  });

  test('the generated policies load as one snapshot, without their PolicyTest', async () => {
    const names = Object.keys(generated.get('waygate-policies')!.data);
    assert.ok(names.every((f) => !f.endsWith('.test.yaml')));
    const result = await loadPolicySet(names.map((f) => join(ROOT, 'policies', f)), { version: 1 });
    assert.ok(result.ok, result.ok ? '' : JSON.stringify(result.diagnostics));
    assert.equal(result.snapshot.policies.length, 2);
  });

  test('the CI line of the README passes: policy check and policy test of the example policies (with their PolicyTest)', () => {
    // The compiled product, as `npx waygate` runs it (npm test builds dist/ first).
    const bin = join(REPO, 'bin', 'waygate.js');
    const dir = join(ROOT, 'policies');
    const check = spawnSync(process.execPath, [bin, 'policy', 'check', dir], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const run = spawnSync(process.execPath, [bin, 'policy', 'test', dir, '--coverage', '--threshold', '100'], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /\b(\d+) cases: \1 passed, 0 failed; rule coverage (\d+)\/\2 \(100%\)/);
  });

  test('nothing is set by hand: no `kubectl patch` of the Gateway\'s status in the instructions', () => {
    for (const file of ['examples/kubernetes/README.md', 'docs/kubernetes.md']) {
      assert.doesNotMatch(readFileSync(join(REPO, file), 'utf8'), /kubectl\b[^\n]*\bpatch\b/, file);
    }
  });
});

/**
 * One API call as RBAC sees it (Kubernetes "Authorization", request attributes): the verb from the
 * method (a GET with watch=true is `watch`; a GET without a name `list`), the resource with its
 * subresource, the namespace (`cluster` for a cluster-scoped resource) and the object's name.
 */
function rbacAttributes(method: string, path: string, query: Record<string, string>): { scope: string; call: string; name: string | null } {
  const m = /^\/(?:api\/v1|apis\/([^/]+)\/[^/]+)\/(?:namespaces\/([^/]+)\/)?([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?$/.exec(path);
  assert.ok(m, `not a resource path: ${path}`);
  const [, group, ns, resource, name, sub] = m;
  const watching = query['watch'] === 'true' || query['watch'] === '1';
  const verb = method === 'GET' ? (watching ? 'watch' : name ? 'get' : 'list') : ({ POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' } as Record<string, string>)[method]!;
  return { scope: ns ?? 'cluster', call: `${group ?? 'core'}/${resource}${sub ? `/${sub}` : ''}:${verb}`, name: name ?? null };
}

/** Whether the rendered Roles and ClusterRoles bound to waygate's ServiceAccount allow one call. */
function allowedByRbac(scope: string, call: string, name: string | null): boolean {
  for (const b of [...find('RoleBinding'), ...find('ClusterRoleBinding')]) {
    if (b['kind'] === 'RoleBinding' && b['metadata']['namespace'] !== scope) continue;
    const ref = b['roleRef'];
    const role = find(ref['kind'], ref['name']).find((r) => ref['kind'] === 'ClusterRole' || r['metadata']['namespace'] === b['metadata']['namespace']);
    for (const rule of (role?.['rules'] ?? []) as Obj[]) {
      for (const g of rule['apiGroups']) for (const r of rule['resources']) for (const v of rule['verbs']) {
        if (`${g === '' ? 'core' : g}/${r}:${v}` !== call) continue;
        if (!rule['resourceNames'] || (name !== null && rule['resourceNames'].includes(name))) return true;
      }
    }
  }
  return false;
}

describe('examples/kubernetes against an API server: the gateway with this config and only this RBAC', () => {
  test('the example config syncs discovery and registers the Gateway istiod accepts, calling nothing rbac.yaml does not grant', async () => {
    const svc = one('Service', 'waygate');
    const gw = one('Gateway', 'waygate');
    let doctor: { code: number | null; stdout: string; stderr: string } | undefined;
    const run = await runExampleAgainstFakeApi({
      // `waygate doctor` with the operator's credentials, on the cluster the manifests made.
      inspect: async (kubeconfig) => {
        const r = await runWaygate(['doctor', '--kubeconfig', kubeconfig, '-o', 'json'], { cwd: REPO });
        doctor = { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
      },
    });
    assert.equal(run.readyStatus, 200, `ready after the first sync of discovery; log:\n${run.stderr}`);
    assert.equal(run.exitCode, 0, run.stderr);
    // What istiod reads (waypoints.go getGatewayAddress): a Hostname naming a Service of the
    // Gateway's own namespace (and the Service's address).
    const status = run.gateway['status'] as Obj;
    assert.deepEqual(status['addresses'], [
      { type: 'IPAddress', value: EXAMPLE_CLUSTER_IP },
      { type: 'Hostname', value: `${svc['metadata']['name']}.${gw['metadata']['namespace']}.svc.cluster.local` },
    ]);
    const conditions = new Map((status['conditions'] as Obj[]).map((c) => [c['type'], c['status']]));
    assert.equal(conditions.get('Accepted'), 'True');
    assert.equal(conditions.get('Programmed'), 'True');
    // Every call the gateway made is one rbac.yaml grants; discovery listed and watched the
    // fronted namespace's three resources, and the registration wrote the Gateway's status.
    const calls = run.requests.map((r) => rbacAttributes(r.method, r.path, r.query));
    for (const c of calls) assert.ok(allowedByRbac(c.scope, c.call, c.name), `${c.call} ${c.name ?? ''} in ${c.scope} is not granted by rbac.yaml`);
    const made = new Set(calls.map((c) => `${c.scope} ${c.call}`));
    for (const ns of frontedByGateway()) {
      for (const call of API_CALLS.fronted) assert.ok(made.has(`${ns} ${call}`), `discovery made ${call} in ${ns}`);
    }
    assert.ok(made.has(`${gw['metadata']['namespace']} gateway.networking.k8s.io/gateways/status:update`));
    // waygate doctor finds nothing wrong: every check ok but the pod's readiness, which it cannot
    // reach from outside a cluster.
    assert.ok(doctor, 'doctor ran');
    const report = JSON.parse(doctor.stdout) as { checks: { id: string; status: string; message: string }[] };
    const notOk = report.checks.filter((c) => c.status !== 'ok').map((c) => `${c.id} ${c.status}: ${c.message}`);
    assert.deepEqual(notOk.map((l) => l.split(':')[0]), ['pods.ready skipped'], notOk.join('\n'));
    assert.equal(doctor.code, 0, doctor.stderr);
    for (const id of ['gateway', 'gateway.class', 'gateway.listener', 'gateway.status.addresses', 'gateway.status.conditions', 'pods.label',
      'certificate.identity', 'certificate.root', 'namespace/shop.labels', 'namespace/shop.allowedRoutes', 'namespace/shop.lockdown']) {
      assert.ok(report.checks.some((c) => c.id === id && c.status === 'ok'), `doctor check ${id} ok`);
    }
  });
});

describe('examples/gateway.yaml', () => {
  test('the annotated example is a valid config', () => {
    const file = new URL('../../examples/gateway.yaml', import.meta.url).pathname;
    const spec = parseConfigText(readFileSync(file, 'utf8'), file);
    assert.equal(spec.listen, '0.0.0.0:15008');
  });
});

/** RFC 6901 pointer -> [parent, key]; `-` appends (RFC 6902 §4.1). */
const locate = (doc: Obj, pointer: string): [Obj, string] => {
  const parts = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let parent: any = doc;
  for (const p of parts.slice(0, -1)) {
    parent = parent[Array.isArray(parent) ? Number(p) : p];
    assert.ok(parent !== undefined && parent !== null, `${pointer}: ${p} does not exist`);
  }
  return [parent, parts.at(-1)!];
};
const applyOps = (doc: Obj, ops: Obj[]): void => {
  for (const op of ops) {
    const [parent, key] = locate(doc, op['path']);
    const from = op['op'] === 'copy' ? locate(doc, op['from']) : null;
    const value = structuredClone(from ? from[0][from[1]] : op['value']);
    if (op['op'] === 'test') assert.deepEqual(parent[key], value, `test ${op['path']}: the base no longer looks as the overlay expects`);
    else if (op['op'] === 'remove') {
      assert.ok(key in parent, `remove ${op['path']}: absent`);
      if (Array.isArray(parent)) parent.splice(Number(key), 1);
      else delete parent[key];
    } else if (op['op'] === 'replace') {
      assert.ok(key in parent, `replace ${op['path']}: absent`);
      parent[key] = value;
    } else if (op['op'] === 'add' || op['op'] === 'copy') {
      if (Array.isArray(parent)) parent.splice(key === '-' ? parent.length : Number(key), 0, value);
      else parent[key] = value;
    } else assert.fail(`op ${op['op']} is not rendered here`);
  }
};

/**
 * kustomize's rendering of an overlay of examples/kubernetes (a sibling directory), restricted to
 * the features the overlays use: the base plus resource files of the overlay, configMapGenerator
 * with `behavior: replace`, and RFC 6902 patches that test the base before changing it.
 */
function renderOverlay(dir: string): Obj[] {
  const overlay = parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  assert.deepEqual(Object.keys(overlay).sort(), ['apiVersion', 'configMapGenerator', 'kind', 'patches', 'resources'], 'only the kustomize features rendered here');
  assert.equal(overlay['resources'][0], '../kubernetes');
  const base = renderedBase();
  const objs = base.objects;
  for (const r of (overlay['resources'] as string[]).slice(1)) {
    // The base's `labels` apply to the base's objects only; the overlays add none of their own.
    objs.push(...readDocs(join(dir, r)));
  }
  for (const g of overlay['configMapGenerator'] as Obj[]) {
    assert.equal(g['behavior'], 'replace');
    const old = base.generated.get(g['name'])!;
    assert.ok(old, `the base generates ${g['name']}`);
    const data: Record<string, string> = {};
    for (const f of g['files'] as string[]) data[basename(f)] = readFileSync(join(dir, f), 'utf8');
    const name = g['name'] + '-' + createHash('sha256').update(JSON.stringify(data)).digest('hex').slice(0, 10);
    const cm = objs.find((o) => o['kind'] === 'ConfigMap' && o['metadata']['name'] === old.name)!;
    assert.equal(cm['metadata']['namespace'], g['namespace']);
    Object.assign(cm, { data });
    cm['metadata']['name'] = name;
    const d = objs.find((o) => o['kind'] === 'Deployment')!;
    for (const v of d['spec']['template']['spec']['volumes'] as Obj[]) if (v['configMap']?.['name'] === old.name) v['configMap']['name'] = name;
  }
  for (const p of overlay['patches'] as Obj[]) {
    const t = p['target'];
    const hits = objs.filter((o) => o['kind'] === t['kind'] && o['metadata']['name'] === t['name'] && (t['namespace'] === undefined || o['metadata']['namespace'] === t['namespace'])
      && `${t['group'] ? `${t['group']}/` : ''}${t['version']}` === o['apiVersion']);
    assert.equal(hits.length, 1, `patch target ${t['kind']} ${t['name']} matches one object`);
    const ops = parseYaml(p['patch']) as Obj[];
    assert.ok(ops.some((o) => o['op'] === 'test'), `the patch of ${t['kind']} ${t['name']} tests the base before changing it`);
    applyOps(hits[0]!, ops);
  }
  return objs;
}

/**
 * examples/kubernetes-sandwich/: the overlay that puts waygate in sandwich mode (docs/waypoint.md),
 * rendered as kustomize does from the base's rendering (above) and its own three features: the
 * config ConfigMap replaced (`behavior: replace`, new hash suffix, references rewritten) and JSON
 * patches (RFC 6902: add, remove, replace, copy, test) on named targets. Then checked as the base is:
 * the config loads with waygate's loader, and the names and ports agree across the objects.
 */
describe('examples/kubernetes-sandwich: sandwich mode as an overlay of examples/kubernetes', () => {
  const SANDWICH = new URL('../../examples/kubernetes-sandwich/', import.meta.url).pathname;
  const sw = renderOverlay(SANDWICH);
  const swOne = (kind: string, name: string): Obj => oneIn(sw, kind, name);
  const swConfigText = (): string => configTextIn(sw);

  test('the same objects as the base; only the namespace label, the pod label, the Gateway and the config differ', () => {
    const key = (o: Obj): string => `${kindOf(o)} ${o['metadata']['namespace'] ?? ''}/${o['metadata']['name']}`;
    const base = renderedBase().objects;
    const strip = (o: Obj): string => key({ ...o, metadata: { ...o['metadata'], name: o['kind'] === 'ConfigMap' ? o['metadata']['name'].replace(/-[0-9a-f]{10}$/, '') : o['metadata']['name'] } });
    assert.deepEqual(sw.map(strip).sort(), base.map(strip).sort());
    const changed = sw.filter((o) => JSON.stringify(o) !== JSON.stringify(base.find((b) => strip(b) === strip(o)))).map(strip).sort();
    assert.deepEqual(changed, ['apps/v1/Deployment waygate/waygate', 'gateway.networking.k8s.io/v1/Gateway waygate/waygate', 'v1/ConfigMap waygate/waygate-config', 'v1/Namespace /waygate']);
    // The config ConfigMap has a new name, so applying the overlay (and the base again) rolls the pods.
    assert.match(swConfigText(), /sandwich:/);
    assert.notEqual(JSON.stringify(sw.find((o) => strip(o) === 'v1/ConfigMap waygate/waygate-config')!['metadata']['name']), JSON.stringify(generated.get('waygate-config')!.name));
  });

  test('waygate\'s own pods are in the ambient mesh: namespace labelled ambient, no pod-level opt-out, still the waypoint\'s instances', () => {
    assert.equal(swOne('Namespace', 'waygate')['metadata']['labels']['istio.io/dataplane-mode'], 'ambient');
    const d = swOne('Deployment', 'waygate');
    const labels = d['spec']['template']['metadata']['labels'] as Record<string, string>;
    assert.equal(labels['istio.io/dataplane-mode'], undefined, 'a pod labelled `none` stays out of the mesh whatever its namespace says');
    assert.equal(labels['gateway.networking.k8s.io/gateway-name'], 'waygate');
    assert.ok(matches(d['spec']['selector']['matchLabels'], labels));
  });

  test('the Gateway: the inbound binding PROXY/<sandwich port>, a listener on that port with the HBONE listener\'s allowedRoutes', () => {
    const gw = swOne('Gateway', 'waygate');
    const binding = /^PROXY\/(\d+)$/.exec(gw['metadata']['annotations']['ambient.istio.io/waypoint-inbound-binding']);
    assert.ok(binding, 'ambient.istio.io/waypoint-inbound-binding: PROXY/<port>');
    const port = Number(binding[1]);
    const listeners = gw['spec']['listeners'] as Obj[];
    // istiod (waypoints.go findBoundListener) takes the first listener whose port is the binding's.
    const bound = listeners.find((l) => l['port'] === port)!;
    assert.ok(bound, `a listener on ${port}`);
    assert.equal(bound['protocol'], 'istio.io/PROXY');
    const hbone = listeners.find((l) => l['port'] === 15008 && l['protocol'] === 'HBONE')!;
    assert.ok(hbone, 'the HBONE listener stays: waygate\'s registration programs the Gateway on it');
    assert.deepEqual(bound['allowedRoutes'], hbone['allowedRoutes'], 'one list of fronted namespaces');
    assert.equal(new Set(listeners.map((l) => l['name'])).size, listeners.length, 'listener names are unique');
    // The port agrees with the config's sandwich.listen.
    const spec = parseConfigText(swConfigText(), 'gateway.yaml', '/');
    assert.equal(Number(spec.sandwich!.listen!.split(':').at(-1)), port);
  });

  test('the config loads and differs from the base\'s only in `listen` (loopback, off 15008) and `sandwich` (loopback, with discovery)', () => {
    const spec = parseConfigText(swConfigText(), 'gateway.yaml', '/');
    const base = gatewayConfigSpec();
    const { listen, sandwich, ...rest } = spec;
    const { listen: baseListen, sandwich: baseSandwich, ...baseRest } = base;
    assert.deepEqual(rest, baseRest, 'everything else as the base (discovery, registration, tls, policies, admin)');
    assert.equal(baseListen, '0.0.0.0:15008');
    assert.equal(baseSandwich, undefined, 'the base leaves sandwich mode off');
    assert.match(sandwich!.listen!, /^127\.0\.0\.1:\d+$/);
    assert.ok(sandwich!.headerTimeoutMs! > 0);
    assert.ok(spec.discovery!.kubernetes, 'sandwich mode dials only endpoints discovery picks');
    // In the pod's network namespace 15008 is the in-pod ztunnel's: waygate's own HBONE listener
    // moves to loopback on a port no other listener of the pod uses.
    const hp = /^(.*):(\d+)$/.exec(listen!)!;
    assert.equal(hp[1], '127.0.0.1');
    const ports = [15008, 15001, 15006, 15053, Number(sandwich!.listen!.split(':')[1]),
      ...[spec.admin!.readyAddress!, spec.admin!.metricsAddress!, spec.admin!.adminAddress!].map((a) => Number(a.split(':').at(-1)))];
    assert.ok(!ports.includes(Number(hp[2])), `listen port ${hp[2]} is free in the pod`);
  });
});

/**
 * examples/kubernetes-cert-manager/: the certificate from cert-manager's Secret instead of istiod's
 * CA. The overlay adds the Certificate, swaps the token and mesh-root volumes for the Secret, and
 * replaces the config with one reading the files; nothing else changes.
 */
describe('examples/kubernetes-cert-manager: the certificate from files, as an overlay of examples/kubernetes', () => {
  const DIR = new URL('../../examples/kubernetes-cert-manager/', import.meta.url).pathname;
  const cm = renderOverlay(DIR);
  const cmOne = (kind: string, name: string): Obj => oneIn(cm, kind, name);
  const pod = (): Obj => cmOne('Deployment', 'waygate')['spec']['template']['spec'];
  const configText = (): string => configTextIn(cm);

  test('the Certificate carries the ServiceAccount\'s SPIFFE ID and is issued into the Secret the Deployment mounts', () => {
    const cert = cmOne('Certificate', 'waygate');
    const sa = cmOne('ServiceAccount', 'waygate');
    assert.equal(cert['metadata']['namespace'], GATEWAY_NAMESPACE);
    assert.deepEqual(cert['spec']['uris'], [`spiffe://cluster.local/ns/${sa['metadata']['namespace']}/sa/${sa['metadata']['name']}`]);
    assert.ok(cert['spec']['issuerRef']['name']);
    const volumes = new Map((pod()['volumes'] as Obj[]).map((v) => [v['name'], v]));
    assert.equal(volumes.get('tls')!['secret']['secretName'], cert['spec']['secretName']);
    assert.ok(!volumes.has('istio-token') && !volumes.has('istio-ca-root-cert'), 'no token or root volume left over');
    const mounts = pod()['containers'][0]['volumeMounts'] as Obj[];
    assert.deepEqual(mounts.map((m) => m['name']).sort(), [...volumes.keys()].sort(), 'every volume mounted, every mount has a volume');
    assert.ok(mounts.every((m) => m['readOnly'] === true));
  });

  test('the config reads the Secret\'s files and differs from the base\'s only in `tls`', () => {
    const spec = parseConfigText(configText(), 'gateway.yaml', '/');
    const mounts = new Map((pod()['containers'][0]['volumeMounts'] as Obj[]).map((m) => [m['name'], m['mountPath'] as string]));
    assert.deepEqual([spec.tls!.certFile, spec.tls!.keyFile, spec.tls!.trustBundleFiles],
      [`${mounts.get('tls')}/tls.crt`, `${mounts.get('tls')}/tls.key`, [`${mounts.get('tls')}/ca.crt`]], 'cert-manager\'s Secret layout');
    assert.equal(spec.tls!.istioCa, undefined);
    const { tls, ...rest } = spec;
    const { tls: baseTls, ...baseRest } = gatewayConfigSpec();
    assert.ok(baseTls!.istioCa, 'the base asks the mesh CA');
    assert.deepEqual(rest, baseRest, 'everything else as the base');
  });

  test('only the Deployment and the config change, and the Certificate is added', () => {
    const key = (o: Obj): string => `${kindOf(o)} ${o['metadata']['namespace'] ?? ''}/${o['kind'] === 'ConfigMap' ? o['metadata']['name'].replace(/-[0-9a-f]{10}$/, '') : o['metadata']['name']}`;
    const base = renderedBase().objects;
    assert.deepEqual(cm.map(key).sort(), [...base.map(key), 'cert-manager.io/v1/Certificate waygate/waygate'].sort());
    const changed = cm.filter((o) => JSON.stringify(o) !== JSON.stringify(base.find((b) => key(b) === key(o)))).map(key).sort();
    assert.deepEqual(changed, ['apps/v1/Deployment waygate/waygate', 'cert-manager.io/v1/Certificate waygate/waygate', 'v1/ConfigMap waygate/waygate-config']);
  });
});
