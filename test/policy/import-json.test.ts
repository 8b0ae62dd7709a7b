/**
 * `waygate policy import istio|networkpolicy -o json`: one report document on stdout (src/cli/policy-import.ts
 * ImportReport) with the translated policies and where they were written, every refusal with its
 * file:line:col, code and reason, the notes (destination-side policies among them) and the advice,
 * and the same exit codes as the text output (0 all translated, 1 something refused, 2 unreadable).
 */
import assert from 'node:assert/strict';
import { access, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { ImportReport } from '../../src/cli/policy-import.ts';
import { runCli } from '../helpers/cli.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'waygate-import-json-'));
  dirs.push(d);
  return d;
}

/** Runs the CLI in-process; stdout must be exactly one JSON document. */
async function importJson(...args: string[]): Promise<{ code: number; report: ImportReport; stderr: string }> {
  const r = await runCli(['policy', 'import', ...args, '-o', 'json']);
  return { code: r.code, report: JSON.parse(r.stdout) as ImportReport, stderr: r.stderr };
}

const ISTIO = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: http
  namespace: shop
spec:
  targetRefs:
    - { kind: Service, name: api }
  rules:
    - to:
        - operation:
            methods: ["GET"]
            ports: ["http"]
      when:
        - key: request.headers[x-user]
          values: ["u"]
        - key: connection.sni
          values: ["s"]
---
apiVersion: security.istio.io/v1
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
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ns-callers
  namespace: shop
spec:
  rules:
    - from:
        - source: { namespaces: ["frontend"] }
