/**
 * A least-recently-used cache with a hard size bound: the one cache for values computed from
 * strings that recur (a CIDR or regex literal on every decision, a decision for the same context)
 * where the keys come from outside (a non-literal argument, a peer) and must not grow memory
 * without limit.
 */
export class BoundedCache<K, V> {
  readonly #max: number;
  // A Map iterates in insertion order: a hit is re-inserted, so the first key is the least recent.
  readonly #map = new Map<K, V>();

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`BoundedCache: max must be an integer >= 1, got ${max}`);
    this.#max = max;
  }

  /** The value for `key`, which becomes the most recently used. */
  get(key: K): V | undefined {
    const map = this.#map;
    const v = map.get(key);
    if (v !== undefined) {
      map.delete(key);
      map.set(key, v);
    }
    return v;
  }

  /** Stores and returns `value`; at the bound, the least recently used entry goes. */
  set(key: K, value: V): V {
    const map = this.#map;
    if (!map.delete(key) && map.size >= this.#max) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    map.set(key, value);
    return value;
  }

  get size(): number {
    return this.#map.size;
  }

  clear(): void {
    this.#map.clear();
  }
}
