/**
 * The rule index's CIDR and prefix/suffix tables: which entries are candidates for a context,
 * when a key rules an entry out (`keysHold`), and the fail-closed edge cases (an address that is
 * "" or does not parse must never drop an entry whose CIDR test would error).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compileFromTexts } from '../../src/policy/load.ts';
import { buildIndex, candidates, describeIndex, keysHold } from '../../src/policy/rule-index.ts';
import { contextFromInput } from '../../src/policy/context-input.ts';
import { emptyContext, type DecisionContext } from '../../src/policy/context.ts';
import { decide, decideWith } from '../../src/policy/engine.ts';
import type { IndexKey } from '../../src/policy/cel/compiled.ts';
import type { PolicySnapshot } from '../../src/policy/snapshot.ts';

function doc(name: string, action: string, rules: Record<string, string>): string {
  return JSON.stringify({
    apiVersion: 'waygate.dev/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { name },
    spec: { action, rules: Object.entries(rules).map(([n, when]) => ({ name: n, when })) },
  });
}

function compile(...docs: string[]): PolicySnapshot {
  const r = compileFromTexts([{ path: 'p.yaml', text: docs.join('\n---\n') }], 1);
  if (!r.ok) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.snapshot;
}

/** A context with the given source/destination fields, bypassing input validation (to test addresses that do not parse). */
function rawContext(source: Partial<DecisionContext['source']>, destination: Partial<DecisionContext['destination']> = {}): DecisionContext {
  const e = emptyContext();
  return { ...e, source: { ...e.source, ...source }, destination: { ...e.destination, ...destination } };
}

const P = (ns: string, sa: string): string => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

describe('keysHold: CIDR, prefix and suffix keys', () => {
  const cidr = (values: string[], emptyIsError = false): IndexKey =>
    emptyIsError ? { kind: 'cidr', attribute: 'source.ip', values, emptyIsError } : { kind: 'cidr', attribute: 'source.ip', values };
  const table: [string, IndexKey, DecisionContext, boolean][] = [
    ['v4 inside', cidr(['10.0.0.0/8']), rawContext({ ip: '10.9.9.9' }), true],
    ['v4 outside', cidr(['10.0.0.0/8']), rawContext({ ip: '11.0.0.1' }), false],
    ['host bits in the literal are ignored', cidr(['10.1.2.3/16']), rawContext({ ip: '10.1.200.1' }), true],
    ['second block', cidr(['10.0.0.0/8', '192.168.0.0/16']), rawContext({ ip: '192.168.3.4' }), true],
    ['v6 inside', cidr(['fd00::/8']), rawContext({ ip: 'fd12::1' }), true],
    ['families never match', cidr(['::/0']), rawContext({ ip: '10.0.0.1' }), false],
    ['mapped block is IPv4', cidr(['::ffff:10.0.0.0/104']), rawContext({ ip: '10.2.3.4' }), true],
    ['"" is false for containsIP(attr)', cidr(['0.0.0.0/0']), rawContext({ ip: '' }), false],
    ['"" is an error for containsIP(ip(attr))', cidr(['0.0.0.0/0'], true), rawContext({ ip: '' }), true],
    ['an unparseable address errors: never ruled out', cidr(['10.0.0.0/8']), rawContext({ ip: 'not-an-ip' }), true],
    ['prefix', { kind: 'prefix', attribute: 'source.principal', values: ['spiffe://cluster.local/ns/prod/'] }, rawContext({ principal: P('prod', 'a') }), true],
    ['prefix miss', { kind: 'prefix', attribute: 'source.principal', values: ['spiffe://cluster.local/ns/dev/'] }, rawContext({ principal: P('prod', 'a') }), false],
    ['suffix', { kind: 'suffix', attribute: 'destination.host', values: ['.x', '.svc'] }, rawContext({}, { host: 'db.svc' }), true],
    ['suffix longer than the value', { kind: 'suffix', attribute: 'destination.host', values: ['long.svc'] }, rawContext({}, { host: 'svc' }), false],
    ['a block that does not parse errors: never ruled out', cidr(['10.0.0.0/33']), rawContext({ ip: '11.0.0.1' }), true],
    ['equality keeps its shape', { attribute: 'destination.port', values: [80] }, rawContext({}, { port: 80 }), true],
  ];
  for (const [name, key, ctx, expected] of table) {
    it(name, () => assert.equal(keysHold([key], ctx), expected));
  }
});

describe('buildIndex', () => {
  it('never files an entry under a CIDR key it cannot parse: the entry is scanned', () => {
    const entries = [{ ordinal: 0 }, { ordinal: 1 }];
    const keys: IndexKey[][] = [[{ kind: 'cidr', attribute: 'source.ip', values: ['10.0.0.0/33'] }], [{ kind: 'cidr', attribute: 'source.ip', values: ['10.0.0.0/8'] }]];
    const index = buildIndex(entries, (e) => keys[e.ordinal]!);
    assert.deepEqual(index.scan, [entries[0]]);
    assert.deepEqual(candidates(index, rawContext({ ip: '192.168.0.1' })), [entries[0]]);
    assert.deepEqual(candidates(index, rawContext({ ip: '10.0.0.1' })), entries);
  });
});

