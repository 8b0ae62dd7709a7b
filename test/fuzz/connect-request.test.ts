/**
 * Fuzz/property tests of the CONNECT request and `:authority` parser (src/hbone/connect-request.ts)
 * and the address parser under it (src/net/address.ts). Random and mutated header sets and
 * authorities must come back as a typed value or a typed error, never an exception; an accepted
 * authority must be the canonical text of what it parsed to (no lenient reading a dialer could
 * read differently) and must round-trip.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseAuthority, parseConnectRequest, type Authority } from '../../src/hbone/connect-request.ts';
import { canonicalIp, formatIp, parseIp } from '../../src/net/address.ts';
import { NASTY_CHARS, checkProperty, mutatedFrom, withinHangBound } from './fuzz.ts';

/** What ztunnel puts in `:authority` (docs/ztunnel-interop.md §4), plus near misses of each. */
const REAL_AUTHORITIES = [
  '10.0.1.7:8080',
  '[fd00::7]:8080',
  'svc.ns.svc.cluster.local:80',
  '[::ffff:10.0.0.5]:15008',
  '127.0.0.1:65535',
  'db.shop.svc.cluster.local.:5432',
];

const NASTY_HOSTS = [
  '127.0.0.1', '127.1', '0x7f.0.0.1', '0177.0.0.1', '127.0.0.01', '1.2.3.256', '1.2.3.4.', '1.2.3.4.5', '1.2.3',
  '::', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '0:0:0:0:0:ffff:7f00:1', '::FFFF:1.2.3.4', '64:ff9b::1.2.3.4',
  'fe80::1%eth0', 'fe80::1%25eth0', 'fe80::1%', '1::2::3', ':::1', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::',
  '1:2:3:4:5:6:1.2.3.4', '::1.2.3.4', '::1.2.3', 'FD00::7', '[::1]', 'localhost', 'LOCALHOST', 'a..b', '.a', 'a.', '-a',
  'a-', '_srv._tcp', 'xn--bcher-kva', 'bücher', 'exam\u0130ple', '\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45',
  '\u0661\u0662\u0667.0.0.1', '\uff11\uff12\uff17.0.0.1', 'a b', 'a\tb', 'a\0b', 'a/b', 'user@host', 'a%2fb', '', ' ',
  'a'.repeat(63), 'a'.repeat(64), `${`${'a'.repeat(63)}.`.repeat(3)}${'a'.repeat(61)}`, `${`${'a'.repeat(63)}.`.repeat(3)}${'a'.repeat(62)}`,
];

const NASTY_PORTS = [
  '0', '00', '1', '080', '0080', '8080', '65535', '65536', '99999', '100000', '+80', '-80', ' 80', '80 ', '8080\0',
  '1e3', '0x50', '\uff18\uff10', '\u0668\u0660', '', ':80', '80:80', '9'.repeat(30), '4294967376',
];

const hostArb = fc.oneof(
  fc.ipV4(),
  fc.ipV4Extended(),
  fc.ipV6(),
  fc.domain(),
  fc.constantFrom(...NASTY_HOSTS),
  mutatedFrom(NASTY_HOSTS.filter((h) => h.length > 0)),
  fc.string({ maxLength: 24, unit: 'binary' }),
);

const portArb = fc.oneof(fc.integer({ min: -2, max: 70_000 }).map(String), fc.constantFrom(...NASTY_PORTS));

/** Authorities assembled from parts, in the shapes a parser has to tell apart. */
const composedAuthorityArb = fc
  .tuple(hostArb, portArb, fc.constantFrom('h:p', '[h]:p', '[h]p', 'h', '[h]', 'h:p:p', '[h%z]:p', '[h]:p]', 'h]:p', '[[h]]:p'))
  .map(([h, p, shape]) => shape.replace('h', h).replace('z', 'eth0').replaceAll('p', p));

/** Huge and repetitive inputs (a peer controls the whole header block up to maxHeaderListBytes). */
const hugeArb = fc
  .tuple(fc.constantFrom('a', '1', ':', '[', ']', '.', 'a.', '1:', 'ff:', '\0', '\u00e9'), fc.integer({ min: 200, max: 70_000 }), portArb)
  .map(([unit, n, p]) => `${unit.repeat(n)}:${p}`);

const authorityArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: composedAuthorityArb },
  { weight: 3, arbitrary: mutatedFrom(REAL_AUTHORITIES) },
  { weight: 1, arbitrary: hugeArb },
  { weight: 1, arbitrary: fc.string({ maxLength: 40, unit: 'binary' }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40, unit: fc.constantFrom(...NASTY_CHARS, 'a', '1', 'f') }) },
);

