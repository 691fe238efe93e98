import { randomUUID } from "node:crypto";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { ConflictError, UnauthorizedError, ValidationError } from "../domain/errors.ts";
import { sha256Hex } from "../domain/hash.ts";
import { isTerminal } from "../domain/job.ts";
import type { ModelCatalog } from "../domain/model-catalog.ts";
import { parseOrThrow } from "../domain/validation.ts";
import type {
  ApiKeyRecord,
  ApiKeyStore,
  Clock,
  JobStore,
  NotificationRecord,
  NotificationStore,
  Queue,
  WebhookSettingsStore,
} from "../ports/index.ts";
import { PROVIDER_UNSUPPORTED } from "../providers/registry.ts";
import { createApiKeyBodySchema, uploadBodySchema, webhookSettingsBodySchema } from "../schemas/api.ts";
import type { DispatchMessage, NotifyMessage } from "../schemas/messages.ts";
import { apiKeyPrefix, newApiKey, newWebhookSecret } from "../usecases/authenticate.ts";
import { awaitTerminalJob } from "../usecases/await-job.ts";
import { cancelJob } from "../usecases/cancel-job.ts";
import { presentModels } from "../usecases/list-models.ts";
import { replayNotification } from "../usecases/notify.ts";
import type { JobPresenter } from "../usecases/present-job.ts";
import { getTenantJob, listTenantJobs } from "../usecases/read-jobs.ts";
import {
  checkOutboundUrl,
  discardStagedInputs,
  type StageInputsDeps,
  stageInputs,
  uploadKey,
} from "../usecases/stage-inputs.ts";
import { type SubmitJobDeps, submitJob } from "../usecases/submit-job.ts";
import { buildOpenApiDocument } from "./openapi.ts";
import { preferredWaitSeconds } from "./prefer.ts";
import { header, readJsonBody } from "./request.ts";
import { type HttpResponse, json } from "./responses.ts";
import { Router } from "./router.ts";
import { type ApiOperationId, type ApiRoute, ROUTES } from "./routes.ts";

