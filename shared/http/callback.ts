import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { NotFoundError } from "../domain/errors.ts";
import { type ReceiveCallbackDeps, receiveCallback } from "../usecases/receive-callback.ts";
import { parseJsonBytes, readBodyBytes } from "./request.ts";
import { type HttpResponse, json } from "./responses.ts";

/**
 * `POST /callbacks/modelslab/{jobId}?token=…`: the provider's webhook. Token first (401), then size
 * (413) and JSON (400); then 202 at once — the result is queued, finalize decides what it means.
 */
export function createCallbackEndpoint(
  deps: ReceiveCallbackDeps & { maxBodyBytes: number },
): (event: APIGatewayProxyEventV2) => Promise<HttpResponse> {
  return async (event) => {
    const jobId = event.pathParameters?.jobId;
    if (!jobId) throw new NotFoundError("ROUTE_NOT_FOUND", "No job id in the callback path.");
    const token = event.queryStringParameters?.token;
    const outcome = await receiveCallback(deps, {
      jobId,
      token,
      readBody: () => parseJsonBytes(readBodyBytes(event, deps.maxBodyBytes)),
    });
    return json(202, { received: true, outcome });
  };
}
