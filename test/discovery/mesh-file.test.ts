/**
 * The mesh file (src/discovery/mesh-file.ts): a good file becomes a frozen snapshot with canonical
 * addresses, principals and defaults; every bad file is refused with WG_MESH diagnostics at the
 * exact file:line:col and field path, all problems in one pass; an empty file is never "no services".
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { Diagnostic } from '../../src/errors.ts';
import { loadMeshFile, meshHash, parseMeshText } from '../../src/discovery/mesh-file.ts';
import { hashSources } from '../../src/policy/sources.ts';

const GOOD = new URL('../fixtures/mesh/good.yaml', import.meta.url).pathname;
const OPTS = { trustDomain: 'fallback.local', version: 7 };
const HEADER = 'apiVersion: waygate.dev/v1alpha1\nkind: Mesh\n';
const dir = mkdtempSync(join(tmpdir(), 'waygate-mesh-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function parsed(text: string, file = 'mesh.yaml') {
  const r = parseMeshText(text, file, OPTS);
  assert.ok('snapshot' in r, 'diagnostics' in r ? r.diagnostics.map((d) => `${d.line}:${d.col} ${d.path} ${d.message}`).join('\n') : '');
  return r.snapshot;
}

function diagnosticsOf(text: string): Diagnostic[] {
  const r = parseMeshText(text, 'mesh.yaml', OPTS);
  assert.ok('diagnostics' in r, 'expected diagnostics, got a snapshot');
  for (const d of r.diagnostics) {
    assert.equal(d.code, 'WG_MESH');
    assert.equal(d.file, 'mesh.yaml');
    assert.equal(d.severity, 'error');
  }
  return r.diagnostics;
}

describe('mesh file: a good file', () => {
  const text = readFileSync(GOOD, 'utf8');
  const snap = parsed(text, GOOD);

  test('lookups by VIP (any spelling), hostname (any case, trailing dot) and workload address', () => {
    const echo = snap.serviceByHostname('echo.shop.svc.cluster.local')!;
    assert.equal(echo.hostname, 'echo.shop.svc.cluster.local'); // written Echo.Shop...: stored lower-case
    assert.equal(snap.serviceByHostname('ECHO.shop.SVC.cluster.local.'), echo);
    assert.equal(snap.serviceByVip('10.96.0.10'), echo);
    assert.equal(snap.serviceByVip('fd00:96::a'), echo);
    assert.equal(snap.serviceByVip('FD00:96:0:0:0:0:0:A'), echo);
    assert.equal(snap.serviceByVip('::ffff:10.96.0.10'), echo);
    assert.equal(snap.serviceByVip('10.96.0.11'), undefined);
    assert.equal(snap.serviceByHostname('nope.shop.svc.cluster.local'), undefined);
    assert.equal(snap.workloadByIp('10.244.2.9')?.name, 'echo-2'); // written ::ffff:10.244.2.9
    assert.equal(snap.workloadByIp('fd00:244::107')?.name, 'echo-1'); // written FD00:244::0107
    assert.equal(snap.workloadByIp('10.96.0.10'), undefined);
    assert.equal(snap.serviceByVip('not an address'), undefined);
  });

  test('canonical addresses, ports, endpoints in file order, shared workload objects', () => {
    const echo = snap.serviceByHostname('echo.shop.svc.cluster.local')!;
    assert.deepEqual(echo.vips, ['10.96.0.10', 'fd00:96::a']);
    assert.deepEqual(echo.ports, [{ port: 80, targetPort: 8080 }, { port: 9090, targetPort: 9090 }]); // targetPort defaults to port
    assert.deepEqual(echo.endpoints.map((w) => w.name), ['echo-1', 'echo-2', 'echo-3']);
    assert.equal(echo.endpoints[0], snap.workloadByIp('10.244.1.7'));
    assert.deepEqual(snap.serviceByHostname('db.shop.svc.cluster.local')!.vips, []); // headless
    assert.deepEqual(snap.workloads.map((w) => w.ips), [['10.244.1.7', 'fd00:244::107'], ['10.244.2.9'], ['10.244.3.4'], ['10.244.5.5']]);
  });

  test('principal from the file\'s trust domain; defaults: HBONE, 15008, ready', () => {
    const [echo1, echo2, echo3, db] = snap.workloads;
    assert.deepEqual({ ...echo1 }, {
      name: 'echo-1', namespace: 'shop', ips: ['10.244.1.7', 'fd00:244::107'], serviceAccount: 'echo',
      principal: 'spiffe://cluster.local/ns/shop/sa/echo', protocol: 'HBONE', tunnelPort: 15008, ready: true,
    });
    assert.equal(echo2!.tunnelPort, 15009);
    assert.equal(echo3!.ready, false);
    assert.equal(db!.protocol, 'TCP');
    assert.equal(db!.principal, 'spiffe://cluster.local/ns/shop/sa/db');
  });

  test('without trustDomain in the file, the gateway\'s is used', () => {
    const s = parsed(`${HEADER}workloads:\n  - { name: a, namespace: ns, ips: ["10.0.0.1"], serviceAccount: sa }\n`);
    assert.equal(s.workloads[0]!.principal, 'spiffe://fallback.local/ns/ns/sa/sa');
  });

  test('version, source, hash; everything frozen', () => {
    assert.equal(snap.version, 7);
    assert.equal(snap.source, `mesh-file ${GOOD}`);
    assert.equal(snap.hash, hashSources([{ path: GOOD, text }]));
    assert.equal(snap.hash, meshHash(GOOD, text));
    assert.match(snap.hash, /^[0-9a-f]{64}$/);
    for (const o of [snap, snap.services, snap.workloads, snap.services[0], snap.services[0]!.vips, snap.services[0]!.ports,
      snap.services[0]!.ports[0], snap.services[0]!.endpoints, snap.workloads[0], snap.workloads[0]!.ips]) {
      assert.ok(Object.isFrozen(o));
    }
  });

  test('a file with no services or workloads is an empty mesh, not an error', () => {
    const s = parsed(HEADER);
    assert.deepEqual([s.services.length, s.workloads.length], [0, 0]);
  });
});

describe('mesh file: bad files', () => {
  const W = (extra = '') => `workloads:\n  - name: echo-1\n    namespace: shop\n    ips: ["10.244.1.7"]\n    serviceAccount: echo\n${extra}`;
  // [name, text, [line, col, path, message]]: the one diagnostic each file must produce.
  const table: [string, string, [number, number, string, RegExp]][] = [
    ['wrong apiVersion', 'apiVersion: v1\nkind: Mesh\n', [1, 13, 'apiVersion', /must be one of waygate\.dev\/v1alpha1/]],
    ['wrong kind', 'apiVersion: waygate.dev/v1alpha1\nkind: GatewayConfig\n', [2, 7, 'kind', /must be one of Mesh/]],
    ['missing kind', 'apiVersion: waygate.dev/v1alpha1\n', [1, 1, 'kind', /missing required field "kind"/]],
    ['unknown top-level field', `${HEADER}service: []\n`, [3, 1, 'service', /unknown field "service"/]],
    ['bad trust domain', `${HEADER}trustDomain: Cluster.Local\n`, [3, 14, 'trustDomain', /not a SPIFFE trust domain/]],
    ['services not a list', `${HEADER}services: {}\n`, [3, 11, 'services', /expected a list, got a mapping/]],
    ['unknown workload field', `${HEADER}${W('    serviceaccount: x\n')}`, [8, 5, 'workloads[0].serviceaccount', /unknown field "serviceaccount"/]],
    ['missing serviceAccount', `${HEADER}workloads:\n  - { name: a, namespace: ns, ips: ["10.0.0.1"] }\n`, [4, 5, 'workloads[0].serviceAccount', /missing required field "serviceAccount"/]],
    ['namespace not a DNS label', `${HEADER}workloads:\n  - { name: a, namespace: my.ns, ips: ["10.0.0.1"], serviceAccount: sa }\n`, [4, 27, 'workloads[0].namespace', /"my\.ns" is not a valid namespace: an RFC 1123 label/]],
    ['namespace too long', `${HEADER}workloads:\n  - { name: a, namespace: ${'n'.repeat(64)}, ips: ["10.0.0.1"], serviceAccount: sa }\n`, [4, 27, 'workloads[0].namespace', /RFC 1123 label/]],
    ['serviceAccount upper case', `${HEADER}workloads:\n  - { name: a, namespace: ns, ips: ["10.0.0.1"], serviceAccount: Web }\n`, [4, 66, 'workloads[0].serviceAccount', /"Web" is not a valid service account name/]],
    ['leading-zero IPv4', `${HEADER}workloads:\n  - { name: a, namespace: ns, ips: ["010.0.0.1"], serviceAccount: sa }\n`, [4, 37, 'workloads[0].ips[0]', /"010\.0\.0\.1" is not an IPv4 or IPv6 address/]],
    ['IPv6 with a zone', `${HEADER}workloads:\n  - { name: a, namespace: ns, ips: ["fe80::1%eth0"], serviceAccount: sa }\n`, [4, 37, 'workloads[0].ips[0]', /not an IPv4 or IPv6 address/]],
    ['unspecified address', `${HEADER}workloads:\n  - { name: a, namespace: ns, ips: ["0.0.0.0"], serviceAccount: sa }\n`, [4, 37, 'workloads[0].ips[0]', /not a unicast address/]],
    ['address as a number', `${HEADER}workloads:\n  - { name: a, namespace: ns, ips: [10], serviceAccount: sa }\n`, [4, 37, 'workloads[0].ips[0]', /expected a string, got number 10/]],
    ['no address', `${HEADER}workloads:\n  - { name: a, namespace: ns, ips: [], serviceAccount: sa }\n`, [4, 36, 'workloads[0].ips', /at least one address/]],
    ['two IPv4 addresses', `${HEADER}workloads:\n  - { name: a, namespace: ns, ips: ["10.0.0.1", "10.0.0.2"], serviceAccount: sa }\n`, [4, 49, 'workloads[0].ips[1]', /at most one IPv4 address/]],
    ['bad protocol', `${HEADER}${W('    protocol: hbone\n')}`, [8, 15, 'workloads[0].protocol', /must be one of HBONE, TCP; got string "hbone"/]],
    ['tunnelPort 0', `${HEADER}${W('    tunnelPort: 0\n')}`, [8, 17, 'workloads[0].tunnelPort', /0 is out of range 1-65535/]],
    ['ready not a boolean', `${HEADER}${W('    ready: "yes"\n')}`, [8, 12, 'workloads[0].ready', /expected true or false, got string "yes"/]],
    ['duplicate workload in a namespace', `${HEADER}${W('  - { name: echo-1, namespace: shop, ips: ["10.0.0.9"], serviceAccount: x }\n')}`,
      [8, 13, 'workloads[1].name', /duplicate workload "echo-1" in namespace shop \(also workloads\[0\]\.name\)/]],
    ['duplicate address across workloads', `${HEADER}${W('  - { name: echo-2, namespace: shop, ips: ["10.244.1.7"], serviceAccount: x }\n')}`,
      [8, 44, 'workloads[1].ips[0]', /10\.244\.1\.7 is already the address of workload shop\/echo-1 \(workloads\[0\]\.ips\[0\]\)/]],
    ['duplicate address, other spelling', `${HEADER}${W('  - { name: echo-2, namespace: shop, ips: ["::ffff:10.244.1.7"], serviceAccount: x }\n')}`,
      [8, 44, 'workloads[1].ips[0]', /10\.244\.1\.7 is already the address/]],
    ['duplicate key', `${HEADER}${W('    serviceAccount: other\n')}`, [8, 5, 'workloads[0].serviceAccount', /duplicate field "serviceAccount"/]],
    ['hostname is an address', `${HEADER}services:\n  - { hostname: 10.0.0.1, namespace: ns, ports: [{ port: 80 }] }\n`, [4, 17, 'services[0].hostname', /is an IP address/]],
    ['hostname not a DNS name', `${HEADER}services:\n  - { hostname: "echo_svc.ns", namespace: ns, ports: [{ port: 80 }] }\n`, [4, 17, 'services[0].hostname', /"echo_svc\.ns" is not a valid hostname/]],
    ['missing hostname', `${HEADER}services:\n  - { namespace: ns, ports: [{ port: 80 }] }\n`, [4, 5, 'services[0].hostname', /missing required field "hostname"/]],
    ['missing ports', `${HEADER}services:\n  - { hostname: a.ns, namespace: ns }\n`, [4, 5, 'services[0].ports', /missing required field "ports"/]],
    ['empty ports', `${HEADER}services:\n  - { hostname: a.ns, namespace: ns, ports: [] }\n`, [4, 45, 'services[0].ports', /at least one port/]],
    ['port 0', `${HEADER}services:\n  - { hostname: a.ns, namespace: ns, ports: [{ port: 0 }] }\n`, [4, 54, 'services[0].ports[0].port', /0 is out of range 1-65535/]],
    ['targetPort 65536', `${HEADER}services:\n  - { hostname: a.ns, namespace: ns, ports: [{ port: 80, targetPort: 65536 }] }\n`, [4, 70, 'services[0].ports[0].targetPort', /65536 is out of range/]],
    ['port as a string', `${HEADER}services:\n  - { hostname: a.ns, namespace: ns, ports: [{ port: "80" }] }\n`, [4, 54, 'services[0].ports[0].port', /expected an integer, got string "80"/]],
    ['port without port', `${HEADER}services:\n  - { hostname: a.ns, namespace: ns, ports: [{ targetPort: 80 }] }\n`, [4, 46, 'services[0].ports[0].port', /missing required field "port"/]],
    ['duplicate port', `${HEADER}services:\n  - { hostname: a.ns, namespace: ns, ports: [{ port: 80 }, { port: 80, targetPort: 1 }] }\n`, [4, 60, 'services[0].ports[1]', /duplicate port 80 \(also services\[0\]\.ports\[0\]\)/]],
    ['duplicate hostname, other case', `${HEADER}services:\n  - { hostname: a.ns, namespace: ns, ports: [{ port: 80 }] }\n  - { hostname: A.NS, namespace: ns, ports: [{ port: 81 }] }\n`,
      [5, 17, 'services[1].hostname', /duplicate service hostname "a\.ns" \(also services\[0\]\.hostname\)/]],
    ['duplicate VIP', `${HEADER}services:\n  - { hostname: a.ns, namespace: ns, vips: ["10.96.0.1"], ports: [{ port: 80 }] }\n  - { hostname: b.ns, namespace: ns, vips: ["10.96.0.1"], ports: [{ port: 80 }] }\n`,
      [5, 45, 'services[1].vips[0]', /VIP 10\.96\.0\.1 is already a VIP of service a\.ns \(services\[0\]\.vips\[0\]\)/]],
    ['VIP that is a workload address', `${HEADER}services:\n  - { hostname: a.shop, namespace: shop, vips: ["10.244.1.7"], ports: [{ port: 80 }] }\n${W()}`,
      [4, 49, 'services[0].vips[0]', /VIP 10\.244\.1\.7 is also the address of workload shop\/echo-1 \(workloads\[0\]\.ips\[0\]\)/]],
    ['endpoint naming no workload', `${HEADER}services:\n  - { hostname: a.shop, namespace: shop, ports: [{ port: 80 }], endpoints: [echo-1, echo-9] }\n${W()}`,
      [4, 85, 'services[0].endpoints[1]', /no workload "echo-9" in namespace shop/]],
    ['endpoint in another namespace', `${HEADER}services:\n  - { hostname: a.web, namespace: web, ports: [{ port: 80 }], endpoints: [echo-1] }\n${W()}`,
      [4, 75, 'services[0].endpoints[0]', /no workload "echo-1" in namespace web/]],
    ['duplicate endpoint', `${HEADER}services:\n  - { hostname: a.shop, namespace: shop, ports: [{ port: 80 }], endpoints: [echo-1, echo-1] }\n${W()}`,
      [4, 85, 'services[0].endpoints[1]', /duplicate endpoint "echo-1"/]],
    ['YAML syntax error', `${HEADER}services: [\n`, [4, 1, '', /./]],
    ['two documents', `${HEADER}---\n${HEADER}`, [4, 1, '', /exactly one Mesh document/]],
  ];
  for (const [name, text, [line, col, path, message]] of table) {
    test(`rejects: ${name}`, () => {
      const diags = diagnosticsOf(text);
      assert.equal(diags.length, 1, diags.map((d) => `${d.line}:${d.col} ${d.path} ${d.message}`).join('\n'));
      const d = diags[0]!;
      assert.deepEqual([d.line, d.col, d.path], [line, col, path], d.message);
      assert.match(d.message, message);
    });
  }

  test('every problem in one pass, in file order', () => {
    const text = `${HEADER}services:
  - hostname: echo.shop.svc.cluster.local
    namespace: shop
    vips: ["10.96.0.10", "10.244.1.7"]
    ports: [{ port: 0 }, { port: 80 }, { port: 80 }]
    endpoints: [echo-1, nope]
    color: blue
workloads:
  - name: echo-1
    namespace: shop
    ips: ["10.244.1.7", "10.244.1.8"]
    serviceAccount: echo
    protocol: http
  - name: echo-2
    namespace: shop
    ips: ["10.244.1.7"]
    serviceAccount: Echo_
`;
    const got = diagnosticsOf(text).map((d) => [d.line, d.col, d.path]);
    assert.deepEqual(got, [
      [6, 26, 'services[0].vips[1]'], // also echo-1's address
      [7, 21, 'services[0].ports[0].port'],
      [7, 40, 'services[0].ports[2]'], // duplicate port 80
      [8, 25, 'services[0].endpoints[1]'], // no workload "nope"
      [9, 5, 'services[0].color'],
      [13, 25, 'workloads[0].ips[1]'], // a second IPv4 address
      [15, 15, 'workloads[0].protocol'],
      [18, 11, 'workloads[1].ips[0]'], // echo-1's address again
      [19, 21, 'workloads[1].serviceAccount'],
    ]);
  });

  test('an empty file, a comment only, or a bare document marker is refused, never an empty mesh', () => {
    for (const text of ['', '\n', '# emptied by a torn write\n']) {
      const d = diagnosticsOf(text);
      assert.deepEqual(d.map((x) => [x.line, x.col, x.message]), [[1, 1, 'the file holds no document']], JSON.stringify(text));
    }
    // A document marker alone is a document holding null: still refused.
    assert.match(diagnosticsOf('---\n')[0]!.message, /expected a mapping, got null/);
  });

  test('loadMeshFile: reads the file; a missing file or a directory is WG_MESH at 1:1', async () => {
    const file = join(dir, 'mesh.yaml');
    writeFileSync(file, `${HEADER}${W()}`);
    const ok = await loadMeshFile(file, OPTS);
    assert.ok('snapshot' in ok);
    assert.equal(ok.snapshot.workloads[0]!.name, 'echo-1');
    const missing = await loadMeshFile(join(dir, 'absent.yaml'), OPTS);
    assert.ok('diagnostics' in missing);
    assert.deepEqual(missing.diagnostics.map((d) => [d.code, d.line, d.col]), [['WG_MESH', 1, 1]]);
    assert.match(missing.diagnostics[0]!.message, /^cannot read mesh file: ENOENT/);
    const isDir = await loadMeshFile(dir, OPTS);
    assert.ok('diagnostics' in isDir);
    assert.match(isDir.diagnostics[0]!.message, /is a directory/);
  });
});
