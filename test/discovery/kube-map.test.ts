/**
 * Kubernetes objects -> discovery snapshot (src/discovery/kubernetes/map.ts), on objects shaped
 * exactly as an API server returns them: test/fixtures/kube/shop.json is written as
 * `kubectl get services,endpointslices,pods -n shop -o json --show-managed-fields` prints a `List`
 * (every field the API server fills in: managedFields, defaulted spec fields, status, the
 * EndpointSlice controller's labels and owner references). It was written for these cases, not
 * captured from a cluster: a dual-stack service behind a rollout that moved a named port, a
 * terminating pod, a headless StatefulSet with sidecars, a selector-less service, a UDP port, an
 * ExternalName alias, a finished Job. Each case below starts from those objects, changes what it is
 * about, and asserts the snapshot; then the same snapshots go through the router
 * (src/hbone/route.ts) for what the mapping decides about dialing.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import { EndpointBalancer } from '../../src/discovery/balancer.ts';
import { kubeObjectsHash, kubeSnapshot, type KubeMapOptions, type KubeObjects } from '../../src/discovery/kubernetes/map.ts';
import { endpointTargetPort, type DiscoverySnapshot, type MeshService, type MeshWorkload } from '../../src/discovery/model.ts';
import { describeUnavailable, resolveDestination } from '../../src/discovery/resolve.ts';
import { DestinationPolicy } from '../../src/hbone/destination.ts';
import { Router } from '../../src/hbone/route.ts';
import type { Authority } from '../../src/net/authority.ts';
import { seededRandom } from '../../src/util/seeded-random.ts';

const FIXTURE = new URL('../fixtures/kube/shop.json', import.meta.url).pathname;
const OPTS: KubeMapOptions = { trustDomain: 'cluster.local', clusterDomain: 'cluster.local', version: 3, source: 'kubernetes https://10.96.0.1:443 namespaces shop' };
const ECHO = 'echo.shop.svc.cluster.local';
const A = 'echo-7d9f8c6b5-2xkqp'; // 10.244.1.11, fd00:10:244:1::b; http 8080
const B = 'echo-7d9f8c6b5-9wz4m'; // 10.244.2.12, fd00:10:244:2::c; http 8080
const C = 'echo-5c4e7f9d8-hk2lt'; // 10.244.2.13, fd00:10:244:2::d; http 8081 (the new ReplicaSet)
const D = 'echo-7d9f8c6b5-tq8rn'; // terminating, still serving
const WEB0 = 'web-66b9d4f7c8-m2q5j'; // container port "web" 8000
const WEB1 = 'web-66b9d4f7c8-r7c2d'; // no port named "web"

interface Objects { services: V1Service[]; endpointSlices: V1EndpointSlice[]; pods: V1Pod[] }

/** A fresh copy of the fixture's objects, split by kind as a watch holds them. */
function objects(): Objects {
  const list = JSON.parse(readFileSync(FIXTURE, 'utf8')) as { items: ({ kind: string } & Record<string, unknown>)[] };
  const out: Objects = { services: [], endpointSlices: [], pods: [] };
  for (const item of list.items) {
    if (item.kind === 'Service') out.services.push(item as V1Service);
    else if (item.kind === 'EndpointSlice') out.endpointSlices.push(item as unknown as V1EndpointSlice);
    else if (item.kind === 'Pod') out.pods.push(item as V1Pod);
  }
  return out;
}

const pod = (o: Objects, name: string): V1Pod => o.pods.find((p) => p.metadata!.name === name)!;
const svc = (o: Objects, name: string): V1Service => o.services.find((s) => s.metadata!.name === name)!;
const slice = (o: Objects, name: string): V1EndpointSlice => o.endpointSlices.find((s) => s.metadata!.name === name)!;

function map(o: KubeObjects, opts: Partial<KubeMapOptions> = {}): { snap: DiscoverySnapshot; skipped: string[] } {
  const r = kubeSnapshot(o, { ...OPTS, ...opts });
  return { snap: r.snapshot, skipped: r.skipped };
}

