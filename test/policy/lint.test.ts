import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePolicyDocuments } from '../../src/policy/documents.ts';
import { lintPolicies, stripStringLiterals, type LintDiagnostic } from '../../src/policy/lint.ts';
import { compileFromTexts } from '../../src/policy/load.ts';

/** One AuthorizationPolicy document; `spec` is indented YAML under `spec:`. */
function policy(name: string, spec: string): string {
  return `apiVersion: waygate.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\nspec:\n${spec}`;
}

function lintCompiled(text: string): LintDiagnostic[] {
  const loaded = compileFromTexts([{ path: 'p.yaml', text }], 1);
  if (!loaded.ok) assert.fail(`fixture does not load:\n${loaded.diagnostics.map((d) => d.message).join('\n')}`);
  return lintPolicies(loaded.snapshot);
}

function summary(list: readonly LintDiagnostic[]): string[] {
  return list.map((d) => `${d.line}:${d.severity}:${d.code}`);
}

interface Case {
  name: string;
  text: string;
  /** `line:severity:code` of every expected finding, sorted by position. */
  want: string[];
}

const ALLOW_FRONTEND = `  action: ALLOW
  rules:
    - name: frontend
      when: source.principal == "spiffe://cluster.local/ns/prod/sa/frontend"
`;

const cases: Case[] = [
  { name: 'a clean policy has no findings', text: policy('ok', ALLOW_FRONTEND), want: [] },
  {
    name: 'a catch-all enforced DENY makes every enforced ALLOW rule unreachable',
    text: policy('lockdown', `  action: DENY
  rules:
    - name: everything
      when: "true"
`) + '---\n' + policy('api', ALLOW_FRONTEND),
    // line 9: the DENY's `when`; line 18: the ALLOW rule's list item.
    want: ['9:warning:WG_LINT_DENY_ALL', '18:error:WG_LINT_UNREACHABLE'],
  },
  {
    name: 'a catch-all DENY behind a selector only covers what it selects',
    text: policy('lockdown', `  action: DENY
  selector: destination.port == 22
  rules:
    - name: everything
      when: "true"
`) + '---\n' + policy('api', ALLOW_FRONTEND),
    want: [],
  },
  {
    name: 'a catch-all DENY in DryRun changes no verdict',
    text: policy('lockdown', `  action: DENY
  mode: DryRun
  rules:
    - name: everything
      when: "true"
`) + '---\n' + policy('api', ALLOW_FRONTEND),
    want: [],
  },
  {
    name: 'an ALLOW rule that is the constant false never matches',
    text: policy('p', `  action: ALLOW
  rules:
    - name: off
      when: "false"
`),
    want: ['9:warning:WG_LINT_NEVER_MATCHES'],
  },
  {
    name: 'contradictory equalities on one attribute never match',
    text: policy('p', `  action: ALLOW
  rules:
    - name: two-ports
      when: destination.port == 80 && destination.port == 81
`),
    want: ['9:warning:WG_LINT_NEVER_MATCHES'],
  },
  {
    name: 'a rule contradicting its selector never matches',
    text: policy('p', `  action: ALLOW
  selector: destination.port == 8080
  rules:
    - name: metrics
      when: destination.port == 9090 && source.namespace == "monitoring"
`),
    want: ['10:warning:WG_LINT_NEVER_MATCHES'],
  },
  {
    name: 'overlapping value lists are fine',
    text: policy('p', `  action: ALLOW
  selector: destination.port in [8080, 9090]
  rules:
    - name: metrics
      when: destination.port == 9090 && source.namespace == "monitoring"
`),
    want: [],
  },
  {
    name: 'a principal literal that is not a SPIFFE ID never matches',
    text: policy('p', `  action: DENY
  rules:
    - name: typo
      when: source.principal == "cluster.local/ns/dev/sa/x"
`),
    want: ['9:warning:WG_LINT_NEVER_MATCHES'],
  },
  {
    name: 'a selector that is the constant false governs nothing (one finding, not one per rule)',
    text: policy('p', `  action: ALLOW
  selector: "false"
  rules:
    - name: a
      when: source.namespace == "a"
    - name: b
      when: source.namespace == "b"
`),
    want: ['7:warning:WG_LINT_NEVER_MATCHES'],
  },
  {
    name: 'AUDIT in DryRun is a mix-up',
    text: policy('p', `  action: AUDIT
  mode: DryRun
  rules:
    - name: db
      when: destination.port == 5432
`),
    want: ['4:warning:WG_LINT_AUDIT_DRYRUN'],
  },
  {
    name: 'rules after an unconditional rule of the same ALLOW policy never decide',
    text: policy('p', `  action: ALLOW
  selector: destination.port == 8080
  rules:
    - name: anyone
      when: "true"
    - name: frontend
      when: source.serviceAccount == "frontend"
`),
    want: ['11:warning:WG_LINT_SHADOWED'],
  },
  {
    name: 'every matching AUDIT rule is listed, so none shadows another',
    text: policy('p', `  action: AUDIT
  rules:
    - name: all
      when: "true"
    - name: db
      when: destination.port == 5432
`),
    want: [],
  },
  {
    name: 'an enforced ALLOW without selector or condition allows everything',
    text: policy('p', `  action: ALLOW
  rules:
    - name: anyone
      when: "true"
`),
    want: ['9:warning:WG_LINT_ALLOW_ALL'],
  },
  {
    name: 'an unused variable is reported at its list item',
    text: policy('p', `  action: ALLOW
  variables:
    - name: prod
      expression: source.namespace == "prod"
    - name: unused
      expression: source.serviceAccount == "x"
  rules:
    - name: r
      when: variables.prod
`),
    want: ['11:warning:WG_LINT_UNUSED_VARIABLE'],
  },
  {
    name: 'a variable read by another variable is used',
    text: policy('p', `  action: ALLOW
  variables:
    - name: prod
      expression: source.namespace == "prod"
    - name: front
      expression: variables.prod && source.serviceAccount == "frontend"
  rules:
    - name: r
      when: variables.front
`),
    want: [],
  },
];

