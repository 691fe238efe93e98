/**
 * How a failed job is treated. `bad_input`: the request can never succeed (fail the job with the
 * message). `resource`: this worker cannot run it (missing model, out of memory, unsupported export):
 * report a retryable rejection so the orchestrator runs it elsewhere. `transient`: anything else
 * (network, S3, an unexpected error): put the message back for another try here.
 */
import type { ProviderFailureCode } from "../../shared/domain/job.ts";

export type FailureKind = "bad_input" | "resource" | "transient";

export class JobError extends Error {
  /** The job's error code when this failure ends it, where one is more specific than PROVIDER_REJECTED. */
  readonly code: ProviderFailureCode | undefined;

  constructor(
    readonly kind: FailureKind,
    message: string,
    options?: { cause?: unknown; code?: ProviderFailureCode },
  ) {
    super(message, options);
    this.name = "JobError";
    this.code = options?.code;
  }
}

export const badInput = (message: string, cause?: unknown) => new JobError("bad_input", message, { cause });
export const resourceError = (message: string, cause?: unknown) =>
  new JobError("resource", message, { cause });
/**
 * The model computed NaN or infinite values (an fp16 VAE overflowing): the same model would do it again
 * for this request, so the job fails, with its own code, instead of storing a black image as a success.
 */
export const nonFiniteOutput = (message: string) =>
  new JobError("bad_input", message, { code: "NON_FINITE_OUTPUT" });

/** The job was cancelled because the worker is stopping; the message goes back to the queue. */
export class StopError extends Error {
  constructor() {
    super("worker is stopping");
    this.name = "StopError";
  }
}

const OOM =
  /out of memory|bad_alloc|failed to allocate|cudaErrorMemoryAllocation|CUBLAS_STATUS_ALLOC_FAILED/i;

export function classify(error: unknown): {
  kind: FailureKind;
  message: string;
  code?: ProviderFailureCode;
} {
  if (error instanceof JobError)
    return { kind: error.kind, message: error.message, ...(error.code ? { code: error.code } : {}) };
  const message = error instanceof Error ? error.message : String(error);
  if (OOM.test(message)) return { kind: "resource", message: `out of memory: ${message}` };
  return { kind: "transient", message };
}
