import * as z from "zod/mini";
import {
  idempotencyKeySchema,
  listJobsQuerySchema,
  responseSchemas,
  submitJobBodySchema,
} from "../schemas/api.ts";

/**
 * The OpenAPI 3.1 document, built from the same zod schemas that validate requests (zod 4 emits
 * JSON Schema 2020-12, which OpenAPI 3.1 uses as is): there is no hand-written copy to drift. The
 * response schemas are built here, on the first call (`responseSchemas`), not when the API starts.
 */
export function buildOpenApiDocument(): Record<string, unknown> {
  const schema = (s: z.ZodMiniType, io: "input" | "output") =>
    z.toJSONSchema(s, { target: "draft-2020-12", io, unrepresentable: "any" });
  const responses = responseSchemas();
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
  const jsonContent = (name: string) => ({ "application/json": { schema: ref(name) } });
  const errors = (...codes: number[]) =>
    Object.fromEntries(codes.map((code) => [code, { description: "Error", content: jsonContent("Error") }]));
  const security = [{ bearer: [] }];
  const jobId = {
    name: "id",
    in: "path",
    required: true,
    schema: { type: "string" },
    description: "The job id.",
  };
  const query = schema(listJobsQuerySchema, "input") as { properties: Record<string, unknown> };

  return {
    openapi: "3.1.0",
    info: {
      title: "ControlNet job orchestrator",
      version: "1.0.0",
      description:
        "Submit ControlNet image jobs; they run on ModelsLab (or self-hosted GPUs) and are stored for you.",
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        JobRequest: schema(submitJobBodySchema, "input"),
        Job: schema(responses.jobResource, "output"),
        JobList: schema(responses.jobList, "output"),
        Error: schema(responses.errorResponse, "output"),
      },
    },
    paths: {
      "/v1/jobs": {
        post: {
          summary: "Submit a ControlNet job",
          security,
          parameters: [
            {
              name: "Idempotency-Key",
              in: "header",
              required: false,
              schema: schema(idempotencyKeySchema, "input"),
            },
          ],
          requestBody: { required: true, content: jsonContent("JobRequest") },
          responses: {
            202: {
              description: "The job, queued (or the first job for a repeated Idempotency-Key).",
              content: jsonContent("Job"),
            },
            ...errors(400, 401, 409, 413, 415, 503),
          },
        },
        get: {
          summary: "List your jobs, newest first",
          security,
          parameters: Object.entries(query.properties).map(([name, s]) => ({
            name,
            in: "query",
            required: false,
            schema: s,
          })),
          responses: {
            200: { description: "A page of jobs.", content: jsonContent("JobList") },
            ...errors(400, 401),
          },
        },
      },
      "/v1/jobs/{id}": {
        get: {
          summary: "Read a job",
          security,
          parameters: [jobId],
          responses: { 200: { description: "The job.", content: jsonContent("Job") }, ...errors(401, 404) },
        },
      },
      "/v1/jobs/{id}/cancel": {
        post: {
          summary: "Cancel a job that is not yet terminal",
          security,
          parameters: [jobId],
          responses: {
            200: { description: "The cancelled job.", content: jsonContent("Job") },
            ...errors(401, 404, 409),
          },
        },
      },
    },
  };
}
