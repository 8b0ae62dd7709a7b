import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileFromTexts } from '../../src/policy/load.ts';
import type { PolicyTest } from '../../src/policy/model.ts';
import { runPolicyTests, type TestReport } from '../../src/policy/policy-test.ts';
import type { PolicySnapshot } from '../../src/policy/snapshot.ts';

const POLICIES = `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: api }
spec:
  action: ALLOW
  selector: destination.port == 8080
  rules:
    - name: frontend
      when: source.principal == "spiffe://cluster.local/ns/prod/sa/frontend"
    - name: admin
      when: source.serviceAccount == "admin"
---
apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: deny-dev }
spec:
  action: DENY
  rules:
    - name: dev
      when: source.namespace == "dev"
    - name: sandbox
      when: source.namespace == "sandbox"
---
apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: db-audit }
spec:
  action: AUDIT
  rules:
    - name: db
      when: destination.port == 5432
---
apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: trace-trial }
spec:
  action: DENY
  mode: DryRun
  selector: destination.port == 8080
  rules:
    - name: untraced
      when: request.traceId == ""
`;

function load(tests: string): { snapshot: PolicySnapshot; tests: PolicyTest[] } {
  const loaded = compileFromTexts([{ path: 'p.yaml', text: POLICIES }, { path: 't.yaml', text: tests }], 1);
  if (!loaded.ok) assert.fail(loaded.diagnostics.map((d) => `${d.file}:${d.line}:${d.col} ${d.message}`).join('\n'));
  return { snapshot: loaded.snapshot, tests: loaded.tests };
}

function testDoc(cases: string, defaultAction = ''): string {
  return `apiVersion: waygate.dev/v1alpha1
kind: PolicyTest
metadata: { name: t }
spec:
${defaultAction ? `  defaultAction: ${defaultAction}\n` : ''}  cases:
${cases}`;
}

const FRONTEND = 'spiffe://cluster.local/ns/prod/sa/frontend';

function run(cases: string, opts: { threshold?: number; defaultAction?: string } = {}): TestReport {
  const { snapshot, tests } = load(testDoc(cases, opts.defaultAction));
  return runPolicyTests(snapshot, tests, opts.threshold === undefined ? {} : { threshold: opts.threshold });
}

