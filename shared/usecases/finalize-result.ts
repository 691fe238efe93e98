import { StaleWriteError } from "../domain/errors.ts";
import {
  type Job,
  type JobError,
  type JobErrorCode,
  type JobOutput,
  outputCountProblem,
} from "../domain/job.ts";
import type { JobPatch } from "../domain/job-change.ts";
import type { Clock, JobStore, Queue } from "../ports/index.ts";
import type { Metrics } from "../ports/metrics.ts";
import type { ProviderOutput, Providers } from "../ports/provider.ts";
import type { AdmissionMessage, DispatchMessage, ResultMessage } from "../schemas/messages.ts";
import { releaseAndAdmit } from "./admission.ts";
import { endAttemptAfterRejection } from "./attempt-outcomes.ts";
import type { DispatchSettings } from "./dispatch-job.ts";
import {
  closeCurrentAttempt,
  currentAttempt,
  currentAttemptIndex,
  providerState,
} from "./provider-attempts.ts";

export interface FinalizeDeps {
  jobs: JobStore;
  /**
   * Every provider with its gate (an attempt's slot is released when it ends); an `auto` job whose
   * primary attempts keep failing is started on the fallback provider.
   */
  providers: Providers;
  presignInput?: (bucket: string, key: string) => Promise<string>;
  copyOutput?: OutputCopier;
  /** Empties a job's outputs folder: called whenever a job that did not succeed may have objects there. */
  discardOutputs?: OutputDiscarder;
  jobsQueue: Queue<DispatchMessage>;
  admissionsQueue: Queue<AdmissionMessage>;
  /** A fallback provider that answers at once puts its result here. */
  resultsQueue: Queue<ResultMessage>;
  clock: Clock;
  settings: DispatchSettings & { storingTimeoutSeconds: number };
  metrics?: Metrics;
  log?: (message: string, data: Record<string, unknown>) => void;
}

export type FinalizeOutcome = "ignored" | "succeeded" | "failed" | "retrying" | "fallback";

/**
 * The one place where results become terminal states. Idempotent: a result for a job that is
 * already terminal, or that belongs to an earlier attempt, changes nothing.
 */
export async function finalizeResult(deps: FinalizeDeps, message: ResultMessage): Promise<FinalizeOutcome> {
  // A lost race (the reconciler or a duplicate changed the job meanwhile) means: read again and decide again.
  for (let race = 0; race < MAX_RACES; race++) {
    try {
      return await finalizeOnce(deps, message);
    } catch (error) {
      if (!(error instanceof StaleWriteError)) throw error;
    }
  }
  throw new StaleWriteError(
    `job ${message.jobId} kept changing while being finalized; the message will be retried`,
  );
}

const MAX_RACES = 5;

async function finalizeOnce(deps: FinalizeDeps, message: ResultMessage): Promise<FinalizeOutcome> {
  const job = await deps.jobs.get(message.jobId);
  if (!job) return "ignored";
  if (job.status === "storing") return completeStoring(deps, job);
  if (job.status === "failed" || job.status === "cancelled") {
    // A job that did not succeed keeps no objects: a finalize interrupted after copying (then the job
    // was cancelled or failed), or a worker that wrote its images, may have left some. The reconciler
    // hands a storing job it fails back here for this.
    await deps.discardOutputs?.(job);
    // The provider has finished this attempt: the slot a cancel or the deadline left held is free now.
    const binding = deps.providers.get(message.provider);
    if (belongsToCurrentAttempt(job, message) && binding) await releaseAndAdmit(deps, binding, job.id);
    return "ignored";
  }
  if (job.status !== "processing") return "ignored";
  if (!belongsToCurrentAttempt(job, message)) return "ignored";

  const { result } = message;
  if (result.kind === "rejected") {
    return endAttemptAfterRejection(deps, job, result);
  }
  // Judged before anything is downloaded or written: the kept result is stored with the job.
  const tooMany = outputCountProblem(job.request, result.outputs.length);
  if (tooMany) {
    return endAttemptAfterRejection(deps, job, {
      kind: "rejected",
      providerId: result.providerId,
      retryable: false,
      reason: tooMany,
      retryAfterSeconds: null,
      httpStatus: null,
    });
  }
  const now = deps.clock.now();
  const storing = await deps.jobs.transition(job, "storing", {
    attempts: closeCurrentAttempt(job, "succeeded", now),
    providerState: { phase: "finished", result },
    // The reconciler must be able to end it at its deadline.
    dueAt: Math.min(now.getTime() + deps.settings.storingTimeoutSeconds * 1000, Date.parse(job.deadlineAt)),
  });
  const binding = deps.providers.get(message.provider);
  if (binding) await releaseAndAdmit(deps, binding, job.id);
  return completeStoring(deps, storing);
}

/**
 * Copies one provider output into our storage and describes it. Throws `OutputRefused` when the
 * output can never be stored (not an image, too large, a forbidden address, gone for good); any other
 * error is transient and the message is retried.
 */
export type OutputCopier = (job: Job, output: ProviderOutput, index: number) => Promise<JobOutput>;

/** Deletes whatever a job wrote to the outputs bucket (idempotent). */
export type OutputDiscarder = (job: Job) => Promise<void>;

