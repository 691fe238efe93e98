import * as z from "zod/mini";
import type { ErrorCode } from "../domain/errors.ts";
import { NOTIFICATION_TYPES, type NotificationType } from "../domain/events.ts";
import { responseSchemas } from "../schemas/api.ts";
import { errorHeadersOf, httpStatusOf } from "./errors.ts";
import { pathParams, type ResponseBodyName, ROUTES, type RouteDeclaration } from "./routes.ts";

/**
 * The OpenAPI 3.1 document, built from the route table (`ROUTES`) and the same zod schemas that
 * validate requests (zod 4 emits JSON Schema 2020-12, which OpenAPI 3.1 uses as is): there is no
 * hand-written copy to drift. The response schemas are built here, on the first call
 * (`responseSchemas`), not when the API starts.
 *
 * Request bodies are inline, in their input form: a field with a default (`provider`) is optional to a
 * client, and code generators such as openapi-typescript make a defaulted property required in a
 * shared component schema, but not in a request body.
 */

type JsonSchema = Record<string, unknown>;

/** The component name of each response schema. */
const COMPONENT_NAMES: Record<ResponseBodyName, string> = {
  jobResource: "Job",
  jobList: "JobList",
  attempt: "Attempt",
  output: "Output",
  jobError: "JobError",
  errorResponse: "Error",
  notificationList: "NotificationList",
  upload: "Upload",
  webhookSettings: "WebhookSettings",
  webhookUrl: "WebhookUrl",
  webhookSecret: "WebhookSecret",
  apiKey: "ApiKey",
  apiKeyList: "ApiKeyList",
  callbackReceipt: "CallbackReceipt",
  openApiDocument: "OpenApiDocument",
  modelList: "ModelList",
};

const notificationComponent = (type: NotificationType) =>
  `${type
    .split(/[._]/)
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1))
    .join("")}Notification`;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** The JSON Schema of one schema, without the `$schema` a whole document would carry. */
function jsonSchema(schema: z.ZodMiniType, io: "input" | "output"): JsonSchema {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, {
    target: "draft-2020-12",
    io,
    unrepresentable: "any",
  }) as JsonSchema;
  return rest;
}

/** Every response schema as a component, cross-referenced by `$ref`. */
function componentSchemas(): Record<string, JsonSchema> {
  const responses = responseSchemas();
  const registry = z.registry<{ id: string }>();
  for (const [key, name] of Object.entries(COMPONENT_NAMES)) {
    registry.add(responses[key as ResponseBodyName], { id: name });
  }
  for (const type of NOTIFICATION_TYPES) {
    registry.add(responses.notificationPayload(type), { id: notificationComponent(type) });
  }
  const { schemas } = z.toJSONSchema(registry, {
    target: "draft-2020-12",
    io: "output",
    unrepresentable: "any",
    uri: (id) => `#/components/schemas/${id}`,
  }) as { schemas: Record<string, JsonSchema> };
  return Object.fromEntries(
    Object.entries(schemas).map(([name, { $schema: _, $id: __, ...schema }]) => [name, schema]),
  );
}

function parameters(route: RouteDeclaration): JsonSchema[] {
  const declared = route.request?.params ?? {};
  const path = pathParams(route.path).map((name) => ({
    name,
    in: "path",
    required: true,
    description: declared[name],
    schema: { type: "string" },
  }));
  const querySchema = route.request?.query && jsonSchema(route.request.query, "input");
  const required = new Set((querySchema?.required as string[] | undefined) ?? []);
  const query = Object.entries((querySchema?.properties as Record<string, JsonSchema> | undefined) ?? {}).map(
    ([name, { description, ...schema }]) => ({
      name,
      in: "query",
      required: required.has(name),
      ...(description !== undefined && { description }),
      schema,
    }),
  );
  const headers = Object.entries(route.request?.headers ?? {}).map(([name, header]) => ({
    name,
    in: "header",
    required: header.required,
    description: header.description,
    schema: jsonSchema(header.schema, "input"),
  }));
  return [...path, ...query, ...headers];
}