function service(snap: DiscoverySnapshot, name: string): MeshService {
  const s = snap.serviceByHostname(`${name}.shop.svc.cluster.local`);
  assert.ok(s, `service ${name} is in the snapshot`);
  return s;
}

/** An endpoint as the tests compare it: name, addresses, pickable, protocol, principal, port per service port. */
function summary(s: MeshService, w: MeshWorkload): Record<string, unknown> {
  return {
    name: w.name,
    ips: [...w.ips],
    ready: w.ready,
    protocol: w.protocol,
    principal: w.principal,
    ports: Object.fromEntries(s.ports.map((p) => [p.port, endpointTargetPort(p, w)])),
  };
}

const endpoints = (s: MeshService): Record<string, unknown>[] => s.endpoints.map((w) => summary(s, w));
const spiffe = (sa: string, td = 'cluster.local'): string => `spiffe://${td}/ns/shop/sa/${sa}`;

describe('kubernetes mapping: the fixture as the API server returns it', () => {
  const { snap, skipped } = map(objects());

  test('dual-stack service: both cluster IPs, a named targetPort resolved per pod, both families per pod', () => {
    const echo = service(snap, 'echo');
    assert.equal(echo.hostname, ECHO);
    assert.equal(echo.namespace, 'shop');
    assert.deepEqual(echo.vips, ['10.96.10.10', 'fd00:10:96::a10']);
    // targetPort "http" is known per pod only (0 at the service, as istiod sends it); grpc is numeric.
    assert.deepEqual(echo.ports, [{ port: 80, targetPort: 0 }, { port: 9090, targetPort: 9090 }]);
    assert.deepEqual(endpoints(echo), [
      { name: C, ips: ['10.244.2.13', 'fd00:10:244:2::d'], ready: true, protocol: 'HBONE', principal: spiffe('echo'), ports: { 80: 8081, 9090: 9090 } },
      { name: A, ips: ['10.244.1.11', 'fd00:10:244:1::b'], ready: true, protocol: 'HBONE', principal: spiffe('echo'), ports: { 80: 8080, 9090: 9090 } },
      { name: B, ips: ['10.244.2.12', 'fd00:10:244:2::c'], ready: true, protocol: 'HBONE', principal: spiffe('echo'), ports: { 80: 8080, 9090: 9090 } },
      // terminating but serving: not picked while ready endpoints exist
      { name: D, ips: ['10.244.1.14', 'fd00:10:244:1::e'], ready: false, protocol: 'HBONE', principal: spiffe('echo'), ports: { 80: 8080, 9090: 9090 } },
    ]);
    assert.equal(snap.serviceByVip('fd00:10:96:0:0:0:0:a10'), echo);
    assert.equal(snap.serviceByHostname('ECHO.shop.svc.cluster.local.'), echo);
  });

  test('a terminating pod that still serves is picked only when no endpoint is ready (service batch)', () => {
    const batch = service(snap, 'batch');
    assert.deepEqual(batch.ports, [{ port: 7000, targetPort: 7000 }]);
    assert.deepEqual(batch.endpoints.map((w) => [w.name, w.ready]), [
      ['batch-84f5b6d7c9-8hw3s', false], // not ready, not serving
      ['batch-84f5b6d7c9-v2n6k', true], // terminating, serving, and nothing else is ready
    ]);
  });

  test('headless service: no VIP, reachable by hostname; sidecar pods: Istio mTLS only, or HBONE with the tunnel label', () => {
    const db = service(snap, 'db');
    assert.deepEqual(db.vips, []);
    assert.deepEqual(endpoints(db), [
      { name: 'db-0', ips: ['10.244.1.21'], ready: true, protocol: 'LEGACY_ISTIO_MTLS', principal: spiffe('db'), ports: { 5432: 5432 } },
      { name: 'db-1', ips: ['10.244.2.22'], ready: true, protocol: 'HBONE', principal: spiffe('db'), ports: { 5432: 5432 } },
    ]);
    const r = resolveDestination(snap, { ip: '', host: 'db.shop.svc.cluster.local', port: 5432 });
    assert.equal(r.kind, 'service');
  });

  test('selector-less service: hand-made endpoints have no identity: TCP, no principal, not indexed by address', () => {
    const legacy = service(snap, 'legacy');
    assert.deepEqual(legacy.vips, ['10.96.10.30']);
    assert.deepEqual(endpoints(legacy), [
      { name: '192.168.50.5', ips: ['192.168.50.5'], ready: true, protocol: 'TCP', principal: '', ports: { 5432: 5432 } },
      { name: '192.168.50.6', ips: ['192.168.50.6'], ready: false, protocol: 'TCP', principal: '', ports: { 5432: 5432 } },
    ]);
    assert.equal(snap.workloadByIp('192.168.50.5'), undefined);
  });

  test('a pod without the named port does not serve that port; a UDP port is not routed', () => {
    const web = service(snap, 'web');
    assert.deepEqual(web.ports, [{ port: 80, targetPort: 0 }]);
    assert.deepEqual(endpoints(web), [
      { name: WEB0, ips: ['10.244.1.31'], ready: true, protocol: 'TCP', principal: spiffe('default'), ports: { 80: 8000 } },
      { name: WEB1, ips: ['10.244.2.32'], ready: true, protocol: 'TCP', principal: spiffe('default'), ports: { 80: 0 } },
    ]);
    const r = resolveDestination(snap, { ip: '10.96.10.40', host: '', port: 80 });
    assert.ok(r.kind === 'service');
    assert.deepEqual(r.endpoints.map((w) => w.name), [WEB0]);
    assert.ok(skipped.includes('service shop/web: UDP port 514 is not routed (HBONE tunnels carry TCP)'), skipped.join('\n'));
    assert.ok(skipped.includes(`service shop/web: endpoint pod shop/${WEB1} has no port "web" for port 80; it does not serve that port`), skipped.join('\n'));
  });

  test('ExternalName is skipped; a finished pod does not own its old address; pods are workloads by address', () => {
    assert.equal(snap.serviceByHostname('payments-api.shop.svc.cluster.local'), undefined);
    assert.ok(skipped.includes('service shop/payments-api: type ExternalName is a DNS alias with no endpoints; not routed'));
    // migrate-29044230-7kq2w (Succeeded) had 10.244.1.11 before the echo pod got it.
    assert.equal(snap.workloadByIp('10.244.1.11')?.name, A);
    assert.equal(snap.workloadByIp('fd00:10:244:1::b')?.name, A);
    assert.equal(snap.workloads.some((w) => w.name.startsWith('migrate-')), false);
    assert.deepEqual({ ...snap.workloadByIp('10.244.1.14') }, {
      name: D, namespace: 'shop', ips: ['10.244.1.14', 'fd00:10:244:1::e'], serviceAccount: 'echo', principal: spiffe('echo'),
      protocol: 'HBONE', tunnelPort: 15008, ready: false, // being deleted
    });
    assert.equal(snap.workloads.length, 10);
    assert.deepEqual(skipped.filter((l) => !l.startsWith('service shop/web') && !l.startsWith('service shop/payments-api')), []);
  });

  test('version, source, hash; everything frozen', () => {
    assert.equal(snap.version, 3);
    assert.equal(snap.source, OPTS.source);
    assert.match(snap.hash, /^[0-9a-f]{64}$/);
    assert.equal(snap.hash, kubeObjectsHash(objects(), OPTS));
    assert.ok(Object.isFrozen(snap) && Object.isFrozen(snap.services) && Object.isFrozen(snap.workloads));
    for (const s of snap.services) {
      assert.ok(Object.isFrozen(s) && Object.isFrozen(s.ports) && Object.isFrozen(s.endpoints) && Object.isFrozen(s.vips));
      for (const w of s.endpoints) assert.ok(Object.isFrozen(w) && Object.isFrozen(w.ips));
    }
  });
});

