import type { Job } from "../domain/job.ts";
import type { JobResource } from "../schemas/api.ts";

/** The job as every API answer (and later every notification) shows it. */
export function presentJob(job: Job): JobResource {
  return {
    id: job.id,
    status: job.status,
    created_at: job.createdAt,
    updated_at: job.updatedAt,
    track_id: job.trackId,
    metadata: job.metadata,
    provider: job.provider,
    request: job.request,
    attempts: job.attempts.map((a) => ({ ...a })),
    outputs: job.outputs.map(({ url, content_type, bytes, sha256, width, height }) => ({
      url,
      content_type,
      bytes,
      sha256,
      width,
      height,
    })),
    error: job.error,
  };
}
