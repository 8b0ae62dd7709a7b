/**
 * Index over rules (and policy selectors) so that decision cost does not grow linearly with keyed
 * rules (docs/design.md §8.1: CEL costs 0.2-1.3 µs per rule; rule count is what grows).
 *
 * Each entry carries the constraints (`IndexKey`s) that must hold for it to count. One key per
 * entry — the most selective one — files it:
 * - an equality key in a hash map keyed by attribute value (one probe per attribute);
 * - a CIDR key in a table per (address family, prefix length) keyed by the masked network: the
 *   context address is masked once per distinct (family, prefix length) present and looked up;
 * - a prefix/suffix key in a table per distinct literal length keyed by (a hash of) the literal:
 *   the context string is hashed in one pass and looked up once per distinct length.
 * Entries without keys go to a scan list. At decision time the candidates are the hits for the
 * context's values plus the scan list, merged in ordinal order, so "first match" is the same rule
 * a full scan would find: an entry left out of the candidates has a key that the context
 * violates, and such an entry cannot match (each key is a top-level conjunct that is *false*, not
 * an error, for that context — see `keysHold`).
 */
import { compileSwitchReader, INDEXED } from './attribute-tables.ts';
import type { DecisionContext } from './context.ts';
import {
  INDEXABLE_ATTRIBUTES,
  keyKind,
  type IndexableAttribute,
  type IndexKey,
  type IndexKeyKind,
} from './cel/compiled.ts';
import { cidrContains, parseCidr, parseIp, type IpFamily, type ParsedCidr, type ParsedIp } from '../net/address.ts';
import { runToEnd, type Steps } from './steps.ts';

/** Anything the index can hold: ordered and constrained by keys. */
export interface IndexEntry {
  readonly ordinal: number;
}

/** One hash map: entries filed under each value of one attribute (equality keys). */
export interface AttributeMap<T> {
  readonly attribute: IndexableAttribute;
  readonly byValue: ReadonlyMap<string | number, readonly T[]>;
}

/** Entries filed under CIDR blocks of one prefix length and family. */
export interface CidrTable<T> {
  readonly family: IpFamily;
  readonly prefixLength: number;
  /** The prefix mask, one word per address word (IPv4: one, IPv6: four). */
  readonly mask: readonly number[];
  /** Masked network (`networkKey`) -> entries, ordinal order. */
  readonly byNetwork: ReadonlyMap<number | string, readonly T[]>;
}

/** Entries filed under CIDR keys of one address attribute. */
export interface CidrMap<T> {
  readonly attribute: IndexableAttribute;
  /** One table per (family, prefix length) present. */
  readonly tables: readonly CidrTable<T>[];
  /** Every entry filed here, ordinal order: the candidates when the address does not parse (every CIDR test errors). */
  readonly all: readonly T[];
  /** Entries whose key errors on `""` (`ip(attr)` form): the candidates when the address is `""`. */
  readonly emptyError: readonly T[];
}

/** Entries filed under one literal. */
export interface AffixBucket<T> {
  readonly literal: string;
  readonly entries: readonly T[];
}

/**
 * Entries filed under literals of one length, keyed by `affixHash` of the literal. Keying by a
 * number computed in one pass over the context string, rather than by `slice()`d strings, saves
 * one string allocation and one string hash per length (measured ~4x cheaper per probe); a hash
 * shared by two literals is resolved by comparing the literal itself (no allocation either).
 */
export interface AffixTable<T> {
  readonly length: number;
  readonly byHash: ReadonlyMap<number, readonly AffixBucket<T>[]>;
}

/** Entries filed under prefix (or suffix) keys of one string attribute. */
export interface AffixMap<T> {
  readonly kind: 'prefix' | 'suffix';
  readonly attribute: IndexableAttribute;
  /** One table per distinct literal length, ascending. */
  readonly byLength: readonly AffixTable<T>[];
}

