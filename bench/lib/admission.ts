/**
 * Figures of admission under a provider concurrency limit, computed from the simulator's record of
 * each generation's hold on an account slot (`SimulatorStats.generations`). Pure: no I/O.
 */

/** A slot held from `startMs` (inclusive) to `endMs` (exclusive), epoch ms. */
export interface Interval {
  startMs: number;
  endMs: number;
}

/**
 * The integral over [fromMs, toMs) of the number of intervals in flight: the provider's busy
 * slot-milliseconds in that window (an interval is clipped to the window).
 */
export function busySlotMs(intervals: readonly Interval[], fromMs: number, toMs: number): number {
  let busy = 0;
  for (const { startMs, endMs } of intervals) {
    const start = Math.max(startMs, fromMs);
    const end = Math.min(endMs, toMs);
    if (end > start) busy += end - start;
  }
  return busy;
}

/**
 * The share of the capacity paid for that was used: busy slot time over limit × window. 1 means every
 * slot was generating for the whole window; NaN for an empty window.
 */
export function utilisation(
  intervals: readonly Interval[],
  limit: number,
  fromMs: number,
  toMs: number,
): number {
  if (!(toMs > fromMs) || !(limit > 0)) return Number.NaN;
  return busySlotMs(intervals, fromMs, toMs) / (limit * (toMs - fromMs));
}

/**
 * The most intervals in flight at any instant. Intervals are half-open: one that ends when another
 * starts does not overlap it (a slot released and taken again in the same millisecond is one slot).
 */
export function maxInFlight(intervals: readonly Interval[]): number {
  const events: Array<[number, number]> = [];
  for (const { startMs, endMs } of intervals) {
    if (endMs <= startMs) continue;
    events.push([startMs, 1], [endMs, -1]);
  }
  // At equal times, ends (-1) before starts (+1).
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let current = 0;
  let most = 0;
  for (const [, delta] of events) {
    current += delta;
    most = Math.max(most, current);
  }
  return most;
}

/**
 * How `jobs` are split between `tenants`: the first (noisy) submits `ratio` times as many as each of
 * the others (quiet), every quiet tenant at least one job, the total exactly `jobs`. One tenant takes all.
 */
export function tenantJobCounts(jobs: number, tenants: number, ratio = 20): number[] {
  if (!Number.isSafeInteger(tenants) || tenants < 1)
    throw new RangeError(`tenants must be ≥ 1, got ${tenants}`);
  if (tenants === 1) return [jobs];
  const quiet = Math.max(1, Math.round(jobs / (ratio + tenants - 1)));
  const noisy = jobs - quiet * (tenants - 1);
  if (noisy < 1) throw new RangeError(`${jobs} jobs cannot be split between ${tenants} tenants`);
  return [noisy, ...Array.from({ length: tenants - 1 }, () => quiet)];
}
