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
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/audit-cli.ts', 'audit', 'query', big, '--format', 'jsonl'], {
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
