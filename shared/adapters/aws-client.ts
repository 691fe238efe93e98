/**
 * What every AWS SDK client this project builds shares (timeouts, retries, error classification). Apart
 * from any one service's client module, so importing it never bundles a client the function does not use.
 */
import { NodeHttpHandler } from "@smithy/node-http-handler";

/** Bounded network behaviour shared by every AWS client this project builds: fail fast, retry a little. */
export const AWS_CLIENT_DEFAULTS = {
  connectionTimeoutMs: 1_000,
  requestTimeoutMs: 5_000,
  maxAttempts: 3,
} as const;

export const boundedHttpHandler = (): NodeHttpHandler =>
  new NodeHttpHandler({
    connectionTimeout: AWS_CLIENT_DEFAULTS.connectionTimeoutMs,
    requestTimeout: AWS_CLIENT_DEFAULTS.requestTimeoutMs,
  });

/** A function's environment: `process.env` in Lambda, its own variables in tests and the local stack. */
export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * Region and endpoint of one service's client, read from `env` as the SDK's default chain reads them
 * from process.env: `AWS_REGION`; `AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL`, unless
 * `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is true. Given to the client explicitly, so that a function
 * built with an environment of its own (`createHandler(env)`) talks to that environment's endpoints,
 * whatever process.env says. What `env` leaves unset stays with the default chain (the shared config
 * file, AWS's regional endpoint); credentials always do.
 */
export function serviceLocation(
  env: Environment,
  service: "DYNAMODB" | "SQS" | "S3" | "EVENTBRIDGE",
): { region?: string; endpoint?: string } {
  const region = env.AWS_REGION || undefined;
  const endpoint =
    env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS?.toLowerCase() === "true"
      ? undefined
      : env[`AWS_ENDPOINT_URL_${service}`] || env.AWS_ENDPOINT_URL || undefined;
  return { ...(region && { region }), ...(endpoint && { endpoint }) };
}

const TRANSIENT_NAMES = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "InternalServerError",
  "ServiceUnavailable",
  "TimeoutError",
  "RequestTimeout",
  "RequestTimeoutException",
]);

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/** True for throttling, server-side and network failures: worth retrying later, not a bug in the request. */
export function isTransientAwsError(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const e = error as { name?: unknown; code?: unknown; $metadata?: { httpStatusCode?: number } };
  if (typeof e.name === "string" && TRANSIENT_NAMES.has(e.name)) return true;
  if (typeof e.code === "string" && NETWORK_CODES.has(e.code)) return true;
  const status = e.$metadata?.httpStatusCode;
  return typeof status === "number" && status >= 500;
}