export interface KeyedIndex<T extends IndexEntry> {
  /** Equality keys: at most one map per attribute, only for attributes some entry is filed under. */
  readonly maps: readonly AttributeMap<T>[];
  /** CIDR keys: at most one per address attribute. */
  readonly cidrs: readonly CidrMap<T>[];
  /** Prefix/suffix keys: at most one per (kind, attribute). */
  readonly affixes: readonly AffixMap<T>[];
  /** Entries without any constraint, in ordinal order. */
  readonly scan: readonly T[];
  /** Every entry, in ordinal order (explain and the full-scan reference walk this). */
  readonly all: readonly T[];
  /** Entries with an empty value list on some key: they can never match and are never candidates. */
  readonly never: number;
}


/**
 * The value of an indexable attribute in a context (ports as numbers, the rest as strings): a
 * `switch` over the catalogue's indexable attributes, generated once (attribute-tables.ts).
 */
export const attributeValue: (ctx: DecisionContext, attribute: IndexableAttribute) => string | number = compileSwitchReader(
  INDEXED.map((i) => i.attribute),
);

// The context's addresses are parsed once per decision, not once per key or table: two slots,
// because a decision reads source.ip and destination.ip alternately.
let ipTextA = '';
let ipParsedA: ParsedIp | null = null;
let ipTextB = '';
let ipParsedB: ParsedIp | null = null;
let ipNext = false;

/** `parseIp` with a two-entry memo (never called with `""`). */
function contextIp(text: string): ParsedIp | null {
  if (text === ipTextA) return ipParsedA;
  if (text === ipTextB) return ipParsedB;
  const parsed = parseIp(text);
  if (ipNext) { ipTextB = text; ipParsedB = parsed; } else { ipTextA = text; ipParsedA = parsed; }
  ipNext = !ipNext;
  return parsed;
}

// Parsed CIDR literals per key object (keys are frozen and live as long as their snapshot).
const keyCidrs = new WeakMap<IndexKey, readonly ParsedCidr[]>();

function cidrsOf(k: IndexKey): readonly ParsedCidr[] {
  let c = keyCidrs.get(k);
  if (c === undefined) {
    // The CEL layer validated every literal at load; an unparseable one is skipped, never trusted.
    c = k.values.map((v) => (typeof v === 'string' ? parseCidr(v) : null)).filter((x): x is ParsedCidr => x !== null);
    keyCidrs.set(k, c);
  }
  return c;
}

/**
 * Whether a CIDR key can still be true (or an error) for the address text `s`: false only when
 * the conjunct is certainly false. `""` is false for `containsIP(attr)` and an error for
 * `containsIP(ip(attr))`; any other unparseable text is an error for both (functions-net.ts).
 */
function cidrKeyHolds(k: IndexKey, s: string): boolean {
  if (s === '') return k.emptyIsError === true;
  const ip = contextIp(s);
  if (ip === null) return true;
  const blocks = cidrsOf(k);
  // A literal that does not parse makes `cidr()` an error: never rule such a key out (the CEL layer
  // does not produce one; this keeps the proof local).
  if (blocks.length !== k.values.length) return true;
  for (let i = 0; i < blocks.length; i++) if (cidrContains(blocks[i]!, ip)) return true;
  return false;
}

/** Whether one key holds (or cannot be ruled out) for the context. */
export function keyHolds(k: IndexKey, ctx: DecisionContext): boolean {
  const v = attributeValue(ctx, k.attribute);
  switch (k.kind) {
    case undefined:
    case 'equals':
      return k.values.includes(v);
    case 'cidr':
      return cidrKeyHolds(k, v as string);
    case 'prefix':
      for (const p of k.values) if ((v as string).startsWith(p as string)) return true;
      return false;
    case 'suffix':
      for (const p of k.values) if ((v as string).endsWith(p as string)) return true;
      return false;
  }
}

/**
 * True when the context satisfies every key (or, for a CIDR key over an address that does not
 * parse, cannot rule it out): an entry for which this is false cannot match.
 */
export function keysHold(keys: readonly IndexKey[], ctx: DecisionContext): boolean {
  for (let i = 0; i < keys.length; i++) if (!keyHolds(keys[i]!, ctx)) return false;
  return true;
}

