/** Results queue consumer: the one place where provider results become stored outputs and terminal states. */
import { BatchProcessor, EventType, processPartialResponse } from "@aws-lambda-powertools/batch";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { SQSEvent, SQSRecord } from "aws-lambda";
import { DynamoCapacityGate } from "../shared/adapters/dynamo/capacity-gate.ts";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { createS3Client, S3ObjectStore } from "../shared/adapters/s3/object-store.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { logger } from "../shared/lambda/logger.ts";
import { finalizeSettings } from "../shared/lambda/settings.ts";
import {
  downloadPolicy,
  lifecycleJobStore,
  s3OutputCopier,
  s3OutputDiscarder,
} from "../shared/lambda/wiring.ts";
import { systemClock } from "../shared/ports/index.ts";
import { finalizeConfig, loadConfig } from "../shared/schemas/config.ts";
import { resultMessageSchema } from "../shared/schemas/messages.ts";
import { type FinalizeDeps, finalizeResult } from "../shared/usecases/finalize-result.ts";

const config = loadConfig(finalizeConfig);
const doc = createDocumentClient();
const sqs = createSqsClient();
const inputs = new S3ObjectStore(createS3Client(), config.INPUTS_BUCKET);
const outputs = new S3ObjectStore(createS3Client(), config.OUTPUTS_BUCKET);
const deps: FinalizeDeps = {
  jobs: lifecycleJobStore(doc, sqs, config),
  fallbackQueue: new SqsQueue(sqs, config.FALLBACK_QUEUE_URL),
  presignInput: (_bucket: string, key: string) => inputs.presignGet(key, config.INPUT_URL_EXPIRY_SECONDS),
  gate: new DynamoCapacityGate(doc, config.TABLE_NAME, config.MODELSLAB_MAX_CONCURRENCY),
  jobsQueue: new SqsQueue(sqs, config.JOBS_QUEUE_URL),
  clock: systemClock,
  copyOutput: s3OutputCopier(outputs, config.OUTPUTS_BUCKET, downloadPolicy(config)),
  discardOutputs: s3OutputDiscarder(outputs),
  settings: finalizeSettings(config),
};

const processor = new BatchProcessor(EventType.SQS);

const finalizeRecord = async (record: SQSRecord) => {
  const message = resultMessageSchema.parse(JSON.parse(record.body));
  const outcome = await finalizeResult(deps, message);
  logger.info("result finalized", { jobId: message.jobId, source: message.source, outcome });
};

export const handler = middy<SQSEvent>()
  .use(injectLambdaContext(logger))
  .handler((event, context) =>
    processPartialResponse(event, finalizeRecord, processor, { context, processInParallel: true }),
  );
