/**
 * Table tests for the pure parts of the HBONE server: CONNECT validation, the informational
 * headers, destination rules, PROXY v2 encoding, HTTP/2 settings and option validation.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAuthority, parseConnectRequest } from '../../src/hbone/connect-request.ts';
import { collectHeaders, parseBaggage, parseForwarded, parseForwardedNetwork, parseTraceparent, MAX_BAGGAGE_MEMBERS } from '../../src/hbone/request-headers.ts';
import { DestinationPolicy } from '../../src/hbone/destination.ts';
import { encodeProxyV2, PROXY_V2_SIGNATURE } from '../../src/upstream/proxy-v2.ts';
import { h2Settings, resolveH2Options } from '../../src/hbone/h2-settings.ts';
import { createHboneServer, type HboneServerOptions } from '../../src/hbone/server.ts';
import { WaygateError } from '../../src/errors.ts';
import { MemorySink, allowServiceAccounts } from './fixture.ts';

describe('parseAuthority', () => {
  const cases: [string, ReturnType<typeof parseAuthority>][] = [
    ['10.0.0.5:8080', { kind: 'ip', ip: '10.0.0.5', port: 8080, family: 4 }],
    ['[fd00::1]:443', { kind: 'ip', ip: 'fd00::1', port: 443, family: 6 }],
    ['[FD00:0:0::1]:443', { kind: 'ip', ip: 'fd00::1', port: 443, family: 6 }],
    ['[::ffff:10.0.0.5]:80', { kind: 'ip', ip: '10.0.0.5', port: 80, family: 4 }],
    ['api.prod.svc.cluster.local:80', { kind: 'host', host: 'api.prod.svc.cluster.local', port: 80 }],
    ['API.Example.:443', { kind: 'host', host: 'api.example', port: 443 }],
    ['localhost:65535', { kind: 'host', host: 'localhost', port: 65535 }],
    ['10.0.0.5', null],
    ['10.0.0.5:', null],
    ['10.0.0.5:0', null],
    ['10.0.0.5:65536', null],
    ['10.0.0.5:+80', null],
    ['10.0.0.5:080', null],
    ['010.0.0.5:80', null],
    ['1.2.3.256:80', null],
    ['fd00::1:80', null],
    ['[fd00::1]', null],
    ['[fd00::1%eth0]:80', null],
    ['[10.0.0.5]:80', null],
    ['user@host:80', null],
    ['a..b:80', null],
    ['-a.b:80', null],
    [':80', null],
    ['', null],
    [`${'a'.repeat(64)}.com:80`, null],
  ];
  for (const [input, expected] of cases) {
    test(JSON.stringify(input), () => assert.deepEqual(parseAuthority(input), expected));
  }
});

describe('parseConnectRequest', () => {
  const cases: [string, Record<string, string>, boolean][] = [
    ['plain CONNECT', { ':method': 'CONNECT', ':authority': '10.0.0.5:80' }, true],
    ['GET', { ':method': 'GET', ':authority': '10.0.0.5:80', ':path': '/', ':scheme': 'https' }, false],
    ['lower-case method', { ':method': 'connect', ':authority': '10.0.0.5:80' }, false],
    ['no :authority', { ':method': 'CONNECT' }, false],
    ['empty :authority', { ':method': 'CONNECT', ':authority': '' }, false],
    [':path', { ':method': 'CONNECT', ':authority': '10.0.0.5:80', ':path': '/' }, false],
    [':scheme', { ':method': 'CONNECT', ':authority': '10.0.0.5:80', ':scheme': 'https' }, false],
    [':protocol', { ':method': 'CONNECT', ':authority': '10.0.0.5:80', ':protocol': 'websocket' }, false],
    ['bad authority', { ':method': 'CONNECT', ':authority': 'nope' }, false],
  ];
  for (const [name, headers, ok] of cases) {
    test(name, () => {
      const r = parseConnectRequest(headers);
      assert.equal(r.ok, ok);
      if (!r.ok) assert.equal(r.error.authority, headers[':authority'] ?? '');
    });
  }
});

describe('request headers', () => {
  test('collectHeaders: lower-case names, pseudo-headers dropped, repeats joined in order', () => {
    const h = collectHeaders([':method', 'CONNECT', 'X-Tenant', 'a', 'x-tenant', 'b', '__proto__', 'p']);
    assert.deepEqual(Object.keys(h), ['x-tenant', '__proto__']);
    assert.equal(h['x-tenant'], 'a, b');
    assert.equal(h['__proto__'], 'p', 'a peer-sent __proto__ is plain data');
    assert.equal(Object.getPrototypeOf(h), null);
  });

  const baggage: [string | undefined, Record<string, string>][] = [
    [undefined, {}],
    ['k8s.namespace.name=prod,k8s.deployment.name=web', { 'k8s.namespace.name': 'prod', 'k8s.deployment.name': 'web' }],
    [' a = 1 ; prop=x ; flag , b=2', { a: '1', b: '2' }],
    ['name=hello%20world%2C%3B', { name: 'hello world,;' }],
    // keys are tokens and never decoded; a value with a broken escape drops its member
    ['bad%zz=1,x=%E0%A4%A,y=ok', { 'bad%zz': '1', y: 'ok' }],
    ['novalue,=empty,k=v', { k: 'v' }],
    ['k=1,k=2', { k: '1' }],
    ['k="quoted"', {}],
    ['k=a b', {}],
  ];
  for (const [input, expected] of baggage) {
    test(`baggage ${JSON.stringify(input)}`, () => assert.deepEqual({ ...parseBaggage(input) }, expected));
  }

  test('baggage is bounded: 64 members, 8192 bytes, a member cut by the bound dropped', () => {
    const many = Array.from({ length: 100 }, (_, i) => `k${i}=v`).join(',');
    assert.equal(Object.keys(parseBaggage(many)).length, MAX_BAGGAGE_MEMBERS);
    const long = `a=1,b=${'x'.repeat(9000)}`;
    assert.deepEqual({ ...parseBaggage(long) }, { a: '1' });
  });

  const forwarded: [string | undefined, ReturnType<typeof parseForwarded>][] = [
    [undefined, []],
    ['for="10.0.0.5:43122";host=api.prod.svc.cluster.local', [{ for: '10.0.0.5:43122', host: 'api.prod.svc.cluster.local' }]],
    ['for="[fd00::5]:43122"', [{ for: '[fd00::5]:43122' }]],
    ['For=192.0.2.60;Proto=http;By=203.0.113.43', [{ for: '192.0.2.60', proto: 'http', by: '203.0.113.43' }]],
    ['for=192.0.2.43, for=198.51.100.17', [{ for: '192.0.2.43' }, { for: '198.51.100.17' }]],
    ['for="a;b,c";host=h', [{ for: 'a;b,c', host: 'h' }]],
    ['for="esc\\"aped"', [{ for: 'esc"aped' }]],
    ['for="unterminated', []],
    ['for=10.0.0.5:80', []],
    ['garbage, for=1.2.3.4', [{ for: '1.2.3.4' }]],
    ['secret=x;for=1.2.3.4', [{ for: '1.2.3.4' }]],
  ];
  for (const [input, expected] of forwarded) {
    test(`forwarded ${JSON.stringify(input)}`, () => assert.deepEqual(parseForwarded(input), expected));
  }

  const trace: [string | undefined, string | null][] = [
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '4bf92f3577b34da6a3ce929d0e0e4736'],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', '4bf92f3577b34da6a3ce929d0e0e4736'],
    ['00-00000000000000000000000000000000-00f067aa0ba902b7-01', null],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', null],
    ['00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', null],
    ['ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', null],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra', null],
    ['01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra', '4bf92f3577b34da6a3ce929d0e0e4736'],
    ['01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x', null],
    ['00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', null],
    ['', null],
    [undefined, null],
  ];
  for (const [input, expected] of trace) {
    test(`traceparent ${JSON.stringify(input)}`, () => assert.equal(parseTraceparent(input)?.traceId ?? null, expected));
  }

  test('x-forwarded-network keeps a token only', () => {
    assert.equal(parseForwardedNetwork('network-1'), 'network-1');
    assert.equal(parseForwardedNetwork(' net '), 'net');
    assert.equal(parseForwardedNetwork('a b'), '');
    assert.equal(parseForwardedNetwork(undefined), '');
  });
});

describe('DestinationPolicy', () => {
  const policy = new DestinationPolicy(
    {
      allow: [
        { cidr: '0.0.0.0/0' },
        { cidr: '::/0', ports: [443] },
        { cidr: '127.0.0.1/32', ports: [8080] },
        { cidr: '169.254.169.254/32', ports: [80] },
      ],
      routes: { 'api.prod.svc:80': '10.0.1.7:8080', 'v6.svc:443': '[fd00::7]:443' },
    },
    [15008],
  );
  const cases: [string, number, string][] = [
    ['10.1.2.3', 443, 'ok'],
    ['fd00::5', 443, 'ok'],
    ['fd00::5', 80, 'not_allowed'],
    ['127.0.0.1', 8080, 'ok'],
    ['127.0.0.1', 8081, 'not_allowed'], // 0.0.0.0/0 does not open loopback
    ['127.0.0.2', 8080, 'not_allowed'],
    ['::1', 443, 'not_allowed'], // ::/0 does not open loopback either
    ['169.254.169.254', 80, 'ok'], // listed explicitly
    ['169.254.169.254', 81, 'not_allowed'],
    ['169.254.1.1', 80, 'not_allowed'], // link-local needs its own entry
    ['fe80::1', 443, 'not_allowed'],
    ['100.100.100.200', 80, 'not_allowed'], // metadata inside a broad range
    ['0.0.0.0', 80, 'not_allowed'],
    ['::', 443, 'not_allowed'],
    ['224.0.0.1', 80, 'not_allowed'],
    ['255.255.255.255', 80, 'not_allowed'],
    ['127.0.0.1', 15008, 'self_call'],
    ['0.0.0.0', 15008, 'self_call'],
    ['10.1.2.3', 15008, 'ok'], // another host's 15008 is not us
    ['not-an-ip', 80, 'not_allowed'],
  ];
  for (const [ip, port, expected] of cases) {
    test(`${ip}:${port} -> ${expected}`, () => assert.equal(policy.check(ip, port), expected));
  }

  test('routes resolve host:port authorities; IP authorities dial themselves; no DNS', () => {
    assert.deepEqual(policy.resolve({ kind: 'host', host: 'api.prod.svc', port: 80 }), { ip: '10.0.1.7', host: 'api.prod.svc', port: 8080, service: '', namespace: '', workload: '', principal: '' });
    assert.deepEqual(policy.resolve({ kind: 'host', host: 'v6.svc', port: 443 }), { ip: 'fd00::7', host: 'v6.svc', port: 443, service: '', namespace: '', workload: '', principal: '' });
    assert.deepEqual(policy.resolve({ kind: 'host', host: 'unknown.svc', port: 80 }), { ip: '', host: 'unknown.svc', port: 80, service: '', namespace: '', workload: '', principal: '' });
    assert.deepEqual(policy.resolve({ kind: 'ip', ip: '10.0.0.1', port: 9, family: 4 }), { ip: '10.0.0.1', host: '', port: 9, service: '', namespace: '', workload: '', principal: '' });
  });

  const bad: [unknown, RegExp][] = [
    [{}, /destinations\.allow: expected a list/],
    [{ allow: [{ cidr: '10.0.0' }] }, /destinations\.allow\[0\]\.cidr/],
    [{ allow: [{ cidr: '10.0.0.0/8', ports: [] }] }, /destinations\.allow\[0\]\.ports: expected a non-empty list/],
    [{ allow: [{ cidr: '10.0.0.0/8', ports: [0] }] }, /destinations\.allow\[0\]\.ports\[0\]/],
    [{ allow: [], routes: { '10.0.0.1:80': '10.0.0.2:80' } }, /must be a host:port authority/],
    [{ allow: [], routes: { 'a.svc:80': 'b.svc:80' } }, /is not ip:port/],
  ];
  for (const [opts, re] of bad) {
    test(`invalid ${JSON.stringify(opts)}`, () => {
      assert.throws(() => new DestinationPolicy(opts as never), (e: unknown) => e instanceof WaygateError && e.code === 'WG_CONFIG' && re.test(e.message));
    });
  }
});

describe('PROXY protocol v2', () => {
  test('IPv4 with the SPIFFE ID in TLV 0xD0', () => {
    const id = 'spiffe://cluster.local/ns/prod/sa/web';
    const b = encodeProxyV2({ sourceIp: '10.0.0.5', sourcePort: 43122, destinationIp: '10.0.1.7', destinationPort: 8080, spiffeId: id });
    assert.deepEqual(b.subarray(0, 12), PROXY_V2_SIGNATURE);
    assert.equal(b[12], 0x21);
    assert.equal(b[13], 0x11);
    assert.equal(b.readUInt16BE(14), 12 + 3 + id.length);
    assert.deepEqual([...b.subarray(16, 20)], [10, 0, 0, 5]);
    assert.deepEqual([...b.subarray(20, 24)], [10, 0, 1, 7]);
    assert.equal(b.readUInt16BE(24), 43122);
    assert.equal(b.readUInt16BE(26), 8080);
    assert.equal(b[28], 0xd0);
    assert.equal(b.readUInt16BE(29), id.length);
    assert.equal(b.subarray(31).toString(), id);
    assert.equal(b.length, 16 + 12 + 3 + id.length);
  });

  test('IPv6 (an IPv4 peer mapped), no TLV without an identity', () => {
    const b = encodeProxyV2({ sourceIp: '10.0.0.5', sourcePort: 1, destinationIp: 'fd00::7', destinationPort: 2, spiffeId: '' });
    assert.equal(b[13], 0x21);
    assert.equal(b.readUInt16BE(14), 36);
    assert.equal(b.subarray(16, 32).toString('hex'), '00000000000000000000ffff0a000005');
    assert.equal(b.subarray(32, 48).toString('hex'), 'fd000000000000000000000000000007');
    assert.equal(b.length, 16 + 36);
  });
});

describe('HTTP/2 settings', () => {
  test('defaults follow docs/design.md §2', () => {
    const o = resolveH2Options();
    assert.ok(o.streamWindowBytes >= 1024 * 1024);
    assert.equal(o.connectionWindowBytes, 4 * o.streamWindowBytes);
    assert.equal(o.maxConcurrentStreams, 200);
    assert.equal(o.maxHeaderListBytes, 64 * 1024);
    assert.equal(o.pingIntervalMs, 10_000);
    assert.equal(o.pingTimeoutMs, 20_000);
    assert.ok(o.maxSessionMemoryMb * 1024 * 1024 > o.connectionWindowBytes, 'session memory holds a full connection window');
    const s = h2Settings(o);
    assert.equal(s.initialWindowSize, o.streamWindowBytes);
    assert.equal(s.enablePush, false);
  });
  const bad: [object, RegExp][] = [
    [{ streamWindowBytes: 65_535 }, /h2\.streamWindowBytes/],
    [{ streamWindowBytes: 1 << 20, connectionWindowBytes: 1 << 20 }, /less than 4x the stream window/],
    [{ maxConcurrentStreams: 0 }, /h2\.maxConcurrentStreams/],
    [{ pingIntervalMs: 1.5 }, /h2\.pingIntervalMs/],
  ];
  for (const [o, re] of bad) {
    test(`rejects ${JSON.stringify(o)}`, () => assert.throws(() => resolveH2Options(o), re));
  }
});

describe('createHboneServer option validation', () => {
  const base = (): HboneServerOptions => ({
    listen: { host: '127.0.0.1', port: 0 },
    tls: { cert: 'c', key: 'k', ca: 'a' },
    acceptedTrustDomains: ['cluster.local'],
    authorize: allowServiceAccounts('x'),
    audit: new MemorySink(),
    destinations: { allow: [] },
  });
  const cases: [string, (o: HboneServerOptions) => void, RegExp][] = [
    ['listen.host', (o) => (o.listen = { host: '', port: 1 }), /listen\.host/],
    ['listen.port', (o) => (o.listen = { host: '127.0.0.1', port: 70000 }), /listen\.port/],
    ['tls.cert', (o) => (o.tls = { cert: '', key: 'k', ca: 'a' }), /tls\.cert: required/],
    ['TLS 1.2 without allowTls12', (o) => (o.tls = { cert: 'c', key: 'k', ca: 'a', minVersion: 'TLSv1.2' }), /allowTls12/],
    ['trust domains', (o) => (o.acceptedTrustDomains = []), /acceptedTrustDomains/],
    ['authorize', (o) => ((o as { authorize: unknown }).authorize = 'yes'), /authorize: expected a function/],
    ['audit', (o) => ((o as { audit: unknown }).audit = {}), /audit: expected an AuditSink/],
    ['denyStatus', (o) => (o.denyStatus = 200), /denyStatus: expected a 4xx/],
    ['connectTimeoutMs', (o) => (o.connectTimeoutMs = 0), /connectTimeoutMs/],
    ['idleTimeoutMs', (o) => (o.idleTimeoutMs = -1), /idleTimeoutMs/],
    ['destinations', (o) => ((o as { destinations: unknown }).destinations = undefined), /destinations\.allow/],
  ];
  for (const [name, mutate, re] of cases) {
    test(name, () => {
      const o = base();
      mutate(o);
      assert.throws(() => createHboneServer(o), (e: unknown) => e instanceof WaygateError && e.code === 'WG_CONFIG' && re.test(e.message));
    });
  }
});
