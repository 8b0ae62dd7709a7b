import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Diagnostic } from '../../src/errors.ts';
import { Document, parseDocument, type Scalar } from 'yaml';
import {
  DOCUMENT_FIELDS,
  findDuplicateNames,
  parsePolicyDocuments,
  compressOffsets,
  expressionRuns,
  scalarOffsetMap,
  sourceOffsetAt,
} from '../../src/policy/documents.ts';
import type { AuthorizationPolicy, ExpressionSource, PolicyTest } from '../../src/policy/model.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures/policy-docs');
const SCHEMA_DIR = join(import.meta.dirname, '../../schema');
const fixtureFiles = readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml')).sort();

const HEAD = 'apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: { name: p }\n';
const TEST_HEAD = 'apiVersion: waygate.dev/v1alpha1\nkind: PolicyTest\nmetadata: { name: t }\n';

/** The parts of a diagnostic a test pins down; `message` is a substring. */
interface Want {
  line: number;
  col: number;
  path: string;
  code: Diagnostic['code'];
  message: string;
}

function check(text: string, want: Want[], validDocuments = 0): void {
  const { documents, diagnostics } = parsePolicyDocuments(text, 'p.yaml');
  const got = diagnostics.map((d) => ({ line: d.line, col: d.col, path: d.path, code: d.code, message: d.message, file: d.file }));
  assert.equal(got.length, want.length, `diagnostics: ${JSON.stringify(got, null, 1)}`);
  want.forEach((w, i) => {
    const g = got[i]!;
    assert.deepEqual({ line: g.line, col: g.col, path: g.path, code: g.code, file: g.file },
      { line: w.line, col: w.col, path: w.path, code: w.code, file: 'p.yaml' }, `diagnostic ${i}: ${g.message}`);
    assert.ok(g.message.includes(w.message), `diagnostic ${i}: "${g.message}" should include "${w.message}"`);
  });
  assert.equal(documents.length, validDocuments, 'a document with errors is not returned');
}

