/**
 * `waygate policy import istio` (src/policy/import/istio.ts, src/cli/policy-import-run.ts).
 *
 * The table's expected verdicts are written from Istio's documented semantics, never from the
 * importer: the authorization-policy reference (istio.io/latest/docs/reference/config/security/
 * authorization-policy: DENY first; no ALLOW policy for the workload -> allow; a matching ALLOW ->
 * allow; otherwise deny; AUDIT never changes a verdict; rules ORed, fields of a rule ANDed, values
 * of a field ORed; `*`, `prefix*`, `*suffix` matching; "allow-nothing" = ALLOW without rules,
 * "allow-all" = `rules: [{}]`; the root namespace makes a policy mesh-wide) and ztunnel's L4
 * evaluator (istio/ztunnel src/rbac.rs, Authorization::matches: empty rules match nothing, a `not`
 * field holds when none of its values match, so a peer without identity satisfies notPrincipals;
 * StringMatch::Presence is any non-empty value; principals are matched without "spiffe://").
 * Each case imports the Istio YAML, loads the generated files with the real loader and decides
 * every input of its grid with the real engine under defaultAction ALLOW (Istio's default).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { contextFromInput } from '../../src/policy/context-input.ts';
import { decide } from '../../src/policy/engine.ts';
import { generateFiles, importIstio } from '../../src/policy/import/istio.ts';
import { loadPolicySet } from '../../src/policy/load.ts';
import type { PolicyTestInput } from '../../src/policy/model.ts';
import { runPolicyTests } from '../../src/policy/policy-test.ts';
import { runCli, type CliRun } from '../helpers/cli.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'waygate-import-istio-'));
  dirs.push(d);
  return d;
}

/** An Istio AuthorizationPolicy document. */
function ap(ns: string, name: string, spec: string, annotations = ''): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ${name}
  namespace: ${ns}
${annotations}spec:
${spec.replace(/^/gm, '  ')}
`;
}

/** A tunnel: who (SPIFFE path without "spiffe://", or null) -> where. */
interface Tunnel {
  id: string | null;
  src?: string;
  dst?: string;
  port?: number;
  service?: string;
  ns?: string;
}

function input(t: Tunnel): PolicyTestInput {
  return {
    source: { ...(t.id === null ? {} : { principal: `spiffe://${t.id}` }), ip: t.src ?? '10.9.0.1' },
    destination: {
      ip: t.dst ?? '10.20.0.1',
      port: t.port ?? 8080,
      ...(t.service === undefined ? {} : { service: t.service }),
      ...(t.ns === undefined ? {} : { namespace: t.ns }),
    },
  };
}

async function importToDir(yamlText: string): Promise<string> {
  const r = importIstio([{ file: 'in.yaml', text: yamlText }]);
  assert.deepEqual(r.refusals, [], 'no refusal expected');
  assert.deepEqual(r.unreadable, []);
  const d = await tempDir();
  for (const f of generateFiles(r.policies)) await writeFile(join(d, f.name), f.text);
  return d;
}

type Expect = 'allow' | 'deny' | { decision: 'allow' | 'deny'; dryRun?: 'allow' | 'deny'; audit?: string[] };

interface Row {
  name: string;
  yaml: string;
  grid: Array<[Tunnel, Expect]>;
}

const A = 'cluster.local/ns/a/sa/x';
const AY = 'cluster.local/ns/a/sa/y';
const BX = 'cluster.local/ns/b/sa/x';
const ROOT = 'istio-system';

