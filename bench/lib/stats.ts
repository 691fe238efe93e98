/** Latency statistics for benchmarks. All durations are milliseconds. */

export interface LatencySummary {
  count: number;
  /** Wall-clock time of the whole run, first start to last finish. */
  wallMs: number;
  /** Completed operations per second of wall-clock time. */
  perSecond: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * The q-quantile (0..1) of ascending-sorted samples by the nearest-rank method: the smallest sample
 * with at least q of all samples at or below it. NaN for no samples.
 */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be within 0..1, got ${q}`);
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1] as number;
}

export function summarize(samplesMs: readonly number[], wallMs: number): LatencySummary {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const count = sorted.length;
  const total = sorted.reduce((sum, x) => sum + x, 0);
  return {
    count,
    wallMs,
    perSecond: wallMs > 0 ? (count * 1000) / wallMs : Number.NaN,
    minMs: sorted[0] ?? Number.NaN,
    meanMs: count > 0 ? total / count : Number.NaN,
    p50Ms: percentile(sorted, 0.5),
    p90Ms: percentile(sorted, 0.9),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted[count - 1] ?? Number.NaN,
  };
}
