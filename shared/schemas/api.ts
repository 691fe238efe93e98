import * as z from "zod";
import { JOB_STATUSES, PROVIDER_CHOICES } from "../domain/job.ts";
import { checkControlNetRules, controlNetFields } from "./controlnet.ts";

/**
 * The public HTTP API's schemas. The OpenAPI document (`shared/http/openapi.ts`) is generated from
 * these same objects, so the documentation cannot drift from the validation.
 */

/**
 * Names of Object.prototype members (and `prototype`): as metadata keys they are dropped (`__proto__`)
 * or shadow built-ins (`constructor` broke the DynamoDB marshaller: a 500), so they are refused.
 */
const RESERVED_METADATA_KEYS = new Set([...Object.getOwnPropertyNames(Object.prototype), "prototype"]);

const metadataSchema = z
  .preprocess(
    (value, ctx) => {
      // zod skips an own `__proto__` key of a record silently (it cannot be copied); refuse it instead.
      if (typeof value === "object" && value !== null && Object.hasOwn(value, "__proto__")) {
        ctx.addIssue({
          code: "custom",
          path: ["__proto__"],
          message: 'metadata key "__proto__" is reserved',
          input: value,
        });
      }
      return value;
    },
    z
      .record(
        z
          .string()
          .min(1)
          .max(64)
          .regex(/^[A-Za-z0-9_.:-]+$/, "metadata keys use letters, digits and _ . : -")
          .refine((key) => !RESERVED_METADATA_KEYS.has(key), {
            error: (issue) =>
              `metadata key ${JSON.stringify(issue.input)} is reserved (a built-in object property name)`,
          }),
        z.string().max(512),
      )
      .refine((value) => Object.keys(value).length <= 20, "metadata holds at most 20 entries"),
  )
  .describe("Your own string key/values, echoed back on the job and in notifications (at most 20).");

export const orchestratorFields = {
  webhook: z
    .url({ protocol: /^https?$/, error: "webhook must be an http(s) URL" })
    .max(2048)
    .optional()
    .describe("Your notification URL for this job. Never sent to the provider."),
  track_id: z
    .string()
    .min(1)
    .max(128)
    .optional()
    .describe("Your own reference for this job, echoed back. Never sent to the provider."),
  provider: z
    .enum(PROVIDER_CHOICES)
    .default("auto")
    .describe("Where the job runs: auto (default), modelslab or self-hosted."),
  metadata: metadataSchema.optional(),
  notify_processing: z
    .boolean()
    .optional()
    .describe(
      "Also send a job.processing notification when the job starts running (terminal states always notify).",
    ),
  deadline_seconds: z
    .number()
    .int()
    .min(60)
    .max(86_400)
    .optional()
    .describe(
      "Seconds after submission by which the job must be terminal; defaults to the server's setting.",
    ),
};

export const submitJobBodySchema = z
  .strictObject({ ...controlNetFields, ...orchestratorFields })
  .superRefine(checkControlNetRules)
  .describe("A ControlNet job: every provider parameter except `key`, plus orchestrator fields.");
export type SubmitJobBody = z.infer<typeof submitJobBodySchema>;

export const ORCHESTRATOR_FIELD_NAMES = Object.keys(
  orchestratorFields,
) as (keyof typeof orchestratorFields)[];

const timestamp = z.iso.datetime();

export const attemptSchema = z.object({
  route: z.enum(["modelslab", "self-hosted"]),
  provider_id: z.string().nullable(),
  started_at: timestamp,
  ended_at: timestamp.nullable(),
  outcome: z.enum(["pending", "succeeded", "failed", "retried", "cancelled", "timed_out"]),
  reason: z.string().optional(),
});

export const outputSchema = z.object({
  url: z.string().describe("Where to download the image."),
  content_type: z.string().nullable(),
  bytes: z.number().int().nullable(),
  sha256: z.string().nullable(),
  width: z.number().int().nullable(),
  height: z.number().int().nullable(),
});

export const jobErrorSchema = z.object({ code: z.string(), message: z.string() });

export const jobResourceSchema = z.object({
  id: z.string(),
  status: z.enum(JOB_STATUSES),
  created_at: timestamp,
  updated_at: timestamp,
  track_id: z.string().nullable(),
  metadata: z.record(z.string(), z.string()),
  provider: z.enum(PROVIDER_CHOICES),
  request: z.strictObject(controlNetFields).describe("The validated ControlNet parameters."),
  attempts: z.array(attemptSchema),
  outputs: z.array(outputSchema),
  error: jobErrorSchema.nullable(),
});
export type JobResource = z.infer<typeof jobResourceSchema>;

export const jobListSchema = z.object({
  jobs: z.array(jobResourceSchema),
  next_cursor: z
    .string()
    .nullable()
    .describe("Pass as `cursor` to read the next page; null on the last page."),
});

export const listJobsQuerySchema = z.strictObject({
  status: z.enum(JOB_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().min(1).max(512).optional(),
});

export const errorResponseSchema = z.object({
  error: z.object({
    code: z.string().describe("Stable machine-readable code, e.g. VALIDATION_FAILED."),
    message: z.string(),
    details: z.array(z.object({ path: z.string(), message: z.string() })),
  }),
});

/** Idempotency-Key: printable ASCII without spaces, as the IETF draft and Stripe use it. */
export const idempotencyKeySchema = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7E]+$/, "Idempotency-Key must be 1-255 printable ASCII characters without spaces");
