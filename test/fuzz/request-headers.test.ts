/**
 * Fuzz/property tests of the informational CONNECT headers (src/hbone/request-headers.ts):
 * `baggage`, `forwarded`, `traceparent`, `x-forwarded-network` and the header map. Inputs are
 * ztunnel's real values (docs/ztunnel-interop.md §4) mutated, random bytes, and huge repetitions.
 * Every parser must return (never throw), keep its output bounded, keep peer-chosen keys such as
 * `__proto__` as plain data (null-prototype maps) and leave Object.prototype alone.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  MAX_BAGGAGE_BYTES,
  MAX_BAGGAGE_CACHE_ENTRIES,
  MAX_BAGGAGE_MEMBERS,
  MAX_FORWARDED_ELEMENTS,
  collectHeaders,
  parseBaggage,
  parseForwarded,
  parseForwardedNetwork,
  parseRequestHeaders,
  parseTraceparent,
  BaggageCache,
  type ForwardedElement,
  type TraceParent,
} from '../../src/hbone/request-headers.ts';
import { NASTY_CHARS, NASTY_WORDS, assertObjectPrototypeIntact, checkProperty, mutatedFrom, withinHangBound } from './fuzz.ts';

/** What ztunnel sends (docs/ztunnel-interop.md §4), plus W3C and RFC 7239 examples. */
const REAL_BAGGAGE = [
  'k8s.cluster.name=Kubernetes,k8s.namespace.name=prod,k8s.deployment.name=frontend,service.name=frontend,service.version=v1',
  'k8s.cluster.name=Kubernetes,k8s.namespace.name=prod,k8s.pod.name=frontend-6d4cf56db6-x2x7z,service.name=frontend,service.version=,cloud.region=us-east1,cloud.availability_zone=us-east1-b',
  'key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue',
  'a=%E2%82%AC,b=%25,c=%zz,__proto__=x,constructor=y,prototype=z',
];
const REAL_FORWARDED = [
  'for="10.0.0.5:43122"',
  'for="[fd00::5]:43122";host=api.prod.svc.cluster.local',
  'for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com',
  'For="[2001:db8:cafe::17]:4711";proto=https',
  'for="a\\"b\\\\c";host=x, for=unknown;__proto__=p;constructor=c',
];
const REAL_TRACEPARENT = [
  '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  'cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like',
];
const REAL_NETWORK = ['network1', 'east-west.cluster-2'];

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A peer controls up to maxHeaderListBytes (16 MiB at most) of header text: repetitions of a near miss. */
const hugeArb = fc
  .tuple(
    fc.constantFrom('a="";', 'for="x";', 'a=b,', 'a=b;', '"', '\\', ',', ';', '=', 'k=%', 'k=v;p', ' ', '__proto__=x,', '0'),
    fc.integer({ min: 1, max: 40_000 }),
    fc.constantFrom('', '\\', '"', ',', '%'),
  )
  .map(([unit, n, tail]) => unit.repeat(n) + tail);

/** A header value: a real one mutated, random code units, nasty fragments, or a huge repetition. */
function headerArb(real: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: mutatedFrom(real) },
    { weight: 2, arbitrary: fc.string({ maxLength: 80, unit: 'binary' }) },
    { weight: 2, arbitrary: fc.string({ maxLength: 60, unit: fc.constantFrom(...NASTY_CHARS, ...NASTY_WORDS, 'a', '0', 'for', 'host') }) },
    { weight: 1, arbitrary: hugeArb },
  );
}