describe('parsePolicyDocuments: valid documents', () => {
  it('parses every fixture without diagnostics', () => {
    for (const f of fixtureFiles) {
      const { diagnostics, documents } = parsePolicyDocuments(readFileSync(join(FIXTURES, f), 'utf8'), f);
      assert.deepEqual(diagnostics, [], f);
      assert.ok(documents.length > 0, f);
    }
  });

  it('builds the typed docs/design.md §3 example with locations, defaults and ordinals', () => {
    const text = readFileSync(join(FIXTURES, 'api-from-frontend.yaml'), 'utf8');
    const { documents } = parsePolicyDocuments(text, 'api.yaml', 7);
    assert.equal(documents.length, 2);
    const p = documents[0] as AuthorizationPolicy;
    assert.equal(p.kind, 'AuthorizationPolicy');
    assert.equal(p.name, 'api-from-frontend');
    assert.equal(p.action, 'ALLOW');
    assert.equal(p.mode, 'Enforce');
    assert.equal(p.ordinal, 7);
    assert.deepEqual(p.location, { file: 'api.yaml', line: 5, col: 19, path: 'metadata.name' });
    assert.equal(p.selector?.text, 'destination.port == 8080');
    assert.deepEqual(p.selector?.location, { file: 'api.yaml', line: 9, col: 13, path: 'spec.selector' });
    assert.equal(p.variables.length, 1);
    assert.equal(p.variables[0]!.name, 'prod');
    assert.equal(p.variables[0]!.expression.text, 'source.namespace == "prod"');
    assert.deepEqual(p.variables[0]!.location, { file: 'api.yaml', line: 11, col: 7, path: 'spec.variables[0]' });
    assert.equal(p.rules[0]!.name, 'frontend');
    assert.equal(p.rules[0]!.when.text, 'variables.prod && source.serviceAccount == "frontend"');
    assert.deepEqual(p.rules[0]!.when.location, { file: 'api.yaml', line: 14, col: 13, path: 'spec.rules[0].when' });
    assert.equal(p.rules[0]!.message, undefined);

    const t = documents[1] as PolicyTest;
    assert.equal(t.kind, 'PolicyTest');
    assert.equal(t.defaultAction, 'DENY');
    assert.deepEqual(t.location, { file: 'api.yaml', line: 18, col: 19, path: 'metadata.name' });
    assert.equal(t.cases.length, 2);
    assert.deepEqual(t.cases[0]!.input, {
      source: { principal: 'spiffe://cluster.local/ns/prod/sa/frontend', ip: '10.0.0.5', port: 43122 },
      destination: { ip: '10.0.1.7', port: 8080 },
      request: { headers: { 'x-tenant': 'acme' } },
    });
    assert.deepEqual(t.cases[0]!.expect, { decision: 'allow', policy: 'api-from-frontend', rule: 'frontend', reason: 'allowed' });
    assert.deepEqual(t.cases[1]!.expect, { decision: 'deny', policy: null, rule: null, reason: 'no_allow_match' });
    assert.deepEqual(t.cases[1]!.location, { file: 'api.yaml', line: 28, col: 7, path: 'spec.cases[1]' });
  });

  it('reads every PolicyTest input and expect field', () => {
    const { documents, diagnostics } = parsePolicyDocuments(readFileSync(join(FIXTURES, 'deny-metadata-tests.yaml'), 'utf8'), 't.yaml');
    assert.deepEqual(diagnostics, []);
    const t = documents[0] as PolicyTest;
    assert.equal(t.defaultAction, undefined);
    assert.deepEqual(t.cases[0]!.input, {
      source: { principal: 'spiffe://cluster.local/ns/prod/sa/api', ip: 'fd00::5', port: 0 },
      destination: { ip: '169.254.169.254', port: 80, host: 'metadata.internal', authority: '169.254.169.254:80' },
      request: { baggage: { 'k8s.namespace.name': 'prod' }, traceId: '4bf92f3577b34da6a3ce929d0e0e4736' },
      connection: { id: 'c-1', tlsVersion: 'TLSv1.3' },
      now: '2026-01-01T00:00:00Z',
    });
    assert.deepEqual(t.cases[0]!.expect, {
      decision: 'deny', policy: 'deny-metadata', rule: 'metadata-endpoint', reason: 'explicit_deny',
      audit: ['audit-admin-ports/always'], dryRun: 'deny',
    });
    assert.deepEqual(t.cases[1]!.input, {});
  });

  it('reads labels, annotations, message, mode and a plain `true` rule', () => {
    const { documents } = parsePolicyDocuments(readFileSync(join(FIXTURES, 'deny-metadata.yaml'), 'utf8'), 'd.yaml', 3);
    const [deny, audit] = documents as AuthorizationPolicy[];
    assert.equal(deny!.rules[0]!.message, 'link-local metadata services are off limits');
    assert.equal(deny!.ordinal, 3);
    assert.equal(audit!.ordinal, 4);
    assert.equal(audit!.mode, 'DryRun');
    assert.equal(audit!.action, 'AUDIT');
    assert.equal(audit!.rules[1]!.when.text, 'true');
  });

  it('returns deeply frozen documents', () => {
    const { documents } = parsePolicyDocuments(readFileSync(join(FIXTURES, 'api-from-frontend.yaml'), 'utf8'), 'a.yaml');
    const p = documents[0] as AuthorizationPolicy;
    assert.ok(Object.isFrozen(p));
    assert.ok(Object.isFrozen(p.rules));
    assert.ok(Object.isFrozen(p.rules[0]));
    assert.ok(Object.isFrozen(p.rules[0]!.when.location));
    assert.ok(Object.isFrozen((documents[1] as PolicyTest).cases[0]!.input.source));
    assert.throws(() => { (p as { name: string }).name = 'x'; }, TypeError);
  });

  it('skips empty documents between others', () => {
    const r = parsePolicyDocuments(`---\n# nothing here\n---\n${HEAD}spec: { action: ALLOW, rules: [{ name: r, when: 'true' }] }\n---\n---\n${HEAD.replace('name: p', 'name: q')}spec: { action: ALLOW, rules: [{ name: r, when: 'true' }] }\n`, 'e.yaml', 5);
    assert.deepEqual(r.diagnostics, []);
    assert.equal(r.documents.length, 2);
    assert.equal((r.documents[0] as AuthorizationPolicy).ordinal, 5);
  });

  // A torn write must never read as "no policies here" (it would drop a DENY).
  it('refuses a file without documents and a file ending in an empty document after `---` (WG_POLICY_EMPTY)', () => {
    for (const text of ['', '\n', '# only a comment\n', '# only a comment\n---\n---\n# another\n', '---\n']) {
      const r = parsePolicyDocuments(text, 'e.yaml');
      assert.deepEqual(r.documents, [], JSON.stringify(text));
      assert.deepEqual(r.diagnostics.map((d) => [d.code, d.line, d.col, d.severity]), [['WG_POLICY_EMPTY', 1, 1, 'error']], JSON.stringify(text));
    }
    const cut = `${HEAD}spec: { action: DENY, rules: [{ name: r, when: 'true' }] }\n---\n`;
    const r = parsePolicyDocuments(cut, 'e.yaml');
    assert.deepEqual(r.diagnostics.map((d) => [d.code, d.line, d.severity]), [['WG_POLICY_EMPTY', cut.split('\n').length - 1, 'error']]);
    assert.match(r.diagnostics[0]!.message, /cut short/);
    // A trailing comment-only document after `---` is the same shape.
    assert.equal(parsePolicyDocuments(`${cut}# end\n`, 'e.yaml').diagnostics[0]?.code, 'WG_POLICY_EMPTY');
    // `...` (document end) without a new document is a complete file.
    assert.deepEqual(parsePolicyDocuments(`${HEAD}spec: { action: DENY, rules: [{ name: r, when: 'true' }] }\n...\n`, 'e.yaml').diagnostics, []);
  });
});

