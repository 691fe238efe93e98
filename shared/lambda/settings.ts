import type * as z from "zod/mini";
import type { BreakerSettings } from "../adapters/dynamo/circuit-breaker.ts";
import type { providerSettingsConfig } from "../schemas/config.ts";
import type { DispatchSettings } from "../usecases/dispatch-job.ts";

type ProviderSettings = z.infer<typeof providerSettingsConfig>;

/** Maps parsed environment to the use cases' settings, once, for every function that talks to providers. */
export const dispatchSettings = (config: ProviderSettings, callbackSecret: string): DispatchSettings => ({
  callbackBaseUrl: config.CALLBACK_BASE_URL,
  callbackSecret,
  checkMarginSeconds: config.CHECK_MARGIN_SECONDS,
  deferBaseSeconds: config.DEFER_BASE_SECONDS,
  deferMaxSeconds: config.DEFER_MAX_SECONDS,
  retryBaseSeconds: config.RETRY_BASE_SECONDS,
  retryMaxSeconds: config.RETRY_MAX_SECONDS,
  maxRetryableFailures: config.MAX_RETRYABLE_FAILURES,
  queuedResendAfterSeconds: config.QUEUED_RESEND_AFTER_SECONDS,
  expectedRunSeconds: config.EXPECTED_RUN_SECONDS,
});

/** The providers' circuit breaker settings (one breaker per provider that has one, same settings). */
export const breakerSettings = (config: ProviderSettings): BreakerSettings => ({
  failureThreshold: config.BREAKER_FAILURE_THRESHOLD,
  windowSeconds: config.BREAKER_WINDOW_SECONDS,
  coolDownSeconds: config.BREAKER_COOLDOWN_SECONDS,
});
