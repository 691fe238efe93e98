/**
 * The providers' webhook receiver: a provider that takes callbacks, the per-attempt token and the
 * track_id checked, the result queued, answered at once.
 */
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import type { Environment } from "../shared/adapters/aws-client.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { createCallbackEndpoint } from "../shared/http/callback.ts";
import type { HttpResponse } from "../shared/http/responses.ts";
import { httpErrors } from "../shared/lambda/http-errors.ts";
import { createLogger } from "../shared/lambda/logger.ts";
import { resolveSecret } from "../shared/lambda/secrets.ts";
import { systemClock } from "../shared/ports/index.ts";
import { callbackNormalizers } from "../shared/providers/registry.ts";
import { callbackConfig, loadConfig } from "../shared/schemas/config.ts";
import { queues } from "../shared/schemas/messages.ts";

/** The function as configured by `env`: its configuration, clients and handler (tests build several). */
export async function createHandler(env: Environment) {
  const config = loadConfig(callbackConfig, env);
  const logger = createLogger(env);
  const endpoint = createCallbackEndpoint({
    resultsQueue: new SqsQueue(createSqsClient({}, env), config.RESULTS_QUEUE_URL, queues.results),
    clock: systemClock,
    callbackSecret: await resolveSecret(config, "CALLBACK_SECRET", "CALLBACK_SECRET_ARN"),
    maxBodyBytes: config.CALLBACK_MAX_BODY_BYTES,
    normalizers: callbackNormalizers((message, data) => logger.warn(message, data)),
  });

  return middy<APIGatewayProxyEventV2, HttpResponse>()
    .use(injectLambdaContext(logger))
    .use(httpErrors(logger))
    .handler((event) => endpoint(event));
}

export const handler = await createHandler(process.env);
