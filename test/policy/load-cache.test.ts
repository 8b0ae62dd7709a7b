/**
 * The reload cache (load-cache.ts): a load through it must give exactly the snapshot a fresh
 * load gives, whatever changed between loads, while parsing and compiling only what changed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPolicySet } from '../../src/policy/load.ts';
import { PolicyLoadCache } from '../../src/policy/load-cache.ts';
import { decide } from '../../src/policy/engine.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import { describeIndex } from '../../src/policy/rule-index.ts';
import type { PolicySnapshot } from '../../src/policy/snapshot.ts';
import { formatDiagnostic } from '../../src/errors.ts';

function policy(name: string, action: string, rules: Record<string, string>, variables?: Record<string, string>): string {
  const lines = ['apiVersion: waygate.dev/v1alpha1', 'kind: AuthorizationPolicy', `metadata: { name: ${name} }`, 'spec:', `  action: ${action}`];
  if (variables) {
    lines.push('  variables:');
    for (const [n, e] of Object.entries(variables)) lines.push(`    - name: ${n}`, `      expression: '${e}'`);
  }
  lines.push('  rules:');
  for (const [n, w] of Object.entries(rules)) lines.push(`    - name: ${n}`, `      when: '${w}'`);
  return lines.join('\n') + '\n';
}

/** Everything a decision, an audit record, explain or lint reads from a snapshot, as plain data. */
function shape(s: PolicySnapshot): unknown {
  return {
    hash: s.hash,
    ruleCount: s.ruleCount,
    reads: [...s.reads].sort(),
    createdFrom: s.createdFrom,
    policies: s.policies.map((p) => ({
      name: p.name, action: p.action, mode: p.mode, ordinal: p.ordinal, position: p.position, location: p.location,
      selector: p.selector?.source.text ?? null, selectorKeys: p.selectorKeys, variables: p.variables.map((v) => [v.name, v.expression.source.text, v.dependsOn]),
      rules: p.rules.map((r) => r.ordinal),
    })),
    rules: s.rules.map((r) => ({
      name: r.name, policyIndex: r.policyIndex, indexInPolicy: r.indexInPolicy, ordinal: r.ordinal, ref: r.ref, keys: r.keys,
      variableReads: r.variableReads, location: r.location, text: r.when.source.text, whenLocation: r.when.source.location,
      positions: [0, 3, 1000].map((o) => r.when.source.positionAt(o)), type: r.when.type,
    })),
    index: Object.fromEntries(Object.entries(s.index).map(([k, v]) => [k, describeIndex(v)])),
  };
}

async function load(dir: string, cache?: PolicyLoadCache): Promise<PolicySnapshot> {
  const r = await loadPolicySet([dir], { version: 1, ...(cache ? { cache } : {}) });
  assert.ok(r.ok, r.ok ? '' : r.diagnostics.map(formatDiagnostic).join('\n'));
  return r.snapshot;
}

describe('PolicyLoadCache', () => {
  it('after each kind of edit, a cached load equals a fresh load and reuses exactly the untouched files', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'wg-cache-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = (n: string, text: string) => writeFileSync(join(dir, n), text);
    file('10-deny.yaml', policy('deny-dev', 'DENY', { dev: 'source.namespace == "dev"' }));
    file('20-a.yaml', policy('a', 'ALLOW', { web: 'source.principal == "spiffe://td/ns/web/sa/w" && destination.port == 8080', any: 'destination.port in [80, 443]' }));
    file('30-b.yaml', policy('b', 'ALLOW', { db: 'variables.isDb && source.namespace == "app"' }, { isDb: 'destination.port == 5432' }));
    const cache = new PolicyLoadCache();

    // Each step edits the files, then loads through the cache and fresh, and says which files it touched.
    const steps: { what: string; edit: () => void; fileMisses: number }[] = [
      { what: 'first load', edit: () => undefined, fileMisses: 3 },
      { what: 'nothing changed', edit: () => undefined, fileMisses: 0 },
      { what: 'one rule edited', edit: () => file('20-a.yaml', policy('a', 'ALLOW', { web: 'source.principal == "spiffe://td/ns/web/sa/w" && destination.port == 9090', any: 'destination.port in [80, 443]' })), fileMisses: 1 },
      // A new file first in path order shifts every later ordinal; the later files are still reused.
      { what: 'a file inserted before the others', edit: () => file('05-new.yaml', policy('new', 'AUDIT', { all: 'true' })), fileMisses: 1 },
      // The same text moved down two lines: same expression text, different positions.
      { what: 'lines moved', edit: () => file('10-deny.yaml', '# moved\n# down\n' + policy('deny-dev', 'DENY', { dev: 'source.namespace == "dev"' })), fileMisses: 1 },
      { what: 'a file removed', edit: () => rmSync(join(dir, '05-new.yaml')), fileMisses: 0 },
    ];
    for (const step of steps) {
      step.edit();
      const cached = await load(dir, cache);
      assert.equal(cache.stats.files.misses, step.fileMisses, `${step.what}: files parsed`);
      assert.deepEqual(shape(cached), shape(await load(dir)), step.what);
      // And it decides the same.
      const ctx = contextFromInput({ source: { principal: 'spiffe://td/ns/web/sa/w' }, destination: { ip: '10.0.0.1', port: 9090 } });
      assert.deepEqual(decide(cached, ctx, { defaultAction: 'DENY' }), decide(await load(dir), ctx, { defaultAction: 'DENY' }), step.what);
    }
  });

  it('reuses the compiled expressions of unchanged files, never those checked in a policy environment', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'wg-cache-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'a.yaml'), policy('a', 'ALLOW', { r1: 'destination.port == 1', r2: 'destination.port == 2' }));
    writeFileSync(join(dir, 'b.yaml'), policy('b', 'ALLOW', { r3: 'variables.v' }, { v: 'destination.port == 3' }));
    const cache = new PolicyLoadCache();
    const first = await load(dir, cache);
    assert.deepEqual(cache.stats.expressions, { hits: 0, misses: 2 }, 'b uses variables: not looked up');
    const second = await load(dir, cache);
    assert.deepEqual(cache.stats.expressions, { hits: 2, misses: 0 });
    assert.equal(second.rules[0]!.when, first.rules[0]!.when, 'the very compiled expression is reused');
    assert.notEqual(second.rules[2]!.when, first.rules[2]!.when, 'compiled again in its fresh environment');
    assert.notEqual(second, first);
    assert.ok(Object.isFrozen(second) && Object.isFrozen(second.rules[0]));
  });

  it('a rejected set leaves the cache usable and the next good load correct', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'wg-cache-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'a.yaml'), policy('a', 'ALLOW', { r: 'destination.port == 1' }));
    const cache = new PolicyLoadCache();
    await load(dir, cache);
    writeFileSync(join(dir, 'a.yaml'), policy('a', 'ALLOW', { r: 'destination.prot == 1' }));
    const bad = await loadPolicySet([dir], { version: 2, cache });
    assert.equal(bad.ok, false);
    if (!bad.ok) assert.match(bad.diagnostics[0]!.message, /did you mean "port"/);
    // The same bad text again: the parse may be reused, the failed compile is not, and it still fails.
    const again = await loadPolicySet([dir], { version: 3, cache });
    assert.equal(again.ok, false);
    writeFileSync(join(dir, 'a.yaml'), policy('a', 'ALLOW', { r: 'destination.port == 1' }));
    assert.deepEqual(shape(await load(dir, cache)), shape(await load(dir)));
  });
});
