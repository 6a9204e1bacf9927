/**
 * A latency histogram in the spirit of HdrHistogram: log-spaced buckets with
 * 1 % relative precision from 1 µs to ~100 s, constant memory, mergeable,
 * O(1) to record. Percentiles are exact to the bucket (≤ 1 % error).
 */
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
const MAX_US = 100_000_000;
const BUCKETS = Math.ceil(Math.log(MAX_US) / LOG_GROWTH) + 1;

export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  count = 0;
  max = 0;
  min = Number.POSITIVE_INFINITY;
  sum = 0;

  /** Records one latency in milliseconds. */
  record(ms: number): void {
    const us = Math.min(Math.max(ms * 1000, 1), MAX_US);
    this.counts[Math.floor(Math.log(us) / LOG_GROWTH)]! += 1;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (ms < this.min) this.min = ms;
  }

  merge(other: LatencyHistogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.sum += other.sum;
    this.max = Math.max(this.max, other.max);
    this.min = Math.min(this.min, other.min);
  }

  /** The latency (ms) below which `p` percent of the recorded values fall. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    if (p >= 100) return this.max;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      // The bucket's upper edge, but never beyond what was actually seen.
      if (seen >= rank) return Math.min(GROWTH ** (i + 1) / 1000, this.max);
    }
    return this.max;
  }

  get mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  summary() {
    return {
      count: this.count,
      p50: this.percentile(50),
      p90: this.percentile(90),
      p99: this.percentile(99),
      p999: this.percentile(99.9),
      max: this.count === 0 ? 0 : this.max,
      mean: this.mean,
    };
  }
}
