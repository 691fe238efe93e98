import { z } from "zod";

/**
 * Configuration is read from environment variables once, at cold start. Each function parses only
 * the pieces it needs; a bad or missing value fails fast with every problem named.
 */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

const int = (min: number, max: number, fallback: number) => z.coerce.number().int().min(min).max(max).default(fallback);

export const tableConfig = z.object({ TABLE_NAME: z.string().min(1) });
export const jobsQueueConfig = z.object({ JOBS_QUEUE_URL: z.url() });

export const apiConfig = z.object({
  ...tableConfig.shape,
  ...jobsQueueConfig.shape,
  /** Largest accepted request body. API Gateway → Lambda allows 6 MB; a job row must fit DynamoDB's 400 KB. */
  MAX_BODY_BYTES: int(1024, 350_000, 262_144),
  DEFAULT_DEADLINE_SECONDS: int(60, 86_400, 3_600),
  /** A queued job not picked up within this time gets its queue message sent again by the reconciler. */
  QUEUED_RESEND_AFTER_SECONDS: int(1, 86_400, 300),
  IDEMPOTENCY_TTL_SECONDS: int(60, 7 * 86_400, 86_400),
});
export type ApiConfig = z.infer<typeof apiConfig>;

export const authorizerConfig = tableConfig;
export type AuthorizerConfig = z.infer<typeof authorizerConfig>;

export const reconcileConfig = z.object({
  ...tableConfig.shape,
  ...jobsQueueConfig.shape,
  QUEUED_RESEND_AFTER_SECONDS: int(1, 86_400, 300),
  RECONCILE_BATCH_SIZE: int(1, 1_000, 100),
});
export type ReconcileConfig = z.infer<typeof reconcileConfig>;

export function loadConfig<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  throw new ConfigError(result.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`));
}
