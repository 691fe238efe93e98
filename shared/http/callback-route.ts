import * as z from "zod/mini";
import { CALLBACK_PATH } from "../domain/callback-token.ts";
import type { RouteDeclaration } from "./routes.ts";

/**
 * The provider's webhook, a row of the route table (`ROUTES`, shared/http/routes.ts) kept in its own
 * module: the callback function reads it without the API's schemas.
 */
export const CALLBACK_ROUTE = {
  operationId: "receiveProviderCallback",
  method: "POST",
  path: CALLBACK_PATH,
  servedBy: "Callback",
  auth: "none",
  unauthenticatedBecause:
    "ModelsLab cannot send a tenant API key; each callback URL carries an unguessable per-job HMAC token that the callback function verifies before trusting anything",
  tag: "provider",
  summary: "ModelsLab's callback for a job (not for clients)",
  description:
    "Served at CALLBACK_BASE_URL: the callback function's own URL, or this API with callbackIngress=http-api. The token is checked before the body is read; the result is queued and answered at once.",
  request: {
    params: { jobId: "The job the callback URL was minted for." },
    query: z.object({
      token: z.string().check(z.describe("The job's HMAC token, as the callback URL carries it.")),
    }),
  },
  responses: { 202: { description: "Received.", body: "callbackReceipt" } },
  errors: [
    "UNAUTHORIZED",
    "PAYLOAD_TOO_LARGE",
    "INVALID_JSON",
    "INVALID_ENCODING",
    "TRACK_ID_MISMATCH",
    "QUEUE_UNAVAILABLE",
    "INVALID_QUEUE_MESSAGE",
  ],
} as const satisfies RouteDeclaration;
