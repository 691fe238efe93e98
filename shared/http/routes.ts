import * as z from "zod/mini";
import type { ErrorCode } from "../domain/errors.ts";
import {
  createApiKeyBodySchema,
  idempotencyKeySchema,
  listJobsQuerySchema,
  type responseSchemas,
  submitJobBodySchema,
  uploadBodySchema,
  webhookSettingsBodySchema,
} from "../schemas/api.ts";
import { CALLBACK_ROUTE } from "./callback-route.ts";

/**
 * Every HTTP route of the service, declared once as data. The API function's router
 * (`shared/http/api.ts`, which binds one handler per `operationId`), the OpenAPI document
 * (`shared/http/openapi.ts`) and the CDK routes (`infra/functions.ts`) are all derived from it.
 *
 * Pure data: it imports schemas, not use cases, so infra can read it without bundling handlers.
 * Response bodies are named, not built: their schemas are built on the first request for the OpenAPI
 * document (`responseSchemas`), not at cold start.
 */

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/** A response body, by its schema's name in `responseSchemas()` (a component of the OpenAPI document). */
export type ResponseBodyName = Exclude<keyof ReturnType<typeof responseSchemas>, "notificationPayload">;

export interface ResponseDeclaration {
  readonly description: string;
  readonly body?: ResponseBodyName;
  /** Header name → what it says; `required` when every such answer carries it. */
  readonly headers?: Readonly<Record<string, { readonly description: string; readonly required: boolean }>>;
}

export interface HeaderDeclaration {
  readonly schema: z.ZodMiniType;
  readonly description: string;
  readonly required: boolean;
}

interface RouteFields {
  /** Unique; the API binds its handler by it. */
  readonly operationId: string;
  readonly method: HttpMethod;
  /** API Gateway's syntax: `{name}` is one path segment. */
  readonly path: `/${string}`;
  /** The function that serves it (a row of `FUNCTIONS`, infra/functions.ts). */
  readonly servedBy: "Api" | "Callback";
  readonly tag: string;
  readonly summary: string;
  readonly description?: string;
  readonly request?: {
    /** Each `{name}` of the path → what it is. */
    readonly params?: Readonly<Record<string, string>>;
    /** The query, validated with this schema. */
    readonly query?: z.ZodMiniObject;
    /** A JSON body, validated with this schema. */
    readonly body?: z.ZodMiniType;
    readonly headers?: Readonly<Record<string, HeaderDeclaration>>;
  };
  /** The success answers, by status. */
  readonly responses: Readonly<Record<number, ResponseDeclaration>>;
  /**
   * The error codes it can answer (INTERNAL, which any route can, is added by the document); their
   * statuses follow from their kinds (`httpStatusOf`, shared/http/errors.ts).
   */
  readonly errors: readonly ErrorCode[];
}

export type RouteDeclaration = RouteFields &
  (
    | { readonly auth: "apiKey" }
    | {
        readonly auth: "none";
        /** Why it needs no API key: the acknowledgement of cdk-nag's AwsSolutions-APIG4 on the route. */
        readonly unauthenticatedBecause: string;
      }
  );

/** What reading a JSON body can refuse (`readJsonBody`, shared/http/request.ts), and the body's schema. */
const JSON_BODY_ERRORS = [
  "PAYLOAD_TOO_LARGE",
  "UNSUPPORTED_MEDIA_TYPE",
  "INVALID_JSON",
  "INVALID_ENCODING",
  "VALIDATION_FAILED",
] as const satisfies readonly ErrorCode[];

/** The headers of a submit's answer, finished or not. */
const SUBMIT_HEADERS = {
  Location: { description: "The job's URL: /v1/jobs/{id}.", required: true },
  "Idempotent-Replayed": {
    description: "`true` when this answers an earlier request with the same Idempotency-Key.",
    required: false,
  },
  "Preference-Applied": {
    description: "`wait=N` (RFC 7240) when the request's `Prefer: wait` was honoured: N is the wait applied.",
    required: false,
  },
} as const;

const JOB_ID = { id: "The job id (a ULID), as POST /v1/jobs answered it." };

