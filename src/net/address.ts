/**
 * IP address and CIDR primitives, shared by the CEL `ip()`/`cidr()` functions and the data plane's
 * destination filter. Pure and allocation-light: an address is parsed once into 32-bit words and a
 * containment test is one masked compare per word (docs/design.md §8.1: `node:net` `BlockList.check` costs
 * about 2 µs per call; this costs tens of nanoseconds).
 *
 * Canonical forms (docs/design.md §3 "Types"): IPv4 as a dotted quad, IPv6 per RFC 5952, and an
 * IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, RFC 4291 §2.5.5.2) is the IPv4 address it maps, so
 * a policy written for `10.0.0.1` matches a dual-stack socket that reports `::ffff:10.0.0.1`.
 */

/** An address family: 4 or 6. */
export type IpFamily = 4 | 6;

/**
 * A parsed address: one 32-bit word for IPv4, four (most significant first) for IPv6. Words are
 * unsigned (`>>> 0`). Never IPv4-mapped IPv6: those parse as IPv4.
 */
export interface ParsedIp {
  readonly family: IpFamily;
  readonly words: readonly number[];
}

/**
 * A parsed CIDR block. `address` is the address exactly as written (host bits kept, as Kubernetes'
 * `cidr().ip()` returns it); `network` has the host bits cleared; `mask` has one word per address word.
 */
export interface ParsedCidr {
  readonly family: IpFamily;
  readonly prefixLength: number;
  readonly address: ParsedIp;
  readonly network: ParsedIp;
  readonly mask: readonly number[];
}

const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

// RFC 791 dotted quad, strictly decimal: no leading zeros, because inet_aton() reads `010` as octal 8
// and a filter that disagrees with the dialer about which host `010.0.0.1` is can be bypassed.
function parseIpv4Word(s: string): number | null {
  // Hand-rolled (no split/regex): this runs for every address a decision or the destination
  // filter looks at. Accepts exactly four decimal octets, 0-255, no leading zeros.
  const len = s.length;
  if (len < 7 || len > 15) return null;
  let word = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || dots === 3) return null;
      word = word * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return null; // leading zero
      octet = octet * 10 + (c - 48);
      if (octet > 255) return null;
      digits++;
    } else {
      return null;
    }
  }
  if (dots !== 3 || digits === 0) return null;
  return (word * 256 + octet) >>> 0;
}

function parseHexGroups(s: string, out: number[]): boolean {
  if (s === '') return true;
  for (const g of s.split(':')) {
    if (!HEX_GROUP.test(g)) return false;
    out.push(parseInt(g, 16));
  }
  return true;
}

// RFC 4291 §2.2: eight 16-bit groups, one `::` for a run of zero groups, optionally ending in a
// dotted quad that counts as two groups. Zone identifiers (RFC 4007 `%eth0`) are refused: they name
// an interface on the gateway's host, which a policy or a peer has no business choosing.
function parseIpv6Groups(s: string): number[] | null {
  if (s.length < 2 || s.length > 45) return null;
  let tail4: number | null = null;
  let body = s;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) !== -1) {
    tail4 = parseIpv4Word(s.slice(lastColon + 1));
    if (tail4 === null) return null;
    body = s.slice(0, lastColon + 1);
    // `::1.2.3.4` leaves `::`; `1::1.2.3.4` leaves `1::`; `1:2:3:4:5:6:1.2.3.4` leaves `...6:`.
    if (body.endsWith(':') && !body.endsWith('::')) body = body.slice(0, -1);
  }
  const want = tail4 === null ? 8 : 6;
  const dbl = body.indexOf('::');
  const groups: number[] = [];
  if (dbl === -1) {
    if (!parseHexGroups(body, groups) || groups.length !== want) return null;
  } else {
    if (body.indexOf('::', dbl + 1) !== -1) return null;
    const head: number[] = [];
    const rest: number[] = [];
    if (!parseHexGroups(body.slice(0, dbl), head) || !parseHexGroups(body.slice(dbl + 2), rest)) return null;
    // RFC 4291: `::` stands for one or more zero groups, so at most want-1 explicit groups.
    if (head.length + rest.length > want - 1) return null;
    groups.push(...head);
    for (let i = head.length + rest.length; i < want; i++) groups.push(0);
    groups.push(...rest);
  }
  if (tail4 !== null) groups.push(tail4 >>> 16, tail4 & 0xffff);
  return groups;
}

function v4(word: number): ParsedIp {
  return { family: 4, words: [word >>> 0] };
}

/**
 * Parses an IPv4 dotted quad or an IPv6 address in any RFC 4291 §2.2 text form. IPv4-mapped IPv6
 * becomes IPv4. Returns null for anything else: leading zeros in IPv4, zone ids, brackets, ports,
 * surrounding whitespace.
 */