const ATTRIBUTE_RANK = new Map<IndexableAttribute, number>(INDEXABLE_ATTRIBUTES.map((a, i) => [a, i]));
// Ties prefer an exact equality (one probe, one value) over a prefix/suffix, and those over a CIDR.
const KIND_RANK: Record<IndexKeyKind, number> = { equals: 0, prefix: 1, suffix: 1, cidr: 2 };

/**
 * The lookup key of an address masked to a table's prefix: IPv4 as the network bits shifted down
 * (a small integer for prefixes up to /30, so V8 keeps it a Smi and the lookup allocates nothing),
 * IPv6 as text. Keys are only compared within one table, so one prefix length per table is fine.
 */
function networkKey(ip: ParsedIp, mask: readonly number[], prefixLength: number): number | string {
  const w = ip.words;
  if (ip.family === 4) return prefixLength === 0 ? 0 : (w[0]! & mask[0]!) >>> (32 - prefixLength);
  return `${(w[0]! & mask[0]!) >>> 0}:${(w[1]! & mask[1]!) >>> 0}:${(w[2]! & mask[2]!) >>> 0}:${(w[3]! & mask[3]!) >>> 0}`;
}

/** One FNV-1a step over a UTF-16 code unit (32-bit). */
function hashStep(h: number, c: number): number {
  return Math.imul(h ^ c, 0x01000193);
}

const HASH_SEED = 0x811c9dc5 | 0;

/** A hash as a table key: 30 bits, so V8 keeps it a Smi (a full int32 would be boxed on every lookup). */
function hashKey(h: number): number {
  return h & 0x3fffffff;
}

/**
 * The hash of a literal as `candidates` computes it from the context string: code units from the
 * start for a prefix, from the end (reversed) for a suffix.
 */
function affixHash(literal: string, suffix: boolean): number {
  let h = HASH_SEED;
  const n = literal.length;
  for (let i = 0; i < n; i++) h = hashStep(h, literal.charCodeAt(suffix ? n - 1 - i : i));
  return hashKey(h);
}

/** Appends `e` unless it is already the list's last entry (two values of one key may share a slot). */
/** A key's (kind, attribute) as a small integer, for the per-slot counts in buildIndex. */
function keySlot(k: IndexKey): number {
  // An attribute outside the list (only a hand-built key could hold one) shares the spare slot.
  return KIND_RANK_SLOT[keyKind(k)] * (INDEXABLE_ATTRIBUTES.length + 1) + (ATTRIBUTE_RANK.get(k.attribute) ?? INDEXABLE_ATTRIBUTES.length);
}
const KIND_RANK_SLOT: Record<IndexKeyKind, number> = { equals: 0, prefix: 1, suffix: 2, cidr: 3 };

/** The values without repeats (keys usually hold one value, which needs no Set). */
function distinct<V>(values: readonly V[]): readonly V[] {
  return values.length < 2 ? values : [...new Set(values)];
}

function file<K, T>(map: Map<K, T[]>, key: K, e: T): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [e]);
  else if (list[list.length - 1] !== e) list.push(e); // entries arrive in ordinal order: lists stay sorted
}

interface CidrBuild<T> {
  tables: Map<string, { family: IpFamily; prefixLength: number; mask: readonly number[]; byNetwork: Map<number | string, T[]> }>;
  all: T[];
  emptyError: T[];
}

/**
 * Builds an index. `entries` must be sorted by ordinal. The key chosen for an entry is the one
 * whose values are shared by the fewest other entries (summed over its values), so a rule keyed by
 * both a unique principal and a common port is filed under the principal. Ties go to the kind
 * (equality, then prefix/suffix, then CIDR), then to the key with fewer values, then to the
 * attribute listed first in INDEXABLE_ATTRIBUTES.
 */
export function buildIndex<T extends IndexEntry>(
  entries: readonly T[],
  keysOf: (e: T) => readonly IndexKey[],
): KeyedIndex<T> {
  return runToEnd(buildIndexSteps(entries, keysOf));
}