describe('parsePolicyDocuments: every error kind, located', () => {
  const S = 'WG_POLICY_SCHEMA';
  const table: Array<{ name: string; text: string; want: Want[]; validDocuments?: number }> = [
    {
      name: 'unknown field, with a suggestion and the allowed list',
      text: `${HEAD}spec:\n  action: ALLOW\n  rules: [{ name: r, when: x }]\n  rulez: []\n`,
      want: [{ line: 7, col: 3, path: 'spec.rulez', code: S, message: 'unknown field "rulez" (did you mean "rules"?); allowed fields: action, mode, selector, variables, rules' }],
    },
    {
      name: 'missing spec.rules (reported at the spec mapping)',
      text: `${HEAD}spec:\n  action: ALLOW\n`,
      want: [{ line: 5, col: 3, path: 'spec.rules', code: S, message: 'missing required field "rules"' }],
    },
    {
      name: 'missing top-level fields',
      text: 'apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\n',
      want: [
        { line: 1, col: 1, path: 'metadata', code: S, message: 'missing required field "metadata"' },
        { line: 1, col: 1, path: 'spec', code: S, message: 'missing required field "spec"' },
      ],
    },
    {
      name: 'wrong type: rules is a string',
      text: `${HEAD}spec:\n  action: ALLOW\n  rules: "x"\n`,
      want: [{ line: 6, col: 10, path: 'spec.rules', code: S, message: 'expected a list, found a string "x"' }],
    },
    {
      name: 'empty rules list',
      text: `${HEAD}spec:\n  action: ALLOW\n  rules: []\n`,
      want: [{ line: 6, col: 10, path: 'spec.rules', code: S, message: 'must not be an empty list' }],
    },
    {
      name: 'bad enums list the allowed values',
      text: `${HEAD}spec:\n  action: PERMIT\n  mode: enforce\n  rules: [{ name: r, when: x }]\n`,
      want: [
        { line: 5, col: 11, path: 'spec.action', code: S, message: 'invalid value "PERMIT"; allowed values: ALLOW, DENY, AUDIT' },
        { line: 6, col: 9, path: 'spec.mode', code: S, message: 'invalid value "enforce"; allowed values: Enforce, DryRun' },
      ],
    },
    {
      name: 'duplicate rule name names the first',
      text: `${HEAD}spec:\n  action: DENY\n  rules:\n    - name: r\n      when: a\n    - name: r\n      when: b\n`,
      want: [{ line: 9, col: 13, path: 'spec.rules[1].name', code: S, message: 'duplicate rule name "r"; first defined at line 7:13 (spec.rules[0].name)' }],
    },
    {
      name: 'duplicate and reserved variable names',
      text: `${HEAD}spec:\n  action: ALLOW\n  variables:\n    - { name: v, expression: a }\n    - { name: v, expression: b }\n    - { name: in, expression: c }\n    - { name: my-var, expression: d }\n  rules: [{ name: r, when: x }]\n`,
      want: [
        { line: 8, col: 15, path: 'spec.variables[1].name', code: S, message: 'duplicate variable name "v"' },
        { line: 9, col: 15, path: 'spec.variables[2].name', code: S, message: '"in" is a CEL reserved word' },
        { line: 10, col: 15, path: 'spec.variables[3].name', code: S, message: 'invalid name "my-var": a variable name must be a CEL identifier' },
      ],
    },
    {
      name: 'bad names, empty and non-string expressions',
      text: 'apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: { name: My_Policy }\n'
        + 'spec:\n  action: ALLOW\n  rules:\n    - { name: 9lives, when: "  " }\n    - { name: ok, when: 42 }\n',
      want: [
        { line: 3, col: 19, path: 'metadata.name', code: S, message: 'invalid name "My_Policy"' },
        { line: 7, col: 15, path: 'spec.rules[0].name', code: S, message: 'invalid name "9lives"' },
        { line: 7, col: 29, path: 'spec.rules[0].when', code: S, message: 'a CEL expression must not be empty' },
        { line: 8, col: 25, path: 'spec.rules[1].when', code: S, message: 'expected a CEL expression (a string), found the number 42' },
      ],
    },
    {
      name: 'metadata: unknown field and non-string label',
      text: 'apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: prod\n  labels: { tier: 1 }\n'
        + 'spec: { action: ALLOW, rules: [{ name: r, when: x }] }\n',
      want: [
        { line: 5, col: 3, path: 'metadata.namespace', code: S, message: 'unknown field "namespace"; allowed fields: name, labels, annotations' },
        { line: 6, col: 19, path: 'metadata.labels.tier', code: S, message: 'expected a string, found the number 1 (quote it)' },
      ],
    },
    {
      name: 'unknown apiVersion and kind name what is accepted',
      text: 'apiVersion: security.istio.io/v1\nkind: Policy\nmetadata: { name: p }\nspec: {}\n',
      want: [
        { line: 1, col: 13, path: 'apiVersion', code: S, message: 'unsupported apiVersion "security.istio.io/v1"; accepted: waygate.dev/v1alpha1' },
        { line: 2, col: 7, path: 'kind', code: S, message: 'unsupported kind "Policy"; accepted: AuthorizationPolicy, PolicyTest' },
      ],
    },
    {
      name: 'a field given twice',
      text: `${HEAD}spec:\n  action: ALLOW\n  action: DENY\n  rules: [{ name: r, when: x }]\n`,
      want: [{ line: 6, col: 3, path: 'spec.action', code: S, message: 'field "action" is given twice; first at line 5:3' }],
    },
    {
      name: 'a document that is not a mapping',
      text: '- a\n- b\n',
      want: [{ line: 1, col: 1, path: '', code: S, message: 'expected a mapping, found a list' }],
    },
    {
      name: 'YAML syntax error: unclosed quote (reported where the scanner gave up)',
      text: `${HEAD}spec:\n  action: "ALLOW\n  rules: []\n`,
      want: [{ line: 7, col: 1, path: '', code: 'WG_POLICY_YAML', message: 'Missing closing "quote' }],
    },
    {
      name: 'YAML syntax error: bad indentation',
      text: `${HEAD}spec:\n  action: ALLOW\n rules: []\n`,
      want: [{ line: 6, col: 1, path: '', code: 'WG_POLICY_YAML', message: 'All mapping items must start at the same column' }],
    },
    {
      name: 'anchors, aliases, merge keys and tags are refused',
      text: `${HEAD}spec:\n  action: &a ALLOW\n  rules:\n    - name: r\n      when: !cel x\n      <<: { message: m }\n    - name: s\n      when: *a\n`,
      want: [
        { line: 5, col: 11, path: 'spec.action', code: 'WG_POLICY_FORBIDDEN', message: 'YAML anchor &a is not allowed' },
        { line: 8, col: 13, path: 'spec.rules[0].when', code: 'WG_POLICY_FORBIDDEN', message: 'YAML tag !cel is not allowed' },
        { line: 9, col: 7, path: 'spec.rules[0]', code: 'WG_POLICY_FORBIDDEN', message: 'YAML merge key << is not allowed' },
        { line: 11, col: 13, path: 'spec.rules[1].when', code: 'WG_POLICY_FORBIDDEN', message: 'YAML alias *a is not allowed' },
        { line: 11, col: 13, path: 'spec.rules[1].when', code: S, message: 'found an alias' },
      ],
    },
    {
      // Regression: `!!str` was reported at its second `!` and as its resolved name.
      name: 'a secondary-handle tag is reported at its first "!", as written',
      text: `${HEAD}spec:\n  action: ALLOW\n  rules:\n    - name: r\n      when: !!str x\n`,
      want: [{ line: 8, col: 13, path: 'spec.rules[0].when', code: 'WG_POLICY_FORBIDDEN', message: 'YAML tag !!str is not allowed' }],
    },
    {
      // Regression: a quoted "<<" is a plain key, not a merge key; it was passed over in silence.
      name: 'a quoted "<<" key is an unknown field, not a merge key passed over',
      text: `${HEAD}spec:\n  action: ALLOW\n  rules:\n    - name: r\n      when: x\n      "<<": { message: m }\n`,
      want: [{ line: 9, col: 7, path: 'spec.rules[0]["<<"]', code: S, message: 'unknown field "<<"; allowed fields: name, when, message' }],
    },
    {
      name: 'multi-document file: doc 2 is bad, positions are relative to the file',
      text: `${HEAD}spec: { action: ALLOW, rules: [{ name: r, when: x }] }\n---\n# second\n${HEAD}spec:\n  action: ALLOW\n  rules:\n    - name: r\n      when: x\n      unless: y\n`,
      want: [{ line: 15, col: 7, path: 'spec.rules[0].unless', code: S, message: 'unknown field "unless"; allowed fields: name, when, message' }],
      validDocuments: 1,
    },
    {
      name: 'PolicyTest: bad ports, address, header, principal, timestamp and expectations',
      text: `${TEST_HEAD}spec:\n  defaultAction: AUDIT\n  cases:\n    - name: c\n      input:\n`
        + '        source: { principal: "spiffe://bad domain/x", ip: 10.0.0.1, port: 70000 }\n'
        + '        destination: { ip: 300.1.1.1, port: 0 }\n'
        + '        request: { headers: { X-Tenant: acme }, baggage: { n: 1 } }\n'
        + '        now: yesterday\n'
        + '      expect: { decision: maybe, reason: upstream_failed, audit: [x], rule: 7 }\n',
      want: [
        { line: 5, col: 18, path: 'spec.defaultAction', code: S, message: 'invalid value "AUDIT"; allowed values: ALLOW, DENY' },
        { line: 9, col: 30, path: 'spec.cases[0].input.source.principal', code: S, message: 'is not a SPIFFE ID' },
        { line: 9, col: 75, path: 'spec.cases[0].input.source.port', code: S, message: '70000 is out of range 0..65535' },
        { line: 10, col: 28, path: 'spec.cases[0].input.destination.ip', code: S, message: '"300.1.1.1" is not an IPv4 or IPv6 address' },
        { line: 10, col: 45, path: 'spec.cases[0].input.destination.port', code: S, message: '0 is out of range 1..65535' },
        { line: 11, col: 31, path: 'spec.cases[0].input.request.headers.X-Tenant', code: S, message: 'must be lower-case' },
        { line: 11, col: 63, path: 'spec.cases[0].input.request.baggage.n', code: S, message: 'expected a string, found the number 1' },
        { line: 12, col: 14, path: 'spec.cases[0].input.now', code: S, message: 'not an RFC 3339 timestamp' },
        { line: 13, col: 27, path: 'spec.cases[0].expect.decision', code: S, message: 'invalid value "maybe"; allowed values: allow, deny' },
        { line: 13, col: 42, path: 'spec.cases[0].expect.reason', code: S, message: 'allowed values: allowed, default_allow, explicit_deny, no_allow_match, default_deny, eval_error' },
        { line: 13, col: 67, path: 'spec.cases[0].expect.audit[0]', code: S, message: 'must name an AUDIT rule as <policy>/<rule>' },
        { line: 13, col: 77, path: 'spec.cases[0].expect.rule', code: S, message: 'expected a string, found the number 7' },
      ],
    },
    {
      name: 'PolicyTest: a non-integer port and missing case fields',
      text: `${TEST_HEAD}spec:\n  cases:\n    - name: c\n      input: { destination: { port: "8080" } }\n      expect: { decision: allow }\n    - name: c\n`,
      want: [
        { line: 7, col: 37, path: 'spec.cases[0].input.destination.port', code: S, message: 'expected an integer 1..65535, found a string "8080"' },
        { line: 9, col: 7, path: 'spec.cases[1].input', code: S, message: 'missing required field "input"' },
        { line: 9, col: 7, path: 'spec.cases[1].expect', code: S, message: 'missing required field "expect"' },
        { line: 9, col: 13, path: 'spec.cases[1].name', code: S, message: 'duplicate case name "c"' },
      ],
    },
  ];
  for (const c of table) it(c.name, () => check(c.text, c.want, c.validDocuments));

  it('collects every diagnostic across documents, in file order', () => {
    const bad = `${HEAD}spec: { action: NOPE, rules: [{ name: r, when: x }] }\n`;
    const { diagnostics } = parsePolicyDocuments(`${bad}---\n${bad}`, 'p.yaml');
    assert.deepEqual(diagnostics.map((d) => d.line), [4, 9]);
  });
});