describe('lintPolicies on a compiled snapshot', () => {
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(summary(lintCompiled(c.text)), c.want);
    });
  }

  it('locates every finding to the file and a field path', () => {
    const found = lintCompiled(policy('lockdown', `  action: DENY
  rules:
    - name: everything
      when: "true"
`) + '---\n' + policy('api', ALLOW_FRONTEND));
    const unreachable = found.find((d) => d.code === 'WG_LINT_UNREACHABLE');
    assert.ok(unreachable);
    assert.equal(unreachable.file, 'p.yaml');
    assert.equal(unreachable.path, 'spec.rules[0]');
    assert.match(unreachable.message, /lockdown\/everything \(p\.yaml:9:\d+\)/);
    const denyAll = found.find((d) => d.code === 'WG_LINT_DENY_ALL');
    assert.equal(denyAll?.path, 'spec.rules[0].when');
  });
});

describe('lintPolicies on parsed documents (the set did not compile)', () => {
  it('reports matches() at the call, which the loader refuses too', () => {
    const text = policy('p', `  action: ALLOW
  rules:
    - name: r
      when: source.serviceAccount.matches("^front")
`);
    const parsed = parsePolicyDocuments(text, 'p.yaml');
    assert.deepEqual(parsed.diagnostics, []);
    const found = lintPolicies(parsed.documents);
    assert.deepEqual(summary(found), ['9:error:WG_POLICY_FORBIDDEN']);
    // `      when: ` is 12 columns; `source.serviceAccount.` 22 more: `matches` starts at column 35.
    assert.equal(found[0]!.col, 35);
    assert.equal(found[0]!.path, 'spec.rules[0].when');
    const loaded = compileFromTexts([{ path: 'p.yaml', text }], 1);
    assert.equal(loaded.ok, false);
    if (!loaded.ok) assert.ok(loaded.diagnostics.some((d) => d.code === 'WG_POLICY_FORBIDDEN'));
  });

  it('ignores the word matches inside a string literal', () => {
    const text = policy('p', `  action: ALLOW
  rules:
    - name: r
      when: request.headers["x-note"] == "matches(x)"
`);
    assert.deepEqual(lintPolicies(parsePolicyDocuments(text, 'p.yaml').documents), []);
  });

  it('recognises the literal true without a compiler', () => {
    const text = policy('lockdown', `  action: DENY
  rules:
    - name: everything
      when: "true"
`) + '---\n' + policy('api', ALLOW_FRONTEND);
    assert.deepEqual(summary(lintPolicies(parsePolicyDocuments(text, 'p.yaml').documents)), [
      '9:warning:WG_LINT_DENY_ALL',
      '18:error:WG_LINT_UNREACHABLE',
    ]);
  });

  it('skips PolicyTest documents', () => {
    const text = `apiVersion: waygate.dev/v1alpha1
kind: PolicyTest
metadata: { name: t }
spec:
  cases:
    - name: c
      input: {}
      expect: { decision: deny }
`;
    const parsed = parsePolicyDocuments(text, 't.yaml');
    assert.equal(parsed.documents.length, 1);
    assert.deepEqual(lintPolicies(parsed.documents), []);
  });
});

describe('stripStringLiterals', () => {
  const table: [string, string][] = [
    ['a == "x(y)"', 'a == "    "'],
    ["a == 'it\\'s'", "a == '     '"],
    ['r"\\d" + x', 'r"  " + x'],
    ['"""a"b""" + c', '"""   """ + c'],
    ['no strings', 'no strings'],
  ];
  for (const [input, want] of table) {
    it(`blanks literals in ${input}`, () => {
      const got = stripStringLiterals(input);
      assert.equal(got, want);
      assert.equal(got.length, input.length);
    });
  }
});
