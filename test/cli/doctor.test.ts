/**
 * `waygate doctor` (src/cli/doctor.ts) against the fake API server (test/helpers/fake-kube-api.ts)
 * holding a deployment shaped like examples/kubernetes/: a good one is all ok (exit 0), and each
 * way of breaking it is reported by the check that names it, with a fix (exit 1); no credentials
 * or no API server is exit 2. Certificates come from the test PKI; a pod's readiness endpoint is a
 * real HTTP server on 127.0.0.1 (the pod's IP).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runDoctor, type Check, type DoctorOptions, type DoctorReport } from '../../src/cli/doctor.ts';
import { desiredGatewayStatus, type GatewayObject, type ServiceObject } from '../../src/kube/gateway-status.ts';
import { startFakeKubeApi, type FakeKubeApi, type KubeObject } from '../helpers/fake-kube-api.ts';
import { spiffe, testPki } from '../helpers/pki.ts';
import { runCli } from '../helpers/cli.ts';

const GW_API = 'gateway.networking.k8s.io/v1';
const NS = 'waygate';

let readyServer: http.Server;
let readyPort: number;
let readyAnswer = { code: 200, body: { ready: true, reasons: [] as string[] } };

before(async () => {
  readyServer = http.createServer((req, res) => {
    res.writeHead(req.url === '/healthz/ready' ? readyAnswer.code : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(readyAnswer.body));
  });
  readyServer.listen(0, '127.0.0.1');
  await new Promise((r) => readyServer.once('listening', r));
  readyPort = (readyServer.address() as AddressInfo).port;
});
after(() => new Promise((r) => readyServer.close(r)));

const GATEWAY_YAML = [
  'apiVersion: waygate.dev/v1alpha1', 'kind: GatewayConfig', 'metadata: { name: waygate }', 'spec:',
  '  discovery:', '    kubernetes:', '      namespaces: [shop]', '  registration:', '    enabled: true', '',
].join('\n');

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** A deployment as examples/kubernetes/ lays it out, every piece right. */
function goodDeployment(opts: { certSa?: string } = {}): KubeObject[] {
  const pki = testPki();
  const cert = pki.issue({ spiffeId: spiffe(opts.certSa ?? 'waygate', NS) });
  const service: KubeObject = {
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'waygate', namespace: NS },
    spec: { clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50'], ports: [{ name: 'hbone', port: 15008, targetPort: 15008 }] },
  };
  const gw = {
    apiVersion: GW_API, kind: 'Gateway', metadata: { name: 'waygate', namespace: NS, generation: 1, labels: { 'istio.io/waypoint-for': 'all' } },
    spec: {
      gatewayClassName: 'waygate',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE', allowedRoutes: { namespaces: { from: 'Selector', selector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['shop'] }] } } } }],
    },
  };
  const status = desiredGatewayStatus(gw as unknown as GatewayObject, service as unknown as ServiceObject, { serviceName: 'waygate', clusterDomain: 'cluster.local' });
  const podLabels = { 'app.kubernetes.io/name': 'waygate', 'gateway.networking.k8s.io/gateway-name': 'waygate' };
  const container = { name: 'waygate', image: 'waygate', ports: [{ name: 'hbone', containerPort: 15008 }, { name: 'health', containerPort: readyPort }] };
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'kubernetes.io/metadata.name': NS } } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'kubernetes.io/metadata.name': 'shop', 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waygate', 'istio.io/use-waypoint-namespace': NS } } },
    { apiVersion: GW_API, kind: 'GatewayClass', metadata: { name: 'waygate' }, spec: { controllerName: 'waygate.dev/gateway-controller' },
      status: { conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Handled by waygate', observedGeneration: 1, lastTransitionTime: '2026-12-07T00:00:00Z' }] } },
    { ...gw, status } as KubeObject,
    service,
    {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'waygate', namespace: NS },
      spec: {
        selector: { matchLabels: { 'app.kubernetes.io/name': 'waygate' } },
        template: {
          metadata: { labels: podLabels },
          spec: { serviceAccountName: 'waygate', containers: [container], volumes: [{ name: 'config', configMap: { name: 'waygate-config-5h8k2m' } }, { name: 'tls', secret: { secretName: 'waygate-tls' } }] },
        },
      },
    },
    {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'waygate-7d9f-abcde', namespace: NS, labels: podLabels },
      spec: { serviceAccountName: 'waygate', containers: [container] },
      status: { phase: 'Running', podIP: '127.0.0.1' },
    },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'waygate-tls', namespace: NS }, type: 'kubernetes.io/tls',
      data: { 'tls.crt': b64(cert.chainPem), 'tls.key': b64(cert.keyPem), 'ca.crt': b64(pki.trustBundlePem) } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio-ca-root-cert', namespace: NS }, data: { 'root-cert.pem': pki.trustBundlePem } },
    // kustomize's configMapGenerator adds a hash suffix: the Deployment names the generated one.
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'waygate-config-5h8k2m', namespace: NS }, data: { 'gateway.yaml': GATEWAY_YAML } },
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'waygate-lockdown', namespace: 'shop' },
      spec: { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['cluster.local/ns/waygate/sa/waygate'] } }] }] } },
  ];
}

