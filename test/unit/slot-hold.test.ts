import { describe, expect, it } from "vitest";
import type { Attempt, Job, JobError } from "../../shared/domain/job.ts";
import { maySlotBeReleased, slotHold } from "../../shared/domain/slot-hold.ts";
import { buildJob, FakeClock } from "../support/fakes.ts";

const RUN_LIMIT = 600;
const clock = new FakeClock();
const started = clock.now();

const attempt = (outcome: Attempt["outcome"], provider: Attempt["provider"] = "modelslab"): Attempt => ({
  provider,
  provider_id: provider === "modelslab" ? "9001" : null,
  started_at: started.toISOString(),
  ended_at: outcome === "pending" ? null : started.toISOString(),
  outcome,
});

const job = (status: Job["status"], attempts: Attempt[], error: JobError | null = null): Job =>
  buildJob(clock, { status, attempts, error });

const at = (seconds: number) => new Date(started.getTime() + seconds * 1000);

describe("slotHold", () => {
  it("leaves a processing job's slot to its own flow", () => {
    expect(slotHold(job("processing", [attempt("pending")]), at(RUN_LIMIT * 2), RUN_LIMIT)).toEqual({
      kind: "owned",
    });
  });

  it.each([
    ["cancelled", "cancelled", null],
    ["failed (deadline)", "timed_out", { code: "DEADLINE_EXCEEDED", message: "late" }],
    ["failed (unknown outcome)", "failed", { code: "PROVIDER_OUTCOME_UNKNOWN", message: "?" }],
  ] as const)(
    "keeps the slot of a %s job until the provider's run limit has passed since the post",
    (_name, outcome, error) => {
      const status = outcome === "cancelled" ? "cancelled" : "failed";
      const held = job(status, [attempt(outcome)], error);
      const until = started.getTime() + RUN_LIMIT * 1000;
      expect(slotHold(held, at(1), RUN_LIMIT)).toEqual({ kind: "provider-may-run", until });
      expect(maySlotBeReleased(held, new Date(until - 1), RUN_LIMIT)).toBe(false);
      expect(maySlotBeReleased(held, new Date(until), RUN_LIMIT)).toBe(true);
    },
  );

  it("holds a worker's slot the same way: the fleet runs what it took", () => {
    const held = job("cancelled", [attempt("retried"), attempt("cancelled", "self-hosted")]);
    expect(slotHold(held, at(1), RUN_LIMIT)).toEqual({
      kind: "provider-may-run",
      until: started.getTime() + RUN_LIMIT * 1000,
    });
  });

  it.each([
    ["no job (gone)", undefined],
    ["a cancelled job never posted", job("cancelled", [])],
    ["a queued job back from a refused attempt", job("queued", [attempt("retried")])],
    ["a cancelled job whose earlier attempt was refused", job("cancelled", [attempt("retried")])],
    [
      "a job the provider rejected",
      job("failed", [attempt("failed")], { code: "PROVIDER_REJECTED", message: "no" }),
    ],
    ["a job whose result is in (storing)", job("storing", [attempt("succeeded")])],
    ["a job cancelled while storing", job("cancelled", [attempt("succeeded")])],
  ])("frees the slot at once for %s", (_name, subject) => {
    expect(slotHold(subject, at(1), RUN_LIMIT)).toEqual({ kind: "free" });
  });
});
