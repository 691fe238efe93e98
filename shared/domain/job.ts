import type { ControlNetRequest } from "../schemas/controlnet.ts";
import type { FinishedResult } from "../schemas/messages.ts";
import type { Priority, WaitingPlace } from "./admission.ts";
import { PROVIDER_IDS, type ProviderHandle, type ProviderId } from "./providers.ts";

export const JOB_STATUSES = ["queued", "processing", "storing", "succeeded", "failed", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(["succeeded", "failed", "cancelled"]);
export const isTerminal = (status: JobStatus): boolean => TERMINAL_STATUSES.has(status);

/**
 * The only allowed moves of a job. `processing → queued` is a retry or a fallback: the job keeps
 * its id and gains an attempt. Terminal states have no way out.
 */
export const TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  queued: ["processing", "failed", "cancelled"],
  processing: ["queued", "storing", "failed", "cancelled"],
  storing: ["succeeded", "failed", "cancelled"],
  succeeded: [],
  failed: [],
  cancelled: [],
};

export const canTransition = (from: JobStatus, to: JobStatus): boolean => TRANSITIONS[from].includes(to);

/** `auto`: the primary provider, falling back as routing allows; a provider id: that provider only. */
export const PROVIDER_CHOICES = ["auto", ...PROVIDER_IDS] as const;
export type ProviderChoice = (typeof PROVIDER_CHOICES)[number];

export type AttemptOutcome = "pending" | "succeeded" | "failed" | "retried" | "cancelled" | "timed_out";

/** One try of a job on one provider. The public resource shows `provider` as the attempt's `route`. */
export interface Attempt {
  provider: ProviderId;
  /** The provider's own id of the request, once it gave one. */
  provider_id: string | null;
  started_at: string;
  ended_at: string | null;
  outcome: AttemptOutcome;
  reason?: string;
}

/**
 * One output image. Until outputs are copied into our own storage, only `url` (the provider's) is
 * known and the other fields are null.
 */
export interface JobOutput {
  url: string;
  key?: string;
  content_type: string | null;
  bytes: number | null;
  sha256: string | null;
  width: number | null;
  height: number | null;
}

/**
 * Every `error.code` a job can end with, declared once: `JobError` takes only these, and docs/errors.md
 * catalogues exactly this list (test/unit/docs-catalogue.test.ts compares the two). `OUTPUT_*` codes are
 * `OUTPUT_` + the copier's refusal code (shared/lambda/wiring.ts).
 */
export const JOB_ERROR_CODES = [
  "CANCELLED",
  "DEADLINE_EXCEEDED",
  "WAIT_BOUND_EXCEEDED",
  "SELF_HOSTED_UNAVAILABLE",
  "PROVIDER_REJECTED",
  "PROVIDER_UNAVAILABLE",
  "PROVIDER_OUTCOME_UNKNOWN",
  "NO_OUTPUTS",
  "OUTPUT_COPY_FAILED",
  "OUTPUT_URL_NOT_ALLOWED",
  "OUTPUT_ADDRESS_NOT_ALLOWED",
  "OUTPUT_REDIRECT_NOT_ALLOWED",
  "OUTPUT_TOO_LARGE",
  "OUTPUT_TIMEOUT",
  "OUTPUT_HTTP_STATUS",
  "OUTPUT_NETWORK",
  "OUTPUT_NOT_AN_IMAGE",
  "OUTPUT_INVALID_BASE64",
  "OUTPUT_NOT_OUR_OBJECT",
  "OUTPUT_OBJECT_NOT_FOUND",
  "NON_FINITE_OUTPUT",
] as const;
export type JobErrorCode = (typeof JOB_ERROR_CODES)[number];

/**
 * The job error codes a provider's rejection may name itself (`code` of a rejected result), for a
 * failure more specific than PROVIDER_REJECTED: the GPU worker's VAE giving NaN or infinite values.
 */
export const PROVIDER_FAILURE_CODES = ["NON_FINITE_OUTPUT"] as const satisfies readonly JobErrorCode[];
export type ProviderFailureCode = (typeof PROVIDER_FAILURE_CODES)[number];

/** The most images one request may ask for (`samples`, 1 by default); the request schema enforces it. */
export const MAX_SAMPLES = 4;

/**
 * Bounds of one provider output wherever it travels before it is copied: on the results queue
 * (SQS takes 256 KiB a message) and in the job while it is `storing` (DynamoDB takes 400 KB an item).
 * With at most MAX_SAMPLES outputs, a result stays within both. An inline (base64) output bigger than
 * `inlineChars` could not travel anyway; the provider is always asked for URLs.
 */
