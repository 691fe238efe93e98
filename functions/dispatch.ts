/**
 * Jobs queue consumer: the chosen provider's capacity gate, `queued → processing`, the submission (a
 * provider with callbacks gets our callback URL) — or, for `auto` jobs, the fallback provider while
 * the primary's breaker is open or when its capacity would come too late.
 */
import { BatchProcessor, EventType, processPartialResponse } from "@aws-lambda-powertools/batch";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { SQSEvent, SQSRecord } from "aws-lambda";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { S3UrlPresigner } from "../shared/adapters/s3/presigner.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { logger } from "../shared/lambda/logger.ts";
import { lambdaProviders } from "../shared/lambda/providers.ts";
import { resolveSecret } from "../shared/lambda/secrets.ts";
import { dispatchSettings } from "../shared/lambda/settings.ts";
import { lifecycleJobStore } from "../shared/lambda/wiring.ts";
import { systemClock } from "../shared/ports/index.ts";
import { dispatchConfig, loadConfig } from "../shared/schemas/config.ts";
import { dispatchMessageSchema } from "../shared/schemas/messages.ts";
import { dispatchJob } from "../shared/usecases/dispatch-job.ts";

const config = loadConfig(dispatchConfig);
const doc = createDocumentClient();
const sqs = createSqsClient();
// Only presigned GETs of stored inputs: no S3 client (shared/adapters/s3/presigner.ts).
const inputs = new S3UrlPresigner(config.INPUTS_BUCKET);
const deps = {
  jobs: lifecycleJobStore(doc, sqs, config),
  providers: lambdaProviders(config, doc, sqs),
  jobsQueue: new SqsQueue(sqs, config.JOBS_QUEUE_URL),
  resultsQueue: new SqsQueue(sqs, config.RESULTS_QUEUE_URL),
  clock: systemClock,
  settings: dispatchSettings(config, await resolveSecret(config, "CALLBACK_SECRET", "CALLBACK_SECRET_ARN")),
  // The provider fetches our stored inputs through presigned URLs valid for the job's first hours.
  presignInput: (_bucket: string, key: string) => inputs.presignGet(key, 6 * 3_600),
  log: (message: string, data: Record<string, unknown>) => logger.warn(message, data),
};

const processor = new BatchProcessor(EventType.SQS);

const dispatchRecord = async (record: SQSRecord) => {
  const message = dispatchMessageSchema.parse(JSON.parse(record.body));
  const outcome = await dispatchJob(deps, message);
  logger.debug("dispatched", { jobId: message.jobId, outcome });
};

export const handler = middy<SQSEvent>()
  .use(injectLambdaContext(logger))
  .handler((event, context) =>
    processPartialResponse(event, dispatchRecord, processor, { context, processInParallel: true }),
  );
