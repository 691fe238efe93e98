import { DEFAULT_CONCURRENCY_KEY, laneShare } from "../domain/admission.ts";
import { StaleWriteError } from "../domain/errors.ts";
import type { Job, JobError } from "../domain/job.ts";
import type { ProviderId } from "../domain/providers.ts";
import type { Clock, JobStore, Queue, WaitingEntry } from "../ports/index.ts";
import type { Metrics } from "../ports/metrics.ts";
import type { ProviderBinding, Providers } from "../ports/provider.ts";
import type { AdmissionMessage, DispatchMessage, ResultMessage } from "../schemas/messages.ts";
import {
  enqueueJob,
  MAX_LANES,
  mayStartPast,
  queuePosition,
  releaseAndAdmit,
  waitBoundOf,
} from "./admission.ts";
import { honoursRequest, releaseUnlessHeld, routeToFallback } from "./fallback-routing.ts";
import { startAttempt } from "./start-attempt.ts";

export interface DispatchSettings {
  callbackBaseUrl: string;
  callbackSecret: string;
  /** The reconciler first looks at eta + this margin (the callback usually comes first). */
  checkMarginSeconds: number;
  /** Backoff after a retryable provider rejection (429, 5xx) without a retry_after. */
  retryBaseSeconds: number;
  retryMaxSeconds: number;
  /** Retryable rejections after which the job fails instead of trying again. */
  maxRetryableFailures: number;
  queuedResendAfterSeconds: number;
}

export interface DispatchDeps {
  jobs: JobStore;
  /** Every provider of the deployment with its gate and breaker, and how `auto` jobs are routed. */
  providers: Providers;
  jobsQueue: Queue<DispatchMessage>;
  admissionsQueue: Queue<AdmissionMessage>;
  resultsQueue: Queue<ResultMessage>;
  clock: Clock;
  settings: DispatchSettings;
  /** Presigns a stored input (s3://bucket/key in the request) for the provider to fetch. */
  presignInput?: (bucket: string, key: string) => Promise<string>;
  metrics?: Metrics;
  log?: (message: string, data: Record<string, unknown>) => void;
}

export type DispatchOutcome =
  | "ignored"
  | "waiting"
  | "accepted"
  | "done"
  | "retrying"
  | "failed"
  | "indeterminate"
  | "fallback";

/**
 * Moves one queued job to a provider: the provider's capacity slot first, then `queued → processing`
 * with a new attempt by a conditional write, then the submission (shared/usecases/attempt-outcomes.ts).
 * The job row is the truth: a duplicate or stale message finds the job no longer queued and does
 * nothing, so nothing is ever submitted twice because SQS delivered twice.
 *
 * A job that finds the gate full waits in the provider's waiting list (shared/usecases/admission.ts)
 * with no message: a release admits it, and its message (`admittedBy`) starts it on the slot taken on
 * its behalf. A job asking for one provider goes there or waits for it. An `auto` job goes to the
 * primary provider and moves to the fallback when the primary's breaker is open, when its estimated
 * start is past its wait bound, or while another dispatcher probes the half-open breaker.
 */
export async function dispatchJob(deps: DispatchDeps, message: DispatchMessage): Promise<DispatchOutcome> {
  const { jobs, providers, clock } = deps;
  const job = await jobs.get(message.jobId);
  const admittedOn = message.admittedBy === undefined ? undefined : providers.get(message.admittedBy);
  if (job?.status !== "queued") {
    // An admission for a job that moved on (cancelled while waiting, a duplicate): its slot goes to the next.
    if (admittedOn && job) await releaseUnlessHeld(deps, job, admittedOn);
    else if (admittedOn) await releaseAndAdmit(deps, admittedOn, message.jobId);
    return "ignored";
  }
  const now = clock.now();

  if (now.getTime() >= waitBoundOf(job)) {
    if (job.waiting) await providers.get(job.waiting.provider)?.waiting.remove(job.waiting);
    await failQueued(deps, job, waitBoundError(job));
    if (admittedOn) await releaseAndAdmit(deps, admittedOn, job.id);
    return "failed";
  }
  const target = admittedOn?.provider.id ?? (job.provider === "auto" ? providers.auto.primary : job.provider);
  const binding = providers.get(target);
  const fallbackId = job.provider === "auto" ? providers.auto.fallback : null;
  // A pinned job never falls back; nor does an `auto` job whose fallback this deployment lacks, or
  // cannot honour every parameter of: that one waits for its primary as a pinned job does.
  const canFallBack =
    fallbackId !== null &&
    fallbackId !== target &&
    providers.get(fallbackId) !== undefined &&
    honoursRequest(providers.get(fallbackId), job);
  if (!admittedOn && job.waiting) {
    // Already waiting: its admission sends the message that starts it. This one is a duplicate, or the
    // reconciler's look at an `auto` job that might start past its wait bound (the sweep's overflow).
    const waitingOn = providers.get(job.waiting.provider);
    if (!canFallBack || !waitingOn || job.waiting.provider !== target) return "waiting";
    return overflowIfLate(deps, job, waitingOn, { ...job.waiting, jobId: job.id }, now);
  }
  const toFallback = async (reason: string): Promise<DispatchOutcome> => {
    const routed = await routeToFallback(deps, job, reason);
    if (admittedOn && routed !== "ignored") await releaseAndAdmit(deps, admittedOn, job.id);
    if (routed !== "full") return routed;
    // The fallback is full too: wait in its list for its next free slot.
    const fallback = providers.get(fallbackId as ProviderId);
    if (!fallback) return "ignored";
    return (await enqueueJob(deps, job, fallback)).outcome;
  };

  if (!binding) {
    if (canFallBack) return toFallback(`no ${target} provider in this deployment`);
    await failQueued(deps, job, providers.unavailable(target));
    return "failed";
  }

  const breaker = canFallBack ? await binding.breaker?.state(now) : undefined;
  if (breaker === "open") return toFallback(`${target} circuit open`);

  // An admitted job's slot was taken on its behalf: no second look at the gate.
  const owner = { tenant: job.tenantId, key: job.concurrencyKey ?? DEFAULT_CONCURRENCY_KEY };
  if (!admittedOn && !(await binding.gate.tryAcquire(job.id, now, owner))) {
    const { outcome, entry, gate } = await enqueueJob(deps, job, binding);
    if (outcome !== "waiting" || !canFallBack) return outcome;
    if (!gate) return "waiting";
    const share = laneShare(entry, await binding.waiting.lanes(MAX_LANES));
    if (!mayStartPast(gate, share, now.getTime(), waitBoundOf(job))) return "waiting";
    return overflowIfLate(deps, job, binding, entry, now);
  }
  let probe = false;
  if (breaker === "half-open") {
    // One dispatcher probes the provider; everyone else keeps going to the fallback meanwhile.
    probe = (await binding.breaker?.claimProbe(now)) ?? false;
    if (!probe) {
      if (!admittedOn) await releaseAndAdmit(deps, binding, job.id);
      return toFallback(`${target} circuit half-open (a probe is in flight)`);
    }
  }
  return startWithSlot(deps, job, binding, probe);
}

