/**
 * Resolution (src/discovery/resolve.ts): a table of CONNECT targets against one mesh, and the
 * operator-facing details of the destinations no tunnel can follow.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseMeshText } from '../../src/discovery/mesh-file.ts';
import type { DiscoverySnapshot } from '../../src/discovery/model.ts';
import { describeUnavailable, endpointAddress, resolveDestination, type Resolution, type ResolveTarget } from '../../src/discovery/resolve.ts';

const MESH = `apiVersion: waygate.dev/v1alpha1
kind: Mesh
services:
  - hostname: echo.shop.svc.cluster.local
    namespace: shop
    vips: ["10.96.0.10", "fd00:96::a"]
    ports: [{ port: 80, targetPort: 8080 }, { port: 9090 }]
    endpoints: [dual, v4-only, v6-only, sleeping]
  - hostname: down.shop.svc.cluster.local
    namespace: shop
    vips: ["10.96.0.20"]
    ports: [{ port: 80 }]
    endpoints: [sleeping, napping]
  - hostname: empty.shop.svc.cluster.local
    namespace: shop
    vips: ["10.96.0.30"]
    ports: [{ port: 80 }]
  - hostname: v6svc.shop.svc.cluster.local
    namespace: shop
    vips: ["fd00:96::b"]
    ports: [{ port: 443 }]
    endpoints: [v4-only]
workloads:
  - { name: dual, namespace: shop, ips: ["10.244.0.1", "fd00:244::1"], serviceAccount: echo }
  - { name: v4-only, namespace: shop, ips: ["10.244.0.2"], serviceAccount: echo }
  - { name: v6-only, namespace: shop, ips: ["fd00:244::3"], serviceAccount: echo }
  - { name: sleeping, namespace: shop, ips: ["10.244.0.4"], serviceAccount: echo, ready: false }
  - { name: napping, namespace: shop, ips: ["10.244.0.5"], serviceAccount: echo, ready: false }
`;

function snapshot(): DiscoverySnapshot {
  const r = parseMeshText(MESH, '/x/mesh.yaml', { trustDomain: 'cluster.local', version: 3 });
  assert.ok('snapshot' in r, JSON.stringify('diagnostics' in r && r.diagnostics));
  return r.snapshot;
}

const snap = snapshot();
const ip = (ip: string, port: number): ResolveTarget => ({ ip, host: '', port });
const host = (host: string, port: number): ResolveTarget => ({ ip: '', host, port });

/** A resolution in a comparable shape: kind, service, port, endpoint names, workload. */
function shape(r: Resolution): unknown {
  switch (r.kind) {
    case 'service':
      return { service: r.service.hostname, port: r.port && [r.port.port, r.port.targetPort], endpoints: r.endpoints.map((w) => w.name) };
    case 'workload':
      return { workload: r.workload.name };
    case 'unknown':
      return 'unknown';
  }
}

describe('resolveDestination', () => {
  const ECHO = 'echo.shop.svc.cluster.local';
  const table: [string, ResolveTarget, unknown][] = [
    ['IPv4 VIP:port: endpoints with an IPv4 address, ready ones only', ip('10.96.0.10', 80), { service: ECHO, port: [80, 8080], endpoints: ['dual', 'v4-only'] }],
    ['IPv6 VIP:port: endpoints with an IPv6 address', ip('fd00:96::a', 80), { service: ECHO, port: [80, 8080], endpoints: ['dual', 'v6-only'] }],
    ['hostname:port: every ready endpoint', host(ECHO, 9090), { service: ECHO, port: [9090, 9090], endpoints: ['dual', 'v4-only', 'v6-only'] }],
    ['hostname, other case', host('Echo.SHOP.svc.cluster.local', 80), { service: ECHO, port: [80, 8080], endpoints: ['dual', 'v4-only', 'v6-only'] }],
    ['hostname with the root dot', host(`${ECHO}.`, 80), { service: ECHO, port: [80, 8080], endpoints: ['dual', 'v4-only', 'v6-only'] }],
    ['unknown port of a known service', ip('10.96.0.10', 81), { service: ECHO, port: null, endpoints: ['dual', 'v4-only'] }],
    ['no ready endpoint', ip('10.96.0.20', 80), { service: 'down.shop.svc.cluster.local', port: [80, 80], endpoints: [] }],
    ['no endpoints at all', ip('10.96.0.30', 80), { service: 'empty.shop.svc.cluster.local', port: [80, 80], endpoints: [] }],
    ['IPv6 VIP, IPv4-only endpoints: the other family rather than none', ip('fd00:96::b', 443), { service: 'v6svc.shop.svc.cluster.local', port: [443, 443], endpoints: ['v4-only'] }],
    ['workload IPv4 address', ip('10.244.0.2', 5000), { workload: 'v4-only' }],
    ['workload IPv6 address', ip('fd00:244::1', 5000), { workload: 'dual' }],
    ['a workload that is not ready is still that workload', ip('10.244.0.4', 80), { workload: 'sleeping' }],
    ['unknown address', ip('10.96.0.99', 80), 'unknown'],
    ['unknown hostname', host('nope.shop.svc.cluster.local', 80), 'unknown'],
    ['a routed host not in the mesh falls back to its address', { ip: '10.96.0.10', host: 'db.local', port: 80 }, { service: ECHO, port: [80, 8080], endpoints: ['dual', 'v4-only'] }],
  ];
  for (const [name, target, expected] of table) {
    test(name, () => assert.deepEqual(shape(resolveDestination(snap, target)), expected));
  }

  test('the same service object and the same endpoint list on every call (computed once per service)', () => {
    const a = resolveDestination(snap, ip('10.96.0.10', 80));
    const b = resolveDestination(snap, ip('10.96.0.10', 80));
    assert.ok(a.kind === 'service' && b.kind === 'service');
    assert.equal(a.service, snap.services[0]);
    assert.equal(a.endpoints, b.endpoints);
    assert.ok(Object.isFrozen(a.endpoints));
  });
});

