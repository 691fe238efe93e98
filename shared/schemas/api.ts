import * as z from "zod/mini";
import { CONCURRENCY_KEY_PATTERN, MAX_WAIT_SECONDS_LIMIT, PRIORITIES } from "../domain/admission.ts";
import { ERROR_CODES } from "../domain/errors.ts";
import { NOTIFICATION_TYPES } from "../domain/events.ts";
import { FLEET_REFUSALS_SUMMARY } from "../domain/fleet-capabilities.ts";
import { JOB_STATUSES, PROVIDER_CHOICES } from "../domain/job.ts";
import { MODEL_KINDS } from "../domain/model-catalog.ts";
import { PROVIDER_IDS } from "../domain/providers.ts";
import {
  CONTROLNET_RULES,
  CONTROLNET_RULES_JSON_SCHEMA,
  checkControlNetRules,
  controlNetFields,
} from "./controlnet.ts";
import { httpUrl } from "./http-url.ts";
import "./mini-locale.ts";

/**
 * The public HTTP API's schemas. The OpenAPI document (`shared/http/openapi.ts`) is generated from
 * these same objects, so the documentation cannot drift from the validation.
 *
 * zod/mini, as controlnet.ts: the API function's bundle carries no classic zod. The request schemas are
 * built at import (every submit parses with them); the response schemas, which only document the API,
 * are built on the first request for the OpenAPI document (`responseSchemas`), not at cold start.
 */

/**
 * Names of Object.prototype members (and `prototype`): as metadata keys they are dropped (`__proto__`)
 * or shadow built-ins (`constructor` broke the DynamoDB marshaller: a 500), so they are refused.
 */
const RESERVED_METADATA_KEYS = new Set([...Object.getOwnPropertyNames(Object.prototype), "prototype"]);
export const MAX_METADATA_ENTRIES = 20;

const metadataSchema = z
  .pipe(
    z.transform((value: unknown, ctx) => {
      // zod skips an own `__proto__` key of a record silently (it cannot be copied); refuse it instead.
      // (zod/mini's transform context has no addIssue: classic's is a shorthand for this push.)
      if (typeof value === "object" && value !== null && Object.hasOwn(value, "__proto__")) {
        ctx.issues.push({
          code: "custom",
          path: ["__proto__"],
          message: 'metadata key "__proto__" is reserved',
          input: value,
        });
      }
      return value;
    }),
    z
      .record(
        z.string().check(
          z.minLength(1),
          z.maxLength(64),
          z.regex(/^[A-Za-z0-9_.:-]+$/, "metadata keys use letters, digits and _ . : -"),
          z.refine((key: string) => !RESERVED_METADATA_KEYS.has(key), {
            error: (issue) =>
              `metadata key ${JSON.stringify(issue.input)} is reserved (a built-in object property name)`,
          }),
          z.meta({ not: { enum: [...RESERVED_METADATA_KEYS] } }),
        ),
        z.string().check(z.maxLength(512)),
      )
      .check(
        z.refine(
          (value) => Object.keys(value).length <= MAX_METADATA_ENTRIES,
          `metadata holds at most ${MAX_METADATA_ENTRIES} entries`,
        ),
        // zod has no size check for records: the refine above enforces it, this shows it.
        z.meta({ maxProperties: MAX_METADATA_ENTRIES }),
      ),
  )
  .check(
    z.describe(
      `Your own string key/values, echoed back on the job and in notifications (at most ${MAX_METADATA_ENTRIES}).`,
    ),
  );

