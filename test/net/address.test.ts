import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  canonicalIp,
  cidrContains,
  cidrContainsCidr,
  formatCidr,
  formatIp,
  isLinkLocal,
  isLoopback,
  isMetadataAddress,
  isMulticast,
  isUnspecified,
  parseCidr,
  parseCidrDetailed,
  parseIp,
} from '../../src/net/address.ts';

describe('parseIp / canonicalIp', () => {
  const valid: [string, string, 4 | 6][] = [
    ['0.0.0.0', '0.0.0.0', 4],
    ['10.0.0.1', '10.0.0.1', 4],
    ['255.255.255.255', '255.255.255.255', 4],
    ['192.168.100.200', '192.168.100.200', 4],
    ['::', '::', 6],
    ['::1', '::1', 6],
    ['1::', '1::', 6],
    ['2001:DB8::1', '2001:db8::1', 6],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1', 6],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 6], // RFC 5952 §4.2.3: first of equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1', 6], // §4.2.2: a single zero group is not compressed
    ['fe80::1:2:3:4', 'fe80::1:2:3:4', 6],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0', 6],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8', 6],
    ['fd00:ec2::254', 'fd00:ec2::254', 6],
    ['::1.2.3.4', '::102:304', 6], // IPv4-compatible (deprecated) stays IPv6
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221', 6],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304', 6],
    // IPv4-mapped IPv6 is canonicalised to IPv4 (docs/design.md §3 "Types").
    ['::ffff:10.0.0.1', '10.0.0.1', 4],
    ['::FFFF:10.0.0.1', '10.0.0.1', 4],
    ['::ffff:a00:1', '10.0.0.1', 4],
    ['0:0:0:0:0:ffff:10.0.0.1', '10.0.0.1', 4],
  ];
  for (const [input, canonical, family] of valid) {
    it(`parses ${input}`, () => {
      const ip = parseIp(input);
      assert.ok(ip, input);
      assert.equal(ip.family, family);
      assert.equal(formatIp(ip), canonical);
      assert.equal(canonicalIp(input), canonical);
      // The canonical form is a fixed point.
      assert.equal(canonicalIp(canonical), canonical);
    });
  }

  const invalid = [
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.0.0.1',
    '1.2.3.-1',
    '01.2.3.4', // leading zero: octal ambiguity in inet_aton
    '1.2.3.04',
    '00.0.0.0',
    '0x1.2.3.4',
    '1..2.3',
    '1.2.3.4.',
    ' 1.2.3.4',
    '1.2.3.4 ',
    '1.2.3.4:80',
    '1.2.3.a',
    '12345678',
    ':',
    ':::',
    '1:::2',
    '1::2::3',
    ':1::',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8::',
    '12345::',
    'g::1',
    'fe80::1%eth0', // zone ids refused
    '[::1]',
    '::1.2.3',
    '::256.1.2.3',
    '1:2:3:4:5:6:7:1.2.3.4',
    '::ffff:01.2.3.4',
    '1.2.3.4::',
  ];
  for (const s of invalid) {
    it(`refuses ${JSON.stringify(s)}`, () => {
      assert.equal(parseIp(s), null);
      assert.equal(canonicalIp(s), null);
    });
  }
});

describe('parseCidr', () => {
  const valid: [string, string, number, 4 | 6][] = [
    ['10.0.0.0/8', '10.0.0.0/8', 8, 4],
    ['0.0.0.0/0', '0.0.0.0/0', 0, 4],
    ['10.0.0.5/32', '10.0.0.5/32', 32, 4],
    ['10.1.2.3/8', '10.1.2.3/8', 8, 4], // host bits kept as written, ignored for containment
    ['2001:db8::/32', '2001:db8::/32', 32, 6],
    ['::/0', '::/0', 0, 6],
    ['::1/128', '::1/128', 128, 6],
    ['::ffff:10.0.0.0/104', '10.0.0.0/8', 8, 4], // mapped block inside ::ffff:0:0/96 becomes IPv4
    ['::ffff:0:0/96', '0.0.0.0/0', 0, 4],
  ];
  for (const [input, formatted, prefix, family] of valid) {
    it(`parses ${input}`, () => {
      const c = parseCidr(input);
      assert.ok(c, input);
      assert.equal(c.prefixLength, prefix);
      assert.equal(c.family, family);
      assert.equal(formatCidr(c), formatted);
    });
  }
  it('keeps a mapped block with a prefix below 96 in IPv6', () => {
    const c = parseCidr('::ffff:10.0.0.0/80');
    assert.ok(c);
    assert.equal(c.family, 6);
  });
  const invalid: [string, RegExp][] = [
    ['10.0.0.0', /no "\/<prefix length>"/],
    ['10.0.0.0/33', /exceeds 32/],
    ['::/129', /exceeds 128/],
    ['10.0.0.0/08', /leading zeros/],
    ['10.0.0.0/', /not a decimal/],
    ['10.0.0.0/-1', /not a decimal/],
    ['10.0.0.0/8/8', /not a decimal/],
    ['10.0.0/8', /not an IPv4 or IPv6 address/],
    ['fe80::1%eth0/64', /not an IPv4 or IPv6 address/],
  ];
  for (const [input, why] of invalid) {
    it(`refuses ${input}`, () => {
      assert.equal(parseCidr(input), null);
      const r = parseCidrDetailed(input);
      assert.ok('error' in r);
      assert.match(r.error, why);
    });
  }
});

