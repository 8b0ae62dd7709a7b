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

describe('lint: header reads, header names and address literals', () => {
  const table: Case[] = [
    {
      name: 'an unguarded header read in an enforced DENY rule denies every tunnel without the header',
      text: policy('p', `  action: DENY
  rules:
    - name: tenant
      when: request.headers["x-tenant"] == "evil"
`),
      want: ['9:warning:WG_LINT_UNGUARDED_READ'],
    },
    {
      name: 'every guard form the analyzer sees protects the read',
      text: policy('p', `  action: DENY
  variables:
    - name: hasTeam
      expression: '"x-team" in request.headers'
  rules:
    - name: in
      when: '"x-tenant" in request.headers && request.headers["x-tenant"] == "evil"'
    - name: has-after
      when: request.headers.tenant == "evil" && has(request.headers.tenant)
    - name: or-absent
      when: '!("x-a" in request.headers) || request.headers["x-a"] == "1"'
    - name: ternary
      when: 'has(request.baggage.env) ? request.baggage.env == "dev" : false'
    - name: variable
      when: variables.hasTeam && request.headers["x-team"] == "red"
    - name: iterated
      when: request.headers.exists(k, k.startsWith("x-debug-") && request.headers[k] == "1")
`),
      want: [],
    },
    {
      name: 'a guard for another header, or on the wrong branch, does not count',
      text: policy('p', `  action: DENY
  rules:
    - name: other
      when: '"x-a" in request.headers && request.headers["x-b"] == "1"'
    - name: else-branch
      when: '"x" in request.headers ? true : request.headers.x == "1"'
`),
      want: ['9:warning:WG_LINT_UNGUARDED_READ', '11:warning:WG_LINT_UNGUARDED_READ'],
    },
    {
      name: 'where a failed read is a no-match (ALLOW rules, AUDIT, DryRun) it is not reported',
      text: policy('a', `  action: ALLOW
  rules:
    - name: r
      when: request.headers["x-tenant"] == "acme"
`) + '---\n' + policy('b', `  action: DENY
  mode: DryRun
  rules:
    - name: r
      when: request.headers["x-tenant"] == "evil"
`) + '---\n' + policy('c', `  action: AUDIT
  rules:
    - name: r
      when: request.headers["x-tenant"] == "evil"
`),
      want: [],
    },
    {
      name: 'unguarded reads in enforced selectors (DENY and ALLOW) and DENY variables',
      text: policy('d', `  action: DENY
  selector: request.baggage["env"] == "dev"
  variables:
    - name: evil
      expression: request.headers["x-tenant"] == "evil"
  rules:
    - name: r
      when: variables.evil
`) + '---\n' + policy('a', `  action: ALLOW
  selector: request.headers["x-team"] == "red"
  rules:
    - name: r
      when: source.namespace == "prod"
`),
      want: ['7:warning:WG_LINT_UNGUARDED_READ', '10:warning:WG_LINT_UNGUARDED_READ', '21:warning:WG_LINT_UNGUARDED_READ'],
    },
    {
      name: 'a header name with capital letters can never match (a capitalised read is one error, not also a warning)',
      text: policy('p', `  action: DENY
  rules:
    - name: caps
      when: request.headers["X-Tenant"] == "evil"
    - name: caps-guard
      when: '"X-Team" in request.headers && request.headers["x-team"] == "red"'
    - name: baggage-is-case-sensitive
      when: '"Env" in request.baggage && request.baggage["Env"] == "dev"'
`),
      // The capitalised guard guards nothing, so the lower-case read it was meant for is unguarded too.
      want: ['9:error:WG_LINT_HEADER_CASE', '11:error:WG_LINT_HEADER_CASE', '11:warning:WG_LINT_UNGUARDED_READ'],
    },
    {
      name: 'non-canonical address literals compared with source.ip / destination.ip',
      text: policy('p', `  action: ALLOW
  rules:
    - name: mapped
      when: source.ip == "::ffff:10.0.0.1"
    - name: list
      when: destination.ip in ["010.0.0.1", "FD00::1", "fd00::1", "10.0.0.1"]
    - name: reversed
      when: '"fd00:0:0:0:0:0:0:1" != destination.ip'
    - name: fine
      when: source.ip == "10.0.0.1" || destination.ip == "" || ip(source.ip) == ip("::ffff:10.0.0.1")
`),
      want: [
        '9:warning:WG_LINT_IP_LITERAL',
        '11:warning:WG_LINT_IP_LITERAL',
        '11:warning:WG_LINT_IP_LITERAL',
        '13:warning:WG_LINT_IP_LITERAL',
      ],
    },
    {
      name: 'a CIDR literal with host bits set is masked',
      text: policy('p', `  action: DENY
  rules:
    - name: host-bits
      when: cidr("10.0.0.5/8").containsIP(source.ip) || cidr("fd00::/8").containsCIDR("fd00::1/64")
    - name: fine
      when: cidr("10.0.0.0/8").containsIP(destination.ip) || cidr("10.0.0.5/32").containsIP(source.ip)
`),
      want: ['9:warning:WG_LINT_CIDR_HOST_BITS', '9:warning:WG_LINT_CIDR_HOST_BITS'],
    },
  ];
  for (const c of table) {
    it(c.name, () => {
      assert.deepEqual(summary(lintCompiled(c.text)), c.want);
    });
  }

  it('points at the read and suggests the guard', () => {
    const [d] = lintCompiled(policy('p', `  action: DENY
  rules:
    - name: tenant
      when: source.namespace == "dev" && request.headers["x-tenant"] == "evil"
`));
    assert.ok(d);
    assert.equal(d.code, 'WG_LINT_UNGUARDED_READ');
    // `      when: ` is 12 columns, `source.namespace == "dev" && ` 29 more.
    assert.equal(d.col, 42);
    assert.equal(d.path, 'spec.rules[0].when');
    assert.match(d.message, /request\.headers\["x-tenant"\] is read without checking that it is present/);
    assert.match(d.message, /counts as a match: every such tunnel is denied \(reason eval_error\)/);
    assert.match(d.message, /Guard the read: "x-tenant" in request\.headers && request\.headers\["x-tenant"\] == "\.\.\."/);
  });

  it('names the fix for case, address and CIDR findings', () => {
    const found = lintCompiled(policy('p', `  action: ALLOW
  rules:
    - name: r
      when: '"X-Team" in request.headers && source.ip == "FD00::1" && cidr("10.0.0.5/8").containsIP(destination.ip)'
`));
    const msg = (code: string) => found.find((d) => d.code === code)?.message ?? '';
    assert.match(msg('WG_LINT_HEADER_CASE'), /RFC 9113 §8\.2\.1.*write "x-team"/);
    assert.match(msg('WG_LINT_IP_LITERAL'), /write "fd00::1", or compare parsed addresses: ip\(source\.ip\) == ip\("FD00::1"\)/);
    assert.match(msg('WG_LINT_CIDR_HOST_BITS'), /it is the block 10\.0\.0\.0\/8/);
  });

  it('also runs on documents that did not compile', () => {
    const text = policy('p', `  action: DENY
  rules:
    - name: r
      when: request.headers["X-Tenant"] == "evil" && source.nope == "x"
`);
    const parsed = parsePolicyDocuments(text, 'p.yaml');
    assert.equal(compileFromTexts([{ path: 'p.yaml', text }], 1).ok, false);
    assert.deepEqual(summary(lintPolicies(parsed.documents)), ['9:error:WG_LINT_HEADER_CASE']);
  });
});
