import { type AppError, type ErrorKind, isAppError } from "../domain/errors.ts";
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

export function errorToHttp(error: unknown): HttpResponse {
  if (!isAppError(error)) {
    return json(500, {
      error: { code: "INTERNAL", message: "Internal error.", details: [], details_total: 0 },
    });
  }
  const appError: AppError = error;
  const headers: Record<string, string> = {};
  if (appError.kind === "unavailable") headers["retry-after"] = "1";
  if (appError.kind === "unauthorized")
    headers["www-authenticate"] = 'Bearer realm="controlnet-orchestrator"';
  if ("allowed" in appError && Array.isArray(appError.allowed)) headers.allow = appError.allowed.join(", ");
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