const options = (api: FakeKubeApi, extra: Partial<DoctorOptions> = {}): DoctorOptions => ({
  kubeconfig: api.writeKubeconfig(mkdtempSync(join(tmpdir(), 'wg-doctor-'))),
  namespace: NS, gateway: 'waygate', trustDomain: 'cluster.local', clusterDomain: 'cluster.local',
  controllerName: 'waygate.dev/gateway-controller', readinessTimeoutMs: 5_000, ...extra,
});

const byId = (r: DoctorReport, id: string): Check => {
  const c = r.checks.find((x) => x.id === id);
  assert.ok(c, `no check ${id} in ${r.checks.map((x) => x.id).join(', ')}`);
  return c;
};
const failed = (r: DoctorReport): string[] => r.checks.filter((c) => c.status === 'fail').map((c) => c.id);

async function withApi(objects: KubeObject[], fn: (api: FakeKubeApi) => Promise<void>): Promise<void> {
  const api = await startFakeKubeApi();
  for (const o of objects) api.apply(o);
  try { await fn(api); } finally { await api.close(); }
}

describe('waygate doctor', () => {
  test('a good deployment: every check ok, fronted namespaces read from the Gateway, the config and the labels, exit 0', async () => {
    await withApi(goodDeployment(), async (api) => {
      const r = await runDoctor(options(api));
      assert.deepEqual(r.checks.filter((c) => c.status !== 'ok'), []);
      assert.deepEqual(r.fronted, ['shop']);
      assert.deepEqual(r.checks.map((c) => c.id), [
        'gateway', 'gateway.class', 'gateway.listener', 'gateway.waypointFor', 'gateway.status.addresses', 'gateway.status.conditions',
        'pods.label', 'pods.ready', 'config', 'certificate.identity', 'certificate.root',
        'namespace/shop.labels', 'namespace/shop.allowedRoutes', 'namespace/shop.discovery', 'namespace/shop.lockdown',
      ]);
      assert.match(byId(r, 'certificate.identity').message, /spiffe:\/\/cluster.local\/ns\/waygate\/sa\/waygate/);

      const cli = await runCli(['doctor', '--kubeconfig', options(api).kubeconfig!]);
      assert.equal(cli.code, 0, cli.stdout + cli.stderr);
      assert.match(cli.stdout, /^waygate doctor: Gateway waygate\/waygate via https:\/\/127\.0\.0\.1:\d+ .*fronting shop\n/);
      assert.match(cli.stdout, /0 failed, 0 warning\(s\), 15 ok, 0 skipped\n$/);
      const json = await runCli(['doctor', '--kubeconfig', options(api).kubeconfig!, '-o', 'json']);
      const parsed = JSON.parse(json.stdout) as DoctorReport;
      assert.deepEqual(parsed.summary, { ok: 15, warn: 0, fail: 0, skipped: 0 });
    });
  });

  test('a wrong namespace label: the labels check fails naming the label and the kubectl fix; exit 1', async () => {
    const objects = goodDeployment();
    const shop = objects.find((o) => o.kind === 'Namespace' && o.metadata.name === 'shop')!;
    shop.metadata.labels = { ...shop.metadata.labels, 'istio.io/use-waypoint-namespace': 'shop' };
    await withApi(objects, async (api) => {
      const r = await runDoctor(options(api, { fronted: ['shop'] }));
      assert.deepEqual(failed(r), ['namespace/shop.labels']);
      const c = byId(r, 'namespace/shop.labels');
      assert.match(c.message, /istio\.io\/use-waypoint-namespace is shop, not waygate/);
      assert.equal(c.fix, 'kubectl label namespace shop istio.io/use-waypoint=waygate istio.io/use-waypoint-namespace=waygate --overwrite');
      const cli = await runCli(['doctor', '--kubeconfig', options(api).kubeconfig!, '--fronted', 'shop']);
      assert.equal(cli.code, 1);
      assert.match(cli.stdout, /FAIL {2}namespace\/shop\.labels/);
      assert.match(cli.stdout, /fix: kubectl label namespace shop/);
    });
  });

  test('a namespace the listener does not admit', async () => {
    await withApi(goodDeployment(), async (api) => {
      api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'payments', labels: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waygate', 'istio.io/use-waypoint-namespace': NS } } });
      const r = await runDoctor(options(api));
      assert.deepEqual(r.fronted, ['payments', 'shop'], 'labelled namespaces are found too');
      assert.deepEqual(failed(r), ['namespace/payments.allowedRoutes', 'namespace/payments.discovery', 'namespace/payments.lockdown']);
      assert.match(byId(r, 'namespace/payments.discovery').message, /does not list payments in discovery\.kubernetes\.namespaces: waygate refuses tunnels to its services/);
      assert.match(byId(r, 'namespace/payments.allowedRoutes').message, /do not admit namespace payments/);
    });
  });

  test('registration off in the mounted config, and a Gateway of the class in another namespace: warnings', async () => {
    const objects = goodDeployment();
    objects.find((o) => o.metadata.name === 'waygate-config-5h8k2m')!['data'] = { 'gateway.yaml': GATEWAY_YAML.replace('enabled: true', 'enabled: false') };
    await withApi(objects, async (api) => {
      api.apply({ apiVersion: GW_API, kind: 'Gateway', metadata: { name: 'waygate', namespace: 'shop' }, spec: { gatewayClassName: 'waygate', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } });
      const r = await runDoctor(options(api));
      assert.deepEqual(failed(r), []);
      assert.deepEqual(r.checks.filter((c) => c.status === 'warn').map((c) => c.id), ['gateway.others', 'config']);
      assert.match(byId(r, 'gateway.others').message, /shop\/waygate of class waygate are not in waygate/);
      assert.match(byId(r, 'config').message, /ConfigMap waygate\/waygate-config-5h8k2m gateway\.yaml: registration\.enabled is not true/);
      const cli = await runCli(['doctor', '--kubeconfig', options(api).kubeconfig!]);
      assert.equal(cli.code, 0, 'warnings alone are exit 0');
    });
  });

  test('waypoint-for service (or unset): a warning that pod-addressed traffic bypasses waygate', async () => {
    const objects = goodDeployment();
    const gw = objects.find((o) => o.kind === 'Gateway')!;
    gw.metadata.labels = {};
    await withApi(objects, async (api) => {
      let r = await runDoctor(options(api));
      assert.equal(byId(r, 'gateway.waypointFor').status, 'warn');
      assert.match(byId(r, 'gateway.waypointFor').message, /not set \(istiod: service\): traffic addressed to pod IPs/);
      // The class's label counts when the Gateway has none.
      const gc = api.get(GW_API, 'GatewayClass', null, 'waygate')!;
      api.apply({ ...gc, metadata: { ...gc.metadata, labels: { 'istio.io/waypoint-for': 'all' } } });
      r = await runDoctor(options(api));
      assert.equal(byId(r, 'gateway.waypointFor').status, 'ok');
    });
  });

  test('a pod without the gateway-name label', async () => {
    const objects = goodDeployment();
    const pod = objects.find((o) => o.kind === 'Pod')!;
    pod.metadata.labels = { 'app.kubernetes.io/name': 'waygate' };
    await withApi(objects, async (api) => {
      const r = await runDoctor(options(api));
      assert.deepEqual(failed(r), ['pods.label']);
      assert.match(byId(r, 'pods.label').message, /waygate-7d9f-abcde lack the label gateway\.networking\.k8s\.io\/gateway-name: waygate/);
      assert.match(byId(r, 'pods.label').fix!, /pod template labels/);
    });
  });

  test('a Gateway without status addresses (registration off): the addresses and conditions checks fail', async () => {
    const objects = goodDeployment();
    const gw = objects.find((o) => o.kind === 'Gateway')!;
    delete gw['status'];
    await withApi(objects, async (api) => {
      const r = await runDoctor(options(api));
      assert.deepEqual(failed(r), ['gateway.status.addresses', 'gateway.status.conditions']);
      assert.match(byId(r, 'gateway.status.addresses').message, /no status addresses: istiod does not treat it as a waypoint/);
      assert.match(byId(r, 'gateway.status.addresses').fix!, /registration\.enabled: true/);
      assert.match(byId(r, 'gateway.status.conditions').message, /Accepted is not set; Programmed is not set/);
    });
  });

  test('a status hostname in another namespace is the failure istiod would have', async () => {
    const objects = goodDeployment();
    const gw = objects.find((o) => o.kind === 'Gateway')!;
    gw['status'] = { ...(gw['status'] as object), addresses: [{ type: 'Hostname', value: 'waygate.shop.svc.cluster.local' }] };
    await withApi(objects, async (api) => {
      const r = await runDoctor(options(api));
      assert.deepEqual(failed(r), ['gateway.status.addresses']);
      assert.match(byId(r, 'gateway.status.addresses').message, /names namespace shop, but istiod looks a Gateway's hostname up in the Gateway's own namespace \(waygate\)/);
    });
  });

  test('a certificate for the wrong service account', async () => {
    await withApi(goodDeployment({ certSa: 'gateway' }), async (api) => {
      const r = await runDoctor(options(api));
      assert.deepEqual(failed(r), ['certificate.identity']);
      const c = byId(r, 'certificate.identity');
      assert.match(c.message, /names spiffe:\/\/cluster\.local\/ns\/waygate\/sa\/gateway, but the pods run as ServiceAccount waygate/);
      assert.match(c.fix!, /URI SAN spiffe:\/\/cluster\.local\/ns\/waygate\/sa\/waygate/);
      assert.equal(byId(r, 'certificate.root').status, 'ok');
    });
  });

  test('a certificate from another CA does not chain to the mesh root', async () => {
    const objects = goodDeployment();
    const foreign = testPki().issue({ spiffeId: spiffe('waygate', NS), issuer: 'foreign' });
    objects.find((o) => o.kind === 'Secret')!['data'] = { 'tls.crt': b64(foreign.chainPem), 'tls.key': b64(foreign.keyPem) };
    await withApi(objects, async (api) => {
      const r = await runDoctor(options(api));
      assert.deepEqual(failed(r), ['certificate.root']);
    });
  });

  test('a missing lockdown, and one that lets others around waygate', async () => {
    const objects = goodDeployment().filter((o) => o.kind !== 'AuthorizationPolicy');
    await withApi(objects, async (api) => {
      let r = await runDoctor(options(api));
      assert.deepEqual(failed(r), ['namespace/shop.lockdown']);
      assert.match(byId(r, 'namespace/shop.lockdown').message, /no lockdown in shop/);
      assert.match(byId(r, 'namespace/shop.lockdown').fix!, /notPrincipals \[cluster\.local\/ns\/waygate\/sa\/waygate\]/);
      // A policy with a selector covers only some pods: not a lockdown.
      api.apply({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'partial', namespace: 'shop' },
        spec: { action: 'DENY', selector: { matchLabels: { app: 'api' } }, rules: [{ from: [{ source: { notPrincipals: ['cluster.local/ns/waygate/sa/waygate'] } }] }] } });
      r = await runDoctor(options(api));
      assert.equal(byId(r, 'namespace/shop.lockdown').status, 'fail');
      api.apply({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'lockdown', namespace: 'shop' },
        spec: { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['cluster.local/ns/waygate/sa/waygate', 'cluster.local/ns/monitoring/sa/prometheus'] } }] }] } });
      r = await runDoctor(options(api));
      assert.equal(byId(r, 'namespace/shop.lockdown').status, 'warn');
      assert.match(byId(r, 'namespace/shop.lockdown').message, /also cluster\.local\/ns\/monitoring\/sa\/prometheus/);
    });
  });

  test('a pod not ready says so; an unreachable pod IP is skipped with the reason; a forbidden read is skipped, not failed', async () => {
    await withApi(goodDeployment(), async (api) => {
      readyAnswer = { code: 503, body: { ready: false, reasons: ['policy_snapshot_not_loaded'] } };
      try {
        const r = await runDoctor(options(api));
        assert.deepEqual(failed(r), ['pods.ready']);
        assert.match(byId(r, 'pods.ready').message, /not ready \(503: policy_snapshot_not_loaded\)/);
      } finally {
        readyAnswer = { code: 200, body: { ready: true, reasons: [] } };
      }
      // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never routed, so the request times out.
      const pod = api.get('v1', 'Pod', NS, 'waygate-7d9f-abcde')!;
      api.apply({ ...pod, status: { phase: 'Running', podIP: '192.0.2.10' } });
      api.forbid('list', 'authorizationpolicies');
      const r = await runDoctor(options(api, { readinessTimeoutMs: 50 }));
      assert.equal(byId(r, 'pods.ready').status, 'skipped');
      assert.match(byId(r, 'pods.ready').message, /^not checked: http:\/\/192\.0\.2\.10:\d+\/healthz\/ready .* is not reachable from here/);
      assert.equal(byId(r, 'namespace/shop.lockdown').status, 'skipped');
      assert.match(byId(r, 'namespace/shop.lockdown').message, /your credentials cannot read AuthorizationPolicies in shop \(403/);
      assert.deepEqual(failed(r), []);
    });
  });

  test('cannot run: the API server down or the credentials refused is exit 2', async () => {
    await withApi([], async (api) => {
      const kubeconfig = options(api).kubeconfig!;
      const bad = api.writeKubeconfig(mkdtempSync(join(tmpdir(), 'wg-doctor-')), { token: 'wrong' });
      const refused = await runCli(['doctor', '--kubeconfig', bad]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /cannot run: the API server https:\/\/127\.0\.0\.1:\d+ .* refused the credentials \(401 Unauthorized\)/);
      await api.stop();
      const down = await runCli(['doctor', '--kubeconfig', kubeconfig, '-o', 'json']);
      assert.equal(down.code, 2);
      const body = JSON.parse(down.stdout) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'WG_KUBE');
      assert.match(body.error.message, /cannot be reached \(.*ECONNREFUSED/);
      await api.start();
    });
  });
});

