/**
 * Rule coverage and rules that match nothing by construction (src/policy/policy-test.ts): a rule
 * whose condition, or whose policy's selector, is the literal `false` (what `policy import` writes
 * for an Istio ALLOW policy without rules or a NetworkPolicy without ingress rules) cannot be
 * reached by any case. It is listed apart and left out of the percentage, so an imported set starts
 * at 100% without a case that asserts nothing; every other rule is counted as before.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { compileFromTexts } from '../../src/policy/load.ts';
import { runPolicyTests } from '../../src/policy/policy-test.ts';
import { runCli } from '../helpers/cli.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function cli(...args: string[]): Promise<{ code: number; stdout: string }> {
  const r = await runCli(args);
  return { code: r.code, stdout: r.stdout + r.stderr };
}

const POLICIES = `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: api }
spec:
  action: ALLOW
  rules:
    - name: frontend
      when: source.principal == "spiffe://cluster.local/ns/prod/sa/frontend"
    - name: never
      when: "false"
    - name: admin
      when: source.principal == "spiffe://cluster.local/ns/prod/sa/admin"
---
apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: off }
spec:
  action: DENY
  selector: "false"
  rules:
    - name: anyone
      when: "true"
`;

const TESTS = `apiVersion: waygate.dev/v1alpha1
kind: PolicyTest
metadata: { name: t }
spec:
  cases:
    - name: frontend
      input: { source: { principal: "spiffe://cluster.local/ns/prod/sa/frontend" } }
      expect: { decision: allow, rule: frontend }
`;

describe('coverage: rules that match nothing by construction', () => {
  it('a literal false condition or selector is listed apart and not counted; other unreached rules still are', () => {
    const loaded = compileFromTexts([{ path: 'p.yaml', text: POLICIES }, { path: 't.yaml', text: TESTS }], 1);
    assert.ok(loaded.ok);
    const r = runPolicyTests(loaded.snapshot, loaded.tests, { threshold: 100 });
    const cov = r.coverage;
    assert.deepEqual(cov.matchesNothing.map((x) => `${x.policy}/${x.rule}`), ['api/never', 'off/anyone']);
    assert.deepEqual(cov.unreached.map((x) => `${x.policy}/${x.rule}`), ['api/admin']);
    assert.deepEqual([cov.totalRules, cov.countedRules, cov.reachedRules, cov.percent], [4, 2, 1, 50]);
    assert.equal(r.coverageOk, false, 'a reachable rule no case reached still holds coverage down');
  });

  it('policy import istio: an ALLOW policy without rules, then policy test --coverage --threshold 100 exits 0 and names the rule', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'waygate-cover-nothing-'));
    dirs.push(dir);
    await writeFile(join(dir, 'in.yaml'), `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: istio-system
spec:
  action: ALLOW
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: callers
  namespace: istio-system
spec:
  rules:
    - from:
        - source: { principals: ["cluster.local/ns/prod/sa/frontend"] }
`);
    const out = join(dir, 'out');
    const imp = await cli('policy', 'import', 'istio', join(dir, 'in.yaml'), '--out', out);
    assert.equal(imp.code, 0, imp.stdout);
    const test = await cli('policy', 'test', out, '--coverage', '--threshold', '100');
    assert.equal(test.code, 0, test.stdout);
    assert.match(test.stdout, /rule coverage 1\/1 \(100%\)/);
    assert.match(test.stdout, /rules that match nothing by construction \(`false`: no case can reach them; not counted\):\n {2}istio-system\.allow-nothing\/nothing \(ALLOW\) {2}\S*istio-system\.allow-nothing\.yaml:\d+:\d+/);
  });

  it('policy import networkpolicy: a policy without ingress rules reaches 100% the same way', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'waygate-cover-nothing-'));
    dirs.push(dir);
    await writeFile(join(dir, 'np.yaml'), `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: shop
spec:
  podSelector: {}
  policyTypes: ["Ingress"]
`);
    const out = join(dir, 'out');
    const imp = await cli('policy', 'import', 'networkpolicy', join(dir, 'np.yaml'), '--out', out);
    assert.equal(imp.code, 0, imp.stdout);
    const test = await cli('policy', 'test', out, '--coverage', '--threshold', '100');
    assert.equal(test.code, 0, test.stdout);
    assert.match(test.stdout, /shop\.deny-all\/nothing \(ALLOW\)/);
  });
});
