/**
 * A fixed-size quantile sketch for durations (log-spaced buckets, the DDSketch idea): every value
 * lands in bucket ceil(log_gamma(v)), so any quantile is returned within `relativeAccuracy` of
 * the true value while memory stays one Float64Array whatever the number of records.
 */

/** Relative accuracy of reported quantiles (1%). */
const RELATIVE_ACCURACY = 0.01;
const GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY);
const LOG_GAMMA = Math.log(GAMMA);
/** Smallest positive value tracked separately from zero (1 µs when values are milliseconds). */
const MIN_VALUE = 1e-3;
/** Largest value with its own bucket (about 11.6 days in ms); larger ones clamp to the top bucket. */
const MAX_VALUE = 1e12;
const OFFSET = Math.floor(Math.log(MIN_VALUE) / LOG_GAMMA);
const BUCKETS = Math.ceil(Math.log(MAX_VALUE) / LOG_GAMMA) - OFFSET + 1;

export class QuantileSketch {
  private readonly counts = new Float64Array(BUCKETS);
  private zeros = 0;
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  /** Adds one non-negative value; negative and non-finite values are ignored. */
  add(value: number): void {
    if (!(value >= 0) || !Number.isFinite(value)) return;
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
    if (value < MIN_VALUE) {
      this.zeros++;
      return;
    }
    let i = Math.ceil(Math.log(value) / LOG_GAMMA) - OFFSET;
    if (i >= BUCKETS) i = BUCKETS - 1;
    this.counts[i]!++;
  }

  /** The q-quantile (0..1), within 1% of the exact value; null when empty. */
  quantile(q: number): number | null {
    if (this.count === 0) return null;
    const rank = Math.max(0, Math.min(this.count - 1, Math.ceil(q * this.count) - 1));
    if (rank < this.zeros) return 0;
    let seen = this.zeros;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen > rank) {
        // Bucket i holds (gamma^(k-1), gamma^k]; its midpoint (in the log sense) bounds the error.
        const k = i + OFFSET;
        const value = (2 * Math.pow(GAMMA, k)) / (GAMMA + 1);
        return Math.min(Math.max(value, this.min), this.max);
      }
    }
    return this.max;
  }
}
