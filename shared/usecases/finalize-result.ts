import { StaleWriteError } from "../domain/errors.ts";
import type { Job, JobOutput } from "../domain/job.ts";
import type { CapacityGate, Clock, JobStore, Queue } from "../ports/index.ts";
import type { ProviderOutput } from "../ports/provider.ts";
import type {
  DispatchMessage,
  FinishedResult,
  ResultMessage,
  WorkerJobMessage,
} from "../schemas/messages.ts";
import { type DispatchSettings, endAttemptAfterRejection } from "./dispatch-job.ts";
import {
  closeCurrentAttempt,
  currentAttempt,
  type ProviderState,
  providerState,
} from "./provider-attempts.ts";

export interface FinalizeDeps {
  jobs: JobStore;
  /** The self-hosted workers' queue: `auto` jobs whose provider attempts keep failing go there. */
  fallbackQueue?: Queue<WorkerJobMessage>;
  presignInput?: (bucket: string, key: string) => Promise<string>;
  copyOutput?: OutputCopier;
  gate: CapacityGate;
  jobsQueue: Queue<DispatchMessage>;
  clock: Clock;
  settings: DispatchSettings & { storingTimeoutSeconds: number };
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
  if (job.status !== "processing") return "ignored";
  if (!belongsToCurrentAttempt(job, message)) return "ignored";

  if (message.result.kind === "rejected") {
    return endAttemptAfterRejection(deps, job, message.result);
  }
  const now = deps.clock.now();
  const state: ProviderState = { ...providerState(job), phase: "finished", result: message.result };
  const storing = await deps.jobs.transition(job, "storing", {
    attempts: closeCurrentAttempt(job, "succeeded", now),
    providerState: state as unknown as Record<string, unknown>,
    dueAt: now.getTime() + deps.settings.storingTimeoutSeconds * 1000,
  });
  await deps.gate.release(job.id);
  return completeStoring(deps, storing);
}

/**
 * Copies one provider output into our storage and describes it. Throws `OutputRefused` when the
 * output can never be stored (not an image, too large, a forbidden address, gone for good); any other
 * error is transient and the message is retried.
 */
export type OutputCopier = (job: Job, output: ProviderOutput, index: number) => Promise<JobOutput>;

export class OutputRefused extends Error {
  constructor(
    message: string,
    readonly code = "OUTPUT_COPY_FAILED",
  ) {
    super(message);
  }
}

/**
 * `storing → succeeded`: copies the kept result's outputs into our bucket and records them. Re-runnable
 * from the stored job alone (keys are deterministic, so a second copy overwrites with the same bytes),
 * so the reconciler can resume a job whose finalize crashed half-way.
 */
export async function completeStoring(
  deps: Pick<FinalizeDeps, "jobs" | "copyOutput">,
  job: Job,
): Promise<FinalizeOutcome> {
  const result = providerState(job).result as FinishedResult | undefined;
  try {
    if (result?.kind !== "done" || result.outputs.length === 0) {
      await deps.jobs.transition(job, "failed", {
        error: { code: "NO_OUTPUTS", message: "The provider reported success without any output." },
      });
      return "failed";
    }
    let outputs: JobOutput[];
    try {
      outputs = deps.copyOutput
        ? await Promise.all(
            result.outputs.map((output, index) => (deps.copyOutput as OutputCopier)(job, output, index)),
          )
        : result.outputs.map(providerOutputAsIs);
    } catch (error) {
      if (!(error instanceof OutputRefused)) throw error;
      await deps.jobs.transition(job, "failed", {
        error: {
          code: error.code,
          message: `An output could not be stored: ${error.message}`.slice(0, 1000),
        },
        providerState: undefined,
      });
      return "failed";
    }
    await deps.jobs.transition(job, "succeeded", { outputs, providerState: undefined });
    return "succeeded";
  } catch (error) {
    // Someone else completed (or cancelled) it first: that is the idempotent outcome.
    if (error instanceof StaleWriteError) return "ignored";
    throw error;
  }
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
 * A worker's result belongs to a self-hosted attempt, anyone else's to a provider attempt (a late
 * provider callback after the job went to the fallback is stale, and so is a late worker result after
 * a retry went back to the provider). A result names its provider id when it knows it; one for
 * another attempt's id is stale.
 */
function belongsToCurrentAttempt(job: Job, message: ResultMessage): boolean {
  const attempt = currentAttempt(job);
  const route = message.source === "worker" ? "self-hosted" : "modelslab";
  if (attempt && attempt.route !== route) return false;
  const attemptId = attempt?.provider_id ?? null;
  const { result } = message;
  return result.providerId === null || attemptId === null || result.providerId === attemptId;
}
