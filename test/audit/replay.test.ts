/**
 * `waygate audit replay`: records decided for real under policy set A (test/fixtures/audit/
 * policies-a) replayed under B (policies-b), where B flips known decisions. The flips reported must
 * equal exactly the expected set; replaying A under A must flip nothing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ReplayAccumulator, type ReplayResult } from '../../src/audit/review/replay.ts';
import { newReadStats } from '../../src/audit/review/reader.ts';
import type { DecisionRecord } from '../../src/audit/record.ts';
import { runAuditReplay } from '../../src/cli/audit.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import { decide } from '../../src/policy/engine.ts';
import { loadPolicySet } from '../../src/policy/load.ts';
import type { PolicySnapshot } from '../../src/policy/snapshot.ts';
import { captureIo } from '../helpers/audit-io.ts';
import { recordFromDecision, transportRecord } from '../helpers/audit-records.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/audit');
const A = path.join(FIXTURES, 'policies-a');
const B = path.join(FIXTURES, 'policies-b');
const id = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

/** Traffic: [principal, destination ip, port, the flip B should cause]. */
const TRAFFIC: [string, string, number, 'allow->deny' | 'deny->allow' | null][] = [
  [id('prod', 'frontend'), '10.0.1.7', 8080, null],
  [id('prod', 'worker'), '10.0.1.7', 8080, 'allow->deny'], // api-allow/worker removed
  [id('prod', 'api'), '10.0.2.9', 5432, null],
  [id('batch', 'reporter'), '10.0.2.9', 5432, 'allow->deny'], // block-reporter/reporter added
  [id('staging', 'api'), '10.0.2.9', 5432, 'deny->allow'], // db-allow/staging-api added
  [id('dev', 'sandbox'), '10.0.1.7', 8080, null], // deny-dev in both
  [id('staging', 'frontend'), '10.0.1.7', 8080, null], // B's tenant rule needs x-tenant, absent
  [id('prod', 'frontend'), '10.0.3.4', 9090, null], // no ALLOW policy applies: default_deny in both
  ['', '10.0.1.7', 8080, null], // no identity: no_allow_match in both
];
const REPEAT = 3;

async function load(dir: string): Promise<PolicySnapshot> {
  const r = await loadPolicySet([dir], { version: 1 });
  if (!r.ok) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.snapshot;
}