/** Entries filed between two yields of `buildIndexSteps` (a 20,000-rule bucket takes tens of ms). */
const ENTRIES_PER_STEP = 512;

/** `buildIndex` as steps (steps.ts): yields every ENTRIES_PER_STEP entries of each pass. */
export function* buildIndexSteps<T extends IndexEntry>(
  entries: readonly T[],
  keysOf: (e: T) => readonly IndexKey[],
): Steps<KeyedIndex<T>> {
  // How many entries carry each (kind, attribute, value): the cost of filing under that key.
  // One Map per (kind, attribute) slot, keyed by the values themselves (a Map tells 80 from "80"):
  // no joined strings, which a 10,000-rule load would build and hash ~60,000 of.
  const pairCount: Map<string | number, number>[] = [];
  let sinceYield = 0;
  for (const e of entries) {
    if (++sinceYield === ENTRIES_PER_STEP) {
      sinceYield = 0;
      yield;
    }
    for (const k of keysOf(e)) {
      const slot = keySlot(k);
      const counts = (pairCount[slot] ??= new Map());
      for (const v of distinct(k.values)) counts.set(v, (counts.get(v) ?? 0) + 1);
    }
  }
  const maps = new Map<IndexableAttribute, Map<string | number, T[]>>();
  const cidrs = new Map<IndexableAttribute, CidrBuild<T>>();
  const affixes = new Map<string, { kind: 'prefix' | 'suffix'; attribute: IndexableAttribute; byLength: Map<number, Map<string, T[]>> }>();
  const toTable = (length: number, byLiteral: Map<string, T[]>, suffix: boolean): AffixTable<T> => {
    const byHash = new Map<number, AffixBucket<T>[]>();
    for (const [literal, list] of byLiteral) {
      const h = affixHash(literal, suffix);
      const bucket = byHash.get(h);
      if (bucket === undefined) byHash.set(h, [{ literal, entries: list }]);
      else bucket.push({ literal, entries: list });
    }
    return { length, byHash };
  };
  const scan: T[] = [];
  let never = 0;
  for (const e of entries) {
    if (++sinceYield === ENTRIES_PER_STEP) {
      sinceYield = 0;
      yield;
    }
    const keys = keysOf(e);
    if (keys.some((k) => k.values.length === 0)) {
      // `x in []`: the expression can never be true, so no context makes it a candidate.
      never++;
      continue;
    }
    let best: IndexKey | undefined;
    let bestCost = Infinity;
    for (const k of keys) {
      if (keyKind(k) === 'cidr' && cidrsOf(k).length !== k.values.length) continue; // cannot file what does not parse
      let cost = 0;
      const counts = pairCount[keySlot(k)]!;
      for (const v of distinct(k.values)) cost += counts.get(v)!;
      const kr = KIND_RANK[keyKind(k)];
      const br = best === undefined ? 0 : KIND_RANK[keyKind(best)];
      if (
        best === undefined ||
        cost < bestCost ||
        (cost === bestCost && kr < br) ||
        (cost === bestCost && kr === br && k.values.length < best.values.length) ||
        (cost === bestCost && kr === br && k.values.length === best.values.length &&
          (ATTRIBUTE_RANK.get(k.attribute) ?? 99) < (ATTRIBUTE_RANK.get(best.attribute) ?? 99))
      ) {
        best = k;
        bestCost = cost;
      }
    }
    if (best === undefined) {
      scan.push(e);
      continue;
    }
    const kind = keyKind(best);
    if (kind === 'equals') {
      let byValue = maps.get(best.attribute);
      if (byValue === undefined) maps.set(best.attribute, (byValue = new Map()));
      for (const v of distinct(best.values)) file(byValue, v, e);
    } else if (kind === 'cidr') {
      let c = cidrs.get(best.attribute);
      if (c === undefined) cidrs.set(best.attribute, (c = { tables: new Map(), all: [], emptyError: [] }));
      c.all.push(e);
      if (best.emptyIsError === true) c.emptyError.push(e);
      for (const block of cidrsOf(best)) {
        const id = `${block.family}/${block.prefixLength}`;
        let t = c.tables.get(id);
        if (t === undefined) {
          t = { family: block.family, prefixLength: block.prefixLength, mask: block.mask, byNetwork: new Map() };
          c.tables.set(id, t);
        }
        file(t.byNetwork, networkKey(block.network, block.mask, block.prefixLength), e);
      }
    } else {
      const id = `${kind}\u0000${best.attribute}`;
      let a = affixes.get(id);
      if (a === undefined) affixes.set(id, (a = { kind, attribute: best.attribute, byLength: new Map() }));
      for (const v of distinct(best.values as readonly string[])) {
        let byLiteral = a.byLength.get(v.length);
        if (byLiteral === undefined) a.byLength.set(v.length, (byLiteral = new Map()));
        file(byLiteral, v, e);
      }
    }
  }
  return {
    maps: [...maps].map(([attribute, byValue]) => ({ attribute, byValue })),
    cidrs: [...cidrs].map(([attribute, c]) => ({
      attribute,
      // IPv4 first, then longest prefix first: order does not change the result (hits are merged
      // by ordinal), it only makes `/debug/policy` output stable.
      tables: [...c.tables.values()].sort((x, y) => x.family - y.family || y.prefixLength - x.prefixLength),
      all: c.all,
      emptyError: c.emptyError,
    })),
    affixes: [...affixes.values()].map((a) => ({
      kind: a.kind,
      attribute: a.attribute,
      byLength: [...a.byLength].sort((x, y) => x[0] - y[0]).map(([length, byLiteral]) => toTable(length, byLiteral, a.kind === 'suffix')),
    })),
    scan,
    all: entries,
    never,
  };
}

