/**
 * The registration controller (src/kube/gateway-status.ts) against the fake API server
 * (test/helpers/fake-kube-api.ts) over real HTTPS, driven by client-node: the Gateway's status is
 * written, restored after an edit, a deletion of the status or a recreation of the Gateway,
 * written once when several writers race (409), and never written when nothing changed; a 403
 * names the RBAC rule that is missing.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { GatewayRegistration, desiredGatewayStatus, type GatewayObject, type GatewayStatus, type ReconcileResult } from '../../src/kube/gateway-status.ts';
import { createOpsLogger } from '../../src/telemetry/log.ts';
import { startFakeKubeApi, type FakeKubeApi, type KubeObject } from '../helpers/fake-kube-api.ts';
import { allowPolicy, startTestGateway } from '../gateway/fixture.ts';
import { ConfigError, parseConfigText } from '../../src/config/load.ts';
import { configToYaml, resolveConfig } from '../../src/config/resolve.ts';

const NS = 'waygate';
const GW_API = 'gateway.networking.k8s.io/v1';
const HOSTNAME = 'waygate.waygate.svc.cluster.local';

const gatewayClass = (controllerName = 'waygate.dev/gateway-controller'): KubeObject => ({
  apiVersion: GW_API, kind: 'GatewayClass', metadata: { name: 'waygate' }, spec: { controllerName },
});
const gateway = (name = 'waygate', extra: Partial<KubeObject> = {}, className = 'waygate'): KubeObject => ({
  apiVersion: GW_API, kind: 'Gateway', metadata: { name, namespace: NS },
  spec: {
    gatewayClassName: className,
    listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE', allowedRoutes: { namespaces: { from: 'All' } } }],
  },
  ...extra,
});
const service = (): KubeObject => ({
  apiVersion: 'v1', kind: 'Service', metadata: { name: 'waygate', namespace: NS },
  spec: { type: 'ClusterIP', clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50'], ports: [{ name: 'hbone', port: 15008, targetPort: 15008, protocol: 'TCP' }] },
});

interface Harness {
  api: FakeKubeApi;
  reg: GatewayRegistration;
  logs: Record<string, unknown>[];
  status(name?: string): GatewayStatus | undefined;
  /** Resolves once `pred()` holds, checked now and after every reconcile pass. */
  until(pred: () => boolean, what: string): Promise<void>;
  /** The next pass's result. */
  nextPass(): Promise<ReconcileResult>;
  statusWrites(): number;
}

const open: Harness[] = [];
/**
 * Closes the harnesses a test started. afterEach of 'registration controller', where they are all
 * started: a root-level hook would also run after the tests of the files sharing this process
 * (scripts/test.mjs).
 */
async function closeHarnesses(): Promise<void> {
  for (const h of open.splice(0)) {
    await h.reg.close();
    await h.api.close();
  }
}

async function harness(objects: KubeObject[] = [gatewayClass(), service(), gateway()]): Promise<Harness> {
  const api = await startFakeKubeApi();
  for (const o of objects) api.apply(o);
  const logs: Record<string, unknown>[] = [];
  const log = createOpsLogger({ level: 'info', destination: { write: (s: string) => void logs.push(JSON.parse(s)) } });
  const reg = new GatewayRegistration({
    registration: { enabled: true, gatewayClassName: 'waygate', controllerName: 'waygate.dev/gateway-controller', namespace: NS, serviceName: 'waygate' },
    clusterDomain: 'cluster.local',
    kubeconfig: api.writeKubeconfig(mkdtempSync(join(tmpdir(), 'wg-reg-'))),
    log,
    retryInitialMs: 5,
    retryMaxMs: 20,
    resyncMs: 3_600_000,
  });
  const h: Harness = {
    api, reg, logs,
    status: (name = 'waygate') => api.get(GW_API, 'Gateway', NS, name)?.['status'] as GatewayStatus | undefined,
    async until(pred, what) {
      let passes = 0;
      while (!pred()) {
        await new Promise((r) => reg.once('reconciled', r));
        if (++passes > 200) assert.fail(`never: ${what}`);
      }
    },
    nextPass: () => new Promise((r) => reg.once('reconciled', r)),
    statusWrites: () => api.requests.filter((r) => r.method !== 'GET' && r.path.endsWith('/status')).length,
  };
  open.push(h);
  await reg.start();
  return h;
}

