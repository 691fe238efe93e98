import { describe, expect, it } from "vitest";
import { busySlotMs, maxInFlight, tenantJobCounts, utilisation } from "../../bench/lib/admission.ts";
import { parseArgs, UsageError } from "../../bench/lib/args.ts";
import { percentile } from "../../bench/lib/stats.ts";

describe("admission figures of the pipeline bench", () => {
  // Two slots over 0..10 s: one busy 0..4 and 6..10, the other 2..8 (an overlap 2..4 and 6..8).
  const intervals = [
    { startMs: 0, endMs: 4_000 },
    { startMs: 2_000, endMs: 8_000 },
    { startMs: 6_000, endMs: 10_000 },
  ];

  it("integrates the number in flight over the window, clipping intervals to it", () => {
    expect(busySlotMs(intervals, 0, 10_000)).toBe(14_000);
    expect(busySlotMs(intervals, 3_000, 7_000)).toBe(1_000 + 4_000 + 1_000);
    expect(busySlotMs(intervals, 10_000, 20_000)).toBe(0);
    expect(busySlotMs([], 0, 1_000)).toBe(0);
  });

  it("gives utilisation as busy slot time over limit × window", () => {
    expect(utilisation(intervals, 2, 0, 10_000)).toBeCloseTo(0.7, 10);
    // One slot busy all along out of four: a quarter of what was paid for.
    expect(utilisation([{ startMs: 0, endMs: 5_000 }], 4, 0, 5_000)).toBe(0.25);
    expect(utilisation(intervals, 2, 5_000, 5_000)).toBeNaN();
    expect(utilisation(intervals, 0, 0, 10_000)).toBeNaN();
  });

  it("finds the most in flight at once, an end and a start at the same instant not overlapping", () => {
    expect(maxInFlight(intervals)).toBe(2);
    expect(
      maxInFlight([
        { startMs: 0, endMs: 1_000 },
        { startMs: 1_000, endMs: 2_000 },
      ]),
    ).toBe(1);
    expect(
      maxInFlight([
        { startMs: 0, endMs: 3_000 },
        { startMs: 1_000, endMs: 3_000 },
        { startMs: 2_000, endMs: 2_500 },
      ]),
    ).toBe(3);
    expect(maxInFlight([])).toBe(0);
    expect(maxInFlight([{ startMs: 5, endMs: 5 }])).toBe(0);
  });

  it("splits the jobs: the noisy tenant 20 times each quiet one's, every job placed", () => {
    expect(tenantJobCounts(200, 1)).toEqual([200]);
    expect(tenantJobCounts(200, 2)).toEqual([190, 10]);
    expect(tenantJobCounts(168, 2)).toEqual([160, 8]);
    expect(tenantJobCounts(220, 3)).toEqual([200, 10, 10]);
    expect(tenantJobCounts(5, 3)).toEqual([3, 1, 1]);
    expect(() => tenantJobCounts(2, 3)).toThrow(RangeError);
    expect(() => tenantJobCounts(10, 0)).toThrow(RangeError);
  });

  it("takes percentiles by nearest rank", () => {
    const waits = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(waits, 0.5)).toBe(50);
    expect(percentile(waits, 0.99)).toBe(99);
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.5)).toBeNaN();
  });

  it("parses the admission options: a delay may be 0, the options given are named", () => {
    const spec = {
      integers: { jobs: 500, "provider-limit": 256, "provider-delay-ms": 0, tenants: 1 },
      flags: ["compare-unconstrained"],
      zeroAllowed: ["provider-delay-ms"],
    } as const;
    const args = parseArgs(["--provider-limit", "4", "--provider-delay-ms=0", "--tenants", "2"], spec);
    expect(args.integers).toEqual({ jobs: 500, "provider-limit": 4, "provider-delay-ms": 0, tenants: 2 });
    expect([...args.given].sort()).toEqual(["provider-delay-ms", "provider-limit", "tenants"]);
    expect(parseArgs([], spec).given.size).toBe(0);
    expect(() => parseArgs(["--provider-limit", "0"], spec)).toThrow(
      new UsageError("--provider-limit needs a positive integer, got 0"),
    );
    expect(() => parseArgs(["--provider-delay-ms", "-1"], spec)).toThrow(
      new UsageError("--provider-delay-ms needs a non-negative integer, got -1"),
    );
  });
});
