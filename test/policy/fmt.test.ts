import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { WaygateError } from '../../src/errors.ts';
import { parsePolicyDocuments } from '../../src/policy/documents.ts';
import { celOpaqueRanges, formatPolicyText } from '../../src/policy/fmt.ts';
import type { AuthorizationPolicy } from '../../src/policy/model.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures/policy-docs');
const read = (...p: string[]): string => readFileSync(join(FIXTURES, ...p), 'utf8');
const allFixtures = [
  ...readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml')),
  ...readdirSync(join(FIXTURES, 'fmt')).map((f) => join('fmt', f)),
].sort();

const HEAD = 'apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: { name: p }\n';

/** The parsed policies without locations: what fmt must never change. */
function meaning(text: string): unknown {
  const { documents, diagnostics } = parsePolicyDocuments(text, 'x.yaml');
  assert.deepEqual(diagnostics, []);
  return JSON.parse(JSON.stringify(documents, (k, v: unknown) => (k === 'location' ? undefined : v)));
}

describe('formatPolicyText', () => {
  it('formats the messy fixture to the golden output', () => {
    assert.equal(formatPolicyText(read('fmt', 'messy.input.yaml')), read('fmt', 'messy.expected.yaml'));
  });

  it('is idempotent on every fixture', () => {
    for (const f of allFixtures) {
      const once = formatPolicyText(read(f), f);
      assert.equal(formatPolicyText(once, f), once, f);
    }
  });

  it('keeps the policies the same (modulo whitespace in CEL) on every fixture', () => {
    const squash = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (_k, x: unknown) => (typeof x === 'string' ? x.replace(/\s+/g, ' ').trim() : x)));
    // (fmt/messy.input.yaml carries an unknown key on purpose: fmt formats what it cannot load.)
    for (const f of allFixtures.filter((x) => parsePolicyDocuments(read(x), x).diagnostics.length === 0)) {
      assert.deepEqual(squash(meaning(formatPolicyText(read(f), f))), squash(meaning(read(f))), f);
    }
  });

  it('keeps every comment, in order', () => {
    const input = read('fmt', 'messy.input.yaml');
    const comments = (t: string): string[] => t.split('\n').map((l) => /#.*$/.exec(l)?.[0] ?? '').filter(Boolean);
    assert.deepEqual(comments(formatPolicyText(input)), comments(input));
    assert.deepEqual(comments(formatPolicyText(read('api-from-frontend.yaml'))), comments(read('api-from-frontend.yaml')));
  });

  it('orders known keys canonically and keeps unknown keys after them', () => {
    const out = formatPolicyText(
      'spec:\n  rules:\n    - x-b: 1\n      when: a\n      x-a: 2\n      message: m\n      name: r\n  mode: DryRun\n  action: DENY\n'
      + 'metadata:\n  labels: { a: b }\n  name: p\nkind: AuthorizationPolicy\napiVersion: waygate.dev/v1alpha1\n');
    assert.equal(out,
      'apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  labels: { a: b }\n'
      + 'spec:\n  action: DENY\n  mode: DryRun\n  rules:\n    - name: r\n      when: a\n      message: m\n      x-b: 1\n      x-a: 2\n');
  });

  it('orders PolicyTest cases, inputs and expectations', () => {
    const out = formatPolicyText(
      'kind: PolicyTest\napiVersion: waygate.dev/v1alpha1\nmetadata: { name: t }\nspec:\n  cases:\n'
      + '    - expect: { reason: allowed, policy: p, decision: allow }\n'
      + '      input:\n        now: 2026-01-01T00:00:00Z\n        source: { port: 1, ip: 10.0.0.1, principal: "" }\n'
      + '      name: c\n  defaultAction: ALLOW\n');
    assert.equal(out,
      'apiVersion: waygate.dev/v1alpha1\nkind: PolicyTest\nmetadata: { name: t }\nspec:\n  defaultAction: ALLOW\n  cases:\n'
      + '    - name: c\n      input:\n        source: { principal: "", ip: 10.0.0.1, port: 1 }\n        now: 2026-01-01T00:00:00Z\n'
      + '      expect: { decision: allow, policy: p, reason: allowed }\n');
  });

  it('normalises indentation to two spaces and separates documents with ---', () => {
    const out = formatPolicyText(`${HEAD}spec:\n      action: ALLOW\n      rules:\n      -   name: r\n          when: x\n...\n---\n${HEAD}spec: { action: DENY, rules: [{ name: r, when: x }] }`);
    // Flow collections keep their flow style, padded the way `yaml` prints them.
    assert.equal(out, `${HEAD}spec:\n  action: ALLOW\n  rules:\n    - name: r\n      when: x\n---\n${HEAD}spec: { action: DENY, rules: [ { name: r, when: x } ] }\n`);
  });

  it('writes multi-line CEL as |- and leaves single-line CEL on one line', () => {
    const long = 'source.namespace == "prod" && destination.port == 8080 && request.headers["x-tenant"] == "acme" && source.serviceAccount == "frontend"';
    const input = `${HEAD}spec:\n  action: ALLOW\n  selector: >\n    destination.port in\n    [80, 443]\n  rules:\n`
      + `    - name: long\n      when: ${long}\n`
      + '    - name: literal\n      when: |\n        a &&\n          b\n\n'
      + '    - name: folded-plain\n      when: a &&\n        b\n'
      + '    - name: folded-in-string\n      when: a == "x\n        y"\n';
    const out = formatPolicyText(input);
    assert.equal(out, `${HEAD}spec:\n  action: ALLOW\n  selector: |-\n    destination.port in\n    [80, 443]\n  rules:\n`
      + `    - name: long\n      when: ${long}\n`
      // The blank line between list items is the author's and stays.
      + '    - name: literal\n      when: |-\n        a &&\n          b\n\n'
      + '    - name: folded-plain\n      when: |-\n        a &&\n        b\n'
      // The line break sits inside a CEL string: turning it back into a break would change the
      // string, so the expression is left folded (on one line).
      + '    - name: folded-in-string\n      when: a == "x y"\n');
    const p = parsePolicyDocuments(out, 'x.yaml').documents[0] as AuthorizationPolicy;
    assert.equal(p.rules[3]!.when.text, 'a == "x y"');
  });

  it('keeps comment-only documents and drops nothing', () => {
    // A comment before the first `---` belongs to that document (YAML 1.2 §9.2): it stays on top.
    const out = formatPolicyText(`# file header\n---\n${HEAD}spec: { action: ALLOW, rules: [ { name: r, when: x } ] }\n---\n# trailing note\n\n# two\n`);
    assert.equal(out, `# file header\n\n${HEAD}spec: { action: ALLOW, rules: [ { name: r, when: x } ] }\n---\n# trailing note\n\n# two\n`);
    assert.equal(formatPolicyText(out), out);
    assert.equal(formatPolicyText('# just a note\n'), '# just a note\n');
    assert.equal(formatPolicyText('---\n---\n'), '');
  });

  it('returns an empty string for an empty file and adds the final newline', () => {
    assert.equal(formatPolicyText(''), '');
    assert.equal(formatPolicyText('apiVersion: waygate.dev/v1alpha1'), 'apiVersion: waygate.dev/v1alpha1\n');
  });

  it('refuses a YAML syntax error with file:line:col', () => {
    const table: Array<[string, string]> = [
      [`${HEAD}spec:\n  action: "ALLOW\n  rules: []\n`, 'p.yaml:7:1: Missing closing "quote'],
      [`${HEAD}spec:\n  action: ALLOW\n rules: []\n`, 'p.yaml:6:1: All mapping items must start at the same column'],
    ];
    for (const [text, message] of table) {
      assert.throws(() => formatPolicyText(text, 'p.yaml'), (e: unknown) => {
        assert.ok(e instanceof WaygateError);
        assert.equal(e.code, 'WG_POLICY_YAML');
        assert.ok(e.message.startsWith(message), e.message);
        return true;
      });
    }
  });
});

describe('celOpaqueRanges', () => {
  const table: Array<[string, Array<[number, number]> | null]> = [
    ['a && b', []],
    ['a == "x y"', [[5, 10]]],
    ["a == 'it''s'", [[5, 9], [9, 12]]],
    ['a == "x\\"y" || b', [[5, 11]]],
    ['a == r"\\" || b', [[6, 9]]],
    ['a == """x\ny""" && b', [[5, 14]]],
    ['a // note\n&& b', [[2, 9]]],
    ['a == "open', null],
  ];
  for (const [src, want] of table) {
    it(JSON.stringify(src), () => assert.deepEqual(celOpaqueRanges(src), want));
  }
});
