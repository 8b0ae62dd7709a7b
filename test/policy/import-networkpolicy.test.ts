/**
 * `waygate policy import networkpolicy` (src/policy/import/networkpolicy.ts).
 *
 * Expected verdicts are written from the Kubernetes NetworkPolicy reference
 * (kubernetes.io/docs/concepts/services-networking/network-policies), never from the importer:
 * a pod selected by a policy of type Ingress accepts only connections some ingress rule of some
 * such policy allows (rules and policies are additive); a pod no policy selects is not isolated;
 * a policy with no ingress rule isolates its pods; in a rule, one of `from` AND one of `ports`
 * must match, an empty or absent list matching everything; ipBlock matches cidr minus except;
 * endPort makes an inclusive range; a port entry without port means every port of its protocol;
 * `podSelector: {}` alone as a peer is every pod of the policy's namespace. Behind waygate a
 * caller's namespace is its identity's (`source.namespace`), and "not isolated" is the gateway's
 * `defaultAction: ALLOW`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { contextFromInput } from '../../src/policy/context-input.ts';
import { decide } from '../../src/policy/engine.ts';
import { generateFiles } from '../../src/policy/import/istio.ts';
import { importNetworkPolicies } from '../../src/policy/import/networkpolicy.ts';
import { loadPolicySet } from '../../src/policy/load.ts';
import { runPolicyTests } from '../../src/policy/policy-test.ts';
import { runCli } from '../helpers/cli.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'waygate-import-np-'));
  dirs.push(d);
  return d;
}

function np(ns: string, name: string, spec: string): string {
  return `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: ${name}
  namespace: ${ns}
spec:
${spec.replace(/^/gm, '  ')}
`;
}

/** Caller namespace (null: no identity), source address, destination namespace and port. */
type Tunnel = [from: string | null, src: string, toNamespace: string, port: number];

const SHOP = np('shop', 'shop', `podSelector: {}
policyTypes: ["Ingress"]
ingress:
- from:
  - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: frontend } }
  - podSelector: {}
  ports:
  - { protocol: TCP, port: 8080 }
- from:
  - namespaceSelector: { matchExpressions: [{ key: kubernetes.io/metadata.name, operator: In, values: [monitoring] }] }
  ports:
  - { port: 9090, endPort: 9099 }
- from:
  - ipBlock: { cidr: 10.50.0.0/16, except: ["10.50.200.0/24"] }`);

const TABLE: Array<{ name: string; yaml: string; grid: Array<[Tunnel, 'allow' | 'deny']> }> = [
  {
    name: 'namespaceSelector by name, podSelector {} (own namespace), ports; unselected namespaces are not isolated',
    yaml: SHOP,
    grid: [
      [['frontend', '10.9.0.1', 'shop', 8080], 'allow'], [['frontend', '10.9.0.1', 'shop', 8081], 'deny'],
      [['shop', '10.9.0.1', 'shop', 8080], 'allow'], [['dev', '10.9.0.1', 'shop', 8080], 'deny'],
      [[null, '10.9.0.1', 'shop', 8080], 'deny'], [['dev', '10.9.0.1', 'web', 8080], 'allow'],
    ],
  },
  {
    name: 'endPort is an inclusive range; ipBlock is cidr minus except, on any port',
    yaml: SHOP,
    grid: [
      [['monitoring', '10.9.0.1', 'shop', 9090], 'allow'], [['monitoring', '10.9.0.1', 'shop', 9099], 'allow'],
      [['monitoring', '10.9.0.1', 'shop', 9100], 'deny'], [['monitoring', '10.9.0.1', 'shop', 9089], 'deny'],
      [[null, '10.50.1.1', 'shop', 22], 'allow'], [[null, '10.50.200.5', 'shop', 22], 'deny'], [[null, '10.51.0.1', 'shop', 22], 'deny'],
    ],
  },
  {
    name: 'no ingress rule isolates; a second policy on the same pods adds to it',
    yaml: np('vault', 'deny-all', 'podSelector: {}\npolicyTypes: ["Ingress"]') + '---\n' +
      np('vault', 'ops', 'podSelector: {}\ningress:\n- from:\n  - namespaceSelector: { matchExpressions: [{ key: kubernetes.io/metadata.name, operator: NotIn, values: [dev] }] }'),
    grid: [[['ops', '10.9.0.1', 'vault', 8200], 'allow'], [['dev', '10.9.0.1', 'vault', 8200], 'deny'], [[null, '10.9.0.1', 'vault', 8200], 'allow']],
  },
  {
    name: 'no ingress rule alone denies everything to the namespace',
    yaml: np('vault', 'deny-all', 'podSelector: {}\npolicyTypes: ["Ingress"]'),
    grid: [[['ops', '10.9.0.1', 'vault', 8200], 'deny'], [[null, '10.50.1.1', 'vault', 1], 'deny'], [['ops', '10.9.0.1', 'web', 80], 'allow']],
  },
  {
    name: 'an empty rule allows everything; from absent = every source; a port entry without port = every TCP port',
    yaml: np('a', 'all', 'podSelector: {}\ningress:\n- {}') + '---\n' +
      np('b', 'ports', 'podSelector: {}\ningress:\n- ports:\n  - { port: 80 }') + '---\n' +
      np('c', 'tcp', 'podSelector: {}\ningress:\n- from:\n  - namespaceSelector: {}\n  ports:\n  - { port: 80 }\n  - { protocol: TCP }'),
    grid: [
      [[null, '10.9.0.1', 'a', 1], 'allow'], [[null, '10.9.0.1', 'b', 80], 'allow'], [['x', '10.9.0.1', 'b', 81], 'deny'],
      [['x', '10.9.0.1', 'c', 81], 'allow'], [[null, '10.9.0.1', 'c', 80], 'deny'],
    ],
  },
];

