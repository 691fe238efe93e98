import { StaleWriteError } from "../domain/errors.ts";
import type { Job } from "../domain/job.ts";
import type { JobStore } from "../ports/index.ts";
import type { ProviderBinding, ProviderResult } from "../ports/provider.ts";
import type { DispatchMessage, ResultMessage } from "../schemas/messages.ts";
import { releaseAndAdmit } from "./admission.ts";
import type { DispatchDeps, DispatchOutcome } from "./dispatch-job.ts";
import { honoursRequest, routeToFallback } from "./fallback-routing.ts";
import {
  backoffSeconds,
  closeCurrentAttempt,
  currentAttempt,
  currentAttemptIndex,
  type ProviderState,
  retryableFailures,
} from "./provider-attempts.ts";

/** What starting an attempt and settling its outcome use (dispatch, finalize and the reconciler all do). */
export type AttemptDeps = Pick<
  DispatchDeps,
  | "jobs"
  | "providers"
  | "jobsQueue"
  | "admissionsQueue"
  | "resultsQueue"
  | "clock"
  | "settings"
  | "presignInput"
  | "metrics"
  | "log"
>;

/**
 * Records what a submission answered on the job's current attempt. `accepted`: the provider's id,
 * eta and handle, the first look at eta + CHECK_MARGIN (or at the deadline for a provider that cannot
 * be polled: its result comes by itself); `done`: straight to the results queue; `rejected`: the
 * attempt ends (`endAttemptAfterRejection`); `indeterminate`: never submitted again to a provider that
 * could bill twice; only its callback, a re-submission or the deadline settles it.
 */
