import {
  type AppError,
  ERROR_KINDS,
  type ErrorCode,
  type ErrorKind,
  isAppError,
  MethodNotAllowedError,
} from "../domain/errors.ts";
import { type HttpResponse, json } from "./responses.ts";

/** The one place where errors become HTTP answers. */
const STATUS_BY_KIND: Record<ErrorKind, number> = {
  invalid_input: 400,
  unauthorized: 401,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unavailable: 503,
  internal: 500,
};

interface ErrorHeader {
  /** Its value for this error; undefined: not sent. */
  value: (error: AppError) => string | undefined;
  /** What it says, for the OpenAPI document. */
  description: string;
}

/** The headers an error answer carries besides its body, by kind (names as the OpenAPI document shows them). */
const HEADERS_BY_KIND: Partial<Record<ErrorKind, Readonly<Record<string, ErrorHeader>>>> = {
  unauthorized: {
    "WWW-Authenticate": {
      value: () => 'Bearer realm="controlnet-orchestrator"',
      description: "The authentication scheme to use: Bearer.",
    },
  },
  method_not_allowed: {
    Allow: {
      value: (error) => (error instanceof MethodNotAllowedError ? error.allowed.join(", ") : undefined),
      description: "The methods the path takes.",
    },
  },
  unavailable: {
    "Retry-After": { value: () => "1", description: "Seconds to wait before sending the request again." },
  },
};

/** The status an error with `code` answers (its kind's); the OpenAPI document groups each route's codes by it. */
export const httpStatusOf = (code: ErrorCode): number => STATUS_BY_KIND[ERROR_KINDS[code]];

/** The headers (name → description) an error with `code` answers with, for the OpenAPI document. */
export function errorHeadersOf(code: ErrorCode): Record<string, string> {
  return Object.fromEntries(
    Object.entries(HEADERS_BY_KIND[ERROR_KINDS[code]] ?? {}).map(([name, header]) => [
      name,
      header.description,
    ]),
  );
}

export function errorToHttp(error: unknown): HttpResponse {
  if (!isAppError(error)) {
    return json(500, {
      error: { code: "INTERNAL", message: "Internal error.", details: [], details_total: 0 },
    });
  }
  const appError: AppError = error;
  const headers: Record<string, string> = {};
  for (const [name, header] of Object.entries(HEADERS_BY_KIND[appError.kind] ?? {})) {
    const value = header.value(appError);
    if (value !== undefined) headers[name.toLowerCase()] = value;
  }
  return json(
    STATUS_BY_KIND[appError.kind],
    {
      error: {
        code: appError.code,
        message: appError.message,
        details: appError.details,
        details_total: appError.detailsTotal,
      },
    },
    headers,
  );
}

export const isServerError = (error: unknown): boolean =>
  !isAppError(error) || STATUS_BY_KIND[error.kind] >= 500;