export const ROUTES = [
  {
    operationId: "submitJob",
    method: "POST",
    path: "/v1/jobs",
    servedBy: "Api",
    auth: "apiKey",
    tag: "jobs",
    summary: "Submit a ControlNet job",
    description:
      "Images given as URLs must be reachable under the deployment's address rules (in AWS: https and public addresses only); a `webhook` URL too.",
    request: {
      body: submitJobBodySchema,
      headers: {
        "Idempotency-Key": {
          schema: idempotencyKeySchema,
          description:
            "The same key and body within its lifetime answer the first job again (`Idempotent-Replayed: true`); the same key with another body is 409.",
          required: false,
        },
        Prefer: {
          schema: z.string(),
          description:
            "`wait=N` (RFC 7240): hold the answer up to N seconds from the request's arrival (at most `MAX_PREFER_WAIT_SECONDS`, 20 by default; a longer wait waits that long) for the job to finish. Other preferences, and a `wait` that is not a number of seconds, are ignored.",
          required: false,
        },
      },
    },
    responses: {
      200: {
        description:
          "With `Prefer: wait=N`: the job, finished (succeeded, failed or cancelled) within the wait.",
        body: "jobResource",
        headers: SUBMIT_HEADERS,
      },
      202: {
        description:
          "The job, queued (or still running when a `Prefer: wait` ran out); or the first job of a repeated Idempotency-Key.",
        body: "jobResource",
        headers: SUBMIT_HEADERS,
      },
    },
    errors: [
      ...JSON_BODY_ERRORS,
      "INVALID_IDEMPOTENCY_KEY",
      "UNAUTHORIZED",
      "IDEMPOTENCY_KEY_REUSED",
      "STORE_UNAVAILABLE",
      "IDEMPOTENCY_RECORD_ORPHANED",
    ],
  },
  {
    operationId: "listJobs",
    method: "GET",
    path: "/v1/jobs",
    servedBy: "Api",
    auth: "apiKey",
    tag: "jobs",
    summary: "List your jobs, newest first",
    request: { query: listJobsQuerySchema },
    responses: { 200: { description: "A page of jobs.", body: "jobList" } },
    errors: ["VALIDATION_FAILED", "INVALID_CURSOR", "UNAUTHORIZED", "STORE_UNAVAILABLE"],
  },
  {
    operationId: "getJob",
    method: "GET",
    path: "/v1/jobs/{id}",
    servedBy: "Api",
    auth: "apiKey",
    tag: "jobs",
    summary: "Read a job",
    request: { params: JOB_ID },
    responses: { 200: { description: "The job.", body: "jobResource" } },
    errors: ["UNAUTHORIZED", "JOB_NOT_FOUND", "STORE_UNAVAILABLE"],
  },
  {
    operationId: "cancelJob",
    method: "POST",
    path: "/v1/jobs/{id}/cancel",
    servedBy: "Api",
    auth: "apiKey",
    tag: "jobs",
    summary: "Cancel a job that is not yet terminal",
    request: { params: JOB_ID },
    responses: { 200: { description: "The cancelled job.", body: "jobResource" } },
    errors: ["UNAUTHORIZED", "JOB_NOT_FOUND", "JOB_ALREADY_TERMINAL", "STALE_WRITE", "STORE_UNAVAILABLE"],
  },
  {
    operationId: "listJobNotifications",
    method: "GET",
    path: "/v1/jobs/{id}/notifications",
    servedBy: "Api",
    auth: "apiKey",
    tag: "notifications",
    summary: "The job's notifications and every delivery try",
    request: { params: JOB_ID },
    responses: { 200: { description: "The job's notifications.", body: "notificationList" } },
    errors: ["UNAUTHORIZED", "JOB_NOT_FOUND", "STORE_UNAVAILABLE"],
  },
  {
    operationId: "replayJobNotifications",
    method: "POST",
    path: "/v1/jobs/{id}/notifications/replay",
    servedBy: "Api",
    auth: "apiKey",
    tag: "notifications",
    summary: "Send the job's notifications again (same webhook-id and event; output links signed afresh)",
    request: { params: JOB_ID },
    responses: { 202: { description: "The notifications, pending again.", body: "notificationList" } },
    errors: [
      "UNAUTHORIZED",
      "JOB_NOT_FOUND",
      "NOTHING_TO_REPLAY",
      "STALE_WRITE",
      "STORE_UNAVAILABLE",
      "QUEUE_UNAVAILABLE",
      "INVALID_QUEUE_MESSAGE",
    ],
  },
  {
    operationId: "createUpload",
    method: "POST",
    path: "/v1/uploads",
    servedBy: "Api",
    auth: "apiKey",
    tag: "uploads",
    summary: "A presigned PUT for an image, to use as upload:<upload_id>",
    request: { body: uploadBodySchema },
    responses: { 201: { description: "Where to PUT the image, and its reference.", body: "upload" } },
    errors: [...JSON_BODY_ERRORS, "UNAUTHORIZED"],
  },
  {
    operationId: "getWebhookSettings",
    method: "GET",
    path: "/v1/webhook",
    servedBy: "Api",
    auth: "apiKey",
    tag: "webhooks",
    summary: "Your default notification endpoint and the signing secrets in force",
    responses: { 200: { description: "The webhook settings.", body: "webhookSettings" } },
    errors: ["UNAUTHORIZED", "TENANT_NOT_FOUND", "STORE_UNAVAILABLE"],
  },
  {
    operationId: "setWebhookUrl",
    method: "PUT",
    path: "/v1/webhook",
    servedBy: "Api",
    auth: "apiKey",
    tag: "webhooks",
    summary: "Set (or remove, with null) your default notification endpoint",
    description:
      "The URL must meet the address rules deliveries follow (in AWS: https and public addresses only).",
    request: { body: webhookSettingsBodySchema },
    responses: { 200: { description: "The endpoint now in force.", body: "webhookUrl" } },
    errors: [...JSON_BODY_ERRORS, "UNAUTHORIZED", "TENANT_NOT_FOUND", "STORE_UNAVAILABLE"],
  },
  {
    operationId: "rotateWebhookSecret",
    method: "POST",
    path: "/v1/webhook/secret/rotate",
    servedBy: "Api",
    auth: "apiKey",
    tag: "webhooks",
    summary: "A new signing secret, shown once; the previous ones keep signing for 24 h",
    responses: { 201: { description: "The new secret.", body: "webhookSecret" } },
    errors: ["UNAUTHORIZED", "TENANT_NOT_FOUND", "STORE_UNAVAILABLE"],
  },
  {
    operationId: "createApiKey",
    method: "POST",
    path: "/v1/api-keys",
    servedBy: "Api",
    auth: "apiKey",
    tag: "api-keys",
    summary: "A new API key for your tenant, shown once",
    description:
      "The body (optional) may name the key. A tenant holds at most `MAX_API_KEYS_PER_TENANT` keys (20 by default).",
    request: { body: createApiKeyBodySchema },
    responses: { 201: { description: "The new key, its id and prefix.", body: "apiKey" } },
    errors: [
      ...JSON_BODY_ERRORS,
      "UNAUTHORIZED",
      "TENANT_NOT_FOUND",
      "API_KEY_LIMIT_REACHED",
      "API_KEY_EXISTS",
      "STORE_UNAVAILABLE",
    ],
  },
  {
    operationId: "listApiKeys",
    method: "GET",
    path: "/v1/api-keys",
    servedBy: "Api",
    auth: "apiKey",
    tag: "api-keys",
    summary: "Your API keys, oldest first: id, name and prefix only",
    responses: { 200: { description: "The keys.", body: "apiKeyList" } },
    errors: ["UNAUTHORIZED", "STORE_UNAVAILABLE"],
  },
  {
    operationId: "revokeApiKey",
    method: "DELETE",
    path: "/v1/api-keys/{id}",
    servedBy: "Api",
    auth: "apiKey",
    tag: "api-keys",
    summary: "Revoke an API key (the one in use too, but never the last)",
    description:
      "The key stops resolving at once; a gateway that has it cached (5 minutes, the authorizer's cache) may still let it through until that entry expires.",
    request: { params: { id: "The key's id, as POST or GET /v1/api-keys gave it." } },
    responses: { 204: { description: "Revoked." } },
    errors: ["UNAUTHORIZED", "API_KEY_NOT_FOUND", "LAST_API_KEY", "STORE_UNAVAILABLE"],
  },
  {
    operationId: "listModels",
    method: "GET",
    path: "/v1/models",
    servedBy: "Api",
    auth: "apiKey",
    tag: "models",
    summary: "The self-hosted models and what each can do; ModelsLab takes its own model ids",
    description:
      "Each self-hosted model: its kind, ControlNets, auto_hint annotators, sizes, upscale, safety checker and schedulers. A `self-hosted` job naming another model_id, or asking for something its model lacks, is refused with 400 VALIDATION_FAILED naming each parameter; an `auto` job goes to the fleet only when its model honours every parameter.",
    responses: { 200: { description: "The catalog.", body: "modelList" } },
    errors: ["UNAUTHORIZED"],
  },
  {
    operationId: "getOpenApiDocument",
    method: "GET",
    path: "/v1/openapi.json",
    servedBy: "Api",
    auth: "none",
    unauthenticatedBecause:
      "the OpenAPI document describes the public API; it holds no tenant data and clients read it before they have a key",
    tag: "meta",
    summary: "This document",
    responses: { 200: { description: "The OpenAPI 3.1 document.", body: "openApiDocument" } },
    errors: [],
  },
  CALLBACK_ROUTE,
] as const satisfies readonly RouteDeclaration[];

export type Route = (typeof ROUTES)[number];
/** The routes the API function serves, and their operation ids (one handler each, `createApi`). */
export type ApiRoute = Extract<Route, { servedBy: "Api" }>;
export type ApiOperationId = ApiRoute["operationId"];

export const routeKey = (route: Pick<RouteDeclaration, "method" | "path">): string =>
  `${route.method} ${route.path}`;

/** The names of a path's `{name}` segments, in order. */
export const pathParams = (path: string): string[] =>
  [...path.matchAll(/\{([^}/]+)\}/g)].map((match) => match[1] as string);