describe('fuzz: baggage', () => {
  test('mutated and random baggage: bounded null-prototype record, never a throw', (t) => {
    checkProperty(
      t,
      'parseBaggage',
      fc.property(headerArb(REAL_BAGGAGE), (header) => {
        const r = withinHangBound('parseBaggage', () => parseBaggage(header));
        assert.equal(Object.getPrototypeOf(r), null, 'not a null-prototype record');
        const keys = Object.keys(r);
        assert.ok(keys.length <= MAX_BAGGAGE_MEMBERS, `${keys.length} members`);
        let size = 0;
        for (const k of keys) {
          assert.match(k, TOKEN);
          assert.equal(typeof r[k], 'string');
          size += k.length + 1 + r[k]!.length;
        }
        assert.ok(size <= MAX_BAGGAGE_BYTES, `${size} characters kept`);
        assertObjectPrototypeIntact();
        // What was kept means the same when written back percent-encoded (W3C Baggage §3.2).
        const again = keys.map((k) => `${k}=${encodeURIComponent(r[k]!)}`).join(',');
        if (again.length <= MAX_BAGGAGE_BYTES) assert.deepEqual({ ...parseBaggage(again) }, { ...r });
      }),
      1500,
    );
  });

  test('well-formed baggage reads as its members, first occurrence wins, 64 members at most', (t) => {
    const key = fc.oneof(fc.stringMatching(/^[a-z][a-z0-9._-]{0,15}$/), fc.constantFrom('__proto__', 'constructor', 'toString', 'k8s.namespace.name'));
    const value = fc.stringMatching(/^[A-Za-z0-9._-]{0,12}$/);
    checkProperty(
      t,
      'parseBaggage model',
      fc.property(fc.array(fc.tuple(key, value), { maxLength: 80 }), (members) => {
        const header = members.map(([k, v]) => `${k}=${v}`).join(',');
        fc.pre(header.length <= MAX_BAGGAGE_BYTES);
        const expected: Record<string, string> = Object.create(null);
        for (const [k, v] of members.slice(0, MAX_BAGGAGE_MEMBERS)) if (!(k in expected)) expected[k] = v;
        assert.deepEqual(parseBaggage(header), expected);
      }),
      500,
    );
  });

  test('a connection cache stays bounded and returns what a fresh parse returns', (t) => {
    checkProperty(
      t,
      'parseRequestHeaders with a baggage cache',
      fc.property(fc.array(headerArb(REAL_BAGGAGE), { minLength: 1, maxLength: 30 }), (values) => {
        const cache = new BaggageCache();
        for (const v of values) {
          const parsed = parseRequestHeaders([':method', 'CONNECT', 'baggage', v], cache);
          assert.ok(Object.isFrozen(parsed.baggage) || v === '', 'a shared baggage record is frozen');
          assert.deepEqual({ ...parsed.baggage }, { ...parseBaggage(v) });
          assert.ok(cache.size <= MAX_BAGGAGE_CACHE_ENTRIES, `${cache.size} cache entries`);
        }
        // The value just parsed is remembered: the next CONNECT with it shares the record.
        const last = values[values.length - 1]!;
        const again = () => parseRequestHeaders([':method', 'CONNECT', 'baggage', last], cache).baggage;
        if (last !== '') assert.equal(again(), again(), 'a repeated baggage value is a cache hit');
      }),
      200,
    );
  });
});

