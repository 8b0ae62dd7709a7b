/**
 * `waygate audit replay` regressions from acceptance review:
 * - `destination_not_allowed` / `upstream_failed` records were ALLOWED by policy: they replay
 *   against that allow (a denying candidate is a real allow -> deny flip) and are labelled;
 *   bad_request / no_identity / draining stay not replayable.
 * - A flip whose candidate decision looked up a header or baggage key the record does not carry
 *   (or carries redacted) is INEXACT: counted apart, printed, excluded from --fail-on-new-denies.
 *   A candidate that reads such a header in a rule that short-circuits before it stays exact.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DecisionRecord } from '../../src/audit/record.ts';
import type { ReplayResult } from '../../src/audit/review/replay.ts';
import { runAuditReplay } from '../../src/cli/audit.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import { decide } from '../../src/policy/engine.ts';
import { loadPolicySet } from '../../src/policy/load.ts';
import type { PolicyTestInput } from '../../src/policy/model.ts';
import { captureIo } from '../helpers/audit-io.ts';
import { recordFromDecision, transportRecord } from '../helpers/audit-records.ts';

const id = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
const policy = (name: string, rules: [string, string][]) =>
  `apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: { name: ${name} }\nspec:\n  action: ALLOW\n  rules:\n` +
  rules.map(([n, when]) => `    - name: ${n}\n      when: '${when}'\n`).join('');

/** The recorded set: every prod workload is allowed. */
const BASE = policy('allow-prod', [['prod', 'source.namespace == "prod"']]);
/** Candidate: allows only a tenant on the database (reads x-tenant) and a cluster's backend (reads baggage). */
const CANDIDATE = policy('allow-tenant', [
  ['tenant-db', 'destination.port == 5432 && "x-tenant" in request.headers && request.headers["x-tenant"] == "acme"'],
  ['east-backend', 'destination.port == 8080 && source.serviceAccount == "backend" && request.baggage["k8s.cluster.name"] == "east"'],
]);
/** Candidate whose only flips are inexact: everything but the database stays allowed. */
const ONLY_INEXACT = policy('allow-tenant', [
  ['not-db', 'destination.port != 5432 && source.namespace == "prod"'],
  ['tenant-db', 'destination.port == 5432 && "x-tenant" in request.headers && request.headers["x-tenant"] == "acme"'],
]);