/** The authority text of a parsed target: what a dialer or a route key is built from. */
function formatAuthority(a: Authority): string {
  if (a.kind === 'host') return `${a.host}:${a.port}`;
  return a.family === 6 ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;
}

const HOST_NAME = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** Every property an accepted authority must have; throws with the reason otherwise. */
function assertAcceptedAuthority(text: string, a: Authority): void {
  assert.ok(Number.isInteger(a.port) && a.port >= 1 && a.port <= 65535, `port ${a.port} out of range`);
  // The port is exactly its decimal text: no sign, no leading zero, no other digit system.
  assert.ok(text.endsWith(`:${a.port}`), `port text of ${JSON.stringify(text)} is not ${a.port}`);
  const hostText = text.slice(0, text.length - String(a.port).length - 1);
  if (a.kind === 'ip') {
    assert.equal(formatIp(parseIp(a.ip)!), a.ip, 'ip is not canonical');
    assert.equal(parseIp(a.ip)!.family, a.family);
    const bracketed = hostText.startsWith('[') && hostText.endsWith(']');
    const inner = bracketed ? hostText.slice(1, -1) : hostText;
    // Brackets exactly for IPv6 text (RFC 3986 §3.2.2), and the text is an address we agree on.
    assert.equal(bracketed, inner.includes(':'), `brackets of ${JSON.stringify(hostText)}`);
    assert.equal(canonicalIp(inner), a.ip);
  } else {
    assert.match(a.host, HOST_NAME, 'host is not a lower-case RFC 1123 name');
    assert.ok(a.host.length <= 253, 'host longer than 253');
    assert.doesNotMatch(a.host, /^[0-9.]+$/, 'a dotted-number host is not a name');
    const lower = hostText.toLowerCase();
    assert.ok(lower === a.host || lower === `${a.host}.`, `${JSON.stringify(hostText)} read as ${a.host}`);
  }
  assert.deepEqual(parseAuthority(formatAuthority(a)), a, 'does not round-trip');
}

describe('fuzz: CONNECT :authority', () => {
  test('random and mutated authorities parse to a checked value or null, never throw', (t) => {
    let accepted = 0;
    checkProperty(
      t,
      'parseAuthority',
      fc.property(authorityArb, (text) => {
        const a = withinHangBound('parseAuthority', () => parseAuthority(text));
        if (a !== null) {
          accepted++;
          assertAcceptedAuthority(text, a);
        }
      }),
      3000,
    );
    // Both outcomes must be exercised, or the checks on accepted values check nothing.
    t.diagnostic(`${accepted} authorities accepted`);
    assert.ok(accepted > 100, `only ${accepted} generated authorities were accepted`);
  });

  test('every address and name ztunnel can send is accepted, canonically', (t) => {
    const port = fc.integer({ min: 1, max: 65535 });
    checkProperty(
      t,
      'parseAuthority accepts real authorities',
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain()), port, (host, p) => {
        const v6 = host.includes(':');
        const text = v6 ? `[${host}]:${p}` : `${host}:${p}`;
        const a = parseAuthority(text);
        assert.ok(a !== null, `${JSON.stringify(text)} refused`);
        assertAcceptedAuthority(text, a);
        if (a.kind === 'ip' && a.family === 6) {
          // RFC 5952 text, as WHATWG URL serialises IPv6 hosts too (an independent implementation).
          assert.equal(a.ip, new URL(`http://[${host}]/`).hostname.slice(1, -1));
        }
        if (!v6 && !/^[0-9.]+$/.test(host)) assert.deepEqual(a, { kind: 'host', host: host.toLowerCase(), port: p });
      }),
      1500,
    );
  });

  test('IPv4 text is accepted only as a strict dotted quad (no octal, hex or short forms)', (t) => {
    const octet = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])';
    const strict = new RegExp(`^${octet}(?:\\.${octet}){3}$`);
    checkProperty(
      t,
      'parseIp IPv4 strictness',
      fc.property(fc.oneof(fc.ipV4Extended(), fc.ipV4(), mutatedFrom(['10.0.0.1', '127.0.0.1', '255.255.255.255'])), (text) => {
        const ip = parseIp(text);
        if (text.includes(':')) return; // IPv6 text (a mutation inserted a colon): another property
        assert.equal(ip !== null, strict.test(text), `parseIp(${JSON.stringify(text)})`);
        if (ip !== null) assert.equal(formatIp(ip), text);
      }),
      2000,
    );
  });
});

