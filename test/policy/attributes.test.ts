/**
 * The attribute catalogue (src/policy/attributes.ts) and what derives from it: every attribute is
 * a typed CEL variable, filled by the transport from its facts, keyed (or refused, with the
 * catalogue's reason) by the decision cache, keyed by the index where the catalogue says so,
 * parsed from a PolicyTest input, written in a decision record and read back for replay; and the
 * schemas and the docs table are current. Written against the catalogue, not a list of names, so
 * an attribute added there is checked here without editing this file
 * (attribute-extension.test.ts adds one end to end).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  AUDIT_SCHEMA_VERSION,
  decisionRecord,
  recordedInput,
  type DecisionRecord,
  type DecisionRecordHead,
  type DecisionRecordTail,
} from '../../src/audit/record.ts';
import { REDACTED } from '../../src/audit/redact.ts';
import type { ConnectionFacts, StreamFacts } from '../../src/policy/attributes.ts';
import { RENDERERS, formatSchemaJson } from '../../src/policy/attribute-docs.ts';
import { ATTRIBUTES, catalogueProblems, GROUPS, TOP_LEVEL, inputAttributes, type Attribute, type AttributeGroup } from '../../src/policy/attribute-tables.ts';
import { createBaseEnvironment } from '../../src/policy/cel/environment.ts';
import { INDEXABLE_ATTRIBUTES } from '../../src/policy/cel/compiled.ts';
import { connectionAttributes, decisionContext, emptyContext, streamAttributes, type DecisionContext } from '../../src/policy/context.ts';
import { contextFromAuditRecord, contextFromInput } from '../../src/policy/context-input.ts';
import { cachePlan, UNCACHEABLE } from '../../src/policy/decision-cache.ts';
import { DOCUMENT_FIELDS, INPUT_GROUP_FIELDS, parsePolicyDocuments } from '../../src/policy/documents.ts';
import { compileFromTexts } from '../../src/policy/load.ts';
import type { PolicyTest } from '../../src/policy/model.ts';
import { attributeValue } from '../../src/policy/rule-index.ts';
import type { PolicySnapshot } from '../../src/policy/snapshot.ts';

const ROOT = new URL('../../', import.meta.url);

/** A distinct, valid input value for an attribute of each format. */
function sample(a: Attribute, i: number): unknown {
  switch (a.format) {
    case 'spiffe-id':
      return `spiffe://example.org/ns/ns${i}/sa/sa${i}`;
    case 'ip':
      return `10.0.${i}.1`;
    case 'port':
      return 1000 + i;
    case 'header-map':
      return { [`x-h${i}`]: `v${i}`, traceparent: 'tp' };
    case 'string-map':
      return { [`k${i}`]: `v${i}` };
    case 'timestamp':
      return '2026-03-04T05:06:07.000Z';
    default:
      return `value${i}`;
  }
}

/** An input stating every input attribute of the catalogue. */
function fullInput(): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  let i = 0;
  for (const g of GROUPS) input[g.name] = Object.fromEntries(inputAttributes(g).map((a) => [a.name, sample(a, ++i)]));
  for (const a of TOP_LEVEL) input[a.name] = sample(a, ++i);
  return input;
}

const valueAt = (ctx: DecisionContext, a: Attribute): unknown =>
  a.group === null ? (ctx as unknown as Record<string, unknown>)[a.name] : (ctx as unknown as Record<string, Record<string, unknown>>)[a.group]![a.name];

function compile(rules: Record<string, string>): PolicySnapshot {
  const text = JSON.stringify({
    apiVersion: 'waygate.dev/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'p' },
    spec: { action: 'ALLOW', rules: Object.entries(rules).map(([name, when]) => ({ name, when })) },
  });
  const r = compileFromTexts([{ path: 'p.yaml', text }], 1);
  if (!r.ok) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.snapshot;
}

/** A CEL literal of an attribute's type (a constant key read for maps). */
function readOf(a: Attribute): string {
  switch (a.format) {
    case 'port':
      return `${a.path} == 1`;
    case 'header-map':
    case 'string-map':
      return `${a.path}["k"] == "v"`;
    case 'timestamp':
      return `${a.path} > timestamp("2020-01-01T00:00:00Z")`;
    default:
      return `${a.path} == "v"`;
  }
}