describe('audit replay', () => {
  let dir: string;
  let logPath: string;
  let records: DecisionRecord[];
  const expected = { a2d: new Set<string>(), d2a: new Set<string>() };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-replay-'));
    const snapA = await load(A);
    records = [];
    let n = 0;
    const start = Date.parse('2026-11-26T09:00:00Z');
    for (let r = 0; r < REPEAT; r++) {
      for (const [principal, ip, port, flip] of TRAFFIC) {
        const decisionId = `d${n}`;
        const ctx = contextFromInput({
          source: { principal, ip: '10.1.0.5', port: 40000 + n },
          destination: { ip, port, authority: `${ip}:${port}` },
          request: { headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } },
          connection: { id: `c${r}`, tlsVersion: 'TLSv1.3' },
          now: new Date(start + n * 1000).toISOString(),
        });
        records.push(recordFromDecision(ctx, decide(snapA, ctx, { defaultAction: 'DENY' }), { decisionId }));
        if (flip === 'allow->deny') expected.a2d.add(decisionId);
        if (flip === 'deny->allow') expected.d2a.add(decisionId);
        n++;
      }
    }
    // Transport reasons: upstream_failed / destination_not_allowed follow a policy allow (replayed
    // against it: prod/frontend stays allowed under A and B); the others are never comparable.
    const base = { source: { principal: id('prod', 'frontend'), ip: '10.1.0.5', port: 1 }, destination: { ip: '10.0.1.7', port: 8080 }, now: '2026-11-26T10:00:00Z' };
    records.push(transportRecord(base, 'upstream_failed', 't1', 503));
    records.push(transportRecord(base, 'destination_not_allowed', 't2', 503));
    records.push(transportRecord({ ...base, source: { ip: '10.1.0.5', port: 2 } }, 'no_identity', 't3', 401));
    records.push(transportRecord(base, 'bad_request', 't4', 400));
    logPath = path.join(dir, 'audit.jsonl');
    await writeFile(logPath, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the fixture really was decided under A (sanity: the flips B should cause start from A verdicts)', () => {
    const byId = new Map(records.map((r) => [r.decisionId, r]));
    for (const d of expected.a2d) assert.equal(byId.get(d)!.decision, 'allow');
    for (const d of expected.d2a) assert.equal(byId.get(d)!.decision, 'deny');
    assert.equal(expected.a2d.size, 2 * REPEAT);
    assert.equal(expected.d2a.size, REPEAT);
  });

  async function replay(dirPolicies: string, extra: string[] = []): Promise<{ code: number; result: ReplayResult; stderr: string }> {
    const io = captureIo();
    const code = await runAuditReplay([logPath], { policies: [dirPolicies], format: 'json', examples: 100, ...parseExtra(extra) }, io);
    return { code, result: JSON.parse(io.stdoutText()) as ReplayResult, stderr: io.stderrText() };
  }

  it('replaying A under A flips nothing', async () => {
    const { code, result } = await replay(A);
    assert.equal(code, 0);
    assert.equal(result.allowToDeny.count, 0);
    assert.equal(result.denyToAllow.count, 0);
    assert.equal(result.sameVerdictOtherRule, 0);
    assert.equal(result.replayed, TRAFFIC.length * REPEAT + 2);
    assert.equal(result.afterPolicyAllow.count, 2);
  });

  it('replaying under B reports exactly the expected flips, grouped by identity and rule', async () => {
    const { code, result } = await replay(B);
    assert.equal(code, 0);
    const ids = (groups: ReplayResult['allowToDeny']['byRule']) => new Set(groups.flatMap((g) => g.examples.map((e) => e.decisionId)));
    assert.deepEqual(ids(result.allowToDeny.byRule), expected.a2d);
    assert.deepEqual(ids(result.allowToDeny.byIdentity), expected.a2d);
    assert.deepEqual(ids(result.denyToAllow.byRule), expected.d2a);
    assert.equal(result.allowToDeny.count, expected.a2d.size);
    assert.equal(result.denyToAllow.count, expected.d2a.size);

    assert.deepEqual(
      result.allowToDeny.byIdentity.map((g) => [g.key, g.count]),
      [[id('batch', 'reporter'), REPEAT], [id('prod', 'worker'), REPEAT]],
    );
    assert.deepEqual(
      result.allowToDeny.byRule.map((g) => [g.key, g.count]),
      [['(no_allow_match)', REPEAT], ['block-reporter/reporter', REPEAT]],
    );
    assert.deepEqual(result.denyToAllow.byRule.map((g) => [g.key, g.count]), [['db-allow/staging-api', REPEAT]]);
    const ex = result.allowToDeny.byRule.find((g) => g.key === 'block-reporter/reporter')!.examples[0]!;
    assert.deepEqual(ex.recorded, { decision: 'allow', reason: 'allowed', policy: 'db-allow', rule: 'reporter' });
    assert.deepEqual(ex.candidate, { decision: 'deny', reason: 'explicit_deny', policy: 'block-reporter', rule: 'reporter' });

    assert.equal(result.notReplayable.count, 2);
    assert.deepEqual(result.notReplayable.byReason.map((r) => r.reason).sort(), ['bad_request', 'no_identity']);
    assert.deepEqual(result.afterPolicyAllow.byReason.map((r) => r.reason).sort(), ['destination_not_allowed', 'upstream_failed']);
    // B reads x-tenant, but none of these flips looked it up (CEL short-circuits on the namespace):
    // every flip is exact and gates.
    assert.equal(result.allowToDeny.inexact, 0);
    assert.equal(result.allowToDeny.exact, expected.a2d.size);
    assert.ok(
      result.warnings.some((w) => w.includes('"x-tenant"') && w.includes('no replayed record carries')),
      `expected a header warning, got ${JSON.stringify(result.warnings)}`,
    );
  });

  it('--fail-on-new-denies exits 1 when something flips allow -> deny, 0 when nothing does', async () => {
    const flipped = await replay(B, ['--fail-on-new-denies']);
    assert.equal(flipped.code, 1);
    assert.match(flipped.stderr, /6 decision\(s\) would flip from allow to deny/);
    const same = await replay(A, ['--fail-on-new-denies']);
    assert.equal(same.code, 0);
  });

  it('a candidate set that does not load is a usage error (exit 2) with file:line diagnostics', async () => {
    const bad = path.join(dir, 'bad');
    await import('node:fs/promises').then((fs) => fs.mkdir(bad));
    await writeFile(
      path.join(bad, 'p.yaml'),
      'apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: { name: x }\nspec:\n  action: ALLOW\n  rules:\n    - name: r\n      when: source.principl == "a"\n',
    );
    const io = captureIo();
    const code = await runAuditReplay([logPath], { policies: [bad] }, io);
    assert.equal(code, 2);
    assert.match(io.stderrText(), /p\.yaml:8:\d+: error/);
  });

  it('the accumulator is usable directly and counts every decision once', async () => {
    const acc = new ReplayAccumulator({ snapshot: await load(B), defaultAction: 'DENY' });
    for (const r of records) acc.add(r);
    const result = acc.result(newReadStats(), []);
    assert.equal(result.decisions, records.length);
    assert.equal(result.replayed + result.notReplayable.count + result.invalidInput.count, records.length);
    assert.equal(result.unchanged + result.allowToDeny.count + result.denyToAllow.count, result.replayed);
  });
});

function parseExtra(extra: string[]): { failOnNewDenies?: boolean } {
  return extra.includes('--fail-on-new-denies') ? { failOnNewDenies: true } : {};
}
