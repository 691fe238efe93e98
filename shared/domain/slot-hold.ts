import type { Job } from "./job.ts";

/**
 * Whether a job's capacity slot may be given back. The slot stands for one generation the provider
 * counts against the account's concurrency; marking the job (cancel, deadline, unknown outcome) does
 * not stop that generation (ModelsLab has no cancel; a worker runs what it took). So the slot follows
 * the provider's attempt, not the job's status:
 * - `owned`: the job is `processing`; its own flow (finalize, a rejection, the reconciler's deadline)
 *   ends the attempt and decides;
 * - `provider-may-run`: the job left `processing` while its provider attempt may still be generating
 *   (cancelled, timed out, or with an unknown outcome): held until a result for that attempt arrives,
 *   a fetch says the provider is done with it, or `until` (the attempt's start plus the provider's own
 *   run limit) has passed;
 * - `free`: nothing at the provider counts against the account for this job (no job, never posted,
 *   refused by the provider, or its result already in).
 */
export type SlotHold = { kind: "owned" } | { kind: "provider-may-run"; until: number } | { kind: "free" };

export function slotHold(job: Job | null | undefined, now: Date, providerRunLimitSeconds: number): SlotHold {
  if (!job) return { kind: "free" };
  if (job.status === "processing") return { kind: "owned" };
  const attempt = job.attempts.at(-1);
  if (!attempt) return { kind: "free" };
  // Cancel and the deadline close a pending attempt as `cancelled` / `timed_out`; an unknown outcome
  // closes it `failed` with its own job error. Any other closed attempt was answered by the provider
  // (a rejection, or a result that moved the job on to storing).
  const mayRun =
    attempt.outcome === "cancelled" ||
    attempt.outcome === "timed_out" ||
    (attempt.outcome === "failed" && job.error?.code === "PROVIDER_OUTCOME_UNKNOWN");
  if (!mayRun) return { kind: "free" };
  const until = Date.parse(attempt.started_at) + providerRunLimitSeconds * 1000;
  return now.getTime() >= until ? { kind: "free" } : { kind: "provider-may-run", until };
}

/** True when the slot may be released now (see `slotHold`). */
export const maySlotBeReleased = (
  job: Job | null | undefined,
  now: Date,
  providerRunLimitSeconds: number,
): boolean => slotHold(job, now, providerRunLimitSeconds).kind === "free";
