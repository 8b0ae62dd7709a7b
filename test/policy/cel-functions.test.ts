import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EvaluationError } from '@marcbachmann/cel-js';
import { createBaseEnvironment, toActivation } from '../../src/policy/cel/environment.ts';
import { emptyContext, type DecisionContext } from '../../src/policy/context.ts';
import { renderValue } from '../../src/policy/cel/explain-expression.ts';
import { charAt, replaceN, reverseString } from '../../src/policy/cel/functions-string.ts';
import { MAX_STRING_RESULT_LENGTH } from '../../src/policy/cel/limits.ts';
import { globMatch } from '../../src/policy/cel/functions-regex.ts';

const env = createBaseEnvironment();

function context(): DecisionContext {
  const base = emptyContext(new Date('2026-01-02T03:04:05Z'));
  return {
    ...base,
    source: {
      principal: 'spiffe://cluster.local/ns/prod/sa/frontend',
      trustDomain: 'cluster.local',
      namespace: 'prod',
      serviceAccount: 'frontend',
      ip: '10.0.0.5',
      port: 43122,
    },
    destination: { ip: 'fd00::7', host: '', port: 8080, authority: '[fd00::7]:8080', service: '', namespace: '', workload: '', principal: '' },
    request: { headers: { 'x-tenant': 'acme', 'x-bad-ip': '10.0.0.999' }, baggage: { 'k8s.namespace.name': 'prod' }, traceId: '' },
  };
}
const activation = toActivation(context());

/** Type-checks and evaluates; returns the rendered value or the error. */
function run(expr: string): unknown {
  const p = env.parse(expr);
  const c = p.check();
  if (!c.valid) throw new Error(`check failed for ${expr}: ${c.error?.message}`);
  return renderValue(p(activation));
}

function runError(expr: string): Error {
  const p = env.parse(expr);
  const c = p.check();
  assert.ok(c.valid, `${expr} should type-check: ${c.error?.message}`);
  try {
    p(activation);
  } catch (e) {
    return e as Error;
  }
  assert.fail(`${expr} should fail at runtime`);
}

function checkError(expr: string): string {
  const c = env.check(expr);
  assert.equal(c.valid, false, `${expr} should not type-check`);
  return c.error?.message ?? '';
}

describe('CEL net functions', () => {
  const table: [string, unknown][] = [
    ['isIP("10.0.0.1")', true],
    ['isIP("fd00::1")', true],
    ['isIP("10.0.0.01")', false],
    ['isIP("")', false],
    ['isIP("fe80::1%eth0")', false],
    ['string(ip("2001:DB8:0::1"))', '2001:db8::1'],
    ['string(ip("::ffff:10.0.0.1"))', '10.0.0.1'],
    ['ip("::ffff:10.0.0.1") == ip("10.0.0.1")', true],
    ['ip("10.0.0.1") == ip("10.0.0.2")', false],
    ['ip("10.0.0.1").family()', 4],
    ['ip("::1").family()', 6],
    ['ip("127.0.0.1").isLoopback()', true],
    ['ip("10.0.0.1").isLoopback()', false],
    ['ip("::").isUnspecified()', true],
    ['ip("fe80::1").isLinkLocalUnicast()', true],
    ['ip("169.254.169.254").isMetadata()', true],
    ['ip(source.ip).isMetadata()', false],
    ['isCIDR("10.0.0.0/8")', true],
    ['isCIDR("10.0.0.0/33")', false],
    ['isCIDR("10.0.0.0")', false],
    ['cidr("10.0.0.0/8").containsIP(source.ip)', true],
    ['cidr("10.0.0.0/8").containsIP("11.0.0.1")', false],
    ['cidr("10.0.0.0/8").containsIP(ip(source.ip))', true],
    ['cidr("10.0.0.0/8").containsIP("::ffff:10.1.1.1")', true],
    ['cidr("fd00::/8").containsIP(destination.ip)', true],
    ['cidr("10.0.0.0/8").containsIP(destination.ip)', false], // v6 address, v4 block
    ['cidr("10.0.0.0/8").containsIP("")', false], // "" = no address (host authority)
    ['cidr("10.0.0.0/8").containsCIDR("10.1.0.0/16")', true],
    ['cidr("10.1.0.0/16").containsCIDR(cidr("10.0.0.0/8"))', false],
    ['string(cidr("10.1.2.3/8"))', '10.1.2.3/8'],
    ['string(cidr("10.1.2.3/8").masked())', '10.0.0.0/8'],
    ['string(cidr("10.1.2.3/8").ip())', '10.1.2.3'],
    ['cidr("2001:db8::/32").prefixLength()', 32],
    ['cidr("10.0.0.0/8") == cidr("10.0.0.0/8")', true],
    ['cidr("10.0.0.0/8") == cidr("10.0.0.0/16")', false],
    ['cidr("10.0.0.0/8")', '10.0.0.0/8'],
  ];
  for (const [expr, expected] of table) {
    it(`${expr} -> ${JSON.stringify(expected)}`, () => assert.deepEqual(run(expr), expected));
  }

  const runtimeErrors: [string, RegExp][] = [
    ['ip("10.0.0.999") == ip("10.0.0.1")', /not an IP address/],
    ['cidr(request.headers["x-tenant"]).prefixLength() == 8', /not a CIDR block/],
    ['cidr("10.0.0.0/8").containsIP(request.headers["x-bad-ip"])', /not an IP address/],
  ];
  for (const [expr, why] of runtimeErrors) {
    it(`${expr} is a runtime error`, () => {
      const e = runError(expr);
      assert.ok(e instanceof EvaluationError, `expected EvaluationError, got ${e.constructor.name}`);
      assert.match(e.message, why);
    });
  }

  it('refuses wrong argument types and unknown methods at check time', () => {
    assert.match(checkError('cidr("10.0.0.0/8").containsIP(8080)'), /no matching overload/);
    assert.match(checkError('ip(1)'), /no matching overload/);
    assert.match(checkError('ip("10.0.0.1").foo'), /No such key: foo/);
    assert.match(checkError('ip("10.0.0.1") == "10.0.0.1"'), /no such overload/);
  });
});