interface Case {
  name: string;
  change: (o: Objects) => void;
  opts?: Partial<KubeMapOptions>;
  check: (snap: DiscoverySnapshot, skipped: string[]) => void;
}

const CASES: Case[] = [
  {
    name: 'an endpoint whose pod is not known yet is skipped, with a line',
    change: (o) => { o.pods = o.pods.filter((p) => p.metadata!.name !== B); },
    check: (snap, skipped) => {
      assert.deepEqual(service(snap, 'echo').endpoints.map((w) => w.name), [C, A, D]);
      assert.ok(skipped.includes(`service shop/echo: endpoint 10.244.2.12 (EndpointSlice echo-bh7fq) names pod shop/${B}, which is not known; skipped until it is`), skipped.join('\n'));
    },
  },
  {
    name: 'a StatefulSet pod recreated under its name (another uid) is not the one the slice names',
    change: (o) => { pod(o, 'db-0').metadata!.uid = '0f6c1d5e-9a5b-4c0e-8f43-7b2d3e1a9c11'; },
    check: (snap, skipped) => {
      assert.deepEqual(service(snap, 'db').endpoints.map((w) => w.name), ['db-1']);
      assert.ok(skipped.some((l) => l.includes('names pod shop/db-0, which is not known (a pod of that name with another uid is)')), skipped.join('\n'));
    },
  },
  {
    name: 'a hand-made slice naming a pod of another namespace does not lend it to this service',
    change: (o) => {
      const ledger = structuredClone(pod(o, WEB0));
      ledger.metadata!.namespace = 'finance';
      ledger.metadata!.name = 'ledger-0';
      ledger.status!.podIP = '10.244.1.77';
      ledger.status!.podIPs = [{ ip: '10.244.1.77' }];
      o.pods.push(ledger);
      slice(o, 'legacy-1').endpoints.push({ addresses: ['10.244.1.77'], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: 'finance', name: 'ledger-0', uid: ledger.metadata!.uid! } });
    },
    check: (snap, skipped) => {
      assert.deepEqual(service(snap, 'legacy').endpoints.map((w) => w.name), ['192.168.50.5', '192.168.50.6']);
      assert.ok(skipped.includes('service shop/legacy: endpoint 10.244.1.77 (EndpointSlice legacy-1) names pod finance/ledger-0 of another namespace; skipped'), skipped.join('\n'));
      assert.equal(snap.workloadByIp('10.244.1.77')?.namespace, 'finance'); // the pod itself is still known
    },
  },
  {
    name: 'an address that is not the pod\'s is left out (a stale slice, or one claiming a pod\'s identity)',
    change: (o) => { slice(o, 'echo-bh7fq').endpoints[0]!.addresses = ['10.244.1.99']; },
    check: (snap, skipped) => {
      const a = service(snap, 'echo').endpoints.find((w) => w.name === A)!;
      assert.deepEqual(a.ips, ['fd00:10:244:1::b']);
      assert.equal(a.ready, true);
      assert.ok(skipped.includes(`service shop/echo: endpoint 10.244.1.99 (EndpointSlice echo-bh7fq): 10.244.1.99 is not an address of pod shop/${A}; left out`), skipped.join('\n'));
    },
  },
  {
    name: 'an endpoint listed in two slices at once (EndpointSlice docs: duplicates happen) is one endpoint, ready if any copy is',
    change: (o) => {
      const copy = structuredClone(slice(o, 'echo-bh7fq').endpoints[0]!);
      copy.conditions = { ready: false, serving: false, terminating: false };
      slice(o, 'echo-k8w3z').endpoints.push(copy);
    },
    check: (snap) => {
      const echo = service(snap, 'echo');
      assert.equal(echo.endpoints.filter((w) => w.name === A).length, 1);
      assert.equal(echo.endpoints.find((w) => w.name === A)!.ready, true);
    },
  },
  {
    name: 'a single-stack IPv4 service of dual-stack pods reaches them on IPv4 only',
    change: (o) => {
      const s = svc(o, 'echo');
      s.spec!.clusterIPs = ['10.96.10.10'];
      s.spec!.ipFamilies = ['IPv4'];
      s.spec!.ipFamilyPolicy = 'SingleStack';
      o.endpointSlices = o.endpointSlices.filter((x) => x.addressType !== 'IPv6');
    },
    check: (snap) => {
      const echo = service(snap, 'echo');
      assert.deepEqual(echo.vips, ['10.96.10.10']);
      assert.deepEqual(echo.endpoints.map((w) => w.ips), [['10.244.2.13'], ['10.244.1.11'], ['10.244.2.12'], ['10.244.1.14']]);
      assert.deepEqual(snap.workloadByIp('fd00:10:244:1::b')?.name, A); // the pod itself still has both
    },
  },
  {
    name: 'a Service read before clusterIPs existed: spec.clusterIP',
    change: (o) => { delete svc(o, 'legacy').spec!.clusterIPs; },
    check: (snap) => assert.deepEqual(service(snap, 'legacy').vips, ['10.96.10.30']),
  },
  {
    name: 'targetPort absent is the port; a slice without the port falls back to the Service\'s number',
    change: (o) => {
      const p = svc(o, 'batch').spec!.ports![0]!;
      p.port = 7001;
      delete p.targetPort;
      slice(o, 'batch-f6t2w').ports = [];
    },
    check: (snap) => {
      const batch = service(snap, 'batch');
      assert.deepEqual(batch.ports, [{ port: 7001, targetPort: 7001 }]);
      assert.deepEqual(batch.endpoints.map((w) => endpointTargetPort(batch.ports[0]!, w)), [7001, 7001]);
    },
  },
  {
    name: 'a named targetPort the slice does not list is found in the pod\'s containerPorts',
    change: (o) => { slice(o, 'echo-k8w3z').ports = [{ name: 'grpc', port: 9090, protocol: 'TCP' }]; },
    check: (snap) => {
      const echo = service(snap, 'echo');
      assert.equal(endpointTargetPort(echo.ports[0]!, echo.endpoints.find((w) => w.name === C)!), 8081);
    },
  },
  {
    name: 'a named port of a sidecar container (an init container with restartPolicy Always) counts; of a plain init container not',
    change: (o) => {
      const p = pod(o, WEB1);
      p.spec!.initContainers = [
        { name: 'setup', image: 'docker.io/library/busybox:1.37', ports: [{ name: 'web', containerPort: 8002, protocol: 'TCP' }] },
        { name: 'proxy', image: 'docker.io/library/envoy:1.32', restartPolicy: 'Always', ports: [{ name: 'web', containerPort: 8001, protocol: 'TCP' }] },
      ];
    },
    check: (snap) => {
      const web = service(snap, 'web');
      assert.equal(endpointTargetPort(web.ports[0]!, web.endpoints.find((w) => w.name === WEB1)!), 8001);
    },
  },
  {
    name: 'a selector-less slice\'s port number is the target, whatever the Service says',
    change: (o) => { slice(o, 'legacy-1').ports = [{ name: 'pg', port: 6432, protocol: 'TCP' }]; },
    check: (snap) => {
      const legacy = service(snap, 'legacy');
      assert.deepEqual(legacy.endpoints.map((w) => endpointTargetPort(legacy.ports[0]!, w)), [6432, 6432]);
    },
  },
  {
    name: 'FQDN slices are not routed; slices of no Service are ignored',
    change: (o) => {
      const s = slice(o, 'legacy-1');
      s.addressType = 'FQDN';
      s.endpoints = [{ addresses: ['pg.db.example.com'], conditions: { ready: true } }];
      const stray = structuredClone(slice(o, 'web-q9x2c'));
      delete stray.metadata!.labels!['kubernetes.io/service-name'];
      stray.metadata!.name = 'stray';
      o.endpointSlices.push(stray);
    },
    check: (snap, skipped) => {
      assert.deepEqual(service(snap, 'legacy').endpoints, []);
      assert.ok(skipped.includes('EndpointSlice shop/legacy-1: address type FQDN is not routed (IPv4 and IPv6 are)'));
      assert.ok(!skipped.some((l) => l.includes('stray')));
    },
  },
  {
    name: 'a host-network pod serves its Service but is not indexed by its (the node\'s) address',
    change: (o) => {
      const p = pod(o, WEB0);
      p.spec!.hostNetwork = true;
      p.status!.podIP = '172.18.0.3';
      p.status!.podIPs = [{ ip: '172.18.0.3' }];
      slice(o, 'web-q9x2c').endpoints[0]!.addresses = ['172.18.0.3'];
    },
    check: (snap) => {
      assert.deepEqual(service(snap, 'web').endpoints[0]!.ips, ['172.18.0.3']);
      assert.equal(snap.workloadByIp('172.18.0.3'), undefined);
    },
  },
  {
    name: 'two live pods claiming one address: neither is indexed by it',
    change: (o) => {
      const p = pod(o, WEB1);
      p.status!.podIP = '10.244.1.31';
      p.status!.podIPs = [{ ip: '10.244.1.31' }];
    },
    check: (snap, skipped) => {
      assert.equal(snap.workloadByIp('10.244.1.31'), undefined);
      assert.ok(skipped.includes(`address 10.244.1.31 is claimed by pods shop/${WEB0}, shop/${WEB1}; left out of the address index until one is gone`), skipped.join('\n'));
    },
  },
  {
    name: 'trust domain and cluster domain come from the options',
    change: () => {},
    opts: { trustDomain: 'corp.example', clusterDomain: 'k8s.corp.internal' },
    check: (snap) => {
      const echo = snap.serviceByHostname('echo.shop.svc.k8s.corp.internal');
      assert.ok(echo);
      assert.equal(echo.endpoints[0]!.principal, 'spiffe://corp.example/ns/shop/sa/echo');
      assert.equal(snap.serviceByHostname(ECHO), undefined);
    },
  },
];

