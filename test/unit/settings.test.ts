import { describe, expect, it } from "vitest";
import {
  apiSettings,
  breakerSettings,
  dispatchSettings,
  finalizeSettings,
  notifySettings,
  reconcileSettings,
} from "../../shared/lambda/settings.ts";
import { apiConfig, loadConfig, notifyConfig, reconcileConfig } from "../../shared/schemas/config.ts";
import { MINIMAL_ENV } from "../support/settings.ts";

/**
 * Each setting has one default, in shared/schemas/config.ts: the use cases declare none, and
 * shared/lambda/settings.ts maps every field from its variable. For each mapping, every field is
 * listed with its variable and a valid value other than the default: with only the variables that
 * have no default the field is the schema's default, with the variable set it follows it, and no
 * field comes from anywhere else.
 */
type Mapping = Record<string, readonly [variable: string, other: string, expected: unknown]>;

const DISPATCH: Mapping = {
  checkMarginSeconds: ["CHECK_MARGIN_SECONDS", "16", 16],
  retryBaseSeconds: ["RETRY_BASE_SECONDS", "6", 6],
  retryMaxSeconds: ["RETRY_MAX_SECONDS", "301", 301],
  maxRetryableFailures: ["MAX_RETRYABLE_FAILURES", "6", 6],
  queuedResendAfterSeconds: ["QUEUED_RESEND_AFTER_SECONDS", "301", 301],
};

const cases: Array<{
  name: string;
  /** Parses an environment and maps it; the fields not listed in `mapping` are given below. */
  settings: (env: NodeJS.ProcessEnv) => object;
  parse: (env: NodeJS.ProcessEnv) => Record<string, unknown>;
  mapping: Mapping;
  /** Fields that are not settings with a default (required variables, secrets). */
  given: Record<string, unknown>;
}> = [
  {
    name: "dispatchSettings",
    settings: (env) => dispatchSettings(loadConfig(reconcileConfig, env), "secret"),
    parse: (env) => loadConfig(reconcileConfig, env),
    mapping: DISPATCH,
    given: { callbackBaseUrl: MINIMAL_ENV.CALLBACK_BASE_URL, callbackSecret: "secret" },
  },
  {
    name: "finalizeSettings",
    settings: (env) => finalizeSettings(loadConfig(reconcileConfig, env), "secret"),
    parse: (env) => loadConfig(reconcileConfig, env),
    mapping: { ...DISPATCH, storingTimeoutSeconds: ["STORING_TIMEOUT_SECONDS", "301", 301] },
    given: { callbackBaseUrl: MINIMAL_ENV.CALLBACK_BASE_URL, callbackSecret: "secret" },
  },
  {
    name: "reconcileSettings",
    settings: (env) => reconcileSettings(loadConfig(reconcileConfig, env)),
    parse: (env) => loadConfig(reconcileConfig, env),
    mapping: {
      queuedResendAfterSeconds: ["QUEUED_RESEND_AFTER_SECONDS", "301", 301],
      batchSize: ["RECONCILE_BATCH_SIZE", "101", 101],
      pollBaseSeconds: ["POLL_BASE_SECONDS", "11", 11],
      pollMaxSeconds: ["POLL_MAX_SECONDS", "301", 301],
      slotGraceSeconds: ["SLOT_GRACE_SECONDS", "61", 61],
      providerRunLimitSeconds: ["PROVIDER_RUN_LIMIT_SECONDS", "601", 601],
      unknownOutcomeSeconds: ["UNKNOWN_OUTCOME_SECONDS", "601", 601],
      storingRetrySeconds: ["STORING_TIMEOUT_SECONDS", "301", 301],
      storingMaxResumes: ["STORING_MAX_RESUMES", "6", 6],
      notifyGraceSeconds: ["NOTIFY_GRACE_SECONDS", "61", 61],
    },
    given: {},
  },
  {
    name: "notifySettings",
    settings: (env) => notifySettings(loadConfig(notifyConfig, env)),
    parse: (env) => loadConfig(notifyConfig, env),
    mapping: {
      retryScheduleSeconds: ["NOTIFY_RETRY_SCHEDULE_SECONDS", "1,2", [1, 2]],
      jitter: ["NOTIFY_JITTER", "0.2", 0.2],
      outboxGraceSeconds: ["NOTIFY_GRACE_SECONDS", "61", 61],
    },
    given: {},
  },
  {
    name: "apiSettings",
    settings: (env) => apiSettings(loadConfig(apiConfig, env)),
    parse: (env) => loadConfig(apiConfig, env),
    mapping: {
      maxBodyBytes: ["MAX_BODY_BYTES", "4000000", 4_000_000],
      defaultDeadlineSeconds: ["DEFAULT_DEADLINE_SECONDS", "3601", 3_601],
      defaultMaxWaitSeconds: ["DEFAULT_MAX_WAIT_SECONDS", "3600", 3_600],
      queuedResendAfterSeconds: ["QUEUED_RESEND_AFTER_SECONDS", "301", 301],
      idempotencyTtlSeconds: ["IDEMPOTENCY_TTL_SECONDS", "86401", 86_401],
      uploadUrlExpirySeconds: ["UPLOAD_URL_EXPIRY_SECONDS", "901", 901],
      maxPreferWaitSeconds: ["MAX_PREFER_WAIT_SECONDS", "21", 21],
      maxApiKeysPerTenant: ["MAX_API_KEYS_PER_TENANT", "21", 21],
    },
    given: {},
  },
  {
    name: "breakerSettings",
    settings: (env) => breakerSettings(loadConfig(reconcileConfig, env)),
    parse: (env) => loadConfig(reconcileConfig, env),
    mapping: {
      failureThreshold: ["BREAKER_FAILURE_THRESHOLD", "6", 6],
      windowSeconds: ["BREAKER_WINDOW_SECONDS", "61", 61],
      coolDownSeconds: ["BREAKER_COOLDOWN_SECONDS", "31", 31],
    },
    given: {},
  },
];

describe.each(cases)("$name", ({ settings: map, parse, mapping, given }) => {
  const settings = (env: NodeJS.ProcessEnv) => map(env) as Record<string, unknown>;
  it("maps exactly the listed fields", () => {
    expect(Object.keys(settings(MINIMAL_ENV)).sort()).toEqual(
      [...Object.keys(mapping), ...Object.keys(given)].sort(),
    );
  });

  it("gives every setting its config default when only the variables without a default are set", () => {
    const config = parse(MINIMAL_ENV);
    const expected = Object.fromEntries(
      Object.entries(mapping).map(([field, [variable]]) => [field, config[variable]]),
    );
    expect(settings(MINIMAL_ENV)).toEqual({ ...expected, ...given });
    for (const [field, [variable]] of Object.entries(mapping)) {
      expect(config[variable], `${variable} (${field}) has a default`).not.toBeUndefined();
    }
  });

  it.each(Object.entries(mapping))("takes %s from its variable", (field, [variable, other, expected]) => {
    const config = parse(MINIMAL_ENV);
    expect(config[variable], `${other} must not be ${variable}'s default`).not.toEqual(expected);
    expect(settings({ ...MINIMAL_ENV, [variable]: other })[field]).toEqual(expected);
  });
});
