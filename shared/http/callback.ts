import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { type ReceiveCallbackDeps, receiveCallback } from "../usecases/receive-callback.ts";
import { CALLBACK_ROUTE } from "./callback-route.ts";
import { parseJsonBytes, readBodyBytes } from "./request.ts";
import { type HttpResponse, json } from "./responses.ts";
import { Router } from "./router.ts";

/**
 * `POST /callbacks/{provider}/{jobId}?attempt=…&token=…` (CALLBACK_ROUTE): a provider's webhook. A
 * provider that takes callbacks (404), the attempt's token first (401), then size (413) and JSON
 * (400); then 202 at once — the result is queued, finalize decides what it means.
 *
 * It answers both an HTTP API route (which matched the path and method) and a Lambda function URL
 * (which sends every method and path here), so the path and method are matched here too: 404 and 405
 * as the API answers them.
 */
export function createCallbackEndpoint(
  deps: ReceiveCallbackDeps & { maxBodyBytes: number },
): (event: APIGatewayProxyEventV2) => Promise<HttpResponse> {
  const router = new Router<true>().add(CALLBACK_ROUTE.method, CALLBACK_ROUTE.path, true);
  return async (event) => {
    const method = event.requestContext.http.method.toUpperCase();
    const { params } = router.match(method, event.rawPath ?? event.requestContext.http.path);
    const query = event.queryStringParameters ?? {};
    const outcome = await receiveCallback(deps, {
      provider: params.provider ?? "",
      jobId: params.jobId ?? "",
      attempt: query.attempt,
      token: query.token,
      readBody: () => parseJsonBytes(readBodyBytes(event, deps.maxBodyBytes)),
    });
    return json(202, { received: true, outcome });
  };
}
