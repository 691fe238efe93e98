import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { MethodNotAllowedError, NotFoundError } from "../domain/errors.ts";
import { type ReceiveCallbackDeps, receiveCallback } from "../usecases/receive-callback.ts";
import { parseJsonBytes, readBodyBytes } from "./request.ts";
import { type HttpResponse, json } from "./responses.ts";

/** The path of `callbackUrl` (shared/domain/callback-token.ts): one encoded segment after the prefix. */
const CALLBACK_PATH = /^\/callbacks\/modelslab\/([^/]+)$/;

/**
 * `POST /callbacks/modelslab/{jobId}?token=…`: the provider's webhook. Token first (401), then size
 * (413) and JSON (400); then 202 at once — the result is queued, finalize decides what it means.
 *
 * It answers both an HTTP API route (which matched the path and method and passes `jobId`) and a
 * Lambda function URL (which sends every method and path here), so the path and method are checked
 * here too.
 */
export function createCallbackEndpoint(
  deps: ReceiveCallbackDeps & { maxBodyBytes: number },
): (event: APIGatewayProxyEventV2) => Promise<HttpResponse> {
  return async (event) => {
    const jobId = event.pathParameters?.jobId ?? jobIdFromPath(event.rawPath);
    if (!jobId) throw new NotFoundError("ROUTE_NOT_FOUND", "No job id in the callback path.");
    const method = event.requestContext.http.method.toUpperCase();
    if (method !== "POST") throw new MethodNotAllowedError(method, event.rawPath, ["POST"]);
    const token = event.queryStringParameters?.token;
    const outcome = await receiveCallback(deps, {
      jobId,
      token,
      readBody: () => parseJsonBytes(readBodyBytes(event, deps.maxBodyBytes)),
    });
    return json(202, { received: true, outcome });
  };
}

/** Job ids are ULIDs, which need no percent-encoding: the segment is taken as it arrives (as the local gateway does). */
function jobIdFromPath(rawPath: string | undefined): string | undefined {
  return CALLBACK_PATH.exec(rawPath ?? "")?.[1];
}
