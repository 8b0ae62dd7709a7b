/**
 * PROXY protocol v2 header (haproxy proxy-protocol.txt §2.2) written to the upstream before any
 * tunnel byte, as ztunnel does for workloads that ask for it: the original client address and
 * port, the destination, and the client's SPIFFE ID in TLV type 0xD0 (the type ztunnel uses for
 * the peer identity, in the PP2_TYPE_MIN_CUSTOM..MAX_CUSTOM range of §2.2.8).
 *
 * {@link proxyV2Connector} is the upstream connector (connector.ts) that sends it: plain TCP whose
 * connection starts with the header.
 */
import { parseIp, type ParsedIp } from '../net/address.ts';
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
