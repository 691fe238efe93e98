import type { Job, JobStatus, QueuePlace } from "./types.ts";

/** What `jobs.wait` reports after each read of the job. */
export interface Progress {
  job: Job;
  status: JobStatus;
  /** Where the job stands in the admission queue, when it is queued and the API shows it. */
  queue: QueuePlace | null;
  /** Provider attempts so far (a retried or fallen-back job has several). */
  attempts: number;
  /** Since the wait began. */
  elapsedMs: number;
}

const isCount = (value: unknown): value is number =>
  typeof value === "number" && Number.isInteger(value) && value >= 0;

/**
 * The job's queue place. Read defensively: not every deployment shows one, and only queued jobs have it
 * (`queue: { position, eta_seconds }`).
 */
export function queuePlaceOf(job: Job): QueuePlace | null {
  const queue = (job as { queue?: unknown }).queue;
  if (typeof queue !== "object" || queue === null) return null;
  const { position, eta_seconds: eta } = queue as { position?: unknown; eta_seconds?: unknown };
  if (!isCount(position)) return null;
  return { position, etaSeconds: typeof eta === "number" && Number.isFinite(eta) && eta >= 0 ? eta : null };
}

export const progressOf = (job: Job, elapsedMs: number): Progress => ({
  job,
  status: job.status,
  queue: queuePlaceOf(job),
  attempts: job.attempts.length,
  elapsedMs,
});

/** 75_000 → "1m15s"; under a minute, "42s" (tenths under ten seconds: "3.4s"). */
export function formatElapsed(ms: number): string {
  const seconds = Math.max(0, ms) / 1_000;
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

/** One line for a progress display: `job 01J… queued · #3 in queue (~40s) · attempt 1 · 12s`. */
export function formatProgress(progress: Progress): string {
  const parts = [`job ${progress.job.id}`, progress.status];
  if (progress.queue) {
    const eta =
      progress.queue.etaSeconds === null ? "" : ` (~${formatElapsed(progress.queue.etaSeconds * 1_000)})`;
    parts.push(`#${progress.queue.position} in queue${eta}`);
  }
  if (progress.attempts > 0) parts.push(`attempt ${progress.attempts}`);
  parts.push(formatElapsed(progress.elapsedMs));
  return parts.join(" · ");
}
