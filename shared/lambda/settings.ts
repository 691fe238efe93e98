import type * as z from "zod/mini";
import type { BreakerSettings } from "../adapters/dynamo/circuit-breaker.ts";
import type { ApiDeps } from "../http/api.ts";
import type { ApiConfig, NotifyConfig, providerSettingsConfig, ReconcileConfig } from "../schemas/config.ts";
import type { DispatchSettings } from "../usecases/dispatch-job.ts";
import type { FinalizeDeps } from "../usecases/finalize-result.ts";
import type { NotifySettings } from "../usecases/notify.ts";
import type { ReconcileSettings } from "../usecases/reconcile.ts";

/*
 * The use cases' settings, mapped once from the parsed environment. Every value comes from
 * `shared/schemas/config.ts`, where each setting has its one default: the use cases declare no
 * defaults of their own (test/unit/settings.test.ts checks that each field follows its variable).
 */

type ProviderSettings = z.infer<typeof providerSettingsConfig>;

/** Every function that talks to providers. */
export const dispatchSettings = (config: ProviderSettings, callbackSecret: string): DispatchSettings => ({
  callbackBaseUrl: config.CALLBACK_BASE_URL,
  callbackSecret,
  checkMarginSeconds: config.CHECK_MARGIN_SECONDS,
  retryBaseSeconds: config.RETRY_BASE_SECONDS,
  retryMaxSeconds: config.RETRY_MAX_SECONDS,
  maxRetryableFailures: config.MAX_RETRYABLE_FAILURES,
  queuedResendAfterSeconds: config.QUEUED_RESEND_AFTER_SECONDS,
});

/**
 * Finalize ends attempts (the retry settings), starts one on the fallback provider (its callback URL,
 * should that provider take callbacks) and bounds how long storing may take.
 */
export const finalizeSettings = (
  config: ProviderSettings,
  callbackSecret: string,
): FinalizeDeps["settings"] => ({
  ...dispatchSettings(config, callbackSecret),
  storingTimeoutSeconds: config.STORING_TIMEOUT_SECONDS,
});

export const reconcileSettings = (config: ReconcileConfig): ReconcileSettings => ({
  queuedResendAfterSeconds: config.QUEUED_RESEND_AFTER_SECONDS,
  batchSize: config.RECONCILE_BATCH_SIZE,
  pollBaseSeconds: config.POLL_BASE_SECONDS,
  pollMaxSeconds: config.POLL_MAX_SECONDS,
  slotGraceSeconds: config.SLOT_GRACE_SECONDS,
  providerRunLimitSeconds: config.PROVIDER_RUN_LIMIT_SECONDS,
  unknownOutcomeSeconds: config.UNKNOWN_OUTCOME_SECONDS,
  storingRetrySeconds: config.STORING_TIMEOUT_SECONDS,
  storingMaxResumes: config.STORING_MAX_RESUMES,
  notifyGraceSeconds: config.NOTIFY_GRACE_SECONDS,
});

export const notifySettings = (config: NotifyConfig): NotifySettings => ({
  retryScheduleSeconds: config.NOTIFY_RETRY_SCHEDULE_SECONDS,
  jitter: config.NOTIFY_JITTER,
  outboxGraceSeconds: config.NOTIFY_GRACE_SECONDS,
});

export const apiSettings = (config: ApiConfig): ApiDeps["settings"] => ({
  maxBodyBytes: config.MAX_BODY_BYTES,
  defaultDeadlineSeconds: config.DEFAULT_DEADLINE_SECONDS,
  defaultMaxWaitSeconds: config.DEFAULT_MAX_WAIT_SECONDS,
  queuedResendAfterSeconds: config.QUEUED_RESEND_AFTER_SECONDS,
  idempotencyTtlSeconds: config.IDEMPOTENCY_TTL_SECONDS,
  uploadUrlExpirySeconds: config.UPLOAD_URL_EXPIRY_SECONDS,
  maxPreferWaitSeconds: config.MAX_PREFER_WAIT_SECONDS,
  maxApiKeysPerTenant: config.MAX_API_KEYS_PER_TENANT,
});

/** The providers' circuit breaker settings (one breaker per provider that has one, same settings). */
export const breakerSettings = (config: ProviderSettings): BreakerSettings => ({
  failureThreshold: config.BREAKER_FAILURE_THRESHOLD,
  windowSeconds: config.BREAKER_WINDOW_SECONDS,
  coolDownSeconds: config.BREAKER_COOLDOWN_SECONDS,
});
