import { StaleWriteError } from "../domain/errors.ts";
import type { Clock, JobStore, Queue } from "../ports/index.ts";
import type { DispatchMessage } from "../schemas/messages.ts";

export interface ReconcileDeps {
  jobs: JobStore;
  jobsQueue: Queue;
  clock: Clock;
  settings: { queuedResendAfterSeconds: number; batchSize: number };
}

export interface ReconcileReport {
  examined: number;
  requeued: number;
  errors: number;
}

/**
 * The safety net behind at-least-once queues: every non-terminal job carries a `dueAt`, and a job
 * still queued past it has its dispatch message sent again (a lost send, a purged queue, an emulator
 * restart). Dispatch is idempotent, so a duplicate message is harmless.
 */
export async function reconcile(deps: ReconcileDeps): Promise<ReconcileReport> {
  const now = deps.clock.now();
  const due = await deps.jobs.findDue(now, deps.settings.batchSize);
  const report: ReconcileReport = { examined: due.length, requeued: 0, errors: 0 };
  for (const job of due) {
    if (job.status !== "queued") continue;
    try {
      // Push dueAt first: if the send then fails, the next run tries again.
      const updated = await deps.jobs.update(job, {
        dueAt: now.getTime() + deps.settings.queuedResendAfterSeconds * 1000,
      });
      const message: DispatchMessage = { jobId: updated.id };
      await deps.jobsQueue.send(message);
      report.requeued++;
    } catch (error) {
      if (!(error instanceof StaleWriteError)) report.errors++;
    }
  }
  return report;
}
