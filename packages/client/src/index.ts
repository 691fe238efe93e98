/**
 * The typed client of the ControlNet job orchestrator's API. `createClient` is the entry point; the
 * types are the server's own (shared/schemas/api.ts), the errors carry the API's stable codes.
 */
export {
  DEFAULT_POLL_BACKOFF,
  DEFAULT_RETRY,
  type PollBackoff,
  parseRetryAfter,
  pollDelayMs,
  type RetryPolicy,
  retryDelayMs,
} from "./backoff.ts";
export {
  type ClientOptions,
  type ControlNetClient,
  type CreateOptions,
  createClient,
  DEFAULT_MAX_DOWNLOAD_BYTES,
  type DownloadedOutput,
  isTerminalJob,
  type RequestOptions,
  type RunOptions,
  type RunResult,
  type WaitOptions,
} from "./client.ts";
export {
  ApiError,
  AuthenticationError,
  ConflictError,
  ControlNetClientError,
  type ErrorCode,
  type ErrorDetail,
  type ErrorKind,
  InvalidInputError,
  InvalidRequestError,
  JobFailedError,
  NetworkError,
  NotFoundError,
  ResponseTooLargeError,
  TimeoutError,
  UnavailableError,
  WaitTimeoutError,
  WebhookVerificationError,
} from "./errors.ts";
export type { FetchLike } from "./http.ts";
export { formatElapsed, formatProgress, type Progress, progressOf, queuePlaceOf } from "./progress.ts";
export type * from "./types.ts";
export { UPLOADABLE_FIELDS } from "./types.ts";
export { verifyWebhook, type WebhookHeaders } from "./webhooks.ts";