/** The error answers of a route: its codes (and INTERNAL) by status, each status's codes an enum. */
function errorResponses(codes: readonly ErrorCode[]): Record<string, JsonSchema> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set<ErrorCode>([...codes, "INTERNAL"])) {
    const status = httpStatusOf(code);
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, statusCodes]) => {
      const headers = Object.assign({}, ...statusCodes.map(errorHeadersOf)) as Record<string, string>;
      return [
        String(status),
        {
          description: statusCodes.join(", "),
          ...(Object.keys(headers).length > 0 && {
            headers: Object.fromEntries(
              Object.entries(headers).map(([name, description]) => [
                name,
                { description, required: true, schema: { type: "string" } },
              ]),
            ),
          }),
          content: {
            "application/json": {
              schema: {
                allOf: [
                  ref("Error"),
                  {
                    type: "object",
                    required: ["error"],
                    properties: {
                      error: {
                        type: "object",
                        required: ["code"],
                        properties: { code: { type: "string", enum: statusCodes } },
                      },
                    },
                  },
                ],
              },
            },
          },
        },
      ];
    }),
  );
}

function operation(route: RouteDeclaration): JsonSchema {
  const params = parameters(route);
  return {
    operationId: route.operationId,
    tags: [route.tag],
    summary: route.summary,
    ...(route.description && { description: route.description }),
    security: route.auth === "apiKey" ? [{ bearer: [] }] : [],
    ...(params.length > 0 && { parameters: params }),
    ...(route.request?.body && {
      requestBody: {
        required: true,
        content: { "application/json": { schema: jsonSchema(route.request.body, "input") } },
      },
    }),
    responses: {
      ...Object.fromEntries(
        Object.entries(route.responses).map(([status, response]) => [
          status,
          {
            description: response.description,
            ...(response.headers && {
              headers: Object.fromEntries(
                Object.entries(response.headers).map(([name, header]) => [
                  name,
                  { description: header.description, required: header.required, schema: { type: "string" } },
                ]),
              ),
            }),
            ...(response.body && {
              content: { "application/json": { schema: ref(COMPONENT_NAMES[response.body]) } },
            }),
          },
        ]),
      ),
      ...errorResponses(route.errors),
    },
  };
}

/** The notifications a tenant's endpoint receives, signed per Standard Webhooks. */
function webhooks(): JsonSchema {
  const header = (name: string, description: string) => ({
    name,
    in: "header",
    required: true,
    description,
    schema: { type: "string" },
  });
  return Object.fromEntries(
    NOTIFICATION_TYPES.map((type) => [
      type,
      {
        post: {
          operationId: `notify${notificationComponent(type).replace(/Notification$/, "")}`,
          tags: ["notifications"],
          summary: `The job reached ${type.slice("job.".length)}`,
          description:
            "Sent to the job's `webhook`, else to the tenant's default endpoint. Retried with backoff until a 2xx answer (or 410) and then sent to the dead-letter queue; every try and replay carries the same webhook-id.",
          parameters: [
            header("webhook-id", "The same on every try and replay of this event: deduplicate on it."),
            header("webhook-timestamp", "Seconds since the epoch when this try was signed."),
            header(
              "webhook-signature",
              "Space-separated v1,<base64 HMAC-SHA256> signatures, one per secret in force (Standard Webhooks).",
            ),
          ],
          requestBody: {
            required: true,
            content: { "application/json": { schema: ref(notificationComponent(type)) } },
          },
          responses: {
            "2XX": { description: "Received: no more tries." },
            "410": { description: "Gone: no more tries for this event." },
            default: { description: "Anything else, or no answer within 15 s: tried again later." },
          },
        },
      },
    ]),
  );
}

export function buildOpenApiDocument(routes: readonly RouteDeclaration[] = ROUTES): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const route of routes) {
    paths[route.path] ??= {};
    (paths[route.path] as Record<string, JsonSchema>)[route.method.toLowerCase()] = operation(route);
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "ControlNet job orchestrator",
      version: "1.0.0",
      description:
        "Submit ControlNet image jobs; they run on ModelsLab (or self-hosted GPUs) and are stored for you. Every error answers `{error: {code, message, details}}`; an unknown path answers 404 ROUTE_NOT_FOUND, a known path with another method 405 METHOD_NOT_ALLOWED.",
    },
    servers: [{ url: "/", description: "The API that serves this document." }],
    tags: [...new Set(routes.map((route) => route.tag))].map((name) => ({ name })),
    paths,
    webhooks: webhooks(),
    components: {
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description:
            'Your API key. A request without an Authorization header is refused by API Gateway itself: 401 with the body {"message":"Unauthorized"}.',
        },
      },
      schemas: componentSchemas(),
    },
  };
}
