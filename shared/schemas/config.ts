import * as z from "zod/mini";
import { MAX_WAIT_SECONDS_LIMIT } from "../domain/admission.ts";
import { providersConfig } from "../providers/registry.ts";
import { selfHostedCatalogSettings } from "../providers/self-hosted.ts";
import { int, name, optionalSecret, SHARED_DEFAULTS } from "./config-fields.ts";
import "./mini-locale.ts";

/*
 * zod/mini, not classic zod, like every schema a Lambda function bundles: the same core (same parsing,
 * same issues), through tree-shakable functions rather than methods, so a function that parses nothing
 * but its environment (authorizer, callback) bundles only the zod it calls (each bundle's biggest
 * packages: `npm run bench:cold -- --explain`). English messages as with classic zod: `mini-locale.ts`.
 */

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

/** Defaults of the settings the CDK context also exposes (config-fields.ts, for the provider modules too). */
export { SHARED_DEFAULTS };

export const tableConfig = z.object({ TABLE_NAME: name() });
export const jobsQueueConfig = z.object({ JOBS_QUEUE_URL: z.url() });
/** Every function that releases a provider slot admits the next job through this queue. */
export const admissionsQueueConfig = z.object({ ADMISSIONS_QUEUE_URL: z.url() });
/** Read by the API (a new job's first check) and by every function that puts a job back in the queue. */
const queuedResendConfig = z.object({
  /** A queued job not picked up within this time gets its queue message sent again by the reconciler. */
  QUEUED_RESEND_AFTER_SECONDS: int(1, 86_400, 300),
});

/**
 * The business metrics (shared/ports/metrics.ts), written as EMF log lines: one namespace, the stage
 * as a dimension of every metric.
 */
export const metricsConfig = z.object({
  METRICS_NAMESPACE: z._default(name(), SHARED_DEFAULTS.METRICS_NAMESPACE),
  /** The deployment's stage (infra sets it); locally `local`. */
  STAGE: z._default(name(), "local"),
  /**
   * Per-tenant waiting gauges (WaitingJobsByTenant): off by default, since CloudWatch bills one
   * metric per tenant that ever waited.
   */
  METRICS_TENANT_GAUGES: z.pipe(
    z._default(z.enum(["true", "false"]), "false"),
    z.transform((value: "true" | "false") => value === "true"),
  ),
});
export type MetricsConfig = z.infer<typeof metricsConfig>;

/**
 * What every function that changes job states needs: the lifecycle bus, the notification outbox and
 * the metrics its terminal transitions record.
 */
export const lifecycleConfig = z.object({
  ...metricsConfig.shape,
  NOTIFICATIONS_QUEUE_URL: z.url(),
  EVENT_BUS_NAME: name(),
  /** A terminal job whose notify message was lost is re-announced by the reconciler after this. */
  NOTIFY_GRACE_SECONDS: int(1, 3_600, 60),
  /**
   * Which state changes go to EventBridge: `terminal` (succeeded, failed, cancelled), `all` (every
   * transition too) or `none` (webhooks only). EventBridge bills each event: `all` publishes one per
   * transition instead of one per job (`npm run bench` prices each choice).
   */
  LIFECYCLE_EVENTS: z._default(z.enum(["terminal", "all", "none"]), SHARED_DEFAULTS.LIFECYCLE_EVENTS),
});

const seconds = (fallback: number[]) =>
  z.pipe(
    z._default(z.string(), fallback.join(",")),
    z.transform((value: string, ctx) => {
      const parts = value.split(",").map((part) => Number(part.trim()));
      if (parts.length === 0 || parts.some((n) => !Number.isFinite(n) || n < 0 || n > 86_400)) {
        // zod/mini's transform context has no addIssue (classic's is a shorthand for this push).
        ctx.issues.push({
          code: "custom",
          message: "a comma-separated list of seconds (0..86400)",
          input: value,
        });
        return z.NEVER;
      }
      return parts;
    }),
  );

/**
 * How downloads (provider outputs) and deliveries (client webhooks) may reach the network. `aws`:
 * https only, no private, loopback, link-local or metadata addresses, checked at connection time.
 * `local`: the local stack, where the simulator and test receivers live on loopback.
 */
