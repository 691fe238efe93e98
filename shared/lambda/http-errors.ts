import type { Logger } from "@aws-lambda-powertools/logger";
import type middy from "@middy/core";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { errorToHttp, isServerError } from "../http/errors.ts";
import type { HttpResponse } from "../http/responses.ts";

/**
 * middy error mapping for HTTP functions: every error becomes the API's JSON error answer via the
 * single mapping in `shared/http/errors.ts`; server-side failures are logged with their cause.
 */
export const httpErrors = (logger: Logger): middy.MiddlewareObj<APIGatewayProxyEventV2, HttpResponse> => ({
  onError: async (request) => {
    if (isServerError(request.error)) logger.error("request failed", { error: request.error as Error });
    request.response = errorToHttp(request.error);
  },
});
