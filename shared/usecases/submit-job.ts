import { ConflictError, UnavailableError, ValidationError } from "../domain/errors.ts";
import type { UnsupportedParam } from "../domain/fleet-capabilities.ts";
import { canonicalJson, sha256Hex } from "../domain/hash.ts";
import { newJobId } from "../domain/ids.ts";
import type { Job } from "../domain/job.ts";
import type { ProviderId } from "../domain/providers.ts";
import { parseOrThrow } from "../domain/validation.ts";
import type { Clock, JobStore, Queue } from "../ports/index.ts";
import { idempotencyKeySchema, ORCHESTRATOR_FIELD_NAMES, submitJobBodySchema } from "../schemas/api.ts";
import type { ControlNetRequest } from "../schemas/controlnet.ts";
import type { DispatchMessage } from "../schemas/messages.ts";

export interface SubmitJobDeps {
  jobs: JobStore;
  jobsQueue: Queue<DispatchMessage>;
  clock: Clock;
  settings: {
    defaultDeadlineSeconds: number;
    defaultMaxWaitSeconds: number;
    queuedResendAfterSeconds: number;
    idempotencyTtlSeconds: number;
  };
  /** Told when the queue send failed and the job was left for the reconciler to re-send. */
  onDeferredSend?: (jobId: string, error: unknown) => void;
  /** Removes what `stage` stored when the job itself is not written (an idempotent replay, a conflict). */
  discard?: (tenantId: string, jobId: string, request: ControlNetRequest) => Promise<void>;
  /** Checks and stores the request's images (base64 → object storage); nothing is written if it throws. */
  stage?: (tenantId: string, jobId: string, request: ControlNetRequest) => Promise<ControlNetRequest>;
  /** The parameters of `request` that `provider` cannot honour (none when not given). */
  unsupported?: (provider: ProviderId, request: Readonly<Record<string, unknown>>) => UnsupportedParam[];
  /** Checks `webhook` against the address rules deliveries follow: what is wrong, or null. */
  checkWebhook?: (url: string) => Promise<string | null>;
}

export interface SubmitJobInput {
  tenantId: string;
  body: unknown;
  idempotencyKey?: string | undefined;
}

export interface SubmitJobResult {
  job: Job;
  /** True when an earlier request with the same Idempotency-Key and body created this job. */
  replayed: boolean;
}

/**
 * Registers the job (and its idempotency key, atomically) before queueing it. If the queue send
 * fails the job is still accepted: it is written with a `dueAt`, and the reconciler re-sends the
 * message of any queued job it finds due, so no job stays queued without a message.
 */
export async function submitJob(deps: SubmitJobDeps, input: SubmitJobInput): Promise<SubmitJobResult> {
  const body = parseOrThrow(submitJobBodySchema, input.body, "The job request");
  const idempotencyKey =
    input.idempotencyKey === undefined
      ? undefined
      : parseOrThrow(
          idempotencyKeySchema,
          input.idempotencyKey,
          "The Idempotency-Key header",
          "INVALID_IDEMPOTENCY_KEY",
        );

  // A job pinned to a provider that cannot honour a parameter would succeed without it: refuse it now.
  const unsupported = body.provider === "auto" ? [] : (deps.unsupported?.(body.provider, body) ?? []);
  if (unsupported.length > 0) {
    throw new ValidationError(
      `The ${body.provider} provider cannot honour: ${unsupported.map((u) => u.param).join(", ")}.`,
      unsupported.map((u) => ({ path: u.param, message: u.reason })),
    );
  }

  // Deliveries refuse such a URL anyway; refusing it now tells the client while it is listening.
  const webhookProblem = body.webhook === undefined ? null : await deps.checkWebhook?.(body.webhook);
  if (webhookProblem) {
    throw new ValidationError("The job request is invalid: webhook.", [
      { path: "webhook", message: webhookProblem },
    ]);
  }

  const now = deps.clock.now();
  const nowIso = now.toISOString();
  const id = newJobId(now.getTime());
  const clientRequest = Object.fromEntries(
    Object.entries(body).filter(([name]) => !(ORCHESTRATOR_FIELD_NAMES as string[]).includes(name)),
  ) as ControlNetRequest;
  const request = deps.stage ? await deps.stage(input.tenantId, id, clientRequest) : clientRequest;
  // The run bound counts from the start; until then the wait bound applies. The deadline of a job
  // not yet started is the latest it may end: its wait bound plus its run bound.
  const deadlineSeconds = body.deadline_seconds ?? deps.settings.defaultDeadlineSeconds;
  const maxWaitSeconds = body.max_wait_seconds ?? deps.settings.defaultMaxWaitSeconds;
  const job: Job = {
    id,
    tenantId: input.tenantId,
    status: "queued",
    version: 1,
    createdAt: nowIso,
    updatedAt: nowIso,
    trackId: body.track_id ?? null,
    metadata: body.metadata ?? {},
    provider: body.provider,
    request,
    webhook: body.webhook ?? null,
    deadlineAt: new Date(now.getTime() + (maxWaitSeconds + deadlineSeconds) * 1000).toISOString(),
    runSeconds: deadlineSeconds,
    waitUntil: new Date(now.getTime() + maxWaitSeconds * 1000).toISOString(),
    attempts: [],
    outputs: [],
    error: null,
    dueAt: now.getTime() + deps.settings.queuedResendAfterSeconds * 1000,
    ...(body.notify_processing && { notifyProcessing: true }),
    ...(body.concurrency_key !== undefined && { concurrencyKey: body.concurrency_key }),
    ...(body.priority !== undefined && body.priority !== "normal" && { priority: body.priority }),
  };

  const idempotency = idempotencyKey && {
    keyHash: sha256Hex(idempotencyKey),
    // The raw body, canonicalised: a changed body under the same key is a client bug worth a 409.
    requestHash: sha256Hex(canonicalJson(input.body)),
    expiresAt: Math.floor(now.getTime() / 1000) + deps.settings.idempotencyTtlSeconds,
  };

  const result = await deps.jobs.create(job, idempotency || undefined).catch(async (error) => {
    await deps.discard?.(input.tenantId, id, request);
    throw error;
  });
  if (!result.created) {
    // A replay or a conflict: this request's job was never written, so neither may its images be.
    await deps.discard?.(input.tenantId, id, request);
    if (!result.sameRequest) {
      throw new ConflictError(
        "IDEMPOTENCY_KEY_REUSED",
        "This Idempotency-Key was already used with a different request body.",
      );
    }
    const existing = await deps.jobs.get(result.existingJobId);
    if (!existing || existing.tenantId !== input.tenantId) {
      // The key record outlived its job (retention) — refuse rather than create a twin.
      throw new UnavailableError(
        "IDEMPOTENCY_RECORD_ORPHANED",
        "The job for this Idempotency-Key is no longer available.",
      );
    }
    return { job: existing, replayed: true };
  }

  const message: DispatchMessage = { jobId: job.id };
  try {
    await deps.jobsQueue.send(message);
  } catch (error) {
    deps.onDeferredSend?.(job.id, error);
  }
  return { job: result.job, replayed: false };
}
