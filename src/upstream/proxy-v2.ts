/**
 * PROXY protocol v2 header (haproxy proxy-protocol.txt §2.2) written to the upstream before any
 * tunnel byte, as ztunnel does for workloads that ask for it: the original client address and
 * port, the destination, and the client's SPIFFE ID in TLV type 0xD0 (the type ztunnel uses for
 * the peer identity, in the PP2_TYPE_MIN_CUSTOM..MAX_CUSTOM range of §2.2.8).
 *
 * {@link proxyV2Connector} is the upstream connector (connector.ts) that sends it: plain TCP whose
 * connection starts with the header. {@link parseProxyV2} reads one, as the sandwich listener
 * (src/sandwich/listener.ts) receives it from the node's ztunnel: this module owns the format both ways.
 */
import { formatIp, parseIp, type ParsedIp } from '../net/address.ts';
import { WaygateError } from '../errors.ts';
import { TcpTarget } from './tcp.ts';
import type { UpstreamConnector, UpstreamRequest, UpstreamTarget } from './connector.ts';

/** §2.2: the 12-byte signature that starts every v2 header. */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** TLV type carrying the client's SPIFFE ID (ztunnel's PROXY_PROTOCOL_AUTHORITY_TLV). */
export const PP2_TYPE_SPIFFE_ID = 0xd0;

const VERSION_2_PROXY = 0x21; // §2.2: version 2 (high nibble), command PROXY (low nibble)
const TCP_OVER_IPV4 = 0x11;
const TCP_OVER_IPV6 = 0x21;

function writeAddress(buf: Buffer, offset: number, ip: ParsedIp, asV6: boolean): number {
  if (!asV6) {
    buf.writeUInt32BE(ip.words[0]!, offset);
    return offset + 4;
  }
  if (ip.family === 4) {
    // IPv4-mapped IPv6 (RFC 4291 §2.5.5.2) when the other address is IPv6.
    buf.writeUInt32BE(0, offset);
    buf.writeUInt32BE(0, offset + 4);
    buf.writeUInt32BE(0xffff, offset + 8);
    buf.writeUInt32BE(ip.words[0]!, offset + 12);
  } else {
    for (let i = 0; i < 4; i++) buf.writeUInt32BE(ip.words[i]!, offset + 4 * i);
  }
  return offset + 16;
}

/** The endpoints and identity a PROXY v2 header carries. */
export interface ProxyHeaderInfo {
  sourceIp: string;
  sourcePort: number;
  destinationIp: string;
  destinationPort: number;
  /** The client's SPIFFE ID; no TLV when empty. */
  spiffeId: string;
}

/** Encodes a PROXY v2 header. Throws `WG_BAD_REQUEST` for an address that is not an IP. */
export function encodeProxyV2(info: ProxyHeaderInfo): Buffer {
  const src = parseIp(info.sourceIp);
  const dst = parseIp(info.destinationIp);
  if (!src || !dst) throw new WaygateError('WG_BAD_REQUEST', `PROXY header needs IP addresses, got ${info.sourceIp} -> ${info.destinationIp}`);
  const v6 = src.family === 6 || dst.family === 6;
  const addrLen = v6 ? 36 : 12;
  const id = Buffer.from(info.spiffeId, 'utf8');
  if (id.length > 0xffff) throw new WaygateError('WG_BAD_REQUEST', 'SPIFFE ID too long for a PROXY TLV');
  const tlvLen = id.length > 0 ? 3 + id.length : 0;
  const buf = Buffer.alloc(16 + addrLen + tlvLen);
  PROXY_V2_SIGNATURE.copy(buf, 0);
  buf[12] = VERSION_2_PROXY;
  buf[13] = v6 ? TCP_OVER_IPV6 : TCP_OVER_IPV4;
  buf.writeUInt16BE(addrLen + tlvLen, 14);
  let off = writeAddress(buf, 16, src, v6);
  off = writeAddress(buf, off, dst, v6);
  buf.writeUInt16BE(info.sourcePort, off);
  buf.writeUInt16BE(info.destinationPort, off + 2);
  off += 4;
  if (tlvLen > 0) {
    buf[off] = PP2_TYPE_SPIFFE_ID;
    buf.writeUInt16BE(id.length, off + 1);
    id.copy(buf, off + 3);
  }
  return buf;
}

