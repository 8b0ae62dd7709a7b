/**
 * One output-format vocabulary across verbs (issue 19 item 11): `-o, --output <format>` with the
 * formats each verb can print, the old `--format` spelling still accepted but hidden, and a usage
 * error that is one line plus a hint instead of the whole usage text. The end-to-end cases run
 * bin/waygate.js, the compiled product (`npm test` builds dist/ first).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Command, Option } from 'commander';
import { parse as parseYaml } from 'yaml';
import { buildProgram } from '../../src/cli/main.ts';
import { commandPath, OUTPUT_FORMATS } from '../../src/cli/output.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin/waygate.js');
const POLICIES = join(ROOT, 'policies');
const SAMPLE = join(ROOT, 'examples/audit/sample.jsonl');
const CANDIDATES = join(ROOT, 'examples/audit/candidate-policies');
const EVAL_INPUT = '{"source":{"principal":"spiffe://cluster.local/ns/prod/sa/frontend"},"destination":{"ip":"127.0.0.1","port":8080}}';

function waygate(args: string[], opts: { input?: string; cwd?: string } = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', input: opts.input ?? '', cwd: opts.cwd ?? ROOT, env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function* walk(cmd: Command): Generator<Command> {
  yield cmd;
  for (const sub of cmd.commands) yield* walk(sub);
}

function option(cmd: Command, long: string): (Option & { parseArg?: (value: string, previous: unknown) => unknown; hidden?: boolean }) | undefined {
  return cmd.options.find((o) => o.long === long);
}

/** The formats an --output option accepts, found by offering it every word of the vocabulary. */
function accepted(o: Option & { parseArg?: (value: string, previous: unknown) => unknown }): string[] {
  return OUTPUT_FORMATS.filter((f) => {
    try {
      o.parseArg!(f, undefined);
      return true;
    } catch {
      return false;
    }
  });
}

