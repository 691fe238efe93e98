import { describe, expect, it } from "vitest";
import {
  authorizerConfig,
  type CallbackConfig,
  ConfigError,
  callbackConfig,
  dispatchConfig,
  loadConfig,
  notifyConfig,
  reconcileConfig,
} from "../../shared/schemas/config.ts";
import { bundledInputs } from "../support/bundle.ts";
import { TEST_MODELS } from "../support/settings.ts";

const QUEUE = "https://sqs.us-east-1.amazonaws.com/000000000000/q";

/** The problems `loadConfig` names for this environment (empty when it parses). */
function problems(schema: Parameters<typeof loadConfig>[0], env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(schema, env);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

const NOTIFY_ENV = {
  TABLE_NAME: "jobs",
  NOTIFICATIONS_QUEUE_URL: QUEUE,
  EVENT_BUS_NAME: "bus",
  OUTPUTS_BUCKET: "outputs",
  NOTIFICATIONS_DLQ_URL: QUEUE,
};

const DISPATCH_ENV = {
  TABLE_NAME: "jobs",
  NOTIFICATIONS_QUEUE_URL: QUEUE,
  EVENT_BUS_NAME: "bus",
  INPUTS_BUCKET: "inputs",
  JOBS_QUEUE_URL: QUEUE,
  ADMISSIONS_QUEUE_URL: QUEUE,
  RESULTS_QUEUE_URL: QUEUE,
  FALLBACK_QUEUE_URL: QUEUE,
  SELF_HOSTED_MODELS: JSON.stringify(TEST_MODELS),
  CALLBACK_BASE_URL: "https://api.example.com",
  MODELSLAB_API_KEY: "key",
};

describe("loadConfig", () => {
  it("keeps only the schema's variables and fills the defaults", () => {
    expect(loadConfig(authorizerConfig, { TABLE_NAME: "jobs", OTHER: "x" })).toEqual({ TABLE_NAME: "jobs" });
    const config: CallbackConfig = loadConfig(callbackConfig, { RESULTS_QUEUE_URL: QUEUE });
    expect(config).toEqual({ RESULTS_QUEUE_URL: QUEUE, CALLBACK_MAX_BODY_BYTES: 1_048_576 });
  });

  it("coerces integers and holds them to their range", () => {
    const env = (bytes: string) => ({ RESULTS_QUEUE_URL: QUEUE, CALLBACK_MAX_BODY_BYTES: bytes });
    expect(loadConfig(callbackConfig, env("2048")).CALLBACK_MAX_BODY_BYTES).toBe(2048);
    expect(problems(callbackConfig, env("10"))).toEqual([
      "CALLBACK_MAX_BODY_BYTES: Too small: expected number to be >=1024",
    ]);
    expect(problems(callbackConfig, env(""))).toEqual([
      "CALLBACK_MAX_BODY_BYTES: Too small: expected number to be >=1024",
    ]);
    expect(problems(callbackConfig, env("9000000"))).toEqual([
      "CALLBACK_MAX_BODY_BYTES: Too big: expected number to be <=6000000",
    ]);
    expect(problems(callbackConfig, env("1500.5"))).toEqual([
      "CALLBACK_MAX_BODY_BYTES: Invalid input: expected int, received number",
    ]);
    expect(problems(callbackConfig, env("abc"))).toEqual([
      "CALLBACK_MAX_BODY_BYTES: Invalid input: expected number, received NaN",
    ]);
  });

  it("treats an empty secret as unset", () => {
    const config = loadConfig(callbackConfig, {
      RESULTS_QUEUE_URL: QUEUE,
      CALLBACK_SECRET: "s",
      CALLBACK_SECRET_ARN: "",
    });
    expect(config.CALLBACK_SECRET).toBe("s");
    expect(config.CALLBACK_SECRET_ARN).toBeUndefined();
    expect(
      loadConfig(dispatchConfig, { ...DISPATCH_ENV, MODELSLAB_API_KEY: "" }).MODELSLAB_API_KEY,
    ).toBeUndefined();
  });

  it("parses the notify retry schedule, jitter and enums", () => {
    const defaults = loadConfig(notifyConfig, NOTIFY_ENV);
    expect(defaults).toMatchObject({
      NOTIFY_RETRY_SCHEDULE_SECONDS: [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000],
      NOTIFY_JITTER: 0.1,
      NOTIFY_TIMEOUT_SECONDS: 15,
      NOTIFY_GRACE_SECONDS: 60,
      LIFECYCLE_EVENTS: "terminal",
      NETWORK_POLICY: "aws",
      OUTPUT_MAX_BYTES: 64 * 1024 * 1024,
      OUTPUT_URL_EXPIRY_SECONDS: 3_600,
    });
    const set = loadConfig(notifyConfig, {
      ...NOTIFY_ENV,
      NOTIFY_RETRY_SCHEDULE_SECONDS: " 1, 2 ,3",
      NOTIFY_JITTER: "0.5",
      LIFECYCLE_EVENTS: "all",
      NETWORK_POLICY: "local",
    });
    expect(set).toMatchObject({
      NOTIFY_RETRY_SCHEDULE_SECONDS: [1, 2, 3],
      NOTIFY_JITTER: 0.5,
      LIFECYCLE_EVENTS: "all",
      NETWORK_POLICY: "local",
    });
    expect(loadConfig(notifyConfig, { ...NOTIFY_ENV, LIFECYCLE_EVENTS: "none" }).LIFECYCLE_EVENTS).toBe(
      "none",
    );
    expect(
      problems(notifyConfig, {
        ...NOTIFY_ENV,
        NOTIFY_RETRY_SCHEDULE_SECONDS: "1,x",
        NOTIFY_JITTER: "0.6",
        LIFECYCLE_EVENTS: "some",
        NETWORK_POLICY: "gcp",
        NOTIFY_GRACE_SECONDS: "0",
      }),
    ).toEqual([
      "NOTIFY_GRACE_SECONDS: Too small: expected number to be >=1",
      'LIFECYCLE_EVENTS: Invalid option: expected one of "terminal"|"all"|"none"',
      'NETWORK_POLICY: Invalid option: expected one of "aws"|"local"',
      "NOTIFY_RETRY_SCHEDULE_SECONDS: a comma-separated list of seconds (0..86400)",
      "NOTIFY_JITTER: Too big: expected number to be <=0.5",
    ]);
    expect(problems(notifyConfig, { ...NOTIFY_ENV, NOTIFY_RETRY_SCHEDULE_SECONDS: "90000" })).toEqual([
      "NOTIFY_RETRY_SCHEDULE_SECONDS: a comma-separated list of seconds (0..86400)",
    ]);
    expect(problems(notifyConfig, { ...NOTIFY_ENV, NOTIFY_JITTER: "-1" })).toEqual([
      "NOTIFY_JITTER: Too small: expected number to be >=0",
    ]);
  });

  it("defaults the provider URL, lower-cases the output hosts and checks URLs", () => {
    const defaults = loadConfig(dispatchConfig, DISPATCH_ENV);
    expect(defaults.MODELSLAB_BASE_URL).toBe("https://modelslab.com/api");
    expect(defaults.PROVIDER_OUTPUT_HOSTS).toEqual([]);
    expect(defaults.MODELSLAB_MAX_CONCURRENCY).toBe(5);
    const set = loadConfig(dispatchConfig, {
      ...DISPATCH_ENV,
      PROVIDER_OUTPUT_HOSTS: " A.com, ,b.COM ",
      MODELSLAB_BASE_URL: "http://localhost:9/x",
    });
    expect(set.PROVIDER_OUTPUT_HOSTS).toEqual(["a.com", "b.com"]);
    expect(set.MODELSLAB_BASE_URL).toBe("http://localhost:9/x");
    expect(
      problems(dispatchConfig, { ...DISPATCH_ENV, MODELSLAB_BASE_URL: "nope", CALLBACK_BASE_URL: "" }),
    ).toEqual(["MODELSLAB_BASE_URL: Invalid URL", "CALLBACK_BASE_URL: Invalid URL"]);
  });

  /** The reconcile function's variables without a default, in schema order. */
  const RECONCILE_REQUIRED = [
    "TABLE_NAME",
    "NOTIFICATIONS_QUEUE_URL",
    "EVENT_BUS_NAME",
    "INPUTS_BUCKET",
    "JOBS_QUEUE_URL",
    "ADMISSIONS_QUEUE_URL",
    "RESULTS_QUEUE_URL",
    "SELF_HOSTED_MODELS",
    "FALLBACK_QUEUE_URL",
    "CALLBACK_BASE_URL",
  ];

  it("fails fast naming every problem", () => {
    expect(() => loadConfig(authorizerConfig, { TABLE_NAME: "" })).toThrow(
      new ConfigError(["TABLE_NAME: Too small: expected string to have >=1 characters"]),
    );
    const missing = (name: string) => `${name}: Invalid input: expected string, received undefined`;
    let thrown: unknown;
    try {
      loadConfig(reconcileConfig, {});
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    const { problems: named, message } = thrown as ConfigError;
    expect(named).toEqual(RECONCILE_REQUIRED.map(missing));
    expect(message).toBe(`Invalid configuration:\n  ${named.join("\n  ")}`);
  });

  it("lets bench:cold tell required variables from defaulted ones through `.shape`", () => {
    const required = Object.entries(reconcileConfig.shape)
      .filter(([, field]) => !field.safeParse(undefined).success)
      .map(([key]) => key);
    expect(required).toEqual(RECONCILE_REQUIRED);
  });

  it("does not bundle classic zod (the authorizer and callback bundles' size budget)", async () => {
    const inputs = await bundledInputs("shared/schemas/config.ts");
    expect(inputs.some((input) => input.includes("node_modules/zod/"))).toBe(true);
    expect(inputs.filter((input) => input.includes("node_modules/zod/v4/classic/"))).toEqual([]);
  });
});
