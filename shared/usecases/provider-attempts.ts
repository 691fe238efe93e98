import type { Attempt, AttemptOutcome, Job, ProviderState } from "../domain/job.ts";

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

export type { ProviderState } from "../domain/job.ts";

/** The current attempt's provider state; a job without one has not reached the provider yet. */
export const providerState = (job: Job): ProviderState => job.providerState ?? { phase: "submitting" };

/** How many times the reconciler has looked at this attempt (phases it does not poll count none). */
export const checksOf = (state: ProviderState): number => ("checks" in state ? (state.checks ?? 0) : 0);

/** The state with the reconciler's looks counted; phases it does not poll are returned as they are. */
export function withChecks(state: ProviderState, checks: number): ProviderState {
  switch (state.phase) {
    case "submitting":
    case "accepted":
    case "indeterminate":
      return { ...state, checks };
    default:
      return state;
  }
}