const condition = (s: GatewayStatus | undefined, type: string) => s?.conditions?.find((c) => c.type === type);

describe('registration controller', () => {
  afterEach(closeHarnesses);

  test('a Gateway without status gets one istiod accepts: ClusterIP and Hostname addresses, Accepted and Programmed with observedGeneration, the HBONE listener', async () => {
    const h = await harness();
    await h.until(() => h.reg.state === 'ok', 'state ok');
    // No pass ran before both lists arrived: no passing "no Gateway"/"no class" error at start-up.
    assert.deepEqual(h.logs.filter((l) => l['level'] === 'error').map((l) => l['msg']), []);
    const s = h.status()!;
    assert.deepEqual(s.addresses, [{ type: 'IPAddress', value: '10.96.0.50' }, { type: 'Hostname', value: HOSTNAME }]);
    const gen = h.api.get(GW_API, 'Gateway', NS, 'waygate')!.metadata['generation'];
    for (const type of ['Accepted', 'Programmed']) {
      const c = condition(s, type)!;
      assert.equal(c.status, 'True', type);
      assert.equal(c.reason, type);
      assert.equal(c.observedGeneration, gen);
      assert.match(c.lastTransitionTime!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
    assert.match(condition(s, 'Programmed')!.message, new RegExp(`${HOSTNAME}:15008`));
    assert.equal(s.listeners?.length, 1);
    assert.equal(s.listeners![0]!.name, 'mesh');
    assert.equal(s.listeners![0]!.attachedRoutes, 0);
    assert.deepEqual(s.listeners![0]!.supportedKinds, []);
    assert.deepEqual(s.listeners![0]!.conditions.map((c) => `${c.type}=${c.status}`), ['Accepted=True', 'Conflicted=False', 'Programmed=True', 'ResolvedRefs=True']);
    const gc = h.api.get(GW_API, 'GatewayClass', null, 'waygate')!;
    const accepted = (gc['status'] as GatewayStatus).conditions!.find((c) => c.type === 'Accepted')!;
    assert.equal(accepted.status, 'True');
    assert.equal(accepted.observedGeneration, 1);
    const metrics = await h.reg.metrics.text();
    assert.match(metrics, /waygate_registration_status\{state="ok"\} 1/);
    assert.match(metrics, /waygate_registration_status\{state="forbidden"\} 0/);
  });

  test('no write when nothing changed: an event that changes nothing makes a pass with no write', async () => {
    const h = await harness();
    await h.until(() => h.reg.state === 'ok', 'state ok');
    const before = h.statusWrites();
    assert.equal(before, 2); // the Gateway's and the class's, once each
    // A Gateway of another class in the namespace: an event, a pass, nothing to write.
    const pass = h.nextPass();
    h.api.apply(gateway('other', {}, 'istio-waypoint'));
    const r = await pass;
    assert.equal(r.writes, 0);
    assert.equal(h.statusWrites(), before);
    assert.equal(h.status('other'), undefined, 'a Gateway of another class is not touched');
    // A spec change that leaves the status as it is... except observedGeneration: one write.
    const again = h.nextPass();
    const gw = h.api.get(GW_API, 'Gateway', NS, 'waygate')!;
    h.api.apply({ ...gw, metadata: { ...gw.metadata, labels: { team: 'platform' } } });
    assert.equal((await again).writes, 0, 'a label is not part of the status');
    assert.equal(h.statusWrites(), before);
  });

  test('an edited or removed status is restored; a spec change moves observedGeneration', async () => {
    const h = await harness();
    await h.until(() => h.reg.state === 'ok', 'state ok');
    const good = h.status()!;
    const gw = h.api.get(GW_API, 'Gateway', NS, 'waygate')!;
    h.api.apply({ ...gw, status: { ...good, addresses: [{ type: 'Hostname', value: 'waygate.shop.svc.cluster.local' }] } });
    await h.until(() => h.status()?.addresses?.[1]?.value === HOSTNAME, 'address restored');
    assert.deepEqual(h.status()!.addresses, good.addresses);
    // The conditions kept their lastTransitionTime: their status never changed.
    assert.deepEqual(h.status()!.conditions, good.conditions);

    const now = h.api.get(GW_API, 'Gateway', NS, 'waygate')!;
    const { status: _dropped, ...withoutStatus } = now;
    h.api.apply(withoutStatus as KubeObject);
    assert.equal(h.status(), undefined);
    await h.until(() => condition(h.status(), 'Programmed')?.status === 'True', 'status rewritten');

    const latest = h.api.get(GW_API, 'Gateway', NS, 'waygate')!;
    const spec = latest['spec'] as GatewayObject['spec'];
    h.api.apply({ ...latest, spec: { ...spec, listeners: [...spec.listeners!, { name: 'http', port: 80, protocol: 'HTTP' }] } });
    await h.until(() => condition(h.status(), 'Accepted')?.observedGeneration === 2, 'observedGeneration 2');
    const s = h.status()!;
    assert.equal(condition(s, 'Accepted')!.reason, 'ListenersNotValid');
    assert.equal(condition(s, 'Accepted')!.status, 'True');
    const http = s.listeners!.find((l) => l.name === 'http')!;
    assert.equal(http.conditions.find((c) => c.type === 'Accepted')!.status, 'False');
    assert.equal(http.conditions.find((c) => c.type === 'Accepted')!.reason, 'PortUnavailable');
  });

  test('a recreated Gateway gets its status again', async () => {
    const h = await harness();
    await h.until(() => h.reg.state === 'ok', 'state ok');
    const uid = h.api.get(GW_API, 'Gateway', NS, 'waygate')!.metadata['uid'];
    h.api.remove(GW_API, 'Gateway', NS, 'waygate');
    await h.until(() => h.reg.state === 'gateway_missing', 'gateway_missing');
    const line = h.logs.find((l) => l['state'] === 'gateway_missing')!;
    assert.equal(line['level'], 'error');
    assert.match(String(line['msg']), /no Gateway of class waygate in namespace waygate/);
    assert.match(await h.reg.metrics.text(), /waygate_registration_status\{state="gateway_missing"\} 1/);

    h.api.apply(gateway());
    await h.until(() => h.reg.state === 'ok' && condition(h.status(), 'Programmed')?.status === 'True', 'recreated gateway programmed');
    assert.notEqual(h.api.get(GW_API, 'Gateway', NS, 'waygate')!.metadata['uid'], uid);
    assert.equal(h.status()!.addresses!.at(-1)!.value, HOSTNAME);
  });

  test('409 Conflict: the Gateway is read again and the status written on the newer version', async () => {
    const h = await harness([gatewayClass(), service()]);
    await h.until(() => h.reg.state === 'gateway_missing', 'gateway_missing');
    let raced = false;
    h.api.on('request', (r: { method: string; path: string }) => {
      if (raced || r.method !== 'PUT' || !r.path.endsWith('/gateways/waygate/status')) return;
      raced = true;
      // Another writer gets in first: the controller's resourceVersion is now stale.
      const gw = h.api.get(GW_API, 'Gateway', NS, 'waygate')!;
      h.api.apply({ ...gw, metadata: { ...gw.metadata, labels: { raced: 'yes' } } });
    });
    h.api.apply(gateway());
    await h.until(() => condition(h.status(), 'Programmed')?.status === 'True', 'status written after the conflict');
    assert.ok(raced);
    const gw = h.api.get(GW_API, 'Gateway', NS, 'waygate')!;
    assert.equal(gw.metadata.labels?.['raced'], 'yes', 'the other writer\'s change is kept');
    const metrics = await h.reg.metrics.text();
    assert.match(metrics, /waygate_registration_status_writes_total\{result="conflict"\} 1/);
    const puts = h.api.requests.filter((r) => r.method === 'PUT' && r.path.endsWith('/gateways/waygate/status'));
    assert.equal(puts.length, 2, 'one refused, one written');
    assert.equal(h.api.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/gateways/waygate')).length, 1, 'one re-read');
  });

  test('403: the error line names the RBAC rule missing, the state is forbidden, and the status is written once allowed', async () => {
    const h = await harness([gatewayClass(), service()]);
    await h.until(() => h.reg.state === 'gateway_missing', 'gateway_missing');
    h.api.forbid('update', 'gateways/status');
    h.api.apply(gateway());
    await h.until(() => h.reg.state === 'forbidden', 'forbidden');
    const line = h.logs.find((l) => l['state'] === 'forbidden')!;
    assert.equal(line['level'], 'error');
    assert.equal(line['rule'], 'a Role in namespace waygate bound to waygate\'s ServiceAccount needs {apiGroups: ["gateway.networking.k8s.io"], resources: [gateways/status], verbs: [update]} (examples/kubernetes/rbac.yaml)');
    assert.match(String(line['msg']), /refused to update gateways\/status in namespace waygate \(403 Forbidden\)/);
    assert.match(String(line['apiMessage']), /cannot update resource "gateways\/status"/);
    assert.match(await h.reg.metrics.text(), /waygate_registration_status\{state="forbidden"\} 1/);
    assert.equal(h.status(), undefined);
    const forbiddenLines = h.logs.filter((l) => l['state'] === 'forbidden').length;

    h.api.allow('update', 'gateways/status');
    await h.until(() => h.reg.state === 'ok', 'ok after the rule is granted');
    assert.equal(condition(h.status(), 'Programmed')?.status, 'True');
    assert.equal(forbiddenLines, 1, 'the same refusal is logged once, not once per retry');
  });

  test('the class status refused (403): the Gateway status is still written, and the state says forbidden naming the ClusterRole rule', async () => {
    const h = await harness([gatewayClass(), service()]);
    h.api.forbid('update', 'gatewayclasses/status');
    await h.until(() => h.reg.state === 'forbidden', 'forbidden');
    h.api.apply(gateway());
    await h.until(() => condition(h.status(), 'Programmed')?.status === 'True', 'the Gateway status written');
    assert.equal(h.reg.state, 'forbidden');
    const line = h.logs.find((l) => l['state'] === 'forbidden')!;
    assert.equal(line['rule'], 'a ClusterRole bound to waygate\'s ServiceAccount needs {apiGroups: ["gateway.networking.k8s.io"], resources: [gatewayclasses/status], resourceNames: [waygate], verbs: [update]} (examples/kubernetes/rbac.yaml)');
  });

  test('a watch refused by RBAC names the watch rule (cluster-scoped: a ClusterRole)', async () => {
    const api = await startFakeKubeApi();
    api.forbid('list', 'gatewayclasses');
    const logs: Record<string, unknown>[] = [];
    const reg = new GatewayRegistration({
      registration: { enabled: true, gatewayClassName: 'waygate', controllerName: 'waygate.dev/gateway-controller', namespace: '', serviceName: 'waygate' },
      clusterDomain: 'cluster.local', kubeconfig: api.writeKubeconfig(mkdtempSync(join(tmpdir(), 'wg-reg-'))),
      log: createOpsLogger({ level: 'info', destination: { write: (s: string) => void logs.push(JSON.parse(s)) } }),
      env: { POD_NAMESPACE: NS }, retryInitialMs: 5, retryMaxMs: 20,
    });
    open.push({ api, reg } as Harness);
    const forbidden = new Promise((r) => reg.on('state', (s) => s === 'forbidden' && r(s)));
    await reg.start();
    await forbidden;
    assert.equal(reg.namespace, NS, 'the namespace from POD_NAMESPACE');
    const line = logs.find((l) => l['state'] === 'forbidden')!;
    assert.match(String(line['rule']), /^a ClusterRole .* resources: \[gatewayclasses\], verbs: \[list\]/);
  });

  test('the API server goes away and comes back: api_error said once, then ok again with nothing rewritten', async () => {
    const h = await harness();
    await h.until(() => h.reg.state === 'ok', 'state ok');
    const writes = h.statusWrites();
    await h.api.stop();
    await h.until(() => h.reg.state === 'api_error', 'api_error');
    const lines = h.logs.filter((l) => l['state'] === 'api_error');
    assert.equal(lines[0]!['level'], 'error');
    assert.match(String(lines[0]!['msg']), /retrying with backoff/);
    // Nothing changed while it was away: no event will come, yet the state must recover.
    await h.api.start();
    await h.until(() => h.reg.state === 'ok', 'ok again');
    assert.equal(h.statusWrites(), writes, 'the status was still true');
    assert.match(await h.reg.metrics.text(), /waygate_registration_status\{state="api_error"\} 0/);
  });

  test('two replicas converge on one status and then write nothing', async () => {
    const h = await harness();
    const second = new GatewayRegistration({
      registration: { enabled: true, gatewayClassName: 'waygate', controllerName: 'waygate.dev/gateway-controller', namespace: NS, serviceName: 'waygate' },
      clusterDomain: 'cluster.local', kubeconfig: h.api.writeKubeconfig(mkdtempSync(join(tmpdir(), 'wg-reg-'))),
      log: createOpsLogger({ level: 'silent' }), retryInitialMs: 5, retryMaxMs: 20, resyncMs: 3_600_000,
    });
    open.push({ api: h.api, reg: second } as Harness);
    await second.start();
    await h.until(() => h.reg.state === 'ok', 'first ok');
    while (second.state !== 'ok') await new Promise((r) => second.once('reconciled', r));
    const status = h.status();
    const writes = h.statusWrites();
    const both = Promise.all([h.nextPass(), new Promise<ReconcileResult>((r) => second.once('reconciled', r))]);
    h.api.apply(gateway('other', {}, 'istio-waypoint'));
    const [a, b] = await both;
    assert.equal(a.writes + b.writes, 0);
    assert.equal(h.statusWrites(), writes);
    assert.deepEqual(h.status(), status);
  });

  test('the Service missing: the hostname is still written (istiod keeps the waypoint: fail closed), Programmed False AddressNotAssigned', async () => {
    const h = await harness([gatewayClass(), gateway()]);
    await h.until(() => h.reg.state === 'service_missing', 'service_missing');
    const s = h.status()!;
    assert.deepEqual(s.addresses, [{ type: 'Hostname', value: HOSTNAME }]);
    const p = condition(s, 'Programmed')!;
    assert.equal(p.status, 'False');
    assert.equal(p.reason, 'AddressNotAssigned');
    assert.match(p.message, /Service waygate\/waygate not found/);
    assert.equal(condition(s, 'Accepted')!.status, 'True');
  });

  test('a class owned by another controller: nothing written, said at error', async () => {
    const h = await harness([gatewayClass('istio.io/gateway-controller'), service(), gateway()]);
    await h.until(() => h.reg.state === 'class_not_ours', 'class_not_ours');
    assert.equal(h.statusWrites(), 0);
    assert.match(String(h.logs.find((l) => l['state'] === 'class_not_ours')!['msg']), /names controller istio.io\/gateway-controller/);
  });
});

describe('waygate serve with registration enabled (the composition root)', () => {
  test('the Gateway gets its status, /metrics shows waygate_registration_status, shutdown stops the watches', async () => {
    const api = await startFakeKubeApi();
    for (const o of [gatewayClass(), service(), gateway()]) api.apply(o);
    const saved = process.env['KUBECONFIG'];
    process.env['KUBECONFIG'] = api.writeKubeconfig(mkdtempSync(join(tmpdir(), 'wg-reg-')));
    let t: Awaited<ReturnType<typeof startTestGateway>> | undefined;
    try {
      const written = new Promise<void>((resolve) => api.on('request', (r: { method: string; path: string }) => {
        if (r.method === 'PUT' && r.path.endsWith('/gateways/waygate/status')) resolve();
      }));
      t = await startTestGateway({ policies: { 'a.yaml': allowPolicy('a', 'web') }, spec: '  registration: { enabled: true, namespace: waygate }' });
      await written;
      await api.waitForWatches(2);
      const metrics = await (await t.http('metrics', '/metrics')).text();
      assert.match(metrics, /waygate_connections_active/);
      assert.match(metrics, /waygate_registration_status\{state="(ok|starting)"\} 1/);
      await t.close();
      t = undefined;
      // The watches end with the gateway (the server sees each close).
      while (api.watchCount() > 0) await once(api, 'watchClosed');
      assert.equal(condition(api.get(GW_API, 'Gateway', NS, 'waygate')!['status'] as GatewayStatus, 'Programmed')?.status, 'True');
    } finally {
      await t?.close();
      if (saved === undefined) delete process.env['KUBECONFIG'];
      else process.env['KUBECONFIG'] = saved;
      await api.close();
    }
  });

  test('no credentials: serve fails to start with WG_KUBE, having closed what it opened', async () => {
    const saved = { k: process.env['KUBECONFIG'], h: process.env['HOME'], s: process.env['KUBERNETES_SERVICE_HOST'] };
    process.env['KUBECONFIG'] = '';
    process.env['HOME'] = mkdtempSync(join(tmpdir(), 'wg-home-'));
    delete process.env['KUBERNETES_SERVICE_HOST'];
    try {
      await assert.rejects(startTestGateway({ policies: { 'a.yaml': allowPolicy('a', 'web') }, spec: '  registration: { enabled: true, namespace: waygate }' }),
        (err: { code?: string; message?: string }) => err.code === 'WG_KUBE' && /--kubeconfig/.test(err.message ?? ''));
    } finally {
      for (const [k, v] of [['KUBECONFIG', saved.k], ['HOME', saved.h], ['KUBERNETES_SERVICE_HOST', saved.s]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});

describe('config registration', () => {
  const doc = (body: string): string => `apiVersion: waygate.dev/v1alpha1\nkind: GatewayConfig\nmetadata: { name: x }\nspec:\n  registration:\n${body}`;

  test('off by default; a file sets it; --print-config shows it and the printed config loads back', () => {
    assert.deepEqual(resolveConfig({ env: {} }).config.registration,
      { enabled: false, gatewayClassName: 'waygate', controllerName: 'waygate.dev/gateway-controller', namespace: '', serviceName: 'waygate' });
    const layer = parseConfigText(doc('    enabled: true\n    namespace: gw\n    serviceName: front\n'), 'gateway.yaml');
    assert.deepEqual(layer.registration, { enabled: true, namespace: 'gw', serviceName: 'front' });
    const printed = configToYaml(resolveConfig({ env: {} }));
    assert.match(printed, /\n  registration:\n    enabled: false\n    gatewayClassName: waygate\n/);
    const back = parseConfigText(printed.replace(/^#.*\n/, ''), 'printed.yaml');
    assert.equal(back.registration?.controllerName, 'waygate.dev/gateway-controller');
  });

  test('names that are not Kubernetes names are load errors at their line, with the field path', () => {
    assert.throws(() => parseConfigText(doc('    namespace: Bad_NS\n    controllerName: nope\n    unknown: 1\n'), 'gateway.yaml'), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.diagnostics.map((d) => `${d.line} ${d.path}`), ['6 spec.registration.namespace', '7 spec.registration.controllerName', '8 spec.registration.unknown']);
      return true;
    });
  });
});

describe('desiredGatewayStatus', () => {
  const gw: GatewayObject = {
    metadata: { name: 'waygate', namespace: 'waygate', generation: 3 },
    spec: { gatewayClassName: 'waygate', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  };
  const opts = { serviceName: 'waygate', clusterDomain: 'cluster.local' };

  test('dual-stack ClusterIPs are both written, IPs before the hostname', () => {
    const s = desiredGatewayStatus(gw, { metadata: { name: 'waygate' }, spec: { clusterIPs: ['10.96.0.9', 'fd00::9'], ports: [{ port: 15008 }] } }, opts);
    assert.deepEqual(s.addresses!.map((a) => `${a.type} ${a.value}`), ['IPAddress 10.96.0.9', 'IPAddress fd00::9', `Hostname ${HOSTNAME}`]);
  });

  test('a headless Service or one without port 15008 is not usable', () => {
    const headless = desiredGatewayStatus(gw, { metadata: { name: 'waygate' }, spec: { clusterIP: 'None', clusterIPs: ['None'], ports: [{ port: 15008 }] } }, opts);
    assert.equal(headless.conditions!.find((c) => c.type === 'Programmed')!.reason, 'AddressNotUsable');
    const noPort = desiredGatewayStatus(gw, { metadata: { name: 'waygate' }, spec: { clusterIP: '10.96.0.9', ports: [{ port: 80 }] } }, opts);
    assert.match(noPort.conditions!.find((c) => c.type === 'Programmed')!.message, /no port 15008/);
  });

  test('no HBONE listener: Accepted False ListenersNotValid', () => {
    const s = desiredGatewayStatus({ ...gw, spec: { gatewayClassName: 'waygate', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } }, null, opts);
    const a = s.conditions!.find((c) => c.type === 'Accepted')!;
    assert.equal(a.status, 'False');
    assert.equal(a.reason, 'ListenersNotValid');
  });

  test('sandwich mode: the istio.io/PROXY listener on sandwich.listen\'s port is served and accepted; off, or on another port, it is not', () => {
    const sandwichGw: GatewayObject = { ...gw, spec: { gatewayClassName: 'waygate', listeners: [
      { name: 'mesh', port: 15008, protocol: 'HBONE' }, { name: 'proxy', port: 15088, protocol: 'istio.io/PROXY' },
    ] } };
    const svc = { metadata: { name: 'waygate' }, spec: { clusterIPs: ['10.96.0.9'], ports: [{ port: 15008 }] } };
    const listener = (st: GatewayStatus, name: string) => st.listeners!.find((l) => l.name === name)!.conditions!.find((c) => c.type === 'Accepted')!;
    const on = desiredGatewayStatus(sandwichGw, svc, { ...opts, sandwichPort: 15088 });
    assert.deepEqual(on.conditions!.map((c) => `${c.type} ${c.status} ${c.reason}`), ['Accepted True Accepted', 'Programmed True Programmed']);
    assert.equal(listener(on, 'proxy').status, 'True');
    const off = desiredGatewayStatus(sandwichGw, svc, opts);
    assert.equal(off.conditions!.find((c) => c.type === 'Accepted')!.reason, 'ListenersNotValid');
    assert.deepEqual([listener(off, 'proxy').status, listener(off, 'proxy').reason], ['False', 'PortUnavailable']);
    assert.match(listener(off, 'proxy').message, /only in sandwich mode: sandwich\.listen is off/);
    const elsewhere = desiredGatewayStatus(sandwichGw, svc, { ...opts, sandwichPort: 15090 });
    assert.match(listener(elsewhere, 'proxy').message, /port 15090 with protocol "istio\.io\/PROXY" \(sandwich\.listen\)/);
  });

  test('conditions of other types are kept; an unchanged condition is kept as stored', () => {
    const first = desiredGatewayStatus(gw, null, opts);
    const foreign = { type: 'example.com/Audited', status: 'True' as const, reason: 'Audited', message: 'x', observedGeneration: 3, lastTransitionTime: '2026-01-01T00:00:00Z' };
    const second = desiredGatewayStatus({ ...gw, status: { ...first, conditions: [...first.conditions!, foreign] } }, null, opts);
    assert.deepEqual(second.conditions, [...first.conditions!, foreign]);
  });
});