/**
 * Dials over TCP and writes a PROXY v2 header first (the client's address and SPIFFE ID, the
 * dialed destination). The header is built before the dial: when it cannot be (the client's
 * address is not an IP), the tunnel is refused and no socket is ever opened.
 */
export const proxyV2Connector: UpstreamConnector = {
  prepare(request: UpstreamRequest): UpstreamTarget {
    const source = request.context.source;
    const header = encodeProxyV2({
      sourceIp: source.ip,
      sourcePort: source.port,
      destinationIp: request.ip,
      destinationPort: request.port,
      spiffeId: source.principal,
    });
    return new TcpTarget(request.ip, request.port, header);
  },
};

/**
 * The largest header {@link parseProxyV2} accepts: the 16-byte preamble, IPv6 addresses (36) and
 * TLVs up to 2,048 + 3 bytes beyond that (a SPIFFE ID is at most 2,048 bytes, SPIFFE-ID §2.3, plus
 * room for a few small TLVs). ztunnel's largest header (IPv6, one 0xD0 TLV) fits; anything larger
 * is refused before it is buffered whole.
 */
export const MAX_PROXY_V2_HEADER_BYTES = 16 + 36 + 2_048 + 3 + 256;

const COMMAND_LOCAL = 0x0;
const COMMAND_PROXY = 0x1;

/** Why a header was refused (the `reason` of logs and of the sandwich listener's metric). */
export type ProxyV2Rejection =
  | 'bad_signature'     // not the §2.2 signature: no PROXY v2 header at all
  | 'bad_version'       // version nibble other than 2
  | 'local_command'     // LOCAL (a health check): carries no client or destination
  | 'bad_command'       // neither LOCAL nor PROXY
  | 'bad_family'        // not TCP over IPv4 or IPv6 (UNSPEC, UDP, UNIX)
  | 'too_long'          // announced length past MAX_PROXY_V2_HEADER_BYTES
  | 'bad_addresses'     // length shorter than the family's address block, or a zero port
  | 'bad_tlv'           // a TLV running past the header, or 0xD0 twice
  | 'bad_identity';     // TLV 0xD0 not valid UTF-8

/** A parsed PROXY v2 header (command PROXY over TCP). */
export interface ParsedProxyHeader {
  /** Canonical text; an IPv4-mapped IPv6 address is written as IPv4 (as ztunnel's to_canonical does). */
  sourceIp: string;
  sourcePort: number;
  destinationIp: string;
  destinationPort: number;
  /** TLV 0xD0 as sent (not yet checked to be a SPIFFE ID); `""` when absent. */
  spiffeId: string;
}

export type ProxyV2ParseResult =
  /** More bytes are needed; `need` is the total length known so far (16 until the preamble is in). */
  | { kind: 'incomplete'; need: number }
  | { kind: 'ok'; header: ParsedProxyHeader; length: number }
  | { kind: 'invalid'; reason: ProxyV2Rejection; message: string };

function readAddress(buf: Buffer, offset: number, v6: boolean): string {
  if (!v6) return formatIp({ family: 4, words: [buf.readUInt32BE(offset)] });
  const words = [0, 1, 2, 3].map((i) => buf.readUInt32BE(offset + 4 * i));
  if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) return formatIp({ family: 4, words: [words[3]!] });
  return formatIp({ family: 6, words });
}

const invalid = (reason: ProxyV2Rejection, message: string): ProxyV2ParseResult => ({ kind: 'invalid', reason, message });

