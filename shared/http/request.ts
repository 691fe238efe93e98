import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError } from "../domain/errors.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });

export const header = (event: APIGatewayProxyEventV2, name: string): string | undefined => {
  // API Gateway v2 lower-cases header names; be lenient for other callers.
  const headers = event.headers ?? {};
  return headers[name] ?? Object.entries(headers).find(([key]) => key.toLowerCase() === name)?.[1];
};

/**
 * Reads a JSON request body: size first (before decoding anything), then content type, then strict
 * UTF-8 and JSON. Each failure has its own status and code.
 */
export function readJsonBody(event: APIGatewayProxyEventV2, maxBytes: number): unknown {
  const bytes = readBodyBytes(event, maxBytes);
  const contentType = header(event, "content-type");
  const mediaType = contentType?.split(";")[0]?.trim().toLowerCase();
  if (mediaType !== "application/json" && !mediaType?.endsWith("+json")) {
    throw new UnsupportedMediaTypeError(contentType);
  }
  return parseJsonBytes(bytes);
}

/** The raw body, refused with 413 past `maxBytes` before anything else looks at it. */
export function readBodyBytes(event: APIGatewayProxyEventV2, maxBytes: number): Buffer {
  const raw = event.body ?? "";
  const bytes = event.isBase64Encoded ? Buffer.from(raw, "base64") : Buffer.from(raw, "utf8");
  if (bytes.byteLength > maxBytes) throw new PayloadTooLargeError(maxBytes);
  return bytes;
}

/** Strict UTF-8, then JSON; each failure is a 400 with its own code. */
export function parseJsonBytes(bytes: Buffer): unknown {
  if (bytes.byteLength === 0)
    throw new ValidationError("The request body is empty; send a JSON object.", [], "INVALID_JSON");

  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new ValidationError("The request body is not valid UTF-8.", [], "INVALID_ENCODING");
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ValidationError(
      `The request body is not valid JSON: ${error instanceof Error ? error.message : "parse error"}.`,
      [],
      "INVALID_JSON",
    );
  }
}