export const orchestratorFields = {
  webhook: z
    .optional(httpUrl(2048))
    .check(z.describe("Your notification URL for this job. Never sent to the provider.")),
  track_id: z
    .optional(z.string().check(z.minLength(1), z.maxLength(128)))
    .check(z.describe("Your own reference for this job, echoed back. Never sent to the provider.")),
  provider: z
    ._default(z.enum(PROVIDER_CHOICES), "auto")
    .check(
      z.describe(
        `Where the job runs: auto (default: the primary provider, the fallback when it cannot take the job in time) or only on one provider: ${PROVIDER_IDS.join(", ")}. self-hosted refuses what its fleet cannot honour (400 VALIDATION_FAILED naming each): ${FLEET_REFUSALS_SUMMARY}. An auto job setting one of these never goes to the fallback.`,
      ),
    ),
  metadata: z.optional(metadataSchema),
  notify_processing: z
    .optional(z.boolean())
    .check(
      z.describe(
        "Also send a job.processing notification when the job starts running (terminal states always notify).",
      ),
    ),
  deadline_seconds: z
    .optional(z.number().check(z.int(), z.gte(60), z.lte(86_400)))
    .check(
      z.describe(
        "The run bound: seconds from the job's start (when a provider slot is free for it) by which it must be terminal; time spent waiting for a slot is bounded by max_wait_seconds instead. Defaults to the server's setting (DEFAULT_DEADLINE_SECONDS).",
      ),
    ),
  max_wait_seconds: z
    .optional(z.number().check(z.int(), z.gte(60), z.lte(MAX_WAIT_SECONDS_LIMIT)))
    .check(
      z.describe(
        "The wait bound: seconds after submission the job may wait for a provider slot before it fails WAIT_BOUND_EXCEEDED (an auto job expected to wait longer goes to the fallback when it can). Defaults to the server's setting (DEFAULT_MAX_WAIT_SECONDS).",
      ),
    ),
  concurrency_key: z
    .optional(z.string().check(z.regex(CONCURRENCY_KEY_PATTERN, "1 to 64 letters, digits or _ . : @ -")))
    .check(
      z.describe(
        "Your own end user (or any grouping): your jobs' share of the provider's slots is split fairly among keys.",
      ),
    ),
  priority: z
    .optional(z.enum(PRIORITIES))
    .check(z.describe("Order among your waiting jobs of the same concurrency_key (default normal).")),
};

export const submitJobBodySchema = z
  .strictObject({ ...controlNetFields, ...orchestratorFields })
  .check(z.superRefine(checkControlNetRules), z.meta(CONTROLNET_RULES_JSON_SCHEMA))
  .check(
    z.describe(
      [
        "A ControlNet job: every provider parameter except `key`, plus orchestrator fields. Rules across fields:",
        ...CONTROLNET_RULES.map((rule) => `- ${rule}`),
      ].join("\n"),
    ),
  );
export type SubmitJobBody = z.infer<typeof submitJobBodySchema>;

export const uploadBodySchema = z.strictObject({
  content_type: z.enum(["image/png", "image/jpeg", "image/webp"]),
});

export const webhookSettingsBodySchema = z.strictObject({
  url: z
    .nullable(httpUrl(2048))
    .check(z.describe("The default endpoint for your jobs' notifications; null removes it.")),
});

export const createApiKeyBodySchema = z.strictObject({
  name: z.optional(
    z
      .string()
      .check(
        z.minLength(1),
        z.maxLength(100),
        z.describe("Your label for the key, shown when keys are listed."),
      ),
  ),
});

export const ORCHESTRATOR_FIELD_NAMES = Object.keys(
  orchestratorFields,
) as (keyof typeof orchestratorFields)[];