describe('policy import networkpolicy: verdicts equal the Kubernetes semantics', () => {
  for (const row of TABLE) {
    it(row.name, async () => {
      const r = importNetworkPolicies([{ file: 'in.yaml', text: row.yaml }]);
      assert.deepEqual(r.refusals, []);
      const dir = await tempDir();
      for (const f of generateFiles(r.policies)) await writeFile(join(dir, f.name), f.text);
      const loaded = await loadPolicySet([dir], { version: 1 });
      assert.ok(loaded.ok, JSON.stringify(!loaded.ok && loaded.diagnostics));
      for (const [[from, src, ns, port], want] of row.grid) {
        const ctx = contextFromInput({
          source: { ...(from === null ? {} : { principal: `spiffe://cluster.local/ns/${from}/sa/default` }), ip: src },
          destination: { ip: '10.20.0.1', port, namespace: ns },
        });
        const d = decide(loaded.snapshot, ctx, { defaultAction: 'ALLOW' });
        assert.equal(d.decision, want, `${JSON.stringify([from, src, ns, port])}: ${d.reason} ${d.policy ?? ''}/${d.rule ?? ''}`);
      }
      const report = runPolicyTests(loaded.snapshot, loaded.tests);
      assert.equal(report.failed, 0, JSON.stringify(report.cases.filter((c) => !c.passed), null, 1));
    });
  }
});

const REFUSED = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: bad
  namespace: shop
spec:
  podSelector:
    matchLabels: { app: api }
  policyTypes: ["Ingress", "Egress"]
  ingress:
    - from:
        - podSelector:
            matchLabels: { role: client }
        - namespaceSelector:
            matchLabels: { team: blue }
        - ipBlock: { cidr: 10.0.0.0/33 }
      ports:
        - protocol: UDP
          port: 53
        - port: http
        - port: 9000
          endPort: 8000
  egress:
    - {}
`;

describe('policy import networkpolicy: refusals name file:line:col', () => {
  it('refuses pod selectors, namespace labels other than the name, egress, UDP, named ports and bad ranges', () => {
    const r = importNetworkPolicies([{ file: 'r.yaml', text: REFUSED }]);
    const got = r.refusals.map((x) => [x.line, x.col, x.path]).sort((a, b) => (a[0] as number) - (b[0] as number) || (a[1] as number) - (b[1] as number));
    assert.deepEqual(got, [
      [7, 3, 'spec.podSelector'],
      [9, 28, 'spec.policyTypes[1]'],
      [12, 11, 'spec.ingress[0].from[0].podSelector'],
      [15, 28, 'spec.ingress[0].from[1].namespaceSelector.matchLabels.team'],
      [16, 28, 'spec.ingress[0].from[2].ipBlock.cidr'],
      [18, 21, 'spec.ingress[0].ports[0].protocol'],
      [20, 17, 'spec.ingress[0].ports[1].port'],
      [22, 20, 'spec.ingress[0].ports[2].endPort'],
      [23, 3, 'spec.egress'],
    ]);
    assert.match(r.refusals.find((x) => x.path === 'spec.ingress[0].ports[1].port')!.message, /"http" is a named port/);
    assert.match(r.refusals.find((x) => x.path === 'spec.ingress[0].ports[0].protocol')!.message, /UDP: waygate carries TCP tunnels only/);
    assert.deepEqual(r.policies, []);
  });
});

async function cli(...args: string[]): Promise<{ code: number; stdout: string }> {
  const r = await runCli(args);
  return { code: r.code, stdout: r.stdout + r.stderr };
}

describe('waygate policy import networkpolicy (CLI)', () => {
  it('imports examples/import/networkpolicy: exit 0, and the set passes check --strict, fmt --check and test --coverage at 100%', async () => {
    const out = join(await tempDir(), 'out');
    const r = await cli('policy', 'import', 'networkpolicy', 'examples/import/networkpolicy', '--out', out);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /advice: Kubernetes allows ingress to a pod that no NetworkPolicy selects/);
    assert.deepEqual((await readdir(out)).sort(), ['shop.shop-ingress.test.yaml', 'shop.shop-ingress.yaml']);
    assert.equal((await cli('policy', 'check', '--strict', out)).code, 0);
    assert.equal((await cli('policy', 'fmt', '--check', out)).code, 0);
    const test = await cli('policy', 'test', out, '--coverage', '--threshold', '100');
    assert.equal(test.code, 0, test.stdout);
    assert.match(test.stdout, /rule coverage 3\/3 \(100%\)/);
  });

  it('exit 1 and nothing written on a refusal; exit 2 on a missing path', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'r.yaml'), REFUSED);
    const r = await cli('policy', 'import', 'networkpolicy', join(dir, 'r.yaml'), '--out', join(dir, 'out'));
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, /r\.yaml:20:17: error WG_IMPORT_REFUSED at spec\.ingress\[0\]\.ports\[1\]\.port: "http" is a named port/);
    await assert.rejects(readdir(join(dir, 'out')), { code: 'ENOENT' });
    const missing = await cli('policy', 'import', 'networkpolicy', join(dir, 'nope'), '--out', join(dir, 'out'));
    assert.equal(missing.code, 2);
  });
});