describe('CEL spiffe functions', () => {
  const table: [string, unknown][] = [
    ['isSpiffe(source.principal)', true],
    ['isSpiffe("")', false],
    ['isSpiffe("spiffe://Cluster.local/ns/a")', false],
    ['spiffe(source.principal).trustDomain()', 'cluster.local'],
    ['spiffe(source.principal).namespace()', 'prod'],
    ['spiffe(source.principal).serviceAccount()', 'frontend'],
    ['spiffe(source.principal).path()', 'ns/prod/sa/frontend'],
    ['spiffe("spiffe://example.org/workload/x").namespace()', ''],
    ['spiffe("spiffe://example.org").path()', ''],
    ['string(spiffe(source.principal))', 'spiffe://cluster.local/ns/prod/sa/frontend'],
    ['spiffe(source.principal) == spiffe("spiffe://cluster.local/ns/prod/sa/frontend")', true],
  ];
  for (const [expr, expected] of table) {
    it(`${expr} -> ${JSON.stringify(expected)}`, () => assert.deepEqual(run(expr), expected));
  }
  it('an invalid or empty ID is a runtime error', () => {
    assert.match(runError('spiffe(request.headers["x-tenant"]).namespace() == ""').message, /not a SPIFFE ID/);
    assert.match(runError('spiffe(connection.id).namespace() == ""').message, /not a SPIFFE ID/);
  });
});

describe('CEL regex and glob functions', () => {
  const table: [string, unknown][] = [
    ['source.principal.matchesRE2("/ns/prod/")', true], // search, not full match (CEL spec)
    ['source.principal.matchesRE2("^/ns/prod/")', false],
    ['source.principal.matchesRE2("(?i)^SPIFFE://CLUSTER\\\\.LOCAL/")', true], // RE2 inline flags
    ['"a\\nb".matchesRE2("a$")', false], // RE2: $ is end of text without (?m)
    ['"a\\nb".matchesRE2("(?m)a$")', true],
    ['"abc".matchesRE2("b\\\\z")', false], // RE2 \\z: end of text
    ['"abc".matchesRE2("c\\\\z")', true],
    ['source.principal.globMatch("*/sa/frontend")', true],
    ['source.principal.globMatch("spiffe://cluster.local/ns/prod/*")', true],
    ['source.principal.globMatch("spiffe://cluster.local/ns/dev/*")', false],
    ['source.principal.globMatch("*")', true],
    ['connection.id.globMatch("*")', false], // "*" needs a non-empty value, like Istio's principals ["*"]
    ['source.principal.globMatch("spiffe://cluster.local/ns/prod/sa/frontend")', true],
  ];
  for (const [expr, expected] of table) {
    it(`${expr} -> ${JSON.stringify(expected)}`, () => assert.deepEqual(run(expr), expected));
  }

  it('runs a catastrophic-backtracking pattern in linear time', () => {
    // ^(a+)+$ against 10,000 a's followed by b: exponential for a backtracking engine, linear in RE2.
    const ctx = context();
    const act = toActivation({ ...ctx, request: { ...ctx.request, headers: { x: 'a'.repeat(10_000) + 'b' } } });
    const p = env.parse('request.headers["x"].matchesRE2("^(a+)+$")');
    assert.equal(p.check().valid, true);
    assert.equal(p(act), false);
  });

  it('an invalid non-literal pattern is a runtime error', () => {
    const ctx = context();
    const act = toActivation({ ...ctx, request: { ...ctx.request, headers: { re: '(a' } } });
    const p = env.parse('"a".matchesRE2(request.headers["re"])');
    assert.equal(p.check().valid, true);
    assert.throws(() => p(act), /invalid RE2 pattern/);
  });

  it('globMatch refuses a star in the middle', () => {
    assert.throws(() => globMatch('abc', 'a*c'), /only have one "\*"/);
    assert.throws(() => globMatch('abc', '*b*'), /only have one "\*"/);
  });
});

