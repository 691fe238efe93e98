import { OpenAPIRegistry, OpenApiGeneratorV31 } from "@asteasolutions/zod-to-openapi";
import { z } from "zod";
import {
  errorResponseSchema,
  jobListSchema,
  jobResourceSchema,
  listJobsQuerySchema,
  submitJobBodySchema,
} from "../schemas/api.ts";

/** Built from the same zod schemas that validate requests: there is no hand-written copy. */
export function buildOpenApiDocument(): Record<string, unknown> {
  const registry = new OpenAPIRegistry();
  const bearer = registry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer" });
  const Job = registry.register("Job", jobResourceSchema);
  const JobRequest = registry.register("JobRequest", submitJobBodySchema);
  const JobList = registry.register("JobList", jobListSchema);
  const ErrorResponse = registry.register("Error", errorResponseSchema);
  const security = [{ [bearer.name]: [] }];
  const jobIdParams = z.object({ id: z.string().describe("The job id returned by POST /v1/jobs.") });
  const errors = (...codes: number[]) =>
    Object.fromEntries(
      codes.map((code) => [code, { description: "Error", content: { "application/json": { schema: ErrorResponse } } }]),
    );
  const jobAnswer = (description: string) => ({ description, content: { "application/json": { schema: Job } } });

  registry.registerPath({
    method: "post",
    path: "/v1/jobs",
    summary: "Submit a ControlNet job",
    security,
    request: {
      headers: z.object({ "idempotency-key": z.string().max(255).optional() }),
      body: { required: true, content: { "application/json": { schema: JobRequest } } },
    },
    responses: { 202: jobAnswer("The job, queued (or the first job for a repeated Idempotency-Key)."), ...errors(400, 401, 409, 413, 415, 503) },
  });
  registry.registerPath({
    method: "get",
    path: "/v1/jobs",
    summary: "List your jobs, newest first",
    security,
    request: { query: listJobsQuerySchema },
    responses: { 200: { description: "A page of jobs.", content: { "application/json": { schema: JobList } } }, ...errors(400, 401) },
  });
  registry.registerPath({
    method: "get",
    path: "/v1/jobs/{id}",
    summary: "Read a job",
    security,
    request: { params: jobIdParams },
    responses: { 200: jobAnswer("The job."), ...errors(401, 404) },
  });
  registry.registerPath({
    method: "post",
    path: "/v1/jobs/{id}/cancel",
    summary: "Cancel a job that is not yet terminal",
    security,
    request: { params: jobIdParams },
    responses: { 200: jobAnswer("The cancelled job."), ...errors(401, 404, 409) },
  });

  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: "3.1.0",
    info: {
      title: "ControlNet job orchestrator",
      version: "1.0.0",
      description: "Submit ControlNet image jobs; they run on ModelsLab or self-hosted GPUs and land in your storage.",
    },
  }) as unknown as Record<string, unknown>;
}
