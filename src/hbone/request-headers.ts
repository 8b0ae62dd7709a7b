/**
 * The informational CONNECT headers ztunnel sends (docs/design.md §2 "Headers read"): `baggage`,
 * `forwarded`, `traceparent`, `x-forwarded-network`. All of them are untrusted client claims:
 * they feed `request.*` in the decision context and the audit record, never the source address
 * (that always comes from the socket).
 *
 * Every parser here is total: malformed input yields an empty/partial result, never an exception,
 * and every result is bounded in size so a hostile peer cannot make a record or a context large.
 */
import { BoundedCache } from '../util/bounded-cache.ts';

/** W3C Baggage §3.3.2 limits: at most 64 list-members and 8192 bytes in total. */
export const MAX_BAGGAGE_MEMBERS = 64;
export const MAX_BAGGAGE_BYTES = 8192;
/** Elements of a `forwarded` header we keep (ztunnel sends one). */
export const MAX_FORWARDED_ELEMENTS = 16;

// RFC 7230 §3.2.6 token characters (W3C baggage keys and RFC 7239 parameter names are tokens).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// W3C Baggage §3.3.1 baggage-octet: printable US-ASCII except space, '"', ',', ';' and '\'.
const BAGGAGE_VALUE = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*$/;

/** Whether `s[start, end)` is lower-case hex only (W3C Trace Context: upper case is invalid). */
function isLowerHex(s: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/** Whether `s[start, end)` is all '0' (an all-zero trace-id or parent-id is invalid). */
function isAllZero(s: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (s.charCodeAt(i) !== 48) return false;
  return true;
}

/** A null-prototype record: keys such as `__proto__` from a peer stay plain data. */
export function emptyRecord(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

/**
 * Builds the `request.headers` map from Node's flat raw header list (name, value, name, value...):
 * lower-case names, pseudo-headers excluded, repeated values joined with ", " in arrival order
 * (RFC 9110 §5.3 field-line combination).
 */
export function collectHeaders(rawHeaders: readonly string[]): Record<string, string> {
  const out = emptyRecord();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name.charCodeAt(0) === 58 /* ':' */) continue;
    const value = rawHeaders[i + 1]!;
    const prev = out[name];
    out[name] = prev === undefined ? value : `${prev}, ${value}`;
  }
  return out;
}

/**
 * Parses a W3C `baggage` header (W3C Baggage §3.2): `key=value` list-members separated by ',',
 * optional whitespace around them, values percent-decoded, `;property` parts ignored. Members
 * that are malformed, beyond the 64th, or past 8192 bytes are dropped (§3.3.2 allows dropping).
 * The first occurrence of a key wins.
 */
export function parseBaggage(header: string | undefined): Record<string, string> {
  const out = emptyRecord();
  if (!header) return out;
  const text = header.length > MAX_BAGGAGE_BYTES ? header.slice(0, MAX_BAGGAGE_BYTES) : header;
  const truncated = text.length < header.length;
  const members = text.split(',');
  // A member cut by the byte bound is incomplete: drop it rather than record a wrong value.
  const usable = truncated ? members.length - 1 : members.length;
  let kept = 0;
  for (let i = 0; i < usable && kept < MAX_BAGGAGE_MEMBERS; i++) {
    const member = members[i]!;
    const semi = member.indexOf(';');
    const pair = (semi === -1 ? member : member.slice(0, semi)).trim();
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const key = pair.slice(0, eq).trim();
    const rawValue = pair.slice(eq + 1).trim();
    if (!TOKEN.test(key) || !BAGGAGE_VALUE.test(rawValue)) continue;
    let value = rawValue;
    // Most values carry no escape at all (ztunnel's k8s.* names): decoding them is the identity.
    if (rawValue.indexOf('%') !== -1) {
      try {
        value = decodeURIComponent(rawValue);
      } catch {
        continue; // invalid percent-encoding: the member is malformed
      }
    }
    kept++;
    if (!(key in out)) out[key] = value;
  }
  return out;
}

/** Distinct baggage values remembered per connection (a peer varying it per stream just misses). */
export const MAX_BAGGAGE_CACHE_ENTRIES = 8;

/**
 * Parsed `baggage` values of one HTTP/2 connection, keyed on the raw header value. ztunnel sends
 * the same baggage (the source workload's) on every stream of a connection, so the parse runs
 * once per connection instead of once per CONNECT. The project's one bounded cache
 * (src/util/bounded-cache.ts), at most {@link MAX_BAGGAGE_CACHE_ENTRIES} values whatever the peer sends.
 */
export class BaggageCache extends BoundedCache<string, Readonly<Record<string, string>>> {
  constructor() {
    super(MAX_BAGGAGE_CACHE_ENTRIES);
  }
}

/**
 * {@link parseBaggage} through a connection's cache. The cached record is frozen because every
 * CONNECT that hit it shares it (decision contexts hold it for the tunnel's life).
 */
export function parseBaggageCached(header: string | undefined, cache: BaggageCache): Readonly<Record<string, string>> {
  if (!header) return parseBaggage(header);
  return cache.get(header) ?? cache.set(header, Object.freeze(parseBaggage(header)));
}

/** One element of an RFC 7239 `forwarded` header, lower-case parameter names. */
export interface ForwardedElement {
  for?: string;
  by?: string;
  host?: string;
  proto?: string;
}

/**
 * Parses an RFC 7239 `forwarded` header (§4): elements separated by ',', `name=value` pairs by
 * ';', values tokens or quoted-strings (ztunnel sends `for="10.0.0.5:43122";host=svc`, the quotes
 * being required for a port or an IPv6 literal, §6). Unknown parameters are ignored; a
 * malformed element is skipped. Quoting is honoured, so a ',' or ';' inside quotes never splits.
 */