const TABLE: Row[] = [
  {
    name: 'principals: exact; no identity never matches',
    yaml: ap(ROOT, 'p', `rules:\n- from:\n  - source: { principals: ["${A}"] }`),
    grid: [[{ id: A }, 'allow'], [{ id: AY }, 'deny'], [{ id: null }, 'deny']],
  },
  {
    name: 'notPrincipals: holds when no value matches, including without identity',
    yaml: ap(ROOT, 'p', `rules:\n- from:\n  - source: { notPrincipals: ["${A}"] }`),
    grid: [[{ id: A }, 'deny'], [{ id: AY }, 'allow'], [{ id: null }, 'allow']],
  },
  {
    name: 'principals "*" is presence; notPrincipals "*" is absence',
    yaml: ap(ROOT, 'any', `rules:\n- from:\n  - source: { principals: ["*"] }\n  to:\n  - operation: { ports: ["80"] }`) + '---\n' +
      ap(ROOT, 'none', `rules:\n- from:\n  - source: { notPrincipals: ["*"] }\n  to:\n  - operation: { ports: ["81"] }`),
    grid: [[{ id: A, port: 80 }, 'allow'], [{ id: null, port: 80 }, 'deny'], [{ id: null, port: 81 }, 'allow'], [{ id: A, port: 81 }, 'deny']],
  },
  {
    name: 'principals prefix* and *suffix',
    yaml: ap(ROOT, 'p', `rules:\n- from:\n  - source: { principals: ["cluster.local/ns/a/*", "*/sa/z"] }`),
    grid: [[{ id: A }, 'allow'], [{ id: AY }, 'allow'], [{ id: BX }, 'deny'], [{ id: 'cluster.local/ns/b/sa/z' }, 'allow'], [{ id: null }, 'deny']],
  },
  {
    name: 'namespaces: exact, prefix, suffix; notNamespaces',
    yaml: ap(ROOT, 'n', `rules:\n- from:\n  - source: { namespaces: ["a", "team-*", "*-prod"] }\n  - source: { notNamespaces: ["*"] }`),
    grid: [
      [{ id: A }, 'allow'], [{ id: 'cluster.local/ns/team-x/sa/s' }, 'allow'], [{ id: 'cluster.local/ns/web-prod/sa/s' }, 'allow'],
      [{ id: BX }, 'deny'], [{ id: null }, 'allow'],
    ],
  },
  {
    name: 'serviceAccounts ns/sa exact; notServiceAccounts holds without identity',
    yaml: ap(ROOT, 's', `rules:\n- from:\n  - source: { serviceAccounts: ["a/x"] }\n  to:\n  - operation: { ports: ["80"] }\n- from:\n  - source: { notServiceAccounts: ["a/x"] }\n  to:\n  - operation: { ports: ["81"] }`),
    grid: [
      [{ id: A, port: 80 }, 'allow'], [{ id: AY, port: 80 }, 'deny'], [{ id: BX, port: 80 }, 'deny'], [{ id: null, port: 80 }, 'deny'],
      [{ id: A, port: 81 }, 'deny'], [{ id: null, port: 81 }, 'allow'], [{ id: BX, port: 81 }, 'allow'],
    ],
  },
  {
    name: 'ipBlocks (address, CIDR, IPv6) and notIpBlocks',
    yaml: ap(ROOT, 'ip', `rules:\n- from:\n  - source: { ipBlocks: ["10.1.2.3", "192.168.0.0/16", "2001:db8::/32"], notIpBlocks: ["192.168.7.0/24"] }`),
    grid: [
      [{ id: null, src: '10.1.2.3' }, 'allow'], [{ id: null, src: '10.1.2.4' }, 'deny'], [{ id: null, src: '192.168.1.1' }, 'allow'],
      [{ id: null, src: '192.168.7.9' }, 'deny'], [{ id: null, src: '2001:db8::5' }, 'allow'], [{ id: null, src: '2001:db9::5' }, 'deny'],
    ],
  },
  {
    name: 'ports and notPorts',
    yaml: ap(ROOT, 'ports', `rules:\n- to:\n  - operation: { ports: ["80", "443"] }\n- to:\n  - operation: { notPorts: ["22", "80", "443", "8080"] }\n  from:\n  - source: { principals: ["${A}"] }`),
    grid: [[{ id: null, port: 80 }, 'allow'], [{ id: null, port: 443 }, 'allow'], [{ id: null, port: 22 }, 'deny'], [{ id: A, port: 23 }, 'allow'], [{ id: A, port: 22 }, 'deny']],
  },
  {
    name: 'when: source.ip, destination.ip, destination.port, source.namespace, source.principal, values and notValues',
    yaml: ap(ROOT, 'w', `rules:\n- when:\n  - { key: source.ip, values: ["10.0.0.0/8"] }\n  - { key: destination.ip, notValues: ["10.20.0.9"] }\n  - { key: destination.port, values: ["8080", "9090"] }\n  - { key: source.namespace, values: ["a"] }\n  - { key: source.principal, notValues: ["*/sa/y"] }`),
    grid: [
      [{ id: A }, 'allow'], [{ id: A, port: 9090 }, 'allow'], [{ id: A, port: 80 }, 'deny'], [{ id: A, src: '11.0.0.1' }, 'deny'],
      [{ id: A, dst: '10.20.0.9' }, 'deny'], [{ id: BX }, 'deny'], [{ id: AY }, 'deny'], [{ id: null }, 'deny'],
    ],
  },
  {
    name: 'rules ORed; sources ORed; fields of a source ANDed; from and to ANDed',
    yaml: ap(ROOT, 'or', `rules:\n- from:\n  - source: { principals: ["${A}"], ipBlocks: ["10.9.0.0/16"] }\n  - source: { namespaces: ["b"] }\n  to:\n  - operation: { ports: ["8080"] }\n- to:\n  - operation: { ports: ["7070"] }`),
    grid: [
      [{ id: A }, 'allow'], [{ id: A, src: '10.8.0.1' }, 'deny'], [{ id: BX }, 'allow'], [{ id: BX, port: 9090 }, 'deny'],
      [{ id: null, port: 7070 }, 'allow'], [{ id: AY }, 'deny'],
    ],
  },
  {
    name: 'ALLOW without rules allows nothing (allow-nothing); another ALLOW still allows',
    yaml: ap(ROOT, 'allow-nothing', 'action: ALLOW') + '---\n' + ap(ROOT, 'a', `rules:\n- from:\n  - source: { principals: ["${A}"] }`),
    grid: [[{ id: A }, 'allow'], [{ id: BX }, 'deny'], [{ id: null }, 'deny']],
  },
  {
    name: 'ALLOW without rules alone denies everything it governs',
    yaml: ap(ROOT, 'allow-nothing', '{}'),
    grid: [[{ id: A }, 'deny'], [{ id: null, port: 1 }, 'deny']],
  },
  {
    name: 'rules: [{}] matches everything (allow-all); DENY [{}] denies everything it governs',
    yaml: ap(ROOT, 'allow-all', 'rules:\n- {}') + '---\n' + ap('shop', 'deny-all', 'action: DENY\nrules:\n- {}'),
    grid: [[{ id: null }, 'allow'], [{ id: A, ns: 'other' }, 'allow'], [{ id: A, ns: 'shop' }, 'deny']],
  },
  {
    name: 'DENY without rules denies nothing; no ALLOW policy -> allow',
    yaml: ap(ROOT, 'deny-nothing', 'action: DENY'),
    grid: [[{ id: A }, 'allow'], [{ id: null }, 'allow']],
  },
  {
    name: 'DENY is evaluated before ALLOW',
    yaml: ap(ROOT, 'allow-all', 'rules:\n- {}') + '---\n' + ap(ROOT, 'deny-b', `action: DENY\nrules:\n- from:\n  - source: { namespaces: ["b"] }`),
    grid: [[{ id: A }, 'allow'], [{ id: BX }, 'deny'], [{ id: null }, 'allow']],
  },
  {
    name: 'targetRefs a Service: only tunnels to that service; no ALLOW applying elsewhere -> allow',
    yaml: ap('shop', 'api', `targetRefs:\n- { kind: Service, group: "", name: api }\nrules:\n- from:\n  - source: { principals: ["${A}"] }`),
    grid: [
      [{ id: A, service: 'api.shop.svc.cluster.local', ns: 'shop' }, 'allow'], [{ id: BX, service: 'api.shop.svc.cluster.local', ns: 'shop' }, 'deny'],
      [{ id: BX, service: 'web.shop.svc.cluster.local', ns: 'shop' }, 'allow'], [{ id: BX }, 'allow'],
    ],
  },
  {
    name: 'namespace-wide (no selector outside the root namespace): tunnels to that namespace',
    yaml: ap('shop', 'ns', `rules:\n- from:\n  - source: { namespaces: ["a"] }`),
    grid: [[{ id: A, ns: 'shop' }, 'allow'], [{ id: BX, ns: 'shop' }, 'deny'], [{ id: BX, ns: 'web' }, 'allow'], [{ id: BX }, 'allow']],
  },
  {
    name: 'targetRefs the waypoint Gateway: every tunnel',
    yaml: ap('shop', 'gw', `targetRefs:\n- { kind: Gateway, group: gateway.networking.k8s.io, name: waypoint }\nrules:\n- from:\n  - source: { namespaces: ["a"] }`),
    grid: [[{ id: A }, 'allow'], [{ id: BX, ns: 'web' }, 'deny'], [{ id: null }, 'deny']],
  },
  {
    name: 'AUDIT never changes the verdict and lists its match',
    yaml: ap(ROOT, 'audit-b', `action: AUDIT\nrules:\n- from:\n  - source: { namespaces: ["b"] }`) + '---\n' + ap(ROOT, 'a', `rules:\n- from:\n  - source: { namespaces: ["a"] }`),
    grid: [
      [{ id: BX }, { decision: 'deny', audit: ['istio-system.audit-b/rule-0'] }],
      [{ id: A }, { decision: 'allow', audit: [] }],
    ],
  },
  {
    name: 'istio.io/dry-run: evaluated, reported, never enforced',
    yaml: ap(ROOT, 'trial', `action: DENY\nrules:\n- from:\n  - source: { namespaces: ["b"] }`, '  annotations:\n    istio.io/dry-run: "true"\n'),
    grid: [[{ id: BX }, { decision: 'allow', dryRun: 'deny' }], [{ id: A }, { decision: 'allow', dryRun: 'allow' }]],
  },
];

