/**
 * An attribute added to the catalogue alone reaches everything that derives from it. The test
 * swaps in a catalogue with one throw-away attribute, `connection.alpn`
 * (test/fixtures/attributes/extended-catalogue.ts), before any module of the gateway loads, then
 * sees it type-checked in a policy, filled from a real connection, keyed by the decision cache,
 * written in the decision record and read back by `audit replay`. No other file names it.
 *
 * Only node: modules are imported statically: everything else is imported after the hook is in
 * place, so this file runs in a process of its own (scripts/test.mjs).
 */
// own-process: the catalogue is swapped before any gateway module loads; in a shared process an earlier file has loaded them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { register } from 'node:module';

const catalogue = new URL('../../src/policy/attributes.ts', import.meta.url).href;
const replacement = new URL('../fixtures/attributes/extended-catalogue.ts', import.meta.url).href;
register('../fixtures/attributes/catalogue-hook.mjs', import.meta.url, { data: { catalogue, replacement } });

const { compileFromTexts } = await import('../../src/policy/load.ts');
const { cachePlan, DecisionCache } = await import('../../src/policy/decision-cache.ts');
const { contextFromAuditRecord } = await import('../../src/policy/context-input.ts');
const { INDEXABLE_ATTRIBUTES } = await import('../../src/policy/cel/compiled.ts');
const { ReplayAccumulator } = await import('../../src/audit/review/replay.ts');
const { newReadStats } = await import('../../src/audit/review/reader.ts');
const { startTestGateway, spiffeId } = await import('../gateway/fixture.ts');
const { startUpstream } = await import('../hbone/fixture.ts');
type PolicySnapshot = import('../../src/policy/snapshot.ts').PolicySnapshot;
type DecisionRecord = import('../../src/audit/record.ts').DecisionRecord;

const SA = 'client';

function policy(when: string): string {
  return `apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: by-alpn\nspec:\n  action: ALLOW\n  rules:\n    - name: h2\n      when: ${JSON.stringify(when)}\n`;
}

function compile(when: string): PolicySnapshot {
  const r = compileFromTexts([{ path: 'p.yaml', text: policy(when) }], 1);
  if (!r.ok) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.snapshot;
}

describe('an attribute added to the catalogue alone (connection.alpn)', () => {
  it('is type-checked in a policy, with the catalogue type and a "did you mean"', () => {
    assert.equal(compile('connection.alpn == "h2"').policies.length, 1);
    const wrongType = compileFromTexts([{ path: 'p.yaml', text: policy('connection.alpn == 2') }], 1);
    assert.ok(!wrongType.ok && wrongType.diagnostics.some((d) => d.code === 'WG_POLICY_CEL'));
    const typo = compileFromTexts([{ path: 'p.yaml', text: policy('connection.alpm == "h2"') }], 1);
    assert.ok(!typo.ok && typo.diagnostics.some((d) => /did you mean "alpn"/.test(d.message) && /connection has id, tlsVersion, alpn/.test(d.message)));
    assert.ok(INDEXABLE_ATTRIBUTES.includes('connection.alpn' as never), 'the index may key on it');
  });

  describe('in a running gateway', () => {
    let upstream: Awaited<ReturnType<typeof startUpstream>>;
    let t: Awaited<ReturnType<typeof startTestGateway>>;
    const when = `source.principal == "${spiffeId(SA)}" && connection.alpn == "h2"`;
    before(async () => {
      upstream = await startUpstream('echo');
      t = await startTestGateway({ policies: { 'alpn.yaml': policy(when) } });
    });
    after(async () => {
      await t.close();
      await upstream.close();
    });

    it('is filled from the connection, keyed by the cache, written in the record and replayed', async () => {
      const session = await t.connect(SA);
      for (let i = 0; i < 2; i++) {
        const tunnel = await session.openTunnel(`127.0.0.1:${upstream.port}`);
        assert.equal(tunnel.status, 200, 'allowed: connection.alpn is "h2" on an HBONE connection');
        tunnel.stream.close();
      }
      await t.sink.until(() => t.sink.decisions.length >= 2);
      const record = t.sink.decisions.at(-1)!;
      assert.equal(record.decision, 'allow');
      assert.equal((record.connection as Record<string, unknown>)['alpn'], 'h2', 'the decision record holds it');

      // The cache keys on it: the second CONNECT was a hit, and another value is another key.
      const snapshot = t.gw.runtime!.store.current()!;
      const plan = cachePlan(snapshot);
      assert.ok(plan.enabled && plan.attributes.includes('connection.alpn'), JSON.stringify(plan));
      const stats = (t.gw.runtime!.policyInfo() as { decisionCache: { hits: number; misses: number } }).decisionCache;
      assert.deepEqual([stats.misses, stats.hits], [1, 1]);
      const cache = new DecisionCache({ max: 10 });
      const replayed = contextFromAuditRecord(record);
      assert.equal((replayed.connection as Record<string, unknown>)['alpn'], 'h2', 'read back from the record');
      assert.equal(cache.decide(snapshot, replayed, { defaultAction: 'DENY' }).decision, 'allow');
      const http1: DecisionRecord = { ...record, connection: { ...record.connection, alpn: 'http/1.1' } as DecisionRecord['connection'] };
      assert.equal(cache.decide(snapshot, contextFromAuditRecord(http1), { defaultAction: 'DENY' }).decision, 'deny');
      assert.deepEqual([cache.stats().misses, cache.stats().hits], [2, 0]);

      // Replay re-decides with it: unchanged against the policy in force, a flip against one that wants http/1.1.
      const replay = (s: PolicySnapshot) => {
        const acc = new ReplayAccumulator({ snapshot: s, defaultAction: 'DENY' });
        for (const r of t.sink.decisions) acc.add(r);
        return acc.result(newReadStats(), []);
      };
      const same = replay(snapshot);
      assert.deepEqual([same.replayed, same.unchanged, same.allowToDeny.count], [2, 2, 0]);
      const other = replay(compile(`source.principal == "${spiffeId(SA)}" && connection.alpn == "http/1.1"`));
      assert.deepEqual([other.replayed, other.allowToDeny.count, other.allowToDeny.exact], [2, 2, 2]);
    });
  });
});
