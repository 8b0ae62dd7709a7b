/**
 * The name istiod's serving certificate is checked for. Apart from client.ts so that the source
 * (source.ts) can validate its options without loading the gRPC stack, which it imports only once
 * it asks istiod for a certificate.
 */
import { WaygateError } from '../../errors.ts';
import { parseAuthority } from '../../net/authority.ts';

/** The name istiod's certificate is checked for: `serverName`, else the host of `address`. WG_CA when the address does not parse. */
export function caServerName(address: string, serverName?: string): string {
  const a = parseAuthority(address);
  if (a === null) throw new WaygateError('WG_CA', `istiod address "${address}" is not host:port ([v6]:port for IPv6)`);
  return serverName ?? (a.kind === 'ip' ? a.ip : a.host);
}
