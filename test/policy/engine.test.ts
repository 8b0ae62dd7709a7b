/**
 * The decision-order table (docs/design.md §3 "Semantics", stated once as a table), and the
 * property test proving the rule index decides exactly like a full scan.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decide, decideWith, type CandidateStrategy } from '../../src/policy/engine.ts';
import { compileFromTexts } from '../../src/policy/load.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import type { DefaultAction, Decision } from '../../src/policy/decision.ts';
import type { PolicySnapshot } from '../../src/policy/snapshot.ts';
import type { PolicyTestInput } from '../../src/policy/model.ts';
import { seededRandom as prng } from '../../src/util/seeded-random.ts';

interface P {
  name: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  mode?: 'Enforce' | 'DryRun';
  selector?: string;
  variables?: Record<string, string>;
  rules: Record<string, string>;
}

/** Policies as YAML documents (JSON is YAML), compiled through the real loader. */
function snapshotOf(policies: readonly P[]): PolicySnapshot {
  const text = policies
    .map((p) =>
      JSON.stringify({
        apiVersion: 'waygate.dev/v1alpha1',
        kind: 'AuthorizationPolicy',
        metadata: { name: p.name },
        spec: {
          action: p.action,
          ...(p.mode ? { mode: p.mode } : {}),
          ...(p.selector ? { selector: p.selector } : {}),
          ...(p.variables ? { variables: Object.entries(p.variables).map(([name, expression]) => ({ name, expression })) } : {}),
          rules: Object.entries(p.rules).map(([name, when]) => ({ name, when })),
        },
      }),
    )
    .join('\n---\n');
  // No policies is no file at all (an empty file is a load error: WG_POLICY_EMPTY).
  const r = compileFromTexts(policies.length === 0 ? [] : [{ path: 'table.yaml', text }], 7);
  if (!r.ok) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.snapshot;
}

const FRONTEND = 'spiffe://cluster.local/ns/prod/sa/frontend';
const BAD = 'spiffe://cluster.local/ns/prod/sa/bad';
const OTHER_TD = 'spiffe://other.example/ns/prod/sa/frontend';

interface Case {
  name: string;
  policies: P[];
  input: PolicyTestInput;
  defaultAction?: DefaultAction;
  expect: {
    decision: 'allow' | 'deny';
    reason: Decision['reason'];
    policy?: string | null;
    rule?: string | null;
    audit?: string[];
    dryRun?: { decision: 'allow' | 'deny'; reason: Decision['reason']; wouldChange: boolean; matches: string[] } | null;
    evalErrors?: string[];
  };
}

const allowFrontend: P = { name: 'allow-frontend', action: 'ALLOW', rules: { frontend: `source.principal == "${FRONTEND}"` } };
const denyBad: P = { name: 'deny-bad', action: 'DENY', rules: { bad: `source.principal == "${BAD}"` } };
const fromFrontend: PolicyTestInput = { source: { principal: FRONTEND, ip: '10.0.0.5', port: 43122 }, destination: { ip: '10.0.1.7', port: 8080 } };
const fromBad: PolicyTestInput = { source: { principal: BAD, ip: '10.0.0.6', port: 43123 }, destination: { ip: '10.0.1.7', port: 8080 } };
const noIdentity: PolicyTestInput = { source: { ip: '10.0.0.9', port: 5000 }, destination: { ip: '10.0.1.7', port: 8080 } };
const missingHeaderDeny: P = { name: 'deny-tenant', action: 'DENY', rules: { evil: 'request.headers["x-tenant"] == "evil"' } };
const missingHeaderAllow: P = { name: 'allow-tenant', action: 'ALLOW', rules: { acme: 'request.headers["x-tenant"] == "acme"' } };

