/**
 * One error hierarchy for the whole product. Every error has a stable `code` that clients and
 * operators can rely on; `shared/http/errors.ts` is the only place that maps errors to HTTP.
 */
export type ErrorDetail = { path: string; message: string };

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
  METHOD_NOT_ALLOWED: "method_not_allowed",
  IDEMPOTENCY_KEY_REUSED: "conflict",
  JOB_ALREADY_TERMINAL: "conflict",
  NOTHING_TO_REPLAY: "conflict",
  JOB_EXISTS: "conflict",
  TENANT_EXISTS: "conflict",
  API_KEY_EXISTS: "conflict",
  STALE_WRITE: "conflict",
  PAYLOAD_TOO_LARGE: "payload_too_large",
  UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
  STORE_UNAVAILABLE: "unavailable",
  QUEUE_UNAVAILABLE: "unavailable",
  EVENTS_UNAVAILABLE: "unavailable",
  IDEMPOTENCY_RECORD_ORPHANED: "unavailable",
  INTERNAL: "internal",
} as const satisfies Record<string, ErrorKind>;
export type ErrorCode = keyof typeof ERROR_KINDS;
export const ERROR_CODES = Object.keys(ERROR_KINDS) as ErrorCode[];

/** The codes of one kind. */
export type CodeOf<K extends ErrorKind> = {
  [C in ErrorCode]: (typeof ERROR_KINDS)[C] extends K ? C : never;
}[ErrorCode];

export class AppError<K extends ErrorKind = ErrorKind> extends Error {
  constructor(
    readonly kind: K,
    readonly code: CodeOf<K>,
    message: string,
    readonly details: ErrorDetail[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError<"invalid_input"> {
  constructor(
    message: string,
    details: ErrorDetail[] = [],
    code: CodeOf<"invalid_input"> = "VALIDATION_FAILED",
  ) {
    super("invalid_input", code, message, details);
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

export const isAppError = (error: unknown): error is AppError => error instanceof AppError;
