import { describe, expect, it } from "vitest";
import {
  assertTransition,
  canTransition,
  InvalidTransitionError,
  isTerminal,
  JOB_STATUSES,
  type JobStatus,
} from "../../shared/domain/job.ts";

// The expected table, written out independently of the implementation's.
const ALLOWED = new Set([
  "queued>processing",
  "queued>failed",
  "queued>cancelled",
  "processing>queued",
  "processing>storing",
  "processing>failed",
  "processing>cancelled",
  "storing>succeeded",
  "storing>failed",
  "storing>cancelled",
]);

describe("job state machine", () => {
  const pairs = JOB_STATUSES.flatMap((from) =>
    JOB_STATUSES.map((to) => [from, to] as [JobStatus, JobStatus]),
  );

  it.each(pairs)("%s → %s follows the transition table", (from, to) => {
    const allowed = ALLOWED.has(`${from}>${to}`);
    expect(canTransition(from, to)).toBe(allowed);
    if (allowed) expect(() => assertTransition(from, to)).not.toThrow();
    else expect(() => assertTransition(from, to)).toThrow(InvalidTransitionError);
  });

  it("has no way out of a terminal state", () => {
    for (const status of JOB_STATUSES.filter(isTerminal)) {
      expect(JOB_STATUSES.some((to) => canTransition(status, to))).toBe(false);
    }
    expect(JOB_STATUSES.filter(isTerminal)).toEqual(["succeeded", "failed", "cancelled"]);
  });

  it("reaches succeeded only through storing", () => {
    expect(JOB_STATUSES.filter((from) => canTransition(from, "succeeded"))).toEqual(["storing"]);
  });
});