export interface ApiDeps {
  jobs: JobStore;
  jobsQueue: Queue<DispatchMessage>;
  clock: Clock;
  settings: SubmitJobDeps["settings"] & {
    maxBodyBytes: number;
    uploadUrlExpirySeconds: number;
    /** The longest `Prefer: wait=N` a submit honours; a longer one waits this long. */
    maxPreferWaitSeconds: number;
    maxApiKeysPerTenant: number;
  };
  /** How a `Prefer: wait` pauses between reads of the job; tests pass one that advances a fake clock. */
  sleep?: (ms: number) => Promise<void>;
  onDeferredSend?: SubmitJobDeps["onDeferredSend"];
  present: JobPresenter;
  /** Where a waiting job stands (shared/usecases/admission.ts `queuePosition`); null when it does not wait. */
  /** Takes a cancelled job's entry off its provider's waiting list. */
  leaveWaitingList?: (job: import("../domain/job.ts").Job) => Promise<void>;
  queuePosition?: (
    job: import("../domain/job.ts").Job,
  ) => Promise<{ position: number; etaSeconds: number | null } | null>;
  inputs: StageInputsDeps;
  notifications: NotificationStore;
  notifyQueue: Queue<NotifyMessage>;
  tenants: WebhookSettingsStore;
  apiKeys: ApiKeyStore;
  /** The self-hosted fleet's models (SELF_HOSTED_MODELS): what a pinned job is checked against, GET /v1/models. */
  models: ModelCatalog;
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

const sleepFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The most keys `GET /v1/api-keys` lists (above any MAX_API_KEYS_PER_TENANT allowed). */
const MAX_LISTED_API_KEYS = 100;

const presentApiKey = (record: ApiKeyRecord) => ({
  id: record.id,
  name: record.name,
  prefix: record.prefix,
  created_at: record.createdAt,
});

const presentNotification = (record: NotificationRecord) => ({
  id: record.id,
  type: record.type,
  created_at: record.createdAt,
  url: record.url,
  state: record.state,
  attempts: record.attempts,
});

/**
 * The API function: the routes of the table (`ROUTES`, shared/http/routes.ts) it serves, each bound to
 * its handler by operationId — the `satisfies` below fails to compile when a route has no handler or
 * a handler no route.
 */
export function createApi(deps: ApiDeps): (event: APIGatewayProxyEventV2) => Promise<HttpResponse> {
  let openApi: string | undefined;
  const handlers = {
    submitJob: async ({ event, tenantId }) => {
      // RFC 7240's wait counts from the request's arrival, so the submit's own work is part of it.
      const received = deps.clock.now();
      const asked = preferredWaitSeconds(header(event, "prefer"));
      const wait = asked === null ? null : Math.min(asked, deps.settings.maxPreferWaitSeconds);
      const body = readJsonBody(event, deps.settings.maxBodyBytes);
      const submitted = await submitJob(
        {
          ...deps,
          stage: (tenant, jobId, request) => stageInputs(deps.inputs, tenant, jobId, request),
          discard: (tenant, jobId, request) => discardStagedInputs(deps.inputs, tenant, jobId, request),
          checkWebhook: (url) => checkOutboundUrl(url, deps.inputs),
          unsupported: (provider, request) =>
            PROVIDER_UNSUPPORTED[provider]?.(request, { SELF_HOSTED_MODELS: deps.models }) ?? [],
        },
        { tenantId: tenantId(), body, idempotencyKey: header(event, "idempotency-key") },
      );
      const job =
        wait === null
          ? submitted.job
          : await awaitTerminalJob(
              { jobs: deps.jobs, clock: deps.clock, sleep: deps.sleep ?? sleepFor },
              submitted.job,
              new Date(received.getTime() + wait * 1000),
            );
      return json(isTerminal(job.status) ? 200 : 202, await deps.present(job), {
        location: `/v1/jobs/${job.id}`,
        ...(submitted.replayed && { "idempotent-replayed": "true" }),
        ...(wait !== null && { "preference-applied": `wait=${wait}` }),
      });
    },
    listJobs: async ({ event, tenantId }) => {
      const page = await listTenantJobs(deps.jobs, tenantId(), event.queryStringParameters ?? {});
      return json(200, {
        jobs: await Promise.all(page.jobs.map(deps.present)),
        next_cursor: page.nextCursor,
      });
    },
    getJob: async ({ params, tenantId }) => {
      const job = await getTenantJob(deps.jobs, tenantId(), params.id ?? "");
      const [shown, queue] = await Promise.all([deps.present(job), deps.queuePosition?.(job) ?? null]);
      return json(
        200,
        queue ? { ...shown, queue: { position: queue.position, eta_seconds: queue.etaSeconds } } : shown,
      );
    },
    cancelJob: async ({ params, tenantId }) =>
      json(200, await deps.present(await cancelJob(deps, tenantId(), params.id ?? ""))),
    listJobNotifications: async ({ params, tenantId }) => {
      const job = await getTenantJob(deps.jobs, tenantId(), params.id ?? "");
      const records = await deps.notifications.listForJob(job.id);
      return json(200, { notifications: records.map(presentNotification) });
    },
    replayJobNotifications: async ({ params, tenantId }) => {
      const job = await getTenantJob(deps.jobs, tenantId(), params.id ?? "");
      const records = (await deps.notifications.listForJob(job.id)).filter((r) => r.url !== null);
      if (records.length === 0) {
        throw new ConflictError(
          "NOTHING_TO_REPLAY",
          `Job ${job.id} has no notification with an endpoint to send again.`,
        );
      }
      const replayed = await Promise.all(
        records.map((record) => replayNotification({ ...deps, notifyQueue: deps.notifyQueue }, record)),
      );
      return json(202, { notifications: replayed.map(presentNotification) });
    },
    createUpload: async ({ event, tenantId }) => {
      const { content_type } = parseOrThrow(
        uploadBodySchema,
        readJsonBody(event, 4096),
        "The upload request",
      );
      const uploadId = randomUUID();
      const expires = deps.settings.uploadUrlExpirySeconds;
      const url = await deps.inputs.inputs.presignPut(uploadKey(tenantId(), uploadId), content_type, expires);
      return json(201, {
        upload_id: uploadId,
        image: `upload:${uploadId}`,
        upload_url: url,
        method: "PUT",
        headers: { "content-type": content_type },
        expires_at: new Date(deps.clock.now().getTime() + expires * 1000).toISOString(),
      });
    },
    listModels: async ({ tenantId }) => {
      tenantId();
      return json(200, presentModels(deps.models));
    },
    getWebhookSettings: async ({ tenantId }) => {
      const settings = await deps.tenants.getWebhookSettings(tenantId());
      return json(200, {
        url: settings.url,
        secrets: settings.secrets.map(({ createdAt, retiresAt }) => ({
          created_at: createdAt,
          retires_at: retiresAt,
        })),
      });
    },
    setWebhookUrl: async ({ event, tenantId }) => {
      const { url } = parseOrThrow(
        webhookSettingsBodySchema,
        readJsonBody(event, 4096),
        "The webhook settings",
      );
      const problem = url === null ? null : await checkOutboundUrl(url, deps.inputs);
      if (problem) {
        throw new ValidationError("The webhook settings are invalid: url.", [
          { path: "url", message: problem },
        ]);
      }
      await deps.tenants.setWebhookUrl(tenantId(), url);
      return json(200, { url });
    },
    rotateWebhookSecret: async ({ tenantId }) => {
      // The new secret is shown once; the previous ones keep signing for 24 h so receivers can switch.
      const secret = newWebhookSecret();
      const now = deps.clock.now();
      await deps.tenants.addWebhookSecret(tenantId(), secret, now, new Date(now.getTime() + 86_400_000));
      return json(201, {
        secret,
        previous_secrets_retire_at: new Date(now.getTime() + 86_400_000).toISOString(),
      });
    },
    createApiKey: async ({ event, tenantId }) => {
      // The body is optional: a bare POST creates an unnamed key.
      const { name } = event.body
        ? parseOrThrow(createApiKeyBodySchema, readJsonBody(event, 4096), "The API key request")
        : {};
      const key = newApiKey();
      const record = await deps.apiKeys.createApiKey(
        tenantId(),
        { keyHash: sha256Hex(key), prefix: apiKeyPrefix(key), name: name ?? null },
        deps.settings.maxApiKeysPerTenant,
      );
      return json(201, { ...presentApiKey(record), key });
    },
    listApiKeys: async ({ tenantId }) => {
      // Listing reads no more than a tenant may create, plus the operator tools' keys up to a bound.
      const records = await deps.apiKeys.listApiKeys(tenantId(), MAX_LISTED_API_KEYS);
      return json(200, { api_keys: records.map(presentApiKey) });
    },
    revokeApiKey: async ({ params, tenantId }) => {
      await deps.apiKeys.revokeApiKey(tenantId(), params.id ?? "");
      return { statusCode: 204, headers: {}, body: "" };
    },
    getOpenApiDocument: async () => {
      openApi ??= JSON.stringify(buildOpenApiDocument());
      return { statusCode: 200, headers: { "content-type": "application/json" }, body: openApi };
    },
  } satisfies Record<ApiOperationId, RouteHandler>;

  const router = new Router<RouteHandler>();
  for (const route of ROUTES.filter((route): route is ApiRoute => route.servedBy === "Api")) {
    router.add(route.method, route.path, handlers[route.operationId]);
  }

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