/** RFC 7239 §4 value: a token as is, anything else (the empty string too) a quoted-string, `"` and `\` escaped. */
function forwardedValue(v: string): string {
  return TOKEN.test(v) ? v : `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

const FORWARDED_KEYS = new Set(['for', 'by', 'host', 'proto']);

describe('fuzz: forwarded', () => {
  test('mutated and random forwarded: at most 16 known-key elements, bounded, never a throw', (t) => {
    checkProperty(
      t,
      'parseForwarded',
      fc.property(headerArb(REAL_FORWARDED), (header) => {
        const r = withinHangBound('parseForwarded', () => parseForwarded(header));
        assert.ok(Array.isArray(r));
        assert.ok(r.length <= MAX_FORWARDED_ELEMENTS, `${r.length} elements`);
        let size = 0;
        for (const element of r) {
          for (const k of Reflect.ownKeys(element)) {
            assert.ok(typeof k === 'string' && FORWARDED_KEYS.has(k), `key ${String(k)}`);
            const v = element[k as keyof ForwardedElement];
            assert.equal(typeof v, 'string');
            size += v!.length;
          }
        }
        assert.ok(size <= header.length, `${size} characters out of a ${header.length}-character header`);
        assertObjectPrototypeIntact();
      }),
      1500,
    );
  });

  test('well-formed forwarded elements read back as written (RFC 7239 §4 quoting)', (t) => {
    const value = fc.oneof(
      fc.constantFrom('10.0.0.5:43122', '[fd00::5]:43122', 'unknown', '_hidden', 'api.prod.svc.cluster.local', 'http', 'a"b', 'a\\b', 'x,y;z=w', ''),
      fc.string({ maxLength: 12, unit: fc.constantFrom('a', '1', ':', '.', '[', ']', '"', '\\', ',', ';', '=', ' ') }),
    );
    const element = fc.record(
      { for: value, by: value, host: value, proto: value },
      { requiredKeys: [] },
    ).filter((e) => Object.keys(e).length > 0);
    checkProperty(
      t,
      'parseForwarded model',
      fc.property(fc.array(element, { minLength: 1, maxLength: MAX_FORWARDED_ELEMENTS }), (elements) => {
        const header = elements
          .map((e) => Object.entries(e).map(([k, v]) => `${k}=${forwardedValue(v!)}`).join(';'))
          .join(', ');
        assert.deepEqual(parseForwarded(header).map((e) => ({ ...e })), elements.map((e) => ({ ...e })));
      }),
      500,
    );
  });
});

/** W3C Trace Context §3.2, written independently of the parser: the reference it must agree with. */
function referenceTraceparent(header: string | undefined): TraceParent | null {
  if (!header) return null;
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/s.exec(header.trim());
  if (!m) return null;
  const [, version, traceId, parentId, flags, rest] = m;
  if (version === 'ff') return null;
  if (version === '00' && rest !== undefined) return null;
  if (/^0+$/.test(traceId!) || /^0+$/.test(parentId!)) return null;
  return { version: version!, traceId: traceId!, parentId: parentId!, flags: flags! };
}

describe('fuzz: traceparent and x-forwarded-network', () => {
  test('traceparent agrees with a reference reading of W3C Trace Context', (t) => {
    checkProperty(
      t,
      'parseTraceparent',
      fc.property(fc.oneof(headerArb(REAL_TRACEPARENT), mutatedFrom(REAL_TRACEPARENT)), (header) => {
        const r = withinHangBound('parseTraceparent', () => parseTraceparent(header));
        assert.deepEqual(r, referenceTraceparent(header));
      }),
      2000,
    );
  });

  test('x-forwarded-network is a short token or nothing', (t) => {
    checkProperty(
      t,
      'parseForwardedNetwork',
      fc.property(headerArb(REAL_NETWORK), (header) => {
        const r = withinHangBound('parseForwardedNetwork', () => parseForwardedNetwork(header));
        assert.ok(r === '' || (TOKEN.test(r) && r.length <= 253), JSON.stringify(r));
      }),
      1000,
    );
  });
});

describe('fuzz: the request header map', () => {
  const nameArb = fc.oneof(
    fc.constantFrom('baggage', 'Forwarded', 'TRACEPARENT', 'x-forwarded-network', ':method', ':authority', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'),
    fc.string({ maxLength: 12 }),
  );
  const valueArb = fc.oneof(headerArb([...REAL_BAGGAGE, ...REAL_FORWARDED, ...REAL_TRACEPARENT]), fc.constantFrom('', 'x'));
  test('random raw header lists: null-prototype map, lower-case names, no pseudo-header, bounded', (t) => {
    checkProperty(
      t,
      'collectHeaders and parseRequestHeaders',
      fc.property(fc.array(fc.tuple(nameArb, valueArb), { maxLength: 12 }), (pairs) => {
        const raw = pairs.flat();
        const inputSize = raw.reduce((n, s) => n + s.length + 2, 0);
        const headers = withinHangBound('collectHeaders', () => collectHeaders(raw));
        assert.equal(Object.getPrototypeOf(headers), null);
        let size = 0;
        for (const [k, v] of Object.entries(headers)) {
          assert.equal(k, k.toLowerCase());
          assert.notEqual(k[0], ':');
          size += k.length + v.length;
        }
        assert.ok(size <= inputSize, `${size} characters from ${inputSize}`);
        const parsed = withinHangBound('parseRequestHeaders', () => parseRequestHeaders(raw));
        assert.equal(Object.getPrototypeOf(parsed.baggage), null);
        assert.ok(parsed.traceId === '' || /^[0-9a-f]{32}$/.test(parsed.traceId));
        assertObjectPrototypeIntact();
      }),
      1000,
    );
  });
});

describe('fuzz regressions: request headers', () => {
  // WAYGATE_FUZZ_SEED=12202611 (parseForwarded, run 507; the header map, run 876): a forwarded
  // header of many quoted values and one late '\' made every quoted value search to that '\',
  // quadratic: 1 MiB took 0.9 s and this 4 MiB header 20 s (maxHeaderListBytes allows 16 MiB, and
  // repeated forwarded headers are joined into one). Linear now: tens of milliseconds.
  test('forwarded: 4 MiB of quoted values and a trailing backslash parses within the hang bound', () => {
    const header = 'a="";'.repeat((4 * 1024 * 1024) / 5) + '\\';
    const r = withinHangBound('parseForwarded', () => parseForwarded(header));
    assert.deepEqual(r, []);
    const escaped = 'for="x";'.repeat(100_000) + 'by="a\\"b"';
    const r2 = withinHangBound('parseForwarded', () => parseForwarded(escaped));
    assert.deepEqual(r2.map((e) => ({ ...e })), [{ for: 'x', by: 'a"b' }]);
  });
});