describe('ExpressionSource.positionAt', () => {
  /** Parses one rule's `when` written as `yamlValue` at line 8, col 13 of the file. */
  function when(yamlValue: string): { expr: ExpressionSource; lines: string[] } {
    const text = `${HEAD}spec:\n  action: ALLOW\n  rules:\n    - name: r\n      when: ${yamlValue}\n`;
    const { documents, diagnostics } = parsePolicyDocuments(text, 'p.yaml');
    assert.deepEqual(diagnostics, []);
    return { expr: (documents[0] as AuthorizationPolicy).rules[0]!.when, lines: text.split('\n') };
  }
  /** The source character at a position (1-based line/col). */
  const at = (lines: string[], p: { line: number; col: number }): string | undefined => lines[p.line - 1]?.[p.col - 1];

  const styles: Array<{ style: string; yaml: string; text: string; line1: [number, number, number]; line2: [number, number, number] }> = [
    // [offset in the expression text, expected line, expected col]
    {
      style: 'block literal |',
      yaml: '|\n        source.ip == "1" &&\n          destination.port == 80\n',
      text: 'source.ip == "1" &&\n  destination.port == 80\n',
      line1: [7, 9, 16], // 'i' of "ip"
      line2: [22 + 12, 10, 23], // "destination.port": offset of 'p' in "port"
    },
    {
      style: 'plain, folded across lines',
      yaml: 'source.ip == "1" &&\n        destination.port == 80',
      text: 'source.ip == "1" && destination.port == 80',
      line1: [7, 8, 20],
      line2: [20 + 12, 9, 21],
    },
    {
      style: "single-quoted with '' escapes",
      yaml: "'source.ip == ''1'' &&\n        destination.port == 80'",
      text: "source.ip == '1' && destination.port == 80",
      line1: [13, 8, 27], // a quote written '' maps to the first of its two source quotes
      line2: [20 + 12, 9, 21],
    },
    {
      style: 'double-quoted with \\" escapes and folding',
      yaml: '"source.ip == \\"1\\" &&\n        destination.port == 80"',
      text: 'source.ip == "1" && destination.port == 80',
      line1: [13, 8, 27], // a quote written \" maps to its backslash
      line2: [20 + 12, 9, 21],
    },
    {
      style: 'double-quoted with an escaped line break',
      yaml: '"source.ip == \\"1\\" && desti\\\n        nation.port == 80"',
      text: 'source.ip == "1" && destination.port == 80',
      line1: [20, 8, 36], // 'd' of "desti"
      line2: [20 + 12, 9, 16], // 'p' of "port" on the continuation line
    },
    {
      style: 'block folded >-',
      yaml: '>-\n        source.ip == "1" &&\n        destination.port == 80\n',
      text: 'source.ip == "1" && destination.port == 80',
      line1: [7, 9, 16],
      line2: [20 + 12, 10, 21],
    },
    {
      style: 'block literal |- with an explicit indentation indicator',
      yaml: '|2-\n          a &&\n         b\n',
      // The indicator counts from the parent mapping's indentation (6), so content starts at 8.
      text: '  a &&\n b',
      line1: [2, 9, 11],
      line2: [8, 10, 10],
    },
  ];
  for (const s of styles) {
    it(`maps offsets back to the file: ${s.style}`, () => {
      const { expr, lines } = when(s.yaml);
      assert.equal(expr.text, s.text);
      for (const [offset, line, col] of [s.line1, s.line2]) {
        const p = expr.positionAt(offset);
        assert.deepEqual(p, { line, col }, `offset ${offset} ("${expr.text[offset]}")`);
        // Where the value character is not an escape, the file holds that very character.
        if (!/['"]/.test(expr.text[offset]!)) assert.equal(at(lines, p), expr.text[offset]);
      }
    });
  }

  it('maps every non-escape character to itself for each style', () => {
    for (const s of styles) {
      const { expr, lines } = when(s.yaml);
      for (let i = 0; i < expr.text.length; i++) {
        const ch = expr.text[i]!;
        if (ch === ' ' || ch === '\n' || ch === "'" || ch === '"') continue;
        assert.equal(at(lines, expr.positionAt(i)), ch, `${s.style}: offset ${i}`);
      }
    }
  });

  it('agrees with `yaml` on every style it prints (deterministic random values, folded at 20 columns)', () => {
    let seed = 42;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const pieces = ['a', 'b', ' ', '  ', '&&', '"', "'", '\\', '\n', '\n\n', 'xyz', '(', '==', '\t', '#', ':', 'é', '😀'];
    const types = ['PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE', 'BLOCK_LITERAL', 'BLOCK_FOLDED'] as const;
    let checked = 0;
    for (let n = 0; n < 1000; n++) {
      let v = '';
      for (let i = 0, len = 1 + Math.floor(rnd() * 25); i < len; i++) v += pieces[Math.floor(rnd() * pieces.length)];
      const doc = new Document({ when: v });
      (doc.get('when', true) as Scalar).type = types[n % types.length]!;
      const text = doc.toString({ lineWidth: 20, minContentWidth: 5 });
      const node = parseDocument(text, { keepSourceTokens: true }).get('when', true) as Scalar;
      if (node.value !== v) continue; // not representable in that style; `yaml` chose another
      const map = scalarOffsetMap(text, node, v);
      assert.ok(map.exact, `${node.type} ${JSON.stringify(text)}`);
      for (let i = 0; i < v.length; i++) {
        if (/[\s"'\\]/.test(v[i]!)) continue; // white space may be a fold; quotes/backslashes may be escapes
        assert.equal(text[map.offsets[i]!], v[i], `${node.type} ${JSON.stringify(text)} offset ${i}`);
      }
      // The runs an ExpressionSource keeps map every offset, the end included, exactly as the table does.
      const runs = compressOffsets(map.offsets);
      for (let i = 0; i < map.offsets.length; i++) assert.equal(sourceOffsetAt(runs, i), map.offsets[i], `runs of ${JSON.stringify(text)} at ${i}`);
      if (node.type === 'PLAIN' && !text.slice(node.range![0], node.range![1]).includes('\n')) assert.equal(runs.length, 2, `a one-line plain scalar is one run: ${runs}`);
      // The shortcut for verbatim one-line scalars agrees with the full decoder.
      assert.deepEqual(expressionRuns(text, node, v), runs, `shortcut runs of ${JSON.stringify(text)}`);
      checked++;
    }
    assert.ok(checked > 900, `checked ${checked}`);
  });

  it('maps escapes exactly where the verbatim shortcut must not apply', () => {
    for (const yamlText of ['w: "\\\\"\n', "w: 'it''s'\n", 'w: "a\\"b"\n', 'w: "\\x41b"\n', 'w: a\n  b\n', 'w: "a\n  b"\n', 'w: \'x\'\n', 'w: "x"  # c\n',
      // Regression: a single-quoted value ending in quotes is a prefix of its source followed by a
      // quote, yet every quote after the first is written doubled.
      "w: 'a'''\n", "w: 'destination.host == '''''\n", "w: ''''\n", "w: '''a'\n"]) {
      const node = parseDocument(yamlText, { keepSourceTokens: true }).get('w', true) as Scalar;
      const v = String(node.value);
      assert.deepEqual(expressionRuns(yamlText, node, v), compressOffsets(scalarOffsetMap(yamlText, node, v).offsets), JSON.stringify(yamlText));
    }
  });

  it('clamps offsets outside the text', () => {
    const { expr } = when('a == b');
    assert.deepEqual(expr.positionAt(-5), { line: 8, col: 13 });
    assert.deepEqual(expr.positionAt(0), { line: 8, col: 13 });
    assert.deepEqual(expr.positionAt(1000), { line: 8, col: 19 });
  });

  it('maps expressions in a later document of a file', () => {
    const text = `${HEAD}spec: { action: ALLOW, rules: [{ name: r, when: x }] }\n---\n${HEAD}spec:\n  action: ALLOW\n  selector: |\n    a &&\n      b\n  rules: [{ name: r, when: x }]\n`;
    const { documents } = parsePolicyDocuments(text, 'p.yaml');
    const sel = (documents[1] as AuthorizationPolicy).selector!;
    assert.deepEqual(sel.location, { file: 'p.yaml', line: 11, col: 13, path: 'spec.selector' });
    assert.deepEqual(sel.positionAt(sel.text.indexOf('b')), { line: 13, col: 7 });
  });
});

describe('findDuplicateNames', () => {
  it('reports the second occurrence per kind, naming the first', () => {
    const a = parsePolicyDocuments(`${HEAD}spec: { action: ALLOW, rules: [{ name: r, when: x }] }\n`, 'a.yaml').documents;
    const b = parsePolicyDocuments(`# b\n${HEAD}spec: { action: DENY, rules: [{ name: r, when: x }] }\n`
      + `---\n${TEST_HEAD.replace('name: t', 'name: p')}spec: { cases: [{ name: c, input: {}, expect: { decision: deny } }] }\n`, 'b.yaml').documents;
    assert.equal(b.length, 2);
    const d = findDuplicateNames([...a, ...b]);
    assert.deepEqual(d, [{
      code: 'WG_POLICY_SCHEMA',
      message: 'duplicate AuthorizationPolicy name "p"; first defined at a.yaml:3:19',
      file: 'b.yaml', line: 4, col: 19, path: 'metadata.name', severity: 'error',
    }]);
    assert.deepEqual(findDuplicateNames(a), []);
  });
});

// ---------------------------------------------------------------------------------------------
// JSON Schemas: kept equal to what documents.ts accepts, and the fixtures validate against them.
// No JSON Schema validator is installed (no new dependencies), so a small draft-07 subset
// walker lives here: type, const, enum, required, properties, additionalProperties,
// propertyNames, items, minItems, minLength, maxLength, pattern, minimum, maximum, oneOf, $ref.
// ---------------------------------------------------------------------------------------------

type Schema = Record<string, unknown>;
const loadSchema = (name: string): Schema => JSON.parse(readFileSync(join(SCHEMA_DIR, name), 'utf8')) as Schema;

function resolveRef(ref: string, root: Schema): { schema: Schema; root: Schema } {
  const [file, pointer] = ref.split('#');
  const base = file ? loadSchema(file) : root;
  let s: unknown = base;
  for (const seg of (pointer ?? '').split('/').filter(Boolean)) s = (s as Schema)[seg];
  return { schema: s as Schema, root: base };
}

function validate(value: unknown, schema: Schema, root: Schema, path = ''): string[] {
  if (typeof schema.$ref === 'string') {
    const r = resolveRef(schema.$ref, root);
    return validate(value, r.schema, r.root, path);
  }
  const errors: string[] = [];
  const typeOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array'
    : typeof v === 'number' && Number.isInteger(v) ? 'integer' : typeof v);
  if (schema.type !== undefined) {
    const types = ([] as string[]).concat(schema.type as string | string[]);
    const t = typeOf(value);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) return [`${path}: type ${t} not in ${types.join('|')}`];
  }
  if ('const' in schema && value !== schema.const) errors.push(`${path}: not const ${String(schema.const)}`);
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) errors.push(`${path}: not in enum`);
  if (typeof value === 'string') {
    if (typeof schema.minLength === 'number' && value.length < schema.minLength) errors.push(`${path}: too short`);
    if (typeof schema.maxLength === 'number' && value.length > schema.maxLength) errors.push(`${path}: too long`);
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value)) errors.push(`${path}: pattern`);
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) errors.push(`${path}: < minimum`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) errors.push(`${path}: > maximum`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems) errors.push(`${path}: too few items`);
    if (schema.items) value.forEach((v, i) => errors.push(...validate(v, schema.items as Schema, root, `${path}[${i}]`)));
  }
  if (typeOf(value) === 'object') {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) errors.push(`${path}.${r}: required`);
    for (const [k, v] of Object.entries(obj)) {
      if (schema.propertyNames) errors.push(...validate(k, schema.propertyNames as Schema, root, `${path}{${k}}`));
      if (props[k]) errors.push(...validate(v, props[k]!, root, `${path}.${k}`));
      else if (schema.additionalProperties === false) errors.push(`${path}.${k}: additional property`);
      else if (typeof schema.additionalProperties === 'object') errors.push(...validate(v, schema.additionalProperties as Schema, root, `${path}.${k}`));
    }
  }
  if (Array.isArray(schema.oneOf)) {
    const passing = schema.oneOf.filter((s) => validate(value, s as Schema, root, path).length === 0).length;
    if (passing !== 1) errors.push(`${path}: ${passing} oneOf branches match`);
  }
  return errors;
}

