import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { colourEnabled, formatDiagnosticLine, styleFor } from '../../src/cli/output.ts';
import { runCli, type CliRun } from '../helpers/cli.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const POLICIES = join(ROOT, 'policies');

/** Runs `waygate <args>` in-process; returns the exit code and what the verb wrote. */
function waygate(...args: string[]): Promise<CliRun> {
  return runCli(args);
}

const POLICY = `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: api
spec:
  action: ALLOW
  selector: destination.port == 8080
  rules:
    - name: frontend
      when: source.principal == "spiffe://cluster.local/ns/prod/sa/frontend"
`;

const TESTS = `apiVersion: waygate.dev/v1alpha1
kind: PolicyTest
metadata:
  name: api-tests
spec:
  cases:
    - name: frontend
      input:
        source: { principal: "spiffe://cluster.local/ns/prod/sa/frontend" }
        destination: { port: 8080 }
      expect: { decision: allow, rule: frontend }
`;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'waygate-policy-cli-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function fixture(name: string, files: Record<string, string>): Promise<string> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  for (const [file, text] of Object.entries(files)) await writeFile(join(d, file), text);
  return d;
}

describe('waygate policy check', () => {
  it('exits 0 on the example policies and summarises them', async () => {
    const r = await waygate('policy', 'check', POLICIES);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^ok: \d+ policies \(\d+ rules\) and \d+ tests in \d+ files: 0 errors, 0 warnings$/m);
  });

  it('exits 2 on a typo and prints file:line:col, code and field path', async () => {
    const d = await fixture('typo', { 'p.yaml': POLICY.replace('source.principal', 'source.principl') });
    const r = await waygate('policy', 'check', d);
    assert.equal(r.code, 2);
    assert.match(r.stdout, new RegExp(`^${escape(join(d, 'p.yaml'))}:10:\\d+: error WG_POLICY_CEL at spec\\.rules\\[0\\]\\.when: .*principl`, 'm'));
    assert.match(r.stdout, /did you mean "principal"/);
  });

  it('still lints the documents that parsed when the set does not compile', async () => {
    const auditDryRun = `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: db-audit
spec:
  action: AUDIT
  mode: DryRun
  rules:
    - name: db
      when: destination.port == 5432
`;
    const d = await fixture('typo-and-lint', { 'a.yaml': auditDryRun, 'p.yaml': POLICY.replace('source.principal', 'source.principl') });
    const r = await waygate('policy', 'check', d, '--format', 'json');
    assert.equal(r.code, 2);
    const json = JSON.parse(r.stdout) as { errors: { code: string }[]; warnings: { code: string; file: string }[] };
    assert.deepEqual(json.errors.map((e) => e.code), ['WG_POLICY_CEL']);
    assert.deepEqual(json.warnings.map((w) => w.code), ['WG_LINT_AUDIT_DRYRUN']);
    assert.equal(json.warnings[0]!.file, join(d, 'a.yaml'));
  });

  it('exits 1 on a lint error, 0 with warnings unless --strict; JSON lists both', async () => {
    const lockdown = `apiVersion: waygate.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: lockdown
spec:
  action: DENY
  rules:
    - name: everything
      when: "true"
`;
    const d = await fixture('lint', { 'a.yaml': lockdown, 'b.yaml': POLICY });
    const r = await waygate('policy', 'check', d, '--format', 'json');
    assert.equal(r.code, 1);
    const json = JSON.parse(r.stdout) as { ok: boolean; errors: { code: string; line: number }[]; warnings: { code: string }[] };
    assert.equal(json.ok, false);
    assert.deepEqual(json.errors.map((e) => `${e.code}@${e.line}`), ['WG_LINT_UNREACHABLE@9']);
    assert.deepEqual(json.warnings.map((e) => e.code), ['WG_LINT_DENY_ALL']);

    const warnOnly = await fixture('warn', { 'a.yaml': POLICY.replace('name: api', 'name: audit').replace('ALLOW', 'AUDIT').replace('  selector: destination.port == 8080\n', '  mode: DryRun\n') });
    const ok = await waygate('policy', 'check', warnOnly);
    assert.equal(ok.code, 0, ok.stdout);
    assert.match(ok.stdout, /warning WG_LINT_AUDIT_DRYRUN at spec\.mode/);
    const strict = await waygate('policy', 'check', '--strict', warnOnly);
    assert.equal(strict.code, 1);
  });

  // A torn file is an error, and in-place editing is pointed out.
  it('exits 2 on an empty policy file; warns about editor swap files (--strict fails on them)', async () => {
    const torn = await fixture('torn', { 'a.yaml': POLICY, 'deny.yaml': '' });
    const r = await waygate('policy', 'check', torn);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /deny\.yaml:1:1.*error WG_POLICY_EMPTY|error WG_POLICY_EMPTY.*deny\.yaml/);

    const editing = await fixture('editing', { 'a.yaml': POLICY, '.a.yaml.swp': 'vim swap' });
    const ok = await waygate('policy', 'check', editing, '--format', 'json');
    assert.equal(ok.code, 0, ok.stdout);
    const json = JSON.parse(ok.stdout) as { warnings: { code: string; file: string }[] };
    assert.deepEqual(json.warnings.map((w) => [w.code, w.file]), [['WG_POLICY_UNSAFE_UPDATE', join(editing, '.a.yaml.swp')]]);
    assert.equal((await waygate('policy', 'check', '--strict', editing)).code, 1);
  });

  it('exits 2 when a path cannot be read', async () => {
    const r = await waygate('policy', 'check', join(dir, 'does-not-exist'));
    assert.equal(r.code, 2);
    assert.match(r.stdout, /error WG_POLICY_IO/);
  });

  it('exits 2 on a bad flag value', async () => {
    const r = await waygate('policy', 'check', POLICIES, '--format', 'xml');
    assert.equal(r.code, 2);
  });
});

