import { describe, expect, it } from "vitest";
import { ProgressDisplay } from "../../packages/client/src/cli.ts";
import {
  formatElapsed,
  formatProgress,
  progressOf,
  queuePlaceOf,
} from "../../packages/client/src/progress.ts";
import type { Job } from "../../packages/client/src/types.ts";

const job = (overrides: Record<string, unknown> = {}): Job =>
  ({
    id: "01JOB",
    status: "queued",
    attempts: [],
    outputs: [],
    ...overrides,
  }) as unknown as Job;

const attempt = { route: "modelslab", provider_id: "1", started_at: "", ended_at: null, outcome: "pending" };

describe("progress of a wait", () => {
  it("formats elapsed time for a person", () => {
    expect([0, 3_449, 9_960, 42_000, 75_000, 3_600_000 + 120_000, -5].map(formatElapsed)).toEqual([
      "0.0s",
      "3.4s",
      "10.0s",
      "42s",
      "1m15s",
      "1h02m",
      "0.0s",
    ]);
  });

  it("shows the status, the queue place when the API gives one, the attempt and the elapsed time", () => {
    expect(formatProgress(progressOf(job(), 1_200))).toBe("job 01JOB · queued · 1.2s");
    expect(formatProgress(progressOf(job({ queue: { position: 3, eta_seconds: 40 } }), 12_000))).toBe(
      "job 01JOB · queued · #3 in queue (~40s) · 12s",
    );
    expect(formatProgress(progressOf(job({ queue: { position: 1, eta_seconds: null } }), 0))).toBe(
      "job 01JOB · queued · #1 in queue · 0.0s",
    );
    expect(
      formatProgress(progressOf(job({ status: "processing", attempts: [attempt, attempt] }), 65_000)),
    ).toBe("job 01JOB · processing · attempt 2 · 1m05s");
  });

  it("reads the queue place defensively: absent, null or malformed is no place", () => {
    expect(queuePlaceOf(job())).toBeNull();
    expect(queuePlaceOf(job({ queue: null }))).toBeNull();
    expect(queuePlaceOf(job({ queue: { position: "3" } }))).toBeNull();
    expect(queuePlaceOf(job({ queue: { position: -1, eta_seconds: 4 } }))).toBeNull();
    expect(queuePlaceOf(job({ queue: { position: 2, eta_seconds: -4 } }))).toEqual({
      position: 2,
      etaSeconds: null,
    });
    expect(queuePlaceOf(job({ queue: { position: 0, eta_seconds: 7 } }))).toEqual({
      position: 0,
      etaSeconds: 7,
    });
  });
});

describe("the progress display", () => {
  const sink = () => {
    const written: string[] = [];
    return { written, write: (text: string) => written.push(text) };
  };

  it("rewrites one line on a terminal, keeping the elapsed time current between reads", () => {
    const out = sink();
    let now = 1_000;
    const display = new ProgressDisplay(out, true, () => now);
    display.update(progressOf(job(), 500));
    now = 3_000;
    display.tick();
    display.update(progressOf(job({ status: "succeeded" }), 2_600));
    display.finish();
    expect(out.written).toEqual([
      "\r\x1b[2Kjob 01JOB · queued · 0.5s",
      "\r\x1b[2Kjob 01JOB · queued · 2.5s",
      "\r\x1b[2Kjob 01JOB · succeeded · 2.6s",
      "\n",
    ]);
  });

  it("prints a plain line per change elsewhere, not one per read", () => {
    const out = sink();
    const display = new ProgressDisplay(out, false);
    display.update(progressOf(job(), 100));
    display.update(progressOf(job(), 600));
    display.tick();
    display.update(progressOf(job({ status: "processing", attempts: [attempt] }), 1_100));
    display.update(progressOf(job({ status: "processing", attempts: [attempt] }), 1_600));
    display.update(progressOf(job({ status: "succeeded", attempts: [attempt] }), 2_100));
    display.finish();
    expect(out.written).toEqual([
      "job 01JOB · queued · 0.1s\n",
      "job 01JOB · processing · attempt 1 · 1.1s\n",
      "job 01JOB · succeeded · attempt 1 · 2.1s\n",
    ]);
  });
});