export function parseIp(s: string): ParsedIp | null {
  if (typeof s !== 'string') return null;
  if (s.indexOf(':') === -1) {
    const w = parseIpv4Word(s);
    return w === null ? null : v4(w);
  }
  const g = parseIpv6Groups(s);
  if (g === null) return null;
  const words = [
    ((g[0]! << 16) | g[1]!) >>> 0,
    ((g[2]! << 16) | g[3]!) >>> 0,
    ((g[4]! << 16) | g[5]!) >>> 0,
    ((g[6]! << 16) | g[7]!) >>> 0,
  ];
  if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) return v4(words[3]!);
  return { family: 6, words };
}

/** Formats an address canonically: dotted quad, or RFC 5952 §4 for IPv6 (lower case, longest zero run as `::`). */
export function formatIp(ip: ParsedIp): string {
  if (ip.family === 4) {
    const w = ip.words[0]!;
    return `${w >>> 24}.${(w >>> 16) & 255}.${(w >>> 8) & 255}.${w & 255}`;
  }
  const g: number[] = [];
  for (const w of ip.words) g.push(w >>> 16, w & 0xffff);
  // RFC 5952 §4.2: compress the longest run of two or more zero groups; the first one on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (bestStart === -1) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** The canonical text of an address, or null when `s` is not one. */
export function canonicalIp(s: string): string | null {
  const ip = parseIp(s);
  return ip === null ? null : formatIp(ip);
}

function maskWords(family: IpFamily, prefixLength: number): number[] {
  const n = family === 4 ? 1 : 4;
  const mask: number[] = [];
  for (let i = 0; i < n; i++) {
    const bits = Math.max(0, Math.min(32, prefixLength - i * 32));
    mask.push(bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);
  }
  return mask;
}

function makeCidr(address: ParsedIp, prefixLength: number): ParsedCidr {
  const mask = maskWords(address.family, prefixLength);
  const network: ParsedIp = {
    family: address.family,
    words: address.words.map((w, i) => (w & mask[i]!) >>> 0),
  };
  return { family: address.family, prefixLength, address, network, mask };
}

/** The error text of an invalid CIDR: why it was refused, in words an author can act on. */
export type CidrError = string;

/**
 * Parses `address/prefix`. Host bits may be set (`10.0.0.5/8`) and are ignored for containment,
 * as Kubernetes' `cidr()` (Go's `netip.ParsePrefix`) accepts them; `network` holds the masked
 * block. A prefix needs decimal digits without leading zeros, at most 32 (IPv4) or 128 (IPv6).
 * An IPv4-mapped IPv6 block with prefix >= 96 becomes the IPv4 block it maps (`::ffff:10.0.0.0/104`
 * is `10.0.0.0/8`), consistent with parseIp.
 */
export function parseCidrDetailed(s: string): { cidr: ParsedCidr } | { error: CidrError } {
  if (typeof s !== 'string') return { error: 'not a string' };
  const slash = s.indexOf('/');
  if (slash === -1) return { error: `"${s}" has no "/<prefix length>"` };
  const addrText = s.slice(0, slash);
  const prefixText = s.slice(slash + 1);
  if (!/^(?:0|[1-9][0-9]{0,2})$/.test(prefixText)) {
    return { error: `prefix length "${prefixText}" is not a decimal number without leading zeros` };
  }
  let prefixLength = Number(prefixText);
  const isV6Text = addrText.indexOf(':') !== -1;
  let address = parseIp(addrText);
  if (address === null) return { error: `"${addrText}" is not an IPv4 or IPv6 address` };
  const max = isV6Text ? 128 : 32;
  if (prefixLength > max) return { error: `prefix length ${prefixLength} exceeds ${max}` };
  if (isV6Text && address.family === 4) {
    // The address was IPv4-mapped: the block only stays IPv4 when it lies inside ::ffff:0:0/96.
    if (prefixLength < 96) {
      const words = [0, 0, 0xffff, address.words[0]!];
      address = { family: 6, words };
    } else {
      prefixLength -= 96;
    }
  }
  return { cidr: makeCidr(address, prefixLength) };
}

/**
 * The network of a destination allow-list entry (`destinations.allow[].cidr`, `--allow-destinations`):
 * `ip/prefix` as {@link parseCidrDetailed}, or a bare IP meaning that one host (/32 or /128). The
 * config loader and the server's DestinationPolicy both parse entries with it, so a value the
 * loader accepts is one the server compiles.
 */
export function parseAllowedNetwork(s: string): { cidr: ParsedCidr } | { error: CidrError } {
  if (typeof s === 'string' && s.indexOf('/') === -1) {
    const ip = parseIp(s);
    if (ip === null) return { error: `"${s}" is not a CIDR (ip/prefix) or an IP address` };
    return { cidr: makeCidr(ip, ip.family === 4 ? 32 : 128) };
  }
  return parseCidrDetailed(s);
}

/** Parses a CIDR block (see parseCidrDetailed), or null when invalid. */
export function parseCidr(s: string): ParsedCidr | null {
  const r = parseCidrDetailed(s);
  return 'cidr' in r ? r.cidr : null;
}

/** Formats a CIDR block as written (host bits kept) in canonical address text. */
export function formatCidr(c: ParsedCidr): string {
  return `${formatIp(c.address)}/${c.prefixLength}`;
}

/** True when `ip` lies inside `cidr`. Different families never match (mapped IPv6 is already IPv4). */
export function cidrContains(cidr: ParsedCidr, ip: ParsedIp): boolean {
  if (cidr.family !== ip.family) return false;
  const m = cidr.mask;
  const n = cidr.network.words;
  const w = ip.words;
  if (cidr.family === 4) return ((w[0]! & m[0]!) >>> 0) === n[0];
  return (
    ((w[0]! & m[0]!) >>> 0) === n[0] &&
    ((w[1]! & m[1]!) >>> 0) === n[1] &&
    ((w[2]! & m[2]!) >>> 0) === n[2] &&
    ((w[3]! & m[3]!) >>> 0) === n[3]
  );
}

/** True when every address of `inner` lies inside `outer`. */
export function cidrContainsCidr(outer: ParsedCidr, inner: ParsedCidr): boolean {
  return outer.family === inner.family && inner.prefixLength >= outer.prefixLength && cidrContains(outer, inner.network);
}

/** True when two parsed addresses are the same address. */
export function ipEquals(a: ParsedIp, b: ParsedIp): boolean {
  if (a.family !== b.family) return false;
  for (let i = 0; i < a.words.length; i++) if (a.words[i] !== b.words[i]) return false;
  return true;
}

function cidrList(list: string[]): ParsedCidr[] {
  return list.map((s) => {
    const c = parseCidr(s);
    if (c === null) throw new Error(`internal: bad built-in CIDR ${s}`);
    return c;
  });
}

// RFC 1122 §3.2.1.3 (127/8) and RFC 4291 §2.5.3 (::1).
const LOOPBACK = cidrList(['127.0.0.0/8', '::1/128']);
// RFC 3927 (169.254/16) and RFC 4291 §2.5.6 (fe80::/10).
const LINK_LOCAL = cidrList(['169.254.0.0/16', 'fe80::/10']);
// RFC 1122 §3.2.1.3 "this host" and RFC 4291 §2.5.2 unspecified.
const UNSPECIFIED = cidrList(['0.0.0.0/32', '::/128']);
// Cloud instance-metadata endpoints: reaching one hands out the node's cloud credentials.
//   169.254.169.254  AWS, GCP, Azure, Oracle, OpenStack IMDS
//   fd00:ec2::254    AWS IMDS over IPv6 (Nitro)
//   100.100.100.200  Alibaba Cloud metadata
//   169.254.170.2    AWS ECS task metadata / credentials
//   168.63.129.16    Azure WireServer (VM agent, extension settings)
const METADATA = cidrList([
  '169.254.169.254/32',
  'fd00:ec2::254/128',
  '100.100.100.200/32',
  '169.254.170.2/32',
  '168.63.129.16/32',
]);

function inAny(list: readonly ParsedCidr[], ip: ParsedIp): boolean {
  for (const c of list) if (cidrContains(c, ip)) return true;
  return false;
}

/** 127.0.0.0/8 or ::1. */
export function isLoopback(ip: ParsedIp): boolean {
  return inAny(LOOPBACK, ip);
}

/** 169.254.0.0/16 or fe80::/10 (link-local unicast). */
export function isLinkLocal(ip: ParsedIp): boolean {
  return inAny(LINK_LOCAL, ip);
}

/** 0.0.0.0 or `::`: dialing it reaches the local host on most systems. */
export function isUnspecified(ip: ParsedIp): boolean {
  return inAny(UNSPECIFIED, ip);
}

/** A known cloud instance-metadata address (see METADATA above). */
export function isMetadataAddress(ip: ParsedIp): boolean {
  return inAny(METADATA, ip);
}

/** 224.0.0.0/4 or ff00::/8. */
export function isMulticast(ip: ParsedIp): boolean {
  return ip.family === 4 ? ip.words[0]! >>> 28 === 0xe : ip.words[0]! >>> 24 === 0xff;
}
