import type { Attempt, AttemptOutcome, Job } from "../domain/job.ts";
import type { ProviderHandle } from "../ports/provider.ts";

/** Shared bookkeeping of a job's provider attempts, so every use case closes them the same way. */

export const currentAttempt = (job: Job): Attempt | undefined => job.attempts.at(-1);

/** The index of the job's current attempt (what result messages and callback URLs name); -1 before any. */
export const currentAttemptIndex = (job: Job): number => job.attempts.length - 1;

export function closeCurrentAttempt(job: Job, outcome: AttemptOutcome, at: Date, reason?: string): Attempt[] {
  return job.attempts.map((attempt, index) =>
    index === job.attempts.length - 1 && attempt.outcome === "pending"
      ? { ...attempt, outcome, ended_at: at.toISOString(), ...(reason && { reason: reason.slice(0, 500) }) }
      : attempt,
  );
}

export const retryableFailures = (job: Job): number =>
  job.attempts.filter((a) => a.outcome === "retried").length;

/**
 * Exponential backoff with equal jitter (half the ceiling fixed, half random: never a near-zero wait),
 * in whole seconds (SQS delays are whole seconds, at most 900).
 */
export function backoffSeconds(
  attempt: number,
  baseSeconds: number,
  maxSeconds: number,
  random = Math.random,
): number {
  const ceiling = Math.min(maxSeconds, baseSeconds * 2 ** Math.min(attempt, 20));
  return Math.max(1, Math.min(900, Math.round(ceiling / 2 + random() * (ceiling / 2))));
}

export interface ProviderState {
  /**
   * `submitting`: the attempt is written and its submission under way (or lost with its sender);
   * `accepted`: the provider holds it; `indeterminate`: the submission's outcome is unknown;
   * `finished`: its result is kept while the outputs are stored.
   */
  phase: "submitting" | "accepted" | "indeterminate" | "finished";
  providerId?: string | null;
  etaSeconds?: number | null;
  /** What the provider needs to look the request up again (`Provider.fetch`). */
  handle?: ProviderHandle;
  /** How many times the reconciler has polled this attempt. */
  checks?: number;
  /** The finished result (kept while storing, so a crashed finalize can be resumed). */
  result?: unknown;
  /** How many times the reconciler has handed a job stuck in storing back to finalize. */
  storingResumes?: number;
}

export const providerState = (job: Job): ProviderState =>
  (job.providerState ?? { phase: "submitting" }) as unknown as ProviderState;