describe('CEL string helpers', () => {
  const table: [string, unknown][] = [
    ['"a.b.c".replace(".", "-")', 'a-b-c'],
    ['"a.b.c".replace(".", "-", 1)', 'a-b.c'],
    ['"a.b.c".replace(".", "-", 0)', 'a.b.c'],
    ['"a.b.c".replace(".", "-", -1)', 'a-b-c'],
    ['"héllo".charAt(1)', 'é'],
    ['"abc".charAt(3)', ''],
    ['"abc".reverse()', 'cba'],
    ['"a😀b".reverse()', 'b😀a'],
    ['"h😀llo".charAt(1)', '😀'],
    ['"h😀llo".charAt(2)', 'l'],
    ['"h😀llo".charAt(5)', ''],
    ['"a$b".replace("$", "$&")', 'a$&b'],
    ['"aaa".replace("a", "b", 2)', 'bba'],
    ['"ab".replace("", "-", 1)', '-ab'],
    ['"ab".replace("x", "-")', 'ab'],
    // Built into cel-js already:
    ['"ABC".lowerAscii()', 'abc'],
    ['"abc".upperAscii()', 'ABC'],
    ['"  x ".trim()', 'x'],
    ['"a,b".split(",")', ['a', 'b']],
    ['["a", "b"].join("+")', 'a+b'],
    ['"abc".substring(1)', 'bc'],
    ['"abcabc".lastIndexOf("b")', 4],
  ];
  for (const [expr, expected] of table) {
    it(`${expr} -> ${JSON.stringify(expected)}`, () => assert.deepEqual(run(expr), expected));
  }
  it('charAt out of range is an error', () => {
    assert.match(runError('"abc".charAt(4) == ""').message, /out of range/);
  });
  it("replaceN follows Go's strings.Replace for an empty needle", () => {
    assert.equal(replaceN('ab', '', '-', -1), '-a-b-');
    assert.equal(replaceN('ab', '', '-', 2), '-a-b');
    assert.equal(replaceN('a😀', '', '-', -1), '-a-😀-');
  });
  it('replace refuses to build more than 64 KiB (an EvaluationError, so the rule fails closed)', () => {
    const grow = runError(`"aaaa".replace("", "${'x'.repeat(20_000)}") == ""`);
    assert.ok(grow instanceof EvaluationError);
    assert.match(grow.message, /replace: the result would be longer than 65536 characters/);
    assert.throws(() => replaceN('a'.repeat(40_000), 'a', 'bb', -1), EvaluationError);
    assert.throws(() => replaceN('a'.repeat(MAX_STRING_RESULT_LENGTH + 1), 'a', 'b', -1), EvaluationError);
    // The limit counts: 10 replacements of 40,000 fit.
    assert.equal(replaceN('a'.repeat(40_000), 'a', 'bb', 10).length, 40_010);
    assert.equal(replaceN('a'.repeat(MAX_STRING_RESULT_LENGTH), 'a', 'b', -1), 'b'.repeat(MAX_STRING_RESULT_LENGTH));
  });
  it('charAt walks to the index without copying, at any position', () => {
    const s = 'a'.repeat(65_535) + 'b';
    assert.equal(charAt(s, 65_535n), 'b');
    assert.equal(charAt(s, 65_536n), '');
    assert.throws(() => charAt(s, 65_537n), /out of range/);
    assert.throws(() => charAt('😀', 2n), /out of range/);
    assert.throws(() => charAt('ab', -1n), /out of range/);
  });
  it('reverse keeps surrogate pairs and refuses inputs over 64 KiB', () => {
    assert.equal(reverseString('ab😀c'), 'c😀ba');
    assert.equal(reverseString(''), '');
    assert.equal(reverseString('x'.repeat(MAX_STRING_RESULT_LENGTH)).length, MAX_STRING_RESULT_LENGTH);
    assert.throws(() => reverseString('x'.repeat(MAX_STRING_RESULT_LENGTH + 1)), EvaluationError);
  });
});
