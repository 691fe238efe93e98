import { ConflictError, StaleWriteError } from "../domain/errors.ts";
import { isTerminal, type Job } from "../domain/job.ts";
import type { Clock, JobStore } from "../ports/index.ts";
import { getTenantJob } from "./read-jobs.ts";

const MAX_RACES = 5;

/**
 * Cancels a job that is not yet terminal. A concurrent state change (dispatch, finalize) makes the
 * conditional write fail; we re-read and decide again, so the answer always reflects the stored state.
 */
export async function cancelJob(
  deps: {
    jobs: JobStore;
    clock: Clock;
    /** Takes a waiting job's entry off its provider's waiting list (admission would skip it anyway). */
    leaveWaitingList?: (job: Job) => Promise<void>;
  },
  tenantId: string,
  id: string,
): Promise<Job> {
  for (let race = 0; ; race++) {
    const job = await getTenantJob(deps.jobs, tenantId, id);
    if (isTerminal(job.status)) {
      throw new ConflictError(
        "JOB_ALREADY_TERMINAL",
        `Job ${job.id} is already ${job.status} and cannot be cancelled.`,
      );
    }
    const endedAt = deps.clock.now().toISOString();
    const attempts = job.attempts.map((attempt) =>
      attempt.outcome === "pending"
        ? { ...attempt, outcome: "cancelled" as const, ended_at: endedAt }
        : attempt,
    );
    try {
      const cancelled = await deps.jobs.transition(job, "cancelled", {
        attempts,
        error: { code: "CANCELLED", message: "Cancelled by the client." },
        waiting: undefined,
      });
      // After the write: an admission that took the entry first finds the job cancelled and passes
      // its slot on; one that comes later finds no entry.
      if (job.waiting) await deps.leaveWaitingList?.(job);
      return cancelled;
    } catch (error) {
      if (!(error instanceof StaleWriteError) || race >= MAX_RACES) throw error;
    }
  }
}
