/**
 * Kubernetes-style IP and CIDR functions for CEL (the `net` library of Kubernetes' CEL:
 * https://kubernetes.io/docs/reference/using-api/cel/#ip-address-library), backed by
 * src/net/address.ts so the policy language and the destination filter agree on every address.
 *
 * Differences from Kubernetes, on purpose:
 * - `containsIP("")` is false, not an error: `destination.ip` is `""` for a `host:port` authority
 *   (docs/design.md §3) and an error would make every DENY rule with a CIDR test match such tunnels.
 *   Any other invalid address is a runtime error (fail closed).
 * - IPv4-mapped IPv6 is IPv4 everywhere (docs/design.md §3 "Types").
 */
import { EvaluationError, type Environment } from '@marcbachmann/cel-js';
import {
  cidrContains,
  cidrContainsCidr,
  formatCidr,
  formatIp,
  ipEquals,
  isLinkLocal,
  isLoopback,
  isMetadataAddress,
  isUnspecified,
  parseCidrDetailed,
  parseIp,
  type ParsedCidr,
  type ParsedIp,
} from '../../net/address.ts';
import { BoundedCache } from '../../util/bounded-cache.ts';

/** The CEL `net.IP` value: a parsed address and its canonical text. */
export class CelIp {
  readonly parsed: ParsedIp;
  readonly text: string;
  constructor(parsed: ParsedIp) {
    this.parsed = parsed;
    this.text = formatIp(parsed);
  }
  toString(): string {
    return this.text;
  }
}

/** The CEL `net.CIDR` value. */
export class CelCidr {
  readonly parsed: ParsedCidr;
  readonly text: string;
  constructor(parsed: ParsedCidr) {
    this.parsed = parsed;
    this.text = formatCidr(parsed);
  }
  toString(): string {
    return this.text;
  }
}

export const IP_TYPE = 'net.IP';
export const CIDR_TYPE = 'net.CIDR';

/** Why `s` is not an IP address, or null when it is one (used to validate literals at load). */
export function ipLiteralError(s: string): string | null {
  return parseIp(s) === null
    ? `"${s}" is not an IP address (IPv4 dotted quad without leading zeros, or IPv6 without a zone)`
    : null;
}

/** Why `s` is not a CIDR block, or null when it is one. */
export function cidrLiteralError(s: string): string | null {
  const r = parseCidrDetailed(s);
  return 'error' in r ? `"${s}" is not a CIDR block: ${r.error}` : null;
}

// Literal `cidr("10.0.0.0/8")` calls run on every evaluation; parse each distinct string once.
// Bounded because a non-literal argument (a header value) could otherwise grow it without limit.
const cidrCache = new BoundedCache<string, CelCidr>(4096);
const ipCache = new BoundedCache<string, CelIp>(4096);

function toIp(s: string): CelIp {
  const hit = ipCache.get(s);
  if (hit !== undefined) return hit;
  const p = parseIp(s);
  if (p === null) throw new EvaluationError(`ip: "${s}" is not an IP address`);
  return ipCache.set(s, new CelIp(p));
}

function toCidr(s: string): CelCidr {
  const hit = cidrCache.get(s);
  if (hit !== undefined) return hit;
  const r = parseCidrDetailed(s);
  if ('error' in r) throw new EvaluationError(`cidr: "${s}" is not a CIDR block: ${r.error}`);
  return cidrCache.set(s, new CelCidr(r.cidr));
}

function containsIpString(c: CelCidr, s: string): boolean {
  if (s === '') return false;
  const p = parseIp(s);
  if (p === null) throw new EvaluationError(`containsIP: "${s}" is not an IP address`);
  return cidrContains(c.parsed, p);
}

/** Registers `net.IP`, `net.CIDR` and their functions on `env`. */
export function registerNetFunctions(env: Environment): void {
  // `fields: {}` makes the checker refuse `ip(x).foo` at load instead of returning dyn.
  env.registerType(IP_TYPE, { ctor: CelIp, fields: {} });
  env.registerType(CIDR_TYPE, { ctor: CelCidr, fields: {} });

  const fn = (sig: string, handler: (...args: any[]) => unknown, description: string) =>
    env.registerFunction(sig, { handler, description });

  fn('isIP(string): bool', (s: string) => parseIp(s) !== null, 'True when the string is an IPv4 or IPv6 address.');
  fn(`ip(string): ${IP_TYPE}`, toIp, 'Parses an IP address; an error when invalid.');
  fn(`string(${IP_TYPE}): string`, (ip: CelIp) => ip.text, 'Canonical text of the address.');
  fn(`${IP_TYPE}.family(): int`, (ip: CelIp) => BigInt(ip.parsed.family), '4 or 6.');
  fn(`${IP_TYPE}.isLoopback(): bool`, (ip: CelIp) => isLoopback(ip.parsed), '127.0.0.0/8 or ::1.');
  fn(`${IP_TYPE}.isUnspecified(): bool`, (ip: CelIp) => isUnspecified(ip.parsed), '0.0.0.0 or ::.');
  fn(`${IP_TYPE}.isLinkLocalUnicast(): bool`, (ip: CelIp) => isLinkLocal(ip.parsed), '169.254.0.0/16 or fe80::/10.');
  fn(`${IP_TYPE}.isMetadata(): bool`, (ip: CelIp) => isMetadataAddress(ip.parsed), 'A cloud instance-metadata address.');
  env.registerOperator(`${IP_TYPE} == ${IP_TYPE}`, (a: CelIp, b: CelIp) => ipEquals(a.parsed, b.parsed));

  fn('isCIDR(string): bool', (s: string) => 'cidr' in parseCidrDetailed(s), 'True when the string is a CIDR block.');
  fn(`cidr(string): ${CIDR_TYPE}`, toCidr, 'Parses a CIDR block; an error when invalid.');
  fn(`string(${CIDR_TYPE}): string`, (c: CelCidr) => c.text, 'The block as written, canonical address text.');
  fn(`${CIDR_TYPE}.containsIP(string): bool`, containsIpString, 'True when the address is inside the block ("" is false).');
  fn(
    `${CIDR_TYPE}.containsIP(${IP_TYPE}): bool`,
    (c: CelCidr, ip: CelIp) => cidrContains(c.parsed, ip.parsed),
    'True when the address is inside the block.',
  );
  fn(
    `${CIDR_TYPE}.containsCIDR(${CIDR_TYPE}): bool`,
    (a: CelCidr, b: CelCidr) => cidrContainsCidr(a.parsed, b.parsed),
    'True when every address of the argument is inside the block.',
  );
  fn(
    `${CIDR_TYPE}.containsCIDR(string): bool`,
    (a: CelCidr, s: string) => cidrContainsCidr(a.parsed, toCidr(s).parsed),
    'True when every address of the argument is inside the block.',
  );
  fn(`${CIDR_TYPE}.ip(): ${IP_TYPE}`, (c: CelCidr) => new CelIp(c.parsed.address), 'The address part as written.');
  fn(`${CIDR_TYPE}.masked(): ${CIDR_TYPE}`, (c: CelCidr) => new CelCidr({ ...c.parsed, address: c.parsed.network }), 'The block with host bits cleared.');
  fn(`${CIDR_TYPE}.prefixLength(): int`, (c: CelCidr) => BigInt(c.parsed.prefixLength), 'The prefix length.');
  env.registerOperator(
    `${CIDR_TYPE} == ${CIDR_TYPE}`,
    (a: CelCidr, b: CelCidr) => a.parsed.prefixLength === b.parsed.prefixLength && ipEquals(a.parsed.address, b.parsed.address),
  );
}
