import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  canTransition,
  InvalidTransitionError,
  isTerminal,
  JOB_STATUSES,
  type Job,
  type JobStatus,
} from "../../shared/domain/job.ts";
import {
  DEFAULT_JOB_RULES,
  dueTime,
  type JobPatch,
  planJobChange,
  planNewJob,
} from "../../shared/domain/job-change.ts";
import { buildJob, FakeClock } from "../support/fakes.ts";

const clock = new FakeClock(new Date("2026-01-01T00:00:00.000Z"));
const T0 = clock.now();
const LATER = new Date(T0.getTime() + 5_000);
const NOW_S = Math.floor(LATER.getTime() / 1000);
const rules = { retentionSeconds: 7 * 86_400 };
const job = (overrides: Partial<Job> = {}) => buildJob(clock, overrides);

describe("planNewJob", () => {
  it("keeps a new unfinished job as it is, without an expiry", () => {
    const queued = job();
    expect(planNewJob(queued, LATER, rules)).toEqual({ job: queued });
  });

  it("stores a job created finished without dueAt, expiring after the retention period", () => {
    const done = job({ status: "cancelled", dueAt: T0.getTime() });
    expect(planNewJob(done, LATER, rules)).toEqual({
      job: { ...done, dueAt: null },
      expiresAt: NOW_S + 7 * 86_400,
    });
  });

  it("keeps a finished job due while its notification is pending", () => {
    const notifying = job({ status: "failed", notifyPending: true, dueAt: T0.getTime() });
    expect(planNewJob(notifying, LATER, rules).job.dueAt).toBe(T0.getTime());
  });
});

