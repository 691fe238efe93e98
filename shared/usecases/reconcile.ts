import { StaleWriteError } from "../domain/errors.ts";
import type { Job } from "../domain/job.ts";
import { isTerminal } from "../domain/job.ts";
import { maySlotBeReleased, slotHold } from "../domain/slot-hold.ts";
import type { Clock, JobStore, Queue } from "../ports/index.ts";
import type { Metrics } from "../ports/metrics.ts";
import type { ProviderBinding, Providers } from "../ports/provider.ts";
import type { AdmissionMessage, DispatchMessage, NotifyMessage, ResultMessage } from "../schemas/messages.ts";
import { admit, enqueueJob, releaseAndAdmit, waitBoundOf } from "./admission.ts";
import type { DispatchSettings } from "./dispatch-job.ts";
import { sendJobEvent } from "./lifecycle.ts";
import {
  backoffSeconds,
  checksOf,
  closeCurrentAttempt,
  currentAttempt,
  currentAttemptIndex,
  providerState,
  withChecks,
} from "./provider-attempts.ts";
import { submitAttempt } from "./start-attempt.ts";

export interface ReconcileSettings {
  queuedResendAfterSeconds: number;
  batchSize: number;
  /** Polling backoff for jobs the provider still reports as processing. */
  pollBaseSeconds: number;
  pollMaxSeconds: number;
  /** A capacity slot held this long by a job that is no longer processing is looked at (`slotHold`). */
  slotGraceSeconds: number;
  /** How long a provider may run one generation: a slot whose attempt may still run is kept this long. */
  providerRunLimitSeconds: number;
  /** A job whose provider request has an unknown outcome is failed this long after it was sent. */
  unknownOutcomeSeconds: number;
  /** A job stuck in storing is handed back to finalize this often. */
  storingRetrySeconds: number;
  /** How many times a job stuck in storing is handed back before it fails. */
  storingMaxResumes: number;
  /** A terminal job whose notification is still pending is re-announced this often. */
  notifyGraceSeconds: number;
}

export interface ReconcileDeps {
  jobs: JobStore;
  jobsQueue: Queue<DispatchMessage>;
  admissionsQueue: Queue<AdmissionMessage>;
  clock: Clock;
  settings: ReconcileSettings;
  /** The providers (polled, submitted to again) with their gates (slots healed); present once configured. */
  providers?: Providers;
  /** Dispatch's settings, for an attempt submitted again (a provider that takes repeated submissions). */
  dispatch?: DispatchSettings;
  resultsQueue?: Queue<ResultMessage>;
  /** The notifications queue (terminal jobs whose notification message was lost). */
  notifications?: Queue<NotifyMessage>;
  presignInput?: (bucket: string, key: string) => Promise<string>;
  metrics?: Metrics;
  log?: (message: string, data: Record<string, unknown>) => void;
}

export interface ReconcileReport {
  examined: number;
  requeued: number;
  polled: number;
  resolved: number;
  expired: number;
  resumed: number;
  announced: number;
  slotsHealed: number;
  /** Waiting jobs the sweep admitted. */
  admitted: number;
  errors: number;
}

/**
 * The safety net behind best-effort callbacks and at-least-once queues. Every non-terminal job, and
 * every terminal one whose notification is pending, has a `dueAt`; for each job past it: queued → its
 * dispatch message is sent again; processing → past the deadline it fails, an attempt left unsent on
 * a provider that takes repeated submissions is submitted again, an accepted one is polled where its
 * provider can be and a finished result goes to the results queue; storing → the store step is resumed; terminal → its notify message is sent again.
 * Capacity slots of jobs that left processing are released once the provider is done with them
 * (`slotHold`), and those whose release was lost are healed.
 */
export async function reconcile(deps: ReconcileDeps): Promise<ReconcileReport> {
  const now = deps.clock.now();
  const due = await deps.jobs.findDue(now, deps.settings.batchSize);
  const report: ReconcileReport = {
    examined: due.length,
    requeued: 0,
    polled: 0,
    resolved: 0,
    expired: 0,
    resumed: 0,
    announced: 0,
    slotsHealed: 0,
    admitted: 0,
    errors: 0,
  };
  await Promise.all(
    due.map(async (job) => {
      try {
        await reconcileJob(deps, job, now, report);
      } catch (error) {
        if (error instanceof StaleWriteError) return; // it moved on by itself
        report.errors++;
        deps.log?.("reconcile failed for a job", { jobId: job.id, error: String(error) });
      }
    }),
  );
  for (const binding of deps.providers?.all() ?? []) {
    report.slotsHealed += await releaseSlots(deps, binding, now);
    // The safety net of admission: free slots and waiting jobs that no release brought together.
    report.admitted += await admit(deps, binding);
  }
  return report;
}