describe('the -o, --output vocabulary', () => {
  it('every verb that prints a report takes -o with the formats that make sense for it, and the old --format hidden', () => {
    const found: Record<string, string[]> = {};
    for (const cmd of walk(buildProgram())) {
      const format = option(cmd, '--format');
      const output = option(cmd, '--output');
      if (format !== undefined) assert.equal(format.hidden, true, `${commandPath(cmd)}: --format is the old spelling, hidden from --help`);
      if (output === undefined) continue;
      assert.equal(output.short, '-o', commandPath(cmd));
      assert.ok(format !== undefined, `${commandPath(cmd)} keeps --format for existing scripts`);
      found[commandPath(cmd)] = accepted(output);
      // Both spellings take exactly the same values.
      assert.deepEqual(accepted(format), found[commandPath(cmd)], commandPath(cmd));
    }
    assert.deepEqual(found, {
      'waygate policy check': ['text', 'json', 'yaml'],
      'waygate policy test': ['text', 'json', 'yaml'],
      'waygate policy eval': ['text', 'json', 'yaml'],
      'waygate policy import istio': ['text', 'json'],
      'waygate policy import networkpolicy': ['text', 'json'],
      'waygate audit summary': ['text', 'json', 'markdown', 'yaml'],
      'waygate audit query': ['text', 'jsonl', 'csv'],
      'waygate audit replay': ['text', 'json', 'markdown', 'yaml'],
      'waygate audit suggest': ['text', 'json', 'markdown', 'yaml'],
      'waygate certs init': ['text', 'json', 'yaml'],
      'waygate certs issue': ['text', 'json', 'yaml'],
      'waygate doctor': ['text', 'json'],
    });
  });

  it('a bad value is one line of error and one of hint, never the whole usage (exit 2)', () => {
    const cases: [args: string[], error: RegExp][] = [
      [['policy', 'check', POLICIES, '-o', 'xml'], /^error: option '-o, --output <format>' argument 'xml' is invalid\. expected one of text, json, yaml$/],
      [['policy', 'check', POLICIES, '--format', 'jsn'], /^error: option '--format <format>' argument 'jsn' is invalid\. expected one of text, json, yaml \(did you mean "json"\?\)$/],
      [['audit', 'query', '-o', 'json', SAMPLE], /^error: .* argument 'json' is invalid\. expected one of text, jsonl, csv \(did you mean "jsonl"\?\)$/],
      [['audit', 'summary', '--top', '0', SAMPLE], /^error: option '--top <n>' argument '0' is invalid\. expected a positive integer/],
      [['audit', 'report', SAMPLE], /^error: required option '--html <file>' not specified$/],
      [['policy', 'check', '--strcit', POLICIES], /^error: unknown option '--strcit'$/],
    ];
    for (const [args, error] of cases) {
      const r = waygate(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      const lines = r.stderr.trimEnd().split('\n');
      // commander may add its own "(Did you mean --strict?)" line for an unknown flag.
      const own = lines.filter((l) => !l.startsWith('(Did you mean'));
      assert.equal(own.length, 2, r.stderr);
      assert.match(own[0]!, error);
      const verb = args.filter((a) => /^[a-z]+$/.test(a)).slice(0, 2).join(' ');
      assert.equal(own[1], `hint: \`waygate ${verb} --help\` lists its arguments, flags and the values they take`);
      assert.doesNotMatch(r.stderr, /Usage:|Options:/);
    }
  });
});

describe('each format, end to end (bin/waygate.js)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'waygate-output-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** -o json and -o yaml print the same document; --format json (old spelling) too. */
  function sameDocument(args: string[], expectCode = 0): unknown {
    const json = waygate([...args, '-o', 'json'], { input: EVAL_INPUT });
    const yaml = waygate([...args, '-o', 'yaml'], { input: EVAL_INPUT });
    const old = waygate([...args, '--format', 'json'], { input: EVAL_INPUT });
    assert.equal(json.code, expectCode, json.stderr);
    assert.equal(yaml.code, expectCode, yaml.stderr);
    const doc = JSON.parse(json.stdout) as unknown;
    assert.deepEqual(parseYaml(yaml.stdout), doc);
    assert.equal(old.stdout, json.stdout);
    return doc;
  }

  it('policy check, test and eval: text, json, yaml', () => {
    assert.equal((sameDocument(['policy', 'check', POLICIES]) as { ok: boolean }).ok, true);
    assert.equal((sameDocument(['policy', 'test', POLICIES]) as { ok: boolean }).ok, true);
    const d = sameDocument(['policy', 'eval', '-i', '-', POLICIES]) as { decision: { decision: string } };
    assert.equal(d.decision.decision, 'allow');
    assert.match(waygate(['policy', 'check', POLICIES, '-o', 'text']).stdout, /^ok: /m);
  });

  it('audit summary and replay: text, json, yaml, markdown', () => {
    const s = sameDocument(['audit', 'summary', SAMPLE]) as { decisions: { total: number } };
    assert.ok(s.decisions.total > 0);
    sameDocument(['audit', 'replay', '--policies', CANDIDATES, SAMPLE]);
    for (const verb of [['summary'], ['replay', '--policies', CANDIDATES]]) {
      const md = waygate(['audit', ...verb, SAMPLE, '-o', 'markdown']);
      assert.equal(md.code, 0, md.stderr);
      assert.match(md.stdout, /^\| .* \|$/m);
      assert.equal(waygate(['audit', ...verb, SAMPLE, '--format', 'markdown']).stdout, md.stdout);
    }
  });

  it('audit query: text (old name table), jsonl, csv', () => {
    const text = waygate(['audit', 'query', '--decision', 'deny', '-o', 'text', SAMPLE]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^time +event +decision/);
    assert.equal(waygate(['audit', 'query', '--decision', 'deny', '--format', 'table', SAMPLE]).stdout, text.stdout);
    assert.equal(waygate(['audit', 'query', '--decision', 'deny', SAMPLE]).stdout, text.stdout, 'text is the default');
    const jsonl = waygate(['audit', 'query', '--decision', 'deny', '-o', 'jsonl', SAMPLE]);
    const records = jsonl.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { decision: string });
    assert.ok(records.length > 0 && records.every((r) => r.decision === 'deny'));
    const csv = waygate(['audit', 'query', '--decision', 'deny', '--output', 'csv', SAMPLE]);
    assert.equal(csv.stdout.trimEnd().split('\n').length, records.length + 1, 'a header, then one row per record');
  });

  it('certs init and issue: text, json, yaml', () => {
    const pki = join(dir, 'pki');
    const init = waygate(['certs', 'init', '--dir', pki, '-o', 'json']);
    assert.equal(init.code, 0, init.stderr);
    const ca = JSON.parse(init.stdout) as Record<string, string>;
    assert.equal(ca['spiffeId'], 'spiffe://cluster.local');
    for (const k of ['certificate', 'privateKey', 'trustBundle']) assert.ok(existsSync(ca[k]!), k);
    const issue = waygate(['certs', 'issue', 'spiffe://cluster.local/ns/prod/sa/api', '--dir', pki, '-o', 'yaml']);
    assert.equal(issue.code, 0, issue.stderr);
    const leaf = parseYaml(issue.stdout) as Record<string, string>;
    assert.equal(leaf['spiffeId'], 'spiffe://cluster.local/ns/prod/sa/api');
    assert.equal(leaf['certificate'], join(pki, 'prod-api.crt'));
    assert.match(waygate(['certs', 'issue', 'spiffe://cluster.local/ns/prod/sa/web', '--dir', pki]).stdout, /^issued spiffe:\/\/cluster\.local\/ns\/prod\/sa\/web/);
  });
});
