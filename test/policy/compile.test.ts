/**
 * The compiler's snapshot: buckets, index placement (most selective key), reads, frozen shape.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compileFromTexts } from '../../src/policy/load.ts';
import { candidates, describeIndex } from '../../src/policy/rule-index.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import { type PolicySnapshot } from '../../src/policy/snapshot.ts';
import { deepFreeze } from '../../src/util/deep-freeze.ts';

function doc(name: string, action: string, rules: Record<string, string>, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'waygate.dev/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { name },
    spec: { action, ...extra, rules: Object.entries(rules).map(([n, when]) => ({ name: n, when })) },
  });
}

function compile(...docs: string[]): PolicySnapshot {
  const r = compileFromTexts([{ path: 'p.yaml', text: docs.join('\n---\n') }], 1);
  if (!r.ok) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.snapshot;
}

const P = (sa: string): string => `spiffe://cluster.local/ns/prod/sa/${sa}`;

describe('compilePolicySet', () => {
  it('sorts rules into Istio buckets, dry-run apart', () => {
    const s = compile(
      doc('d', 'DENY', { a: 'destination.port == 1' }),
      doc('a', 'ALLOW', { a: 'destination.port == 2' }),
      doc('u', 'AUDIT', { a: 'destination.port == 3' }),
      doc('dd', 'DENY', { a: 'destination.port == 4' }, { mode: 'DryRun' }),
      doc('da', 'ALLOW', { a: 'destination.port == 5' }, { mode: 'DryRun' }),
    );
    const names = (b: keyof PolicySnapshot['index']): string[] =>
      (s.index[b].all as readonly { ref?: { policy: string }; name: string }[]).map((x) => x.ref?.policy ?? x.name);
    assert.deepEqual(names('deny'), ['d']);
    assert.deepEqual(names('allow'), ['a']);
    assert.deepEqual(names('audit'), ['u']);
    assert.deepEqual(names('dryRunDeny'), ['dd']);
    assert.deepEqual(names('dryRunAllow'), ['da']);
    assert.deepEqual(names('allowPolicies'), ['a']);
    assert.deepEqual(names('dryRunPolicies'), ['dd', 'da']);
    assert.equal(s.ruleCount, 5);
  });

  it('files each rule under its most selective key; non-indexable rules are scanned', () => {
    const rules: Record<string, string> = {};
    for (let i = 0; i < 50; i++) rules[`sa${i}`] = `destination.port == 8080 && source.principal == "${P(`sa${i}`)}"`;
    rules.cidr = 'cidr("10.0.0.0/8").containsIP(source.ip)';
    rules.either = `source.principal == "${P('x')}" || destination.port == 1`;
    const s = compile(doc('big', 'ALLOW', rules));
    const info = describeIndex(s.index.allow);
    // The port is shared by 50 rules, each principal by one: principals win.
    assert.deepEqual(info.keyed, { 'source.principal': { values: 50, entries: 50 }, 'cidr source.ip': { values: 1, entries: 1 } });
    assert.equal(info.scanned, 1);

    const ctx = contextFromInput({ source: { principal: P('sa7'), ip: '10.1.2.3' }, destination: { port: 8080 } });
    assert.deepEqual(candidates(s.index.allow, ctx).map((r) => r.name), ['sa7', 'cidr', 'either']);
    const none = contextFromInput({ source: { principal: P('nobody'), ip: '192.168.0.1' }, destination: { port: 8080 } });
    assert.deepEqual(candidates(s.index.allow, none).map((r) => r.name), ['either']);
  });

  it('candidates from several maps come back in ordinal order', () => {
    const s = compile(
      doc('a', 'DENY', { byPort: 'destination.port == 9' }),
      doc('b', 'DENY', { byPrincipal: `source.principal == "${P('x')}"`, scan: 'source.ip.startsWith("10.")' }),
      doc('c', 'DENY', { byPort2: 'destination.port in [9, 10]' }),
    );
    const ctx = contextFromInput({ source: { principal: P('x') }, destination: { port: 9 } });
    assert.deepEqual(candidates(s.index.deny, ctx).map((r) => r.name), ['byPort', 'byPrincipal', 'scan', 'byPort2']);
  });

  it('a rule inherits its policy selector keys; selectors are indexed for step 3', () => {
    const s = compile(
      doc('scoped', 'ALLOW', { any: 'source.ip.startsWith("10.")' }, { selector: 'destination.port == 5432' }),
      doc('everywhere', 'ALLOW', { any: 'source.ip.startsWith("10.")' }),
    );
    assert.deepEqual(s.rules[0]!.keys, [{ attribute: 'destination.port', values: [5432] }]);
    assert.deepEqual(describeIndex(s.index.allow).keyed, { 'destination.port': { values: 1, entries: 1 } });
    assert.deepEqual(describeIndex(s.index.allowPolicies).keyed, { 'destination.port': { values: 1, entries: 1 } });
    const ctx = contextFromInput({ destination: { port: 80 } });
    assert.deepEqual(candidates(s.index.allowPolicies, ctx).map((p) => p.name), ['everywhere']);
  });

  it('a `true` selector is no selector', () => {
    const s = compile(doc('a', 'ALLOW', { r: 'true' }, { selector: 'true' }));
    assert.equal(s.policies[0]!.selector, null);
  });

  it('reads: the union of every expression, variables resolved to what they read', () => {
    const s = compile(
      doc('a', 'ALLOW', { r: 'variables.t == "acme" && destination.port == 1' }, { variables: [{ name: 't', expression: 'request.headers["x-tenant"]' }] }),
      doc('b', 'DENY', { r: 'source.namespace == "dev"' }, { selector: 'destination.host == "db"' }),
    );
    assert.deepEqual([...s.reads].sort(), ['destination.host', 'destination.port', 'request.headers.x-tenant', 'source.namespace']);
    assert.deepEqual(s.rules[0]!.variableReads, [0]);
  });

  it('variables may use earlier ones; dependencies are recorded', () => {
    const s = compile(
      doc('a', 'ALLOW', { r: 'variables.isAcme' }, {
        variables: [
          { name: 't', expression: 'request.headers["x-tenant"]' },
          { name: 'isAcme', expression: 'variables.t == "acme"' },
        ],
      }),
    );
    assert.deepEqual(s.policies[0]!.variables.map((v) => v.dependsOn), [[], [0]]);
    assert.deepEqual(s.rules[0]!.variableReads, [0, 1]);
  });

  it('the snapshot is deeply frozen', () => {
    const s = compile(doc('a', 'ALLOW', { r: 'true' }));
    assert.ok(Object.isFrozen(s) && Object.isFrozen(s.rules) && Object.isFrozen(s.rules[0]!.ref) && Object.isFrozen(s.index.allow));
    assert.throws(() => {
      (s as { version: number }).version = 2;
    }, TypeError);
  });

  it('freezes the index lists inside Maps, and leaves compiled expressions to the CEL layer', () => {
    const s = compile(doc('a', 'ALLOW', { r: 'source.principal == "spiffe://td/ns/a/sa/b" && destination.port == 80' }));
    const byValue = s.index.allow.maps[0]!.byValue;
    for (const list of byValue.values()) assert.ok(Object.isFrozen(list));
    const when = s.rules[0]!.when as unknown as { ast: object; env: object };
    assert.ok(Object.isFrozen(when), 'compiled expressions are frozen by the CEL layer');
    assert.ok(!Object.isFrozen(when.ast), 'the AST is cel-js\'s and may be annotated by it');
    assert.ok(Object.isFrozen(s.rules[0]!.keys[0]) && Object.isFrozen(s.rules[0]!.keys[0]!.values));
  });

  it('deepFreeze walks shared objects once and ends on cycles', () => {
    const shared = { n: 1, inner: { m: 2 } };
    const cyclic: { self?: unknown; list: unknown[]; map: Map<string, unknown[]> } = { list: [shared, shared], map: new Map([['k', [shared]]]) };
    cyclic.self = cyclic;
    const frozen = deepFreeze(cyclic);
    assert.equal(frozen, cyclic);
    assert.ok(Object.isFrozen(cyclic) && Object.isFrozen(cyclic.list) && Object.isFrozen(shared.inner) && Object.isFrozen(cyclic.map.get('k')));
    // A Map is only marked: it stays writable, as Maps cannot be made read-only.
    cyclic.map.set('x', []);
    assert.equal(cyclic.map.size, 2);
  });

  it('rejects the whole set when one expression fails, naming every failure', () => {
    const r = compileFromTexts(
      [{ path: 'p.yaml', text: [doc('a', 'ALLOW', { ok: 'true', bad: 'source.nope == 1' }), doc('b', 'DENY', { bad: '1 + 1' })].join('\n---\n') }],
      1,
    );
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.deepEqual(r.diagnostics.map((d) => d.path), ['spec.rules[1].when', 'spec.rules[0].when']);
      assert.match(r.diagnostics[1]!.message, /must be a bool/);
    }
  });
});