describe('kubernetes mapping: each case on the fixture', () => {
  for (const c of CASES) {
    test(c.name, () => {
      const o = objects();
      c.change(o);
      const { snap, skipped } = map(o, c.opts);
      c.check(snap, skipped);
    });
  }
});

describe('kubernetes mapping: the protocol, as istiod decides it', () => {
  // [labels, annotations, protocol]
  const table: [Record<string, string>, Record<string, string>, string][] = [
    [{}, {}, 'TCP'],
    [{}, { 'ambient.istio.io/redirection': 'enabled' }, 'HBONE'],
    [{}, { 'ambient.istio.io/redirection': 'disabled' }, 'TCP'],
    [{ 'security.istio.io/tlsMode': 'istio' }, {}, 'LEGACY_ISTIO_MTLS'],
    [{ 'security.istio.io/tlsMode': 'disabled' }, {}, 'TCP'],
    [{ 'security.istio.io/tlsMode': 'istio', 'networking.istio.io/tunnel': 'http' }, {}, 'HBONE'],
    [{ 'security.istio.io/tlsMode': 'istio', 'networking.istio.io/tunnel': 'connect,http' }, {}, 'HBONE'],
    [{ 'security.istio.io/tlsMode': 'istio', 'networking.istio.io/tunnel': 'https' }, {}, 'LEGACY_ISTIO_MTLS'],
    [{ 'security.istio.io/tlsMode': 'istio' }, { 'ambient.istio.io/redirection': 'enabled' }, 'HBONE'],
    [{ 'networking.istio.io/tunnel': 'http' }, {}, 'HBONE'],
  ];
  for (const [labels, annotations, protocol] of table) {
    test(`labels ${JSON.stringify(labels)} annotations ${JSON.stringify(annotations)} -> ${protocol}`, () => {
      const o = objects();
      const p = pod(o, WEB0);
      p.metadata!.labels = { ...p.metadata!.labels, ...labels };
      p.metadata!.annotations = { ...p.metadata!.annotations, ...annotations };
      const { snap } = map(o);
      assert.equal(snap.workloadByIp('10.244.1.31')?.protocol, protocol);
      assert.equal(service(snap, 'web').endpoints[0]!.protocol, protocol);
    });
  }
});

