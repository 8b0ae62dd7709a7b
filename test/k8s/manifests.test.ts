/**
 * Validates examples/kubernetes/ without kubectl or a network schema download: renders the
 * kustomization the way kustomize does (resources, namespace, labels, images, configMapGenerator
 * with name-suffix hashes and reference rewriting) and checks each object structurally, then loads
 * the generated gateway config and policies with waygate's own loaders.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, test } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseConfigText } from '../../src/config/load.ts';
import { loadPolicySet } from '../../src/policy/load.ts';

const ROOT = new URL('../../examples/kubernetes/', import.meta.url).pathname;

// Manifests are free-form YAML; the checks below are what give them shape.
type Obj = Record<string, any>;

interface Kustomization {
  namespace?: string;
  labels?: { pairs: Record<string, string> }[];
  resources: string[];
  configMapGenerator?: { name: string; files: string[]; options?: { disableNameSuffixHash?: boolean } }[];
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
};

const kindOf = (o: Obj): string => `${o['apiVersion']}/${o['kind']}`;

function readDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const list = Array.isArray(docs) ? docs : [];
  for (const d of list) assert.equal(d.errors.length, 0, `${file}: ${d.errors.map((e) => e.message).join('; ')}`);
  return list.map((d) => d.toJS() as Obj).filter((o) => o !== null);
}

/** kustomize's rendering, restricted to the features this kustomization uses. */
function render(): { objects: Obj[]; generated: Map<string, { name: string; data: Record<string, string> }> } {
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
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: g.name + suffix }, data });
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
  return { objects, generated };
}

