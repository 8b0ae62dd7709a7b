/**
 * `waygate audit suggest`: the suggested set, replayed against the log it was drawn from, allows
 * every decision the policy allowed (0 allow -> deny flips) and keeps denied what was denied, except
 * denies of a caller the log also shows allowed at the same destination (the suggestion's grain is
 * caller x destination), which it reports. The expected counts are computed here from the raw lines
 * (for the generated log, from the records as the generator writes them), not by the suggester.
 * The output passes `policy check`, `policy fmt --check` and `policy test`.
 * With the policies in force (`--policies`), their DENY and AUDIT policies are kept beside the
 * suggestion and a caller both allowed and denied at a destination keeps the allowing rule's
 * condition: then the denies stay denies too. The replay from the one read of the log equals
 * `audit replay` of the same log against the written directory.
 */
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { DecisionRecord } from '../../src/audit/record.ts';
import { REPLAYABLE_REASONS, type ReplayResult } from '../../src/audit/review/replay.ts';
import { AFTER_POLICY_ALLOW_REASONS } from '../../src/policy/decision.ts';
import { SuggestAccumulator } from '../../src/audit/review/suggest.ts';
import { runAuditSuggest } from '../../src/cli/audit.ts';
import { captureIo } from '../helpers/audit-io.ts';
import { transportRecord } from '../helpers/audit-records.ts';
import { writeAuditLog } from '../helpers/audit-log.ts';
import { replayAgain, type SuggestJson } from '../helpers/audit-suggest.ts';
import { assertPolicyVerbsPass } from '../helpers/cli.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SAMPLE = path.join(ROOT, 'examples/audit/sample.jsonl');

/** Reasons the engine decides, and the transport's refusals after a policy allow (what replay compares). */
const ENGINE = REPLAYABLE_REASONS;
const AFTER_ALLOW = AFTER_POLICY_ALLOW_REASONS;

interface Expected {
  policyAllowed: number;
  /** Engine denies of a caller also allowed at that destination: allowed by the suggestion. */
  deniedOfAllowedCallers: number;
  /** The other engine denies: must stay denied. */
  deniedOthers: number;
}

/** Who the policy allowed where, and which denies share a caller x destination with an allow. */
class Expectation {
  readonly #allowedPairs = new Set<string>();
  readonly #denies: string[] = [];
  #policyAllowed = 0;

  add(r: DecisionRecord): void {
    if (r.schema !== 1 || r.event !== 'decision') return;
    const d = r.destination;
    const pair = `${r.source.principal || r.source.ip} ${d.service || d.ip || d.host}:${d.port}`;
    if (AFTER_ALLOW.has(r.reason) || (ENGINE.has(r.reason) && r.decision === 'allow')) {
      this.#policyAllowed++;
      this.#allowedPairs.add(pair);
    } else if (ENGINE.has(r.reason)) this.#denies.push(pair);
  }

  result(): Expected {
    const mixed = this.#denies.filter((p) => this.#allowedPairs.has(p)).length;
    return { policyAllowed: this.#policyAllowed, deniedOfAllowedCallers: mixed, deniedOthers: this.#denies.length - mixed };
  }
}

/** Straight from the lines of `file`. */
async function expectedFrom(file: string): Promise<Expected> {
  const exp = new Expectation();
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    let r: DecisionRecord;
    try {
      r = JSON.parse(line) as DecisionRecord;
    } catch {
      continue;
    }
    exp.add(r);
  }
  return exp.result();
}

async function suggestJson(paths: string[], out: string, extra: string[] = []): Promise<{ code: number; json: SuggestJson; stderr: string }> {
  const io = captureIo();
  const flags: Parameters<typeof runAuditSuggest>[1] = { out, format: 'json', failOnNewDenies: true };
  for (let i = 0; i < extra.length; i += 2) {
    if (extra[i] === '--min-count') flags.minCount = Number(extra[i + 1]);
    if (extra[i] === '--since') flags.since = extra[i + 1];
    if (extra[i] === '--policies') (flags.policies ??= []).push(extra[i + 1]!);
  }
  const code = await runAuditSuggest(paths, flags, io);
  return { code, json: JSON.parse(io.stdoutText()) as SuggestJson, stderr: io.stderrText() };
}