describe('runPolicyTests', () => {
  it('passes a case whose stated fields hold, comparing only those', () => {
    const r = run(`    - name: frontend
      input:
        source: { principal: "${FRONTEND}" }
        destination: { ip: 10.0.0.1, port: 8080 }
      expect: { decision: allow, policy: api, rule: frontend, reason: allowed, audit: [], dryRun: deny }
    - name: only the verdict
      input: { destination: { port: 3000 } }
      expect: { decision: deny }
`);
    assert.equal(r.failed, 0, JSON.stringify(r.cases.map((c) => c.diffs)));
    assert.equal(r.passed, 2);
    assert.equal(r.ok, true);
  });

  it('reports each wrong field with expected and actual', () => {
    const r = run(`    - name: wrong
      input:
        source: { principal: "spiffe://cluster.local/ns/dev/sa/x" }
        destination: { port: 8080 }
      expect: { decision: allow, policy: api, rule: frontend, reason: allowed, dryRun: allow }
`);
    assert.equal(r.ok, false);
    assert.equal(r.failed, 1);
    const c = r.cases[0]!;
    assert.equal(c.passed, false);
    assert.deepEqual(c.diffs, [
      { field: 'decision', expected: 'allow', actual: 'deny' },
      { field: 'reason', expected: 'allowed', actual: 'explicit_deny' },
      { field: 'policy', expected: 'api', actual: 'deny-dev' },
      { field: 'rule', expected: 'frontend', actual: 'dev' },
      { field: 'dryRun', expected: 'allow', actual: 'deny' },
    ]);
    assert.equal(c.location.file, 't.yaml');
    assert.equal(c.location.line, 6);
  });

  it('compares audit matches as a set and null policy/rule for default decisions', () => {
    const r = run(`    - name: db
      input: { destination: { port: 5432 } }
      expect: { decision: deny, policy: null, rule: null, reason: default_deny, audit: [db-audit/db] }
    - name: db expected without audit
      input: { destination: { port: 5432 } }
      expect: { decision: deny, audit: [] }
`);
    assert.equal(r.cases[0]!.passed, true, JSON.stringify(r.cases[0]!.diffs));
    assert.deepEqual(r.cases[1]!.diffs, [{ field: 'audit', expected: [], actual: ['db-audit/db'] }]);
  });

  it('takes defaultAction from the test (ALLOW gives default_allow)', () => {
    const r = run(`    - name: unselected port
      input: { source: { principal: "${FRONTEND}" }, destination: { port: 3000 } }
      expect: { decision: allow, reason: default_allow, policy: null }
`, { defaultAction: 'ALLOW' });
    assert.equal(r.ok, true, JSON.stringify(r.cases[0]!.diffs));
    assert.equal(r.cases[0]!.defaultAction, 'ALLOW');
  });

  it('the dry-run verdict is the actual one when no dry-run policy applies', () => {
    const r = run(`    - name: not the API port
      input: { source: { principal: "${FRONTEND}" }, destination: { port: 3000 } }
      expect: { decision: deny, dryRun: deny }
`);
    assert.equal(r.ok, true);
    assert.equal(r.cases[0]!.actual.dryRunApplied, false);
  });

  it('lists the rules no case reached; an ALLOW rule that matched but lost to a DENY counts as reached', () => {
    const r = run(`    - name: frontend
      input: { source: { principal: "${FRONTEND}" }, destination: { port: 8080 } }
      expect: { decision: allow }
    - name: dev
      input: { source: { principal: "spiffe://cluster.local/ns/dev/sa/admin" }, destination: { port: 8080 } }
      expect: { decision: deny, rule: dev }
`);
    assert.equal(r.failed, 0);
    const unreached = r.coverage.unreached.map((u) => `${u.policy}/${u.rule}`);
    // dev/sa/admin matched api/admin too (an ALLOW rule that lost to the DENY): reached.
    assert.deepEqual(unreached, ['deny-dev/sandbox', 'db-audit/db']);
    assert.equal(r.coverage.totalRules, 6);
    assert.equal(r.coverage.reachedRules, 4);
    assert.equal(r.coverage.percent, 66.6);
    assert.equal(r.coverage.unreached[0]!.location.file, 'p.yaml');
    assert.equal(r.ok, true, 'no threshold: coverage does not fail the run');
  });

  it('fails the run when coverage is below the threshold', () => {
    const cases = `    - name: frontend
      input: { source: { principal: "${FRONTEND}" }, destination: { port: 8080 } }
      expect: { decision: allow }
`;
    const low = run(cases, { threshold: 50 });
    assert.equal(low.failed, 0);
    assert.equal(low.coverageOk, false);
    assert.equal(low.ok, false);
    const met = run(cases, { threshold: 30 });
    assert.equal(met.coverageOk, true);
    assert.equal(met.ok, true);
  });

  it('100% coverage when every rule is reached', () => {
    const r = run(`    - name: frontend, untraced (dry-run rule reached)
      input: { source: { principal: "${FRONTEND}" }, destination: { port: 8080 } }
      expect: { decision: allow, dryRun: deny }
    - name: admin
      input: { source: { principal: "spiffe://cluster.local/ns/prod/sa/admin" }, destination: { port: 8080 } }
      expect: { decision: allow, rule: admin }
    - name: dev
      input: { source: { principal: "spiffe://cluster.local/ns/dev/sa/x" } }
      expect: { decision: deny, rule: dev }
    - name: sandbox to the database
      input: { source: { principal: "spiffe://cluster.local/ns/sandbox/sa/x" }, destination: { port: 5432 } }
      expect: { decision: deny, rule: sandbox, audit: [db-audit/db] }
`, { threshold: 100 });
    assert.equal(r.failed, 0, JSON.stringify(r.cases.map((c) => c.diffs)));
    assert.deepEqual(r.coverage.unreached, []);
    assert.equal(r.coverage.percent, 100);
    assert.equal(r.ok, true);
    assert.deepEqual(r.coverage.rules.map((x) => x.hits), [1, 1, 1, 1, 1, 2]);
  });
});
