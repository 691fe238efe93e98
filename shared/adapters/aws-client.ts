/**
 * What every AWS SDK client this project builds shares (timeouts, retries, error classification). Apart
 * from any one service's client module, so importing it never bundles a client the function does not use.
 */
import { IncomingMessage } from "node:http";
import { NodeHttpHandler } from "@smithy/node-http-handler";

/** How long one attempt of an AWS call may wait, in milliseconds. */
export interface AwsHttpTimeouts {
  /** For the TCP (and TLS) connection. */
  connectionTimeoutMs: number;
  /**
   * From sending the request to the response's headers, and then the longest silence while its body
   * arrives: a body that keeps coming may take longer in all (a large S3 object read at the reader's
   * pace), one that stops fails the call. A call can ask for more time to its headers (an SQS long poll
   * waits up to 20 s before answering): `client.send(command, { requestTimeout })`.
   */
  requestTimeoutMs: number;
}

/** Bounded network behaviour shared by every AWS client this project builds: fail fast, retry a little. */
export const AWS_CLIENT_DEFAULTS = {
  connectionTimeoutMs: 1_000,
  requestTimeoutMs: 5_000,
  maxAttempts: 3,
} as const;

/** What a client factory takes besides the SDK's own options: other timeouts than its defaults (tests). */
export interface BoundedClientOptions {
  timeouts?: Partial<AwsHttpTimeouts>;
}

type HandleArgs = Parameters<NodeHttpHandler["handle"]>;
type Handled = Awaited<ReturnType<NodeHttpHandler["handle"]>>;

const timeoutError = (message: string): Error =>
  // The name and code the SDK gives its own timeouts: its retry strategy and `isTransientAwsError` know them.
  Object.assign(new Error(message), { name: "TimeoutError", code: "ETIMEDOUT" });

/**
 * The SDK's Node handler with timeouts that fire. Its `requestTimeout` only logs a warning unless
 * `throwOnRequestTimeout` is set, and even then it only covers the wait for the response's headers: a
 * response whose body stops after the headers would hold the call forever. Here the headers must come
 * within `requestTimeoutMs`, and then the body may not fall silent for longer than that.
 */
export class BoundedHttpHandler extends NodeHttpHandler {
  private readonly bodySilenceMs: number;

  constructor(timeouts: AwsHttpTimeouts) {
    super({
      connectionTimeout: timeouts.connectionTimeoutMs,
      requestTimeout: timeouts.requestTimeoutMs,
      throwOnRequestTimeout: true,
      // No idle timeout of the SDK's on the socket (SQS and DynamoDB ask for 15 minutes): it would replace
      // the body's below, and `requestTimeout` already bounds the silence before the headers.
      socketTimeout: 0,
    });
    this.bodySilenceMs = timeouts.requestTimeoutMs;
  }

  override async handle(...args: HandleArgs): Promise<Handled> {
    const handled = await super.handle(...args);
    boundSilence(handled.response.body, this.bodySilenceMs);
    return handled;
  }
}

/**
 * Destroys a response body, with a TimeoutError, once its socket has been silent for `ms`. On the socket,
 * not on the stream: watching the stream's data would start it flowing before its reader is there.
 */
function boundSilence(body: unknown, ms: number): void {
  if (!(body instanceof IncomingMessage) || body.complete) return;
  const socket = body.socket;
  if (!socket || socket.destroyed) return;
  const onSilence = () => {
    body.destroy(timeoutError(`The response body was silent for ${ms} ms.`));
  };
  socket.setTimeout(ms, onSilence);
  // Off before the keep-alive agent hands the socket to another request.
  const done = () => {
    socket.removeListener("timeout", onSilence);
    socket.setTimeout(0);
  };
  body.once("end", done);
  body.once("close", done);
}

export const boundedHttpHandler = (timeouts: Partial<AwsHttpTimeouts> = {}): BoundedHttpHandler =>
  new BoundedHttpHandler({
    connectionTimeoutMs: timeouts.connectionTimeoutMs ?? AWS_CLIENT_DEFAULTS.connectionTimeoutMs,
    requestTimeoutMs: timeouts.requestTimeoutMs ?? AWS_CLIENT_DEFAULTS.requestTimeoutMs,
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
