/**
 * ECS entry point: configuration from the environment (parsed once), launchWorker(), SIGTERM drain.
 * A worker that cannot work (CUDA asked for and missing, a failed model sync) stays up, answering 503
 * with the reason on its health endpoint, so that ECS marks the task unhealthy and replaces it and the
 * reason is there to read; without a health endpoint it exits 1.
 */
import * as z from "zod";
import { modelCatalogJson } from "../../shared/schemas/model-catalog.ts";
import { DEFAULT_IMAGE_DOWNLOADS } from "./images.ts";
import { jsonLogger, launchWorker } from "./start.ts";

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === "" ? null : v.trim()));

export const workerConfigSchema = z.object({
  FALLBACK_QUEUE_URL: z.string().min(1),
  RESULTS_QUEUE_URL: z.string().min(1),
  OUTPUTS_BUCKET: z.string().min(1),
  /**
   * The self-hosted model catalog as JSON (shared/schemas/model-catalog.ts): each model's id, kind,
   * ControlNets, annotator weights, upscaler and safety checker, and the S3 prefix it is synced from.
   */
  SELF_HOSTED_MODELS: z.string().superRefine((text, ctx) => {
    const parsed = modelCatalogJson.safeParse(text);
    if (!parsed.success) {
      for (const issue of parsed.error.issues)
        ctx.addIssue({ code: "custom", message: `${issue.path.join(".") || "(root)"}: ${issue.message}` });
    }
  }),
  /** The models root: one folder per catalog entry (`<MODEL_DIR>/<id>`). */
  MODEL_DIR: optionalString,
  /** Models kept loaded at once; a job naming another closes the least recently used. */
  OPEN_MODELS: z.coerce.number().int().min(1).max(16).default(1),
  HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  EXECUTION_PROVIDER: z.enum(["auto", "cuda", "cpu"]).default("auto"),
  VISIBILITY_TIMEOUT_SECONDS: z.coerce.number().int().min(30).max(43_200).default(120),
  /** Keep under the task definition's stopTimeout (at most 120 s on Fargate/ECS). */
  DRAIN_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(600).default(90),
  MAX_STEPS: z.coerce.number().int().min(1).max(150).optional(),
  /**
   * The address policy of input image downloads, as the Lambdas' `NETWORK_POLICY`: `aws` (https,
   * public addresses only) in AWS, `local` for the local stack, where the S3 emulator is on loopback.
   */
  NETWORK_POLICY: z.enum(["aws", "local"]).default(DEFAULT_IMAGE_DOWNLOADS.mode),
  INPUT_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(512 * 1024 * 1024)
    .default(DEFAULT_IMAGE_DOWNLOADS.maxBytes),
  INPUT_DOWNLOAD_TIMEOUT_SECONDS: z.coerce
    .number()
    .int()
    .min(1)
    .max(300)
    .default(DEFAULT_IMAGE_DOWNLOADS.timeoutMs / 1000),
});
export type WorkerConfig = z.infer<typeof workerConfigSchema>;

async function main(): Promise<void> {
  const parsed = workerConfigSchema.safeParse(process.env);
  if (!parsed.success) {
    jsonLogger("error", "invalid configuration", { issues: parsed.error.issues });
    process.exit(2);
  }
  const config = parsed.data;
  const worker = await launchWorker({
    fallbackQueueUrl: config.FALLBACK_QUEUE_URL,
    resultsQueueUrl: config.RESULTS_QUEUE_URL,
    outputsBucket: config.OUTPUTS_BUCKET,
    catalog: modelCatalogJson.parse(config.SELF_HOSTED_MODELS),
    modelDir: config.MODEL_DIR,
    openModels: config.OPEN_MODELS,
    executionProvider: config.EXECUTION_PROVIDER,
    healthPort: config.HEALTH_PORT,
    imageDownloads: {
      mode: config.NETWORK_POLICY,
      maxBytes: config.INPUT_MAX_BYTES,
      timeoutMs: config.INPUT_DOWNLOAD_TIMEOUT_SECONDS * 1000,
    },
    ...(config.MAX_STEPS ? { maxSteps: config.MAX_STEPS } : {}),
    service: {
      visibilityTimeoutSeconds: config.VISIBILITY_TIMEOUT_SECONDS,
      heartbeatSeconds: Math.max(5, Math.floor(config.VISIBILITY_TIMEOUT_SECONDS / 4)),
      drainTimeoutMs: config.DRAIN_TIMEOUT_SECONDS * 1000,
    },
  });
  worker.ready.catch(() => {
    if (!worker.healthUrl) process.exit(1);
  });
  const shutdown = (signal: string) => {
    jsonLogger("info", `${signal}: draining`, {});
    void worker.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        jsonLogger("error", "stop failed", { error: String(error) });
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
}

await main();