/**
 * With `tls.istioCa` in the mounted config there is no Secret: doctor checks what the CSR needs
 * (src/cli/doctor.ts meshCaChecks), as examples/kubernetes/ lays it out.
 */
describe('waygate doctor with the certificate from the mesh CA', () => {
  const MESH_CA_YAML = GATEWAY_YAML.replace('spec:\n', 'spec:\n  tls:\n    trustBundleFiles: [/var/run/secrets/istio/root-cert.pem]\n    istioCa:\n      tokenFile: /var/run/secrets/tokens/istio-token\n');
  /** goodDeployment() with the token and root volumes instead of the Secret; `edit` changes the pod template or the config. */
  function meshCaDeployment(edit: { audience?: string; identity?: string; rootVolume?: 'none' | 'other-configmap' } = {}): KubeObject[] {
    const objects = goodDeployment().filter((o) => o.kind !== 'Secret');
    const dep = objects.find((o) => o.kind === 'Deployment')!;
    const pod = (dep['spec'] as any)['template']['spec'];
    pod.volumes = [
      { name: 'config', configMap: { name: 'waygate-config-5h8k2m' } },
      { name: 'istio-token', projected: { sources: [{ serviceAccountToken: { audience: edit.audience ?? 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] } },
      ...(edit.rootVolume === 'none' ? [] : [{ name: 'istio-ca-root-cert', configMap: { name: edit.rootVolume === 'other-configmap' ? 'my-roots' : 'istio-ca-root-cert' } }]),
    ];
    pod.containers = [{ ...pod.containers[0], volumeMounts: [
      { name: 'config', mountPath: '/etc/waygate/config', readOnly: true },
      { name: 'istio-token', mountPath: '/var/run/secrets/tokens', readOnly: true },
      ...(edit.rootVolume === 'none' ? [] : [{ name: 'istio-ca-root-cert', mountPath: '/var/run/secrets/istio', readOnly: true }]),
    ] }];
    const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'waygate-config-5h8k2m')!;
    cm['data'] = { 'gateway.yaml': edit.identity ? MESH_CA_YAML.replace('      tokenFile:', `      identity: ${edit.identity}\n      tokenFile:`) : MESH_CA_YAML };
    return objects;
  }

  test('the example\'s layout: the token of audience istio-ca, the mesh root mounted where trustBundleFiles reads it, every check ok', async () => {
    await withApi(meshCaDeployment(), async (api) => {
      const r = await runDoctor(options(api));
      assert.deepEqual(r.checks.filter((c) => c.status !== 'ok'), []);
      assert.match(byId(r, 'certificate.identity').message, /the mesh CA issues spiffe:\/\/cluster\.local\/ns\/waygate\/sa\/waygate: token of audience istio-ca at \/var\/run\/secrets\/tokens\/istio-token/);
      assert.match(byId(r, 'certificate.root').message, /istio-ca-root-cert root-cert\.pem, 1 certificate\(s\)\) is mounted at \/var\/run\/secrets\/istio\/root-cert\.pem/);
    });
  });

  const broken: [string, Parameters<typeof meshCaDeployment>[0], string, RegExp][] = [
    ['a token of another audience', { audience: 'kubernetes.default.svc' }, 'certificate.identity', /has audience kubernetes\.default\.svc; istiod accepts only audience istio-ca/],
    ['an identity that is not the pods\' service account', { identity: 'spiffe://cluster.local/ns/waygate/sa/gateway' }, 'certificate.identity',
      /tls\.istioCa\.identity is spiffe:\/\/cluster\.local\/ns\/waygate\/sa\/gateway, but the pods run as ServiceAccount waygate: istiod issues spiffe:\/\/cluster\.local\/ns\/waygate\/sa\/waygate/],
    ['no root volume', { rootVolume: 'none' }, 'certificate.root', /is not the ConfigMap istio-ca-root-cert mounted by Deployment waygate\/waygate/],
    ['a root from another ConfigMap', { rootVolume: 'other-configmap' }, 'certificate.root', /is not the ConfigMap istio-ca-root-cert/],
  ];
  for (const [name, edit, id, message] of broken) {
    test(`fails: ${name}`, async () => {
      await withApi(meshCaDeployment(edit), async (api) => {
        const r = await runDoctor(options(api));
        assert.deepEqual(failed(r), [id]);
        assert.match(byId(r, id).message, message);
        assert.ok(byId(r, id).fix, 'a fix is given');
      });
    });
  }

  test('no token mounted at tokenFile', async () => {
    const objects = meshCaDeployment();
    const pod = ((objects.find((o) => o.kind === 'Deployment')!['spec']) as any)['template']['spec'];
    pod.volumes = pod.volumes.filter((v: { name: string }) => v.name !== 'istio-token');
    pod.containers[0].volumeMounts = pod.containers[0].volumeMounts.filter((m: { name: string }) => m.name !== 'istio-token');
    await withApi(objects, async (api) => {
      const r = await runDoctor(options(api));
      assert.deepEqual(failed(r), ['certificate.identity']);
      assert.match(byId(r, 'certificate.identity').message, /mounts no projected service-account token at \/var\/run\/secrets\/tokens\/istio-token: istiod cannot authenticate waygate's CSR/);
    });
  });
});
