import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from '@marcbachmann/cel-js';
import type { Diagnostic } from '../../src/errors.ts';
import type { ExpressionSource } from '../../src/policy/model.ts';
import { createBaseEnvironment } from '../../src/policy/cel/environment.ts';
import { compileExpression, compilePolicyVariables } from '../../src/policy/cel/compile-expression.ts';
import {
  CEL_COST,
  CEL_LIMITS,
  MAX_HEADER_BYTES,
  UNKNOWN_VALUE_BOUND,
  estimateCost,
  estimateValueBound,
  exceedsVariableBound,
} from '../../src/policy/cel/limits.ts';
import { compileFromTexts } from '../../src/policy/load.ts';

const env = createBaseEnvironment();

function source(text: string): ExpressionSource {
  return {
    text,
    location: { file: 'policy.yaml', line: 7, col: 13, path: 'spec.rules[0].when' },
    positionAt: (offset: number) => ({ line: 7, col: 13 + offset }),
  };
}

function cost(text: string): number {
  return estimateCost(parse(text).ast);
}

function refusal(text: string): Diagnostic {
  const r = compileExpression(env, source(text), { expect: 'bool', what: 'rule "r" when' });
  assert.equal(r.ok, false, `${text} should be refused at load`);
  assert.ok(!r.ok);
  const d = r.diagnostics[0]!;
  return d;
}

function loads(text: string, expect: 'bool' | 'any' = 'bool'): void {
  const r = compileExpression(env, source(text), { expect, what: 'rule "r" when' });
  assert.ok(r.ok, `${text}: ${JSON.stringify(!r.ok && r.diagnostics)}`);
}

const H = 'request.headers["x-groups"]';
/** Parts of the largest header split: 64 KiB of separators. */
const SPLIT_PARTS = MAX_HEADER_BYTES + 1;

describe('estimateCost: what one evaluation can cost on the largest input', () => {
  const { node, char, search, iteration, element } = CEL_COST;

  it('charges a header call for the 64 KiB the header can hold', () => {
    // rcall + (request.headers: 2 nodes) + [] node + key literal + key hash (1 char) + needle literal
    const fixed = node + 2 * node + node + node + char * 1 + node;
    assert.equal(cost(`request.headers["x"].contains("ab")`), fixed + search * (MAX_HEADER_BYTES + 2));
  });

  it('charges fixed-size attributes by their bound, not the header bound', () => {
    // source.ip is at most 45 characters (an IPv6 text form), a SPIFFE ID at most 2,048 bytes.
    assert.equal(cost('source.ip.contains("1")') - cost('"x".contains("1")'), 2 * node - node + search * (45 - 1));
    assert.ok(cost('source.principal.contains("a")') < cost('request.traceId.contains("a")') + search * 2048);
    // ==, the attribute (2 nodes), the literal, and comparing one scalar.
    assert.equal(cost('destination.port == 8080'), 4 * node + char);
  });

  it('multiplies a call in a loop body by the loop size', () => {
    // Every one of the 65,537 parts scans the whole header again.
    const inner = cost(`${H}.split(",").exists(g, ${H}.contains(g))`);
    assert.ok(inner >= SPLIT_PARTS * search * MAX_HEADER_BYTES, String(inner));
    // A literal list of 8 multiplies by 8 only.
    const literal = cost(`["a", "b", "c", "d", "e", "f", "g", "h"].exists(s, ${H}.contains(s))`);
    assert.ok(literal >= 8 * search * MAX_HEADER_BYTES && literal < 9 * search * MAX_HEADER_BYTES + 100 * node, String(literal));
  });

  it('charges work on the element once overall: split parts share the 64 KiB', () => {
    // g.trim() over all parts reads at most 64 KiB in total, not 64 KiB per part.
    const perPart = cost(`${H}.split(",").exists(g, g.trim() == "admin")`) - cost(`${H}.split(",").exists(g, g == "admin")`);
    assert.ok(perPart <= SPLIT_PARTS * 2 * node + 2 * char * MAX_HEADER_BYTES, String(perPart));
    // The iterations themselves are charged: at least 65,537 x (iteration + body).
    assert.ok(cost(`${H}.split(",").exists(g, g == "admin")`) >= SPLIT_PARTS * (iteration + 3 * node + 5 * char));
    // Building the parts is charged per part.
    assert.ok(cost(`${H}.split(",").size() == 0`) >= SPLIT_PARTS * element);
  });

  it('bounds split() by its limit argument', () => {
    const limited = cost(`${H}.split(",", 16).exists(g, ${H}.contains(g))`);
    assert.ok(limited < 17 * search * 2 * MAX_HEADER_BYTES, String(limited));
  });

  it('charges a nested loop over one element as if one element held the whole header', () => {
    // Σ f(s_i) with Σ s_i <= 64 KiB peaks when one part holds everything: 64 Ki inner iterations.
    const nested = cost(`${H}.split(",").exists(g, g.split("").exists(c, c == "z"))`);
    assert.ok(nested >= MAX_HEADER_BYTES * iteration, String(nested));
  });

  it('charges the new string helpers for their input', () => {
    assert.ok(cost(`${H}.reverse() == "x"`) >= CEL_COST.reverse * MAX_HEADER_BYTES);
    assert.ok(cost(`${H}.charAt(5) == "x"`) >= CEL_COST.walk * MAX_HEADER_BYTES);
    // replace() can grow a string only up to its runtime cap.
    assert.ok(cost(`${H}.replace("a", "${'b'.repeat(3000)}").size() == 1`) >= (CEL_COST.replace + CEL_COST.walk) * MAX_HEADER_BYTES);
  });
});

