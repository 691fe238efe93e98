import { NotFoundError } from "../domain/errors.ts";
import { isJobId } from "../domain/ids.ts";
import type { Job } from "../domain/job.ts";
import { parseOrThrow } from "../domain/validation.ts";
import type { JobPage, JobStore } from "../ports/index.ts";
import { listJobsQuerySchema } from "../schemas/api.ts";

export const jobNotFound = (id: string) =>
  new NotFoundError("JOB_NOT_FOUND", `No job ${JSON.stringify(id.slice(0, 64))} for this API key.`);

/** A tenant only ever sees its own jobs; another tenant's job is reported as missing, not forbidden. */
export async function getTenantJob(jobs: JobStore, tenantId: string, id: string): Promise<Job> {
  if (!isJobId(id)) throw jobNotFound(id);
  const job = await jobs.get(id);
  if (!job || job.tenantId !== tenantId) throw jobNotFound(id);
  return job;
}

export async function listTenantJobs(jobs: JobStore, tenantId: string, query: unknown): Promise<JobPage> {
  const { status, limit, cursor } = parseOrThrow(listJobsQuerySchema, query, "The query");
  return jobs.listByTenant(tenantId, { limit, ...(status && { status }), ...(cursor && { cursor }) });
}