describe('attribute catalogue', () => {
  it('the reference text generated from it is current (run `npm run schema` after changing the catalogue)', () => {
    for (const [file, render] of Object.entries(RENDERERS)) {
      const current = readFileSync(new URL(file, ROOT), 'utf8');
      assert.equal(render(current), current, `${file} is not current: run npm run schema`);
    }
    // The formatter writes the hand-written schema files as they are, so only the generated parts ever change.
    for (const f of ['schema/waygate-policy.schema.json', 'schema/policy-test.schema.json', 'schema/authorization-policy.schema.json']) {
      const text = readFileSync(new URL(f, ROOT), 'utf8');
      assert.equal(formatSchemaJson(JSON.parse(text)), text, f);
    }
  });

  it('a mistake in the catalogue is refused when the modules load, naming the attribute', () => {
    assert.deepEqual(catalogueProblems(GROUPS, TOP_LEVEL), []);
    const source = GROUPS.find((g) => g.name === 'source')!;
    const edit = (name: string, over: Partial<Attribute['def']>): AttributeGroup => ({
      ...source,
      attributes: source.attributes.map((a) => (a.name === name ? { ...a, def: { ...a.def, ...over } } : a)),
    });
    const problems = (g: AttributeGroup): string[] => catalogueProblems([g], []);
    assert.match(problems(edit('namespace', { maxLength: undefined }))[0]!, /source\.namespace: a string attribute needs a maxLength/);
    assert.match(problems(edit('port', { index: { kinds: ['prefix'], rank: 99 } }))[0]!, /source\.port: the index cannot key a port attribute by prefix/);
    assert.match(problems(edit('ip', { index: { kinds: ['cidr'], rank: 0 } }))[0]!, /index rank 0 is also source\.principal's/);
    assert.match(problems(edit('namespace', { derive: { from: 'ip', part: 'namespace' } }))[0]!, /derives from "ip", which is not a spiffe-id attribute/);
  });

  it('every attribute is a CEL variable of its catalogue type', () => {
    const env = createBaseEnvironment();
    for (const a of ATTRIBUTES) {
      const c = env.check(a.path);
      assert.ok(c.valid, `${a.path}: ${c.error?.message}`);
      assert.equal(c.type, a.celType, a.path);
    }
  });

  it('the transport fills every attribute from its facts: once per connection, per CONNECT, no copies', () => {
    const conn: ConnectionFacts = {
      id: 'c-7',
      tls: { getProtocol: () => 'TLSv1.3' } as unknown as ConnectionFacts['tls'],
      identity: { principal: 'spiffe://example.org/ns/prod/sa/api', trustDomain: 'example.org', namespace: 'prod', serviceAccount: 'api' },
      peer: { ip: '10.1.2.3', port: 40000 },
    };
    const stream: StreamFacts = {
      authority: 'db.svc:5432',
      target: { ip: '10.9.0.1', host: 'db.svc', port: 5432, service: '', namespace: '', workload: '', principal: '' },
      request: { headers: { 'x-a': '1' }, baggage: { k: 'v' }, traceId: 'ab'.repeat(16) },
      now: new Date('2026-01-02T03:04:05Z'),
    };
    const c = connectionAttributes(conn);
    const s = streamAttributes(stream);
    const ctx = decisionContext(c, s);
    for (const g of GROUPS) {
      assert.deepEqual(Object.keys(ctx[g.name as keyof DecisionContext] as object), g.attributes.map((a) => a.name), g.name);
      const scoped = ((g.def.scope === 'connection' ? c : s) as unknown as Record<string, unknown>)[g.name];
      assert.equal((ctx as unknown as Record<string, unknown>)[g.name], scoped, `${g.name} is the ${g.def.scope}'s object`);
      if (g.def.scope === 'connection') assert.ok(Object.isFrozen(scoped), `${g.name} is shared by every CONNECT of the connection`);
    }
    for (const a of ATTRIBUTES) {
      const facts = a.group !== null && GROUPS.find((g) => g.name === a.group)!.def.scope === 'connection' ? conn : stream;
      assert.deepEqual(valueAt(ctx, a), (a.def.read as (f: unknown) => unknown)(facts), a.path);
    }
    assert.equal(ctx.source.principal, 'spiffe://example.org/ns/prod/sa/api');
    assert.equal(ctx.connection.tlsVersion, 'TLSv1.3');
    assert.equal(ctx.destination.port, 5432);
    assert.equal(ctx.now, stream.now);
    // The empty context has the same shape.
    const empty = emptyContext();
    for (const g of GROUPS) assert.deepEqual(Object.keys(empty[g.name as keyof DecisionContext] as object), g.attributes.map((a) => a.name));
  });

  it('the decision cache keys on every cacheable attribute and refuses the others with the catalogue reason', () => {
    for (const a of ATTRIBUTES) {
      const plan = cachePlan(compile({ r: readOf(a) }));
      const isMap = a.format === 'header-map' || a.format === 'string-map';
      if (a.def.cache === true || isMap) {
        assert.ok(plan.enabled, `${a.path}: ${plan.enabled ? '' : plan.reason}`);
        assert.deepEqual(plan.attributes, [isMap ? `${a.path}.k` : a.path]);
      } else {
        assert.ok(!plan.enabled, a.path);
        assert.equal(plan.reason, UNCACHEABLE[a.path]);
        assert.ok(plan.reason.includes(a.def.cache), plan.reason);
      }
      if (isMap) {
        // A whole-map read: the catalogue's reason.
        const whole = cachePlan(compile({ r: `${a.path}.size() > 0` }));
        assert.ok(!whole.enabled && whole.reason.includes(a.def.cache as string), a.path);
      }
    }
  });

  it('the rule index keys on the attributes the catalogue lets it, best-ranked first, reading them from the context', () => {
    const indexed = ATTRIBUTES.filter((a) => a.def.index !== undefined).sort((x, y) => x.def.index!.rank - y.def.index!.rank);
    assert.deepEqual(INDEXABLE_ATTRIBUTES, indexed.map((a) => a.path));
    const ctx = contextFromInput(fullInput());
    for (const a of indexed) assert.equal(attributeValue(ctx, a.path as never), valueAt(ctx, a), a.path);
    for (const a of indexed) {
      const s = compile({ r: readOf(a) });
      const keyed = s.index.allow.maps.map((m) => m.attribute);
      assert.deepEqual(keyed, a.def.index!.kinds.includes('equals') ? [a.path] : [], a.path);
    }
  });

  it('a PolicyTest input states every attribute but the derived ones, in YAML and in JSON', () => {
    assert.deepEqual(DOCUMENT_FIELDS.input, [...GROUPS.map((g) => g.name), ...TOP_LEVEL.map((a) => a.name)]);
    for (const g of GROUPS) assert.deepEqual(INPUT_GROUP_FIELDS.get(g.name), inputAttributes(g).map((a) => a.name));
    const input = fullInput();
    const yaml = JSON.stringify({
      apiVersion: 'waygate.dev/v1alpha1',
      kind: 'PolicyTest',
      metadata: { name: 't' },
      spec: { cases: [{ name: 'c', input, expect: { decision: 'deny' } }] },
    });
    const parsed = parsePolicyDocuments(yaml, 't.yaml');
    assert.deepEqual(parsed.diagnostics, []);
    const fromYaml = (parsed.documents[0] as PolicyTest).cases[0]!.input;
    assert.deepEqual(contextFromInput(fromYaml), contextFromInput(input));
    const ctx = contextFromInput(input);
    for (const a of ATTRIBUTES) {
      if (a.def.derive !== undefined) continue;
      const expected = a.format === 'timestamp' ? new Date(input[a.name] as string) : (input[a.group!] as Record<string, unknown>)[a.name];
      assert.deepEqual(valueAt(ctx, a), expected, a.path);
    }
    for (const g of GROUPS) {
      for (const a of g.attributes) {
        if (a.def.derive === undefined) continue;
        assert.throws(() => contextFromInput({ [g.name]: { [a.name]: 'x' } }), /unknown field/, `${a.path} is derived, not an input`);
      }
    }
  });

  it('a decision record holds every attribute where the catalogue says, and replay reads the same context back', () => {
    const ctx = contextFromInput(fullInput());
    const headerMap = ATTRIBUTES.find((a) => a.format === 'header-map')!;
    const headerNames = Object.keys(valueAt(ctx, headerMap) as object);
    const fields: DecisionRecordHead & DecisionRecordTail = {
      schema: AUDIT_SCHEMA_VERSION, event: 'decision', time: ctx.now.toISOString(), decisionId: 'd', connectionId: 'c', streamId: 1,
      decision: 'allow', reason: 'allowed', status: 200, policy: 'p', rule: 'r', dryRun: null, audit: [], evalErrors: [],
      snapshot: { version: 1, hash: 'h' }, evalMicros: 3,
    };
    const record = decisionRecord(fields, ctx, { allow: headerNames, redact: ['traceparent'] });
    const written = record as unknown as Record<string, unknown>;
    // The record's fields in order: the head, the input as the catalogue lays it out, the tail.
    const input = GROUPS.flatMap((g) => (g.def.record === 'nested' ? [g.name] : g.attributes.map((a) => a.name)));
    // `upstream` and `detail` are undefined here (no discovery, not refused): JSON leaves them out.
    assert.deepEqual(Object.keys(written), [...Object.keys(fields).filter((k) => k !== 'evalMicros'), ...input, 'evalMicros', 'upstream', 'detail']);
    assert.ok(!('upstream' in JSON.parse(JSON.stringify(record))) && !('detail' in JSON.parse(JSON.stringify(record))));
    for (const g of GROUPS) {
      if (g.def.record === 'nested') {
        assert.equal(written[g.name], (ctx as unknown as Record<string, unknown>)[g.name], `${g.name}: the context's object, no copy`);
        continue;
      }
      for (const a of g.attributes) {
        if (a.format === 'header-map') assert.equal((written[a.name] as Record<string, string>).traceparent, REDACTED);
        else assert.deepEqual(written[a.name], valueAt(ctx, a), a.path);
      }
    }
    const back = contextFromAuditRecord(record);
    const headersBack = valueAt(back, headerMap) as Record<string, string>;
    assert.equal(headersBack.traceparent, REDACTED);
    // Everything else comes back as it was decided.
    const { traceparent: _, ...others } = headersBack;
    const { traceparent: __, ...sent } = valueAt(ctx, headerMap) as Record<string, string>;
    assert.deepEqual(others, sent);
    for (const a of ATTRIBUTES) if (a !== headerMap) assert.deepEqual(valueAt(back, a), valueAt(ctx, a), a.path);
    // A record without a nested group was not written by waygate: refused, not replayed as "no identity".
    const nested = GROUPS.find((g) => g.def.record === 'nested')!;
    assert.throws(() => recordedInput({ ...record, [nested.name]: undefined } as DecisionRecord), new RegExp(`no "${nested.name}"`));
  });
});