/** The API's responses, for the OpenAPI document only: built on first use, then the same objects. */
function buildResponseSchemas() {
  const timestamp = z.iso.datetime();

  const attempt = z.object({
    route: z
      .enum(PROVIDER_IDS)
      .check(z.describe("The provider this attempt ran on (`provider` is what the job asked for).")),
    provider_id: z.nullable(z.string()),
    started_at: timestamp,
    ended_at: z.nullable(timestamp),
    outcome: z.enum(["pending", "succeeded", "failed", "retried", "cancelled", "timed_out"]),
    reason: z.optional(z.string()),
  });

  const output = z.object({
    url: z.string().check(z.describe("Where to download the image.")),
    content_type: z.nullable(z.string()),
    bytes: z.nullable(z.number().check(z.int())),
    sha256: z.nullable(z.string()),
    width: z.nullable(z.number().check(z.int())),
    height: z.nullable(z.number().check(z.int())),
  });

  const jobError = z.object({ code: z.string(), message: z.string() });

  const jobResource = z.object({
    id: z.string(),
    status: z.enum(JOB_STATUSES),
    created_at: timestamp,
    updated_at: timestamp,
    track_id: z.nullable(z.string()),
    metadata: z.record(z.string(), z.string()),
    provider: z.enum(PROVIDER_CHOICES),
    request: z
      .strictObject(controlNetFields)
      .check(
        z.describe(
          "The validated ControlNet parameters. Stored images are shown by reference: an upload as `upload:<id>`, a base64 image as `inline:<field>.<ext>`.",
        ),
      ),
    webhook: z.nullable(z.string()).check(z.describe("The job's own notification URL, if it gave one.")),
    deadline_seconds: z
      .number()
      .check(
        z.int(),
        z.describe(
          "The run bound (the default applied): seconds from the job's start by which it must be terminal. For a job submitted before wait and run bounds were separate: seconds from submission.",
        ),
      ),
    max_wait_seconds: z
      .nullable(z.number().check(z.int()))
      .check(z.describe("The wait bound applied (null for a job submitted before there was one).")),
    concurrency_key: z.nullable(z.string()),
    priority: z.enum(PRIORITIES),
    queue: z
      .optional(
        z.object({
          position: z
            .number()
            .check(
              z.int(),
              z.describe("Estimated place among every job waiting for the provider (1: admitted next)."),
            ),
          eta_seconds: z
            .nullable(z.number().check(z.int()))
            .check(
              z.describe(
                "Estimated seconds until it starts, from the measured slot turnover; null before any was measured.",
              ),
            ),
        }),
      )
      .check(z.describe("Only while the job waits for a provider slot (GET /v1/jobs/{id}).")),
    notify_processing: z.boolean(),
    attempts: z.array(attempt),
    outputs: z.array(output),
    seed: z
      .nullable(z.number().check(z.int()))
      .check(
        z.describe(
          "The seed the outputs were generated with; null until the job succeeded, or when the provider did not say.",
        ),
      ),
    nsfw_content_detected: z
      .nullable(z.boolean())
      .check(
        z.describe("Whether the provider flagged the outputs as NSFW; null where it did not report it."),
      ),
    error: z.nullable(jobError),
  });

  const jobList = z.object({
    jobs: z.array(jobResource),
    next_cursor: z
      .nullable(z.string())
      .check(z.describe("Pass as `cursor` to read the next page; null on the last page.")),
  });

  const errorResponse = z.object({
    error: z.object({
      code: z.enum(ERROR_CODES).check(z.describe("Stable machine-readable code (docs/errors.md).")),
      message: z.string(),
      details: z
        .array(z.object({ path: z.string(), message: z.string() }))
        .check(
          z.describe("What is wrong, field by field: at most the first 20 (each path and message clipped)."),
        ),
      details_total: z
        .int()
        .check(z.gte(0), z.describe("How many problems were found; more than details holds when clipped.")),
    }),
  });

  const notification = z.object({
    id: z.string().check(z.describe("The webhook-id of every try and replay of this event.")),
    type: z.enum(NOTIFICATION_TYPES),
    created_at: timestamp,
    url: z.nullable(z.string()).check(z.describe("Where it is sent; null when there was no endpoint.")),
    state: z.enum(["pending", "delivered", "failed", "gone", "no_endpoint"]),
    attempts: z.array(
      z.object({
        attempt: z.number().check(z.int()),
        at: timestamp,
        status: z.nullable(z.number().check(z.int())).check(z.describe("null: no answer came.")),
        error: z.nullable(z.string()),
        duration_ms: z.number().check(z.int()),
      }),
    ),
  });
  const notificationList = z.object({ notifications: z.array(notification) });

  const upload = z.object({
    upload_id: z.string(),
    image: z.string().check(z.describe("Put this in control_image, init_image or mask_image.")),
    upload_url: z.string().check(z.describe("PUT the image bytes here, with the headers below.")),
    method: z.literal("PUT"),
    headers: z.record(z.string(), z.string()),
    expires_at: timestamp,
  });

  const webhookSettings = z.object({
    url: z.nullable(z.string()),
    secrets: z.array(z.object({ created_at: timestamp, retires_at: z.nullable(timestamp) })),
  });
  const webhookUrl = z.object({ url: z.nullable(z.string()) });
  const webhookSecret = z.object({
    secret: z.string().check(z.describe("The new whsec_… signing secret; shown only here.")),
    previous_secrets_retire_at: timestamp,
  });

  const apiKeyFields = {
    id: z.string().check(z.describe("The key's id, to revoke it with DELETE /v1/api-keys/{id}.")),
    name: z.nullable(z.string()),
    prefix: z.string().check(z.describe("The key's first characters, to tell keys apart.")),
    created_at: timestamp,
  };
  const apiKey = z.object({
    ...apiKeyFields,
    key: z.string().check(z.describe("The API key; shown only here (only its hash is stored).")),
  });
  const apiKeyList = z.object({ api_keys: z.array(z.object(apiKeyFields)) });

  const callbackReceipt = z.object({
    received: z.literal(true),
    outcome: z.enum(["queued", "acknowledged"]),
  });

  const openApiDocument = z.record(z.string(), z.unknown());

  const strings = (description: string) => z.array(z.string()).check(z.describe(description));
  const modelList = z.object({
    self_hosted: z.array(
      z.object({
        model_id: z.string().check(z.describe("The model_id a job names to run on this model.")),
        kind: z.enum(MODEL_KINDS).check(z.describe("sd15 (SD 1.x), sd2 (SD 2.x) or sdxl.")),
        controlnets: strings("The controlnet_model names it has."),
        auto_hint: strings("The ControlNets whose auto_hint annotator runs here."),
        annotator_weights: strings("The weighted annotators it has weights for."),
        sizes: z.object({
          min: z.int(),
          max: z.int(),
          multiple_of: z
            .int()
            .check(
              z.describe(
                "width and height must be multiples of this on the self-hosted fleet (a traced UNet takes no other size).",
              ),
            ),
          native: z.int().check(z.describe("The resolution the model was trained at.")),
        }),
        upscale: z
          .nullable(z.object({ factor: z.int(), model_scale: z.int() }))
          .check(
            z.describe(
              'upscale: "yes" multiplies the size by factor (as the provider does; model_scale is the upscaler\'s own, resized to factor); null: refused.',
            ),
          ),
        safety_checker: z.boolean().check(z.describe('safety_checker: "yes" is honoured (else refused).')),
        schedulers: strings("The schedulers it runs."),
        karras_sigmas: strings('The schedulers with which use_karras_sigmas: "yes" is honoured.'),
        algorithm_types: strings("The algorithm_type values honoured (with DPMSolverMultistepScheduler)."),
      }),
    ),
    providers: z.object({
      modelslab: z.object({ model_ids: z.literal("any"), description: z.string() }),
    }),
  });

  /** The body of a client notification (Standard Webhooks), one per type. */
  const notificationPayload = (type: (typeof NOTIFICATION_TYPES)[number]) =>
    z.object({
      type: z.literal(type),
      timestamp: timestamp.check(z.describe("When the job reached this state.")),
      data: jobResource.check(z.describe("The job as GET /v1/jobs/{id} returns it.")),
    });

  return {
    attempt,
    output,
    jobError,
    jobResource,
    jobList,
    errorResponse,
    notificationList,
    upload,
    webhookSettings,
    webhookUrl,
    webhookSecret,
    apiKey,
    apiKeyList,
    callbackReceipt,
    openApiDocument,
    modelList,
    notificationPayload,
  };
}

let responses: ReturnType<typeof buildResponseSchemas> | undefined;

/**
 * The response schemas (a job, a page of jobs, an error...). Nothing validates responses, so they are
 * built when the OpenAPI document first needs them, not at cold start; later calls get the same objects.
 */
export function responseSchemas(): ReturnType<typeof buildResponseSchemas> {
  responses ??= buildResponseSchemas();
  return responses;
}
export type JobResource = z.infer<ReturnType<typeof responseSchemas>["jobResource"]>;

export const listJobsQuerySchema = z.strictObject({
  status: z.optional(z.enum(JOB_STATUSES)),
  limit: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(100)), 20),
  cursor: z.optional(z.string().check(z.minLength(1), z.maxLength(512))),
});

/** Idempotency-Key: printable ASCII without spaces, as the IETF draft and Stripe use it. */
export const idempotencyKeySchema = z
  .string()
  .check(
    z.minLength(1),
    z.maxLength(255),
    z.regex(/^[\x21-\x7E]+$/, "Idempotency-Key must be 1-255 printable ASCII characters without spaces"),
  );