describe('endpointAddress', () => {
  const [dual, v4only, v6only] = snap.workloads;
  const table: [string, string | undefined][] = [
    [endpointAddress(dual!, 4)!, '10.244.0.1'],
    [endpointAddress(dual!, 6)!, 'fd00:244::1'],
    [endpointAddress(dual!)!, '10.244.0.1'],
    [endpointAddress(v4only!, 6)!, '10.244.0.2'],
    [endpointAddress(v6only!, 4)!, 'fd00:244::3'],
  ];
  test('the address of the family asked for, else the first', () => {
    for (const [got, expected] of table) assert.equal(got, expected);
  });
  test('none without an address', () => {
    assert.equal(endpointAddress({ ...dual!, ips: [] }, 4), undefined);
  });
});

describe('describeUnavailable', () => {
  const table: [string, ResolveTarget, string | null][] = [
    ['unknown port', ip('10.96.0.10', 81), 'service echo.shop.svc.cluster.local has no port 81 (ports: 80, 9090)'],
    ['no ready endpoint', ip('10.96.0.20', 80), 'service down.shop.svc.cluster.local has no ready endpoint (2 not ready)'],
    ['no endpoints', ip('10.96.0.30', 80), 'service empty.shop.svc.cluster.local has no ready endpoint (no endpoints)'],
    ['unknown address', ip('10.96.0.99', 80), '10.96.0.99:80 is not a service or workload known to discovery (mesh-file /x/mesh.yaml, version 3)'],
    ['unknown IPv6 address', ip('fd00::99', 80), '[fd00::99]:80 is not a service or workload known to discovery (mesh-file /x/mesh.yaml, version 3)'],
    ['unknown host', host('nope.example', 443), 'nope.example:443 is not a service or workload known to discovery (mesh-file /x/mesh.yaml, version 3)'],
    ['a service port with endpoints', ip('10.96.0.10', 80), null],
    ['a workload', ip('10.244.0.2', 22), null],
  ];
  for (const [name, target, expected] of table) {
    test(name, () => assert.equal(describeUnavailable(resolveDestination(snap, target), target, snap), expected));
  }

  test('ready endpoints without an address are counted apart', () => {
    const svc = snap.services[1]!;
    const noAddress = { ...snap.workloads[1]!, ips: [] };
    const r: Resolution = { kind: 'service', service: { ...svc, endpoints: [svc.endpoints[0]!, noAddress] }, port: svc.ports[0]!, endpoints: [] };
    assert.equal(describeUnavailable(r, ip('10.96.0.20', 80), snap), 'service down.shop.svc.cluster.local has no ready endpoint (1 not ready, 1 without an address)');
  });

  test('before any snapshot loaded', () => {
    assert.equal(describeUnavailable({ kind: 'unknown' }, ip('10.0.0.1', 80), null), '10.0.0.1:80 is not a service or workload known to discovery (no discovery snapshot loaded yet)');
  });
});