async function reconcileJob(
  deps: ReconcileDeps,
  job: Job,
  now: Date,
  report: ReconcileReport,
): Promise<void> {
  const { settings } = deps;
  if (job.status === "queued") {
    // Push dueAt first: if the send then fails, a later run tries again. A waiting job's look before
    // its wait bound is an overflow check (dispatch-job.ts); its next one is at its wait bound.
    const waitBound = waitBoundOf(job);
    const updated = await deps.jobs.update(job, {
      dueAt:
        job.waiting && waitBound > now.getTime()
          ? waitBound
          : now.getTime() + settings.queuedResendAfterSeconds * 1000,
    });
    const message: DispatchMessage = { jobId: updated.id };
    await deps.jobsQueue.send(message);
    report.requeued++;
    return;
  }
  if (job.status === "storing") {
    await reconcileStoring(deps, job, now, report);
    return;
  }
  if (isTerminal(job.status)) {
    // A terminal job is only due while its notification is pending: announce it again.
    if (job.notifyPending && deps.notifications) {
      await deps.jobs.update(job, { dueAt: now.getTime() + settings.notifyGraceSeconds * 1000 });
      await sendJobEvent({ notifications: deps.notifications, ...(deps.log && { log: deps.log }) }, job);
      report.announced++;
    }
    return;
  }
  if (job.status !== "processing") return;

  if (now.getTime() >= Date.parse(job.deadlineAt)) {
    const failed = await deps.jobs.transition(job, "failed", {
      attempts: closeCurrentAttempt(job, "timed_out", now, "deadline exceeded"),
      error: {
        code: "DEADLINE_EXCEEDED",
        message: "The provider did not finish the job before its deadline.",
      },
    });
    // The provider may still be generating it: its slot stays until it is done (see releaseSlots).
    await releaseSlotIfDone(deps, failed, now);
    report.expired++;
    return;
  }

  const state = providerState(job);
  const attempt = currentAttempt(job);
  const binding = attempt && deps.providers?.get(attempt.provider);
  const { providers, resultsQueue, dispatch } = deps;
  if (
    state.phase !== "accepted" &&
    binding?.provider.capabilities.resubmit &&
    providers &&
    resultsQueue &&
    dispatch
  ) {
    // Its submission was lost (the job row says it never answered): this provider takes it again.
    await submitAttempt({ ...deps, providers, resultsQueue, settings: dispatch }, job, binding);
    report.requeued++;
    return;
  }
  if (state.phase === "accepted" && binding && !binding.provider.capabilities.fetch) {
    // Nothing to poll: its result comes by itself (the worker's, on the results queue), or the deadline.
    await deps.jobs.update(job, { dueAt: Date.parse(job.deadlineAt) });
    return;
  }
  const checks = checksOf(state) + 1;
  const nextCheck =
    now.getTime() + backoffSeconds(checks, settings.pollBaseSeconds, settings.pollMaxSeconds) * 1000;
  // Never past the deadline: the deadline check must run on time.
  const dueAt = Math.min(nextCheck, Date.parse(job.deadlineAt));

  const provider = binding?.provider;
  if (state.phase !== "accepted" || !provider?.fetch || !resultsQueue) {
    // No provider id: the POST timed out, or its dispatcher died mid-call. Only a callback can tell
    // whether the provider took it; re-posting could bill twice. Past the window in which any real
    // job would have called back, give up on it (its slot follows the provider's run limit).
    const started = Date.parse(attempt?.started_at ?? job.updatedAt);
    if (now.getTime() - started >= settings.unknownOutcomeSeconds * 1000) {
      const failed = await deps.jobs.transition(job, "failed", {
        attempts: closeCurrentAttempt(job, "failed", now, "provider outcome unknown"),
        error: {
          code: "PROVIDER_OUTCOME_UNKNOWN",
          message:
            "The provider request's outcome could not be learned (no answer, no callback); it was not re-sent to avoid double billing.",
        },
      });
      await releaseSlotIfDone(deps, failed, now);
      report.expired++;
      return;
    }
    // Until then only the callback or the deadline can settle it.
    await deps.jobs.update(job, {
      dueAt,
      providerState: withChecks(state, checks),
    });
    return;
  }

  report.polled++;
  const result = await provider.fetch({ providerId: state.providerId, handle: state.handle });
  // Record the poll before publishing a result, so finalize never races this write.
  const polled = await deps.jobs.update(job, { dueAt, providerState: { ...state, checks } });
  if (result.kind === "done" || (result.kind === "rejected" && !result.retryable)) {
    const message: ResultMessage = {
      jobId: polled.id,
      provider: provider.id,
      attempt: currentAttemptIndex(polled),
      source: "reconcile",
      observedAt: now.toISOString(),
      result: { ...result, providerId: result.providerId ?? state.providerId },
    };
    await resultsQueue.send(message);
    report.resolved++;
  }
  // Otherwise still processing, or the poll itself failed: the next look is at dueAt.
}

/**
 * Finalize crashed or timed out while copying: the kept result is handed back to it (one ingestion
 * path), a bounded number of times and never past the deadline. A job that runs out of either fails
 * here, and its result goes to finalize once more, which discards what the copies left (finalize alone
 * writes to, and deletes from, the outputs bucket).
 */
