/**
 * One output-format vocabulary across verbs (issue 19 item 11): `-o, --output <format>` with the
 * formats each verb can print, the old `--format` spelling still accepted but hidden, and a usage
 * error that is one line plus a hint instead of the whole usage text. The end-to-end cases run the
 * compiled product (`npm test` builds dist/ first): in each case one invocation is a real
 * bin/waygate.js process and the others, compared with it, run in one batch process through the
 * same main() (test/helpers/cli-batch.ts), which loads the CLI once instead of once per invocation.
 */
import assert from 'node:assert/strict';
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
import { runWaygate, startCliBatch, type CliBatch, type CliResult, type CliRunOptions } from '../helpers/cli-batch.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const POLICIES = join(ROOT, 'policies');
const SAMPLE = join(ROOT, 'examples/audit/sample.jsonl');
const CANDIDATES = join(ROOT, 'examples/audit/candidate-policies');
const EVAL_INPUT = '{"source":{"principal":"spiffe://cluster.local/ns/prod/sa/frontend"},"destination":{"ip":"127.0.0.1","port":8080}}';

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

  it('a bad value is one line of error and one of hint, never the whole usage (exit 2)', async () => {
    const cases: [args: string[], error: RegExp][] = [
      [['policy', 'check', POLICIES, '-o', 'xml'], /^error: option '-o, --output <format>' argument 'xml' is invalid\. expected one of text, json, yaml$/],
      [['policy', 'check', POLICIES, '--format', 'jsn'], /^error: option '--format <format>' argument 'jsn' is invalid\. expected one of text, json, yaml \(did you mean "json"\?\)$/],
      [['audit', 'query', '-o', 'json', SAMPLE], /^error: .* argument 'json' is invalid\. expected one of text, jsonl, csv \(did you mean "jsonl"\?\)$/],
      [['audit', 'summary', '--top', '0', SAMPLE], /^error: option '--top <n>' argument '0' is invalid\. expected a positive integer/],
      [['audit', 'report', SAMPLE], /^error: required option '--html <file>' not specified$/],
      [['policy', 'check', '--strcit', POLICIES], /^error: unknown option '--strcit'$/],
    ];
    // Real processes (the exit code is the point), run side by side.
    const results = await Promise.all(cases.map(([args]) => runWaygate(args)));
    for (const [i, [args, error]] of cases.entries()) {
      const r = results[i]!;
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

describe('each format, end to end (bin/waygate.js, and a batch process through the same main())', () => {
  let dir: string;
  let batch: CliBatch;
  before(async () => {
    [dir, batch] = await Promise.all([mkdtemp(join(tmpdir(), 'waygate-output-')), startCliBatch()]);
  });
  after(async () => {
    await batch?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** `waygate ARGS` in the batch process. */
  function waygate(args: string[], opts: CliRunOptions = {}): Promise<CliResult> {
    return batch.run(args, opts);
  }

  /**
   * -o json and -o yaml print the same document; --format json (old spelling) too. `jsonBy` runs
   * the -o json one: `runWaygate` makes it a bin/waygate.js process the batch's two are held to.
   */
  async function sameDocument(args: string[], jsonBy: typeof waygate = waygate): Promise<unknown> {
    const json = await jsonBy([...args, '-o', 'json'], { input: EVAL_INPUT });
    const yaml = await waygate([...args, '-o', 'yaml'], { input: EVAL_INPUT });
    const old = await waygate([...args, '--format', 'json'], { input: EVAL_INPUT });
    assert.equal(json.code, 0, json.stderr);
    assert.equal(yaml.code, 0, yaml.stderr);
    const doc = JSON.parse(json.stdout) as unknown;
    assert.deepEqual(parseYaml(yaml.stdout), doc);
    assert.equal(old.stdout, json.stdout);
    return doc;
  }

  it('policy check, test and eval: text, json, yaml', async () => {
    assert.equal((await sameDocument(['policy', 'check', POLICIES]) as { ok: boolean }).ok, true);
    assert.equal((await sameDocument(['policy', 'test', POLICIES]) as { ok: boolean }).ok, true);
    // bin/waygate.js reading the decision input from a real pipe (`-i -`).
    const d = await sameDocument(['policy', 'eval', '-i', '-', POLICIES], runWaygate) as { decision: { decision: string } };
    assert.equal(d.decision.decision, 'allow');
    assert.match((await waygate(['policy', 'check', POLICIES, '-o', 'text'])).stdout, /^ok: /m);
  });

  it('audit summary and replay: text, json, yaml, markdown', async () => {
    const s = await sameDocument(['audit', 'summary', SAMPLE], runWaygate) as { decisions: { total: number } };
    assert.ok(s.decisions.total > 0);
    await sameDocument(['audit', 'replay', '--policies', CANDIDATES, SAMPLE]);
    for (const verb of [['summary'], ['replay', '--policies', CANDIDATES]]) {
      const md = await waygate(['audit', ...verb, SAMPLE, '-o', 'markdown']);
      assert.equal(md.code, 0, md.stderr);
      assert.match(md.stdout, /^\| .* \|$/m);
      assert.equal((await waygate(['audit', ...verb, SAMPLE, '--format', 'markdown'])).stdout, md.stdout);
    }
  });

  it('audit query: text (old name table), jsonl, csv', async () => {
    // bin/waygate.js prints the table; the batch's other spellings of it are compared with it.
    const text = await runWaygate(['audit', 'query', '--decision', 'deny', '-o', 'text', SAMPLE]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^time +event +decision/);
    assert.equal((await waygate(['audit', 'query', '--decision', 'deny', '--format', 'table', SAMPLE])).stdout, text.stdout);
    assert.equal((await waygate(['audit', 'query', '--decision', 'deny', SAMPLE])).stdout, text.stdout, 'text is the default');
    const jsonl = await waygate(['audit', 'query', '--decision', 'deny', '-o', 'jsonl', SAMPLE]);
    const records = jsonl.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { decision: string });
    assert.ok(records.length > 0 && records.every((r) => r.decision === 'deny'));
    const csv = await waygate(['audit', 'query', '--decision', 'deny', '--output', 'csv', SAMPLE]);
    assert.equal(csv.stdout.trimEnd().split('\n').length, records.length + 1, 'a header, then one row per record');
  });

  it('certs init and issue: text, json, yaml', async () => {
    const pki = join(dir, 'pki');
    const init = await waygate(['certs', 'init', '--dir', pki, '-o', 'json']);
    assert.equal(init.code, 0, init.stderr);
    const ca = JSON.parse(init.stdout) as Record<string, string>;
    assert.equal(ca['spiffeId'], 'spiffe://cluster.local');
    for (const k of ['certificate', 'privateKey', 'trustBundle']) assert.ok(existsSync(ca[k]!), k);
    const issue = await waygate(['certs', 'issue', 'spiffe://cluster.local/ns/prod/sa/api', '--dir', pki, '-o', 'yaml']);
    assert.equal(issue.code, 0, issue.stderr);
    const leaf = parseYaml(issue.stdout) as Record<string, string>;
    assert.equal(leaf['spiffeId'], 'spiffe://cluster.local/ns/prod/sa/api');
    assert.equal(leaf['certificate'], join(pki, 'prod-api.crt'));
    // bin/waygate.js, on the CA the batch process wrote.
    assert.match((await runWaygate(['certs', 'issue', 'spiffe://cluster.local/ns/prod/sa/web', '--dir', pki])).stdout, /^issued spiffe:\/\/cluster\.local\/ns\/prod\/sa\/web/);
  });
});
