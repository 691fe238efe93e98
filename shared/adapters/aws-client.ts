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