export function parseForwarded(header: string | undefined): ForwardedElement[] {
  const out: ForwardedElement[] = [];
  if (!header) return out;
  let i = 0;
  const n = header.length;
  let element: ForwardedElement = {};
  let valid = true;
  // Index of the next '\' at or after the last search (n when there is none). Searched again only
  // once the parse has passed it: searching from every quoted value scanned the rest of the header
  // each time, quadratic in a header of many quoted values and one late '\' (4 MiB: 20 s).
  let backslash = -1;
  const finishElement = (): void => {
    if (valid && Object.keys(element).length > 0 && out.length < MAX_FORWARDED_ELEMENTS) out.push(element);
    element = {};
    valid = true;
  };
  while (i < n) {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
    // pair name
    const nameStart = i;
    while (i < n && header[i] !== '=' && header[i] !== ';' && header[i] !== ',') i++;
    const name = header.slice(nameStart, i).trim().toLowerCase();
    let value = '';
    if (header[i] === '=') {
      i++;
      if (header[i] === '"') {
        // quoted-string (RFC 7230 §3.2.6) with quoted-pair escapes
        i++;
        let closed = false;
        // Common case (ztunnel's `for="10.0.0.5:43122"`): no escape before the closing quote, so
        // the value is one slice instead of a string built a character at a time.
        const quote = header.indexOf('"', i);
        if (quote !== -1) {
          if (backslash < i) {
            backslash = header.indexOf('\\', i);
            if (backslash === -1) backslash = n;
          }
          if (backslash > quote) {
            value = header.slice(i, quote);
            i = quote + 1;
            closed = true;
          }
        }
        while (!closed && i < n) {
          const c = header[i]!;
          if (c === '\\' && i + 1 < n) {
            value += header[i + 1];
            i += 2;
          } else if (c === '"') {
            i++;
            closed = true;
            break;
          } else {
            value += c;
            i++;
          }
        }
        if (!closed) valid = false;
      } else {
        const vStart = i;
        while (i < n && header[i] !== ';' && header[i] !== ',') i++;
        value = header.slice(vStart, i).trim();
        if (!TOKEN.test(value)) valid = false;
      }
    } else if (name !== '') {
      valid = false; // a parameter without '=' is malformed
    }
    if (name !== '') {
      if (!TOKEN.test(name)) valid = false;
      else if (name === 'for' || name === 'by' || name === 'host' || name === 'proto') {
        if (element[name] === undefined) element[name] = value;
      }
    }
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
    if (i >= n) break;
    if (header[i] === ';') {
      i++;
    } else if (header[i] === ',') {
      i++;
      finishElement();
    } else {
      // junk after a quoted value: skip to the next separator
      valid = false;
      while (i < n && header[i] !== ';' && header[i] !== ',') i++;
    }
  }
  finishElement();
  return out;
}

/** A parsed W3C `traceparent`. */
export interface TraceParent {
  version: string;
  traceId: string;
  parentId: string;
  flags: string;
}

/**
 * Parses a W3C `traceparent` (Trace Context §3.2): `00-<32 hex>-<16 hex>-<2 hex>`, lower-case
 * only. Version `ff` is invalid; an all-zero trace-id or parent-id is invalid (§3.2.2.3-4).
 * For a future version the first four fields are read when followed by '-' or the end (§4.3).
 */
export function parseTraceparent(header: string | undefined): TraceParent | null {
  if (!header) return null;
  const value = header.trim();
  if (value.length < 55) return null;
  // Checked in place (char codes), sliced only once valid: this runs for every CONNECT.
  if (!isLowerHex(value, 0, 2)) return null;
  const version = value.slice(0, 2);
  if (version === 'ff') return null;
  if (version === '00' ? value.length !== 55 : value.length > 55 && value[55] !== '-') return null;
  if (value[2] !== '-' || value[35] !== '-' || value[52] !== '-') return null;
  if (!isLowerHex(value, 3, 35) || !isLowerHex(value, 36, 52) || !isLowerHex(value, 53, 55)) return null;
  if (isAllZero(value, 3, 35) || isAllZero(value, 36, 52)) return null;
  return { version, traceId: value.slice(3, 35), parentId: value.slice(36, 52), flags: value.slice(53, 55) };
}

/**
 * `x-forwarded-network` (Istio: the network the request entered the mesh from). Kept only when it
 * is a short token; anything else is treated as absent.
 */
export function parseForwardedNetwork(header: string | undefined): string {
  if (!header) return '';
  const v = header.trim();
  return v.length <= 253 && TOKEN.test(v) ? v : '';
}

/** Everything the transport reads from the CONNECT headers. */
export interface ParsedRequestHeaders {
  headers: Record<string, string>;
  baggage: Readonly<Record<string, string>>;
  traceId: string;
  forwarded: ForwardedElement[];
  forwardedNetwork: string;
}

/**
 * Parses every informational header of one CONNECT from Node's raw header list. With a
 * connection's `baggageCache`, the baggage record may be shared (frozen) with earlier CONNECTs.
 */
export function parseRequestHeaders(rawHeaders: readonly string[], baggageCache?: BaggageCache): ParsedRequestHeaders {
  const headers = collectHeaders(rawHeaders);
  return {
    headers,
    baggage: baggageCache ? parseBaggageCached(headers['baggage'], baggageCache) : parseBaggage(headers['baggage']),
    traceId: parseTraceparent(headers['traceparent'])?.traceId ?? '',
    forwarded: parseForwarded(headers['forwarded']),
    forwardedNetwork: parseForwardedNetwork(headers['x-forwarded-network']),
  };
}
