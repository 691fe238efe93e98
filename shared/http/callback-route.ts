import * as z from "zod/mini";
import { CALLBACK_PATH } from "../domain/callback-token.ts";
import type { RouteDeclaration } from "./routes.ts";

/**
 * The providers' webhook, a row of the route table (`ROUTES`, shared/http/routes.ts) kept in its own
 * module: the callback function reads it without the API's schemas.
 */
export const CALLBACK_ROUTE = {
  operationId: "receiveProviderCallback",
  method: "POST",
  path: CALLBACK_PATH,
  servedBy: "Callback",
  auth: "none",
  unauthenticatedBecause:
    "Providers cannot send a tenant API key; each callback URL carries an unguessable per-attempt HMAC token that the callback function verifies before trusting anything",
  tag: "provider",
  summary: "A provider's callback for one attempt of a job (not for clients)",
  description:
    "Served at CALLBACK_BASE_URL: the callback function's own URL, or this API with callbackIngress=http-api. Only providers that take callbacks have this route (404 for any other); the token is checked before the body is read; the result is queued and answered at once.",
  request: {
    params: {
      provider: "The provider the callback URL was minted for (one that takes callbacks).",
      jobId: "The job the callback URL was minted for.",
    },
    query: z.object({
      attempt: z
        .string()
        .check(z.describe("The index of the job's attempt the callback URL was minted for.")),
      token: z
        .string()
        .check(
          z.describe("The attempt's HMAC token (provider, job, attempt), as the callback URL carries it."),
        ),
    }),
  },
  responses: { 202: { description: "Received.", body: "callbackReceipt" } },
  errors: [
    "ROUTE_NOT_FOUND",
    "UNAUTHORIZED",
    "PAYLOAD_TOO_LARGE",
    "INVALID_JSON",
    "INVALID_ENCODING",
    "TRACK_ID_MISMATCH",
    "QUEUE_UNAVAILABLE",
    "INVALID_QUEUE_MESSAGE",
  ],
} as const satisfies RouteDeclaration;