`;

describe('policy import istio -o json', () => {
  it('examples/import/istio: exit 0, every policy with the files written, the default-action advice', async () => {
    const out = join(await tempDir(), 'out');
    const { code, report } = await importJson('istio', 'examples/import/istio', '--out', out);
    assert.equal(code, 0);
    assert.equal(report.exitCode, 0);
    assert.equal(report.status, 'ok');
    assert.equal(report.written, true);
    assert.equal(report.source, 'istio');
    assert.deepEqual(report.refusals, []);
    assert.deepEqual(report.policies.map((p) => p.policy).sort(), ['istio-system.deny-dev', 'shop.api', 'shop.database', 'shop.database-audit', 'shop.require-identity']);
    const api = report.policies.find((p) => p.policy === 'shop.api')!;
    assert.deepEqual([api.source, api.action, api.mode, api.rules, api.refused], ['shop/api', 'ALLOW', 'Enforce', 2, false]);
    assert.deepEqual(api.origin, { file: 'examples/import/istio/shop.yaml', line: 6, col: 9, path: 'metadata.name' });
    assert.deepEqual(api.scope, { kind: 'services', hosts: ['api.shop.svc.cluster.local'] });
    assert.equal(report.policies.find((p) => p.policy === 'shop.require-identity')!.mode, 'DryRun');
    const written = (await readdir(out)).sort();
    assert.deepEqual(report.policies.flatMap((p) => p.files).map((f) => f.slice(out.length + 1)).sort(), written);
    const defaultAction = report.advice.find((a) => a.kind === 'default-action')!;
    assert.equal(defaultAction.defaultAction, 'ALLOW');
    assert.match(defaultAction.message, /Istio allows a tunnel that no ALLOW policy governs/);
    assert.deepEqual(report.advice.find((a) => a.kind === 'discovery')!.policies!.sort(), ['shop.api', 'shop.database', 'shop.database-audit', 'shop.require-identity']);
  });

  it('refusals: exit 1, nothing written, each with file:line:col, WG_IMPORT_REFUSED and its reason; destination-side policies flagged', async () => {
    const dir = await tempDir();
    const file = join(dir, 'in.yaml');
    await writeFile(file, ISTIO);
    const out = join(dir, 'out');
    const { code, report } = await importJson('istio', file, '--out', out);
    assert.equal(code, 1);
    assert.equal(report.exitCode, 1);
    assert.equal(report.status, 'refused');
    assert.equal(report.written, false);
    await assert.rejects(access(out), { code: 'ENOENT' });
    const got = report.refusals.map((r) => [r.line, r.col, r.path, r.policy, r.code, r.reason]);
    assert.deepEqual(got, [
      [12, 13, 'spec.rules[0].to[0].operation.methods', 'shop/http', 'WG_IMPORT_REFUSED', 'http-attribute'],
      [13, 21, 'spec.rules[0].to[0].operation.ports[0]', 'shop/http', 'WG_IMPORT_REFUSED', 'invalid-port'],
      [15, 16, 'spec.rules[0].when[0].key', 'shop/http', 'WG_IMPORT_REFUSED', 'http-attribute'],
      [17, 16, 'spec.rules[0].when[1].key', 'shop/http', 'WG_IMPORT_REFUSED', 'unknown-when-key'],
      [26, 11, 'spec.action', 'shop/ext', 'WG_IMPORT_REFUSED', 'custom-action'],
      [36, 3, 'spec.selector', 'shop/pods', 'WG_IMPORT_REFUSED', 'workload-selector'],
    ]);
    assert.ok(report.refusals.every((r) => r.file === file && r.message.length > 0));
    // The namespace-wide ALLOW by identity translates, and is flagged: its ztunnel would deny what waygate forwards.
    assert.deepEqual(report.destinationSide, ['shop/ns-callers']);
    const note = report.notes.find((n) => n.kind === 'destination-side')!;
    assert.deepEqual([note.file, note.line, note.policy], [file, 43, 'shop/ns-callers']);
    assert.deepEqual(report.policies.map((p) => [p.policy, p.refused, p.files]), [['shop.ns-callers', false, []]]);
    assert.deepEqual(report.advice, [], 'no advice when nothing is written');
  });

  it('--partial: exit 1, status partial, the translated policy written and listed', async () => {
    const dir = await tempDir();
    const file = join(dir, 'in.yaml');
    await writeFile(file, ISTIO);
    const out = join(dir, 'out');
    const { code, report } = await importJson('istio', file, '--out', out, '--partial');
    assert.equal(code, 1);
    assert.equal(report.status, 'partial');
    assert.equal(report.written, true);
    assert.deepEqual(report.policies.find((p) => p.policy === 'shop.ns-callers')!.files, [join(out, 'shop.ns-callers.yaml'), join(out, 'shop.ns-callers.test.yaml')]);
    assert.deepEqual((await readdir(out)).sort(), ['shop.ns-callers.test.yaml', 'shop.ns-callers.yaml']);
    assert.equal(report.refusals.length, 6);
  });

  it('unreadable input: exit 2, status failed, WG_IMPORT_INPUT with the position', async () => {
    const dir = await tempDir();
    const missing = await importJson('istio', join(dir, 'nope.yaml'), '--out', join(dir, 'out'));
    assert.equal(missing.code, 2);
    assert.equal(missing.report.status, 'failed');
    assert.equal(missing.report.unreadable[0]!.code, 'WG_IMPORT_INPUT');
    await writeFile(join(dir, 'bad.yaml'), 'kind: [\n');
    const syntax = await importJson('istio', join(dir, 'bad.yaml'), '--out', join(dir, 'out'));
    assert.equal(syntax.code, 2);
    assert.equal(syntax.report.exitCode, 2);
    const u = syntax.report.unreadable[0]!;
    assert.deepEqual([u.file, u.code], [join(dir, 'bad.yaml'), 'WG_IMPORT_INPUT']);
    assert.ok(u.line >= 1 && u.col >= 1);
    await assert.rejects(access(join(dir, 'out')), { code: 'ENOENT' });
  });
});

describe('policy import networkpolicy -o json', () => {
  it('examples/import/networkpolicy: exit 0 and the Kubernetes default advice', async () => {
    const out = join(await tempDir(), 'out');
    const { code, report } = await importJson('networkpolicy', 'examples/import/networkpolicy', '--out', out);
    assert.equal(code, 0);
    assert.equal(report.source, 'networkpolicy');
    assert.deepEqual(report.policies.map((p) => [p.source, p.action, p.refused]), [['shop/shop-ingress', 'ALLOW', false]]);
    assert.match(report.advice.find((a) => a.kind === 'default-action')!.message, /Kubernetes allows ingress to a pod that no NetworkPolicy selects/);
  });

  it('egress, a named port and UDP are refused with their reasons', async () => {
    const dir = await tempDir();
    const file = join(dir, 'np.yaml');
    await writeFile(file, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
  namespace: shop
spec:
  podSelector: {}
  ingress:
    - ports:
        - port: http
        - protocol: UDP
          port: 53
  egress:
    - {}
`);
    const { code, report } = await importJson('networkpolicy', file, '--out', join(dir, 'out'));
    assert.equal(code, 1);
    assert.deepEqual(report.refusals.map((r) => [r.line, r.col, r.path, r.reason]), [
      [10, 17, 'spec.ingress[0].ports[0].port', 'named-port'],
      [11, 21, 'spec.ingress[0].ports[1].protocol', 'protocol'],
      [13, 3, 'spec.egress', 'egress'],
    ]);
  });
});
