import { canTransition, InvalidTransitionError, isTerminal, type Job, type JobStatus } from "./job.ts";

/**
 * The one place that decides what a job looks like after a change. Both job stores (DynamoDB and the
 * in-memory fake the unit tests use) call it and persist exactly the job it returns, guarded by the
 * status and version they were given; how they lay the job out (indexes, TTL attribute) is theirs.
 */

/** Fields a change may set, together with a new status or on its own. */
export type JobPatch = Partial<
  Pick<
    Job,
    | "attempts"
    | "outputs"
    | "seed"
    | "nsfwContentDetected"
    | "error"
    | "dueAt"
    | "providerState"
    | "notifyPending"
    | "waiting"
    | "deadlineAt"
  >
>;

export interface JobRules {
  /** How long a finished job is kept before the store may delete it. */
  retentionSeconds: number;
}

export const DEFAULT_RETENTION_DAYS = 30;

export const DEFAULT_JOB_RULES: JobRules = { retentionSeconds: DEFAULT_RETENTION_DAYS * 86_400 };

/** A change: a transition to `to`, or (without `to`) a same-status update. */
export interface JobChange {
  to?: JobStatus;
  patch?: JobPatch;
}

export interface PlannedJob {
  /** The job exactly as it is to be stored and handed back. */
  job: Job;
  /** Epoch seconds after which the store may delete the job; absent: keep the stored expiry (none, unless finished). */
  expiresAt?: number;
}

export interface PlannedChange extends PlannedJob {
  /**
   * The fields whose value differs from the job the change was planned on: what the store writes
   * (a field absent from `job` is removed). `version` is always one of them.
   */
  changed: readonly (keyof Job)[];
}

/**
 * When the reconciler must look at the job (epoch ms), or null when nothing is due: a terminal job is
 * due only while its notification is pending (the outbox), whatever `dueAt` it carries.
 */
export const dueTime = (job: Pick<Job, "status" | "dueAt" | "notifyPending">): number | null =>
  isTerminal(job.status) && job.notifyPending !== true ? null : job.dueAt;

/**
 * `updatedAt` is what a client sees change: states, attempts, outputs and what came with them, errors — not the
 * orchestrator's own bookkeeping (next check time, provider polling state, notification outbox).
 */
export const touchesPublicFields = (from: JobStatus, to: JobStatus, patch: JobPatch): boolean =>
  from !== to ||
  patch.attempts !== undefined ||
  patch.outputs !== undefined ||
  patch.seed !== undefined ||
  patch.nsfwContentDetected !== undefined ||
  patch.error !== undefined;

/** A new job as it is to be stored: a terminal one keeps no `dueAt` unless its notification is pending. */
export function planNewJob(job: Job, now: Date, rules: JobRules): PlannedJob {
  const stored: Job = { ...job, dueAt: dueTime(job) };
  return isTerminal(job.status) ? { job: stored, expiresAt: expiryFrom(now, rules) } : { job: stored };
}

/**
 * Plans one change of `job` (the job as read: its status and version are what the store's write is
 * conditional on). Throws InvalidTransitionError for a move the state machine does not allow.
 *
 * - the version goes up by one on every change; `updatedAt` moves only with a client-visible change;
 * - a patch field left `undefined` changes nothing, except `providerState` and `waiting`, which it clears;
 * - `dueAt`: the patch's when it gives one; a job entering a terminal state drops its own check time,
 *   and a terminal job keeps one only while its notification is pending (the outbox: the terminal
 *   transition sets `notifyPending` with the time to re-announce it, and the notify step clears it);
 * - a job entering a terminal state expires `rules.retentionSeconds` from now.
 */
export function planJobChange(job: Job, change: JobChange, now: Date, rules: JobRules): PlannedChange {
  const to = change.to ?? job.status;
  if (change.to !== undefined && !canTransition(job.status, change.to)) {
    throw new InvalidTransitionError(job.status, change.to);
  }
  const patch = change.patch ?? {};
  const finishing = to !== job.status && isTerminal(to);

  const next: Job = { ...job, status: to, version: job.version + 1 };
  if (touchesPublicFields(job.status, to, patch)) next.updatedAt = now.toISOString();
  if (patch.attempts !== undefined) next.attempts = patch.attempts;
  if (patch.outputs !== undefined) next.outputs = patch.outputs;
  if (patch.seed !== undefined) next.seed = patch.seed;
  if (patch.nsfwContentDetected !== undefined) next.nsfwContentDetected = patch.nsfwContentDetected;
  if (patch.error !== undefined) next.error = patch.error;
  if (patch.notifyPending !== undefined) next.notifyPending = patch.notifyPending;
  if (patch.providerState !== undefined) next.providerState = patch.providerState;
  else if ("providerState" in patch) delete next.providerState;
  if (patch.waiting !== undefined) next.waiting = patch.waiting;
  else if ("waiting" in patch) delete next.waiting;
  if (patch.deadlineAt !== undefined) next.deadlineAt = patch.deadlineAt;
  next.dueAt = dueTime({
    status: to,
    notifyPending: next.notifyPending,
    dueAt: patch.dueAt !== undefined ? patch.dueAt : finishing ? null : job.dueAt,
  });

  const fields = new Set([...Object.keys(job), ...Object.keys(next)] as (keyof Job)[]);
  const changed = [...fields].filter((field) => next[field] !== job[field]);
  return finishing ? { job: next, changed, expiresAt: expiryFrom(now, rules) } : { job: next, changed };
}

const expiryFrom = (now: Date, rules: JobRules): number =>
  Math.floor(now.getTime() / 1000) + rules.retentionSeconds;
