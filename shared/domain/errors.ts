/**
 * One error hierarchy for the whole product. Every error has a stable `code` that clients and
 * operators can rely on; `shared/http/errors.ts` is the only place that maps errors to HTTP.
 */
export type ErrorDetail = { path: string; message: string };

/**
 * Every `code` an AppError can carry, declared once: the constructors below take only these, and
 * docs/errors.md catalogues exactly this list (test/unit/docs-catalogue.test.ts compares the two).
 */
export const ERROR_CODES = [
  "VALIDATION_FAILED",
  "INVALID_JSON",
  "INVALID_ENCODING",
  "INVALID_CURSOR",
  "INVALID_IDEMPOTENCY_KEY",
  "TRACK_ID_MISMATCH",
  "UNAUTHORIZED",
  "JOB_NOT_FOUND",
  "ROUTE_NOT_FOUND",
  "TENANT_NOT_FOUND",
  "METHOD_NOT_ALLOWED",
  "IDEMPOTENCY_KEY_REUSED",
  "JOB_ALREADY_TERMINAL",
  "NOTHING_TO_REPLAY",
  "JOB_EXISTS",
  "TENANT_EXISTS",
  "API_KEY_EXISTS",
  "STALE_WRITE",
  "PAYLOAD_TOO_LARGE",
  "UNSUPPORTED_MEDIA_TYPE",
  "STORE_UNAVAILABLE",
  "QUEUE_UNAVAILABLE",
  "EVENTS_UNAVAILABLE",
  "IDEMPOTENCY_RECORD_ORPHANED",
  "INVALID_QUEUE_MESSAGE",
  "INTERNAL",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * Bounds of what an error carries, so that an answer stays small whatever the request: a body of
 * 200,000 unknown keys would otherwise list 200,000 details, far past Lambda's 6 MB response limit
 * (which AWS turns into a 5xx). `detailsTotal` keeps the count of every detail found.
 */
export const MAX_ERROR_DETAILS = 20;
export const MAX_DETAIL_PATH_CHARS = 200;
export const MAX_DETAIL_MESSAGE_CHARS = 500;
export const MAX_ERROR_MESSAGE_CHARS = 1_000;

/** `text` cut to at most `max` characters, the cut marked with an ellipsis (never half a surrogate pair). */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}

export type ErrorKind =
  | "invalid_input"
  | "unauthorized"
  | "not_found"
  | "method_not_allowed"
  | "conflict"
  | "payload_too_large"
  | "unsupported_media_type"
  | "unavailable"
  | "internal";

export class AppError extends Error {
  /** At most MAX_ERROR_DETAILS details, each path and message clipped. */
  readonly details: ErrorDetail[];
  /** How many details there were before the first MAX_ERROR_DETAILS were kept. */
  readonly detailsTotal: number;

  constructor(
    readonly kind: ErrorKind,
    readonly code: ErrorCode,
    message: string,
    details: readonly ErrorDetail[] = [],
    options?: { cause?: unknown; detailsTotal?: number },
  ) {
    super(clip(message, MAX_ERROR_MESSAGE_CHARS), options);
    this.name = new.target.name;
    this.details = details.slice(0, MAX_ERROR_DETAILS).map((detail) => ({
      path: clip(detail.path, MAX_DETAIL_PATH_CHARS),
      message: clip(detail.message, MAX_DETAIL_MESSAGE_CHARS),
    }));
    this.detailsTotal = Math.max(options?.detailsTotal ?? 0, details.length);
  }
}

export class ValidationError extends AppError {
  /** `detailsTotal`: the count of every issue found, when `details` holds only the first ones. */
  constructor(
    message: string,
    details: readonly ErrorDetail[] = [],
    code: ErrorCode = "VALIDATION_FAILED",
    detailsTotal?: number,
  ) {
    super("invalid_input", code, message, details, detailsTotal === undefined ? undefined : { detailsTotal });
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = "A valid API key is required: send 'Authorization: Bearer <key>'.") {
    super("unauthorized", "UNAUTHORIZED", message);
  }
}

export class NotFoundError extends AppError {
  constructor(code: ErrorCode, message: string) {
    super("not_found", code, message);
  }
}

export class MethodNotAllowedError extends AppError {
  constructor(
    method: string,
    path: string,
    readonly allowed: string[],
  ) {
    super(
      "method_not_allowed",
      "METHOD_NOT_ALLOWED",
      `${method} is not allowed on ${path}; use ${allowed.join(", ")}.`,
    );
  }
}

export class ConflictError extends AppError {
  constructor(code: ErrorCode, message: string) {
    super("conflict", code, message);
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(limitBytes: number) {
    super(
      "payload_too_large",
      "PAYLOAD_TOO_LARGE",
      `The request body exceeds the limit of ${limitBytes} bytes.`,
    );
  }
}

export class UnsupportedMediaTypeError extends AppError {
  constructor(contentType: string | undefined) {
    super(
      "unsupported_media_type",
      "UNSUPPORTED_MEDIA_TYPE",
      `Content-Type must be application/json${contentType ? `, not ${contentType}` : ""}.`,
    );
  }
}

/** A dependency failed in a way that is worth retrying later (the client may retry the same request). */
export class UnavailableError extends AppError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super("unavailable", code, message, [], options);
  }
}

/** The write lost a race: the item's status or version changed under us. Callers re-read and decide. */
export class StaleWriteError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("conflict", "STALE_WRITE", message, [], options);
  }
}

/**
 * A queue message that does not match its queue's schema (`shared/schemas/queue.ts`). Never worth
 * retrying as is: on send it is a bug in the sender, and the message is not sent; on receive the
 * consumer reports the record failed, so the queue's redrive policy moves it to the dead-letter queue.
 */
export class InvalidMessageError extends AppError {
  constructor(
    readonly queue: string,
    readonly direction: "send" | "receive",
    readonly problems: string[],
  ) {
    super(
      "internal",
      "INVALID_QUEUE_MESSAGE",
      `${direction === "send" ? "Refused to send" : "Received"} a ${queue} message that does not match its schema: ${problems.join("; ")}`,
    );
  }
}

export const isAppError = (error: unknown): error is AppError => error instanceof AppError;
