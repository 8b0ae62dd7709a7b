import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ExpressionSource } from '../../src/policy/model.ts';
import { emptyContext } from '../../src/policy/context.ts';
import { createBaseEnvironment, toActivation } from '../../src/policy/cel/environment.ts';
import { compileExpression } from '../../src/policy/cel/compile-expression.ts';
import { explainExpression, formatExplanation, renderValue, type ExplainNode } from '../../src/policy/cel/explain-expression.ts';
import { CelCidr, CelIp } from '../../src/policy/cel/functions-net.ts';
import { parseCidr, parseIp } from '../../src/net/address.ts';

const env = createBaseEnvironment();

function source(text: string): ExpressionSource {
  return { text, location: { file: 'p.yaml', line: 1, col: 1, path: 'spec.rules[0].when' }, positionAt: (o) => ({ line: 1, col: 1 + o }) };
}

function explain(text: string, headers: Record<string, string> = {}): ExplainNode {
  const r = compileExpression(env, source(text), { expect: 'bool', what: 'when' });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.diagnostics));
  const ctx = emptyContext();
  const act = toActivation({
    ...ctx,
    source: { ...ctx.source, principal: 'spiffe://td/ns/prod/sa/api', namespace: 'prod', serviceAccount: 'api', trustDomain: 'td', ip: '10.1.2.3', port: 5000 },
    destination: { ...ctx.destination, port: 8080 },
    request: { ...ctx.request, headers },
  });
  const node = explainExpression(r.expr, act);
  // The root value is what the engine computes.
  assert.deepEqual(node.value, renderValue(r.expr.evaluate(act)));
  return node;
}

/** The tree without error details, for compact comparisons. */
function shape(n: ExplainNode): unknown {
  return [n.text, n.skipped ? 'skipped' : n.value, ...n.children.map(shape)];
}

describe('explainExpression', () => {
  it('explains && / || / ! / comparisons with the value of every part', () => {
    const node = explain('source.namespace == "prod" && (destination.port in [80, 443] || !(source.serviceAccount == "db"))');
    assert.deepEqual(shape(node), [
      'source.namespace == "prod" && (destination.port in [80, 443] || !(source.serviceAccount == "db"))',
      true,
      ['source.namespace == "prod"', true, ['source.namespace', 'prod']],
      [
        'destination.port in [80, 443] || !(source.serviceAccount == "db")',
        true,
        ['destination.port in [80, 443]', false, ['destination.port', 8080]],
        [
          '!(source.serviceAccount == "db")',
          true,
          ['source.serviceAccount == "db"', false, ['source.serviceAccount', 'api']],
        ],
      ],
    ]);
  });

  it('renders BigInt as numbers and IP/CIDR values as strings', () => {
    const node = explain('cidr("10.0.0.0/8").containsIP(ip(source.ip)) && source.port > 1024');
    assert.deepEqual(shape(node), [
      'cidr("10.0.0.0/8").containsIP(ip(source.ip)) && source.port > 1024',
      true,
      [
        'cidr("10.0.0.0/8").containsIP(ip(source.ip))',
        true,
        ['cidr("10.0.0.0/8")', '10.0.0.0/8'],
        ['ip(source.ip)', '10.1.2.3', ['source.ip', '10.1.2.3']],
      ],
      ['source.port > 1024', true, ['source.port', 5000]],
    ]);
  });

  it('explains ternaries', () => {
    const node = explain('source.namespace == "prod" ? destination.port == 8080 : false');
    assert.equal(node.children.length, 3);
    assert.deepEqual(node.children.map((c) => c.value), [true, true, false]);
  });

  it('shows comprehension bodies unevaluated', () => {
    const node = explain('request.headers.exists(k, k.startsWith("x-"))', { 'x-a': '1' });
    assert.equal(node.value, true);
    assert.deepEqual(shape(node), [
      'request.headers.exists(k, k.startsWith("x-"))',
      true,
      ['request.headers', { 'x-a': '1' }],
      ['k.startsWith("x-")', 'skipped'],
    ]);
    assert.match(formatExplanation(node), /k\.startsWith\("x-"\)  =>  \(not evaluated: inside a comprehension\)/);
  });

  it('reports errors per sub-expression, as CEL absorbs them in ||', () => {
    const node = explain('request.headers["x-tenant"] == "acme" || source.namespace == "prod"');
    assert.equal(node.value, true);
    const [left, right] = node.children;
    assert.ok(left && right);
    assert.deepEqual(left.value, { error: 'No such key: x-tenant' });
    assert.equal(right.value, true);
    assert.match(formatExplanation(node), /request.headers\["x-tenant"\] == "acme"  =>  error: No such key: x-tenant/);
  });

  it('renderValue', () => {
    assert.equal(renderValue(5n), 5);
    assert.equal(renderValue(2n ** 70n), '1180591620717411303424');
    assert.equal(renderValue(new CelIp(parseIp('::ffff:1.2.3.4')!)), '1.2.3.4');
    assert.equal(renderValue(new CelCidr(parseCidr('fd00::/8')!)), 'fd00::/8');
    assert.equal(renderValue(new Date(0)), '1970-01-01T00:00:00.000Z');
    assert.deepEqual(renderValue([1n, 'a']), [1, 'a']);
    assert.deepEqual(renderValue(new Map([['a', 1n]])), { a: 1 });
  });
});
