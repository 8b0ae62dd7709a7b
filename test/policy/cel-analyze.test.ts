import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { analyzeExpression, type VariableFacts } from '../../src/policy/cel/analyze.ts';
import type { IndexKey } from '../../src/policy/cel/compiled.ts';
import { createBaseEnvironment, createPolicyEnvironment } from '../../src/policy/cel/environment.ts';

const base = createBaseEnvironment();
const env = createPolicyEnvironment(base, [
  { name: 'prod', type: 'bool' },
  { name: 'tenants', type: 'list<string>' },
]);
const variables = new Map<string, VariableFacts>([
  ['prod', { reads: new Set(['source.namespace']), indexKeys: [{ attribute: 'source.namespace', values: ['prod'] }] }],
  ['tenants', { reads: new Set(['request.baggage.tenant']), indexKeys: [] }],
]);

function analyze(text: string) {
  const p = env.parse(text);
  const c = p.check();
  assert.ok(c.valid, `${text}: ${c.error?.message}`);
  return analyzeExpression(p.ast, { variables });
}

describe('analyzeExpression: reads and index keys', () => {
  const table: [string, string[], IndexKey[]][] = [
    ['source.principal == "spiffe://td/ns/a/sa/b"', ['source.principal'], [{ attribute: 'source.principal', values: ['spiffe://td/ns/a/sa/b'] }]],
    ['"a" == source.namespace', ['source.namespace'], [{ attribute: 'source.namespace', values: ['a'] }]],
    ['destination.port in [80, 443, 80]', ['destination.port'], [{ attribute: 'destination.port', values: [80, 443] }]],
    [
      'source.namespace == "a" && destination.port == 8080 && source.serviceAccount.startsWith("x")',
      ['destination.port', 'source.namespace', 'source.serviceAccount'],
      [
        { attribute: 'source.namespace', values: ['a'] },
        { attribute: 'destination.port', values: [8080] },
        { kind: 'prefix', attribute: 'source.serviceAccount', values: ['x'] },
      ],
    ],
    // An || of equalities on one attribute is one key with several values.
    [
      '(source.namespace == "a" || source.namespace == "b" || source.namespace in ["c"]) && destination.ip == "10.0.0.1"',
      ['destination.ip', 'source.namespace'],
      [
        { attribute: 'source.namespace', values: ['a', 'b', 'c'] },
        { attribute: 'destination.ip', values: ['10.0.0.1'] },
      ],
    ],
    // ...but an || over different attributes, or with another disjunct, proves nothing.
    ['source.namespace == "a" || destination.port == 80', ['destination.port', 'source.namespace'], []],
    ['source.namespace == "a" || source.principal.endsWith("x")', ['source.namespace', 'source.principal'], []],
    // Negations and inequalities are not keys.
    ['!(source.namespace == "a") && source.trustDomain != "td"', ['source.namespace', 'source.trustDomain'], []],
    // Non-indexable attributes and non-literal right-hand sides are not keys.
    ['connection.tlsVersion == "TLSv1.3" && source.principal == source.namespace', ['connection.tlsVersion', 'source.namespace', 'source.principal'], []],
    // Constant-key map lookups narrow the read; `in` on a map too.
    [
      'request.headers["x-tenant"] == "acme" && "x-debug" in request.headers && request.baggage.region == "eu"',
      ['request.baggage.region', 'request.headers.x-debug', 'request.headers.x-tenant'],
      [],
    ],
    // A non-constant access reads the whole map.
    ['request.headers[source.namespace] == "x"', ['request.headers', 'source.namespace'], []],
    ['request.headers.exists(k, k.startsWith("x-"))', ['request.headers'], []],
    ['size(request.baggage) > 0', ['request.baggage'], []],
    // Comprehension variables are not attributes, even when they shadow one.
    ['["a", "b"].exists(source, source == destination.host)', ['destination.host'], []],
    ['cel.bind(ns, source.namespace, ns == "a" || ns == "b")', ['source.namespace'], []],
    // Function calls read their arguments.
    [
      'cidr("10.0.0.0/8").containsIP(source.ip) && destination.authority.matchesRE2("^api\\\\.")',
      ['destination.authority', 'source.ip'],
      [{ kind: 'cidr', attribute: 'source.ip', values: ['10.0.0.0/8'] }],
    ],
    ['now < timestamp("2030-01-01T00:00:00Z")', ['now'], []],
    ['has(request.headers.authorization)', ['request.headers.authorization'], []],
    // Variables: the reference plus what the variable reads; a bare bool variable conjunct inherits its keys.
    [
      'variables.prod && destination.port == 443',
      ['destination.port', 'source.namespace', 'variables.prod'],
      [
        { attribute: 'source.namespace', values: ['prod'] },
        { attribute: 'destination.port', values: [443] },
      ],
    ],
    ['source.namespace in variables.tenants', ['request.baggage.tenant', 'source.namespace', 'variables.tenants'], []],
    ['destination.port == 8080', ['destination.port'], [{ attribute: 'destination.port', values: [8080] }]],
    ['true', [], []],
    // CIDR tests on an address attribute; the ip() form errors on "" (so "" cannot rule it out).
    ['cidr("10.0.0.0/8").containsIP(source.ip)', ['source.ip'], [{ kind: 'cidr', attribute: 'source.ip', values: ['10.0.0.0/8'] }]],
    [
      'cidr("10.0.0.0/8").containsIP(ip(destination.ip)) || cidr("fd00::/8").containsIP(destination.ip) || cidr("10.0.0.0/8").containsIP(destination.ip)',
      ['destination.ip'],
      [{ kind: 'cidr', attribute: 'destination.ip', values: ['10.0.0.0/8', 'fd00::/8'], emptyIsError: true }],
    ],
    // Mixed kinds, other attributes, non-literal blocks and negations prove nothing.
    ['cidr("10.0.0.0/8").containsIP(source.ip) || source.ip == "1.2.3.4"', ['source.ip'], []],
    ['cidr("10.0.0.0/8").containsIP(source.ip) || cidr("10.0.0.0/8").containsIP(destination.ip)', ['destination.ip', 'source.ip'], []],
    ['cidr(source.namespace).containsIP(source.ip)', ['source.ip', 'source.namespace'], []],
    ['cidr("10.0.0.0/8").containsIP(request.headers["x-ip"])', ['request.headers.x-ip'], []],
    ['!cidr("10.0.0.0/8").containsIP(source.ip)', ['source.ip'], []],
    ['ip(source.ip).isLoopback()', ['source.ip'], []],
    // Prefix / suffix tests on string attributes, globMatch mapped onto them.
    [
      'source.principal.startsWith("spiffe://td/ns/prod/") && destination.host.endsWith(".svc")',
      ['destination.host', 'source.principal'],
      [
        { kind: 'prefix', attribute: 'source.principal', values: ['spiffe://td/ns/prod/'] },
        { kind: 'suffix', attribute: 'destination.host', values: ['.svc'] },
      ],
    ],
    [
      'destination.host.endsWith(".svc") || destination.host.globMatch("*.local")',
      ['destination.host'],
      [{ kind: 'suffix', attribute: 'destination.host', values: ['.svc', '.local'] }],
    ],
    ['source.namespace.globMatch("team-*")', ['source.namespace'], [{ kind: 'prefix', attribute: 'source.namespace', values: ['team-'] }]],
    ['destination.authority.globMatch("db:5432")', ['destination.authority'], [{ attribute: 'destination.authority', values: ['db:5432'] }]],
    ['source.trustDomain.globMatch("db") || source.trustDomain == "x"', ['source.trustDomain'], [{ attribute: 'source.trustDomain', values: ['db', 'x'] }]],
    // An empty literal, the glob "*" (any non-empty value), mixed prefix/suffix, a non-string attribute: nothing.
    ['source.principal.startsWith("")', ['source.principal'], []],
    ['source.principal.endsWith("") || source.principal.endsWith("x")', ['source.principal'], []],
    ['source.principal.globMatch("*")', ['source.principal'], []],
    ['source.principal.startsWith("a") || source.principal.endsWith("b")', ['source.principal'], []],
    ['source.ip.startsWith("10.")', ['source.ip'], []],
    ['request.headers["x-tenant"].startsWith("a")', ['request.headers.x-tenant'], []],
    ['source.principal.startsWith(source.namespace)', ['source.namespace', 'source.principal'], []],
  ];
  for (const [text, reads, keys] of table) {
    it(text, () => {
      const a = analyze(text);
      assert.deepEqual([...a.reads].sort(), reads);
      assert.deepEqual(a.indexKeys, keys);
    });
  }
});

describe('analyzeExpression: constants and matches', () => {
  it('flags literal true/false only', () => {
    assert.equal(analyze('true').isConstantTrue, true);
    assert.equal(analyze('false').isConstantFalse, true);
    assert.equal(analyze('true').isConstantFalse, false);
    assert.equal(analyze('source.port == 1').isConstantTrue, false);
  });
  it('detects matches() in any position', () => {
    assert.equal(analyze('source.principal.matches("x")').usesMatches, true);
    assert.equal(analyze('["a"].exists(x, x.matches("a"))').usesMatches, true);
    assert.equal(analyze('source.principal.matchesRE2("x")').usesMatches, false);
    const a = analyze('source.namespace == "a" || source.principal.matches("x")');
    assert.equal(a.problems[0]?.code, 'WG_POLICY_FORBIDDEN');
    assert.equal(a.problems[0]?.offset, 'source.namespace == "a" || '.length);
  });
});
