import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { UnauthorizedError } from "../domain/errors.ts";
import type { Clock, JobStore, Queue } from "../ports/index.ts";
import { cancelJob } from "../usecases/cancel-job.ts";
import { presentJob } from "../usecases/present-job.ts";
import { getTenantJob, listTenantJobs } from "../usecases/read-jobs.ts";
import { type SubmitJobDeps, submitJob } from "../usecases/submit-job.ts";
import { buildOpenApiDocument } from "./openapi.ts";
import { header, readJsonBody } from "./request.ts";
import { type HttpResponse, json } from "./responses.ts";
import { Router } from "./router.ts";

export interface ApiDeps {
  jobs: JobStore;
  jobsQueue: Queue;
  clock: Clock;
  settings: SubmitJobDeps["settings"] & { maxBodyBytes: number };
  onDeferredSend?: SubmitJobDeps["onDeferredSend"];
}

interface RouteContext {
  event: APIGatewayProxyEventV2;
  params: Record<string, string>;
  /** Present on every authenticated route; the authorizer resolved it from the API key. */
  tenantId: () => string;
}

type RouteHandler = (context: RouteContext) => Promise<HttpResponse>;

/** The tenant the Lambda authorizer resolved; empty when the key was unknown (the authorizer never says why). */
export function tenantFromEvent(event: APIGatewayProxyEventV2): string | null {
  const context = (event.requestContext as { authorizer?: { lambda?: Record<string, unknown> } }).authorizer
    ?.lambda;
  const tenantId = context?.tenantId;
  return typeof tenantId === "string" && tenantId.length > 0 ? tenantId : null;
}

export function createApi(deps: ApiDeps): (event: APIGatewayProxyEventV2) => Promise<HttpResponse> {
  let openApi: string | undefined;
  const router = new Router<RouteHandler>()
    .add("POST", "/v1/jobs", async ({ event, tenantId }) => {
      const body = readJsonBody(event, deps.settings.maxBodyBytes);
      const { job, replayed } = await submitJob(deps, {
        tenantId: tenantId(),
        body,
        idempotencyKey: header(event, "idempotency-key"),
      });
      return json(202, presentJob(job), {
        location: `/v1/jobs/${job.id}`,
        ...(replayed && { "idempotent-replayed": "true" }),
      });
    })
    .add("GET", "/v1/jobs", async ({ event, tenantId }) => {
      const page = await listTenantJobs(deps.jobs, tenantId(), event.queryStringParameters ?? {});
      return json(200, { jobs: page.jobs.map(presentJob), next_cursor: page.nextCursor });
    })
    .add("GET", "/v1/jobs/{id}", async ({ params, tenantId }) =>
      json(200, presentJob(await getTenantJob(deps.jobs, tenantId(), params.id ?? ""))),
    )
    .add("POST", "/v1/jobs/{id}/cancel", async ({ params, tenantId }) =>
      json(200, presentJob(await cancelJob(deps, tenantId(), params.id ?? ""))),
    )
    .add("GET", "/v1/openapi.json", async () => {
      openApi ??= JSON.stringify(buildOpenApiDocument());
      return { statusCode: 200, headers: { "content-type": "application/json" }, body: openApi };
    });

  // Errors propagate: the function's middy chain maps them to HTTP (shared/lambda/http-errors.ts).
  return async (event) => {
    const method = event.requestContext.http.method.toUpperCase();
    const { handler, params } = router.match(method, event.rawPath ?? event.requestContext.http.path);
    return handler({
      event,
      params,
      tenantId: () => {
        const tenantId = tenantFromEvent(event);
        if (!tenantId) throw new UnauthorizedError();
        return tenantId;
      },
    });
  };
}
