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

export class AppError extends Error {
  constructor(
    readonly kind: ErrorKind,
    readonly code: string,
    message: string,
    readonly details: ErrorDetail[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError {
  constructor(message: string, details: ErrorDetail[] = [], code = "VALIDATION_FAILED") {
    super("invalid_input", code, message, details);
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = "A valid API key is required: send 'Authorization: Bearer <key>'.") {
    super("unauthorized", "UNAUTHORIZED", message);
  }
}

export class NotFoundError extends AppError {
  constructor(code: string, message: string) {
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
  constructor(code: string, message: string) {
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
  constructor(code: string, message: string, options?: { cause?: unknown }) {
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
