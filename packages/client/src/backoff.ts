/**
 * The client's waits, as pure functions: how long `jobs.wait` sleeps between two reads of a job, and
 * how long a retried call waits when the API answered 429 or 503.
 */

export interface PollBackoff {
  /** The first wait, in ms. */
  initialMs: number;
  /** No wait is longer, in ms. */
  maxMs: number;
  /** Each wait is the previous one times this. */
  factor: number;
  /** Each wait is shortened by up to this share of it at random, so that many waiters spread out. */
  jitter: number;
}

export const DEFAULT_POLL_BACKOFF: PollBackoff = { initialMs: 500, maxMs: 5_000, factor: 1.5, jitter: 0.2 };

/** The wait before read number `poll + 1` of a job (`poll` counts from 0); `random` is in [0, 1). */
export function pollDelayMs(poll: number, backoff: PollBackoff, random: number = Math.random()): number {
  const grown = backoff.initialMs * backoff.factor ** Math.max(0, poll);
  const capped = Math.min(backoff.maxMs, Number.isFinite(grown) ? grown : backoff.maxMs);
  return Math.round(capped * (1 - backoff.jitter * random));
}

export interface RetryPolicy {
  /** Retries after the first try; 0 never retries. */
  retries: number;
  /** The wait when the answer gave no Retry-After, in ms. */
  defaultDelayMs: number;
  /** A Retry-After longer than this is not waited for: the error is thrown at once. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 2, defaultDelayMs: 1_000, maxDelayMs: 30_000 };

/**
 * A Retry-After value (delta-seconds, or an HTTP date) as ms from `now`; null when absent or unreadable.
 * A date in the past is 0.
 */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | null {
  if (value === null || value === undefined) return null;
  const text = value.trim();
  if (/^\d{1,10}$/.test(text)) return Number(text) * 1_000;
  const at = Date.parse(text);
  if (Number.isNaN(at) || !/[A-Za-z]/.test(text)) return null;
  return Math.max(0, at - now);
}

/**
 * The wait before retry number `retry` (from 1), or null when the policy says not to retry: no retries
 * left, or the server asked for a wait longer than `maxDelayMs`.
 */
export function retryDelayMs(retry: number, retryAfterMs: number | null, policy: RetryPolicy): number | null {
  if (retry > policy.retries) return null;
  const delay = retryAfterMs ?? policy.defaultDelayMs * 2 ** (retry - 1);
  return delay > policy.maxDelayMs ? null : delay;
}
