import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { emptyContext, type DecisionContext } from '../../src/policy/context.ts';
import {
  CelDestination,
  CelSource,
  createBaseEnvironment,
  createPolicyEnvironment,
  policyVariablesValue,
  toActivation,
} from '../../src/policy/cel/environment.ts';

const base = createBaseEnvironment();

function ctx(): DecisionContext {
  const c = emptyContext(new Date('2026-03-04T05:06:07Z'));
  return {
    ...c,
    source: { ...c.source, principal: 'spiffe://td/ns/a/sa/b', ip: '10.0.0.1', port: 40000 },
    destination: { ip: '10.0.0.2', host: '', port: 443, authority: '10.0.0.2:443', service: '', namespace: '', workload: '', principal: '' },
    request: { headers: { 'x-tenant': 'acme', constructor: 'c' }, baggage: { 'service.name': 'web' }, traceId: '0af7651916cd43dd8448eb211c80319c' },
    connection: { id: 'c-1', tlsVersion: 'TLSv1.3' },
  };
}

function evaluate(text: string, activation = toActivation(ctx()), env = base): unknown {
  const p = env.parse(text);
  const c = p.check();
  assert.ok(c.valid, `${text}: ${c.error?.message}`);
  return p(activation);
}

describe('createBaseEnvironment', () => {
  it('declares every docs/design.md §3 attribute with its type', () => {
    const table: [string, string][] = [
      ['source.principal', 'string'],
      ['source.trustDomain', 'string'],
      ['source.namespace', 'string'],
      ['source.serviceAccount', 'string'],
      ['source.ip', 'string'],
      ['source.port', 'int'],
      ['destination.ip', 'string'],
      ['destination.host', 'string'],
      ['destination.port', 'int'],
      ['destination.authority', 'string'],
      ['request.headers', 'map<string, string>'],
      ['request.baggage', 'map<string, string>'],
      ['request.traceId', 'string'],
      ['connection.id', 'string'],
      ['connection.tlsVersion', 'string'],
      ['now', 'google.protobuf.Timestamp'],
    ];
    for (const [expr, type] of table) assert.equal(base.check(expr).type, type, expr);
  });

  it('refuses undeclared variables (no dyn fallback)', () => {
    assert.equal(base.check('user.name == "x"').valid, false);
    assert.equal(base.check('variables.x').valid, false);
  });
});

describe('toActivation', () => {
  it('converts ports to BigInt and keeps strings and maps as given', () => {
    const c = ctx();
    const a = toActivation(c);
    assert.ok(a.source instanceof CelSource);
    assert.ok(a.destination instanceof CelDestination);
    assert.equal((a.source as CelSource).port, 40000n);
    assert.equal((a.destination as CelDestination).port, 443n);
    assert.equal(a.now, c.now);
    assert.equal(evaluate('source.port == 40000 && destination.port == 443'), true);
    assert.equal(evaluate('request.traceId.size() == 32 && connection.tlsVersion == "TLSv1.3" && connection.id == "c-1"'), true);
  });

  it('reads headers as a map without inheriting Object.prototype names', () => {
    const noCtor = toActivation({ ...ctx(), request: { headers: {}, baggage: {}, traceId: '' } });
    assert.equal(evaluate('"toString" in request.headers', noCtor), false);
    assert.equal(evaluate('has(request.headers.toString)', noCtor), false);
    // A peer-chosen header named `constructor` must not break map typing.
    assert.equal(evaluate('"constructor" in request.headers && request.headers.constructor == "c"'), true);
    assert.equal(evaluate('request.headers.exists(k, k == "constructor")'), true);
    assert.equal(evaluate('request.headers["x-tenant"] == "acme" && request.baggage["service.name"] == "web"'), true);
    assert.equal(evaluate('has(request.headers.authorization)'), false);
  });

  it('exposes now as a timestamp', () => {
    assert.equal(evaluate('now == timestamp("2026-03-04T05:06:07Z")'), true);
    assert.equal(evaluate('now.getHours() == 5 && now.getDayOfWeek() == 3'), true);
    assert.equal(evaluate('now + duration("1h") > now'), true);
  });
});

describe('createPolicyEnvironment', () => {
  it('declares variables with their types and leaves the base untouched', () => {
    const env = createPolicyEnvironment(base, [
      { name: 'prod', type: 'bool' },
      { name: 'nets', type: 'list<string>' },
      { name: 'net', type: 'net.CIDR' },
    ]);
    assert.equal(env.check('variables.prod').type, 'bool');
    assert.equal(env.check('variables.nets').type, 'list<string>');
    assert.equal(env.check('variables.net.containsIP(source.ip)').type, 'bool');
    assert.equal(env.check('variables.prod == 1').valid, false);
    assert.equal(base.check('variables.prod').valid, false);
    const other = createPolicyEnvironment(base, []);
    assert.equal(other.check('variables.prod').valid, false);
    const act = { ...toActivation(ctx()), variables: policyVariablesValue(env, { prod: true, nets: ['10.0.0.0/8'] }) };
    assert.equal(evaluate('variables.prod && variables.nets.exists(n, cidr(n).containsIP(source.ip))', act, env), true);
  });

  it('each environment has its own variables value type', () => {
    const a = createPolicyEnvironment(base, [{ name: 'x', type: 'bool' }]);
    const b = createPolicyEnvironment(base, [{ name: 'x', type: 'bool' }]);
    const act = { ...toActivation(ctx()), variables: policyVariablesValue(a, { x: true }) };
    assert.equal(evaluate('variables.x', act, a), true);
    // A value made for another environment is refused, not silently misread.
    assert.throws(() => evaluate('variables.x', act, b), /Unsupported type: PolicyVariables/);
    assert.throws(() => policyVariablesValue(base, {}), /not made by createPolicyEnvironment/);
  });

  it('a variable value of the wrong runtime type is an evaluation error', () => {
    const env = createPolicyEnvironment(base, [{ name: 'x', type: 'bool' }]);
    const act = { ...toActivation(ctx()), variables: policyVariablesValue(env, { x: 'yes' }) };
    assert.throws(() => evaluate('variables.x', act, env), /not of type 'bool'/);
  });
});
