/**
 * explainDecision: every policy, selector, variable and rule with its outcome, and the exact
 * Decision decide() returns. Also contextFromInput, which explain, policy test and replay share.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { explainDecision, renderExplanation } from '../../src/policy/explain.ts';
import { decide } from '../../src/policy/engine.ts';
import { compileFromTexts } from '../../src/policy/load.ts';
import { contextFromAuditRecord, contextFromInput } from '../../src/policy/context-input.ts';
import { WaygateError } from '../../src/errors.ts';
import type { DecisionRecord } from '../../src/audit/record.ts';

const TEXT = `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: deny-dev }
spec:
  action: DENY
  rules:
    - name: dev
      when: source.namespace == "dev"
---
apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: api }
spec:
  action: ALLOW
  selector: destination.port == 8080
  variables:
    - { name: tenant, expression: 'request.headers["x-tenant"]' }
  rules:
    - name: tenant
      when: variables.tenant == "acme"
    - name: frontend
      when: source.serviceAccount == "frontend" && source.namespace == "prod"
---
apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: db }
spec:
  action: ALLOW
  selector: destination.port == 5432
  rules:
    - name: any
      when: "true"
`;

const loaded = compileFromTexts([{ path: 'pol.yaml', text: TEXT }], 4);
if (!loaded.ok) throw new Error('fixture does not compile');
const snapshot = loaded.snapshot;

describe('explainDecision', () => {
  const ctx = contextFromInput({
    source: { principal: 'spiffe://cluster.local/ns/prod/sa/frontend', ip: '10.0.0.5', port: 41000 },
    destination: { ip: '10.0.1.7', port: 8080 },
  });
  const e = explainDecision(snapshot, ctx, { defaultAction: 'DENY' });

  it('carries exactly the decision decide() returns', () => {
    assert.deepEqual(e.decision, decide(snapshot, ctx, { defaultAction: 'DENY' }));
    assert.equal(e.decision.rule, 'frontend');
  });

  it('lists every policy with selector, variables and rule outcomes', () => {
    const [deny, api, db] = e.policies;
    assert.deepEqual(deny!.rules.map((r) => [r.name, r.outcome, r.candidate]), [['dev', 'no-match', false]]);
    assert.equal(deny!.selector, null);
    assert.equal(api!.selector?.outcome, 'applies');
    assert.equal(api!.variables[0]!.name, 'tenant');
    assert.match(api!.variables[0]!.error ?? '', /x-tenant/);
    assert.deepEqual(api!.rules.map((r) => [r.name, r.outcome]), [['tenant', 'error'], ['frontend', 'match']]);
    assert.match(api!.rules[0]!.error ?? '', /variable "tenant"/);
    assert.equal(db!.applies, false);
    assert.deepEqual(db!.rules.map((r) => r.outcome), ['not-evaluated']);
    assert.equal(api!.rules[1]!.expression.at, 'pol.yaml:22:13');
    // The sub-expression tree shows each operand's value.
    const tree = api!.rules[1]!.expression.tree!;
    assert.equal(tree.value, true);
    assert.deepEqual(tree.children.map((c) => c.value), [true, true]);
  });

  it('renders for a terminal: verdict first, then each policy', () => {
    const text = renderExplanation(e);
    const lines = text.split('\n');
    assert.equal(lines[0], 'decision: allow (allowed) by api/frontend');
    assert.match(text, /eval error: api\/tenant: variable "tenant"/);
    assert.match(text, /policy db \(ALLOW, Enforce\) at pol\.yaml:\d+:\d+ {2}— does not apply/);
    assert.match(text, /rule frontend: MATCH/);
    assert.match(text, /source\.serviceAccount  =>  "frontend"/);
  });

  it('explains a deny with no policies as the default', () => {
    const empty = compileFromTexts([], 1);
    assert.ok(empty.ok);
    const x = explainDecision(empty.snapshot, ctx, { defaultAction: 'DENY' });
    assert.equal(x.decision.reason, 'default_deny');
    assert.match(renderExplanation(x), /\(no policies\)/);
  });
});

describe('contextFromInput', () => {
  it('fields left out take their empty value; the epoch is now', () => {
    const c = contextFromInput({});
    assert.deepEqual(c, {
      source: { principal: '', trustDomain: '', namespace: '', serviceAccount: '', ip: '', port: 0 },
      destination: { ip: '', host: '', port: 0, authority: '', service: '', namespace: '', workload: '', principal: '' },
      request: { headers: {}, baggage: {}, traceId: '' },
      connection: { id: '', tlsVersion: '' },
      now: new Date(0),
    });
  });

  it('derives trust domain, namespace and service account from the principal', () => {
    const c = contextFromInput({ source: { principal: 'spiffe://example.org/ns/shop/sa/cart' } });
    assert.deepEqual([c.source.trustDomain, c.source.namespace, c.source.serviceAccount], ['example.org', 'shop', 'cart']);
    const td = contextFromInput({ source: { principal: 'spiffe://example.org/workload/x' } });
    assert.deepEqual([td.source.trustDomain, td.source.namespace, td.source.serviceAccount], ['example.org', '', '']);
  });

  it('canonicalises addresses and lower-cases header names', () => {
    const c = contextFromInput({
      source: { ip: '::ffff:10.0.0.5' },
      destination: { ip: 'FD00:0:0:0::1', port: 443 },
      request: { headers: { 'X-Tenant': 'acme', 'x-tenant': 'beta' } },
      now: '2026-01-31T12:00:00Z',
    });
    assert.equal(c.source.ip, '10.0.0.5');
    assert.equal(c.destination.ip, 'fd00::1');
    assert.deepEqual(c.request.headers, { 'x-tenant': 'acme, beta' });
    assert.equal(c.now.toISOString(), '2026-01-31T12:00:00.000Z');
  });

  for (const [name, bad, path] of [
    ['unknown field', { source: { principal: '', sa: 'x' } }, /input\.source\.sa/],
    ['bad principal', { source: { principal: 'https://x' } }, /input\.source\.principal/],
    ['bad ip', { destination: { ip: '10.0.0.300' } }, /input\.destination\.ip/],
    ['bad port', { destination: { port: 70000 } }, /input\.destination\.port/],
    ['bad time', { now: 'yesterday' }, /input\.now/],
  ] as const) {
    it(`refuses ${name}, naming the field`, () => {
      assert.throws(() => contextFromInput(bad), (e: unknown) => e instanceof WaygateError && e.code === 'WG_USAGE' && path.test(e.message));
    });
  }

  it('rebuilds the context of an audit decision record (replay)', () => {
    const record = {
      schema: 1, event: 'decision', time: '2026-02-01T00:00:00.000Z', decisionId: 'd', connectionId: 'c9', streamId: 1,
      decision: 'allow', reason: 'allowed', status: 200, policy: 'api', rule: 'frontend', dryRun: null, audit: [], evalErrors: [],
      snapshot: { version: 1, hash: 'h' },
      source: { principal: 'spiffe://cluster.local/ns/prod/sa/frontend', trustDomain: 'cluster.local', namespace: 'prod', serviceAccount: 'frontend', ip: '10.0.0.5', port: 41000 },
      destination: { authority: '10.0.1.7:8080', ip: '10.0.1.7', port: 8080, host: '', service: '', namespace: '', workload: '', principal: '' },
      traceId: '', headers: { 'x-tenant': 'acme' }, baggage: {}, connection: { id: 'c9', tlsVersion: 'TLSv1.3' }, evalMicros: 3,
    } satisfies DecisionRecord;
    const c = contextFromAuditRecord(record);
    assert.equal(c.source.serviceAccount, 'frontend');
    assert.equal(c.destination.authority, '10.0.1.7:8080');
    assert.equal(c.connection.tlsVersion, 'TLSv1.3');
    assert.equal(c.now.toISOString(), record.time);
    const d = decide(snapshot, c, { defaultAction: 'DENY' });
    assert.deepEqual([d.decision, d.rule], ['allow', 'tenant']);
  });
});
