/**
 * `waygate policy import istio` (src/policy/import/istio.ts, write.ts).
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
import { main } from '../../src/cli/main.ts';
import { captureOutput } from '../../src/cli/output.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import { decide } from '../../src/policy/engine.ts';
import { generateFiles, importIstio } from '../../src/policy/import/istio.ts';
import { loadPolicySet } from '../../src/policy/load.ts';
import type { PolicyTestInput } from '../../src/policy/model.ts';
import { runPolicyTests } from '../../src/policy/policy-test.ts';

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