describe('waygate policy check on another system\'s policy (issue 19 item 10)', () => {
  const ISTIO = (apiVersion: string) => `apiVersion: ${apiVersion}
kind: AuthorizationPolicy
metadata:
  name: allow-frontend
  namespace: prod
spec:
  selector:
    matchLabels: { app: api }
  action: ALLOW
  rules:
    - from:
        - source:
            principals: ["cluster.local/ns/prod/sa/frontend"]
      to:
        - operation:
            ports: ["8080"]
`;
  const NETWORK_POLICY = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db
  namespace: prod
spec:
  podSelector: { matchLabels: { app: db } }
  ingress:
    - from: [{ ipBlock: { cidr: 10.0.0.0/8 } }]
      ports: [{ port: 5432 }]
`;

  for (const apiVersion of ['security.istio.io/v1', 'security.istio.io/v1beta1']) {
    it(`an Istio AuthorizationPolicy (${apiVersion}) is one error saying what it is and naming the import command`, async () => {
      const d = await fixture(`istio-${apiVersion.replace(/\W/g, '-')}`, { 'ap.yaml': ISTIO(apiVersion) });
      const r = await waygate('policy', 'check', '--format', 'json', d);
      assert.equal(r.code, 2);
      const out = JSON.parse(r.stdout) as { errors: { line: number; col: number; path: string; message: string }[] };
      assert.equal(out.errors.length, 1, r.stdout);
      const [e] = out.errors;
      assert.deepEqual([e!.line, e!.col, e!.path], [1, 13, 'apiVersion']);
      assert.match(e!.message, new RegExp(`^this is an Istio AuthorizationPolicy \\(${escape(apiVersion)}\\), not a waygate policy`));
      assert.match(e!.message, /Translate it with `waygate policy import istio FILE\|DIR --out DIR`/);
    });
  }

  it('a Kubernetes NetworkPolicy is one error too; a waygate policy in the same file is still checked', async () => {
    const d = await fixture('networkpolicy', { 'np.yaml': NETWORK_POLICY + '---\n' + POLICY.replace('name: api', 'name: API') });
    const r = await waygate('policy', 'check', d);
    assert.equal(r.code, 2);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 3, r.stdout);
    assert.match(lines[0]!, /np\.yaml:1:13: error WG_POLICY_SCHEMA at apiVersion: this is a Kubernetes NetworkPolicy \(networking\.k8s\.io\/v1\)/);
    assert.match(lines[0]!, /Translate its ingress rules with `waygate policy import networkpolicy FILE\|DIR --out DIR`/);
    assert.match(lines[1]!, /np\.yaml:15:\d+: error WG_POLICY_SCHEMA at metadata\.name: /);
    assert.match(lines[2]!, /^failed: the policy set does not load: 2 errors/);
  });

  it('another kind under security.istio.io is still the ordinary schema error', async () => {
    const d = await fixture('istio-peerauth', { 'pa.yaml': 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: p }\nspec: {}\n' });
    const r = await waygate('policy', 'check', d);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /unsupported apiVersion "security\.istio\.io\/v1"/);
  });
});

describe('waygate policy test', () => {
  it('passes on the example policies with 100% rule coverage', async () => {
    const r = await waygate('policy', 'test', POLICIES, '--coverage', '--threshold', '100');
    assert.equal(r.code, 0, r.stdout);
    assert.doesNotMatch(r.stdout, /^FAIL/m);
    assert.match(r.stdout, /\d+ cases: \d+ passed, 0 failed; rule coverage (\d+)\/\1 \(100%\)/);
    assert.match(r.stdout, /every rule was reached by some case/);
  });

  it('exits 1 on a failing case and shows the field diff', async () => {
    const d = await fixture('failing', {
      'p.yaml': POLICY,
      'p.test.yaml': TESTS.replace('expect: { decision: allow, rule: frontend }', 'expect: { decision: deny, reason: no_allow_match, rule: frontend }'),
    });
    const r = await waygate('policy', 'test', d);
    assert.equal(r.code, 1);
    assert.match(r.stdout, new RegExp(`^FAIL api-tests > frontend  \\(${escape(join(d, 'p.test.yaml'))}:7:7\\)$`, 'm'));
    assert.match(r.stdout, /^ {4}decision: expected deny, got allow$/m);
    assert.match(r.stdout, /^ {4}reason: {3}expected no_allow_match, got allowed$/m);
    assert.match(r.stdout, /1 case: 0 passed, 1 failed/);

    const json = JSON.parse((await waygate('policy', 'test', d, '--format', 'json')).stdout) as {
      ok: boolean;
      cases: { diffs: { field: string; expected: unknown; actual: unknown }[] }[];
    };
    assert.equal(json.ok, false);
    assert.deepEqual(json.cases[0]!.diffs, [
      { field: 'decision', expected: 'deny', actual: 'allow' },
      { field: 'reason', expected: 'no_allow_match', actual: 'allowed' },
    ]);
  });

  it('exits 1 when coverage is below --threshold and lists the unreached rules', async () => {
    const two = POLICY + `    - name: admin
      when: source.serviceAccount == "admin"
`;
    const d = await fixture('coverage', { 'p.yaml': two, 'p.test.yaml': TESTS });
    const pass = await waygate('policy', 'test', d, '--threshold', '50');
    assert.equal(pass.code, 0, pass.stdout);
    // Unreached rules are always named (docs/design.md §3), with or without --coverage.
    assert.match(pass.stdout, /^rules no case reached:\n  api\/admin \(ALLOW\)/m);
    assert.doesNotMatch(pass.stdout, /cases reaching each rule/);
    const table = await waygate('policy', 'test', d, '--coverage');
    assert.match(table.stdout, /^cases reaching each rule:\n  1  api\/frontend \(ALLOW\)  .*\n  0  api\/admin \(ALLOW\)/m);
    const r = await waygate('policy', 'test', d, '--threshold', '75');
    assert.equal(r.code, 1);
    assert.match(r.stdout, /coverage 50% is below the threshold of 75%/);
    assert.match(r.stdout, new RegExp(`^  api/admin \\(ALLOW\\)  ${escape(join(d, 'p.yaml'))}:11:7$`, 'm'));
  });

  it('exits 1 when the paths hold no PolicyTest cases', async () => {
    const d = await fixture('no-tests', { 'p.yaml': POLICY });
    const r = await waygate('policy', 'test', d);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /no PolicyTest cases found/);
  });

  it('exits 2 on a threshold that is not a percentage', async () => {
    const r = await waygate('policy', 'test', POLICIES, '--threshold', '120');
    assert.equal(r.code, 2);
  });
});

describe('waygate policy eval', () => {
  it('exits 0 on allow and --explain shows every policy, rule and sub-expression value', async () => {
    const input = join(dir, 'frontend.yaml');
    await writeFile(input, 'source: { principal: "spiffe://cluster.local/ns/prod/sa/frontend", ip: 127.0.0.1 }\ndestination: { ip: 127.0.0.1, port: 8080 }\n');
    const r = await waygate('policy', 'eval', '--input', input, '--explain', POLICIES);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^decision: allow \(allowed\) by api-from-frontend\/frontend$/m);
    assert.match(r.stdout, /^ {2}rule frontend: MATCH/m);
    assert.match(r.stdout, /source\.principal {2}=> {2}"spiffe:\/\/cluster\.local\/ns\/prod\/sa\/frontend"/);
    assert.match(r.stdout, /^policy deny-dev \(DENY, Enforce\)/m);
    assert.match(r.stdout, /source\.namespace {2}=> {2}"prod"/);
    assert.match(r.stdout, /dry-run: would deny .*require-traceparent\/untraced/);
  });

  it('exits 3 on deny (JSON input); JSON output carries the decision', async () => {
    const input = join(dir, 'dev.json');
    await writeFile(input, JSON.stringify({ source: { principal: 'spiffe://cluster.local/ns/dev/sa/x' }, destination: { ip: '127.0.0.1', port: 8080 } }));
    const text = await waygate('policy', 'eval', '-i', input, POLICIES);
    assert.equal(text.code, 3);
    assert.match(text.stdout, /^deny \(explicit_deny\) by deny-dev\/dev-namespace$/m);
    const r = await waygate('policy', 'eval', '-i', input, '--format', 'json', '--explain', POLICIES);
    assert.equal(r.code, 3);
    const json = JSON.parse(r.stdout) as { decision: { decision: string; reason: string; rule: string }; explanation: { policies: unknown[] } };
    assert.equal(json.decision.decision, 'deny');
    assert.equal(json.decision.reason, 'explicit_deny');
    assert.equal(json.decision.rule, 'dev-namespace');
    assert.ok(json.explanation.policies.length > 0);
  });

  it('--default-action ALLOW turns an unselected tunnel into default_allow', async () => {
    const input = join(dir, 'unselected.yaml');
    await writeFile(input, 'source: { principal: "spiffe://cluster.local/ns/prod/sa/batch" }\ndestination: { port: 3000 }\n');
    assert.equal((await waygate('policy', 'eval', '-i', input, POLICIES)).code, 3);
    const r = await waygate('policy', 'eval', '-i', input, '--default-action', 'ALLOW', POLICIES);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^allow \(default_allow\)$/m);
  });

  it('exits 2 on input with an unknown field, naming it', async () => {
    const input = join(dir, 'bad.yaml');
    await writeFile(input, 'source: { principle: "spiffe://cluster.local/ns/prod/sa/frontend" }\n');
    const r = await waygate('policy', 'eval', '-i', input, POLICIES);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /source\.principle/);
  });

  it('reads the input from stdin with -i - (real process, real exit code)', async () => {
    const child = spawn(process.execPath, ['bin/waygate.js', 'policy', 'eval', '-i', '-', 'policies/'], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stdin.end('{"source": {"principal": "spiffe://cluster.local/ns/dev/sa/x"}, "destination": {"port": 8080}}');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 3, out);
    assert.match(out, /^deny \(explicit_deny\) by deny-dev\/dev-namespace$/m);
  });
});

describe('waygate policy fmt', () => {
  it('--check passes on the example policies', async () => {
    const r = await waygate('policy', 'fmt', '--check', POLICIES);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
  });

  it('--check exits 1 and names an unformatted file; -w fixes it; plain prints it', async () => {
    const messy = POLICY.replace('  action: ALLOW\n  selector: destination.port == 8080\n', '  selector: destination.port == 8080\n  action:    ALLOW\n');
    const d = await fixture('fmt', { 'p.yaml': messy });
    const file = join(d, 'p.yaml');
    const check = await waygate('policy', 'fmt', '--check', d);
    assert.equal(check.code, 1);
    assert.equal(check.stdout, `would reformat ${file}\n`);

    const printed = await waygate('policy', 'fmt', file);
    assert.equal(printed.code, 0);
    assert.equal(printed.stdout, POLICY);
    assert.equal(await readFile(file, 'utf8'), messy, 'printing leaves the file alone');

    const write = await waygate('policy', 'fmt', '-w', d);
    assert.equal(write.code, 0);
    assert.equal(await readFile(file, 'utf8'), POLICY);
    assert.equal((await waygate('policy', 'fmt', '--check', d)).code, 0);
  });

  it('--diff prints a unified diff that patch -p0 applies, exits 1; nothing and exit 0 once formatted', async () => {
    const messy = POLICY.replace('  action: ALLOW\n  selector: destination.port == 8080\n', '  selector: destination.port == 8080\n  action:    ALLOW\n')
      .replace('metadata:\n  name: api\n', 'metadata: {name: api}\n')
      .replace(/\n$/, ''); // and no newline at the end
    const d = await fixture('fmt-diff', { 'p.yaml': messy });
    const file = join(d, 'p.yaml');
    const r = await waygate('policy', 'fmt', '--diff', file);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, new RegExp(`^--- ${escape(file)}\n\\+\\+\\+ ${escape(file)}\n@@ -1,\\d+ \\+1,\\d+ @@\n`));
    assert.match(r.stdout, /^-  action: {4}ALLOW$/m);
    assert.match(r.stdout, /^\+  action: ALLOW$/m);
    assert.match(r.stdout, /^\\ No newline at end of file$/m);
    assert.equal(await readFile(file, 'utf8'), messy, '--diff leaves the file alone');
    // The diff is exactly what fmt would write: applying it gives fmt's output.
    const formatted = (await waygate('policy', 'fmt', file)).stdout;
    assert.match(formatted, /^metadata: \{ name: api \}$/m);
    const patched = spawnSync('patch', ['-p0', '--no-backup-if-mismatch', '-s'], { cwd: '/', input: r.stdout, encoding: 'utf8' });
    assert.equal(patched.status, 0, patched.stderr + patched.stdout);
    assert.equal(await readFile(file, 'utf8'), formatted);
    const clean = await waygate('policy', 'fmt', '--diff', d);
    assert.deepEqual([clean.code, clean.stdout], [0, '']);
    assert.equal((await waygate('policy', 'fmt', '--diff', POLICIES)).code, 0);
    assert.equal((await waygate('policy', 'fmt', '--diff', '-w', d)).code, 2);
    assert.equal((await waygate('policy', 'fmt', '--diff', '--check', d)).code, 2);
  });

  it('exits 2 on a YAML syntax error and when -w and --check are combined', async () => {
    const d = await fixture('fmt-broken', { 'p.yaml': 'spec: [unclosed\n' });
    const r = await waygate('policy', 'fmt', '--check', d);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /p\.yaml:\d+:\d+/);
    assert.equal((await waygate('policy', 'fmt', '-w', '--check', POLICIES)).code, 2);
  });
});

describe('CLI output helpers', () => {
  it('colours only a TTY, and never with NO_COLOR set', () => {
    assert.equal(colourEnabled({ write: () => true, isTTY: true }, {}), true);
    assert.equal(colourEnabled({ write: () => true, isTTY: true }, { NO_COLOR: '1' }), false);
    assert.equal(colourEnabled({ write: () => true, isTTY: true }, { NO_COLOR: '' }), true);
    assert.equal(colourEnabled({ write: () => true }, {}), false);
    assert.equal(styleFor({ write: () => true, isTTY: true }, {}).red('x'), '\u001b[31mx\u001b[39m');
    assert.equal(styleFor({ write: () => true }, {}).red('x'), 'x');
  });

  it('formats diagnostics the way compilers do', () => {
    assert.equal(
      formatDiagnosticLine({ code: 'WG_LINT_SHADOWED', message: 'm', file: 'f.yaml', line: 3, col: 7, path: 'spec.rules[1]', severity: 'warning' }),
      'f.yaml:3:7: warning WG_LINT_SHADOWED at spec.rules[1]: m',
    );
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
