import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Diagnostic } from '../../src/errors.ts';
import type { ExpressionSource } from '../../src/policy/model.ts';
import { emptyContext } from '../../src/policy/context.ts';
import { createBaseEnvironment, policyVariablesValue, toActivation } from '../../src/policy/cel/environment.ts';
import {
  compileExpression,
  compilePolicyVariables,
  type CompileResult,
} from '../../src/policy/cel/compile-expression.ts';
import { CEL_LIMITS } from '../../src/policy/cel/limits.ts';
import { suggest } from '../../src/util/suggest.ts';

const env = createBaseEnvironment();

/**
 * An expression written on one line at policy.yaml:7:13 (a plain scalar), so offset o maps to
 * column 13 + o; a newline in the text moves to the next line, column 15 (a block scalar indent).
 */
function source(text: string): ExpressionSource {
  return {
    text,
    location: { file: 'policy.yaml', line: 7, col: 13, path: 'spec.rules[0].when' },
    positionAt(offset: number) {
      const before = text.slice(0, offset);
      const nl = before.lastIndexOf('\n');
      if (nl === -1) return { line: 7, col: 13 + offset };
      return { line: 7 + before.split('\n').length - 1, col: 15 + (offset - nl - 1) };
    },
  };
}

function compile(text: string, expect: 'bool' | 'any' = 'bool'): CompileResult {
  return compileExpression(env, source(text), { expect, what: 'rule "r" when' });
}

function failure(text: string, expect: 'bool' | 'any' = 'bool'): Diagnostic {
  const r = compile(text, expect);
  assert.equal(r.ok, false, `${text} should not compile`);
  assert.ok(!r.ok);
  const d = r.diagnostics[0];
  assert.ok(d);
  assert.equal(d.file, 'policy.yaml');
  assert.equal(d.path, 'spec.rules[0].when');
  assert.equal(d.severity, 'error');
  return d;
}

describe('compileExpression: type errors are load errors', () => {
  const table: [string, string, number, RegExp][] = [
    // [expression, code, column, message]
    ['sourc.principal == "x"', 'WG_POLICY_CEL', 13, /Unknown variable: sourc \(did you mean "source"\?\)/],
    ['source.princpal == "x"', 'WG_POLICY_CEL', 20, /source has no field "princpal" \(did you mean "principal"\?\); source has principal, trustDomain/],
    ['destination.prot == 80', 'WG_POLICY_CEL', 25, /destination has no field "prot" \(did you mean "port"\?\)/],
    ['request.header["x"] == "a"', 'WG_POLICY_CEL', 21, /did you mean "headers"/],
    ['destination.port == "80"', 'WG_POLICY_CEL', 13, /no such overload: int == string: ports are ints/],
    ['source.port == 1.0', 'WG_POLICY_CEL', 13, /no such overload: int == double/],
    ['frobnicate(source.ip)', 'WG_POLICY_CEL', 13, /found no matching overload for 'frobnicate\(string\)'/],
    ['source.ip.frobnicate()', 'WG_POLICY_CEL', 13, /found no matching overload for 'string.frobnicate\(\)'/],
    ['source.principal ==', 'WG_POLICY_CEL', 32, /syntax error: Unexpected token/],
    ['source.principal', 'WG_POLICY_CEL', 13, /must be a bool expression, but its type is string/],
    ['now.hour == 3', 'WG_POLICY_CEL', 13, /a timestamp has no field "hour"/],
    ['cidr("10.0.0.0/33").containsIP(source.ip)', 'WG_POLICY_CEL', 18, /cidr\(\): "10.0.0.0\/33" is not a CIDR block: prefix length 33 exceeds 32/],
    ['ip("10.0.0.01").isLoopback()', 'WG_POLICY_CEL', 16, /ip\(\): "10.0.0.01" is not an IP address/],
    ['cidr("10.0.0.0/8").containsIP("10.0.0")', 'WG_POLICY_CEL', 43, /containsIP\(\): "10.0.0" is not an IP address/],
    ['spiffe("spiffe://x/").namespace() == "a"', 'WG_POLICY_CEL', 20, /spiffe\(\): "spiffe:\/\/x\/" is not a SPIFFE ID/],
    ['source.principal.matchesRE2("(a")', 'WG_POLICY_CEL', 41, /matchesRE2\(\): invalid RE2 pattern: .*missing closing \)/],
    ['source.principal.globMatch("a*b")', 'WG_POLICY_CEL', 40, /globMatch\(\): glob "a\*b" may only have one "\*"/],
  ];
  for (const [text, code, col, message] of table) {
    it(`${text}`, () => {
      const d = failure(text);
      assert.equal(d.code, code);
      assert.equal(d.line, 7);
      assert.equal(d.col, col, `column of: ${d.message}`);
      assert.match(d.message, message);
      assert.match(d.message, /^rule "r" when/);
    });
  }

  it('locates an error on a later line of a multi-line expression', () => {
    const d = failure('source.namespace == "prod" &&\n  source.serviceAcount == "api"');
    assert.equal(d.line, 8);
    assert.equal(d.col, 15 + '  source.'.length);
    assert.match(d.message, /did you mean "serviceAccount"/);
  });

  it('accepts a variable expression of any type when expect is any', () => {
    const r = compile('source.principal', 'any');
    assert.ok(r.ok);
    assert.equal(r.expr.type, 'string');
  });
});