describe('audit replay: transport refusals and exactness', () => {
  let dir: string;
  let logPath: string;
  const dirs: Record<string, string> = {};

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-replay-exact-'));
    const baggageRead = policy('allow-prod', [['prod', 'source.namespace == "prod"'], ['team', 'request.baggage["team"] == "payments"']]);
    for (const [name, text] of Object.entries({ base: BASE, candidate: CANDIDATE, onlyInexact: ONLY_INEXACT, baggageRead })) {
      dirs[name] = path.join(dir, name);
      await mkdir(dirs[name]!);
      await writeFile(path.join(dirs[name]!, 'p.yaml'), text);
    }
    const loaded = await loadPolicySet([dirs.base!], { version: 1 });
    if (!loaded.ok) throw new Error(loaded.diagnostics.map((d) => d.message).join('\n'));
    let n = 0;
    const input = (principal: string, ip: string, port: number, request: PolicyTestInput['request'] = {}): PolicyTestInput => ({
      source: { principal, ip: '10.1.0.5', port: 40000 + n },
      destination: { ip, port, authority: `${ip}:${port}` },
      request,
      connection: { id: 'c1', tlsVersion: 'TLSv1.3' },
      now: new Date(Date.parse('2026-11-26T09:00:00Z') + n++ * 1000).toISOString(),
    });
    const decided = (decisionId: string, i: PolicyTestInput, edit: (r: DecisionRecord) => void = () => {}): DecisionRecord => {
      const ctx = contextFromInput(i);
      const rec = recordFromDecision(ctx, decide(loaded.snapshot, ctx, { defaultAction: 'DENY' }), { decisionId });
      assert.equal(rec.decision, 'allow', `${decisionId} is allowed under the base set`);
      edit(rec);
      return rec;
    };
    const records: DecisionRecord[] = [
      decided('web-exact', input(id('prod', 'frontend'), '10.0.1.7', 8080)),
      decided('db-no-tenant', input(id('prod', 'api'), '10.0.2.9', 5432)),
      // As src/hbone/connect-handler.ts writes them after a policy allow: deny without the rule, or an
      // allow verdict with the allowing rule and a 503.
      decided('web-refused', input(id('prod', 'frontend'), '10.0.1.7', 8080), (r) => Object.assign(r, { decision: 'deny', reason: 'destination_not_allowed', status: 401, policy: null, rule: null })),
      decided('db-dial-failed', input(id('prod', 'api'), '10.0.2.9', 5432), (r) => Object.assign(r, { reason: 'upstream_failed', status: 503 })),
      decided('backend-no-baggage', input(id('prod', 'backend'), '10.0.1.7', 8080)),
      decided('backend-west', input(id('prod', 'backend'), '10.0.1.7', 8080, { baggage: { 'k8s.cluster.name': 'west' } })),
      decided('db-redacted', input(id('prod', 'api'), '10.0.2.9', 5432), (r) => (r.headers = { 'x-tenant': '[REDACTED]' })),
    ];
    const t = { source: { principal: id('prod', 'frontend'), ip: '10.1.0.5', port: 1 }, destination: { ip: '10.0.1.7', port: 8080 }, now: '2026-11-26T10:00:00Z' };
    records.push(transportRecord(t, 'bad_request', 'bad', 400));
    records.push(transportRecord({ ...t, source: { ip: '10.1.0.5', port: 2 } }, 'no_identity', 'anon', 401));
    records.push(transportRecord(t, 'draining', 'drain', 503));
    logPath = path.join(dir, 'audit.jsonl');
    await writeFile(logPath, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function replay(policies: string, flags: { failOnNewDenies?: boolean; format?: 'json' | 'text' } = {}) {
    const io = captureIo();
    const code = await runAuditReplay([logPath], { policies: [policies], examples: 100, format: flags.format ?? 'json', failOnNewDenies: flags.failOnNewDenies }, io);
    return { code, stdout: io.stdoutText(), stderr: io.stderrText() };
  }
  const examples = (r: ReplayResult) => new Map(r.allowToDeny.byIdentity.flatMap((g) => g.examples).map((e) => [e.decisionId, e]));

  it('replaying the recorded set flips nothing, transport refusals included', async () => {
    const result = JSON.parse((await replay(dirs.base!)).stdout) as ReplayResult;
    assert.equal(result.replayed, 7);
    assert.equal(result.unchanged, 7);
    assert.deepEqual(result.afterPolicyAllow.byReason, [{ reason: 'destination_not_allowed', count: 1 }, { reason: 'upstream_failed', count: 1 }]);
    assert.deepEqual(result.notReplayable.byReason.map((r) => r.reason).sort(), ['bad_request', 'draining', 'no_identity']);
  });

  it('transport refusals flip against the policy allow and are labelled; unrecorded lookups make flips inexact', async () => {
    const result = JSON.parse((await replay(dirs.candidate!)).stdout) as ReplayResult;
    const a2d = result.allowToDeny;
    assert.equal(a2d.count, 7);
    assert.equal(result.denyToAllow.count, 0);
    const ex = examples(result);
    assert.deepEqual([...ex.keys()].sort(), ['backend-no-baggage', 'backend-west', 'db-dial-failed', 'db-no-tenant', 'db-redacted', 'web-exact', 'web-refused']);

    assert.equal(ex.get('web-refused')!.refusedByTransport, 'destination_not_allowed');
    assert.equal(ex.get('web-refused')!.recorded.decision, 'allow');
    assert.equal(ex.get('db-dial-failed')!.refusedByTransport, 'upstream_failed');
    assert.deepEqual(ex.get('db-dial-failed')!.recorded, { decision: 'allow', reason: 'allowed', policy: 'allow-prod', rule: 'prod' });
    assert.equal(ex.get('web-exact')!.refusedByTransport, null);

    // Exact: the rule reading x-tenant / baggage short-circuits before the lookup, or the key is recorded.
    for (const d of ['web-exact', 'web-refused', 'backend-west']) assert.deepEqual(ex.get(d)!.inexact, [], d);
    assert.deepEqual(ex.get('db-no-tenant')!.inexact, ['request.headers.x-tenant, which the log does not record']);
    assert.deepEqual(ex.get('db-dial-failed')!.inexact, ['request.headers.x-tenant, which the log does not record']);
    assert.deepEqual(ex.get('db-redacted')!.inexact, ['request.headers.x-tenant, which the log records redacted']);
    // Baggage is recorded in full by the transport: a member a record lacks was absent, so exact.
    assert.deepEqual(ex.get('backend-no-baggage')!.inexact, []);
    assert.equal(a2d.exact, 4);
    assert.equal(a2d.inexact, 3);
    assert.deepEqual(
      a2d.inexactByDependency.map((g) => [g.key, g.count]),
      [
        ['request.headers.x-tenant, which the log does not record', 2],
        ['request.headers.x-tenant, which the log records redacted', 1],
      ],
    );
    assert.ok(result.warnings.some((w) => w.includes('header "x-tenant"') && w.includes('redacted')), JSON.stringify(result.warnings));
    // backend-west carries k8s.cluster.name: no set-level baggage warning for it.
    assert.ok(!result.warnings.some((w) => w.includes('k8s.cluster.name')), JSON.stringify(result.warnings));
  });

  it('a baggage key no record carries replays as absent without a warning (baggage is recorded in full)', async () => {
    const result = JSON.parse((await replay(dirs.baggageRead!)).stdout) as ReplayResult;
    assert.equal(result.allowToDeny.count, 0);
    assert.ok(!result.warnings.some((w) => w.includes('baggage')), JSON.stringify(result.warnings));
  });

  it('the text report labels refusals and inexact flips', async () => {
    const { stdout } = await replay(dirs.candidate!, { format: 'text' });
    assert.match(stdout, /7 \(4 exact, 3 inexact\) allow -> deny/);
    assert.match(stdout, /Replayed against the policy verdict/);
    assert.match(stdout, /allow \(rule not recorded\), then refused: destination_not_allowed/);
    assert.match(stdout, /== allow -> deny: 7 \(4 exact, 3 inexact\) ==/);
    assert.match(stdout, /allow allow-prod\/prod, then refused: upstream_failed/);
    assert.match(stdout, /inexact: depends on request\.headers\.x-tenant, which the log does not record/);
  });

  it('--fail-on-new-denies counts exact flips only and prints the inexact ones', async () => {
    const mixed = await replay(dirs.candidate!, { failOnNewDenies: true });
    assert.equal(mixed.code, 1);
    assert.match(mixed.stderr, /^waygate audit: 3 allow -> deny flip\(s\) are inexact/m);
    assert.match(mixed.stderr, /^waygate audit: 4 decision\(s\) would flip from allow to deny/m);

    const onlyInexact = await replay(dirs.onlyInexact!, { failOnNewDenies: true });
    const result = JSON.parse(onlyInexact.stdout) as ReplayResult;
    assert.deepEqual([...examples(result).keys()].sort(), ['db-dial-failed', 'db-no-tenant', 'db-redacted']);
    assert.equal(result.allowToDeny.exact, 0);
    assert.equal(onlyInexact.code, 0, onlyInexact.stderr);
    assert.match(onlyInexact.stderr, /3 allow -> deny flip\(s\) are inexact/);
  });
});