export async function applySubmitResult(
  deps: AttemptDeps,
  job: Job,
  binding: ProviderBinding,
  result: ProviderResult,
): Promise<DispatchOutcome> {
  const { clock, settings } = deps;
  const now = clock.now();
  const canFetch = binding.provider.capabilities.fetch;
  switch (result.kind) {
    case "accepted": {
      const state: ProviderState = {
        phase: "accepted",
        providerId: result.providerId,
        etaSeconds: result.etaSeconds,
        handle: result.handle,
        checks: 0,
      };
      const firstCheck = (Math.max(0, result.etaSeconds ?? 0) + settings.checkMarginSeconds) * 1000;
      const { providerId } = result;
      await updateIfStillSubmitting(deps.jobs, job, (current) => ({
        ...(providerId !== null && { attempts: withProviderId(current, providerId) }),
        providerState: state,
        dueAt: canFetch ? beforeDeadline(job, now.getTime() + firstCheck) : Date.parse(job.deadlineAt),
      }));
      return "accepted";
    }
    case "done": {
      // Record the provider id first: if the send below is lost, the reconciler can still fetch the result.
      const providerId = result.providerId;
      if (providerId && canFetch) {
        const state: ProviderState = {
          phase: "accepted",
          providerId,
          etaSeconds: 0,
          handle: {},
          checks: 0,
        };
        await updateIfStillSubmitting(deps.jobs, job, (current) => ({
          attempts: withProviderId(current, providerId),
          providerState: state,
          dueAt: beforeDeadline(job, now.getTime() + settings.checkMarginSeconds * 1000),
        }));
      }
      const message: ResultMessage = {
        jobId: job.id,
        provider: binding.provider.id,
        attempt: currentAttemptIndex(job),
        source: "dispatch",
        observedAt: now.toISOString(),
        result,
      };
      await deps.resultsQueue.send(message);
      return "done";
    }
    case "rejected":
      return endAttemptAfterRejection(deps, job, result);
    case "indeterminate": {
      // The provider may have the job: never post again. The callback (it names the job) or the
      // deadline settles it; the reconciler keeps looking until then.
      deps.log?.("provider outcome unknown", { jobId: job.id, reason: result.reason });
      await updateIfStillSubmitting(deps.jobs, job, () => ({
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
 * reason. An `auto` job whose primary-provider attempts keep failing retryably goes to the fallback
 * provider instead (once: a failing fallback attempt is not sent to the fallback again). Shared by
 * dispatch (a rejected submission) and finalize (a `failed` result). The attempt's capacity slot is
 * released whatever happens.
 */
export async function endAttemptAfterRejection(
  deps: AttemptDeps,
  job: Job,
  result: Extract<ProviderResult, { kind: "rejected" }>,
): Promise<"retrying" | "failed" | "fallback"> {
  const { settings, clock, providers } = deps;
  const now = clock.now();
  const failures = retryableFailures(job) + 1;
  const delay =
    result.retryAfterSeconds && result.retryAfterSeconds > 0
      ? Math.min(900, Math.ceil(result.retryAfterSeconds))
      : backoffSeconds(failures - 1, settings.retryBaseSeconds, settings.retryMaxSeconds);
  const fitsDeadline = now.getTime() + delay * 1000 < Date.parse(job.deadlineAt);
  const retriesLeft = failures <= settings.maxRetryableFailures;
  const attempt = currentAttempt(job);
  const slot = attempt && providers.get(attempt.provider);
  const release = async () => {
    if (slot) await releaseAndAdmit(deps, slot, job.id);
  };
  const fallback = providers.auto.fallback;

  if (
    result.retryable &&
    (!retriesLeft || !fitsDeadline) &&
    job.provider === "auto" &&
    fallback !== null &&
    attempt?.provider === providers.auto.primary &&
    fallback !== attempt.provider &&
    providers.get(fallback) &&
    // A fallback that cannot honour every parameter is no fallback for this job.
    honoursRequest(providers.get(fallback), job)
  ) {
    const routed = await routeToFallback(
      deps,
      job,
      `${attempt.provider} failed retryably ${failures} times: ${result.reason}`,
    );
    // A fallback with no room left is no fallback: the job fails below.
    if (routed !== "full") {
      await release();
      return "fallback";
    }
  }
  if (result.retryable && retriesLeft && fitsDeadline) {
    const requeued = await deps.jobs.transition(job, "queued", {
      attempts: closeCurrentAttempt(job, "retried", now, result.reason),
      providerState: undefined,
      dueAt: now.getTime() + (delay + settings.queuedResendAfterSeconds) * 1000,
    });
    await release();
    const message: DispatchMessage = { jobId: requeued.id };
    // If this send is lost, the reconciler re-sends once dueAt passes.
    await deps.jobsQueue.send(message, { delaySeconds: delay }).catch(() => undefined);
    return "retrying";
  }
  const code = result.code ?? (result.retryable ? "PROVIDER_UNAVAILABLE" : "PROVIDER_REJECTED");
  const why = result.retryable && !fitsDeadline ? " (no time left before the deadline to retry)" : "";
  await deps.jobs.transition(job, "failed", {
    attempts: closeCurrentAttempt(job, "failed", now, result.reason),
    error: { code, message: `${result.reason}${why}`.slice(0, 1000) },
  });
  await release();
  return "failed";
}

/** A processing job's next look never falls after its deadline: the reconciler must fail it on time. */
export const beforeDeadline = (job: Pick<Job, "deadlineAt">, dueAt: number): number =>
  Math.min(dueAt, Date.parse(job.deadlineAt));

/** The attempts with the current one's provider id set. */
const withProviderId = (job: Job, providerId: string): Job["attempts"] =>
  job.attempts.map((a, i) => (i === job.attempts.length - 1 ? { ...a, provider_id: providerId } : a));

/** Same-status update that gives way if the job moved on meanwhile (an early callback already finished it). */
async function updateIfStillSubmitting(
  jobs: JobStore,
  job: Job,
  patch: (current: Job) => Parameters<JobStore["update"]>[1],
): Promise<void> {
  let current: Job | null = job;
  for (let race = 0; race < 3 && current?.status === "processing"; race++) {
    if (current.attempts.length !== job.attempts.length) return;
    try {
      await jobs.update(current, patch(current));
      return;
    } catch (error) {
      if (!(error instanceof StaleWriteError)) throw error;
      current = await jobs.get(job.id);
    }
  }
}
