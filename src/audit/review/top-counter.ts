/**
 * Bounded frequency counting for "top denied identities/namespaces/destinations". Exact while the
 * number of distinct keys stays under `capacity` (the common case: workloads are few); beyond it,
 * the table is pruned to its `capacity / 2` largest entries (lossy counting), so memory stays
 * bounded even when an attacker sprays random principals, and the result says it is approximate.
 */
export class TopCounter {
  private readonly counts = new Map<string, number>();
  /** Largest count ever dropped by a prune: the error bound of every reported count. */
  private droppedMax = 0;
  constructor(private readonly capacity = 50_000) {}

  add(key: string, n = 1): void {
    const c = this.counts.get(key);
    if (c !== undefined) {
      this.counts.set(key, c + n);
      return;
    }
    this.counts.set(key, n);
    if (this.counts.size > this.capacity) this.prune();
  }

  /** The `limit` largest entries, ties broken by key so output is stable. */
  top(limit: number): { key: string; count: number }[] {
    return [...this.counts]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, limit)
      .map(([key, count]) => ({ key, count }));
  }

  /** Every entry (for small tables such as reasons or rules). */
  entries(): [string, number][] {
    return [...this.counts];
  }

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  get size(): number {
    return this.counts.size;
  }

  /** True once a prune happened: counts may be low by at most `errorBound`. */
  get approximate(): boolean {
    return this.droppedMax > 0;
  }

  get errorBound(): number {
    return this.droppedMax;
  }

  private prune(): void {
    const sorted = [...this.counts].sort((a, b) => b[1] - a[1]);
    const keep = Math.floor(this.capacity / 2);
    for (let i = keep; i < sorted.length; i++) {
      const [k, c] = sorted[i]!;
      if (c > this.droppedMax) this.droppedMax = c;
      this.counts.delete(k);
    }
  }
}
