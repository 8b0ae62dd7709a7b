/**
 * The decision cache: same answers as the engine, keyed on exactly what the snapshot reads,
 * invalidated by a swap, off for snapshots reading per-tunnel attributes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cachePlan, DecisionCache } from '../../src/policy/decision-cache.ts';
import { decide } from '../../src/policy/engine.ts';
import { compileFromTexts } from '../../src/policy/load.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import type { PolicySnapshot } from '../../src/policy/snapshot.ts';
import type { PolicyTestInput } from '../../src/policy/model.ts';

function compile(version: number, rules: Record<string, string>, action = 'ALLOW'): PolicySnapshot {
  const text = JSON.stringify({
    apiVersion: 'waygate.dev/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'p' },
    spec: { action, rules: Object.entries(rules).map(([name, when]) => ({ name, when })) },
  });
  const r = compileFromTexts([{ path: 'p.yaml', text }], version);
  if (!r.ok) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.snapshot;
}

const FRONTEND = 'spiffe://cluster.local/ns/prod/sa/frontend';
const input = (over: PolicyTestInput = {}): PolicyTestInput => ({
  source: { principal: FRONTEND, ip: '10.0.0.5', port: 40000 },
  destination: { ip: '10.0.1.7', port: 8080 },
  ...over,
});

describe('DecisionCache', () => {
  const snapshot = compile(1, { frontend: `source.principal == "${FRONTEND}" && destination.port == 8080`, tenant: 'request.headers["x-tenant"] == "acme"' });

  it('keys on exactly the attributes read', () => {
    const plan = cachePlan(snapshot);
    assert.ok(plan.enabled);
    assert.deepEqual(plan.attributes, ['destination.port', 'request.headers.x-tenant', 'source.principal']);
  });

  it('hits return what decide() returns; unread attributes do not split the key', () => {
    const cache = new DecisionCache({ max: 100 });
    const a = cache.decide(snapshot, contextFromInput(input()), { defaultAction: 'DENY' });
    // Another source port and ip, another unread header: same key.
    const bCtx = contextFromInput(input({ source: { principal: FRONTEND, ip: '10.9.9.9', port: 50000 }, request: { headers: { other: 'x' } } }));
    const b = cache.decide(snapshot, bCtx, { defaultAction: 'DENY' });
    assert.deepEqual(cache.stats(), { hits: 1, misses: 1, bypassed: 0, size: 1, disabledReason: null });
    assert.deepEqual(b, decide(snapshot, bCtx, { defaultAction: 'DENY' }));
    assert.deepEqual(a, b);
  });

  it('a read attribute, a present vs absent header, and defaultAction each split the key', () => {
    const cache = new DecisionCache({ max: 100 });
    const ctxs = [
      input(),
      input({ destination: { port: 9090 } }),
      input({ request: { headers: { 'x-tenant': 'acme' } } }),
      input({ request: { headers: { 'x-tenant': '' } } }),
    ];
    for (const c of ctxs) {
      const ctx = contextFromInput(c);
      assert.deepEqual(cache.decide(snapshot, ctx, { defaultAction: 'DENY' }), decide(snapshot, ctx, { defaultAction: 'DENY' }));
    }
    cache.decide(snapshot, contextFromInput(ctxs[1]!), { defaultAction: 'ALLOW' });
    assert.equal(cache.stats().misses, 5);
    assert.equal(cache.stats().hits, 0);
  });

  it('a new snapshot (the swap) never sees the old entries', () => {
    const cache = new DecisionCache({ max: 100 });
    const ctx = contextFromInput(input());
    assert.equal(cache.decide(snapshot, ctx, { defaultAction: 'DENY' }).decision, 'allow');
    const next = compile(2, { frontend: `source.principal == "${FRONTEND}"` }, 'DENY');
    const d = cache.decide(next, ctx, { defaultAction: 'DENY' });
    assert.equal(d.decision, 'deny');
    assert.deepEqual(d.snapshot.version, 2);
    assert.equal(cache.stats().size, 1);
    assert.equal(cache.stats().hits, 0);
  });

  it('hits hand out frozen data: one caller cannot alter another decision', () => {
    const cache = new DecisionCache({ max: 10 });
    const ctx = contextFromInput(input());
    cache.decide(snapshot, ctx, { defaultAction: 'DENY' });
    const hit = cache.decide(snapshot, ctx, { defaultAction: 'DENY' });
    assert.throws(() => (hit.audit as unknown[]).push('x'), TypeError);
    let t = 0n;
    const timed = cache.decide(snapshot, ctx, { defaultAction: 'DENY', clock: () => (t += 1500n) });
    assert.equal(timed.evalMicros, 1.5);
  });

  it('a constant-key presence test is cacheable and keyed on presence', () => {
    const s = compile(4, { r: '"x-tenant" in request.headers' });
    const cache = new DecisionCache({ max: 10 });
    const present = contextFromInput(input({ request: { headers: { 'x-tenant': '' } } }));
    const absent = contextFromInput(input());
    assert.equal(cache.decide(s, present, { defaultAction: 'DENY' }).decision, 'allow');
    assert.equal(cache.decide(s, absent, { defaultAction: 'DENY' }).decision, 'deny');
    assert.equal(cache.decide(s, present, { defaultAction: 'DENY' }).decision, 'allow');
    assert.deepEqual([cache.stats().hits, cache.stats().misses], [1, 2]);
  });

  for (const [expr, why] of [
    ['now > timestamp("2020-01-01T00:00:00Z")', /`now`/],
    ['connection.id == "c1"', /connection\.id/],
    ['source.port > 1024', /source\.port/],
    ['request.traceId != ""', /traceId/],
    ['size(request.headers) > 3', /whole `request\.headers`/],
    ['request.headers.exists(k, k.startsWith("x-"))', /whole `request\.headers`/],
  ] as const) {
    it(`is off for a snapshot reading ${expr}`, () => {
      const s = compile(3, { r: expr });
      const plan = cachePlan(s);
      assert.equal(plan.enabled, false);
      if (!plan.enabled) assert.match(plan.reason, why);
      const cache = new DecisionCache({ max: 10 });
      const ctx = contextFromInput(input());
      assert.deepEqual(cache.decide(s, ctx, { defaultAction: 'DENY' }), decide(s, ctx, { defaultAction: 'DENY' }));
      cache.decide(s, ctx, { defaultAction: 'DENY' });
      assert.deepEqual({ ...cache.stats(), disabledReason: null }, { hits: 0, misses: 0, bypassed: 2, size: 0, disabledReason: null });
    });
  }
});