/**
 * Reads a PROXY v2 header (haproxy proxy-protocol.txt §2.2) from the start of `buf`, which holds
 * the bytes received so far. Never reads past the announced length; refuses as soon as the bytes
 * in hand prove the header invalid (the signature is checked byte by byte as it arrives). Only
 * command PROXY over TCP is accepted: LOCAL carries no original destination to decide on.
 */
export function parseProxyV2(buf: Buffer): ProxyV2ParseResult {
  const sigBytes = Math.min(buf.length, PROXY_V2_SIGNATURE.length);
  if (buf.subarray(0, sigBytes).compare(PROXY_V2_SIGNATURE, 0, sigBytes) !== 0) {
    return invalid('bad_signature', 'the stream does not start with the PROXY protocol v2 signature');
  }
  if (buf.length < 16) return { kind: 'incomplete', need: 16 };
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return invalid('bad_version', `PROXY protocol version ${verCmd >> 4}, expected 2`);
  const command = verCmd & 0x0f;
  if (command === COMMAND_LOCAL) return invalid('local_command', 'PROXY header with command LOCAL: no client or original destination to decide on');
  if (command !== COMMAND_PROXY) return invalid('bad_command', `PROXY header command 0x${command.toString(16)}, expected PROXY (0x1)`);
  const fam = buf[13]!;
  if (fam !== TCP_OVER_IPV4 && fam !== TCP_OVER_IPV6) {
    return invalid('bad_family', `PROXY header address family/protocol 0x${fam.toString(16).padStart(2, '0')}, expected TCP over IPv4 (0x11) or IPv6 (0x21)`);
  }
  const payload = buf.readUInt16BE(14);
  const total = 16 + payload;
  if (total > MAX_PROXY_V2_HEADER_BYTES) {
    return invalid('too_long', `PROXY header announces ${total} bytes, more than the ${MAX_PROXY_V2_HEADER_BYTES} accepted`);
  }
  const v6 = fam === TCP_OVER_IPV6;
  const addrLen = v6 ? 36 : 12;
  if (payload < addrLen) return invalid('bad_addresses', `PROXY header of ${payload} payload bytes cannot hold its ${addrLen}-byte address block`);
  if (buf.length < total) return { kind: 'incomplete', need: total };
  const ipLen = v6 ? 16 : 4;
  const sourceIp = readAddress(buf, 16, v6);
  const destinationIp = readAddress(buf, 16 + ipLen, v6);
  const sourcePort = buf.readUInt16BE(16 + 2 * ipLen);
  const destinationPort = buf.readUInt16BE(16 + 2 * ipLen + 2);
  if (destinationPort === 0) return invalid('bad_addresses', 'PROXY header with destination port 0');
  let spiffeId: string | null = null;
  let off = 16 + addrLen;
  while (off < total) {
    if (total - off < 3) return invalid('bad_tlv', `PROXY header TLV at byte ${off} is truncated`);
    const type = buf[off]!;
    const len = buf.readUInt16BE(off + 1);
    const end = off + 3 + len;
    if (end > total) return invalid('bad_tlv', `PROXY header TLV 0x${type.toString(16)} at byte ${off} runs past the header`);
    if (type === PP2_TYPE_SPIFFE_ID) {
      if (spiffeId !== null) return invalid('bad_tlv', 'PROXY header carries TLV 0xd0 (the client identity) twice');
      const bytes = buf.subarray(off + 3, end);
      const text = bytes.toString('utf8');
      if (!Buffer.from(text, 'utf8').equals(bytes)) return invalid('bad_identity', 'PROXY header TLV 0xd0 is not valid UTF-8');
      spiffeId = text;
    }
    // Any other TLV (§2.2.1-2.2.7: ALPN, authority, CRC32C, NOOP, SSL...) is skipped unread.
    off = end;
  }
  return { kind: 'ok', length: total, header: { sourceIp, sourcePort, destinationIp, destinationPort, spiffeId: spiffeId ?? '' } };
}