async function reconcileStoring(
  deps: ReconcileDeps,
  job: Job,
  now: Date,
  report: ReconcileReport,
): Promise<void> {
  const { settings } = deps;
  const state = providerState(job);
  // Only a finished state keeps a result to hand back (and counts the hand-backs); the deadline bounds the rest.
  const finished = state.phase === "finished" ? state : undefined;
  const kept = finished?.result;
  const resumes = (finished?.storingResumes ?? 0) + 1;
  const maxResumes = settings.storingMaxResumes;
  const deadline = Date.parse(job.deadlineAt);
  const handBack = async () => {
    const succeeded = currentAttempt(job);
    if (!kept || !succeeded || !deps.resultsQueue) return;
    const message: ResultMessage = {
      jobId: job.id,
      provider: succeeded.provider,
      attempt: currentAttemptIndex(job),
      source: "reconcile",
      observedAt: now.toISOString(),
      result: kept,
    };
    await deps.resultsQueue.send(message);
  };

  if (now.getTime() >= deadline || resumes > maxResumes) {
    await deps.jobs.transition(job, "failed", {
      error:
        now.getTime() >= deadline
          ? { code: "DEADLINE_EXCEEDED", message: "The outputs were not stored before the job's deadline." }
          : {
              code: "OUTPUT_COPY_FAILED",
              message: `The outputs could not be stored: ${maxResumes} resumed tries did not finish.`,
            },
      providerState: undefined,
    });
    await handBack();
    report.expired++;
    return;
  }
  await deps.jobs.update(job, {
    dueAt: Math.min(now.getTime() + settings.storingRetrySeconds * 1000, deadline),
    ...(finished && { providerState: { ...finished, storingResumes: resumes } }),
  });
  await handBack();
  report.resumed++;
}

/** Releases the slot of a job's current attempt on its provider, once `slotHold` allows. */
async function releaseSlotIfDone(deps: ReconcileDeps, job: Job, now: Date): Promise<void> {
  const attempt = currentAttempt(job);
  const binding = attempt && deps.providers?.get(attempt.provider);
  if (binding && maySlotBeReleased(job, now, deps.settings.providerRunLimitSeconds)) {
    await releaseAndAdmit(deps, binding, job.id);
  }
}

/**
 * Looks at every slot on `binding`'s provider held past the grace period (a dispatcher between
 * acquire and its first write keeps one briefly) and releases it when `slotHold` says the provider is
 * done with its job: the job is gone, was never posted, was answered, or its attempt's run limit has
 * passed. A job that left processing while its attempt may still run (cancelled, timed out) keeps the
 * slot, unless a fetch says the provider has finished it: posting another job meanwhile would go over
 * the account's limit.
 */
async function releaseSlots(deps: ReconcileDeps, binding: ProviderBinding, now: Date): Promise<number> {
  let released = 0;
  const holders = await binding.gate.holders();
  for (const [jobId, acquiredAt] of Object.entries(holders)) {
    if (now.getTime() - acquiredAt < deps.settings.slotGraceSeconds * 1000) continue;
    const job = await deps.jobs.get(jobId);
    if (job?.status === "queued") {
      // Admitted on its behalf and not started yet: its admission message may have been lost, or the
      // admitter stopped between the acquire and its entry's delete. The entry goes (no second
      // admission of a job that has its slot), the message is sent again; past twice the grace, the
      // slot goes to the next job and this one waits again.
      if (now.getTime() - acquiredAt < 2 * deps.settings.slotGraceSeconds * 1000) {
        if (job.waiting?.provider === binding.provider.id) await binding.waiting.remove(job.waiting);
        await deps.admissionsQueue.send({ jobId, admittedBy: binding.provider.id });
        continue;
      }
      await releaseAndAdmit(deps, binding, jobId);
      await enqueueJob(deps, job, binding);
      released++;
      continue;
    }
    const attempt = job ? currentAttempt(job) : undefined;
    // A job whose current attempt is on another provider ended its attempt here when it moved on.
    const elsewhere = attempt !== undefined && attempt.provider !== binding.provider.id;
    const hold = elsewhere
      ? { kind: "free" as const }
      : slotHold(job, now, deps.settings.providerRunLimitSeconds);
    if (hold.kind === "owned") continue;
    if (hold.kind === "provider-may-run" && !(job && (await providerIsDone(deps, binding, job)))) continue;
    await releaseAndAdmit(deps, binding, jobId);
    released++;
  }
  return released;
}

/** A fetch of the attempt answers with its result: the provider no longer runs it. */
async function providerIsDone(deps: ReconcileDeps, binding: ProviderBinding, job: Job): Promise<boolean> {
  const state = providerState(job);
  const { provider } = binding;
  if (state.phase !== "accepted" || !provider.capabilities.fetch || !provider.fetch) return false;
  try {
    const result = await provider.fetch({ providerId: state.providerId, handle: state.handle });
    return result.kind === "done" || (result.kind === "rejected" && !result.retryable);
  } catch (error) {
    deps.log?.("provider fetch for a held slot failed", { jobId: job.id, error: String(error) });
    return false;
  }
}