const CASES: Case[] = [
  { name: 'no policies, defaultAction DENY', policies: [], input: fromFrontend, expect: { decision: 'deny', reason: 'default_deny', policy: null, rule: null, dryRun: null } },
  { name: 'no policies, defaultAction ALLOW', policies: [], input: fromFrontend, defaultAction: 'ALLOW', expect: { decision: 'allow', reason: 'default_allow', policy: null } },
  { name: 'only DENY, not matching -> default DENY', policies: [denyBad], input: fromFrontend, expect: { decision: 'deny', reason: 'default_deny' } },
  { name: 'only DENY, not matching -> default ALLOW', policies: [denyBad], input: fromFrontend, defaultAction: 'ALLOW', expect: { decision: 'allow', reason: 'default_allow' } },
  { name: 'only DENY, matching', policies: [denyBad], input: fromBad, defaultAction: 'ALLOW', expect: { decision: 'deny', reason: 'explicit_deny', policy: 'deny-bad', rule: 'bad' } },
  { name: 'ALLOW present, none matches -> no_allow_match (even with defaultAction ALLOW)', policies: [allowFrontend], input: fromBad, defaultAction: 'ALLOW', expect: { decision: 'deny', reason: 'no_allow_match', policy: null, rule: null } },
  { name: 'ALLOW matches', policies: [allowFrontend], input: fromFrontend, expect: { decision: 'allow', reason: 'allowed', policy: 'allow-frontend', rule: 'frontend' } },
  {
    name: 'DENY and ALLOW both match -> deny wins',
    policies: [{ name: 'allow-all-prod', action: 'ALLOW', rules: { prod: 'source.namespace == "prod"' } }, { name: 'deny-8080', action: 'DENY', rules: { port: 'destination.port == 8080' } }],
    input: fromFrontend,
    expect: { decision: 'deny', reason: 'explicit_deny', policy: 'deny-8080', rule: 'port' },
  },
  {
    name: 'first DENY in ordinal order names the denial',
    policies: [{ name: 'deny-a', action: 'DENY', rules: { one: 'destination.port == 1', two: 'source.namespace == "prod"' } }, { name: 'deny-b', action: 'DENY', rules: { port: 'destination.port == 8080' } }],
    input: fromFrontend,
    expect: { decision: 'deny', reason: 'explicit_deny', policy: 'deny-a', rule: 'two' },
  },
  {
    name: 'selector excludes the only ALLOW policy -> default',
    policies: [{ ...allowFrontend, selector: 'destination.port == 9090' }],
    input: fromBad,
    defaultAction: 'ALLOW',
    expect: { decision: 'allow', reason: 'default_allow' },
  },
  {
    name: 'selector excludes a DENY policy',
    policies: [{ ...denyBad, selector: 'destination.port == 9090' }],
    input: fromBad,
    expect: { decision: 'deny', reason: 'default_deny' },
  },
  {
    name: 'dry-run DENY would change an allow (reported, not applied)',
    policies: [allowFrontend, { name: 'dry-deny', action: 'DENY', mode: 'DryRun', rules: { all8080: 'destination.port == 8080' } }],
    input: fromFrontend,
    expect: {
      decision: 'allow', reason: 'allowed', policy: 'allow-frontend', rule: 'frontend',
      dryRun: { decision: 'deny', reason: 'explicit_deny', wouldChange: true, matches: ['dry-deny/all8080'] },
    },
  },
  {
    name: 'dry-run ALLOW would change a default deny (reported, not applied)',
    policies: [{ name: 'dry-allow', action: 'ALLOW', mode: 'DryRun', rules: { frontend: `source.principal == "${FRONTEND}"` } }],
    input: fromFrontend,
    expect: {
      decision: 'deny', reason: 'default_deny',
      dryRun: { decision: 'allow', reason: 'allowed', wouldChange: true, matches: ['dry-allow/frontend'] },
    },
  },
  {
    name: 'dry-run ALLOW that matches nothing turns default_allow into no_allow_match',
    policies: [{ name: 'dry-allow', action: 'ALLOW', mode: 'DryRun', rules: { frontend: `source.principal == "${FRONTEND}"` } }],
    input: fromBad,
    defaultAction: 'ALLOW',
    expect: { decision: 'allow', reason: 'default_allow', dryRun: { decision: 'deny', reason: 'no_allow_match', wouldChange: true, matches: [] } },
  },
  {
    name: 'dry-run policy that agrees: wouldChange false',
    policies: [allowFrontend, { name: 'dry-allow', action: 'ALLOW', mode: 'DryRun', rules: { prod: 'source.namespace == "prod"' } }],
    input: fromFrontend,
    expect: { decision: 'allow', reason: 'allowed', policy: 'allow-frontend', dryRun: { decision: 'allow', reason: 'allowed', wouldChange: false, matches: ['dry-allow/prod'] } },
  },
  {
    name: 'dry-run policy whose selector excludes the tunnel: dryRun is null',
    policies: [allowFrontend, { name: 'dry-deny', action: 'DENY', mode: 'DryRun', selector: 'destination.port == 1', rules: { all: 'true' } }],
    input: fromFrontend,
    expect: { decision: 'allow', reason: 'allowed', dryRun: null },
  },
  {
    name: 'AUDIT matches are listed and never change the verdict',
    policies: [
      { name: 'audit-prod', action: 'AUDIT', rules: { prod: 'source.namespace == "prod"', never: 'destination.port == 1', also: 'destination.port == 8080' } },
      denyBad,
    ],
    input: fromFrontend,
    defaultAction: 'ALLOW',
    expect: { decision: 'allow', reason: 'default_allow', audit: ['audit-prod/prod', 'audit-prod/also'] },
  },
  {
    name: 'eval error in a DENY rule denies (fail closed)',
    policies: [missingHeaderDeny, allowFrontend],
    input: fromFrontend,
    expect: { decision: 'deny', reason: 'eval_error', policy: 'deny-tenant', rule: 'evil', evalErrors: ['deny-tenant/evil'] },
  },
  {
    name: 'eval error in an ALLOW rule does not allow',
    policies: [missingHeaderAllow],
    input: fromFrontend,
    defaultAction: 'ALLOW',
    expect: { decision: 'deny', reason: 'eval_error', policy: 'allow-tenant', rule: 'acme', evalErrors: ['allow-tenant/acme'] },
  },
  {
    name: 'eval error in an ALLOW rule, another ALLOW rule matches -> allowed, error listed',
    policies: [missingHeaderAllow, allowFrontend],
    input: fromFrontend,
    expect: { decision: 'allow', reason: 'allowed', policy: 'allow-frontend', rule: 'frontend', evalErrors: ['allow-tenant/acme'] },
  },
  {
    name: 'CEL absorbs an error under a false conjunct (not an eval error)',
    policies: [{ name: 'deny-tenant', action: 'DENY', rules: { evil: 'destination.port == 1 && request.headers["x-tenant"] == "evil"' } }],
    input: fromFrontend,
    expect: { decision: 'deny', reason: 'default_deny', evalErrors: [] },
  },
  {
    name: 'selector error in a DENY policy: the policy applies (fail closed)',
    policies: [{ ...denyBad, selector: 'request.headers["x-zone"] == "a"' }],
    input: fromBad,
    defaultAction: 'ALLOW',
    expect: { decision: 'deny', reason: 'explicit_deny', policy: 'deny-bad', rule: 'bad', evalErrors: ['deny-bad/(selector)'] },
  },
  {
    name: 'selector error in an ALLOW policy: no rule of it allows, and default_allow is not reached',
    policies: [{ ...allowFrontend, selector: 'request.headers["x-zone"] == "a"' }],
    input: fromFrontend,
    defaultAction: 'ALLOW',
    expect: { decision: 'deny', reason: 'eval_error', policy: 'allow-frontend', rule: '(selector)', evalErrors: ['allow-frontend/(selector)'] },
  },
  {
    name: 'variable error: the rule reading it errors (DENY -> deny)',
    policies: [{ name: 'deny-tenant', action: 'DENY', variables: { tenant: 'request.headers["x-tenant"]' }, rules: { evil: 'variables.tenant == "evil"', port: 'destination.port == 1' } }],
    input: fromFrontend,
    expect: { decision: 'deny', reason: 'eval_error', policy: 'deny-tenant', rule: 'evil', evalErrors: ['deny-tenant/evil'] },
  },
  {
    name: 'variable error in an ALLOW policy: the rule reading it errors, one not reading it still allows',
    policies: [{ name: 'allow-tenant', action: 'ALLOW', variables: { tenant: 'request.headers["x-tenant"]' }, rules: { acme: 'variables.tenant == "acme"', frontend: `source.principal == "${FRONTEND}"` } }],
    input: fromFrontend,
    expect: { decision: 'allow', reason: 'allowed', policy: 'allow-tenant', rule: 'frontend', evalErrors: ['allow-tenant/acme'] },
  },
  {
    name: 'variables see earlier variables; header present evaluates normally',
    policies: [{ name: 'allow-tenant', action: 'ALLOW', variables: { tenant: 'request.headers["x-tenant"]', acme: 'variables.tenant == "acme"' }, rules: { acme: 'variables.acme && destination.port == 8080' } }],
    input: { ...fromBad, request: { headers: { 'X-Tenant': 'acme' } } },
    expect: { decision: 'allow', reason: 'allowed', policy: 'allow-tenant', rule: 'acme', evalErrors: [] },
  },
  {
    name: 'missing identity: positive identity predicates are false',
    policies: [{ name: 'allow-prod', action: 'ALLOW', rules: { prod: 'source.namespace == "prod"', td: 'source.trustDomain == "cluster.local"' } }],
    input: noIdentity,
    expect: { decision: 'deny', reason: 'no_allow_match', evalErrors: [] },
  },
  {
    name: 'negative matcher matches an identity-less context (Istio notPrincipals)',
    policies: [{ name: 'deny-unauthenticated', action: 'DENY', rules: { plaintext: '!source.principal.startsWith("spiffe://cluster.local/")' } }, allowFrontend],
    input: noIdentity,
    expect: { decision: 'deny', reason: 'explicit_deny', policy: 'deny-unauthenticated', rule: 'plaintext' },
  },
  {
    name: 'negative matcher does not match a mesh identity',
    policies: [{ name: 'deny-unauthenticated', action: 'DENY', rules: { plaintext: '!source.principal.startsWith("spiffe://cluster.local/")' } }, allowFrontend],
    input: fromFrontend,
    expect: { decision: 'allow', reason: 'allowed', policy: 'allow-frontend' },
  },
  {
    name: 'CIDR containment, IPv4',
    policies: [{ name: 'allow-net', action: 'ALLOW', rules: { v4: 'cidr("10.0.0.0/24").containsIP(source.ip)' } }],
    input: fromFrontend,
    expect: { decision: 'allow', reason: 'allowed', rule: 'v4' },
  },
  {
    name: 'CIDR containment, IPv4 outside',
    policies: [{ name: 'allow-net', action: 'ALLOW', rules: { v4: 'cidr("10.0.0.0/24").containsIP(source.ip)' } }],
    input: { ...fromFrontend, source: { ip: '10.0.9.5' } },
    expect: { decision: 'deny', reason: 'no_allow_match' },
  },
  {
    name: 'CIDR containment, IPv6',
    policies: [{ name: 'allow-net', action: 'ALLOW', rules: { v6: 'cidr("fd00:1::/32").containsIP(source.ip)' } }],
    input: { ...fromFrontend, source: { ip: 'FD00:0001:0:0::5' } },
    expect: { decision: 'allow', reason: 'allowed', rule: 'v6' },
  },
  {
    name: 'CIDR containment, IPv4-mapped IPv6 source is IPv4',
    policies: [{ name: 'allow-net', action: 'ALLOW', rules: { v4: 'cidr("10.0.0.0/24").containsIP(source.ip) && source.ip == "10.0.0.5"' } }],
    input: { ...fromFrontend, source: { ip: '::ffff:10.0.0.5' } },
    expect: { decision: 'allow', reason: 'allowed', rule: 'v4' },
  },
  {
    name: 'principal prefix (startsWith)',
    policies: [{ name: 'allow-ns', action: 'ALLOW', rules: { ns: 'source.principal.startsWith("spiffe://cluster.local/ns/prod/")' } }],
    input: fromBad,
    expect: { decision: 'allow', reason: 'allowed', rule: 'ns' },
  },
  {
    name: 'principal suffix (endsWith) across trust domains',
    policies: [{ name: 'allow-sa', action: 'ALLOW', rules: { sa: 'source.principal.endsWith("/sa/frontend")' } }, { name: 'deny-foreign', action: 'DENY', rules: { td: 'source.trustDomain != "cluster.local"' } }],
    input: { ...fromFrontend, source: { principal: OTHER_TD } },
    expect: { decision: 'deny', reason: 'explicit_deny', policy: 'deny-foreign', rule: 'td' },
  },
  {
    name: 'ALLOW scoped by selector to another port, defaultAction DENY',
    policies: [{ ...allowFrontend, selector: 'destination.port == 9090' }],
    input: fromFrontend,
    expect: { decision: 'deny', reason: 'default_deny' },
  },
];