const EMPTY: readonly never[] = Object.freeze([]);

// Hit lists from CIDR and affix tables during one `candidates` call. Module-level and reused:
// `candidates` is synchronous and not re-entrant, and this keeps those lookups allocation-free. No
// closures on this path either: each would be an allocation per decision (see engine.ts).
const rangeHits: (readonly IndexEntry[] | undefined)[] = [];
let rangeCount = 0;

/** Appends the CIDR and prefix/suffix hits for `ctx` to `rangeHits[0..rangeCount)`. */
function collectRangeHits<T extends IndexEntry>(index: KeyedIndex<T>, ctx: DecisionContext): void {
  // Indexed loops: for-of over these (frozen) arrays measured ~2x slower here.
  const cidrs = index.cidrs;
  for (let ci = 0; ci < cidrs.length; ci++) {
    const c = cidrs[ci]!;
    const text = attributeValue(ctx, c.attribute) as string;
    if (text === '') {
      if (c.emptyError.length > 0) rangeHits[rangeCount++] = c.emptyError;
      continue;
    }
    const ip = contextIp(text);
    if (ip === null) {
      rangeHits[rangeCount++] = c.all; // every CIDR test on this address errors: none can be ruled out
      continue;
    }
    const tables = c.tables;
    for (let ti = 0; ti < tables.length; ti++) {
      const t = tables[ti]!;
      if (t.family !== ip.family) continue;
      const hit = t.byNetwork.get(networkKey(ip, t.mask, t.prefixLength));
      if (hit !== undefined) rangeHits[rangeCount++] = hit;
    }
  }
  const affixes = index.affixes;
  for (let ai = 0; ai < affixes.length; ai++) {
    const a = affixes[ai]!;
    const s = attributeValue(ctx, a.attribute) as string;
    const n = s.length;
    const suffix = a.kind === 'suffix';
    // One pass over the string, extended as far as the longest literal: the hash after `length`
    // code units is the key of that length's table.
    let h = HASH_SEED;
    let pos = 0;
    const tables = a.byLength;
    for (let ti = 0; ti < tables.length; ti++) {
      const t = tables[ti]!;
      if (t.length > n) break;
      for (; pos < t.length; pos++) h = hashStep(h, s.charCodeAt(suffix ? n - 1 - pos : pos));
      const bucket = t.byHash.get(hashKey(h));
      if (bucket === undefined) continue;
      for (let bi = 0; bi < bucket.length; bi++) {
        const b = bucket[bi]!;
        if (suffix ? s.endsWith(b.literal) : s.startsWith(b.literal)) rangeHits[rangeCount++] = b.entries;
      }
    }
  }
}