const { objects, generated } = render();
const find = (kind: string, name?: string): Obj[] => objects.filter((o) => o['kind'] === kind && (name === undefined || o['metadata']['name'] === name));
const one = (kind: string, name?: string): Obj => {
  const found = find(kind, name);
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ` ${name}` : ''}`);
  return found[0]!;
};
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('examples/kubernetes renders to valid objects', () => {
  test('every object has a known apiVersion/kind, a DNS-1123 name, and the namespace when namespaced', () => {
    assert.ok(objects.length >= 9);
    for (const o of objects) {
      const known = KNOWN[kindOf(o)];
      assert.ok(known, `unknown apiVersion/kind ${kindOf(o)}`);
      const name = o['metadata']['name'] as string;
      assert.match(name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${kindOf(o)} name ${name}`);
      assert.ok(name.length <= 63);
      if (known.namespaced) assert.equal(o['metadata']['namespace'], 'waygate', `${kindOf(o)} ${name}`);
      assert.equal(o['metadata']['labels']['app.kubernetes.io/part-of'], 'waygate');
    }
    for (const kind of ['Namespace', 'ServiceAccount', 'Certificate', 'Deployment', 'Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler']) one(kind);
  });

  test('the Deployment: probes, ports, security, resources, anti-affinity, grace period, volumes', () => {
    const d = one('Deployment', 'waygate');
    const tpl = d['spec']['template'];
    assert.ok(matches(d['spec']['selector']['matchLabels'], tpl['metadata']['labels']), 'selector matches the pod template');
    const pod = tpl['spec'];
    one('ServiceAccount', pod['serviceAccountName']);
    assert.equal(pod['securityContext']['runAsNonRoot'], true);
    assert.ok(pod['affinity']['podAntiAffinity'], 'anti-affinity');
    assert.equal(pod['containers'].length, 1);
    const c = pod['containers'][0];
    assert.match(c['image'], /^ghcr\.io\/example\/waygate:0\.1\.0$/, 'images: override applied');
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

    const volumes = new Map((pod['volumes'] as Obj[]).map((v) => [v['name'], v]));
    for (const m of c['volumeMounts']) assert.ok(volumes.has(m['name']), `volumeMount ${m['name']} has a volume`);
    const configMaps = new Set(find('ConfigMap').map((o) => o['metadata']['name']));
    const secrets = new Set([...find('Secret').map((o) => o['metadata']['name']), ...find('Certificate').map((o) => o['spec']['secretName'])]);
    for (const v of volumes.values()) {
      if (v['configMap']) assert.ok(configMaps.has(v['configMap']['name']), `ConfigMap ${v['configMap']['name']} exists`);
      if (v['secret']) assert.ok(secrets.has(v['secret']['secretName']), `Secret ${v['secret']['secretName']} exists or is issued`);
    }
    assert.match(volumes.get('config')!['configMap']['name'], /^waygate-config-[0-9a-f]{10}$/, 'the config ConfigMap is hash-suffixed');
    assert.equal(volumes.get('policies')!['configMap']['name'], 'waygate-policies', 'the policies ConfigMap keeps its name (hot reload)');
  });

  test('the Service, PDB and HPA point at the Deployment', () => {
    const d = one('Deployment', 'waygate');
    const podLabels = d['spec']['template']['metadata']['labels'];
    const containerPorts = d['spec']['template']['spec']['containers'][0]['ports'] as Obj[];
    const svc = one('Service', 'waygate');
    assert.ok(matches(svc['spec']['selector'], podLabels));
    const byTarget = new Map(svc['spec']['ports'].map((p: Obj) => [p['port'], p]));
    assert.deepEqual([...byTarget.keys()].sort(), [15008, 15020]);
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

  test('the certificate carries the ServiceAccount\'s SPIFFE ID', () => {
    const cert = one('Certificate');
    assert.deepEqual(cert['spec']['uris'], ['spiffe://cluster.local/ns/waygate/sa/waygate']);
    assert.ok(cert['spec']['issuerRef']['name']);
  });

  test('the generated gateway config loads and reads the files the Deployment mounts', () => {
    const d = one('Deployment', 'waygate');
    const c = d['spec']['template']['spec']['containers'][0];
    const mounts = new Map((c['volumeMounts'] as Obj[]).map((m) => [m['name'], m['mountPath'] as string]));
    const text = generated.get('waygate-config')!.data['gateway.yaml']!;
    const spec = parseConfigText(text, 'gateway.yaml', '/');
    assert.deepEqual(c['args'], ['serve', '--config', `${mounts.get('config')}/gateway.yaml`]);
    assert.ok(spec.tls!.certFile!.startsWith(mounts.get('tls')! + '/'));
    assert.ok(spec.tls!.keyFile!.startsWith(mounts.get('tls')! + '/'));
    assert.deepEqual(spec.policies!.paths, [mounts.get('policies')]);
    assert.equal(spec.listen, '0.0.0.0:15008');
    assert.equal(spec.admin!.readyAddress, '0.0.0.0:15021');
    assert.equal(spec.admin!.metricsAddress, '0.0.0.0:15020');
    assert.match(spec.admin!.adminAddress!, /^127\.0\.0\.1:/);
    assert.ok(spec.destinations!.allow!.length > 0);
  });

  test('the generated policies load as one snapshot', async () => {
    const files = Object.keys(generated.get('waygate-policies')!.data).map((f) => join(ROOT, 'policies', f));
    const result = await loadPolicySet(files, { version: 1 });
    assert.ok(result.ok, result.ok ? '' : JSON.stringify(result.diagnostics));
    assert.equal(result.snapshot.policies.length, 2);
  });

  test('waypoint.yaml (optional) declares an HBONE listener on 15008 for an unmanaged class', () => {
    const docs = readDocs(join(ROOT, 'waypoint.yaml'));
    for (const o of docs) assert.ok(KNOWN[kindOf(o)], kindOf(o));
    const cls = docs.find((o) => o['kind'] === 'GatewayClass')!;
    const gw = docs.find((o) => o['kind'] === 'Gateway')!;
    assert.equal(gw['spec']['gatewayClassName'], cls['metadata']['name']);
    assert.deepEqual(gw['spec']['listeners'].map((l: Obj) => [l['port'], l['protocol']]), [[15008, 'HBONE']]);
  });
});

describe('examples/gateway.yaml', () => {
  test('the annotated example is a valid config', () => {
    const file = new URL('../../examples/gateway.yaml', import.meta.url).pathname;
    const spec = parseConfigText(readFileSync(file, 'utf8'), file);
    assert.equal(spec.listen, '0.0.0.0:15008');
  });
});