describe('kubernetes mapping: the content hash', () => {
  const base = kubeObjectsHash(objects(), OPTS);

  test('the same under list order, resourceVersion, managedFields and fields the mapping does not read', () => {
    const o = objects();
    o.services.reverse();
    o.endpointSlices.reverse();
    o.pods.reverse();
    for (const x of [...o.services, ...o.endpointSlices, ...o.pods]) {
      x.metadata!.resourceVersion = String(Number(x.metadata!.resourceVersion) + 1000);
      x.metadata!.managedFields = [];
    }
    slice(o, 'echo-bh7fq').endpoints.reverse();
    pod(o, A).status!.containerStatuses![0]!.restartCount = 4;
    pod(o, A).metadata!.labels!['pod-template-hash'] = 'x';
    slice(o, 'echo-bh7fq').metadata!.annotations!['endpoints.kubernetes.io/last-change-trigger-time'] = '2026-12-07T14:00:00Z';
    assert.equal(kubeObjectsHash(o, OPTS), base);
    assert.equal(kubeSnapshot(o, OPTS).snapshot.hash, base);
  });

  const changes: [string, (o: Objects) => void][] = [
    ['an endpoint\'s readiness', (o) => { slice(o, 'echo-bh7fq').endpoints[1]!.conditions!.ready = false; }],
    ['a pod\'s service account', (o) => { pod(o, A).spec!.serviceAccountName = 'echo-v2'; }],
    ['a pod\'s tunnel label', (o) => { pod(o, 'db-0').metadata!.labels!['networking.istio.io/tunnel'] = 'http'; }],
    ['a container port', (o) => { pod(o, C).spec!.containers[0]!.ports![0]!.containerPort = 8082; }],
    ['a cluster IP', (o) => { svc(o, 'legacy').spec!.clusterIPs = ['10.96.10.31']; }],
    ['a pod\'s deletion', (o) => { pod(o, B).metadata!.deletionTimestamp = '2026-12-07T14:00:00Z' as unknown as Date; }],
  ];
  for (const [what, change] of changes) {
    test(`changes with ${what}`, () => {
      const o = objects();
      change(o);
      assert.notEqual(kubeObjectsHash(o, OPTS), base);
    });
  }

  test('changes with the trust domain or the cluster domain', () => {
    assert.notEqual(kubeObjectsHash(objects(), { ...OPTS, trustDomain: 'corp.example' }), base);
    assert.notEqual(kubeObjectsHash(objects(), { ...OPTS, clusterDomain: 'corp.internal' }), base);
  });

  test('objects as @kubernetes/client-node\'s list calls hand them out (its ObjectSerializer: Date fields) map and hash the same', async () => {
    // loadYaml deserializes as the generated API clients do; the watch hands out plain JSON.
    const { loadYaml } = await import('@kubernetes/client-node');
    const o = objects();
    const typed: KubeObjects = {
      services: o.services.map((x) => loadYaml<V1Service>(JSON.stringify(x))),
      endpointSlices: o.endpointSlices.map((x) => loadYaml<V1EndpointSlice>(JSON.stringify(x))),
      pods: o.pods.map((x) => loadYaml<V1Pod>(JSON.stringify(x))),
    };
    assert.ok(typed.pods.find((p) => p.metadata!.name === D)!.metadata!.deletionTimestamp instanceof Date);
    assert.equal(kubeObjectsHash(typed, OPTS), base);
    const plain = kubeSnapshot(objects(), OPTS).snapshot;
    const fromTyped = kubeSnapshot(typed, OPTS).snapshot;
    assert.deepEqual(fromTyped.services.map((s) => ({ ...s, endpoints: endpoints(s) })), plain.services.map((s) => ({ ...s, endpoints: endpoints(s) })));
    assert.deepEqual(fromTyped.workloads, plain.workloads);
  });
});