export class OutputRefused extends Error {
  constructor(
    message: string,
    readonly code: JobErrorCode = "OUTPUT_COPY_FAILED",
  ) {
    super(message);
  }
}

/**
 * `storing → succeeded`: copies the kept result's outputs into our bucket and records them. Re-runnable
 * from the stored job alone (keys are deterministic, so a second copy overwrites with the same bytes),
 * so the reconciler can resume a job whose finalize crashed half-way. Past the job's deadline, or for a
 * result no copy can be made of, the job fails instead, and whatever was copied is discarded.
 */
export async function completeStoring(
  deps: Pick<FinalizeDeps, "jobs" | "copyOutput" | "discardOutputs" | "clock">,
  job: Job,
): Promise<FinalizeOutcome> {
  const state = providerState(job);
  const result = state.phase === "finished" ? state.result : undefined;
  if (deps.clock.now().getTime() >= Date.parse(job.deadlineAt)) {
    return failStoring(deps, job, {
      code: "DEADLINE_EXCEEDED",
      message: "The outputs were not stored before the job's deadline.",
    });
  }
  if (result?.kind !== "done" || result.outputs.length === 0) {
    return failStoring(deps, job, {
      code: "NO_OUTPUTS",
      message: "The provider reported success without any output.",
    });
  }
  // A job stored before results were bounded may keep a longer list: refuse it here too.
  const tooMany = outputCountProblem(job.request, result.outputs.length);
  if (tooMany) return failStoring(deps, job, { code: "PROVIDER_REJECTED", message: tooMany });

  let outputs: JobOutput[];
  const copier = deps.copyOutput;
  if (copier) {
    // Every copy settles before anything is decided, so none writes after a discard.
    const copies = await Promise.allSettled(
      result.outputs.map((output, index) => copier(job, output, index)),
    );
    const refused = copies.find(
      (copy): copy is PromiseRejectedResult =>
        copy.status === "rejected" && copy.reason instanceof OutputRefused,
    );
    if (refused) {
      const error = refused.reason as OutputRefused;
      return failStoring(deps, job, {
        code: error.code,
        message: `An output could not be stored: ${error.message}`.slice(0, 1000),
      });
    }
    // Any other error is transient: the message is retried (and the copies redone over the same keys).
    const broken = copies.find((copy): copy is PromiseRejectedResult => copy.status === "rejected");
    if (broken) throw broken.reason;
    outputs = copies.map((copy) => (copy as PromiseFulfilledResult<JobOutput>).value);
  } else {
    outputs = result.outputs.map(providerOutputAsIs);
  }
  return recordStored(deps, job, {
    outputs,
    seed: result.seed,
    nsfwContentDetected: result.nsfwContentDetected ?? null,
  });
}

/** `storing → failed`, then the job's objects go (a lost write propagates: finalize reads again and decides). */
async function failStoring(
  deps: Pick<FinalizeDeps, "jobs" | "discardOutputs">,
  job: Job,
  error: JobError,
): Promise<FinalizeOutcome> {
  const failed = await deps.jobs.transition(job, "failed", { error, providerState: undefined });
  await deps.discardOutputs?.(failed);
  return "failed";
}

/**
 * `storing → succeeded` with the copies made. The copies took a while: when the write loses, a job
 * still storing (only its bookkeeping moved, e.g. the reconciler's next look) is written again without
 * copying again; a job cancelled or failed meanwhile has what was just copied discarded.
 */
async function recordStored(
  deps: Pick<FinalizeDeps, "jobs" | "discardOutputs">,
  job: Job,
  stored: Required<Pick<JobPatch, "outputs" | "seed" | "nsfwContentDetected">>,
): Promise<FinalizeOutcome> {
  let current = job;
  for (let race = 0; race < MAX_RACES; race++) {
    try {
      await deps.jobs.transition(current, "succeeded", { ...stored, providerState: undefined });
      return "succeeded";
    } catch (error) {
      if (!(error instanceof StaleWriteError)) throw error;
    }
    const latest = await deps.jobs.get(job.id);
    if (latest?.status === "storing") {
      current = latest;
      continue;
    }
    if (latest?.status === "failed" || latest?.status === "cancelled") await deps.discardOutputs?.(latest);
    // Otherwise a duplicate finished it first, with the same objects: the idempotent outcome.
    return "ignored";
  }
  throw new StaleWriteError(`job ${job.id} kept changing while its outputs were recorded`);
}

/** Without a copier (unit tests of the state flow), outputs are recorded as the provider gave them. */
const providerOutputAsIs = (output: ProviderOutput): JobOutput => ({
  url: output.kind === "url" ? output.url : `data:image/png;base64,${output.data}`,
  content_type: null,
  bytes: null,
  sha256: null,
  width: null,
  height: null,
});

/**
 * A result belongs to the job's current attempt when it names that attempt and its provider: a late
 * result of an earlier attempt (a provider's callback after the job went to the fallback, a worker's
 * after a retry went back to the provider) is stale. A result that names its provider id must also
 * name the attempt's.
 */
function belongsToCurrentAttempt(job: Job, message: ResultMessage): boolean {
  const attempt = currentAttempt(job);
  if (!attempt || message.attempt !== currentAttemptIndex(job) || message.provider !== attempt.provider) {
    return false;
  }
  const { providerId } = message.result;
  return providerId === null || attempt.provider_id === null || providerId === attempt.provider_id;
}