describe('decision order (docs/design.md §3, Istio)', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const snapshot = snapshotOf(c.policies);
      const ctx = contextFromInput(c.input);
      const d = decide(snapshot, ctx, { defaultAction: c.defaultAction ?? 'DENY' });
      const e = c.expect;
      assert.equal(d.decision, e.decision, JSON.stringify(d));
      assert.equal(d.reason, e.reason, JSON.stringify(d));
      if (e.policy !== undefined) assert.equal(d.policy, e.policy);
      if (e.rule !== undefined) assert.equal(d.rule, e.rule);
      if (e.audit !== undefined) assert.deepEqual(d.audit.map((a) => `${a.policy}/${a.rule}`), e.audit);
      else assert.deepEqual(d.audit, []);
      if (e.evalErrors !== undefined) assert.deepEqual(d.evalErrors.map((a) => `${a.policy}/${a.rule}`), e.evalErrors);
      if (e.dryRun === null) assert.equal(d.dryRun, null);
      if (e.dryRun) {
        assert.ok(d.dryRun, 'dryRun outcome expected');
        assert.equal(d.dryRun.decision, e.dryRun.decision);
        assert.equal(d.dryRun.reason, e.dryRun.reason);
        assert.equal(d.dryRun.wouldChange, e.dryRun.wouldChange);
        assert.deepEqual(d.dryRun.matches.map((m) => `${m.policy}/${m.rule}`), e.dryRun.matches);
      }
      assert.deepEqual(d.snapshot, { version: 7, hash: snapshot.hash });
      // Every strategy agrees on the verdict; index and scan agree on everything.
      assert.deepEqual(decideWith(snapshot, ctx, { defaultAction: c.defaultAction ?? 'DENY' }, 'scan'), d);
      const raw = decideWith(snapshot, ctx, { defaultAction: c.defaultAction ?? 'DENY' }, 'raw');
      assert.equal(raw.decision, d.decision);
    });
  }

  it('is pure: evalMicros comes only from the injected clock', () => {
    const snapshot = snapshotOf([allowFrontend]);
    let t = 1_000n;
    const clock = (): bigint => (t += 2_500n);
    const d = decide(snapshot, contextFromInput(fromFrontend), { defaultAction: 'DENY', clock });
    assert.equal(d.evalMicros, 2.5);
    const again = decide(snapshot, contextFromInput(fromFrontend), { defaultAction: 'DENY' });
    assert.equal(again.evalMicros, 0);
  });

  it('the snapshot is frozen', () => {
    const snapshot = snapshotOf([allowFrontend]);
    assert.ok(Object.isFrozen(snapshot));
    assert.ok(Object.isFrozen(snapshot.policies));
    assert.ok(Object.isFrozen(snapshot.policies[0]!.rules[0]));
    assert.throws(() => (snapshot.policies as unknown as unknown[]).push({}), TypeError);
  });
});