describe('cidrContains', () => {
  const table: [string, string, boolean][] = [
    ['10.0.0.0/8', '10.0.0.1', true],
    ['10.0.0.0/8', '10.255.255.255', true],
    ['10.0.0.0/8', '11.0.0.0', false],
    ['10.0.0.0/8', '9.255.255.255', false],
    ['10.1.2.3/8', '10.200.0.1', true], // host bits ignored
    ['0.0.0.0/0', '203.0.113.9', true],
    ['0.0.0.0/0', '::1', false], // families never mix
    ['192.168.1.0/24', '192.168.1.255', true],
    ['192.168.1.0/24', '192.168.2.0', false],
    ['192.168.1.128/25', '192.168.1.127', false],
    ['192.168.1.128/25', '192.168.1.128', true],
    ['10.0.0.5/32', '10.0.0.5', true],
    ['10.0.0.5/32', '10.0.0.6', false],
    ['128.0.0.0/1', '128.0.0.0', true], // top bit set: unsigned compare
    ['128.0.0.0/1', '127.255.255.255', false],
    ['2001:db8::/32', '2001:db8:ffff::1', true],
    ['2001:db8::/32', '2001:db9::1', false],
    ['2001:db8::/33', '2001:db8:8000::1', false],
    ['2001:db8::/33', '2001:db8:7fff::1', true],
    ['fe80::/10', 'febf::1', true],
    ['fe80::/10', 'fec0::1', false],
    ['::/0', '::1', true],
    ['::/0', '10.0.0.1', false],
    ['::1/128', '::1', true],
    ['2001:db8::1:0:0:0/80', '2001:db8::1:0:0:5', true], // word-boundary straddling prefix
    ['2001:db8::1:0:0:0/80', '2001:db8::2:0:0:5', false],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true],
    // IPv4-mapped addresses and blocks meet IPv4 ones.
    ['10.0.0.0/8', '::ffff:10.9.8.7', true],
    ['::ffff:10.0.0.0/104', '10.9.8.7', true],
    ['::ffff:10.0.0.0/104', '11.0.0.1', false],
  ];
  for (const [cidr, ip, expected] of table) {
    it(`${cidr} ${expected ? 'contains' : 'does not contain'} ${ip}`, () => {
      const c = parseCidr(cidr);
      const a = parseIp(ip);
      assert.ok(c && a);
      assert.equal(cidrContains(c, a), expected);
    });
  }
  it('cidrContainsCidr', () => {
    const c = (s: string) => parseCidr(s)!;
    assert.equal(cidrContainsCidr(c('10.0.0.0/8'), c('10.1.0.0/16')), true);
    assert.equal(cidrContainsCidr(c('10.0.0.0/8'), c('10.0.0.0/8')), true);
    assert.equal(cidrContainsCidr(c('10.1.0.0/16'), c('10.0.0.0/8')), false);
    assert.equal(cidrContainsCidr(c('10.0.0.0/8'), c('11.0.0.0/16')), false);
    assert.equal(cidrContainsCidr(c('::/0'), c('10.0.0.0/8')), false);
  });
});

describe('address classes', () => {
  const table: [string, { loopback?: true; linkLocal?: true; unspecified?: true; metadata?: true; multicast?: true }][] = [
    ['127.0.0.1', { loopback: true }],
    ['127.255.0.9', { loopback: true }],
    ['::1', { loopback: true }],
    ['::ffff:127.0.0.1', { loopback: true }],
    ['0.0.0.0', { unspecified: true }],
    ['::', { unspecified: true }],
    ['169.254.1.1', { linkLocal: true }],
    ['fe80::abcd', { linkLocal: true }],
    ['169.254.169.254', { linkLocal: true, metadata: true }],
    ['169.254.170.2', { linkLocal: true, metadata: true }],
    ['::ffff:169.254.169.254', { linkLocal: true, metadata: true }],
    ['fd00:ec2::254', { metadata: true }],
    ['100.100.100.200', { metadata: true }],
    ['168.63.129.16', { metadata: true }],
    ['224.0.0.1', { multicast: true }],
    ['ff02::1', { multicast: true }],
    ['10.0.0.1', {}],
    ['8.8.8.8', {}],
    ['2001:db8::1', {}],
    ['fd00:ec2::253', {}],
    ['126.255.255.255', {}],
    ['128.0.0.1', {}],
  ];
  for (const [s, flags] of table) {
    it(`classifies ${s}`, () => {
      const ip = parseIp(s);
      assert.ok(ip);
      assert.equal(isLoopback(ip), flags.loopback === true, 'loopback');
      assert.equal(isLinkLocal(ip), flags.linkLocal === true, 'link-local');
      assert.equal(isUnspecified(ip), flags.unspecified === true, 'unspecified');
      assert.equal(isMetadataAddress(ip), flags.metadata === true, 'metadata');
      assert.equal(isMulticast(ip), flags.multicast === true, 'multicast');
    });
  }
});