describe('kubernetes snapshots through the router (src/hbone/route.ts)', () => {
  const ALL = new DestinationPolicy({ allow: [{ cidr: '0.0.0.0/0' }, { cidr: '::/0' }] });
  const router = (snap: DiscoverySnapshot, allowPlaintext: boolean, seed = 1): Router =>
    new Router(ALL, { snapshot: () => snap, allowDirect: false, allowPlaintext, balancer: new EndpointBalancer({ random: seededRandom(seed) }) });
  const ip = (addr: string, port: number): Authority => ({ kind: 'ip', ip: addr, port, family: addr.includes(':') ? 6 : 4 });

  test('a sidecar that takes only Istio mTLS is refused with a detail saying so, unless plaintext is allowed (then plain TCP)', () => {
    const { snap } = map(objects());
    const refused = router(snap, false).choose(router(snap, false).resolve(ip('10.244.1.21', 5432)));
    assert.equal(refused.kind, 'refused');
    assert.ok(refused.kind === 'refused');
    assert.equal(refused.check, 'unavailable');
    assert.equal(refused.detail,
      'workload shop/db-0 is an Istio sidecar that takes only Istio mTLS, not HBONE (security.istio.io/tlsMode: istio without networking.istio.io/tunnel: http); waygate does not originate Istio sidecar mTLS, and plaintext upstreams are off (upstream.allowPlaintext)');
    assert.equal(refused.record?.protocol, 'tcp');

    const r = router(snap, true);
    const dial = r.choose(r.resolve(ip('10.244.1.21', 5432)));
    assert.ok(dial.kind === 'dial');
    assert.equal(dial.endpoint?.protocol, 'TCP');
    assert.equal(dial.record?.protocol, 'tcp');
    assert.equal(dial.record?.address, '10.244.1.21:5432');
  });

  test('the same through the headless service by hostname, when the Istio-mTLS pod is its only endpoint', () => {
    const o = objects();
    slice(o, 'db-r4hqz').endpoints.pop(); // db-1 gone
    const { snap } = map(o);
    const r = router(snap, false);
    const c = r.choose(r.resolve({ kind: 'host', host: 'db.shop.svc.cluster.local', port: 5432 }));
    assert.ok(c.kind === 'refused');
    assert.match(c.detail, /^workload shop\/db-0 is an Istio sidecar that takes only Istio mTLS/);
  });

  test('a named targetPort goes to each pod\'s own number; IPv6 VIP to IPv6 addresses', () => {
    const { snap } = map(objects());
    const r = router(snap, false, 7);
    const seen = new Map<string, string>();
    for (let i = 0; i < 40; i++) {
      const c = r.choose(r.resolve(ip('fd00:10:96::a10', 80)));
      assert.ok(c.kind === 'dial');
      assert.equal(c.endpoint?.protocol, 'HBONE');
      assert.equal(c.endpoint?.principal, spiffe('echo'));
      seen.set(c.endpoint!.workload, c.record!.address);
      c.release();
    }
    assert.deepEqual(Object.fromEntries([...seen].sort()), {
      [C]: '[fd00:10:244:2::d]:8081',
      [A]: '[fd00:10:244:1::b]:8080',
      [B]: '[fd00:10:244:2::c]:8080',
    });
  });

  test('only the pod that has the named port is dialed for it; none ready says why', () => {
    const { snap } = map(objects());
    const r = router(snap, true);
    for (let i = 0; i < 10; i++) {
      const c = r.choose(r.resolve(ip('10.96.10.40', 80)));
      assert.ok(c.kind === 'dial');
      assert.equal(c.record?.address, '10.244.1.31:8000');
      c.release();
    }
    const o = objects();
    slice(o, 'web-q9x2c').endpoints[0]!.conditions = { ready: false, serving: false, terminating: false };
    const notReady = map(o).snap;
    const target = { ip: '10.96.10.40', host: '', port: 80 };
    assert.equal(describeUnavailable(resolveDestination(notReady, target), target, notReady),
      'service web.shop.svc.cluster.local has no ready endpoint (1 not ready, 1 without port 80)');
  });
});