describe('JSON Schemas', () => {
  const ap = loadSchema('authorization-policy.schema.json');
  const pt = loadSchema('policy-test.schema.json');
  const keys = (s: Schema, root: Schema): string[] => {
    const r = typeof s.$ref === 'string' ? resolveRef(s.$ref, root).schema : s;
    return Object.keys(r.properties as object);
  };
  const prop = (s: Schema, root: Schema, ...names: string[]): Schema => {
    let cur = s;
    for (const n of names) {
      if (typeof cur.$ref === 'string') cur = resolveRef(cur.$ref, root).schema;
      cur = n === '*' ? (cur.items as Schema) : (cur.properties as Record<string, Schema>)[n]!;
    }
    return typeof cur.$ref === 'string' ? resolveRef(cur.$ref, root).schema : cur;
  };

  it('property names equal the fields documents.ts accepts', () => {
    const table: Array<[Schema, string[], readonly string[]]> = [
      [ap, [], DOCUMENT_FIELDS.document],
      [pt, [], DOCUMENT_FIELDS.document],
      [ap, ['metadata'], DOCUMENT_FIELDS.metadata],
      [pt, ['metadata'], DOCUMENT_FIELDS.metadata],
      [ap, ['spec'], DOCUMENT_FIELDS.authorizationPolicySpec],
      [ap, ['spec', 'variables', '*'], DOCUMENT_FIELDS.variable],
      [ap, ['spec', 'rules', '*'], DOCUMENT_FIELDS.rule],
      [pt, ['spec'], DOCUMENT_FIELDS.policyTestSpec],
      [pt, ['spec', 'cases', '*'], DOCUMENT_FIELDS.testCase],
      [pt, ['spec', 'cases', '*', 'input'], DOCUMENT_FIELDS.input],
      [pt, ['spec', 'cases', '*', 'input', 'source'], DOCUMENT_FIELDS.inputSource],
      [pt, ['spec', 'cases', '*', 'input', 'destination'], DOCUMENT_FIELDS.inputDestination],
      [pt, ['spec', 'cases', '*', 'input', 'request'], DOCUMENT_FIELDS.inputRequest],
      [pt, ['spec', 'cases', '*', 'input', 'connection'], DOCUMENT_FIELDS.inputConnection],
      [pt, ['spec', 'cases', '*', 'expect'], DOCUMENT_FIELDS.expect],
    ];
    for (const [schema, path, fields] of table) {
      const s = prop(schema, schema, ...path);
      assert.deepEqual(keys(s, schema), [...fields], path.join('.'));
      assert.equal(s.additionalProperties, false, `${path.join('.')} must refuse unknown fields`);
    }
  });

  it('describes every field (editor hover docs)', () => {
    const walk = (s: Schema, root: Schema, path: string, seen: Set<Schema>): void => {
      if (seen.has(s)) return;
      seen.add(s);
      if (typeof s.$ref === 'string') return walk(resolveRef(s.$ref, root).schema, root, path, seen);
      for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, Schema>)) {
        const target = typeof v.$ref === 'string' ? resolveRef(v.$ref, root).schema : v;
        assert.ok(typeof target.description === 'string' && target.description.length > 5, `${path}.${k} has no description`);
        walk(v, root, `${path}.${k}`, seen);
      }
      if (s.items) walk(s.items as Schema, root, `${path}[]`, seen);
    };
    walk(ap, ap, '', new Set());
    walk(pt, pt, '', new Set());
  });

  it('every fixture document validates against waygate-policy.schema.json (exactly one kind)', async () => {
    const { parseAllDocuments } = await import('yaml');
    const top = loadSchema('waygate-policy.schema.json');
    let count = 0;
    for (const f of fixtureFiles) {
      for (const doc of parseAllDocuments(readFileSync(join(FIXTURES, f), 'utf8'))) {
        const value = doc.toJS();
        if (value === null) continue;
        assert.deepEqual(validate(value, top, top), [], f);
        count++;
      }
    }
    assert.ok(count >= 5);
  });

  it('the schema refuses what documents.ts refuses (spot checks)', () => {
    const top = loadSchema('waygate-policy.schema.json');
    const base = { apiVersion: 'waygate.dev/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'p' } };
    const ok = { ...base, spec: { action: 'ALLOW', rules: [{ name: 'r', when: 'x' }] } };
    assert.deepEqual(validate(ok, top, top), []);
    for (const bad of [
      { ...base, spec: { action: 'ALLOW', rules: [{ name: 'r', when: 'x' }], rulez: [] } },
      { ...base, spec: { action: 'PERMIT', rules: [{ name: 'r', when: 'x' }] } },
      { ...base, spec: { action: 'ALLOW', rules: [] } },
      { ...base, metadata: { name: 'Bad_Name' }, spec: ok.spec },
      { ...base, kind: 'Policy', spec: ok.spec },
    ]) {
      assert.notDeepEqual(validate(bad, top, top), [], JSON.stringify(bad));
      assert.notEqual(parsePolicyDocuments(JSON.stringify(bad), 'j.yaml').diagnostics.length, 0, JSON.stringify(bad));
    }
  });
});
