/**
 * `waygate audit suggest`: three defects a review found (issue 18), each with the log or policy set
 * that showed it.
 * 1. Services of the same name in two namespaces are two destinations: one policy each, selecting
 *    its own namespace (merged, the second namespace's allowed traffic replayed as denies).
 * 2. The kept files hold the DENY and AUDIT AuthorizationPolicies in force, never another document
 *    of the same name (a PolicyTest named after its DENY policy was copied with it).
 * 3. Without --policies, a record whose input cannot be rebuilt (a time that is not RFC 3339, a
 *    header that is not a string) is not replayed as a good record of the same caller and
 *    destination: the replay from the one read equals `audit replay` of the log (invalidInput too).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DecisionRecord } from '../../src/audit/record.ts';
import type { ReplayResult } from '../../src/audit/review/replay.ts';
import { runAuditSuggest } from '../../src/cli/audit.ts';
import { captureIo } from '../helpers/audit-io.ts';
import { transportRecord } from '../helpers/audit-records.ts';
import { replayAgain, type SuggestJson } from '../helpers/audit-suggest.ts';
import { assertPolicyVerbsPass } from '../helpers/cli.ts';

const id = (ns: string, sa: string): string => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

let n = 0;
/** A decision record as the gateway writes it (allowed by api/callers, or denied with no ALLOW rule matching). */
function rec(o: { principal: string; dst: string; port: number; service?: string; namespace?: string; allow: boolean; headers?: Record<string, unknown>; time?: string }): DecisionRecord {
  const r = transportRecord(
    {
      source: { principal: o.principal, ip: '10.1.0.5', port: 40000 + n },
      destination: { ip: o.dst, port: o.port, ...(o.service !== undefined ? { service: o.service, namespace: o.namespace ?? '' } : {}) },
    },
    'allowed',
    `x${n++}`,
    200,
  );
  return {
    ...r,
    time: o.time ?? `2026-11-26T10:00:0${n % 10}.000Z`,
    decision: o.allow ? 'allow' : 'deny',
    reason: o.allow ? 'allowed' : 'no_allow_match',
    status: o.allow ? 200 : 401,
    ...(o.allow ? { policy: 'api', rule: 'callers' } : {}),
    headers: (o.headers ?? {}) as Record<string, string>,
  };
}

async function suggest(log: string, out: string, policies: string[] = []): Promise<{ code: number; json: SuggestJson; stderr: string }> {
  const io = captureIo();
  const code = await runAuditSuggest([log], { out, format: 'json', failOnNewDenies: true, ...(policies.length > 0 ? { policies } : {}) }, io);
  assert.notEqual(io.stdoutText(), '', `suggest printed no report (exit ${code}): ${io.stderrText()}`);
  return { code, json: JSON.parse(io.stdoutText()) as SuggestJson, stderr: io.stderrText() };
}


/** What two replays of the same records count (examples aside: they are chosen, not counted). */
function counts(r: ReplayResult): unknown {
  const flips = (f: ReplayResult['allowToDeny']) => ({ count: f.count, exact: f.exact, byIdentity: f.byIdentity.map((g) => [g.key, g.count]) });
  return {
    decisions: r.decisions, replayed: r.replayed, unchanged: r.unchanged, sameVerdictOtherRule: r.sameVerdictOtherRule,
    notReplayable: r.notReplayable, invalidInput: r.invalidInput.count, allowToDeny: flips(r.allowToDeny), denyToAllow: flips(r.denyToAllow), warnings: r.warnings,
  };
}