describe('rule index = full scan (property, seeded)', () => {
  const NAMESPACES = ['prod', 'dev', 'qa'];
  const SAS = ['api', 'web', 'db', 'batch'];
  const PORTS = [80, 443, 8080, 9090];
  const principal = (ns: string, sa: string): string => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

  function randomPolicies(rand: () => number, n: number): P[] {
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const atom = (): string => {
      // Cases 9-15 (CIDR, prefix, suffix keys) are drawn a third of the time.
      switch (rand() < 2 / 3 ? Math.floor(rand() * 9) : rand() < 0.9 ? 9 + Math.floor(rand() * 7) : 16) {
        case 0: return `source.principal == "${principal(pick(NAMESPACES), pick(SAS))}"`;
        case 1: return `destination.port == ${pick(PORTS)}`;
        case 2: return `destination.port in [${pick(PORTS)}, ${pick(PORTS)}]`;
        case 3: return `source.namespace == "${pick(NAMESPACES)}"`;
        case 4: return `source.serviceAccount != "${pick(SAS)}"`;
        case 5: return `source.principal.endsWith("/sa/${pick(SAS)}")`;
        case 6: return `request.headers["x-tenant"] == "${pick(['acme', 'evil'])}"`; // errors when absent
        case 7: return `cidr("10.0.${Math.floor(rand() * 2)}.0/24").containsIP(source.ip)`;
        case 8: return `variables.v == "${pick(['acme', 'evil'])}"`;
        // CIDR keys: several prefix lengths and both families; the ip() form errors on "" and
        // destination.ip is "" for host authorities.
        case 9: return `cidr("10.0.${Math.floor(rand() * 3)}.${pick(['0/24', '0/16', '2/31', '1/32'])}").containsIP(${pick(['source.ip', 'ip(source.ip)'])})`;
        case 10: return `cidr("${pick(['fd00::/8', 'fd00::/64', 'fd00:0:0:1::/64', '::ffff:10.0.1.0/120'])}").containsIP(source.ip)`;
        case 11: return `(cidr("10.0.1.0/${pick([24, 30])}").containsIP(${pick(['destination.ip', 'ip(destination.ip)'])}) || cidr("10.0.${Math.floor(rand() * 2)}.0/16").containsIP(destination.ip))`;
        // Prefix / suffix keys, globMatch mapped onto them, and || of same-kind tests.
        case 12: return `source.principal.startsWith("spiffe://cluster.local/ns/${pick(NAMESPACES)}/")`;
        case 13: return `source.namespace.globMatch("${pick(['p*', 'de*', '*a', 'qa', '*od'])}")`;
        case 14: return `(destination.host.endsWith("${pick(['.svc', '.prod.svc', 'b.dev.svc'])}") || destination.host.globMatch("${pick(['*.local', 'api*'])}"))`;
        case 15: return `source.principal.globMatch("*/sa/${pick(SAS)}") || source.principal.startsWith("${pick(['spiffe://cluster.local/ns/qa', 'spiffe://other'])}")`;
        default: return rand() < 0.5 ? 'true' : `destination.ip == "10.0.1.${Math.floor(rand() * 3)}"`;
      }
    };
    const expr = (withVar: boolean, minAtoms = 1): string => {
      const parts: string[] = [];
      const k = minAtoms + Math.floor(rand() * 3);
      for (let i = 0; i < k; i++) {
        let a = atom();
        while (!withVar && a.startsWith('variables.')) a = atom();
        parts.push(a);
      }
      const wrapped = parts.map((a) => (a.includes(' || ') && !a.startsWith('(') ? `(${a})` : a));
      return rand() < 0.8 ? wrapped.join(' && ') : wrapped.join(' || ');
    };
    const out: P[] = [];
    for (let i = 0; i < n; i++) {
      const withVar = rand() < 0.3;
      const r = rand();
      const action = r < 0.15 ? 'DENY' : r < 0.75 ? 'ALLOW' : 'AUDIT';
      const rules: Record<string, string> = {};
      const nr = 1 + Math.floor(rand() * 4);
      // DENY rules get more conjuncts, so that some contexts get past them.
      for (let j = 0; j < nr; j++) rules[`r${j}`] = expr(withVar, action === 'DENY' ? 3 : 1);
      out.push({
        name: `p${i}`,
        action,
        ...(rand() < 0.2 ? { mode: 'DryRun' as const } : {}),
        ...(rand() < 0.5 ? { selector: expr(false) } : {}),
        ...(withVar ? { variables: { v: 'request.headers["x-tenant"]' } } : {}),
        rules,
      });
    }
    return out;
  }

  function randomInput(rand: () => number): PolicyTestInput {
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const id = rand() < 0.15 ? {} : { principal: principal(pick(NAMESPACES), pick(SAS)) };
    const v6 = rand() < 0.2;
    const sourceIp = v6
      ? pick(['fd00::1', 'fd00:0:0:1::5', '2001:db8::1', '::ffff:10.0.1.1'])
      : `10.0.${Math.floor(rand() * 3)}.${1 + Math.floor(rand() * 3)}`;
    // A host authority has no destination address yet ("", docs/design.md §3).
    const host = rand() < 0.25 ? pick(['api.prod.svc', 'db.dev.svc', 'x.local', 'api']) : undefined;
    return {
      source: { ...id, ip: sourceIp, port: 40000 },
      destination: host !== undefined
        ? { host, port: pick(PORTS), authority: `${host}:${pick(PORTS)}` }
        : { ip: `10.0.1.${Math.floor(rand() * 3)}`, port: pick(PORTS) },
      request: rand() < 0.5 ? { headers: { 'x-tenant': pick(['acme', 'evil', 'other']) } } : {},
    };
  }

  const reasons = new Map<string, number>();
  const kinds = new Map<string, number>();

  const SIZES = [2, 3, 5, 8, 12, 20, 30, 50];
  for (const [i, size] of SIZES.entries()) {
    const seed = i + 1;
    it(`seed ${seed}: ${size} policies x 150 contexts`, () => {
      const rand = prng(seed);
      const snapshot = snapshotOf(randomPolicies(rand, size));
      const strategies: CandidateStrategy[] = ['scan', 'raw'];
      let keyed = 0;
      for (const b of Object.values(snapshot.index)) {
        for (const m of b.maps) keyed += m.byValue.size;
        for (const c of b.cidrs) kinds.set('cidr', (kinds.get('cidr') ?? 0) + c.all.length);
        for (const a of b.affixes) for (const t of a.byLength) kinds.set(a.kind, (kinds.get(a.kind) ?? 0) + t.byHash.size);
      }
      assert.ok(keyed > 0, 'the generator produces indexable rules');
      for (let i = 0; i < 150; i++) {
        const ctx = contextFromInput(randomInput(rand));
        for (const defaultAction of ['DENY', 'ALLOW'] as const) {
          const indexed = decide(snapshot, ctx, { defaultAction });
          const [scan, raw] = strategies.map((s) => decideWith(snapshot, ctx, { defaultAction }, s));
          // The index is an exact accelerator of the pre-filtered scan ...
          assert.deepEqual(indexed, scan, `seed ${seed} case ${i}`);
          // ... and a raw scan of every rule and selector reaches the same verdict, audit list and
          // dry-run verdict. It may list more evalErrors (selectors the index proves irrelevant),
          // and so may say eval_error where the index says no_allow_match.
          assert.equal(indexed.decision, raw!.decision, `seed ${seed} case ${i} verdict`);
          assert.deepEqual(indexed.audit, raw!.audit);
          assert.equal(indexed.dryRun?.decision, raw!.dryRun?.decision);
          if (indexed.reason !== 'no_allow_match') assert.deepEqual([indexed.reason, indexed.policy, indexed.rule], [raw!.reason, raw!.policy, raw!.rule]);
          reasons.set(indexed.reason, (reasons.get(indexed.reason) ?? 0) + 1);
          for (const e of indexed.evalErrors) assert.ok(raw!.evalErrors.some((r) => r.policy === e.policy && r.rule === e.rule));
        }
      }
    });
  }

  it('the generated cases file entries under every key kind', () => {
    for (const k of ['cidr', 'prefix', 'suffix']) assert.ok((kinds.get(k) ?? 0) > 0, `no ${k}-keyed entry: ${JSON.stringify([...kinds])}`);
  });

  it('the generated cases reach every engine reason', () => {
    for (const r of ['allowed', 'default_allow', 'explicit_deny', 'no_allow_match', 'default_deny', 'eval_error']) {
      assert.ok((reasons.get(r) ?? 0) > 0, `no generated case ended in ${r}: ${JSON.stringify([...reasons])}`);
    }
  });
});
