/**
 * The PROXY v2 parser (src/upstream/proxy-v2.ts parseProxyV2): headers as ztunnel writes them
 * (src/proxy.rs write_proxy_protocol: command PROXY over TCP, TLV 0xD0 with the client's SPIFFE ID
 * when it has one), fed whole and a byte at a time, and every kind of malformed header.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeProxyV2, MAX_PROXY_V2_HEADER_BYTES, parseProxyV2, PROXY_V2_SIGNATURE, type ProxyV2ParseResult } from '../../src/upstream/proxy-v2.ts';

const ID = 'spiffe://cluster.local/ns/checkout/sa/checkout';
const v4 = { sourceIp: '10.244.2.9', sourcePort: 41234, destinationIp: '10.96.0.10', destinationPort: 9090, spiffeId: ID };

function ok(r: ProxyV2ParseResult): Extract<ProxyV2ParseResult, { kind: 'ok' }> {
  assert.equal(r.kind, 'ok', JSON.stringify(r));
  return r as Extract<ProxyV2ParseResult, { kind: 'ok' }>;
}

function reason(buf: Buffer): string {
  const r = parseProxyV2(buf);
  assert.equal(r.kind, 'invalid', JSON.stringify(r));
  return (r as Extract<ProxyV2ParseResult, { kind: 'invalid' }>).reason;
}

test('an IPv4 header with the identity TLV parses back to what was encoded; the bytes after it are not consumed', () => {
  const header = encodeProxyV2(v4);
  const r = ok(parseProxyV2(Buffer.concat([header, Buffer.from('GET / HTTP/1.1\r\n')])));
  assert.equal(r.length, header.length);
  assert.deepEqual(r.header, v4);
});

test('without the TLV (a client with no identity) the SPIFFE ID is empty', () => {
  const r = ok(parseProxyV2(encodeProxyV2({ ...v4, spiffeId: '' })));
  assert.equal(r.header.spiffeId, '');
  assert.equal(r.length, 16 + 12);
});

test('IPv6, and IPv4-mapped IPv6 read back as IPv4 (as ztunnel canonicalises addresses)', () => {
  const six = { sourceIp: 'fd00::7', sourcePort: 1, destinationIp: 'fd00:10:96::a', destinationPort: 80, spiffeId: ID };
  assert.deepEqual(ok(parseProxyV2(encodeProxyV2(six))).header, six);
  // A v4 client to a v6 destination: the encoder maps the IPv4 address (RFC 4291 §2.5.5.2).
  const mixed = ok(parseProxyV2(encodeProxyV2({ ...six, sourceIp: '10.0.0.1' })));
  assert.equal(mixed.header.sourceIp, '10.0.0.1');
  assert.equal(mixed.header.destinationIp, 'fd00:10:96::a');
});

test('fed one byte at a time: incomplete until the last byte, then the header', () => {
  const header = encodeProxyV2(v4);
  for (let n = 0; n < header.length; n++) {
    const r = parseProxyV2(header.subarray(0, n));
    assert.equal(r.kind, 'incomplete', `at ${n} bytes`);
  }
  assert.deepEqual(ok(parseProxyV2(header)).header, v4);
});

test('other TLVs are skipped (NOOP padding, an authority) and the identity still read', () => {
  const base = encodeProxyV2({ ...v4, spiffeId: '' });
  const noop = Buffer.from([0x04, 0x00, 0x02, 0xaa, 0xbb]);
  const id = Buffer.concat([Buffer.from([0xd0, 0, ID.length]), Buffer.from(ID)]);
  const buf = Buffer.concat([base, noop, id]);
  buf.writeUInt16BE(12 + noop.length + id.length, 14);
  assert.equal(ok(parseProxyV2(buf)).header.spiffeId, ID);
});

test('malformed headers are refused with their reason', () => {
  const good = encodeProxyV2(v4);
  const edit = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  // Not PROXY v2 at all: refused from the first byte that differs, without waiting for 16.
  assert.equal(reason(Buffer.from('GET / HTTP/1.1\r\n\r\n')), 'bad_signature');
  assert.equal(reason(Buffer.from([0x0d, 0x0a, 0x0d, 0x0b])), 'bad_signature');
  assert.equal(reason(Buffer.from('PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n')), 'bad_signature'); // v1 text
  assert.equal(reason(edit((b) => (b[12] = 0x11))), 'bad_version');
  assert.equal(reason(edit((b) => (b[12] = 0x20))), 'local_command');
  assert.equal(reason(edit((b) => (b[12] = 0x22))), 'bad_command');
  assert.equal(reason(edit((b) => (b[13] = 0x12))), 'bad_family'); // UDP over IPv4
  assert.equal(reason(edit((b) => (b[13] = 0x00))), 'bad_family'); // UNSPEC
  assert.equal(reason(edit((b) => b.writeUInt16BE(MAX_PROXY_V2_HEADER_BYTES, 14))), 'too_long');
  assert.equal(reason(edit((b) => b.writeUInt16BE(8, 14))), 'bad_addresses');
  assert.equal(reason(edit((b) => b.writeUInt16BE(0, 16 + 10))), 'bad_addresses'); // destination port 0
  // The TLV's own length runs past the header's.
  assert.equal(reason(edit((b) => b.writeUInt16BE(ID.length + 1, 16 + 12 + 1))), 'bad_tlv');
  // Two bytes of a TLV header left.
  const short = Buffer.concat([encodeProxyV2({ ...v4, spiffeId: '' }), Buffer.from([0x04, 0x00])]);
  short.writeUInt16BE(14, 14);
  assert.equal(reason(short), 'bad_tlv');
  const twice = Buffer.concat([good, good.subarray(28)]);
  twice.writeUInt16BE(twice.length - 16, 14);
  assert.equal(reason(twice), 'bad_tlv');
  const notUtf8 = Buffer.concat([encodeProxyV2({ ...v4, spiffeId: '' }), Buffer.from([0xd0, 0, 2, 0xc3, 0x28])]);
  notUtf8.writeUInt16BE(12 + 5, 14);
  assert.equal(reason(notUtf8), 'bad_identity');
});

test('a truncated header stays incomplete (the listener times it out or sees the close)', () => {
  const good = encodeProxyV2(v4);
  assert.deepEqual(parseProxyV2(good.subarray(0, 20)), { kind: 'incomplete', need: good.length });
  assert.deepEqual(parseProxyV2(PROXY_V2_SIGNATURE), { kind: 'incomplete', need: 16 });
});
