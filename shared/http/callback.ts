import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { parseCallbackPath } from "../domain/callback-token.ts";
import { MethodNotAllowedError, NotFoundError } from "../domain/errors.ts";
import { type ReceiveCallbackDeps, receiveCallback } from "../usecases/receive-callback.ts";
import { parseJsonBytes, readBodyBytes } from "./request.ts";
import { type HttpResponse, json } from "./responses.ts";

/**
 * `POST /callbacks/{provider}/{jobId}?attempt=…&token=…` (CALLBACK_ROUTE): a provider's webhook. A
 * provider that takes callbacks (404), token first (401), then size (413) and JSON (400); then 202 at
 * once — the result is queued, finalize decides what it means.
 *
 * It answers both an HTTP API route (which matched the path and method and passes `provider` and
 * `jobId`) and a Lambda function URL (which sends every method and path here), so the path and method
 * are checked here too.
 */
export function createCallbackEndpoint(
  deps: ReceiveCallbackDeps & { maxBodyBytes: number },
): (event: APIGatewayProxyEventV2) => Promise<HttpResponse> {
  return async (event) => {
    const { provider, jobId } = event.pathParameters ?? {};
    const target = provider && jobId ? { provider, jobId } : parseCallbackPath(event.rawPath ?? "");
    if (!target) throw new NotFoundError("ROUTE_NOT_FOUND", "No provider and job id in the callback path.");
    const method = event.requestContext.http.method.toUpperCase();
    if (method !== "POST") throw new MethodNotAllowedError(method, event.rawPath, ["POST"]);
    const query = event.queryStringParameters ?? {};
    const outcome = await receiveCallback(deps, {
      ...target,
      attempt: query.attempt,
      token: query.token,
      readBody: () => parseJsonBytes(readBodyBytes(event, deps.maxBodyBytes)),
    });
    return json(202, { received: true, outcome });
  };
}
