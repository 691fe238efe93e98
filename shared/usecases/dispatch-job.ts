import { callbackUrl } from "../domain/callback-token.ts";
import { StaleWriteError } from "../domain/errors.ts";
import type { Job, JobErrorCode } from "../domain/job.ts";
import type { CapacityGate, CircuitBreaker, Clock, JobPatch, JobStore, Queue } from "../ports/index.ts";
import type { Provider, ProviderResult } from "../ports/provider.ts";
import type { DispatchMessage, ResultMessage, WorkerJobMessage } from "../schemas/messages.ts";
import {
  backoffSeconds,
  closeCurrentAttempt,
  currentAttempt,
  type ProviderState,
  retryableFailures,
} from "./provider-attempts.ts";
import { forwardedRequest, providerParams } from "./stage-inputs.ts";

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
  /** How long the provider POST may take before the outcome is unknown (the client's timeout). */
  submitTimeoutSeconds: number;
  queuedResendAfterSeconds: number;
  /**
   * How long a provider run is expected to take. An `auto` job that would wait for capacity past
   * (deadline − this) goes to the self-hosted fallback instead (default 120).
   */
  expectedRunSeconds?: number;
}

export interface DispatchDeps {
  jobs: JobStore;
  gate: CapacityGate;
  provider: Provider;
  jobsQueue: Queue<DispatchMessage>;
  resultsQueue: Queue<ResultMessage>;
  clock: Clock;
  settings: DispatchSettings;
  /** The self-hosted GPU workers' queue. Without it, `self-hosted` jobs fail and `auto` jobs never fall back. */
  fallbackQueue?: Queue<WorkerJobMessage>;
  /** The provider's circuit breaker, shared by every dispatcher; while open, `auto` jobs go to the fallback. */
  breaker?: CircuitBreaker;
  /** Presigns a stored input (s3://bucket/key in the request) for the provider to fetch. */
  presignInput?: (bucket: string, key: string) => Promise<string>;
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
 * Moves one queued job to the provider: capacity slot first, then `queued → processing` by a
 * conditional write, then the POST. The job row is the truth: a duplicate or stale message finds the
 * job no longer queued and does nothing, so nothing is ever sent twice because SQS delivered twice.
 */
export async function dispatchJob(deps: DispatchDeps, message: DispatchMessage): Promise<DispatchOutcome> {
  const { jobs, gate, clock, settings } = deps;
  const job = await jobs.get(message.jobId);
  if (job?.status !== "queued") return "ignored";
  const now = clock.now();

  if (now.getTime() >= Date.parse(job.deadlineAt)) {
    await failQueued(
      deps,
      job,
      "DEADLINE_EXCEEDED",
      "The job reached its deadline before a provider could take it.",
    );
    return "failed";
  }
  if (job.provider === "self-hosted") {
    if (deps.fallbackQueue) return routeToFallback(fallback(deps), job, "self-hosted requested");
    await failQueued(
      deps,
      job,
      "SELF_HOSTED_UNAVAILABLE",
      "No self-hosted GPU workers are configured for this deployment.",
    );
    return "failed";
  }

  // `auto` jobs consult the breaker; `modelslab` jobs never fall back, so they always try the provider.
  const canFallBack = job.provider === "auto" && deps.fallbackQueue !== undefined;
  const breaker = canFallBack ? await deps.breaker?.state(now) : undefined;
  if (breaker === "open") return routeToFallback(fallback(deps), job, "provider circuit open");

  if (!(await gate.tryAcquire(job.id, now))) {
    const deferrals = message.deferrals ?? 0;
    const delay = backoffSeconds(deferrals, settings.deferBaseSeconds, settings.deferMaxSeconds);
    const latestStart = Date.parse(job.deadlineAt) - (settings.expectedRunSeconds ?? 120) * 1000;
    if (canFallBack && now.getTime() + delay * 1000 > latestStart) {
      return routeToFallback(fallback(deps), job, "no provider capacity before the deadline");
    }
    await defer(deps, job, deferrals, delay);
    return "deferred";
  }
  let probe = false;
  if (breaker === "half-open") {
    // One dispatcher probes the provider; everyone else keeps going to the fallback meanwhile.
    probe = (await deps.breaker?.claimProbe(now)) ?? false;
    if (!probe) {
      await gate.release(job.id);
      return routeToFallback(fallback(deps), job, "provider circuit half-open (a probe is in flight)");
    }
  }

  let processing: Job;
  try {
    processing = await jobs.transition(job, "processing", {
      attempts: [
        ...job.attempts,
        {
          route: "modelslab",
          provider_id: null,
          started_at: now.toISOString(),
          ended_at: null,
          outcome: "pending",
        },
      ],
      providerState: { phase: "submitting" },
      // A job left here by a dispatcher that died mid-POST can only be settled by a callback until
      // UNKNOWN_OUTCOME_SECONDS, so its first look may wait for the check time it already has: not
      // moving it earlier spares the due index two write units per job.
      dueAt: beforeDeadline(
        job,
        Math.max(
          job.dueAt ?? 0,
          now.getTime() + (settings.submitTimeoutSeconds + settings.checkMarginSeconds) * 1000,
        ),
      ),
    });
  } catch (error) {
    if (!(error instanceof StaleWriteError)) throw error;
    // Someone else moved the job. If another dispatcher took it, the slot (keyed by job id) is theirs now.
    const current = await jobs.get(job.id);
    if (current?.status !== "processing") await gate.release(job.id);
    return "ignored";
  }

  const params = deps.presignInput
    ? await providerParams(processing.request, deps.presignInput)
    : forwardedRequest(processing.request);
  const result = await deps.provider.submit({
    params,
    webhook: callbackUrl(settings.callbackBaseUrl, settings.callbackSecret, processing.id),
    trackId: processing.id,
  });
  await recordOutcome(deps, result, probe);
  return applySubmitResult(deps, processing, result);
}

/** Feeds the breaker: retryable rejections and unknown outcomes are failures; any answer is a success. */
async function recordOutcome(deps: DispatchDeps, result: ProviderResult, probe: boolean): Promise<void> {
  if (!deps.breaker) return;
  const failed = result.kind === "indeterminate" || (result.kind === "rejected" && result.retryable);
  try {
    await deps.breaker.record(failed ? "failure" : "success", deps.clock.now(), probe);
  } catch (error) {
    // The breaker is advice: losing one record must not lose the job's result.
    deps.log?.("circuit breaker record failed", { error: String(error) });
  }
}

async function applySubmitResult(
  deps: DispatchDeps,
  job: Job,
  result: ProviderResult,
): Promise<DispatchOutcome> {
  const { clock, settings } = deps;
  const now = clock.now();
  switch (result.kind) {
    case "accepted": {
      const state: ProviderState = {
        phase: "accepted",
        providerId: result.providerId,
        etaSeconds: result.etaSeconds,
        fetchUrl: result.fetchUrl,
        checks: 0,
      };
      const firstCheck = (Math.max(0, result.etaSeconds ?? 0) + settings.checkMarginSeconds) * 1000;
      await updateIfStillSubmitting(deps, job, (current) => ({
        attempts: current.attempts.map((a, i) =>
          i === current.attempts.length - 1 ? { ...a, provider_id: result.providerId } : a,
        ),
        providerState: state,
        dueAt: beforeDeadline(job, now.getTime() + firstCheck),
      }));
      return "accepted";
    }
    case "done": {
      // Record the provider id first: if the send below is lost, the reconciler can still fetch the result.
      const providerId = result.providerId;
      if (providerId) {
        const state: ProviderState = {
          phase: "accepted",
          providerId,
          etaSeconds: 0,
          fetchUrl: null,
          checks: 0,
        };
        await updateIfStillSubmitting(deps, job, (current) => ({
          attempts: current.attempts.map((a, i) =>
            i === current.attempts.length - 1 ? { ...a, provider_id: providerId } : a,
          ),
          providerState: state,
          dueAt: beforeDeadline(job, now.getTime() + settings.checkMarginSeconds * 1000),
        }));
      }
      const message: ResultMessage = {
        jobId: job.id,
        source: "dispatch",
        observedAt: now.toISOString(),
        result: { ...result, providerId: result.providerId },
      };
      await deps.resultsQueue.send(message);
      return "done";
    }
    case "rejected": {
      const outcome = await endAttemptAfterRejection(deps, job, result);
      return outcome;
    }
    case "indeterminate": {
      // The provider may have the job: never post again. The callback (it names the job) or the
      // deadline settles it; the reconciler keeps looking until then.
      deps.log?.("provider outcome unknown", { jobId: job.id, reason: result.reason });
      await updateIfStillSubmitting(deps, job, () => ({
        providerState: { phase: "indeterminate" },
        dueAt: beforeDeadline(job, now.getTime() + settings.checkMarginSeconds * 1000),
      }));
      return "indeterminate";
    }
  }
}

/**
 * Ends the current attempt after a rejection: back to `queued` with a delayed message when it is
 * worth retrying (429, 5xx) and attempts and deadline allow, otherwise `failed` with the provider's
 * reason. Shared by dispatch (rejected POST) and finalize (a `failed` result).
 */
export async function endAttemptAfterRejection(
  deps: Pick<
    DispatchDeps,
    "jobs" | "gate" | "jobsQueue" | "clock" | "settings" | "fallbackQueue" | "presignInput"
  >,
  job: Job,
  result: Extract<ProviderResult, { kind: "rejected" }>,
): Promise<"retrying" | "failed" | "fallback"> {
  const { settings, clock } = deps;
  const now = clock.now();
  const failures = retryableFailures(job) + 1;
  const delay =
    result.retryAfterSeconds && result.retryAfterSeconds > 0
      ? Math.min(900, Math.ceil(result.retryAfterSeconds))
      : backoffSeconds(failures - 1, settings.retryBaseSeconds, settings.retryMaxSeconds);
  const fitsDeadline = now.getTime() + delay * 1000 < Date.parse(job.deadlineAt);
  const retriesLeft = failures <= settings.maxRetryableFailures;

  // An `auto` job whose provider attempts keep failing retryably goes to the self-hosted workers
  // instead of failing (once: a failing fallback attempt is not sent to the fallback again).
  if (
    result.retryable &&
    (!retriesLeft || !fitsDeadline) &&
    job.provider === "auto" &&
    deps.fallbackQueue &&
    currentAttempt(job)?.route === "modelslab"
  ) {
    await routeToFallback(
      fallback(deps),
      job,
      `provider failed retryably ${failures} times: ${result.reason}`,
    );
    await deps.gate.release(job.id);
    return "fallback";
  }
  if (result.retryable && retriesLeft && fitsDeadline) {
    const requeued = await deps.jobs.transition(job, "queued", {
      attempts: closeCurrentAttempt(job, "retried", now, result.reason),
      providerState: undefined,
      dueAt: now.getTime() + (delay + settings.queuedResendAfterSeconds) * 1000,
    });
    await deps.gate.release(job.id);
    const message: DispatchMessage = { jobId: requeued.id };
    // If this send is lost, the reconciler re-sends once dueAt passes.
    await deps.jobsQueue.send(message, { delaySeconds: delay }).catch(() => undefined);
    return "retrying";
  }
  const code = result.retryable ? "PROVIDER_UNAVAILABLE" : "PROVIDER_REJECTED";
  const why = result.retryable && !fitsDeadline ? " (no time left before the deadline to retry)" : "";
  await deps.jobs.transition(job, "failed", {
    attempts: closeCurrentAttempt(job, "failed", now, result.reason),
    error: { code, message: `${result.reason}${why}`.slice(0, 1000) },
  });
  await deps.gate.release(job.id);
  return "failed";
}

/** A processing job's next look never falls after its deadline: the reconciler must fail it on time. */
const beforeDeadline = (job: Job, dueAt: number): number => Math.min(dueAt, Date.parse(job.deadlineAt));

/** Same-status update that gives way if the job moved on meanwhile (an early callback already finished it). */
async function updateIfStillSubmitting(
  deps: DispatchDeps,
  job: Job,
  patch: (current: Job) => Parameters<JobStore["update"]>[1],
): Promise<void> {
  let current: Job | null = job;
  for (let race = 0; race < 3 && current?.status === "processing"; race++) {
    if (current.attempts.length !== job.attempts.length) return;
    try {
      await deps.jobs.update(current, patch(current));
      return;
    } catch (error) {
      if (!(error instanceof StaleWriteError)) throw error;
      current = await deps.jobs.get(job.id);
    }
  }
}

async function failQueued(deps: DispatchDeps, job: Job, code: JobErrorCode, message: string): Promise<void> {
  try {
    await deps.jobs.transition(job, "failed", { error: { code, message } });
  } catch (error) {
    if (!(error instanceof StaleWriteError)) throw error;
  }
}

/**
 * No capacity: put the job back in the queue with backoff. A new delayed message rather than a
 * visibility change, so waiting never counts towards the queue's maxReceiveCount (and the DLQ).
 */
async function defer(deps: DispatchDeps, job: Job, deferrals: number, delay: number): Promise<void> {
  const { settings, clock } = deps;
  const message: DispatchMessage = { jobId: job.id, deferrals: deferrals + 1 };
  await deps.jobsQueue.send(message, { delaySeconds: delay });
  // Keep the reconciler from re-sending a job that is only waiting its turn.
  const resendAt = clock.now().getTime() + (delay + settings.queuedResendAfterSeconds) * 1000;
  if (job.dueAt !== null && job.dueAt < resendAt - settings.queuedResendAfterSeconds * 500) {
    await deps.jobs.update(job, { dueAt: resendAt }).catch((error) => {
      if (!(error instanceof StaleWriteError)) throw error;
    });
  }
}

export type FallbackDeps = Pick<DispatchDeps, "jobs" | "clock" | "presignInput"> & {
  fallbackQueue: Queue<WorkerJobMessage>;
  settings: Pick<DispatchSettings, "queuedResendAfterSeconds">;
};

/** The deps of a caller that has checked it has a fallback queue. */
function fallback<D extends Pick<DispatchDeps, "fallbackQueue">>(
  deps: D,
): D & { fallbackQueue: Queue<WorkerJobMessage> } {
  if (!deps.fallbackQueue) throw new Error("routing to the fallback without a fallback queue");
  return deps as D & { fallbackQueue: Queue<WorkerJobMessage> };
}

/**
 * Hands the job to the self-hosted GPU workers: a new `self-hosted` attempt (the job keeps its id;
 * a provider attempt still pending is closed as failed with `reason`), then the worker message. The
 * job row is written first; if the send is lost, the reconciler sends it again (`sent: false`).
 * Works from `queued` (dispatch) and from `processing` (a provider attempt that gave up).
 */
export async function routeToFallback(
  deps: FallbackDeps,
  job: Job,
  reason: string,
): Promise<"fallback" | "ignored"> {
  const now = deps.clock.now();
  const attempts = [
    ...closeCurrentAttempt(job, "failed", now, reason),
    {
      route: "self-hosted" as const,
      provider_id: null,
      started_at: now.toISOString(),
      ended_at: null,
      outcome: "pending" as const,
      reason: reason.slice(0, 500),
    },
  ];
  const patch: JobPatch = {
    attempts,
    providerState: { phase: "self-hosted", sent: false },
    // If the send below is lost, the reconciler sends again after this.
    dueAt: beforeDeadline(job, now.getTime() + deps.settings.queuedResendAfterSeconds * 1000),
  };
  let routed: Job;
  try {
    routed =
      job.status === "queued"
        ? await deps.jobs.transition(job, "processing", patch)
        : await deps.jobs.update(job, patch);
  } catch (error) {
    // From queued, someone else moved the job: nothing to do. From processing, the caller decides again.
    if (error instanceof StaleWriteError && job.status === "queued") return "ignored";
    throw error;
  }
  await sendToFallback(deps, routed);
  return "fallback";
}

/** Sends (or re-sends) the worker message of a job whose current attempt is self-hosted, then marks it sent. */
export async function sendToFallback(deps: FallbackDeps, job: Job): Promise<void> {
  const message: WorkerJobMessage = {
    jobId: job.id,
    tenantId: job.tenantId,
    attempt: job.attempts.length - 1,
    // Stored inputs (s3://) become presigned URLs the worker can fetch, as for the provider.
    request: (deps.presignInput
      ? await providerParams(job.request, deps.presignInput)
      : forwardedRequest(job.request)) as WorkerJobMessage["request"],
    outputsPrefix: `${job.tenantId}/${job.id}`,
  };
  await deps.fallbackQueue.send(message);
  // The worker may even have finished already: then the job moved on and there is nothing to mark.
  await deps.jobs
    .update(job, {
      providerState: { phase: "self-hosted", sent: true },
      dueAt: Date.parse(job.deadlineAt),
    })
    .catch((error) => {
      if (!(error instanceof StaleWriteError)) throw error;
    });
}
