/**
 * Equality index over rules (and policy selectors) so that decision cost does not grow linearly
 * with equality-keyed rules (FACTS: CEL costs 0.2-1.3 µs per rule; rule count is what grows).
 *
 * Each entry carries the equality constraints (`IndexKey`s) that must hold for it to count. One
 * key per entry — the most selective one — files it in a hash map keyed by attribute value;
 * entries without keys go to a scan list. At decision time the candidates are the map hits for
 * the context's attribute values plus the scan list, in ordinal order, so "first match" is the
 * same rule a full scan would find: an entry left out of the candidates has a key that the
 * context violates, and such an entry cannot match.
 */
import type { DecisionContext } from './context.ts';
import { INDEXABLE_ATTRIBUTES, type IndexableAttribute, type IndexKey } from './cel/compiled.ts';
import type { CompiledPolicy, CompiledRule } from './snapshot.ts';

/** Anything the index can hold: ordered and constrained by keys. */
export interface IndexEntry {
  readonly ordinal: number;
}

/** One hash map: entries filed under each value of one attribute. */
export interface AttributeMap<T> {
  readonly attribute: IndexableAttribute;
  readonly byValue: ReadonlyMap<string | number, readonly T[]>;
}

export interface KeyedIndex<T extends IndexEntry> {
  /** At most one map per attribute, only for attributes some entry is filed under. */
  readonly maps: readonly AttributeMap<T>[];
  /** Entries without any equality constraint, in ordinal order. */
  readonly scan: readonly T[];
  /** Every entry, in ordinal order (explain and the full-scan reference walk this). */
  readonly all: readonly T[];
  /** Entries with an empty value list on some key: they can never match and are never candidates. */
  readonly never: number;
}

export type RuleIndex = KeyedIndex<CompiledRule>;
export type PolicyIndex = KeyedIndex<CompiledPolicy>;

/** The value of an indexable attribute in a context (ports as numbers, the rest as strings). */
export function attributeValue(ctx: DecisionContext, attribute: IndexableAttribute): string | number {
  switch (attribute) {
    case 'source.principal': return ctx.source.principal;
    case 'source.namespace': return ctx.source.namespace;
    case 'source.serviceAccount': return ctx.source.serviceAccount;
    case 'source.trustDomain': return ctx.source.trustDomain;
    case 'source.ip': return ctx.source.ip;
    case 'destination.port': return ctx.destination.port;
    case 'destination.ip': return ctx.destination.ip;
    case 'destination.host': return ctx.destination.host;
    case 'destination.authority': return ctx.destination.authority;
  }
}

/** True when the context satisfies every key (each attribute equals one of the key's values). */
export function keysHold(keys: readonly IndexKey[], ctx: DecisionContext): boolean {
  for (const k of keys) {
    if (!k.values.includes(attributeValue(ctx, k.attribute))) return false;
  }
  return true;
}

const ATTRIBUTE_RANK = new Map<IndexableAttribute, number>(INDEXABLE_ATTRIBUTES.map((a, i) => [a, i]));

/**
 * Builds an index. `entries` must be sorted by ordinal. The key chosen for an entry is the one
 * whose values are shared by the fewest other entries (summed over its values), so a rule keyed by
 * both a unique principal and a common port is filed under the principal. Ties go to the key with
 * fewer values, then to the attribute listed first in INDEXABLE_ATTRIBUTES.
 */
export function buildIndex<T extends IndexEntry>(
  entries: readonly T[],
  keysOf: (e: T) => readonly IndexKey[],
): KeyedIndex<T> {
  const pairCount = new Map<string, number>();
  const pair = (a: string, v: string | number): string => `${a}\u0000${typeof v}\u0000${v}`;
  for (const e of entries) {
    for (const k of keysOf(e)) {
      for (const v of new Set(k.values)) pairCount.set(pair(k.attribute, v), (pairCount.get(pair(k.attribute, v)) ?? 0) + 1);
    }
  }
  const maps = new Map<IndexableAttribute, Map<string | number, T[]>>();
  const scan: T[] = [];
  let never = 0;
  for (const e of entries) {
    const keys = keysOf(e);
    if (keys.some((k) => k.values.length === 0)) {
      // `x in []`: the expression can never be true, so no context makes it a candidate.
      never++;
      continue;
    }
    let best: IndexKey | undefined;
    let bestCost = Infinity;
    for (const k of keys) {
      let cost = 0;
      for (const v of new Set(k.values)) cost += pairCount.get(pair(k.attribute, v)) ?? 0;
      if (
        best === undefined ||
        cost < bestCost ||
        (cost === bestCost && k.values.length < best.values.length) ||
        (cost === bestCost && k.values.length === best.values.length &&
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
    let byValue = maps.get(best.attribute);
    if (byValue === undefined) {
      byValue = new Map();
      maps.set(best.attribute, byValue);
    }
    for (const v of new Set(best.values)) {
      const list = byValue.get(v);
      if (list === undefined) byValue.set(v, [e]);
      else list.push(e); // entries arrive in ordinal order, so each list stays sorted
    }
  }
  return {
    maps: [...maps].map(([attribute, byValue]) => ({ attribute, byValue })),
    scan,
    all: entries,
    never,
  };
}

const EMPTY: readonly never[] = Object.freeze([]);

/**
 * The entries that may count for `ctx`, in ordinal order: map hits for the context's attribute
 * values plus the scan list. Each entry is filed under one attribute and a context has one value
 * per attribute, so no entry appears twice. Allocates only when two or more lists are non-empty.
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
  if (rest === undefined) return first;
  let merged = first;
  for (const list of rest) merged = mergeByOrdinal(merged, list);
  return merged;
}

/** Merges two ordinal-sorted lists (classic two-way merge; lists are short in practice). */
function mergeByOrdinal<T extends IndexEntry>(a: readonly T[], b: readonly T[]): T[] {
  const out: T[] = new Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x.ordinal <= y.ordinal) { out[k++] = x; i++; } else { out[k++] = y; j++; }
  }
  while (i < a.length) out[k++] = a[i++]!;
  while (j < b.length) out[k++] = b[j++]!;
  return out;
}

/** Describes an index for `/debug/policy` and the bench: how many entries are keyed vs scanned. */
export function describeIndex<T extends IndexEntry>(index: KeyedIndex<T>): {
  entries: number;
  scanned: number;
  never: number;
  keyed: Record<string, { values: number; entries: number }>;
} {
  const keyed: Record<string, { values: number; entries: number }> = {};
  for (const m of index.maps) {
    let n = 0;
    for (const l of m.byValue.values()) n += l.length;
    keyed[m.attribute] = { values: m.byValue.size, entries: n };
  }
  return { entries: index.all.length, scanned: index.scan.length, never: index.never, keyed };
}
