import { ERROR_KINDS, type ErrorCode, type ErrorKind } from "../../../shared/domain/errors.ts";
import type { Job } from "./types.ts";

/**
 * What the client throws. Every class carries a stable `code`: an `ApiError` the API's own code (the
 * catalogue of docs/errors.md), the others a code of the client's. Callers branch on `code` or on the
 * class (`instanceof NotFoundError`), never on messages.
 */
export type { ErrorCode, ErrorKind };

export interface ErrorDetail {
  path: string;
  message: string;
}

/** The root of everything the client throws on purpose. */
export class ControlNetClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The API answered with an error. `code` is one of the API's codes, or `UNEXPECTED_RESPONSE` when the
 * answer was not the API's error body (a proxy's or gateway's page, a throttling answer without one).
 */
export class ApiError extends ControlNetClientError {
  declare readonly code: ErrorCode | "UNEXPECTED_RESPONSE";
  /** The API's kind of `code` (null for UNEXPECTED_RESPONSE). */
  readonly kind: ErrorKind | null;
  readonly status: number;
  /** What is wrong, field by field (at most the first 20, as the API clips them). */
  readonly details: readonly ErrorDetail[];
  /** How many problems the API found (more than `details` holds when clipped). */
  readonly detailsTotal: number;
  /** The gateway's request id, when the answer carried one: quote it when asking the operator. */
  readonly requestId: string | null;
  /** Seconds the API asked to wait before trying again (Retry-After), if it said. */
  readonly retryAfterSeconds: number | null;

  constructor(init: {
    code: ErrorCode | "UNEXPECTED_RESPONSE";
    message: string;
    status: number;
    details?: readonly ErrorDetail[];
    detailsTotal?: number;
    requestId?: string | null;
    retryAfterSeconds?: number | null;
  }) {
    super(init.code, init.message);
    this.kind = init.code === "UNEXPECTED_RESPONSE" ? null : ERROR_KINDS[init.code];
    this.status = init.status;
    this.details = init.details ?? [];
    this.detailsTotal = init.detailsTotal ?? this.details.length;
    this.requestId = init.requestId ?? null;
    this.retryAfterSeconds = init.retryAfterSeconds ?? null;
  }
}

/** 400: the request was refused as it is (VALIDATION_FAILED, INVALID_JSON, INVALID_CURSOR…). */
export class InvalidRequestError extends ApiError {}
/** 401: no API key, or not a valid one. */
export class AuthenticationError extends ApiError {}
/** 404: no such job, key or route (for this tenant). */
export class NotFoundError extends ApiError {}
/** 409: the request conflicts with the state (JOB_ALREADY_TERMINAL, IDEMPOTENCY_KEY_REUSED…). */
export class ConflictError extends ApiError {}
/** 429 or 503: try again later (the client already retried where that was safe). */
export class UnavailableError extends ApiError {}

const CLASS_BY_KIND: Partial<Record<ErrorKind, typeof ApiError>> = {
  invalid_input: InvalidRequestError,
  payload_too_large: InvalidRequestError,
  unsupported_media_type: InvalidRequestError,
  unauthorized: AuthenticationError,
  not_found: NotFoundError,
  conflict: ConflictError,
  unavailable: UnavailableError,
};

const isErrorCode = (value: unknown): value is ErrorCode =>
  typeof value === "string" && Object.hasOwn(ERROR_KINDS, value);

const MAX_UNEXPECTED_TEXT = 200;

/** The error an answer of `status` with `body` (parsed JSON, or text) stands for. */
export function apiErrorFrom(
  status: number,
  body: unknown,
  meta: { requestId: string | null; retryAfterSeconds: number | null },
): ApiError {
  const error = (body as { error?: Record<string, unknown> } | null)?.error;
  if (error && isErrorCode(error.code)) {
    const details = Array.isArray(error.details)
      ? error.details.filter(
          (detail): detail is ErrorDetail =>
            typeof detail?.path === "string" && typeof detail?.message === "string",
        )
      : [];
    const Class = CLASS_BY_KIND[ERROR_KINDS[error.code]] ?? ApiError;
    return new Class({
      code: error.code,
      message: typeof error.message === "string" ? error.message : error.code,
      status,
      details,
      detailsTotal: typeof error.details_total === "number" ? error.details_total : details.length,
      ...meta,
    });
  }
  const text = typeof body === "string" ? body : JSON.stringify(body ?? null);
  const Class = status === 429 || status === 503 ? UnavailableError : ApiError;
  return new Class({
    code: "UNEXPECTED_RESPONSE",
    message: `HTTP ${status} without the API's error body: ${text.slice(0, MAX_UNEXPECTED_TEXT)}`,
    status,
    ...meta,
  });
}

/** No answer came: the connection failed, or DNS did. */
export class NetworkError extends ControlNetClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("NETWORK_ERROR", message, options);
  }
}

/** A call (or a download) took longer than its timeout. */
export class TimeoutError extends ControlNetClientError {
  constructor(
    message: string,
    readonly timeoutMs: number,
  ) {
    super("TIMEOUT", message);
  }
}

/** An answer (or a download) was larger than the client accepts. */
export class ResponseTooLargeError extends ControlNetClientError {
  constructor(readonly limitBytes: number) {
    super("RESPONSE_TOO_LARGE", `The answer is larger than the limit of ${limitBytes} bytes.`);
  }
}

/** `jobs.wait` ran out of time before the job was terminal; `job` is the last state seen. */
export class WaitTimeoutError extends ControlNetClientError {
  constructor(
    readonly job: Job,
    readonly timeoutMs: number,
  ) {
    super("WAIT_TIMEOUT", `Job ${job.id} is still ${job.status} after ${timeoutMs} ms.`);
  }
}

/** `jobs.run` found the job failed or cancelled; `job` says why (`job.error`). */
export class JobFailedError extends ControlNetClientError {
  constructor(readonly job: Job) {
    super(
      job.status === "cancelled" ? "JOB_CANCELLED" : "JOB_FAILED",
      job.error
        ? `Job ${job.id} ${job.status}: ${job.error.code}: ${job.error.message}`
        : `Job ${job.id} ${job.status}.`,
    );
  }
}

/** A file input that is not a PNG, JPEG or WebP image, or cannot be read. */
export class InvalidInputError extends ControlNetClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("INVALID_INPUT", message, options);
  }
}

/** A webhook whose signature matches none of the secrets, or whose timestamp is too old or new. */
export class WebhookVerificationError extends ControlNetClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("WEBHOOK_VERIFICATION_FAILED", message, options);
  }
}
