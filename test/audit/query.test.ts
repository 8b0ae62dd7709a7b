/**
 * `waygate audit query`: each filter as a table case over a generated log, the CEL `--where`
 * (type-checked before the scan, errors with a caret), the three output formats, CSV formula
 * neutralisation and --limit.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { AuditRecord, DecisionRecord } from '../../src/audit/record.ts';
import { compileDestination, csvField } from '../../src/audit/review/query.ts';
import { runAuditQuery, type QueryFlags } from '../../src/cli/audit.ts';
import { generateAuditLog } from '../helpers/audit-log.ts';
import { captureIo } from '../helpers/audit-io.ts';
import { TS_LOADER } from '../helpers/ts-loader.ts';

describe('audit query', () => {
  let dir: string;
  let file: string;
  let all: AuditRecord[];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'waygate-audit-query-'));
    const log = generateAuditLog({ decisions: 1500, seed: 3 });
    file = path.join(dir, 'audit.jsonl');
    await writeFile(file, log.text);
    all = log.text
      .split('\n')
      .flatMap((l) => {
        try {
          const v = JSON.parse(l) as AuditRecord;
          return v && (v as { schema?: unknown }).schema === 1 ? [v] : [];
        } catch {
          return [];
        }
      });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function query(flags: QueryFlags): Promise<{ code: number; records: AuditRecord[]; stderr: string }> {
    const io = captureIo();
    const code = await runAuditQuery([file], { format: 'jsonl', ...flags }, io);
    const out = io.stdoutText();
    return { code, records: out === '' ? [] : out.trimEnd().split('\n').map((l) => JSON.parse(l) as AuditRecord), stderr: io.stderrText() };
  }

  const decisions = () => all.filter((r): r is DecisionRecord => r.event === 'decision');
  const CASES: [string, QueryFlags, (r: AuditRecord) => boolean][] = [
    ['default: decision records only', {}, (r) => r.event === 'decision'],
    ['--decision deny', { decision: 'deny' }, (r) => r.event === 'decision' && r.decision === 'deny'],
    ['--reason list', { reason: ['explicit_deny,eval_error'] }, (r) => r.event === 'decision' && ['explicit_deny', 'eval_error'].includes(r.reason)],
    ['--principal glob across /', { principal: 'spiffe://cluster.local/ns/dev/*' }, (r) => r.event === 'decision' && r.source.principal.startsWith('spiffe://cluster.local/ns/dev/')],
    ['--principal "" = no identity', { principal: '' }, (r) => r.event === 'decision' && r.source.principal === ''],
    ['--namespace', { namespace: ['staging', 'batch'] }, (r) => r.event === 'decision' && ['staging', 'batch'].includes(r.source.namespace)],
    ['--policy matches AUDIT rules too', { policy: 'require-traceparent' }, (r) => r.event === 'decision' && r.audit.some((a) => a.policy === 'require-traceparent')],
    ['--policy matches dry-run', { policy: 'tighten-database', rule: 'only-prod-api' }, (r) => r.event === 'decision' && (r.dryRun?.matches ?? []).length > 0],
    ['--rule (deciding)', { rule: 'dev-namespace' }, (r) => r.event === 'decision' && r.rule === 'dev-namespace'],
    ['--destination ip:port', { destination: '10.0.2.9:5432' }, (r) => r.event === 'decision' && r.destination.authority === '10.0.2.9:5432'],
    ['--destination cidr', { destination: '10.0.1.0/24' }, (r) => r.event === 'decision' && r.destination.ip.startsWith('10.0.1.')],
    ['--destination cidr:port', { destination: '10.0.0.0/16:8443' }, (r) => r.event === 'decision' && r.destination.port === 8443],
    ['--event close --reason client_reset', { event: ['close'], reason: ['client_reset'] }, (r) => r.event === 'close' && r.closeReason === 'client_reset'],
    ['--event all', { event: ['all'] }, () => true],
    ['--where over nested fields', { where: 'decision == "deny" && source.port > 45000 && status == 401' }, (r) => r.event === 'decision' && r.decision === 'deny' && r.source.port > 45000 && r.status === 401],
    ['--where with a macro', { where: 'audit.exists(a, a.action == "AUDIT") && destination.port == 5432' }, (r) => r.event === 'decision' && r.audit.length > 0 && r.destination.port === 5432],
    ['--where on close records', { event: ['close'], where: 'bytesSent > 90000 && closeReason == "completed"' }, (r) => r.event === 'close' && r.bytesSent > 90000 && r.closeReason === 'completed'],
    ['--where on a timestamp', { where: 'timestamp < timestamp("2026-11-26T08:01:00Z")' }, (r) => r.event === 'decision' && Date.parse(r.time) < Date.parse('2026-11-26T08:01:00Z')],
    ['--since/--until RFC 3339', { since: '2026-11-26T08:01:00Z', until: '2026-11-26T08:02:00Z' }, (r) => r.event === 'decision' && r.time >= '2026-11-26T08:01:00' && r.time < '2026-11-26T08:02:00'],
  ];

  for (const [name, flags, expect] of CASES) {
    it(name, async () => {
      const { code, records } = await query(flags);
      assert.equal(code, 0);
      const expected = all.filter(expect);
      assert.ok(expected.length > 0, 'the case selects something');
      assert.deepEqual(records.map((r) => `${r.event}:${(r as DecisionRecord).decisionId ?? r.time}`), expected.map((r) => `${r.event}:${(r as DecisionRecord).decisionId ?? r.time}`));
    });
  }

  it('a typo in --where is a usage error with the position, before any input is read', async () => {
    const io = captureIo();
    const code = await runAuditQuery([path.join(dir, 'does-not-exist.jsonl')], { where: 'decison == "deny"' }, io);
    assert.equal(code, 2);
    assert.match(io.stderrText(), /Unknown variable: decison/);
    assert.match(io.stderrText(), /\n\s+\^/);
    const nonBool = captureIo();
    assert.equal(await runAuditQuery([file], { where: 'status + 1' }, nonBool), 2);
    assert.match(nonBool.stderrText(), /must be a bool/);
  });

  it('a typo in a nested field of --where is a usage error with the position and a suggestion (regression)', async () => {
    // source/destination/snapshot/connection were map<string, dyn>: the typo matched nothing, exit 0.
    const cases: [string, RegExp][] = [
      ['source.namespce == "dev"', /source has no field "namespce" \(line 1, column 8\) \(did you mean "namespace"\?\)/],
      ['destination.prot == 5432', /destination has no field "prot" .*did you mean "port"/],
      ['snapshot.hsah == "x"', /snapshot has no field "hsah" .*did you mean "hash"/],
      ['connection.tlsVersoin == "TLSv1.3"', /connection has no field "tlsVersoin" .*did you mean "tlsVersion"/],
      ['dryRun != null && dryRun.wouldChang', /dryRun has no field "wouldChang" .*did you mean "wouldChange"/],
      ['audit.exists(a, a.polcy == "x")', /a has no field "polcy" .*did you mean "policy"/],
      ['source.port == "8080"', /no such overload/],
    ];
    for (const [where, message] of cases) {
      const io = captureIo();
      const code = await runAuditQuery([path.join(dir, 'does-not-exist.jsonl')], { where }, io);
      assert.equal(code, 2, where);
      assert.match(io.stderrText(), message, where);
      assert.match(io.stderrText(), /\n>\s+1 \| .*\n\s+\^/, `${where}: caret snippet`);
    }
    // The typed fields still select what the dyn maps did.
    const { code, records } = await query({ where: 'source.namespace == "dev" && snapshot.version >= 1 && connection.tlsVersion != ""' });
    assert.equal(code, 0);
    assert.ok(records.length > 0);
    assert.deepEqual(records.map((r) => (r as DecisionRecord).decisionId), decisions().filter((r) => r.source.namespace === 'dev' && r.snapshot.version >= 1 && r.connection.tlsVersion !== '').map((r) => r.decisionId));
    const noDry = await query({ where: 'dryRun == null' });
    assert.equal(noDry.records.length, decisions().filter((r) => r.dryRun === null).length);
    const wouldChange = await query({ where: 'dryRun != null && dryRun.wouldChange' });
    assert.equal(wouldChange.records.length, decisions().filter((r) => r.dryRun?.wouldChange === true).length);
  });

  it('a --where that fails on every record it is applied to is a usage error with the first error (regression)', async () => {
    // No record carries an x-tenant header: the lookup fails on each one.
    const { code, records, stderr } = await query({ decision: 'deny', where: 'headers["x-tenant"] == "acme"' });
    assert.equal(code, 2);
    assert.equal(records.length, 0);
    const denies = decisions().filter((r) => r.decision === 'deny').length;
    assert.match(stderr, new RegExp(`--where failed to evaluate on every record it was applied to \\(${denies}\\): No such key: x-tenant`));
    // Records without a dry run fail, those with one evaluate: only a note, exit 0 (existing test below).
    const partly = await query({ where: 'dryRun.decision == "deny"' });
    assert.equal(partly.code, 0);
  });

  it('--reason, --decision and --event values outside their closed sets are usage errors with a suggestion (regression)', async () => {
    const cases: [QueryFlags, RegExp][] = [
      [{ reason: ['explict_deny'] }, /--reason "explict_deny": not one of the decision reasons \(did you mean "explicit_deny"\?\); expected one of allowed, default_allow, explicit_deny/],
      [{ reason: ['allowed,upstream_faild'] }, /--reason "upstream_faild".*did you mean "upstream_failed"/],
      [{ event: ['close'], reason: ['explicit_deny'] }, /--reason "explicit_deny": not one of the close reasons \(it is a decision reason: add --event decision\)/],
      [{ event: ['reload'], reason: ['rejectd'] }, /did you mean "rejected"/],
      [{ decision: 'alow' as 'allow' }, /--decision "alow": expected allow or deny \(did you mean "allow"\?\)/],
      [{ event: ['decisions'] }, /--event "decisions": expected decision, close, reload or all \(did you mean "decision"\?\)/],
    ];
    for (const [flags, message] of cases) {
      const io = captureIo();
      const code = await runAuditQuery([path.join(dir, 'does-not-exist.jsonl')], { format: 'jsonl', ...flags }, io);
      assert.equal(code, 2, JSON.stringify(flags));
      assert.match(io.stderrText(), message, JSON.stringify(flags));
      assert.equal(io.stdoutText(), '');
    }
    // Valid for one of the selected events: accepted (close reason upstream_failed, decision reason too).
    const ok = await query({ event: ['all'], reason: ['upstream_failed', 'applied'] });
    assert.equal(ok.code, 0);
    assert.ok(ok.records.length > 0);
  });

  it('the CLI exits 2 for a mistyped --reason and --decision (commander wiring)', async () => {
    const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '../..');
    const run = async (args: string[]) => {
      const child = spawn(process.execPath, [...TS_LOADER, 'test/helpers/audit-cli.ts', 'audit', 'query', file, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.stdout.resume();
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      return { code, err };
    };
    const reason = await run(['--reason', 'explict_deny']);
    assert.equal(reason.code, 2);
    assert.match(reason.err, /did you mean "explicit_deny"/);
    const decision = await run(['--decision', 'alow']);
    assert.equal(decision.code, 2);
    assert.match(decision.err, /did you mean "allow"/);
  });

  it('runtime errors in --where count as no match and are reported once', async () => {
    const { code, records, stderr } = await query({ where: 'dryRun.decision == "deny"' });
    assert.equal(code, 0);
    assert.equal(records.length, decisions().filter((r) => r.dryRun?.decision === 'deny').length);
    assert.match(stderr, /--where failed to evaluate on \d+ record\(s\)/);
  });

  it('--limit stops early; table and CSV formats', async () => {
    const limited = await query({ decision: 'deny', limit: 5 });
    assert.equal(limited.records.length, 5);
    assert.match(limited.stderr, /stopped after 5/);

    const table = captureIo();
    await runAuditQuery([file], { format: 'table', decision: 'deny', limit: 3 }, table);
    const lines = table.stdoutText().trimEnd().split('\n');
    assert.equal(lines.length, 5);
    assert.match(lines[0]!, /^time\s+event\s+decision\s+reason\s+principal/);

    const csv = captureIo();
    await runAuditQuery([file], { format: 'csv', reason: ['no_identity'], limit: 2 }, csv);
    const rows = csv.stdoutText().split('\r\n');
    assert.match(rows[0]!, /^time,event,decision,reason,status,principal,/);
    assert.equal(rows.length, 4);
    assert.match(rows[1]!, /,deny,no_identity,401,\(no identity\),/);
  });

  it('stops cleanly when the reader closes the pipe (`query | head -1`)', async () => {
    const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '../..');
    const big = path.join(dir, 'big.jsonl');
    await writeFile(big, generateAuditLog({ decisions: 60_000, anomalies: false }).text);
    const child = spawn(process.execPath, [...TS_LOADER, 'test/helpers/audit-cli.ts', 'audit', 'query', big, '--format', 'jsonl'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const first = await new Promise<string>((resolve) => child.stdout.once('data', (c: Buffer) => resolve(c.toString())));
    child.stdout.destroy(); // like `head -1` exiting
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, err);
    assert.equal(err, '');
    assert.match(first, /^\{"schema":1,"event":"decision"/);
  });

  it('CSV cells cannot become spreadsheet formulas and quote per RFC 4180', () => {
    assert.equal(csvField('=HYPERLINK("http://x")'), `"'=HYPERLINK(""http://x"")"`);
    assert.equal(csvField('+1'), "'+1");
    assert.equal(csvField('a,b'), '"a,b"');
    assert.equal(csvField('plain'), 'plain');
  });

  it('destination specs: v4, v6, brackets, CIDR, host:port; bad ones are usage errors', () => {
    const d = (ip: string, port: number, host = '') => ({ ip, port, host, authority: host ? `${host}:${port}` : `${ip}:${port}` });
    const table: [string, ReturnType<typeof d>, boolean][] = [
      ['10.0.0.5', d('10.0.0.5', 1), true],
      ['10.0.0.5:80', d('10.0.0.5', 81), false],
      ['[fd00::1]:443', d('fd00::1', 443), true],
      ['fd00::1', d('fd00::1', 9), true],
      ['fd00::/8', d('fd12::3', 9), true],
      ['fd00::/8', d('10.0.0.1', 9), false],
      ['10.0.0.0/8:53', d('10.9.9.9', 53), true],
      ['db.internal:5432', d('', 5432, 'db.internal'), true],
    ];
    for (const [spec, dest, want] of table) assert.equal(compileDestination(spec)(dest), want, spec);
    for (const bad of ['10.0.0.0/99', 'not a host', '1.2.3.4:99999']) assert.throws(() => compileDestination(bad), /--destination/);
  });
});

describe('--where over what a waypoint records (upstream, detail, protocol)', () => {
  it('selects by the upstream picked, the refusal detail and the close protocol; records without them read as empty', async () => {
    const { compileRecordPredicate } = await import('../../src/audit/review/record-cel.ts');
    const { text } = generateAuditLog({ decisions: 40, seed: 7, anomalies: false });
    const plain = text.trim().split('\n').map((l) => JSON.parse(l) as AuditRecord).find((r): r is DecisionRecord => r.event === 'decision')!;
    const viaHbone = { ...plain, upstream: { service: 'echo.shop.svc.cluster.local', workload: 'shop/echo-2', address: '10.244.1.8:8080', protocol: 'hbone' as const, principal: 'spiffe://cluster.local/ns/shop/sa/echo', reused: true, connectMs: 2 } };
    const refused = { ...plain, reason: 'upstream_failed' as const, status: 503, detail: 'identity mismatch: 10.244.1.9:15008 presented spiffe://cluster.local/ns/shop/sa/other, expected spiffe://cluster.local/ns/shop/sa/echo' };
    const close = { schema: 1, event: 'close', time: plain.time, decisionId: 'd', connectionId: 'c', streamId: 1, source: plain.source, destination: plain.destination, bytesSent: 1, bytesReceived: 1, durationMs: 1, closeReason: 'completed', protocol: 'hbone' } as AuditRecord;
    const table: [string, AuditRecord, boolean][] = [
      ['upstream.protocol == "hbone" && upstream.reused', viaHbone, true],
      ['upstream.workload.startsWith("shop/")', viaHbone, true],
      ['upstream.protocol == ""', plain, true],
      ['detail.contains("identity mismatch")', refused, true],
      ['detail.contains("identity mismatch")', plain, false],
      ['protocol == "hbone"', close, true],
      ['protocol == "hbone"', plain, false],
    ];
    for (const [where, record, want] of table) assert.equal(compileRecordPredicate(where).test(record), want, where);
    assert.throws(() => compileRecordPredicate('upstream.protocl == "hbone"'), /did you mean "protocol"/);
  });
});