describe('candidates: CIDR tables', () => {
  const s = compile(
    doc('a', 'DENY', {
      wide: 'cidr("10.0.0.0/8").containsIP(source.ip)',
      narrow: 'cidr("10.1.2.0/24").containsIP(source.ip)',
      host: 'cidr("10.1.2.3/32").containsIP(ip(source.ip))',
      // Two overlapping blocks of one key: a context inside both still yields the rule once.
      overlap: 'cidr("10.1.0.0/16").containsIP(source.ip) || cidr("10.1.2.0/23").containsIP(source.ip)',
      v6: 'cidr("fd00:1::/32").containsIP(source.ip)',
      mapped: 'cidr("::ffff:192.168.0.0/112").containsIP(source.ip)',
      scanned: 'source.port == 1',
    }),
  );
  const names = (ctx: DecisionContext): string[] => candidates(s.index.deny, ctx).map((r) => r.name);

  it('one table per (family, prefix length); nothing is scanned but the opaque rule', () => {
    const info = describeIndex(s.index.deny);
    assert.equal(info.scanned, 1);
    assert.deepEqual(info.keyed, { 'cidr source.ip': { values: 7, entries: 6 } });
    // /8, /16, /23, /24, /32 (IPv4; the mapped block is 192.168.0.0/16) and /32 (IPv6).
    assert.equal(info.probes, 6);
  });

  const table: [string, DecisionContext, string[]][] = [
    ['inside every v4 block', rawContext({ ip: '10.1.2.3' }), ['wide', 'narrow', 'host', 'overlap', 'scanned']],
    ['inside the /8 only', rawContext({ ip: '10.200.0.1' }), ['wide', 'scanned']],
    ['IPv6', rawContext({ ip: 'fd00:1::9' }), ['v6', 'scanned']],
    ['IPv4-mapped block', rawContext({ ip: '192.168.4.4' }), ['mapped', 'scanned']],
    ['outside all', rawContext({ ip: '172.16.0.1' }), ['scanned']],
    // "" is false for containsIP(attr) but an error for containsIP(ip(attr)): only `host` stays.
    ['empty address', rawContext({ ip: '' }), ['host', 'scanned']],
    ['unparseable address: every CIDR rule errors, so all are candidates', rawContext({ ip: '10.1.2.3:80' }), ['wide', 'narrow', 'host', 'overlap', 'v6', 'mapped', 'scanned']],
  ];
  for (const [name, ctx, expected] of table) {
    it(name, () => assert.deepEqual(names(ctx), expected));
  }

  it('the index and a raw scan agree on those contexts, errors included', () => {
    for (const [, ctx] of table) {
      const indexed = decide(s, ctx, { defaultAction: 'ALLOW' });
      const raw = decideWith(s, ctx, { defaultAction: 'ALLOW' }, 'raw');
      assert.deepEqual([indexed.decision, indexed.reason, indexed.rule], [raw.decision, raw.reason, raw.rule]);
    }
    // A DENY CIDR test with ip() on a host authority (destination.ip "") fails closed, index or not.
    const d = compile(doc('d', 'DENY', { r: 'cidr("10.0.0.0/8").containsIP(ip(destination.ip))' }));
    const ctx = contextFromInput({ destination: { host: 'db', port: 5432, authority: 'db:5432' } });
    for (const strategy of ['index', 'scan', 'raw'] as const) {
      const v = decideWith(d, ctx, { defaultAction: 'ALLOW' }, strategy);
      assert.deepEqual([v.decision, v.reason, v.rule], ['deny', 'eval_error', 'r'], strategy);
    }
  });
});

describe('candidates: prefix and suffix tables', () => {
  const s = compile(
    doc('a', 'ALLOW', {
      prod: 'source.principal.startsWith("spiffe://cluster.local/ns/prod/")',
      prodOrQa: 'source.principal.startsWith("spiffe://cluster.local/ns/prod/") || source.principal.globMatch("spiffe://cluster.local/ns/qa/*")',
      api: 'source.principal.endsWith("/sa/api")',
      // Overlapping literals of one key ("i" is a suffix of "/sa/api" too): listed once.
      anyI: 'source.principal.endsWith("i") || source.principal.endsWith("pi")',
      svc: 'destination.host.globMatch("*.svc")',
      exact: 'destination.host.globMatch("db")',
    }),
  );
  const names = (ctx: DecisionContext): string[] => candidates(s.index.allow, ctx).map((r) => r.name);

  it('a table per literal length', () => {
    const info = describeIndex(s.index.allow);
    assert.equal(info.scanned, 0);
    assert.deepEqual(info.keyed, {
      'destination.host': { values: 1, entries: 1 },
      'prefix source.principal': { values: 2, entries: 3 },
      'suffix source.principal': { values: 3, entries: 3 },
      'suffix destination.host': { values: 1, entries: 1 },
    });
  });

  const table: [string, DecisionContext, string[]][] = [
    ['prod api', rawContext({ principal: P('prod', 'api') }, { host: 'x.svc' }), ['prod', 'prodOrQa', 'api', 'anyI', 'svc']],
    ['qa web', rawContext({ principal: P('qa', 'web') }, { host: 'db' }), ['prodOrQa', 'exact']],
    ['no identity, short host', rawContext({ principal: '' }, { host: 'a' }), []],
    ['host equal to the suffix minus its dot', rawContext({}, { host: 'svc' }), []],
  ];
  for (const [name, ctx, expected] of table) {
    it(name, () => assert.deepEqual(names(ctx), expected));
  }
});
