/** Results queue consumer: the one place where provider results become stored outputs and terminal states. */
import { BatchProcessor, EventType, processPartialResponse } from "@aws-lambda-powertools/batch";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { SQSEvent, SQSRecord } from "aws-lambda";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { createS3Client, S3ObjectStore } from "../shared/adapters/s3/object-store.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { logger } from "../shared/lambda/logger.ts";
import { lambdaProviders } from "../shared/lambda/providers.ts";
import { resolveSecret } from "../shared/lambda/secrets.ts";
import { dispatchSettings } from "../shared/lambda/settings.ts";
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
  // Attempts end here (their slots are released); an `auto` job whose primary attempts keep failing
  // starts on the fallback provider from here.
  providers: lambdaProviders(config, doc, sqs),
  presignInput: (_bucket: string, key: string) => inputs.presignGet(key, 6 * 3_600),
  jobsQueue: new SqsQueue(sqs, config.JOBS_QUEUE_URL),
  resultsQueue: new SqsQueue(sqs, config.RESULTS_QUEUE_URL),
  clock: systemClock,
  copyOutput: s3OutputCopier(outputs, config.OUTPUTS_BUCKET, downloadPolicy(config)),
  discardOutputs: s3OutputDiscarder(outputs),
  settings: {
    ...dispatchSettings(config, await resolveSecret(config, "CALLBACK_SECRET", "CALLBACK_SECRET_ARN")),
    storingTimeoutSeconds: config.STORING_TIMEOUT_SECONDS,
  },
  log: (message: string, data: Record<string, unknown>) => logger.warn(message, data),
};

const processor = new BatchProcessor(EventType.SQS);

const finalizeRecord = async (record: SQSRecord) => {
  const message = resultMessageSchema.parse(JSON.parse(record.body));
  const outcome = await finalizeResult(deps, message);
  const { jobId, provider, attempt, source } = message;
  logger.info("result finalized", { jobId, provider, attempt, source, outcome });
};

export const handler = middy<SQSEvent>()
  .use(injectLambdaContext(logger))
  .handler((event, context) =>
    processPartialResponse(event, finalizeRecord, processor, { context, processInParallel: true }),
  );
