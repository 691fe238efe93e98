import { DynamoDBClient, type DynamoDBClientConfig } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
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

/**
 * The document client every DynamoDB adapter is given. Create it once per module (cold start) and
 * inject it. Region, credentials and endpoint come from the SDK's default chain (`AWS_REGION`,
 * `AWS_ENDPOINT_URL_DYNAMODB`, ...) unless `options` overrides them (tests point it at dynalite).
 */
export function createDocumentClient(options: DynamoDBClientConfig = {}): DynamoDBDocumentClient {
  const client = new DynamoDBClient({
    maxAttempts: AWS_CLIENT_DEFAULTS.maxAttempts,
    requestHandler: boundedHttpHandler(),
    ...options,
  });
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
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