function assertReplaysLikeTheLog(replay: ReplayResult, exp: Expected, opts: { inForce?: boolean } = {}): void {
  assert.equal(replay.allowToDeny.count, 0, 'no decision the policy allowed may flip to deny');
  // With the policies in force every deny stays a deny; without, the denies of allowed callers flip.
  assert.equal(replay.denyToAllow.count, opts.inForce ? 0 : exp.deniedOfAllowedCallers);
  assert.equal(replay.replayed, exp.policyAllowed + exp.deniedOfAllowedCallers + exp.deniedOthers);
  assert.equal(replay.invalidInput.count, 0);
}

/** The counts of two replays of the same records (examples aside: they are chosen, not counted). */
function replayCounts(r: ReplayResult): unknown {
  const flips = (f: ReplayResult['allowToDeny']) => ({
    count: f.count, exact: f.exact, inexact: f.inexact,
    byIdentity: f.byIdentity.map((g) => [g.key, g.count]), byRule: f.byRule.map((g) => [g.key, g.count]),
  });
  return {
    candidate: r.candidate.hash, input: r.input, decisions: r.decisions, replayed: r.replayed, unchanged: r.unchanged,
    sameVerdictOtherRule: r.sameVerdictOtherRule, notReplayable: r.notReplayable, afterPolicyAllow: r.afterPolicyAllow,
    invalidInput: r.invalidInput.count, allowToDeny: flips(r.allowToDeny), denyToAllow: flips(r.denyToAllow), warnings: r.warnings,
  };
}


