/** HTTP API: submit, read, list and cancel jobs; OpenAPI document; 404/405 for everything else. */
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { DynamoJobStore } from "../shared/adapters/dynamo/job-store.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { createApi } from "../shared/http/api.ts";
import type { HttpResponse } from "../shared/http/responses.ts";
import { httpErrors } from "../shared/lambda/http-errors.ts";
import { logger } from "../shared/lambda/logger.ts";
import { systemClock } from "../shared/ports/index.ts";
import { apiConfig, loadConfig } from "../shared/schemas/config.ts";

const config = loadConfig(apiConfig);
const api = createApi({
  jobs: new DynamoJobStore(createDocumentClient(), config.TABLE_NAME),
  jobsQueue: new SqsQueue(createSqsClient(), config.JOBS_QUEUE_URL),
  clock: systemClock,
  settings: {
    maxBodyBytes: config.MAX_BODY_BYTES,
    defaultDeadlineSeconds: config.DEFAULT_DEADLINE_SECONDS,
    queuedResendAfterSeconds: config.QUEUED_RESEND_AFTER_SECONDS,
    idempotencyTtlSeconds: config.IDEMPOTENCY_TTL_SECONDS,
  },
  onDeferredSend: (jobId, error) =>
    logger.warn("queue send failed; the reconciler will re-send", { jobId, error: error as Error }),
});

export const handler = middy<APIGatewayProxyEventV2, HttpResponse>()
  .use(injectLambdaContext(logger))
  .use(httpErrors(logger))
  .handler((event) => api(event));
