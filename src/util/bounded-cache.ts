/**
 * The one bounded cache: least recently used, with a hard size bound, for values computed from
 * strings that recur (a CIDR or regex literal on every decision, a decision for the same context,
 * a peer certificate's identity) where the keys come from outside (a non-literal argument, a peer)
 * and must not grow memory without limit. A thin face over `lru-cache` (the project's chosen LRU:
 * well kept and fast on the decision path) whose `set` returns the value, so a miss reads
 * `return cache.set(key, compute(key))`.
 */
import { LRUCache } from 'lru-cache';

export class BoundedCache<K extends {}, V extends {}> {
  readonly #lru: LRUCache<K, V>;

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`BoundedCache: max must be an integer >= 1, got ${max}`);
    this.#lru = new LRUCache<K, V>({ max });
  }

  /** The value for `key`, which becomes the most recently used. */
  get(key: K): V | undefined {
    return this.#lru.get(key);
  }

  /** Stores and returns `value`; at the bound, the least recently used entry goes. */
  set(key: K, value: V): V {
    this.#lru.set(key, value);
    return value;
  }

  get size(): number {
    return this.#lru.size;
  }

  clear(): void {
    this.#lru.clear();
  }
}
