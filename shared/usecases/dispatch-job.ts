import { StaleWriteError } from "../domain/errors.ts";
import type { Job, JobError } from "../domain/job.ts";
import type { Clock, JobStore, Queue } from "../ports/index.ts";
import type { Metrics } from "../ports/metrics.ts";
import type { ProviderBinding, Providers } from "../ports/provider.ts";
import type { DispatchMessage, ResultMessage } from "../schemas/messages.ts";
import { honoursRequest, releaseUnlessHeld, routeToFallback } from "./fallback-routing.ts";
import { backoffSeconds } from "./provider-attempts.ts";
import { startAttempt } from "./start-attempt.ts";

export interface DispatchSettings {
  callbackBaseUrl: string;
  callbackSecret: string;
  /** The reconciler first looks at eta + this margin (the callback usually comes first). */
  checkMarginSeconds: number;
  /** Backoff while waiting for provider capacity. */
  deferBaseSeconds: number;
  deferMaxSeconds: number;
  /** Backoff after a retryable provider rejection (429, 5xx) without a retry_after. */
  retryBaseSeconds: number;
  retryMaxSeconds: number;
  /** Retryable rejections after which the job fails instead of trying again. */
  maxRetryableFailures: number;
  queuedResendAfterSeconds: number;
  /**
   * How long a provider run is expected to take. An `auto` job that would wait for capacity past
   * (deadline − this) goes to the fallback provider instead.
   */
  expectedRunSeconds: number;
}

export interface DispatchDeps {
  jobs: JobStore;
  /** Every provider of the deployment with its gate and breaker, and how `auto` jobs are routed. */
  providers: Providers;
  jobsQueue: Queue<DispatchMessage>;
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
  | "deferred"
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
 * A job asking for one provider goes there or waits for it. An `auto` job goes to the primary provider
 * and moves to the fallback when the primary's breaker is open, when its capacity would come too late
 * for the deadline, or while another dispatcher probes the half-open breaker.
 */
export async function dispatchJob(deps: DispatchDeps, message: DispatchMessage): Promise<DispatchOutcome> {
  const { jobs, providers, clock, settings } = deps;
  const job = await jobs.get(message.jobId);
  if (job?.status !== "queued") return "ignored";
  const now = clock.now();

  if (now.getTime() >= Date.parse(job.deadlineAt)) {
    await failQueued(deps, job, {
      code: "DEADLINE_EXCEEDED",
      message: "The job reached its deadline before a provider could take it.",
    });
    return "failed";
  }

  const target = job.provider === "auto" ? providers.auto.primary : job.provider;
  const binding = providers.get(target);
  const fallbackId = job.provider === "auto" ? providers.auto.fallback : null;
  // A pinned job never falls back; nor does an `auto` job whose fallback this deployment lacks, or
  // cannot honour every parameter of: that one waits for its primary as a pinned job does.
  const canFallBack =
    fallbackId !== null &&
    fallbackId !== target &&
    providers.get(fallbackId) !== undefined &&
    honoursRequest(providers.get(fallbackId), job);
  const toFallback = async (reason: string): Promise<DispatchOutcome> => {
    const routed = await routeToFallback(deps, job, reason);
    if (routed !== "full") return routed;
    // The fallback is full too: wait for whichever frees a slot first.
    return defer(deps, job, message);
  };

  if (!binding) {
    if (canFallBack) return toFallback(`no ${target} provider in this deployment`);
    await failQueued(deps, job, providers.unavailable(target));
    return "failed";
  }

  const breaker = canFallBack ? await binding.breaker?.state(now) : undefined;
  if (breaker === "open") return toFallback(`${target} circuit open`);

  if (!(await binding.gate.tryAcquire(job.id, now))) {
    const delay = deferDelay(settings, message);
    const latestStart = Date.parse(job.deadlineAt) - settings.expectedRunSeconds * 1000;
    if (canFallBack && now.getTime() + delay * 1000 > latestStart) {
      return toFallback(`no ${target} capacity before the deadline`);
    }
    return defer(deps, job, message, delay);
  }
  let probe = false;
  if (breaker === "half-open") {
    // One dispatcher probes the provider; everyone else keeps going to the fallback meanwhile.
    probe = (await binding.breaker?.claimProbe(now)) ?? false;
    if (!probe) {
      await binding.gate.release(job.id);
      return toFallback(`${target} circuit half-open (a probe is in flight)`);
    }
  }
  return startWithSlot(deps, job, binding, probe);
}

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
    await deps.jobs.transition(job, "failed", { error });
  } catch (error) {
    if (!(error instanceof StaleWriteError)) throw error;
  }
}

const deferDelay = (settings: DispatchSettings, message: DispatchMessage): number =>
  backoffSeconds(message.deferrals ?? 0, settings.deferBaseSeconds, settings.deferMaxSeconds);

/**
 * No capacity: put the job back in the queue with backoff. A new delayed message rather than a
 * visibility change, so waiting never counts towards the queue's maxReceiveCount (and the DLQ).
 */
async function defer(
  deps: DispatchDeps,
  job: Job,
  message: DispatchMessage,
  delay = deferDelay(deps.settings, message),
): Promise<"deferred"> {
  const { settings, clock } = deps;
  const next: DispatchMessage = { jobId: job.id, deferrals: (message.deferrals ?? 0) + 1 };
  await deps.jobsQueue.send(next, { delaySeconds: delay });
  // Keep the reconciler from re-sending a job that is only waiting its turn.
  const resendAt = clock.now().getTime() + (delay + settings.queuedResendAfterSeconds) * 1000;
  if (job.dueAt !== null && job.dueAt < resendAt - settings.queuedResendAfterSeconds * 500) {
    await deps.jobs.update(job, { dueAt: resendAt }).catch((error) => {
      if (!(error instanceof StaleWriteError)) throw error;
    });
  }
  return "deferred";
}
