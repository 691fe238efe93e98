import type { Job } from "../domain/job.ts";
import { isTerminal } from "../domain/job.ts";
import type { Metrics } from "../ports/metrics.ts";

/** The route of a job's metrics: its last attempt's provider, `none` when it never started one. */
export const routeOf = (job: Pick<Job, "attempts">): string => job.attempts.at(-1)?.provider ?? "none";

/**
 * What one written transition of a job says about the product (shared/ports/metrics.ts), measured from
 * the job rows alone (times are the store's `updatedAt` and the attempts' own), so every use case that
 * moves a job is counted the same, once per transition written:
 * - `queued → processing`: SlotWait, from the job's creation (first attempt) or the end of the
 *   attempt that put it back in the queue, to the start of the new one;
 * - terminal: Jobs by outcome (and a failed job's error code) on its route; for a success also its
 *   end-to-end time, its last attempt's time at the provider, the time storing and the bytes stored.
 */
export function recordTransition(metrics: Metrics, before: Job, after: Job): void {
  const at = Date.parse(after.updatedAt);
  const provider = routeOf(after);
  if (before.status === "queued" && after.status === "processing") {
    const previous = before.attempts.at(-1);
    const queuedAt = Date.parse(previous?.ended_at ?? before.createdAt);
    if (Number.isFinite(queuedAt)) metrics.duration("SlotWait", at - queuedAt, { provider });
    return;
  }
  if (!isTerminal(after.status)) return;
  metrics.count("Jobs", {
    provider,
    outcome: after.status,
    ...(after.status === "failed" && after.error && { code: after.error.code }),
  });
  if (after.status !== "succeeded") return;
  metrics.duration("EndToEndTime", at - Date.parse(after.createdAt), { provider });
  const attempt = after.attempts.at(-1);
  if (attempt?.ended_at) {
    const ended = Date.parse(attempt.ended_at);
    metrics.duration("ProviderTime", ended - Date.parse(attempt.started_at), { provider });
    metrics.duration("StoringTime", at - ended, { provider });
  }
  const stored = after.outputs.filter((output) => output.bytes !== null);
  if (stored.length > 0) {
    metrics.bytes(
      "OutputBytes",
      stored.reduce((sum, output) => sum + (output.bytes ?? 0), 0),
      { provider },
    );
  }
}