describe('compileExpression: refused constructs', () => {
  for (const text of ['source.principal.matches("^spiffe://")', 'matches(source.principal, "a+")', 'source.namespace == "a" || source.principal.matches("(a+)+$")']) {
    it(`refuses ${text}`, () => {
      const d = failure(text);
      assert.equal(d.code, 'WG_POLICY_FORBIDDEN');
      assert.match(d.message, /matches\(\) uses JavaScript's backtracking RegExp \(catastrophic on inputs like \^\(a\+\)\+\$/);
      assert.match(d.message, /use matchesRE2\(\)/);
    });
  }
});

describe('compileExpression: limits', () => {
  it('refuses an expression longer than the bound', () => {
    const text = Array.from({ length: 400 }, (_, i) => `source.namespace == "ns-${i}"`).join(' || ');
    assert.ok(text.length > CEL_LIMITS.maxExpressionLength);
    const d = failure(text);
    assert.equal(d.code, 'WG_POLICY_LIMIT');
    assert.match(d.message, /more than the 4096 allowed/);
    assert.match(d.message, /a policy must never be able to hang the gateway/);
  });

  it('refuses too many AST nodes', () => {
    const text = Array.from({ length: 300 }, () => '1==1').join('||');
    assert.ok(text.length <= CEL_LIMITS.maxExpressionLength);
    const d = failure(text);
    assert.equal(d.code, 'WG_POLICY_LIMIT');
    assert.match(d.message, /more than 1024 syntax nodes/);
  });

  it('refuses deep nesting', () => {
    const d = failure('('.repeat(40) + 'true' + ')'.repeat(40));
    assert.equal(d.code, 'WG_POLICY_LIMIT');
    assert.match(d.message, /nests more than 32 levels deep/);
  });

  it('refuses a list literal above the bound', () => {
    const list = Array.from({ length: 300 }, (_, i) => i).join(',');
    const d = failure(`destination.port in [${list}]`);
    assert.equal(d.code, 'WG_POLICY_LIMIT');
    assert.match(d.message, /a list literal has more than 256 elements/);
  });

  it('refuses a 3-deep nested comprehension over a list', () => {
    const d = failure('[1, 2].exists(a, [1, 2].exists(b, [1, 2].exists(c, a + b + c == 6)))');
    assert.equal(d.code, 'WG_POLICY_LIMIT');
    assert.match(d.message, /exists\(\) is nested 3 comprehensions deep, more than the 2 allowed/);
    assert.equal(d.col, 13 + '[1, 2].exists(a, [1, 2].exists(b, '.length);
  });

  it('accepts a 2-deep nested comprehension over literals', () => {
    const r = compile('[1, 2].exists(a, [3, 4].exists(b, a + b == destination.port))');
    assert.ok(r.ok, JSON.stringify(!r.ok && r.diagnostics));
  });

  it('cannot write a million-iteration expression', () => {
    // Nesting over request data: 2,048 headers x 2,048 headers.
    const overHeaders = failure('request.headers.exists(a, request.headers.exists(b, a == b))');
    assert.equal(overHeaders.code, 'WG_POLICY_LIMIT');
    assert.match(overHeaders.message, /up to 4,196,352 iterations on the largest possible input, more than the 262,144 allowed/);
    // split() of a 64 KiB header yields up to 65,537 parts; nesting multiplies them.
    const overSplit = failure('request.headers["a"].split(",").exists(x, request.headers["b"].split(",").exists(y, x == y))');
    assert.equal(overSplit.code, 'WG_POLICY_LIMIT');
    // The biggest literals allowed, nested as deep as allowed, stay far below a million.
    const big = Array.from({ length: CEL_LIMITS.maxListElements }, (_, i) => i).join(',');
    const r = compile(`[${big}].exists(a, [${big}].exists(b, a * b == destination.port))`);
    assert.ok(r.ok, JSON.stringify(!r.ok && r.diagnostics));
    // ...and a longer chain of map() stages over them is bounded too.
    const chain = failure(`[${big}].map(a, [${big}].map(b, a * b)).exists(l, l.exists(x, [${big}].exists(y, x == y)))`);
    assert.equal(chain.code, 'WG_POLICY_LIMIT');
  });

  it('allows one level of stages over request data (a realistic header test)', () => {
    for (const text of [
      'request.headers["x-groups"].split(",").exists(g, g.trim() == "admin")',
      'request.headers["x-groups"].split(",").map(g, g.trim().lowerAscii()).filter(g, g.startsWith("team-")).exists(g, g in ["team-a", "team-b"])',
    ]) {
      const r = compile(text);
      assert.ok(r.ok, JSON.stringify(!r.ok && r.diagnostics));
    }
  });
});

describe('compileExpression: evaluation', () => {
  it('returns the raw value', () => {
    const r = compile('destination.port + 1', 'any');
    assert.ok(r.ok);
    assert.equal(r.expr.evaluate(toActivation(emptyContext())), 1n);
  });

  it('identity-less context: positive predicates false, negated ones true', () => {
    const act = toActivation(emptyContext());
    const table: [string, boolean][] = [
      ['source.namespace == "x"', false],
      ['!(source.namespace == "x")', true],
      ['source.principal == "spiffe://cluster.local/ns/a/sa/b"', false],
      ['source.principal != "spiffe://cluster.local/ns/a/sa/b"', true],
      ['source.principal.startsWith("spiffe://cluster.local/")', false],
      ['source.trustDomain in ["cluster.local"]', false],
      ['!(source.serviceAccount in ["api"])', true],
      ['source.principal.globMatch("*")', false],
      ['isSpiffe(source.principal)', false],
    ];
    for (const [text, expected] of table) {
      const r = compile(text);
      assert.ok(r.ok, text);
      assert.equal(r.expr.evaluate(act), expected, text);
    }
  });

  it('exposes constants', () => {
    const t = compile('true');
    const f = compile('false');
    const e = compile('source.port == 1');
    assert.ok(t.ok && f.ok && e.ok);
    assert.deepEqual([t.expr.isConstantTrue, t.expr.isConstantFalse], [true, false]);
    assert.deepEqual([f.expr.isConstantTrue, f.expr.isConstantFalse], [false, true]);
    assert.deepEqual([e.expr.isConstantTrue, e.expr.isConstantFalse], [false, false]);
  });
});

describe('compilePolicyVariables', () => {
  it('types variables from their expressions, lets later ones use earlier ones, and inherits reads', () => {
    const v = compilePolicyVariables(env, [
      { name: 'prod', expression: source('source.namespace == "prod"') },
      { name: 'nets', expression: source('["10.0.0.0/8", "192.168.0.0/16"]') },
      { name: 'api', expression: source('variables.prod && destination.port == 8080') },
    ]);
    assert.ok(v.ok, JSON.stringify(!v.ok && v.diagnostics));
    assert.deepEqual(
      v.variables.map((x) => [x.name, x.expr.type]),
      [
        ['prod', 'bool'],
        ['nets', 'list<string>'],
        ['api', 'bool'],
      ],
    );
    const rule = compileExpression(v.env, source('variables.api && variables.nets.exists(n, cidr(n).containsIP(source.ip))'), {
      expect: 'bool',
      what: 'rule',
      variables: v.facts,
    });
    assert.ok(rule.ok, JSON.stringify(!rule.ok && rule.diagnostics));
    assert.deepEqual([...rule.expr.reads].sort(), [
      'destination.port',
      'source.ip',
      'source.namespace',
      'variables.api',
      'variables.nets',
      'variables.prod',
    ]);
    assert.deepEqual(rule.expr.indexKeys, [
      { attribute: 'source.namespace', values: ['prod'] },
      { attribute: 'destination.port', values: [8080] },
    ]);

    const ctx = emptyContext();
    const act = toActivation({ ...ctx, source: { ...ctx.source, namespace: 'prod', ip: '192.168.1.1' }, destination: { ...ctx.destination, port: 8080 } });
    const values: Record<string, unknown> = {};
    for (const x of v.variables) {
      values[x.name] = x.expr.evaluate({ ...act, variables: policyVariablesValue(x.expr.env, values) });
    }
    assert.deepEqual(values, { prod: true, nets: ['10.0.0.0/8', '192.168.0.0/16'], api: true });
    assert.equal(rule.expr.evaluate({ ...act, variables: policyVariablesValue(v.env, values) }), true);
  });

  it('reports a typo in a variable reference with a suggestion', () => {
    const v = compilePolicyVariables(env, [{ name: 'prod', expression: source('source.namespace == "prod"') }]);
    assert.ok(v.ok);
    const r = compileExpression(v.env, source('variables.prdo'), { expect: 'bool', what: 'rule' });
    assert.ok(!r.ok);
    assert.match(r.diagnostics[0]!.message, /variables has no field "prdo" \(did you mean "prod"\?\)/);
    const bare = compileExpression(v.env, source('prod'), { expect: 'bool', what: 'rule' });
    assert.ok(!bare.ok);
    assert.match(bare.diagnostics[0]!.message, /did you mean "variables.prod"/);
  });

  it('refuses a variable that uses a later one, and duplicates', () => {
    const v = compilePolicyVariables(env, [
      { name: 'a', expression: source('variables.b') },
      { name: 'b', expression: source('true') },
      { name: 'b', expression: source('false') },
    ]);
    assert.ok(!v.ok);
    assert.equal(v.diagnostics.length, 2);
    assert.match(v.diagnostics[0]!.message, /variable "a": variables has no field "b"/);
    assert.match(v.diagnostics[1]!.message, /variable "b": declared twice/);
  });
});

describe('suggest', () => {
  const table: [string, string[], string | undefined][] = [
    ['princpal', ['principal', 'namespace'], 'principal'],
    ['Namespace', ['principal', 'namespace'], 'namespace'],
    ['xyz', ['principal', 'namespace'], undefined],
    ['ip', ['ip', 'port'], 'ip'],
  ];
  for (const [name, candidates, expected] of table) {
    it(`${name} -> ${expected}`, () => assert.equal(suggest(name, candidates), expected));
  }
});