describe("planJobChange", () => {
  it("refuses a move the state machine does not allow, and checks none on a same-status update", () => {
    const queued = job();
    expect(() => planJobChange(queued, { to: "succeeded" }, LATER, rules)).toThrow(InvalidTransitionError);
    expect(() => planJobChange(queued, { to: "queued" }, LATER, rules)).toThrow(InvalidTransitionError);
    const done = job({ status: "succeeded", dueAt: null });
    expect(() => planJobChange(done, { to: "failed" }, LATER, rules)).toThrow(InvalidTransitionError);
    expect(planJobChange(done, { patch: {} }, LATER, rules).job.status).toBe("succeeded");
  });

  it("moves the status, bumps the version, applies the patch and stamps updatedAt", () => {
    const queued = job();
    const attempts: Job["attempts"] = [
      {
        provider: "modelslab",
        provider_id: null,
        started_at: T0.toISOString(),
        ended_at: null,
        outcome: "pending",
      },
    ];
    const plan = planJobChange(
      queued,
      { to: "processing", patch: { attempts, providerState: { phase: "submitting" }, dueAt: 42 } },
      LATER,
      rules,
    );
    expect(plan).toEqual({
      job: {
        ...queued,
        status: "processing",
        version: 2,
        updatedAt: LATER.toISOString(),
        attempts,
        providerState: { phase: "submitting" },
        dueAt: 42,
      },
      changed: expect.arrayContaining([
        "status",
        "version",
        "updatedAt",
        "attempts",
        "providerState",
        "dueAt",
      ]),
    });
    expect(plan.changed).toHaveLength(6);
  });

  it.each<[string, JobPatch, boolean]>([
    ["dueAt", { dueAt: 1 }, false],
    ["providerState", { providerState: { phase: "indeterminate" } }, false],
    ["notifyPending", { notifyPending: false }, false],
    ["attempts", { attempts: [] }, true],
    ["outputs", { outputs: [] }, true],
    ["error", { error: { code: "CANCELLED", message: "x" } }, true],
  ])("an update of %s moves updatedAt only if the client sees it change", (_, patch, visible) => {
    const processing = job({ status: "processing" });
    const { job: next } = planJobChange(processing, { patch }, LATER, rules);
    expect(next.updatedAt).toBe(visible ? LATER.toISOString() : processing.updatedAt);
    expect(next.version).toBe(processing.version + 1);
  });

  it("ignores patch fields left undefined, except providerState, which it clears", () => {
    const processing = job({ status: "processing", providerState: { phase: "indeterminate" }, dueAt: 9 });
    const plan = planJobChange(
      processing,
      { patch: { attempts: undefined, error: undefined, dueAt: undefined, providerState: undefined } },
      LATER,
      rules,
    );
    expect(plan.job).toEqual({ ...omit(processing, "providerState"), version: processing.version + 1 });
    expect([...plan.changed].sort()).toEqual(["providerState", "version"]);
  });

  it("drops the check time of a job that finishes, and sets its expiry", () => {
    const processing = job({ status: "processing", dueAt: T0.getTime() + 60_000 });
    const plan = planJobChange(processing, { to: "failed", patch: { dueAt: 5 } }, LATER, rules);
    // A check time without a pending notification is dropped too: nothing would act on it.
    expect(plan.job.dueAt).toBeNull();
    expect(plan.expiresAt).toBe(NOW_S + 7 * 86_400);
    expect(planJobChange(processing, { to: "cancelled" }, LATER, rules).job.dueAt).toBeNull();
  });

  it("keeps a finishing job due while its notification is pending (the outbox)", () => {
    const storing = job({ status: "storing", dueAt: T0.getTime() + 60_000 });
    const notifyAt = LATER.getTime() + 60_000;
    const plan = planJobChange(
      storing,
      { to: "succeeded", patch: { notifyPending: true, dueAt: notifyAt } },
      LATER,
      rules,
    );
    expect(plan.job).toMatchObject({ status: "succeeded", notifyPending: true, dueAt: notifyAt });
    // Pending without a time of its own: the job's check time does not carry over.
    const untimed = planJobChange(storing, { to: "succeeded", patch: { notifyPending: true } }, LATER, rules);
    expect(untimed.job.dueAt).toBeNull();
  });

  it("keeps a finished job due until the notification is settled, without a new expiry", () => {
    const notifying = job({ status: "succeeded", notifyPending: true, dueAt: 100 });
    const again = planJobChange(notifying, { patch: { dueAt: 200 } }, LATER, rules);
    expect(again.job.dueAt).toBe(200);
    expect(again.expiresAt).toBeUndefined();
    expect(planJobChange(notifying, { patch: {} }, LATER, rules).job.dueAt).toBe(100);
    const settled = planJobChange(notifying, { patch: { notifyPending: false } }, LATER, rules);
    expect(settled.job).toMatchObject({ notifyPending: false, dueAt: null });
  });

  it("lists exactly the fields whose value changed", () => {
    const processing = job({ status: "processing", dueAt: 7 });
    expect(planJobChange(processing, { patch: { dueAt: 7 } }, LATER, rules).changed).toEqual(["version"]);
    // An error written again as it was is not a change; the write still counts as client-visible.
    const rewritten = planJobChange(processing, { patch: { error: null } }, LATER, rules);
    expect(rewritten.changed).toEqual(["version", "updatedAt"]);
  });

  it("whatever the change, the stored dueAt is the job's due time and only finishing sets an expiry", () => {
    const status = fc.constantFrom<JobStatus>(...JOB_STATUSES);
    const patch = fc.record(
      {
        dueAt: fc.option(fc.nat(), { nil: undefined }).map((v) => (v === 0 ? null : v)),
        notifyPending: fc.option(fc.boolean(), { nil: undefined }),
        providerState: fc.option(fc.constant({ phase: "submitting" as const }), { nil: undefined }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(
        status,
        status,
        fc.boolean(),
        fc.option(fc.nat(), { nil: null }),
        fc.boolean(),
        patch,
        (from, to, sameStatus, dueAt, notifyPending, p) => {
          const before = job({ status: from, dueAt, notifyPending });
          const change = sameStatus ? { patch: p } : { to, patch: p };
          if (!sameStatus && !canTransition(from, to)) {
            expect(() => planJobChange(before, change, LATER, rules)).toThrow(InvalidTransitionError);
            return;
          }
          const plan = planJobChange(before, change, LATER, DEFAULT_JOB_RULES);
          expect(plan.job.version).toBe(before.version + 1);
          expect(plan.job.dueAt).toBe(dueTime(plan.job));
          const finishing = plan.job.status !== from && isTerminal(plan.job.status);
          expect(plan.expiresAt !== undefined).toBe(finishing);
          for (const field of Object.keys(plan.job) as (keyof Job)[]) {
            if (!plan.changed.includes(field)) expect(plan.job[field]).toBe(before[field]);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

function omit<T extends object, K extends keyof T>(value: T, key: K): Omit<T, K> {
  const { [key]: _, ...rest } = value;
  return rest;
}