describe('policy import istio: verdicts equal Istio\'s documented semantics', () => {
  for (const row of TABLE) {
    it(row.name, async () => {
      const dir = await importToDir(row.yaml);
      const loaded = await loadPolicySet([dir], { version: 1 });
      assert.ok(loaded.ok, JSON.stringify(!loaded.ok && loaded.diagnostics));
      for (const [tunnel, want] of row.grid) {
        const d = decide(loaded.snapshot, contextFromInput(input(tunnel)), { defaultAction: 'ALLOW' });
        const w = typeof want === 'string' ? { decision: want } : want;
        const label = `${JSON.stringify(tunnel)}: ${d.reason} ${d.policy ?? ''}/${d.rule ?? ''}`;
        assert.equal(d.decision, w.decision, label);
        if (w.dryRun !== undefined) assert.equal(d.dryRun?.decision ?? d.decision, w.dryRun, label);
        if (w.audit !== undefined) assert.deepEqual(d.audit.map((a) => `${a.policy}/${a.rule}`), w.audit, label);
      }
      // The generated PolicyTests (expectations from the importer's own Istio evaluator) agree
      // with the engine on the generated CEL too.
      const report = runPolicyTests(loaded.snapshot, loaded.tests);
      assert.equal(report.failed, 0, JSON.stringify(report.cases.filter((c) => !c.passed), null, 1));
      assert.ok(report.total > 0);
    });
  }
});

