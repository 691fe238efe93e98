/**
 * One error hierarchy for the whole product. Every error has a stable `code` that clients and
 * operators can rely on; `shared/http/errors.ts` is the only place that maps errors to HTTP.
 */
export type ErrorDetail = { path: string; message: string };

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

/**
 * Every `code` an AppError can carry, with its kind, declared once: the constructors below take only
 * codes of their own kind, the HTTP status follows from the kind (`shared/http/errors.ts`), the OpenAPI
 * document lists each route's codes under that status, and docs/errors.md catalogues exactly this list
 * (test/unit/docs-catalogue.test.ts compares the two).
 */
export const ERROR_KINDS = {
  VALIDATION_FAILED: "invalid_input",
  INVALID_JSON: "invalid_input",
  INVALID_ENCODING: "invalid_input",
  INVALID_CURSOR: "invalid_input",
  INVALID_IDEMPOTENCY_KEY: "invalid_input",
  TRACK_ID_MISMATCH: "invalid_input",
  UNAUTHORIZED: "unauthorized",
  JOB_NOT_FOUND: "not_found",
  ROUTE_NOT_FOUND: "not_found",
  TENANT_NOT_FOUND: "not_found",
  API_KEY_NOT_FOUND: "not_found",
  METHOD_NOT_ALLOWED: "method_not_allowed",
  IDEMPOTENCY_KEY_REUSED: "conflict",
  JOB_ALREADY_TERMINAL: "conflict",
  NOTHING_TO_REPLAY: "conflict",
  JOB_EXISTS: "conflict",
  TENANT_EXISTS: "conflict",
  API_KEY_EXISTS: "conflict",
  API_KEY_LIMIT_REACHED: "conflict",
  LAST_API_KEY: "conflict",
  STALE_WRITE: "conflict",
  PAYLOAD_TOO_LARGE: "payload_too_large",
  UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
  STORE_UNAVAILABLE: "unavailable",
  QUEUE_UNAVAILABLE: "unavailable",
  EVENTS_UNAVAILABLE: "unavailable",
  IDEMPOTENCY_RECORD_ORPHANED: "unavailable",
  INVALID_QUEUE_MESSAGE: "internal",
  INTERNAL: "internal",
} as const satisfies Record<string, ErrorKind>;
export type ErrorCode = keyof typeof ERROR_KINDS;
export const ERROR_CODES = Object.keys(ERROR_KINDS) as ErrorCode[];

/** The codes of one kind. */
export type CodeOf<K extends ErrorKind> = {
  [C in ErrorCode]: (typeof ERROR_KINDS)[C] extends K ? C : never;
}[ErrorCode];

export class AppError<K extends ErrorKind = ErrorKind> extends Error {
  /** At most MAX_ERROR_DETAILS details, each path and message clipped. */
  readonly details: ErrorDetail[];
  /** How many details there were before the first MAX_ERROR_DETAILS were kept. */
  readonly detailsTotal: number;

  constructor(
    readonly kind: K,
    readonly code: CodeOf<K>,
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

export class ValidationError extends AppError<"invalid_input"> {
  /** `detailsTotal`: the count of every issue found, when `details` holds only the first ones. */
  constructor(
    message: string,
    details: readonly ErrorDetail[] = [],
    code: CodeOf<"invalid_input"> = "VALIDATION_FAILED",
    detailsTotal?: number,
  ) {
    super("invalid_input", code, message, details, detailsTotal === undefined ? undefined : { detailsTotal });
  }
}

export class UnauthorizedError extends AppError<"unauthorized"> {
  constructor(message = "A valid API key is required: send 'Authorization: Bearer <key>'.") {
    super("unauthorized", "UNAUTHORIZED", message);
  }
}

export class NotFoundError extends AppError<"not_found"> {
  constructor(code: CodeOf<"not_found">, message: string) {
    super("not_found", code, message);
  }
}

export class MethodNotAllowedError extends AppError<"method_not_allowed"> {
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

export class ConflictError extends AppError<"conflict"> {
  constructor(code: CodeOf<"conflict">, message: string) {
    super("conflict", code, message);
  }
}

export class PayloadTooLargeError extends AppError<"payload_too_large"> {
  constructor(limitBytes: number) {
    super(
      "payload_too_large",
      "PAYLOAD_TOO_LARGE",
      `The request body exceeds the limit of ${limitBytes} bytes.`,
    );
  }
}

export class UnsupportedMediaTypeError extends AppError<"unsupported_media_type"> {
  constructor(contentType: string | undefined) {
    super(
      "unsupported_media_type",
      "UNSUPPORTED_MEDIA_TYPE",
      `Content-Type must be application/json${contentType ? `, not ${contentType}` : ""}.`,
    );
  }
}

/** A dependency failed in a way that is worth retrying later (the client may retry the same request). */
export class UnavailableError extends AppError<"unavailable"> {
  constructor(code: CodeOf<"unavailable">, message: string, options?: { cause?: unknown }) {
    super("unavailable", code, message, [], options);
  }
}

/** The write lost a race: the item's status or version changed under us. Callers re-read and decide. */
export class StaleWriteError extends AppError<"conflict"> {
  constructor(message: string, options?: { cause?: unknown }) {
    super("conflict", "STALE_WRITE", message, [], options);
  }
}

/**
 * A queue message that does not match its queue's schema (`shared/schemas/queue.ts`). Never worth
 * retrying as is: on send it is a bug in the sender, and the message is not sent; on receive the
 * consumer reports the record failed, so the queue's redrive policy moves it to the dead-letter queue.
 */
export class InvalidMessageError extends AppError<"internal"> {
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
