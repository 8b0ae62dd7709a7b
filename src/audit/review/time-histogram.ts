/**
 * Decisions over time with automatically sized buckets, in one pass and bounded memory: buckets
 * start at one second and widen along a ladder of divisible widths (1s, 5s, 10s, 30s, 1m, ...,
 * 1d, 7d) whenever the covered range would need more than `maxBuckets`, merging counts exactly.
 * Records may arrive out of order (several files, several replicas).
 */

const WIDTHS_MS = [
  1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000,
  43_200_000, 86_400_000, 604_800_000,
];

export interface TimeBucket {
  /** Bucket start, RFC 3339. */
  start: string;
  startMs: number;
  allow: number;
  deny: number;
}

export interface TimeHistogramResult {
  bucketMs: number;
  buckets: TimeBucket[];
}

export class TimeHistogram {
  private widthIndex = 0;
  private readonly buckets = new Map<number, { allow: number; deny: number }>();
  private minKey = Infinity;
  private maxKey = -Infinity;
  constructor(private readonly maxBuckets = 60) {}

  add(timeMs: number, verdict: 'allow' | 'deny'): void {
    if (!Number.isFinite(timeMs)) return;
    let key = Math.floor(timeMs / WIDTHS_MS[this.widthIndex]!);
    while (
      (key < this.minKey ? this.maxKey - key : key - this.minKey) + 1 > this.maxBuckets &&
      this.minKey !== Infinity &&
      this.widthIndex < WIDTHS_MS.length - 1
    ) {
      this.widen();
      key = Math.floor(timeMs / WIDTHS_MS[this.widthIndex]!);
    }
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { allow: 0, deny: 0 };
      this.buckets.set(key, b);
      if (key < this.minKey) this.minKey = key;
      if (key > this.maxKey) this.maxKey = key;
    }
    if (verdict === 'allow') b.allow++;
    else b.deny++;
  }

  private widen(): void {
    const from = WIDTHS_MS[this.widthIndex]!;
    this.widthIndex++;
    const to = WIDTHS_MS[this.widthIndex]!;
    const old = [...this.buckets];
    this.buckets.clear();
    this.minKey = Infinity;
    this.maxKey = -Infinity;
    for (const [k, v] of old) {
      const nk = Math.floor((k * from) / to);
      const b = this.buckets.get(nk);
      if (b) {
        b.allow += v.allow;
        b.deny += v.deny;
      } else this.buckets.set(nk, { ...v });
      if (nk < this.minKey) this.minKey = nk;
      if (nk > this.maxKey) this.maxKey = nk;
    }
  }

  /** Dense buckets from the first to the last record, empty ones included. */
  result(): TimeHistogramResult {
    const width = WIDTHS_MS[this.widthIndex]!;
    const buckets: TimeBucket[] = [];
    if (this.minKey === Infinity) return { bucketMs: width, buckets };
    for (let k = this.minKey; k <= this.maxKey; k++) {
      const b = this.buckets.get(k) ?? { allow: 0, deny: 0 };
      const startMs = k * width;
      buckets.push({ start: new Date(startMs).toISOString(), startMs, allow: b.allow, deny: b.deny });
    }
    return { bucketMs: width, buckets };
  }
}
