import type { Job } from "../domain/job.ts";
import { IMAGE_FIELDS, S3_REF } from "../domain/uploads.ts";
import type { ObjectStore } from "../ports/index.ts";
import type { JobResource } from "../schemas/api.ts";
import type { ControlNetRequest } from "../schemas/controlnet.ts";

/**
 * The job as every API answer and every notification shows it. Stored outputs are shown as
 * presigned GET URLs of our own bucket (`signedUrls`, by object key) — never provider URLs.
 */
export function presentJob(job: Job, signedUrls: ReadonlyMap<string, string> = new Map()): JobResource {
  return {
    id: job.id,
    status: job.status,
    created_at: job.createdAt,
    updated_at: job.updatedAt,
    track_id: job.trackId,
    metadata: job.metadata,
    provider: job.provider,
    request: presentRequest(job.request),
    webhook: job.webhook,
    deadline_seconds:
      job.runSeconds ?? Math.round((Date.parse(job.deadlineAt) - Date.parse(job.createdAt)) / 1000),
    max_wait_seconds:
      job.waitUntil === undefined
        ? null
        : Math.round((Date.parse(job.waitUntil) - Date.parse(job.createdAt)) / 1000),
    concurrency_key: job.concurrencyKey ?? null,
    priority: job.priority ?? "normal",
    notify_processing: job.notifyProcessing ?? false,
    // The API shows an attempt's provider as its `route`.
    attempts: job.attempts.map(({ provider, ...attempt }) => ({ route: provider, ...attempt })),
    outputs: job.outputs.map(({ url, key, content_type, bytes, sha256, width, height }) => ({
      url: (key && signedUrls.get(key)) || url,
      content_type,
      bytes,
      sha256,
      width,
      height,
    })),
    seed: job.seed ?? null,
    nsfw_content_detected: job.nsfwContentDetected ?? null,
    error: job.error,
  };
}

/**
 * Staged images are kept as `s3://` URIs of our inputs bucket (stage-inputs.ts): internal names the
 * client never gave. An upload is shown as the `upload:<id>` it was submitted as, a stored base64
 * image as `inline:<field>.<ext>`.
 */
function presentRequest(request: ControlNetRequest): ControlNetRequest {
  const shown: Record<string, unknown> = { ...request };
  for (const field of IMAGE_FIELDS) {
    const value = shown[field];
    if (typeof value !== "string") continue;
    const key = S3_REF.exec(value)?.[2];
    if (key === undefined) continue;
    const upload = /^uploads\/[^/]+\/([^/]+)$/.exec(key)?.[1];
    shown[field] = upload ? `upload:${upload}` : `inline:${key.slice(key.lastIndexOf("/") + 1)}`;
  }
  return shown as ControlNetRequest;
}

/** Presents a job with fresh presigned URLs for its stored outputs. */
export type JobPresenter = (job: Job) => Promise<JobResource>;

export const presignedPresenter =
  (outputs: Pick<ObjectStore, "presignGet">, expiresSeconds: number): JobPresenter =>
  async (job) => {
    const keys = job.outputs.flatMap((o) => (o.key ? [o.key] : []));
    const urls = await Promise.all(
      keys.map(async (key) => [key, await outputs.presignGet(key, expiresSeconds)] as const),
    );
    return presentJob(job, new Map(urls));
  };