export const networkConfig = z.object({
  NETWORK_POLICY: z._default(z.enum(["aws", "local"]), "aws"),
  OUTPUT_MAX_BYTES: int(1024, 512 * 1024 * 1024, 64 * 1024 * 1024),
  OUTPUT_DOWNLOAD_TIMEOUT_SECONDS: int(1, 300, 30),
  OUTPUT_RETRY_FOR_SECONDS: int(0, 600, 20),
  OUTPUT_URL_EXPIRY_SECONDS: int(60, 7 * 86_400, 3_600),
});

export const apiConfig = z.object({
  ...tableConfig.shape,
  ...jobsQueueConfig.shape,
  ...lifecycleConfig.shape,
  ...networkConfig.shape,
  OUTPUTS_BUCKET: name(),
  INPUTS_BUCKET: name(),
  /** Largest request body (base64 images included). API Gateway hands Lambda at most 6 MB. */
  MAX_BODY_BYTES: int(1024, 6_000_000, 5_000_000),
  /** The run bound of a job that sets no `deadline_seconds`: counted from its start, not its submission. */
  DEFAULT_DEADLINE_SECONDS: int(60, 86_400, 3_600),
  /** The wait bound of a job that sets no `max_wait_seconds` (waiting for a provider slot). */
  DEFAULT_MAX_WAIT_SECONDS: int(60, MAX_WAIT_SECONDS_LIMIT, 86_400),
  ...queuedResendConfig.shape,
  IDEMPOTENCY_TTL_SECONDS: int(60, 7 * 86_400, 86_400),
  /** Expiry of the presigned PUT URL `POST /v1/uploads` hands out. */
  UPLOAD_URL_EXPIRY_SECONDS: int(60, 7 * 86_400, 900),
  /**
   * The longest `Prefer: wait=N` on `POST /v1/jobs` honoured. At most 25: API Gateway's HTTP API gives
   * an integration 30 s, and the wait (counted from the request's arrival) plus the answer must fit in
   * the API function's timeout under it (infra/functions.ts).
   */
  MAX_PREFER_WAIT_SECONDS: int(0, 25, 20),
  /** The most API keys a tenant may hold through `POST /v1/api-keys` (each one is a way in to revoke). */
  MAX_API_KEYS_PER_TENANT: int(1, 100, 20),
  /** The self-hosted model catalog (JSON): pinned jobs are checked against it, GET /v1/models lists it. */
  ...selfHostedCatalogSettings.shape,
});
export type ApiConfig = z.infer<typeof apiConfig>;

export const authorizerConfig = tableConfig;
export type AuthorizerConfig = z.infer<typeof authorizerConfig>;

export const resultsQueueConfig = z.object({ RESULTS_QUEUE_URL: z.url() });

export const notifyConfig = z.object({
  ...tableConfig.shape,
  ...lifecycleConfig.shape,
  ...networkConfig.shape,
  OUTPUTS_BUCKET: name(),
  NOTIFICATIONS_DLQ_URL: z.url(),
  NOTIFY_RETRY_SCHEDULE_SECONDS: seconds([5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]),
  NOTIFY_TIMEOUT_SECONDS: int(1, 60, 15),
  NOTIFY_JITTER: z._default(z.coerce.number().check(z.gte(0), z.lte(0.5)), 0.1),
});
export type NotifyConfig = z.infer<typeof notifyConfig>;

export const callbackSecretConfig = z.object({
  CALLBACK_SECRET: optionalSecret,
  CALLBACK_SECRET_ARN: optionalSecret,
});

const hostList = z.pipe(
  z._default(z.string(), ""),
  z.transform((value: string) =>
    value
      .split(",")
      .map((host) => host.trim().toLowerCase())
      .filter(Boolean),
  ),
);

/**
 * What every function that talks to providers shares: each provider module's own settings (its
 * fragment in shared/providers/, composed by the registry), then the orchestrator's.
 */
