import { callbackUrl } from "../domain/callback-token.ts";
import { StaleWriteError } from "../domain/errors.ts";
import type { Attempt, Job } from "../domain/job.ts";
import type { JobPatch } from "../ports/index.ts";
import type { ProviderBinding, ProviderResult } from "../ports/provider.ts";
import { type AttemptDeps, applySubmitResult, beforeDeadline } from "./attempt-outcomes.ts";
import type { DispatchOutcome } from "./dispatch-job.ts";
import { closeCurrentAttempt, currentAttemptIndex } from "./provider-attempts.ts";
import { forwardedRequest, providerParams } from "./stage-inputs.ts";

/**
 * Starts a new attempt of `job` on `binding`'s provider (whose capacity slot the caller holds): from
 * `queued` by the transition to `processing`, from `processing` (a fallback after the current attempt
 * gave up: it is closed as failed with `reason`) by a same-status update. The attempt is written
 * before anything is submitted, so a result can never race its attempt; then it is submitted.
 *
 * "ignored": from `queued`, someone else moved the job first. From `processing`, a lost race throws
 * StaleWriteError (the caller reads again and decides again).
 */
export async function startAttempt(
  deps: AttemptDeps,
  job: Job,
  binding: ProviderBinding,
  options: { reason?: string; probe?: boolean } = {},
): Promise<DispatchOutcome> {
  const { provider } = binding;
  const now = deps.clock.now();
  const attempt: Attempt = {
    provider: provider.id,
    provider_id: null,
    started_at: now.toISOString(),
    ended_at: null,
    outcome: "pending",
    ...(options.reason && { reason: options.reason.slice(0, 500) }),
  };
  // Its first look: once the submission should have answered. A job left here by a dispatcher that
  // died mid-submit is settled by a callback, a re-submission or the deadline; a queued job's look may
  // stay at the check time it already has (not moving it earlier spares the due index two writes).
  const firstLook = now.getTime() + (provider.submitTimeoutSeconds + deps.settings.checkMarginSeconds) * 1000;
  const patch: JobPatch = { providerState: { phase: "submitting" } };
  let started: Job;
  try {
    if (job.status === "queued") {
      // The run bound counts from the first start: waiting for a slot is not part of it.
      const deadlineAt =
        job.attempts.length === 0 && job.runSeconds !== undefined
          ? new Date(now.getTime() + job.runSeconds * 1000).toISOString()
          : job.deadlineAt;
      // A queued job's look may stay later than the first look (not moving it earlier spares the due
      // index two writes). A job that waited has its look at its wait bound, too late now: its look
      // goes back to where the submit put it (the due index still lists it there, unless the reconciler
      // already moved it up), or the first look.
      const submitted = Date.parse(job.createdAt) + deps.settings.queuedResendAfterSeconds * 1000;
      const look = Math.max(job.waiting ? submitted : (job.dueAt ?? 0), firstLook);
      started = await deps.jobs.transition(job, "processing", {
        ...patch,
        attempts: [...job.attempts, attempt],
        dueAt: beforeDeadline({ deadlineAt }, look),
        waiting: undefined,
        ...(deadlineAt !== job.deadlineAt && { deadlineAt }),
      });
    } else {
      started = await deps.jobs.update(job, {
        ...patch,
        attempts: [...closeCurrentAttempt(job, "failed", now, options.reason), attempt],
        dueAt: beforeDeadline(job, firstLook),
      });
    }
  } catch (error) {
    if (error instanceof StaleWriteError && job.status === "queued") return "ignored";
    throw error;
  }
  return submitAttempt(deps, started, binding, options.probe ?? false);
}

/**
 * Submits the job's current attempt to its provider and applies the answer. Also how the reconciler
 * re-sends an attempt left unsent on a provider whose submissions may be repeated.
 */
export async function submitAttempt(
  deps: AttemptDeps,
  job: Job,
  binding: ProviderBinding,
  probe = false,
): Promise<DispatchOutcome> {
  const { provider } = binding;
  const { settings } = deps;
  const attempt = currentAttemptIndex(job);
  const params = deps.presignInput
    ? await providerParams(job.request, deps.presignInput)
    : forwardedRequest(job.request);
  const submittedAt = deps.clock.now().getTime();
  const result = await provider.submit({
    jobId: job.id,
    tenantId: job.tenantId,
    attempt,
    params,
    callbackUrl: provider.capabilities.callback
      ? callbackUrl(settings.callbackBaseUrl, settings.callbackSecret, provider.id, job.id, attempt)
      : null,
  });
  deps.metrics?.duration("ProviderSubmitLatency", deps.clock.now().getTime() - submittedAt, {
    provider: provider.id,
  });
  await recordOutcome(deps, binding, result, probe);
  return applySubmitResult(deps, job, binding, result);
}

/** Feeds the provider's breaker: retryable rejections and unknown outcomes are failures; any answer is a success. */
async function recordOutcome(
  deps: AttemptDeps,
  binding: ProviderBinding,
  result: ProviderResult,
  probe: boolean,
): Promise<void> {
  if (!binding.breaker) return;
  const failed = result.kind === "indeterminate" || (result.kind === "rejected" && result.retryable);
  try {
    await binding.breaker.record(failed ? "failure" : "success", deps.clock.now(), probe);
  } catch (error) {
    // The breaker is advice: losing one record must not lose the job's result.
    deps.log?.("circuit breaker record failed", { error: String(error) });
  }
}