/** Every refusal the issue lists, in one input; positions are the offending key or value. */
const REFUSED = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: http
  namespace: shop
spec:
  rules:
    - from:
        - source:
            requestPrincipals: ["issuer/subject"]
            remoteIpBlocks: ["1.2.3.4"]
            principals: ["spiffe://cluster.local/ns/a/sa/x", "a*b"]
      to:
        - operation:
            methods: ["GET"]
            paths: ["/x"]
            hosts: ["h"]
            ports: ["http", "70000", "80-90"]
      when:
        - key: request.headers[x-user]
          values: ["u"]
        - key: connection.sni
          values: ["s"]
        - key: source.ip
          values: ["10.0.0.300"]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: ext
  namespace: shop
spec:
  action: CUSTOM
  provider: { name: opa }
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: pods
  namespace: shop
spec:
  selector:
    matchLabels: { app: api }
  rules:
    - from:
        - source: { serviceAccounts: ["x"] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: route
  namespace: shop
spec:
  targetRefs:
    - { kind: HTTPRoute, group: gateway.networking.k8s.io, name: r }
    - { kind: Service, name: api }
  rules:
    - to:
        - operation: { ports: ["443"] }
`;

const GOOD = ap('shop', 'good', `targetRefs:\n- { kind: Service, name: api }\nrules:\n- from:\n  - source: { principals: ["${A}"] }`);

describe('policy import istio: refusals name file:line:col', () => {
  it('refuses every untranslatable field, CUSTOM, selectors, unknown when keys and bad values, and translates nothing of those policies', () => {
    const r = importIstio([{ file: 'r.yaml', text: REFUSED }]);
    const got = r.refusals.map((x) => [x.line, x.col, x.path, x.policy]).sort((a, b) => (a[0] as number) - (b[0] as number) || (a[1] as number) - (b[1] as number));
    assert.deepEqual(got, [
      [10, 13, 'spec.rules[0].from[0].source.requestPrincipals', 'shop/http'],
      [11, 13, 'spec.rules[0].from[0].source.remoteIpBlocks', 'shop/http'],
      [12, 26, 'spec.rules[0].from[0].source.principals[0]', 'shop/http'],
      [12, 62, 'spec.rules[0].from[0].source.principals[1]', 'shop/http'],
      [15, 13, 'spec.rules[0].to[0].operation.methods', 'shop/http'],
      [16, 13, 'spec.rules[0].to[0].operation.paths', 'shop/http'],
      [17, 13, 'spec.rules[0].to[0].operation.hosts', 'shop/http'],
      [18, 21, 'spec.rules[0].to[0].operation.ports[0]', 'shop/http'],
      [18, 29, 'spec.rules[0].to[0].operation.ports[1]', 'shop/http'],
      [18, 38, 'spec.rules[0].to[0].operation.ports[2]', 'shop/http'],
      [20, 16, 'spec.rules[0].when[0].key', 'shop/http'],
      [22, 16, 'spec.rules[0].when[1].key', 'shop/http'],
      [25, 20, 'spec.rules[0].when[2].values[0]', 'shop/http'],
      [33, 11, 'spec.action', 'shop/ext'],
      [43, 3, 'spec.selector', 'shop/pods'],
      [47, 39, 'spec.rules[0].from[0].source.serviceAccounts[0]', 'shop/pods'],
      [56, 15, 'spec.targetRefs[0].kind', 'shop/route'],
    ]);
    const msg = (path: string) => r.refusals.find((x) => x.path === path)!.message;
    assert.match(msg('spec.rules[0].to[0].operation.methods'), /HTTP attribute/);
    assert.match(msg('spec.rules[0].from[0].source.principals[0]'), /without "spiffe:\/\/".*write "cluster\.local\/ns\/a\/sa\/x"/);
    assert.match(msg('spec.action'), /CUSTOM/);
    assert.match(msg('spec.selector'), /workload selector.*targetRefs/);
    assert.match(msg('spec.rules[0].when[1].key'), /"connection\.sni" is not one of the L4 keys/);
    assert.match(msg('spec.rules[0].to[0].operation.ports[2]'), /"80-90" is not a port/);
    assert.deepEqual(r.policies, []);
  });

  it('a YAML syntax error is unreadable input with its position', () => {
    const r = importIstio([{ file: 'bad.yaml', text: 'apiVersion: security.istio.io/v1\nkind: [AuthorizationPolicy\n' }]);
    assert.equal(r.unreadable.length, 1);
    assert.equal(r.unreadable[0]!.file, 'bad.yaml');
    assert.ok(r.unreadable[0]!.line >= 2, JSON.stringify(r.unreadable));
  });

  it('other kinds are skipped with a note; a missing namespace is refused', () => {
    const r = importIstio([{ file: 'x.yaml', text: 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: c }\n---\n' + GOOD.replace('  namespace: shop\n', '') }]);
    assert.match(r.notes[0]!.message, /skipped: not an Istio AuthorizationPolicy \(apiVersion v1, kind ConfigMap\)/);
    // Line 8: the metadata mapping (lines 1-3 ConfigMap, 4 ---, 5-7 apiVersion, kind, metadata:).
    assert.deepEqual(r.refusals.map((x) => [x.line, x.col, x.path]), [[8, 3, 'metadata.namespace']]);
  });

  it('a workload-bound ALLOW by identity is reported: the destination ztunnel would deny what waygate forwards', () => {
    const r = importIstio([{ file: 'n.yaml', text: ap('shop', 'ns', `rules:\n- from:\n  - source: { namespaces: ["a"] }`) + '---\n' + GOOD }]);
    assert.deepEqual(r.refusals, []);
    assert.deepEqual(r.notes.map((n) => [n.policy, n.line]), [['shop/ns', 4]]);
    assert.match(r.notes[0]!.message, /ztunnel enforces it.*would deny every tunnel waygate forwards/);
  });
});

function cli(...args: string[]): Promise<CliRun> {
  return runCli(args);
}

describe('waygate policy import istio (CLI)', () => {
  it('imports examples/import/istio: exit 0, advice printed, and the set passes check, fmt --check and test --coverage at 100%', async () => {
    const out = join(await tempDir(), 'out');
    const r = await cli('policy', 'import', 'istio', 'examples/import/istio', '--out', out);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /advice: Istio allows a tunnel that no ALLOW policy governs/);
    assert.match(r.stdout, /^ok: imported 5 policies \(6 rules\)/m);
    assert.deepEqual((await readdir(out)).sort(), [
      'istio-system.deny-dev.test.yaml', 'istio-system.deny-dev.yaml',
      'shop.api.test.yaml', 'shop.api.yaml',
      'shop.database-audit.test.yaml', 'shop.database-audit.yaml',
      'shop.database.test.yaml', 'shop.database.yaml',
      'shop.require-identity.test.yaml', 'shop.require-identity.yaml',
    ]);
    const api = await readFile(join(out, 'shop.api.yaml'), 'utf8');
    // docs/writing-policies.md "Migrating from Istio" shows this run and this file verbatim.
    const doc = await readFile('docs/writing-policies.md', 'utf8');
    const shown = /\$ waygate policy import istio examples\/import\/istio --out imported\/\n([\s\S]*?)\$ cat imported\/shop\.api\.yaml\n([\s\S]*?)\$ waygate policy test imported\/ --coverage\n/.exec(doc);
    assert.ok(shown, 'the worked example is in docs/writing-policies.md');
    assert.equal(shown[1], r.stdout.replaceAll(out, 'imported/').replace('imported//', 'imported/'));
    assert.equal(shown[2], api);
    assert.match(api, /^# Imported from the Istio AuthorizationPolicy shop\/api\n# \(examples\/import\/istio\/shop\.yaml:6:9\)/);
    assert.match(await readFile(join(out, 'shop.require-identity.yaml'), 'utf8'), /mode: DryRun/);

    const check = await cli('policy', 'check', '--strict', out);
    assert.equal(check.code, 0, check.stdout);
    assert.match(check.stdout, /ok: 5 policies \(6 rules\) and 5 tests in 10 files: 0 errors, 0 warnings/);
    const fmt = await cli('policy', 'fmt', '--check', out);
    assert.equal(fmt.code, 0, fmt.stdout);
    const test = await cli('policy', 'test', out, '--coverage', '--threshold', '100');
    assert.equal(test.code, 0, test.stdout);
    assert.match(test.stdout, /rule coverage 6\/6 \(100%\)/);
  });

  it('exit 1 and nothing written when something is refused; positions printed', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'r.yaml'), REFUSED + '---\n' + GOOD);
    const out = join(dir, 'out');
    const r = await cli('policy', 'import', 'istio', join(dir, 'r.yaml'), '--out', out);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, new RegExp(`^${join(dir, 'r.yaml').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:33:11: error WG_IMPORT_REFUSED at spec\\.action: CUSTOM`, 'm'));
    assert.match(r.stdout, /nothing written \(--partial writes the 1 policies that translate\)/);
    await assert.rejects(readdir(out), { code: 'ENOENT' });
  });

  it('--partial writes what translates and still exits 1', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'r.yaml'), REFUSED + '---\n' + GOOD);
    const out = join(dir, 'out');
    const r = await cli('policy', 'import', 'istio', join(dir, 'r.yaml'), '--out', out, '--partial');
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, /^partial: imported 1 policy \(1 rules\) into .*: 2 files; 4 policies refused and not written/m);
    assert.deepEqual((await readdir(out)).sort(), ['shop.good.test.yaml', 'shop.good.yaml']);
    const test = await cli('policy', 'test', out, '--threshold', '100');
    assert.equal(test.code, 0, test.stdout);
  });

  it('exit 2 for a missing path or a YAML syntax error, nothing written', async () => {
    const dir = await tempDir();
    const out = join(dir, 'out');
    const missing = await cli('policy', 'import', 'istio', join(dir, 'nope.yaml'), '--out', out);
    assert.equal(missing.code, 2);
    assert.match(missing.stdout, /WG_IMPORT_INPUT/);
    await mkdir(join(dir, 'in'));
    await writeFile(join(dir, 'in', 'a.yaml'), GOOD);
    await writeFile(join(dir, 'in', 'b.yaml'), 'kind: [\n');
    const syntax = await cli('policy', 'import', 'istio', join(dir, 'in'), '--out', out);
    assert.equal(syntax.code, 2, syntax.stdout);
    assert.match(syntax.stdout, /b\.yaml:\d+:\d+: error WG_IMPORT_INPUT at <document>: not valid YAML/);
    await assert.rejects(readdir(out), { code: 'ENOENT' });
  });

  it('policy check on an Istio policy names the import command', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'ap.yaml'), GOOD);
    const r = await cli('policy', 'check', dir);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /Translate it with `waygate policy import istio FILE\|DIR --out DIR`/);
  });
});

describe('policy import istio: empty matches', () => {
  it('a source, operation or condition with only empty lists is refused (ztunnel skips an empty match: it matches nothing)', () => {
    const yaml = ap('shop', 'empty', 'rules:\n- from:\n  - source: { principals: [] }\n- to:\n  - operation: { ports: [] }\n- when:\n  - { key: source.ip, values: [] }');
    const r = importIstio([{ file: 'e.yaml', text: yaml }]);
    assert.deepEqual(r.refusals.map((x) => [x.line, x.col, x.path]), [
      [9, 15, 'spec.rules[0].from[0].source'],
      [11, 18, 'spec.rules[1].to[0].operation'],
      [13, 7, 'spec.rules[2].when[0]'],
    ]);
    assert.match(r.refusals[0]!.message, /ztunnel skips an empty match/);
  });
});