export const providerSettingsConfig = z.object({
  ...providersConfig.shape,
  CALLBACK_BASE_URL: z.url(),
  PROVIDER_OUTPUT_HOSTS: hostList,
  ...queuedResendConfig.shape,
  /** Expiry of the presigned GET URLs the provider (or a worker) fetches a job's stored inputs through. */
  INPUT_URL_EXPIRY_SECONDS: int(60, 7 * 86_400, 6 * 3_600),
  CHECK_MARGIN_SECONDS: int(0, 3_600, 15),
  RETRY_BASE_SECONDS: int(1, 900, 5),
  RETRY_MAX_SECONDS: int(1, 900, 300),
  MAX_RETRYABLE_FAILURES: int(0, 100, 5),
  /**
   * How long a job may stay in `storing` before the reconciler hands its result back to finalize, and
   * then the wait between such hand-backs: longer than finalize's own timeout, so the copy one
   * hand-back started has finished or timed out before the next.
   */
  STORING_TIMEOUT_SECONDS: int(10, 3_600, 300),
  /** A provider's circuit breaker: this many failures (retryable rejections, timeouts) within the window open it… */
  BREAKER_FAILURE_THRESHOLD: int(1, 1_000, 5),
  BREAKER_WINDOW_SECONDS: int(1, 3_600, 60),
  /** …and after this cool-down one probe may go through; its success closes it. */
  BREAKER_COOLDOWN_SECONDS: int(1, 3_600, 30),
});

export const dispatchConfig = z.object({
  ...tableConfig.shape,
  ...lifecycleConfig.shape,
  INPUTS_BUCKET: name(),
  ...jobsQueueConfig.shape,
  ...admissionsQueueConfig.shape,
  ...resultsQueueConfig.shape,
  ...providerSettingsConfig.shape,
  ...callbackSecretConfig.shape,
});
export type DispatchConfig = z.infer<typeof dispatchConfig>;

export const finalizeConfig = z.object({
  ...tableConfig.shape,
  ...lifecycleConfig.shape,
  ...networkConfig.shape,
  OUTPUTS_BUCKET: name(),
  INPUTS_BUCKET: name(),
  ...jobsQueueConfig.shape,
  ...admissionsQueueConfig.shape,
  ...resultsQueueConfig.shape,
  ...providerSettingsConfig.shape,
  ...callbackSecretConfig.shape,
});
export type FinalizeConfig = z.infer<typeof finalizeConfig>;

export const callbackConfig = z.object({
  ...resultsQueueConfig.shape,
  ...callbackSecretConfig.shape,
  /** Callbacks carry URLs (or base64 images); anything bigger is refused with 413. */
  CALLBACK_MAX_BODY_BYTES: int(1_024, 6_000_000, 1_048_576),
});
export type CallbackConfig = z.infer<typeof callbackConfig>;

export const reconcileConfig = z.object({
  ...dispatchConfig.shape,
  RECONCILE_BATCH_SIZE: int(1, 1_000, 100),
  POLL_BASE_SECONDS: int(1, 3_600, 10),
  POLL_MAX_SECONDS: int(1, 3_600, 300),
  SLOT_GRACE_SECONDS: int(1, 3_600, 60),
  /** Hand-backs of a job stuck in `storing` before it fails `OUTPUT_COPY_FAILED`. */
  STORING_MAX_RESUMES: int(1, 100, 5),
  /** A provider request whose outcome is unknown (timeout, crashed dispatcher) fails this long after it was sent. */
  UNKNOWN_OUTCOME_SECONDS: int(10, 86_400, 600),
  /**
   * How long the provider may run one generation. A cancelled or timed-out job's capacity slot is kept
   * until its result arrives, a fetch says it is finished, or this long after it was posted. ModelsLab
   * publishes no run limit; the default is the window after which an unanswered request is given up
   * (UNKNOWN_OUTCOME_SECONDS), in which any real job would have called back.
   */
  PROVIDER_RUN_LIMIT_SECONDS: int(10, 86_400, 600),
});
export type ReconcileConfig = z.infer<typeof reconcileConfig>;

/** Parses `env` (a function's environment: process.env in Lambda, its own in tests) with `schema`. */
export function loadConfig<S extends z.ZodMiniType>(
  schema: S,
  env: Readonly<Record<string, string | undefined>> = process.env,
): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`),
  );
}
