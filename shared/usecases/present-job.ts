import type { Job } from "../domain/job.ts";
import type { ObjectStore } from "../ports/index.ts";
import type { JobResource } from "../schemas/api.ts";

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
    request: job.request,
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
    error: job.error,
  };
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
