/**
 * `waygate audit summary` on a generated log holding every reason code, AUDIT and dry-run matches,
 * close records, malformed lines and an unknown schema version, checked against the generator's
 * ground truth; plus --policies (rules that never fired), --since/--until, and the three formats.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ALL_REASONS, type DryRunOutcome, type Reason, type Verdict } from '../../src/policy/decision.ts';
import type { DecisionRecord } from '../../src/audit/record.ts';
import { newReadStats } from '../../src/audit/review/reader.ts';
import { SummaryAccumulator, type AuditSummary } from '../../src/audit/review/summary.ts';
import { runAuditSummary } from '../../src/cli/audit.ts';
import { generateAuditLog, type GroundTruth } from '../helpers/audit-log.ts';
import { captureIo } from '../helpers/audit-io.ts';
import { transportRecord } from '../helpers/audit-records.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/audit');

describe('audit summary', () => {
  let dir: string;
  let file: string;
  let truth: GroundTruth;
  let summary: AuditSummary;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-audit-summary-'));
    const log = generateAuditLog({ decisions: 4000, seed: 11 });
    truth = log.truth;
    file = path.join(dir, 'audit.jsonl');
    await writeFile(file, log.text);
    const io = captureIo();
    assert.equal(await runAuditSummary([file], { format: 'json', top: 50 }, io), 0);
    summary = JSON.parse(io.stdoutText()) as AuditSummary;
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the generated log contains every reason code (the test covers them all)', () => {
    for (const r of ALL_REASONS) assert.ok((truth.byReason[r] ?? 0) > 0, `generator produced no ${r}`);
  });

  it('totals by event, decision and reason equal what was written', () => {
    assert.deepEqual(summary.events, { decision: truth.decisions, close: truth.closes, reload: truth.reloads });
    assert.deepEqual(summary.decisions, { total: truth.decisions, allow: truth.allow, deny: truth.deny });
    for (const r of ALL_REASONS) {
      assert.equal(summary.reasons.find((x) => x.reason === r)?.count, truth.byReason[r], r);
    }
  });

  it('top denied identities are exact counts in descending order', () => {
    const expected = Object.entries(truth.deniedByPrincipal).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    assert.deepEqual(summary.topDenied.principals.map((e) => [e.key, e.count]), expected);
    assert.equal(summary.topDenied.approximate, false);
    assert.ok(summary.topDenied.namespaces.some((e) => e.key === '(no identity)'));
  });

  it('AUDIT matches, dry-run would-deny counts, close bytes and durations', () => {
    const audit = summary.rules.find((r) => r.policy === 'require-traceparent' && r.rule === 'missing-traceparent')!;
    assert.equal(audit.audit, truth.auditMatches['require-traceparent/missing-traceparent']);
    assert.equal(audit.action, 'AUDIT');
    assert.equal(summary.dryRun.wouldDeny, truth.dryRunWouldDeny);
    assert.equal(summary.dryRun.byPolicy.find((p) => p.policy === 'tighten-database')!.wouldDeny, truth.dryRunWouldDeny);
    assert.equal(summary.closes.count, truth.closes);
    assert.equal(summary.closes.bytesSent, truth.bytesSent);
    assert.equal(summary.closes.bytesReceived, truth.bytesReceived);
    const d = summary.closes.durationMs;
    assert.ok(d.p50! > 0 && d.p50! <= d.p95! && d.p95! <= d.max!);
    const evalErr = summary.rules.find((r) => r.rule === 'tenant-header')!;
    assert.equal(evalErr.evalErrors, truth.byReason.eval_error);
  });

  it('dry-run impact is counted against the policy verdict, not the transport\'s final decision', () => {
    // Regression: 8 destination_not_allowed records (policy allowed, transport denied) whose dry-run
    // also allows (wouldChange false) were reported as "8 would be allowed".
    const dry = (decision: Verdict, wouldChange: boolean | undefined): DryRunOutcome => {
      const d = { decision, reason: decision === 'deny' ? 'explicit_deny' : 'allowed', policy: 'tighten', rule: 'r', matches: [] } as Omit<DryRunOutcome, 'wouldChange'>;
      return (wouldChange === undefined ? d : { ...d, wouldChange }) as DryRunOutcome;
    };
    const rec = (i: number, reason: Reason, decision: Verdict, dryRun: DryRunOutcome): DecisionRecord => ({
      ...transportRecord({ source: { principal: 'spiffe://cluster.local/ns/prod/sa/api', ip: '10.1.0.5', port: i }, destination: { ip: '10.0.2.9', port: 5432 }, now: '2026-11-26T09:00:00Z' }, reason, `d${i}`, 401),
      decision,
      dryRun,
    });
    const acc = new SummaryAccumulator();
    const cases: [Reason, Verdict, DryRunOutcome, number][] = [
      ['destination_not_allowed', 'deny', dry('allow', false), 8], // policy allow, dry-run allow: no change
      ['destination_not_allowed', 'deny', dry('allow', undefined), 2], // no wouldChange field: policy verdict is allow
      ['upstream_failed', 'allow', dry('deny', true), 3], // the dry-run would deny what policy allowed
      ['no_allow_match', 'deny', dry('allow', true), 5], // the dry-run would allow a policy deny
      ['allowed', 'allow', dry('deny', undefined), 4], // older record without wouldChange
    ];
    let n = 0;
    for (const [reason, decision, d, count] of cases) for (let i = 0; i < count; i++) acc.add(rec(n++, reason, decision, d));
    const s = acc.result(newReadStats());
    assert.equal(s.dryRun.evaluated, 22);
    assert.equal(s.dryRun.wouldDeny, 7);
    assert.equal(s.dryRun.wouldAllow, 5);
    assert.deepEqual(s.dryRun.byPolicy.map((p) => [p.policy, p.wouldDeny, p.wouldAllow]), [['tighten', 7, 5]]);
  });

  it('malformed lines and unknown schema versions are counted with file:line', () => {
    assert.equal(summary.input.malformed, truth.malformedLines.length);
    assert.equal(summary.input.unknownSchema, truth.unknownSchemaLines.length);
    assert.deepEqual(summary.input.issues.map((i) => `${path.basename(i.file)}:${i.line}`).sort(),
      [...truth.malformedLines, ...truth.unknownSchemaLines].map((l) => `audit.jsonl:${l}`).sort());
  });

  it('the time histogram covers every decision in bounded, contiguous buckets', () => {
    const t = summary.timeline;
    assert.ok(t.buckets.length > 1 && t.buckets.length <= 60);
    assert.equal(t.buckets.reduce((s, b) => s + b.allow + b.deny, 0), truth.decisions);
    for (let i = 1; i < t.buckets.length; i++) assert.equal(t.buckets[i]!.startMs - t.buckets[i - 1]!.startMs, t.bucketMs);
  });

  it('--policies lists rules of the set that never fired and flags recorded rules not in the set', async () => {
    const io = captureIo();
    assert.equal(await runAuditSummary([file], { format: 'json', policies: [path.join(FIXTURES, 'policies-a')] }, io), 0);
    const s = JSON.parse(io.stdoutText()) as AuditSummary;
    // Of policies-a's rules only deny-dev/dev-namespace appears in the generated log.
    assert.deepEqual(
      s.neverFired!.map((r) => `${r.policy}/${r.rule}`).sort(),
      ['api-allow/frontend', 'api-allow/worker', 'db-allow/api', 'db-allow/reporter', 'db-audit/every-db-connection', 'tenant-dry-run/missing-tenant'],
    );
    assert.equal(s.neverFired!.find((r) => r.policy === 'tenant-dry-run')!.mode, 'DryRun');
    assert.equal(s.rules.find((r) => r.policy === 'deny-dev')!.inPolicySet, true);
    assert.equal(s.rules.find((r) => r.policy === 'api-from-frontend')!.inPolicySet, false);
  });

  it('--since/--until keep only records inside the window', async () => {
    const since = summary.timeline.buckets[1]!.start;
    const until = summary.timeline.buckets[3]!.start;
    const io = captureIo();
    assert.equal(await runAuditSummary([file], { format: 'json', since, until }, io), 0);
    const s = JSON.parse(io.stdoutText()) as AuditSummary;
    const expected = summary.timeline.buckets.slice(1, 3).reduce((n, b) => n + b.allow + b.deny, 0);
    assert.equal(s.decisions.total, expected);
    assert.ok(s.input.outsideWindow > 0);
    // A relative window against an injected clock: the last hour before the log's end.
    const io2 = captureIo('', { now: Date.parse(summary.window.last!) + 1 });
    assert.equal(await runAuditSummary([file], { format: 'json', since: '100000h' }, io2), 0);
    assert.equal((JSON.parse(io2.stdoutText()) as AuditSummary).decisions.total, truth.decisions);
    const bad = captureIo();
    assert.equal(await runAuditSummary([file], { since: 'yesterday' }, bad), 2);
    assert.match(bad.stderrText(), /--since "yesterday": expected a duration/);
  });

  it('draws a progress bar on stderr only when stderr is a terminal, and erases it', async () => {
    const tty = captureIo('', { stderrIsTTY: true });
    assert.equal(await runAuditSummary([file], { format: 'json' }, tty), 0);
    assert.match(tty.stderrText(), /\[#*-*\]\s+\d+% .* records/);
    assert.ok(tty.stderrText().endsWith('\r\u001b[2K'));
    const pipe = captureIo();
    assert.equal(await runAuditSummary([file], { format: 'json' }, pipe), 0);
    assert.equal(pipe.stderrText(), '');
  });

  it('text and markdown output carry the same sections; markdown escapes attacker text', async () => {
    const text = captureIo();
    await runAuditSummary([file], {}, text);
    for (const h of ['Decisions', 'Reasons', 'Top denied identities', 'Rule hits', 'Dry-run impact', 'Closed tunnels', 'Decisions over time', 'Skipped lines']) {
      assert.match(text.stdoutText(), new RegExp(`== ${h}`));
    }
    const evil = JSON.stringify({
      ...JSON.parse(generateAuditLog({ decisions: 1, anomalies: false }).text.split('\n')[1]!),
      decision: 'deny',
      reason: 'no_allow_match',
      source: { principal: 'spiffe://x/ns/a|b/sa/<img src=x onerror=alert(1)>\u001b[31m', trustDomain: 'x', namespace: 'a', serviceAccount: 'b', ip: '1.2.3.4', port: 1 },
    });
    const md = captureIo(evil + '\n');
    await runAuditSummary(['-'], { format: 'markdown' }, md);
    const out = md.stdoutText();
    assert.ok(!out.includes('<img'), 'no raw HTML in markdown');
    assert.ok(out.includes('&lt;img src=x onerror=alert(1)&gt;'));
    assert.ok(out.includes('a\\|b'), 'pipes escaped inside table cells');
    assert.ok(!out.includes('\u001b'), 'no terminal escape sequences');
  });
});

describe('an input without a single audit record', () => {
  it('is one headline and exit 2 for every review verb, not a report of zeros; operational log lines are counted, not listed', async () => {
    const { runAuditSummary, runAuditQuery, runAuditReplay } = await import('../../src/cli/audit.ts');
    const { captureIo } = await import('../helpers/audit-io.ts');
    const policies = fileURLToPath(new URL('../../policies', import.meta.url));
    const opsOnly = ['{"level":30,"time":1,"name":"waygate","msg":"listening"}', '{"level":40,"time":2,"name":"waygate","msg":"TLS handshake failed"}', ''].join('\n');
    const cases: [string, string, (io: ReturnType<typeof captureIo>) => Promise<number>][] = [
      ['summary, empty input', '', (io) => runAuditSummary(['-'], {}, io)],
      ['summary, only operational log lines', opsOnly, (io) => runAuditSummary(['-'], {}, io)],
      ['query, only operational log lines', opsOnly, (io) => runAuditQuery(['-'], { format: 'csv' }, io)],
      ['replay, empty input', '', (io) => runAuditReplay(['-'], { policies: [policies] }, io)],
    ];
    for (const [name, input, run] of cases) {
      const io = captureIo(input);
      assert.equal(await run(io), 2, name);
      assert.equal(io.stdoutText(), '', `${name}: nothing on stdout`);
      const err = io.stderrText().trim().split('\n');
      assert.equal(err.length, 1, `${name}: one line: ${io.stderrText()}`);
      assert.match(err[0]!, /^waygate audit: no audit records in 1 input\(s\)/, name);
      if (input === opsOnly) assert.match(err[0]!, /\(2 line\(s\): 2 operational log line\(s\)\)/, name);
    }
  });
});