/** A header value as Node hands it over: absent, a string, or (repeated) a list. */
const headerValueArb = fc.oneof(
  fc.constant(undefined),
  authorityArb,
  fc.array(authorityArb, { maxLength: 3 }),
);

const methodArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant('CONNECT') },
  { weight: 2, arbitrary: mutatedFrom(['CONNECT', 'GET', 'connect']) },
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.array(fc.constantFrom('CONNECT', 'GET'), { maxLength: 2 }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('CONNECT', 'X', '\0'), fc.integer({ min: 100, max: 30_000 })).map(([m, n]) => m.repeat(n)) },
);

/** Mostly undefined: a pseudo-header a CONNECT must not carry shows up in about one set in eight. */
function rarely<T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> {
  return fc.oneof({ weight: 20, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });
}

const headerSetArb = fc
  .tuple(
    fc.record(
      {
        ':method': methodArb,
        ':authority': fc.oneof(
          { weight: 3, arbitrary: fc.constantFrom(...REAL_AUTHORITIES) },
          { weight: 3, arbitrary: authorityArb },
          { weight: 1, arbitrary: headerValueArb },
        ),
        ':scheme': rarely(fc.oneof(fc.constant('https'), fc.constant(''), headerValueArb)),
        ':path': rarely(fc.oneof(fc.constant('/'), headerValueArb)),
        ':protocol': rarely(fc.oneof(fc.constant('websocket'), headerValueArb)),
      },
      { requiredKeys: [':method', ':authority'] },
    ),
    fc.dictionary(fc.oneof(fc.constantFrom('__proto__', 'constructor', 'baggage', ':status', ':'), fc.string({ maxLength: 8 })), headerValueArb, { maxKeys: 4 }),
    fc.boolean(),
  )
  .map(([pseudo, extra, nullProto]) => {
    // Node's header objects have a null prototype; a plain object is the other shape a caller passes.
    const headers: Record<string, string | string[] | undefined> = nullProto ? Object.create(null) : {};
    for (const [k, v] of Object.entries(extra)) Object.defineProperty(headers, k, { value: v, enumerable: true, writable: true });
    // An optional pseudo-header is either absent or present with the generated value (maybe undefined).
    for (const [k, v] of Object.entries(pseudo)) headers[k] = v;
    return headers;
  });

/** The log message of a refused CONNECT is built from peer-controlled text; it stays bounded. */
const MAX_ERROR_MESSAGE_CHARS = 2048;

describe('fuzz: CONNECT request', () => {
  test('random header sets give a request or a typed error, never a throw', (t) => {
    let accepted = 0;
    checkProperty(
      t,
      'parseConnectRequest',
      fc.property(headerSetArb, (headers) => {
        const r = withinHangBound('parseConnectRequest', () => parseConnectRequest(headers));
        const rawAuthority = headers[':authority'];
        if (r.ok) {
          accepted++;
          assert.equal(headers[':method'], 'CONNECT');
          for (const p of [':scheme', ':path', ':protocol']) assert.equal(headers[p], undefined, `${p} accepted`);
          assert.equal(r.request.authority, rawAuthority);
          assert.deepEqual(r.request.target, parseAuthority(rawAuthority as string));
          assertAcceptedAuthority(r.request.authority, r.request.target);
        } else {
          assert.equal(typeof r.error.message, 'string');
          assert.ok(r.error.message.length > 0);
          assert.ok(r.error.message.length <= MAX_ERROR_MESSAGE_CHARS, `error message of ${r.error.message.length} chars`);
          assert.equal(r.error.authority, typeof rawAuthority === 'string' ? rawAuthority : '');
        }
      }),
      2000,
    );
    t.diagnostic(`${accepted} requests accepted`);
    assert.ok(accepted > 50, `only ${accepted} generated requests were accepted`);
  });
});

describe('fuzz regressions: CONNECT request', () => {
  // WAYGATE_FUZZ_SEED=12202611, first input: a `:method` of 2,065 characters came back whole in the
  // error message (the log line grew with the header; :authority was already cut to 300).
  test('a huge :method does not make a huge error message', () => {
    const r = parseConnectRequest({ ':method': 'CONNECT'.repeat(5000), ':authority': '10.0.1.7:8080' });
    assert.equal(r.ok, false);
    if (!r.ok) assert.ok(r.error.message.length <= MAX_ERROR_MESSAGE_CHARS, `${r.error.message.length} chars`);
  });
});