describe('audit suggest', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-suggest-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('on examples/audit/sample.jsonl: 0 new denies, denies stay denied, the output passes check, fmt --check and test', async () => {
    const out = path.join(dir, 'sample');
    const exp = await expectedFrom(SAMPLE);
    const { code, json } = await suggestJson([SAMPLE], out);
    assert.equal(code, 0);
    assert.equal(json.suggestion.allowed, exp.policyAllowed);
    assertReplaysLikeTheLog(json.replay, exp);
    // The sample's migration job is denied without x-tenant and allowed with it (examples/audit/README.md).
    assert.ok(exp.deniedOfAllowedCallers > 0 && exp.deniedOthers > 0);
    assert.deepEqual(json.replay.denyToAllow.byIdentity.map((g) => g.key), ['spiffe://cluster.local/ns/prod/sa/migrate']);
    await assertPolicyVerbsPass(out);
    const db = json.suggestion.destinations.find((d) => d.key === '127.191.242.218:5432');
    assert.ok(db);
    assert.deepEqual(db.callers.map((c) => c.rule).sort(), ['prod-api', 'prod-migrate']);
    const text = await readFile(path.join(out, `${db.policy}.yaml`), 'utf8');
    assert.match(text, /selector: destination\.ip == "127\.191\.242\.218" && destination\.port == 5432\n/);
    assert.match(text, /# 35 decision\(s\), first seen 2026-11-26T14:27:14Z, last seen 2026-11-26T14:27:19Z\n\s+- name: prod-api\n\s+when: source\.principal == "spiffe:\/\/cluster\.local\/ns\/prod\/sa\/api"/);
    // Without the policies in force, the warning names what allowed and what denied the pair, and the flag.
    assert.equal(json.suggestion.warnings.length, 2);
    assert.match(json.suggestion.warnings[1]!, /spiffe:\/\/cluster\.local\/ns\/prod\/sa\/migrate -> 127\.191\.242\.218:5432: denied by \(no_allow_match\) 4x, allowed by database-clients\/migrations 2x; pass --policies/);
    assert.deepEqual(replayCounts(json.replay), replayCounts(await replayAgain(SAMPLE, out)));
  });

  it('on the sample with --policies policies/: DENY and AUDIT kept, the header-dependent denies stay denies, 0 flips either way', async () => {
    const out = path.join(dir, 'sample-in-force');
    const exp = await expectedFrom(SAMPLE);
    const { code, json, stderr } = await suggestJson([SAMPLE], out, ['--policies', path.join(ROOT, 'policies')]);
    assert.equal(code, 0, stderr);
    // require-traceparent reads request.traceId, but in DryRun: it cannot change a replayed verdict, so records are still grouped.
    assert.doesNotMatch(stderr, /keeps every decision record/);
    assertReplaysLikeTheLog(json.replay, exp, { inForce: true });
    assert.equal(json.replay.denyToAllow.count, 0);
    assert.deepEqual(json.suggestion.warnings, []);
    assert.deepEqual(json.kept.map((k) => [path.relative(ROOT, k.from), k.policies]).sort(), [
      ['policies/database.yaml', ['database-audit']],
      ['policies/deny-dev.yaml', ['deny-dev']],
      ['policies/deny-link-local.yaml', ['deny-link-local']],
      ['policies/require-traceparent.yaml', ['require-traceparent']],
    ]);
    // No ALLOW policy in force is copied: the suggestion replaces that side.
    const written = (await readdir(out)).sort();
    assert.ok(written.every((f) => f.startsWith('suggested-') || f.startsWith('kept-')), written.join(' '));
    const keptDb = await readFile(path.join(out, 'kept-database.yaml'), 'utf8');
    assert.match(keptDb, /name: database-audit/);
    assert.doesNotMatch(keptDb, /database-clients/);
    const db = json.suggestion.destinations.find((d) => d.key === '127.191.242.218:5432')!;
    const migrate = db.callers.find((c) => c.principal.endsWith('/sa/migrate'))!;
    assert.deepEqual(migrate.conditions, [{ rule: 'prod-migrate', from: 'database-clients/migrations' }]);
    assert.deepEqual(migrate.deniedBy, [{ by: '(no_allow_match)', count: 4 }]);
    assert.equal(db.deniedKeptCallers, 4);
    assert.equal(db.deniedAllowedCallers, 0);
    const text = await readFile(path.join(out, `${db.policy}.yaml`), 'utf8');
    assert.match(text, /when: source\.principal == "spiffe:\/\/cluster\.local\/ns\/prod\/sa\/migrate" && \(destination\.port == 5432\) && \(variables\.prod && source\.serviceAccount == "migrate" && variables\.tenant != ""\)\n/);
    assert.match(text, /- name: tenant\n\s+expression: '"x-tenant" in request\.headers \? request\.headers\["x-tenant"\] : ""'/);
    // The PolicyTest holds the migrate job allowed with x-tenant and refused without it.
    const tests = await readFile(path.join(out, `${db.policy}.test.yaml`), 'utf8');
    assert.match(tests, /headers: \{ x-tenant: "acme" \}/);
    assert.match(tests, /sa\/migrate is refused 127\.191\.242\.218:5432 \(observed no_allow_match/);
    await assertPolicyVerbsPass(out);
    assert.deepEqual(replayCounts(json.replay), replayCounts(await replayAgain(SAMPLE, out)));
  });

  it('on a generated log of 100,000 decisions: 0 new denies, denies stay denied, output passes the policy verbs', async () => {
    const log = path.join(dir, 'big.jsonl');
    // Counted from the records the generator writes, as it writes them: the log is 137 MB, and
    // reading it back here cost as much as one of the two reads the test is about.
    const counted = new Expectation();
    const truth = await writeAuditLog(log, { decisions: 100_000, seed: 18, onDecision: (r) => counted.add(r) });
    const exp = counted.result();
    const { code, json, stderr } = await suggestJson([log], path.join(dir, 'big'));
    assert.equal(code, 0, stderr);
    assert.equal(json.replay.decisions, truth.decisions);
    assert.equal(json.suggestion.allowed, exp.policyAllowed);
    assertReplaysLikeTheLog(json.replay, exp);
    await assertPolicyVerbsPass(path.join(dir, 'big'));
    // One read: the replay from what suggest kept equals a second read by `audit replay`.
    assert.deepEqual(replayCounts(json.replay), replayCounts(await replayAgain(log, path.join(dir, 'big'))));
  });

  describe('--policies: a DENY policy on a header in force', () => {
    const id = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
    const POLICIES = [
      'apiVersion: waygate.dev/v1alpha1',
      'kind: AuthorizationPolicy',
      'metadata:',
      '  name: api-callers',
      'spec:',
      '  action: ALLOW',
      '  selector: destination.port == 8080',
      '  rules:',
      '    - name: prod',
      '      when: source.namespace == "prod"',
      '---',
      '# Debug sessions are refused, whoever asks.',
      'apiVersion: waygate.dev/v1alpha1',
      'kind: AuthorizationPolicy',
      'metadata:',
      '  name: no-debug',
      'spec:',
      '  action: DENY',
      '  rules:',
      '    - name: debug-header',
      '      when: \'"x-debug" in request.headers\'',
      '',
    ].join('\n');
    let n = 0;
    const rec = (principal: string, dst: string, port: number, reason: 'allowed' | 'explicit_deny' | 'no_allow_match' | 'default_deny', headers: Record<string, string> = {}): DecisionRecord => {
      const r = transportRecord({ source: { principal, ip: '10.1.0.5', port: 40000 + n }, destination: { ip: dst, port } }, reason, `h${n++}`, 200);
      const by = reason === 'allowed' ? { policy: 'api-callers', rule: 'prod' } : reason === 'explicit_deny' ? { policy: 'no-debug', rule: 'debug-header' } : { policy: null, rule: null };
      return { ...r, ...by, time: `2026-11-26T10:00:0${n % 10}.000Z`, headers, decision: reason === 'allowed' ? 'allow' : 'deny', status: reason === 'allowed' ? 200 : 401 };
    };
    const web = id('prod', 'web');
    const records = [
      rec(web, '10.0.0.1', 8080, 'allowed'),
      rec(web, '10.0.0.1', 8080, 'allowed'),
      rec(web, '10.0.0.1', 8080, 'explicit_deny', { 'x-debug': '1' }),
      rec(web, '10.0.0.1', 8080, 'allowed'),
      rec(web, '10.0.0.1', 8080, 'explicit_deny', { 'x-debug': '1' }),
      rec(id('dev', 'x'), '10.0.0.1', 8080, 'no_allow_match'),
      // Denied by default (the record names no policy) where nobody was allowed: stays denied.
      rec(web, '10.0.0.9', 22, 'default_deny'),
    ];
    let logPath: string;
    let policyDir: string;
    before(async () => {
      logPath = path.join(dir, 'header-deny.jsonl');
      await writeFile(logPath, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
      policyDir = path.join(dir, 'header-deny-policies');
      await mkdir(policyDir);
      await writeFile(path.join(policyDir, 'api.yaml'), POLICIES);
    });

    it('without --policies the 2 header denies flip, and the warning names no-debug/debug-header and the flag', async () => {
      const out = path.join(dir, 'header-deny-alone');
      const { code, json } = await suggestJson([logPath], out);
      assert.equal(code, 0);
      assert.equal(json.replay.allowToDeny.count, 0);
      assert.equal(json.replay.denyToAllow.count, 2);
      assert.match(json.suggestion.warnings.join('\n'), /spiffe:\/\/cluster\.local\/ns\/prod\/sa\/web -> 10\.0\.0\.1:8080: denied by no-debug\/debug-header 2x, allowed by api-callers\/prod 3x; pass --policies/);
      assert.deepEqual(replayCounts(json.replay), replayCounts(await replayAgain(logPath, out)));
    });

    it('with --policies the DENY policy is copied beside the suggestion, the denies stay denies, and the replay groups records', async () => {
      const out = path.join(dir, 'header-deny-in-force');
      const io = captureIo();
      const code = await runAuditSuggest([logPath], { out, policies: [policyDir], format: 'json', failOnNewDenies: true }, io);
      assert.equal(code, 0, io.stderrText());
      assert.equal(io.stderrText(), '', 'the set in force reads only keyable attributes: records are grouped, not kept one by one');
      const json = JSON.parse(io.stdoutText()) as SuggestJson;
      assert.deepEqual(json.kept.map((k) => [k.path, k.policies]), [['kept-api.yaml', ['no-debug']]]);
      const kept = await readFile(path.join(out, 'kept-api.yaml'), 'utf8');
      assert.match(kept, /# Debug sessions are refused, whoever asks\.\n/);
      assert.doesNotMatch(kept, /api-callers/);
      assert.equal(json.replay.allowToDeny.count, 0);
      assert.equal(json.replay.denyToAllow.count, 0);
      assert.equal(json.replay.unchanged, records.length);
      assert.deepEqual(json.suggestion.warnings, []);
      const api = json.suggestion.destinations.find((d) => d.key === '10.0.0.1:8080')!;
      assert.equal(api.deniedKeptCallers, 2);
      // A DENY policy in force reproduces these denies: the rule stays on identity alone.
      assert.deepEqual(api.callers.find((c) => c.principal === web)!.conditions, []);
      assert.equal(json.suggestion.deniedUnsuggested, 1);
      await assertPolicyVerbsPass(out);
      assert.deepEqual(replayCounts(json.replay), replayCounts(await replayAgain(logPath, out)));
    });

    it('an enforced policy in force reading the trace id: every record kept (said on stderr), the same replay', async () => {
      const dir2 = path.join(dir, 'trace-policies');
      await mkdir(dir2);
      await writeFile(path.join(dir2, 'api.yaml'), POLICIES + '---\napiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: no-trace-zero\nspec:\n  action: DENY\n  rules:\n    - name: zero\n      when: request.traceId == "00000000000000000000000000000000"\n');
      const out = path.join(dir, 'trace-in-force');
      const io = captureIo();
      assert.equal(await runAuditSuggest([logPath], { out, policies: [dir2], format: 'json' }, io), 0, io.stderrText());
      assert.match(io.stderrText(), /the policies in force read `request\.traceId`: unique per request: the replay keeps every decision record in memory/);
      const json = JSON.parse(io.stdoutText()) as SuggestJson;
      assert.equal(json.replay.denyToAllow.count, 0);
      assert.deepEqual(replayCounts(json.replay), replayCounts(await replayAgain(logPath, out)));
    });
  });

  describe('grouping, thresholds, --since, callers without identity', () => {
    const id = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
    let n = 0;
    const rec = (o: { principal?: string; ip?: string; service?: string; namespace?: string; dst: string; port: number; verdict: 'allow' | 'deny'; time: string; reason?: string }): DecisionRecord => {
      const r = transportRecord(
        {
          source: { ...(o.principal ? { principal: o.principal } : {}), ip: o.ip ?? '10.1.0.5', port: 40000 + n },
          destination: { ip: o.dst, port: o.port, ...(o.service ? { service: o.service, namespace: o.namespace ?? '' } : {}) },
        },
        'allowed',
        `r${n++}`,
        200,
      );
      const reason = o.reason ?? (o.verdict === 'allow' ? 'allowed' : 'no_allow_match');
      return { ...r, time: o.time, decision: o.verdict, reason: reason as DecisionRecord['reason'], status: o.verdict === 'allow' ? 200 : 401 };
    };
    const T1 = '2026-11-26T08:00:00.000Z';
    const T2 = '2026-11-26T10:00:00.000Z';
    const records: DecisionRecord[] = [
      // A service discovery recorded: grouped by namespace/service:port, whatever VIP was dialed.
      rec({ principal: id('checkout', 'cart'), service: 'shop.shop.svc.cluster.local', namespace: 'shop', dst: '10.96.0.10', port: 9090, verdict: 'allow', time: T1 }),
      rec({ principal: id('checkout', 'cart'), service: 'shop.shop.svc.cluster.local', namespace: 'shop', dst: '10.96.0.10', port: 9090, verdict: 'allow', time: T2 }),
      rec({ principal: id('checkout', 'pay'), service: 'shop.shop.svc.cluster.local', namespace: 'shop', dst: '10.96.0.10', port: 9090, verdict: 'allow', time: T2 }),
      rec({ principal: id('dev', 'web'), service: 'shop.shop.svc.cluster.local', namespace: 'shop', dst: '10.96.0.10', port: 9090, verdict: 'deny', reason: 'explicit_deny', time: T2 }),
      // No discovery: ip:port. One caller without identity (defaultAction ALLOW let it through).
      rec({ principal: id('prod', 'api'), dst: '10.0.2.9', port: 5432, verdict: 'allow', time: T2 }),
      rec({ ip: '10.1.7.7', dst: '10.0.2.9', port: 5432, verdict: 'allow', reason: 'default_allow', time: T2 }),
      rec({ ip: '10.1.7.7', dst: '10.0.2.9', port: 5432, verdict: 'allow', reason: 'default_allow', time: T2 }),
      // Only seen before --since.
      rec({ principal: id('batch', 'reporter'), dst: '10.0.2.9', port: 5432, verdict: 'allow', time: T1 }),
      // A destination nobody was allowed to reach: no policy, stays denied.
      rec({ principal: id('prod', 'api'), dst: '10.0.9.9', port: 22, verdict: 'deny', reason: 'default_deny', time: T2 }),
    ];
    let logPath: string;
    before(async () => {
      logPath = path.join(dir, 'small.jsonl');
      await writeFile(logPath, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    });

    it('one policy per destination, one rule per caller, named after it; addresses only without identity', () => {
      const acc = new SuggestAccumulator();
      for (const r of records) acc.add(r);
      const res = acc.result();
      assert.deepEqual(res.destinations.map((d) => [d.key, d.policy]), [
        ['10.0.2.9:5432', 'suggested-10.0.2.9-5432'],
        ['shop/shop.shop.svc.cluster.local:9090', 'suggested-shop-shop.shop.svc.cluster.local-9090'],
      ]);
      const [db, shop] = res.destinations;
      assert.deepEqual(db!.callers.map((c) => [c.principal || c.ip, c.count, c.rule]), [
        ['10.1.7.7', 2, 'addr-10-1-7-7'],
        [id('batch', 'reporter'), 1, 'batch-reporter'],
        [id('prod', 'api'), 1, 'prod-api'],
      ]);
      assert.deepEqual(shop!.callers.map((c) => [c.rule, c.count, c.firstSeen, c.lastSeen]), [
        ['checkout-cart', 2, T1, T2],
        ['checkout-pay', 1, T2, T2],
      ]);
      assert.equal(shop!.deniedOthers, 1);
      assert.equal(res.deniedUnsuggested, 1);
      const shopText = res.files.find((f) => f.path === `${shop!.policy}.yaml`)!.text;
      assert.match(shopText, /selector: destination\.namespace == "shop" && destination\.service == "shop\.shop\.svc\.cluster\.local" && destination\.port == 9090\n/);
      assert.match(shopText, /# service shop.shop.svc.cluster.local \(namespace shop\) port 9090: 3 allowed decision\(s\) from 2 caller\(s\), first seen 2026-11-26T08:00:00Z, last seen 2026-11-26T10:00:00Z\./);
      const dbText = res.files.find((f) => f.path === `${db!.policy}.yaml`)!.text;
      // With discovery in the log, the address policy leaves service traffic to the service's policy.
      assert.match(dbText, /selector: destination\.ip == "10\.0\.2\.9" && destination\.port == 5432 && destination\.service == ""\n/);
      // A caller without identity: its address, and no identity (the address alone would also allow an identity sharing it).
      assert.match(dbText, /- name: addr-10-1-7-7\n\s+when: source\.principal == "" && source\.ip == "10\.1\.7\.7"\n/);
      const shopTest = res.files.find((f) => f.path === `${shop!.policy}.test.yaml`)!.text;
      assert.match(shopTest, /spiffe:\/\/cluster\.local\/ns\/dev\/sa\/web is refused shop\/shop\.shop\.svc\.cluster\.local:9090 \(observed explicit_deny r3\)/);
    });

    it('the small log through the CLI: 0 new denies, exit 0, and the policy verbs pass', async () => {
      const out = path.join(dir, 'small-out');
      const { code, json } = await suggestJson([logPath], out);
      assert.equal(code, 0);
      assertReplaysLikeTheLog(json.replay, await expectedFrom(logPath));
      await assertPolicyVerbsPass(out);
      assert.deepEqual((await readdir(out)).sort(), [
        'suggested-10.0.2.9-5432.test.yaml', 'suggested-10.0.2.9-5432.yaml',
        'suggested-shop-shop.shop.svc.cluster.local-9090.test.yaml', 'suggested-shop-shop.shop.svc.cluster.local-9090.yaml',
      ]);
    });

    it('--min-count leaves rare callers out; their allows replay as new denies and --fail-on-new-denies exits 1', async () => {
      const { code, json, stderr } = await suggestJson([logPath], path.join(dir, 'min2'), ['--min-count', '2']);
      assert.equal(code, 1);
      assert.match(stderr, /3 decision\(s\) would flip from allow to deny under the suggested policies/);
      assert.deepEqual(json.suggestion.belowThreshold, { callers: 3, decisions: 3 });
      assert.equal(json.replay.allowToDeny.exact, 3);
      assert.deepEqual(json.replay.allowToDeny.byIdentity.map((g) => g.key).sort(), [id('batch', 'reporter'), id('checkout', 'pay'), id('prod', 'api')]);
      const dbText = await readFile(path.join(dir, 'min2', 'suggested-10.0.2.9-5432.yaml'), 'utf8');
      assert.match(dbText, /# 2 caller\(s\) seen fewer times than --min-count have no rule\./);
      assert.doesNotMatch(dbText, /prod-api/);
    });

    it('--since drops older records from both the suggestion and the replay', async () => {
      const { code, json } = await suggestJson([logPath], path.join(dir, 'since'), ['--since', '2026-11-26T09:00:00Z']);
      assert.equal(code, 0);
      const db = json.suggestion.destinations.find((d) => d.key === '10.0.2.9:5432')!;
      assert.deepEqual(db.callers.map((c) => c.rule), ['addr-10-1-7-7', 'prod-api']);
      const shop = json.suggestion.destinations.find((d) => d.key.startsWith('shop/'))!;
      assert.deepEqual(shop.callers.map((c) => [c.rule, c.count, c.firstSeen]), [['checkout-cart', 1, T2], ['checkout-pay', 1, T2]]);
      assert.equal(json.replay.decisions, records.length - 2);
      assert.equal(json.replay.allowToDeny.count, 0);
    });

    it('one read: stdin gives what the file gives', async () => {
      const fromFile = await suggestJson([logPath], path.join(dir, 'file-read'));
      const io = captureIo(await readFile(logPath));
      assert.equal(await runAuditSuggest(['-'], { out: path.join(dir, 'stdin-read'), format: 'json' }, io), 0, io.stderrText());
      const fromStdin = JSON.parse(io.stdoutText()) as SuggestJson;
      assert.deepEqual(fromStdin.suggestion, fromFile.json.suggestion);
      // The candidate's hash covers the file paths, which differ (another --out): the rest is equal.
      const counts = (r: ReplayResult) => ({ ...(replayCounts(r) as object), candidate: r.candidate.files.map((f) => path.basename(f)) });
      assert.deepEqual(counts(fromStdin.replay), counts(fromFile.json.replay));
      assert.equal(fromStdin.replay.decisions, records.length);
    });

    it('exit codes: 2 for a missing or non-empty --out, or a log without allowed traffic', async () => {
      const noOut = captureIo();
      assert.equal(await runAuditSuggest([logPath], { out: '' }, noOut), 2);
      assert.match(noOut.stderrText(), /needs --out DIR/);
      const denyOnly = path.join(dir, 'deny-only.jsonl');
      await writeFile(denyOnly, JSON.stringify(records[3]) + '\n');
      const none = captureIo();
      assert.equal(await runAuditSuggest([denyOnly], { out: path.join(dir, 'none') }, none), 2);
      assert.match(none.stderrText(), /no allowed traffic in 1 decision record\(s\): nothing to suggest/);
      const notEmpty = captureIo();
      assert.equal(await runAuditSuggest([logPath], { out: path.join(dir, 'small-out') }, notEmpty), 2);
      assert.match(notEmpty.stderrText(), /--out .*small-out is not empty/);
      const text = captureIo();
      assert.equal(await runAuditSuggest([logPath], { out: path.join(dir, 'text') }, text), 0);
      assert.match(text.stdoutText(), /^wrote 2 policies \(5 rules\) and their PolicyTests to /);
      assert.match(text.stdoutText(), /flips: 0 allow -> deny/);
    });
  });
});