describe('audit suggest: review regressions', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-suggest-reg-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('db:5432 in namespaces a and b: two policies, each selecting its namespace; 0 flips', async () => {
    const log = path.join(dir, 'two-namespaces.jsonl');
    const records = [
      rec({ principal: id('a', 'app'), service: 'db', namespace: 'a', dst: '10.96.0.1', port: 5432, allow: true }),
      rec({ principal: id('a', 'app'), service: 'db', namespace: 'a', dst: '10.96.0.1', port: 5432, allow: true }),
      rec({ principal: id('b', 'app'), service: 'db', namespace: 'b', dst: '10.96.0.2', port: 5432, allow: true }),
      // b's caller refused a's database: it must stay refused (merged, a's policy allowed it).
      rec({ principal: id('b', 'app'), service: 'db', namespace: 'a', dst: '10.96.0.1', port: 5432, allow: false }),
    ];
    await writeFile(log, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const out = path.join(dir, 'two-namespaces');
    const { code, json, stderr } = await suggest(log, out);
    assert.equal(code, 0, stderr);
    assert.deepEqual(json.suggestion.destinations.map((d) => [d.key, d.policy, d.callers.map((c) => c.principal)]), [
      ['a/db:5432', 'suggested-a-db-5432', [id('a', 'app')]],
      ['b/db:5432', 'suggested-b-db-5432', [id('b', 'app')]],
    ]);
    for (const ns of ['a', 'b']) {
      const text = await readFile(path.join(out, `suggested-${ns}-db-5432.yaml`), 'utf8');
      assert.match(text, new RegExp(`selector: destination\\.namespace == "${ns}" && destination\\.service == "db" && destination\\.port == 5432\\n`));
      assert.match(text, new RegExp(`# service db \\(namespace ${ns}\\) port 5432: `));
    }
    assert.equal(json.replay.allowToDeny.count, 0);
    assert.equal(json.replay.denyToAllow.count, 0);
    assert.equal(json.replay.unchanged, records.length);
    await assertPolicyVerbsPass(out);
    assert.deepEqual(counts(json.replay), counts(await replayAgain(log, out)));
  });

  it('--policies: a PolicyTest named after its DENY policy stays out of kept-*.yaml', async () => {
    const policies = path.join(dir, 'named-test-policies');
    await mkdir(policies);
    await writeFile(path.join(policies, 'api.yaml'), [
      'apiVersion: waygate.dev/v1alpha1',
      'kind: AuthorizationPolicy',
      'metadata:',
      '  name: api',
      'spec:',
      '  action: ALLOW',
      '  rules:',
      '    - name: callers',
      '      when: source.namespace == "prod"',
      '---',
      'apiVersion: waygate.dev/v1alpha1',
      'kind: AuthorizationPolicy',
      'metadata:',
      '  name: no-debug',
      'spec:',
      '  action: DENY',
      '  rules:',
      '    - name: debug-header',
      '      when: \'"x-debug" in request.headers\'',
      '---',
      '# Its test, under the same name: it needs the ALLOW policy above, which the suggestion replaces.',
      'apiVersion: waygate.dev/v1alpha1',
      'kind: PolicyTest',
      'metadata:',
      '  name: no-debug',
      'spec:',
      '  cases:',
      '    - name: prod allowed by api',
      '      input: { source: { principal: "spiffe://cluster.local/ns/prod/sa/other" }, destination: { ip: "10.0.0.7", port: 443 } }',
      '      expect: { decision: allow, policy: api, rule: callers }',
      '',
    ].join('\n'));
    const log = path.join(dir, 'named-test.jsonl');
    await writeFile(log, [rec({ principal: id('prod', 'web'), dst: '10.0.0.1', port: 8080, allow: true })].map((r) => JSON.stringify(r)).join('\n') + '\n');
    const out = path.join(dir, 'named-test');
    const { code, json, stderr } = await suggest(log, out, [policies]);
    assert.equal(code, 0, stderr);
    assert.deepEqual(json.kept.map((k) => [k.path, k.policies]), [['kept-api.yaml', ['no-debug']]]);
    const kept = await readFile(path.join(out, 'kept-api.yaml'), 'utf8');
    assert.match(kept, /kind: AuthorizationPolicy\nmetadata:\n {2}name: no-debug\n/);
    assert.doesNotMatch(kept, /PolicyTest/);
    assert.doesNotMatch(kept, /name: api\n/);
    // Copied, the test's case would fail here: nothing beside the suggestion is named api.
    await assertPolicyVerbsPass(out);
    assert.deepEqual((await readdir(out)).sort(), ['kept-api.yaml', 'suggested-10.0.0.1-8080.test.yaml', 'suggested-10.0.0.1-8080.yaml']);
  });

  it('without --policies, records whose input cannot be rebuilt are counted as audit replay counts them', async () => {
    const web = id('prod', 'web');
    const good = () => rec({ principal: web, dst: '10.0.0.1', port: 8080, allow: true });
    // The same caller, destination and recorded outcome: only the rebuild tells them apart.
    const records = [
      good(), good(), good(), good(),
      rec({ principal: web, dst: '10.0.0.1', port: 8080, allow: true, time: 'yesterday' }),
      rec({ principal: web, dst: '10.0.0.1', port: 8080, allow: true, headers: { 'x-tenant': { id: 7 } } }),
      good(),
      rec({ principal: web, dst: '10.0.0.1', port: 8080, allow: true, time: '2026-11-26T10:00:00' }),
    ];
    const log = path.join(dir, 'unrebuildable.jsonl');
    await writeFile(log, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const out = path.join(dir, 'unrebuildable');
    const { code, json, stderr } = await suggest(log, out);
    assert.equal(code, 0, stderr);
    const again = await replayAgain(log, out);
    assert.equal(again.invalidInput.count, 3);
    assert.equal(again.replayed, 5);
    assert.deepEqual(counts(json.replay), counts(again));
  });

  it('records whose input cannot be rebuilt give no rule, no test case and no first/last seen: the written set loads', async () => {
    const web = id('prod', 'web');
    const notSpiffe = (r: DecisionRecord): DecisionRecord => ({ ...r, source: { ...r.source, principal: 'not-a-spiffe-id' } });
    const records = [
      rec({ principal: web, dst: '10.0.0.1', port: 8080, allow: true, time: '2026-11-26T10:00:00.000Z' }),
      rec({ principal: web, dst: '10.0.0.1', port: 8080, allow: true, time: 'yesterday' }),
      // Not a SPIFFE ID: as a rule's caller and a test case's input, the written set would not load.
      notSpiffe(rec({ principal: web, dst: '10.0.0.1', port: 8080, allow: true })),
      rec({ principal: web, dst: '10.0.0.1', port: 8080, allow: true, time: '2026-11-26T11:00:00.000Z' }),
    ];
    const log = path.join(dir, 'unrebuildable-callers.jsonl');
    await writeFile(log, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const out = path.join(dir, 'unrebuildable-callers');
    const { code, json, stderr } = await suggest(log, out);
    assert.equal(code, 0, stderr);
    assert.equal(json.suggestion.invalidInput, 2);
    assert.equal(json.suggestion.allowed, 2);
    assert.deepEqual(json.suggestion.destinations.map((d) => [d.key, d.firstSeen, d.lastSeen, d.callers.map((c) => [c.principal, c.count])]), [
      ['10.0.0.1:8080', '2026-11-26T10:00:00.000Z', '2026-11-26T11:00:00.000Z', [[web, 2]]],
    ]);
    await assertPolicyVerbsPass(out);
    const again = await replayAgain(log, out);
    assert.equal(again.invalidInput.count, 2);
    assert.deepEqual(counts(json.replay), counts(again));
    const text = captureIo();
    assert.equal(await runAuditSuggest([log], { out: path.join(dir, 'unrebuildable-text') }, text), 0, text.stderrText());
    assert.match(text.stdoutText(), /4 decision records: 2 allowed by policy \(the suggestion\), 0 denied by policy, 0 decided before the policy engine \(not used\), 2 whose input cannot be rebuilt/);
  });
});