/**
 * An `auto` job waiting on `binding` whose estimated start is past its wait bound goes to the fallback
 * instead (its entry taken back first: an admission meanwhile wins). One still on time gets a look by
 * the reconciler half-way to its wait bound (the sweep's overflow check), when that is worth one.
 */
async function overflowIfLate(
  deps: DispatchDeps,
  job: Job,
  binding: ProviderBinding,
  entry: WaitingEntry,
  now: Date,
): Promise<DispatchOutcome> {
  const waitBound = waitBoundOf(job);
  const estimate = await queuePosition(binding, {
    ...job,
    waiting: { ...entry, provider: binding.provider.id },
  });
  if (estimate === null || estimate.etaSeconds === null) return "waiting";
  if (now.getTime() + estimate.etaSeconds * 1000 <= waitBound) {
    if (waitBound - now.getTime() > SWEEP_CHECK_MIN_MS) {
      const halfway = Math.round(now.getTime() + (waitBound - now.getTime()) / 2);
      const current = await deps.jobs.get(job.id);
      if (current?.status === "queued" && current.waiting?.sortKey === entry.sortKey) {
        await deps.jobs.update(current, { dueAt: halfway }).catch((error) => {
          if (!(error instanceof StaleWriteError)) throw error;
        });
      }
    }
    return "waiting";
  }
  if (!(await binding.waiting.remove(entry))) return "waiting"; // admitted meanwhile
  const current = await deps.jobs.get(job.id);
  if (current?.status !== "queued") return "ignored";
  const routed = await routeToFallback(
    deps,
    current,
    `no ${binding.provider.id} capacity before the wait bound`,
  );
  if (routed !== "full") return routed;
  await binding.waiting.restore(entry);
  return "waiting";
}

/** Below this much time left before its wait bound, a waiting job gets no further overflow look. */
const SWEEP_CHECK_MIN_MS = 60_000;

/** `queued → processing` on `binding`, whose slot the job holds; the slot goes back if someone else moved the job. */
async function startWithSlot(
  deps: DispatchDeps,
  job: Job,
  binding: ProviderBinding,
  probe: boolean,
): Promise<DispatchOutcome> {
  const outcome = await startAttempt(deps, job, binding, { probe });
  // If another dispatcher took it on this provider, the slot (keyed by job id) is theirs now.
  if (outcome === "ignored") await releaseUnlessHeld(deps, job, binding);
  return outcome;
}

async function failQueued(deps: DispatchDeps, job: Job, error: JobError): Promise<void> {
  try {
    await deps.jobs.transition(job, "failed", { error, waiting: undefined });
  } catch (error) {
    if (!(error instanceof StaleWriteError)) throw error;
  }
}

/** Why a queued job past its wait bound fails: its own wait bound, or (a retry, an older job) its deadline. */
function waitBoundError(job: Job): JobError {
  return job.waitUntil !== undefined && job.attempts.length === 0
    ? {
        code: "WAIT_BOUND_EXCEEDED",
        message: "No provider slot became free for the job within its wait bound (max_wait_seconds).",
      }
    : {
        code: "DEADLINE_EXCEEDED",
        message: "The job reached its deadline before a provider could take it.",
      };
}