export const OUTPUT_LIMITS = { urlChars: 2_048, inlineChars: 32 * 1_024 } as const;

/** Longest provider id kept (in the job's attempts and on the results queue); the provider's are short numbers. */
export const MAX_PROVIDER_ID_CHARS = 256;

export const requestedSamples = (request: Pick<ControlNetRequest, "samples">): number => request.samples ?? 1;

/**
 * Why a finished result cannot be accepted for a job that asked for `request.samples` images, or null
 * when it can. The provider answers with at most the images asked for (fewer when its filter drops
 * some); more is outside its contract, and which of them would be "the" images cannot be told, so the
 * result is refused as a whole rather than trimmed: nothing of it is downloaded or kept.
 */
export function outputCountProblem(
  request: Pick<ControlNetRequest, "samples">,
  outputs: number,
): string | null {
  const asked = requestedSamples(request);
  return outputs > asked
    ? `The provider's result names ${outputs} outputs; the job asked for ${asked}.`
    : null;
}

export interface JobError {
  code: JobErrorCode;
  message: string;
}

/**
 * The orchestrator's bookkeeping of the current attempt, by phase (never shown to clients):
 * - `submitting`: the attempt is written and its submission under way (or lost with its sender: a
 *   provider that takes repeated submissions gets it again, any other only settles by callback or
 *   deadline);
 * - `accepted`: the provider holds it, as `providerId` when it gave one; `handle` is what the provider
 *   needs to look it up again (opaque here); `checks` counts the reconciler's polls;
 * - `indeterminate`: the submission's outcome is unknown: only a callback or the deadline settles it;
 * - `finished`: the result is in and its outputs are being stored (kept so a crashed finalize resumes);
 *   `storingResumes` counts the reconciler's hand-backs of it to finalize.
 */
export type ProviderState =
  | { phase: "submitting"; checks?: number }
  | {
      phase: "accepted";
      providerId: string | null;
      etaSeconds: number | null;
      handle: ProviderHandle;
      checks: number;
    }
  | { phase: "indeterminate"; checks?: number }
  | { phase: "finished"; result: FinishedResult; storingResumes?: number };

/** A job as stored. The public resource (`shared/schemas/api.ts`) is derived from it. */
export interface Job {
  id: string;
  tenantId: string;
  status: JobStatus;
  version: number;
  createdAt: string;
  updatedAt: string;
  trackId: string | null;
  metadata: Record<string, string>;
  provider: ProviderChoice;
  request: ControlNetRequest;
  /** The client's notification URL (never sent to the provider). */
  webhook: string | null;
  deadlineAt: string;
  attempts: Attempt[];
  outputs: JobOutput[];
  /** The seed the provider (or the worker) actually generated with, once the job succeeded; null when it did not say. */
  seed?: number | null;
  /** Whether the provider flagged the outputs as NSFW, where it reports it (ModelsLab's fetch answers). */
  nsfwContentDetected?: boolean | null;
  error: JobError | null;
  /**
   * Epoch ms when the reconciler should next look at this job; null when nothing is due. A terminal
   * job is due only while its notification is pending (see job-change.ts).
   */
  dueAt: number | null;
  /** Provider bookkeeping for the current attempt, opaque to the API. */
  providerState?: ProviderState;
  /**
   * The outbox flag of the terminal notification: set by the terminal transition (which keeps the job
   * in the `due` index), cleared once the notification event is recorded. The reconciler re-sends
   * the notify message of any terminal job still pending past its `dueAt`.
   */
  notifyPending?: boolean;
  /** The client asked for a `job.processing` notification too. */
  notifyProcessing?: boolean;
  /** The client's concurrency key (its own end user): the tenant's slots are shared fairly among keys. */
  concurrencyKey?: string;
  /** Order among the same key's waiting jobs (normal when absent). */
  priority?: Priority;
  /**
   * The run bound (`deadline_seconds`): at its first start the job's `deadlineAt` becomes start + this.
   * Absent on jobs submitted before admission: their `deadlineAt` counts from submission.
   */
  runSeconds?: number;
  /** The wait bound (ISO): a job still waiting for a slot then fails WAIT_BOUND_EXCEEDED. */
  waitUntil?: string;
  /** Where the job waits for a slot, while it does (shared/usecases/admission.ts). */
  waiting?: WaitingPlace & { provider: ProviderId };
}

export class InvalidTransitionError extends Error {
  constructor(
    readonly from: JobStatus,
    readonly to: JobStatus,
  ) {
    super(`A job cannot move from ${from} to ${to}.`);
  }
}

export const assertTransition = (from: JobStatus, to: JobStatus): void => {
  if (!canTransition(from, to)) throw new InvalidTransitionError(from, to);
};