describe('estimateValueBound', () => {
  it('a header split has 65,537 parts of 64 KiB together', () => {
    const b = estimateValueBound(parse(`${H}.split(",")`).ast);
    assert.equal(b.kind, 'list');
    assert.equal(b.size, SPLIT_PARTS);
    assert.equal(b.total, MAX_HEADER_BYTES);
    assert.equal(exceedsVariableBound(b), null);
  });

  it('refuses values larger than a variable may hold', () => {
    const table: [string, RegExp | null][] = [
      ['["10.0.0.0/8", "192.168.0.0/16"]', null],
      ['source.namespace == "prod"', null],
      [`${H}.split(",").map(g, g.trim())`, null],
      [`${H}.split("").map(c, ${H})`, /elements of up to .* characters together/],
      [`${H} + ${H}`, /a string of up to 131,072 characters/],
    ];
    for (const [text, want] of table) {
      const why = exceedsVariableBound(estimateValueBound(parse(text).ast));
      if (want === null) assert.equal(why, null, text);
      else assert.match(why ?? '', want, text);
    }
    assert.equal(exceedsVariableBound(UNKNOWN_VALUE_BOUND), null);
  });
});

describe('load-time refusal of expressions that could hang the gateway', () => {
  // The acceptance review's reproductions: each took 2-115 s per decision on a 60 KB header.
  const refused = [
    `"x-groups" in request.headers && ${H}.split(",").exists(g, ${H}.split(",").size() == 0)`,
    `"x-groups" in request.headers && ${H}.split(",").exists(g, ${H}.contains(g + ";admin"))`,
    `"x" in request.headers && request.headers.x.split("").exists(c, request.headers.x.charAt(59999) == c && false)`,
    `"x" in request.headers && request.headers.x.split("").exists(c, request.headers.x.reverse() == c)`,
    `"x" in request.headers && request.headers.x.split("").exists(c, request.headers.x.replace(c, "") == "z")`,
    // Few iterations (the iteration bound passes), each doing 64 KiB of work.
    `["a", "b"].exists(x, ${H}.split(",").exists(g, g.matchesRE2(${H})))`,
    `request.headers.exists(k, request.headers[k].matchesRE2(request.headers[k]))`,
  ];
  for (const text of refused) {
    it(`refuses ${text.slice(0, 90)}`, () => {
      assert.ok(cost(text) > CEL_LIMITS.maxEstimatedCost);
      const d = refusal(text);
      assert.equal(d.code, 'WG_POLICY_LIMIT');
      assert.match(d.message, /its worst-case cost is [\d,]+ units, more than the 100,000,000 allowed/);
      // The error explains the bound and what to do about it.
      assert.match(d.message, /64 KiB/);
      assert.match(d.message, /runs once per element/);
      assert.match(d.message, /Compute request-derived values once outside the loop/);
      assert.match(d.message, /a policy must never be able to hang the gateway/);
      assert.equal(d.line, 7);
      assert.equal(d.col, 13);
    });
  }

  it('refuses a variable whose value could break the bound other expressions assume', () => {
    const v = compilePolicyVariables(env, [{ name: 'big', expression: source(`${H}.split("").map(c, ${H})`) }]);
    assert.equal(v.ok, false);
    assert.ok(!v.ok);
    assert.equal(v.diagnostics[0]!.code, 'WG_POLICY_LIMIT');
    assert.match(v.diagnostics[0]!.message, /more than a value may hold \(65,537 elements of 64 KiB together/);
  });
});

describe('realistic expressions still load', () => {
  const realistic = [
    `"x-groups" in request.headers && ${H}.split(",").exists(g, g.trim() == "admin")`,
    `${H}.split(",").map(g, g.trim().lowerAscii()).filter(g, g.startsWith("team-")).exists(g, g in ["team-a", "team-b"])`,
    `"x-tenant" in request.headers && request.headers["x-tenant"].lowerAscii() in ["acme", "globex"]`,
    `["10.0.0.0/8", "192.168.0.0/16"].exists(n, cidr(n).containsIP(source.ip))`,
    `[".svc", ".svc.cluster.local"].exists(s, destination.host.endsWith(s))`,
    `request.headers.exists(k, k.startsWith("x-debug-"))`,
    `"baggage" in request.headers && request.headers.baggage.matchesRE2("(^|,)tenant=acme(,|$)")`,
    `source.principal.globMatch("spiffe://cluster.local/ns/prod/*") && destination.port in [80, 443, 8080]`,
  ];
  for (const text of realistic) {
    it(`loads ${text.slice(0, 90)}`, () => {
      assert.ok(cost(text) <= CEL_LIMITS.maxEstimatedCost);
      loads(text);
    });
  }

  it('loads rules reading a list variable (sized as the largest header split)', () => {
    const v = compilePolicyVariables(env, [{ name: 'nets', expression: source('["10.0.0.0/8", "192.168.0.0/16"]') }]);
    assert.ok(v.ok);
    for (const text of [
      'variables.nets.exists(n, cidr(n).containsIP(source.ip))',
      'source.namespace in variables.nets',
      'variables.nets.exists(n, source.principal.startsWith(n))',
    ]) {
      const r = compileExpression(v.env, source(text), { expect: 'bool', what: 'rule', variables: v.facts });
      assert.ok(r.ok, JSON.stringify(!r.ok && r.diagnostics));
    }
  });

  it('loads every policy in policies/', () => {
    const dir = join(import.meta.dirname, '../../policies');
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => ({ path: join(dir, f), text: readFileSync(join(dir, f), 'utf8') }));
    assert.ok(files.length > 0);
    const r = compileFromTexts(files, 1);
    assert.ok(r.ok, JSON.stringify(!r.ok && r.diagnostics));
  });
});
