import type * as z from "zod/mini";
import type {
  createApiKeyBodySchema,
  listJobsQuerySchema,
  responseSchemas,
  submitJobBodySchema,
  uploadBodySchema,
} from "../../../shared/schemas/api.ts";

/**
 * The API's types, taken from the server's own schemas (type imports only: none of the server's code
 * runs in the client). What a request takes is the schema's input; what an answer holds, its output.
 */
type Responses = ReturnType<typeof responseSchemas>;

/** A job request as `POST /v1/jobs` takes it. */
export type JobRequest = z.input<typeof submitJobBodySchema>;
export type Job = z.output<Responses["jobResource"]>;
export type JobStatus = Job["status"];
export type JobOutput = z.output<Responses["output"]>;
export type JobAttempt = z.output<Responses["attempt"]>;
export type JobList = z.output<Responses["jobList"]>;
export type ListJobsQuery = Partial<z.input<typeof listJobsQuerySchema>>;
export type NotificationList = z.output<Responses["notificationList"]>;
export type Notification = NotificationList["notifications"][number];
export type Upload = z.output<Responses["upload"]>;
export type UploadContentType = z.input<typeof uploadBodySchema>["content_type"];
export type WebhookSettings = z.output<Responses["webhookSettings"]>;
export type WebhookUrl = z.output<Responses["webhookUrl"]>;
export type WebhookSecret = z.output<Responses["webhookSecret"]>;
export type ApiKey = z.output<Responses["apiKey"]>;
export type ApiKeyList = z.output<Responses["apiKeyList"]>;
export type ModelList = z.output<Responses["modelList"]>;
export type CreateApiKeyRequest = z.input<typeof createApiKeyBodySchema>;
/** A notification's body (`type`, `timestamp`, `data`: the job as GET shows it), once verified. */
export type WebhookEvent = z.output<ReturnType<Responses["notificationPayload"]>>;

/** The image fields that take an upload (`ip_adapter_image` takes a URL only). */
export const UPLOADABLE_FIELDS = ["control_image", "init_image", "mask_image"] as const;
export type ImageField = (typeof UPLOADABLE_FIELDS)[number];

/**
 * A local image for an image field: bytes, a Blob, or a file (`{ path }` or a `file:` URL). A string
 * stays what the API takes as is (a URL, base64, `upload:<id>`).
 */
export type FileInput = Uint8Array | Blob | URL | { path: string };

/** A job request whose image fields may also be local files: `jobs.run` uploads them first. */
export type RunRequest = Omit<JobRequest, ImageField> & {
  [F in ImageField]?: JobRequest[F] | FileInput;
};

/** Where a queued job stands in the admission queue, when the API shows it. */
export interface QueuePlace {
  position: number;
  etaSeconds: number | null;
}
