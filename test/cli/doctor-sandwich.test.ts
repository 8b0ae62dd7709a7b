/**
 * `waygate doctor`'s sandwich check (src/cli/doctor-sandwich.ts) against the fake API server
 * (test/helpers/fake-kube-api.ts) holding what examples/kubernetes-sandwich/ makes: the Gateway
 * bound with `ambient.istio.io/waypoint-inbound-binding: PROXY/15088` and its `proxy` listener, the
 * mounted config with `sandwich.listen`, the namespace in the ambient mesh. Each way the pieces
 * can disagree is reported by that check with a fix; a deployment in HBONE mode has no such check.
 * Only the `sandwich` check is asserted here: the others are test/cli/doctor.test.ts's.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { runDoctor, type Check } from '../../src/cli/doctor.ts';
import { startFakeKubeApi, type KubeObject } from '../helpers/fake-kube-api.ts';

const NS = 'waygate';
const GW_API = 'gateway.networking.k8s.io/v1';
const ROUTES = { namespaces: { from: 'Selector', selector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['shop'] }] } } };

interface Shape {
  gatewayBinding?: string | undefined;
  classBinding?: string;
  sandwichListen?: string | null;
  namespaceMode?: string;
  podMode?: string;
  proxyRoutes?: unknown;
}

const SANDWICH: Shape = { gatewayBinding: 'PROXY/15088', sandwichListen: '127.0.0.1:15088', namespaceMode: 'ambient' };

function cluster(s: Shape): KubeObject[] {
  const config = [
    'apiVersion: waygate.dev/v1alpha1', 'kind: GatewayConfig', 'metadata: { name: waygate }', 'spec:',
    '  registration: { enabled: true }',
    ...(s.sandwichListen === undefined ? [] : [`  sandwich: { listen: ${s.sandwichListen === null ? 'null' : `"${s.sandwichListen}"`} }`]), '',
  ].join('\n');
  const podLabels: Record<string, string> = { 'app.kubernetes.io/name': 'waygate', 'gateway.networking.k8s.io/gateway-name': 'waygate', ...(s.podMode ? { 'istio.io/dataplane-mode': s.podMode } : {}) };
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'kubernetes.io/metadata.name': NS, ...(s.namespaceMode ? { 'istio.io/dataplane-mode': s.namespaceMode } : {}) } } },
    { apiVersion: GW_API, kind: 'GatewayClass', metadata: { name: 'waygate', ...(s.classBinding ? { annotations: { 'ambient.istio.io/waypoint-inbound-binding': s.classBinding } } : {}) },
      spec: { controllerName: 'waygate.dev/gateway-controller' } },
    {
      apiVersion: GW_API, kind: 'Gateway',
      metadata: { name: 'waygate', namespace: NS, generation: 1, ...(s.gatewayBinding ? { annotations: { 'ambient.istio.io/waypoint-inbound-binding': s.gatewayBinding } } : {}) },
      spec: {
        gatewayClassName: 'waygate',
        listeners: [
          { name: 'mesh', port: 15008, protocol: 'HBONE', allowedRoutes: ROUTES },
          ...(s.gatewayBinding || s.classBinding ? [{ name: 'proxy', port: 15088, protocol: 'istio.io/PROXY', allowedRoutes: s.proxyRoutes ?? ROUTES }] : []),
        ],
      },
    },
    {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'waygate', namespace: NS },
      spec: {
        selector: { matchLabels: { 'app.kubernetes.io/name': 'waygate' } },
        template: { metadata: { labels: podLabels }, spec: { serviceAccountName: 'waygate', containers: [{ name: 'waygate', image: 'waygate' }], volumes: [{ name: 'config', configMap: { name: 'waygate-config-8ct4t94ddg' } }] } },
      },
    },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'waygate-config-8ct4t94ddg', namespace: NS }, data: { 'gateway.yaml': config } },
  ];
}

async function sandwichCheckOf(s: Shape): Promise<Check | undefined> {
  const api = await startFakeKubeApi();
  try {
    for (const o of cluster(s)) api.apply(o);
    const report = await runDoctor({
      kubeconfig: api.writeKubeconfig(mkdtempSync(join(tmpdir(), 'wg-doctor-sandwich-'))),
      namespace: NS, gateway: 'waygate', fronted: [], trustDomain: 'cluster.local', clusterDomain: 'cluster.local',
      controllerName: 'waygate.dev/gateway-controller', readinessTimeoutMs: 1_000,
    });
    const checks = report.checks.filter((c) => c.id === 'sandwich');
    assert.ok(checks.length <= 1);
    if (s.sandwichListen) assert.match(report.checks.find((c) => c.id === 'config')!.message, new RegExp(`sandwich\\.listen ${s.sandwichListen.replace(/\./g, '\\.')}`));
    return checks[0];
  } finally {
    await api.close();
  }
}

describe('waygate doctor: sandwich mode', () => {
  test('as examples/kubernetes-sandwich/ makes it: ok, naming the listener address and the binding', async () => {
    const c = await sandwichCheckOf(SANDWICH);
    assert.equal(c?.status, 'ok', c?.message);
    assert.match(c!.message, /127\.0\.0\.1:15088 .*PROXY\/15088 on the Gateway/);
  });

  test('the binding on the GatewayClass counts as on the Gateway (istiod reads both)', async () => {
    const c = await sandwichCheckOf({ ...SANDWICH, gatewayBinding: undefined, classBinding: 'PROXY/15088' });
    assert.equal(c?.status, 'ok', c?.message);
    assert.match(c!.message, /on the GatewayClass/);
  });

  test('HBONE mode (no binding, sandwich off): no sandwich check at all', async () => {
    assert.equal(await sandwichCheckOf({ sandwichListen: null, namespaceMode: 'none', podMode: 'none' }), undefined);
  });

  test('the binding without sandwich.listen: fail, nothing listens where ztunnel sends', async () => {
    const c = await sandwichCheckOf({ ...SANDWICH, sandwichListen: null });
    assert.equal(c?.status, 'fail');
    assert.match(c!.message, /no sandwich\.listen/);
    assert.match(c!.fix!, /sandwich\.listen: 127\.0\.0\.1:15088/);
  });

  test('sandwich.listen without the binding: fail, with the kubectl annotate fix', async () => {
    const c = await sandwichCheckOf({ ...SANDWICH, gatewayBinding: undefined });
    assert.equal(c?.status, 'fail');
    assert.match(c!.message, /has no ambient\.istio\.io\/waypoint-inbound-binding/);
    assert.match(c!.fix!, /kubectl -n waygate annotate gateway waygate ambient\.istio\.io\/waypoint-inbound-binding=PROXY\/15088/);
  });

  test('a binding port that is not sandwich.listen\'s: fail', async () => {
    const c = await sandwichCheckOf({ ...SANDWICH, sandwichListen: '127.0.0.1:15089' });
    assert.equal(c?.status, 'fail');
    assert.match(c!.message, /bound to port 15088 .* sandwich\.listen is 127\.0\.0\.1:15089/);
  });

  test('the namespace out of the mesh, or the pods opted out: fail, naming the label', async () => {
    const ns = await sandwichCheckOf({ ...SANDWICH, namespaceMode: 'none' });
    assert.equal(ns?.status, 'fail');
    assert.match(ns!.message, /namespace waygate is labelled istio\.io\/dataplane-mode=none/);
    assert.match(ns!.fix!, /kubectl label namespace waygate istio\.io\/dataplane-mode=ambient/);
    const pod = await sandwichCheckOf({ ...SANDWICH, podMode: 'none' });
    assert.equal(pod?.status, 'fail');
    assert.match(pod!.message, /pod template is labelled istio\.io\/dataplane-mode=none/);
  });

  test('a bound listener admitting other namespaces than the HBONE listener: warn (istiod reads the bound one)', async () => {
    const c = await sandwichCheckOf({ ...SANDWICH, proxyRoutes: { namespaces: { from: 'All' } } });
    assert.equal(c?.status, 'warn');
    assert.match(c!.message, /listener proxy .* admit different namespaces/);
  });
});