/**
 * The entries that may count for `ctx`, in ordinal order: hits for the context's values plus the
 * scan list. An entry filed under a CIDR or affix key with several overlapping values can be hit
 * twice; the merge drops the duplicate. Allocates only when two or more lists are non-empty.
 */
export function candidates<T extends IndexEntry>(index: KeyedIndex<T>, ctx: DecisionContext): readonly T[] {
  let first: readonly T[] = index.scan.length > 0 ? index.scan : EMPTY;
  let rest: (readonly T[])[] | undefined;
  for (const m of index.maps) {
    const hit = m.byValue.get(attributeValue(ctx, m.attribute));
    if (hit === undefined) continue;
    if (first.length === 0) first = hit;
    else (rest ??= []).push(hit);
  }
  if (index.cidrs.length > 0 || index.affixes.length > 0) {
    collectRangeHits(index, ctx);
    for (let i = 0; i < rangeCount; i++) {
      const hit = rangeHits[i] as readonly T[];
      rangeHits[i] = undefined; // hold no reference to a snapshot's lists between decisions
      if (first.length === 0) first = hit;
      else (rest ??= []).push(hit);
    }
    rangeCount = 0;
  }
  if (rest === undefined) return first;
  let merged = first;
  for (const list of rest) merged = mergeByOrdinal(merged, list);
  return merged;
}

/**
 * Merges two ordinal-sorted lists (classic two-way merge; lists are short in practice). An entry
 * present in both is kept once.
 */
function mergeByOrdinal<T extends IndexEntry>(a: readonly T[], b: readonly T[]): T[] {
  const out: T[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x === y) { out.push(x); i++; j++; } else if (x.ordinal < y.ordinal) { out.push(x); i++; } else { out.push(y); j++; }
  }
  while (i < a.length) out.push(a[i++]!);
  while (j < b.length) out.push(b[j++]!);
  return out;
}

/**
 * Describes an index for `/debug/policy` and the bench: how many entries are keyed vs scanned, and
 * how many lookups (`probes`) a decision makes at most. `keyed` names equality maps by attribute
 * (`source.principal`) and the other kinds as `<kind> <attribute>` (`cidr source.ip`,
 * `suffix destination.host`); `values` counts distinct networks / literals.
 */
export function describeIndex<T extends IndexEntry>(index: KeyedIndex<T>): {
  entries: number;
  scanned: number;
  never: number;
  probes: number;
  keyed: Record<string, { values: number; entries: number }>;
} {
  const keyed: Record<string, { values: number; entries: number }> = {};
  let probes = 0;
  const count = (m: ReadonlyMap<unknown, readonly T[]>): [number, number] => {
    let n = 0;
    for (const l of m.values()) n += l.length;
    return [m.size, n];
  };
  for (const m of index.maps) {
    const [values, entries] = count(m.byValue);
    keyed[m.attribute] = { values, entries };
    probes++;
  }
  for (const c of index.cidrs) {
    let values = 0;
    for (const t of c.tables) values += t.byNetwork.size;
    keyed[`cidr ${c.attribute}`] = { values, entries: c.all.length };
    probes += c.tables.length;
  }
  for (const a of index.affixes) {
    let values = 0;
    let entries = 0;
    for (const t of a.byLength) {
      for (const bucket of t.byHash.values()) {
        for (const b of bucket) {
          values++;
          entries += b.entries.length;
        }
      }
    }
    keyed[`${a.kind} ${a.attribute}`] = { values, entries };
    probes += a.byLength.length;
  }
  return { entries: index.all.length, scanned: index.scan.length, never: index.never, probes, keyed };
}
