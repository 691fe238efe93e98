/** Results queue consumer: the one place where provider results become stored outputs and terminal states. */
import type { Environment } from "../shared/adapters/aws-client.ts";
import { DynamoCapacityGate } from "../shared/adapters/dynamo/capacity-gate.ts";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { createS3Client, S3ObjectStore } from "../shared/adapters/s3/object-store.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { createLogger } from "../shared/lambda/logger.ts";
import { dispatchSettings } from "../shared/lambda/settings.ts";
import { sqsConsumer } from "../shared/lambda/sqs-consumer.ts";
import {
  downloadPolicy,
  lifecycleJobStore,
  s3OutputCopier,
  s3OutputDiscarder,
} from "../shared/lambda/wiring.ts";
import { systemClock } from "../shared/ports/index.ts";
import { finalizeConfig, loadConfig } from "../shared/schemas/config.ts";
import { queues } from "../shared/schemas/messages.ts";
import { type FinalizeDeps, finalizeResult } from "../shared/usecases/finalize-result.ts";

/** The function as configured by `env`: its configuration, clients and handler (tests build several). */
export function createHandler(env: Environment) {
  const config = loadConfig(finalizeConfig, env);
  const logger = createLogger(env);
  const doc = createDocumentClient({}, env);
  const sqs = createSqsClient({}, env);
  const s3 = createS3Client({}, env);
  const inputs = new S3ObjectStore(s3, config.INPUTS_BUCKET);
  const outputs = new S3ObjectStore(s3, config.OUTPUTS_BUCKET);
  const deps: FinalizeDeps = {
    jobs: lifecycleJobStore({ doc, sqs, env, logger }, config),
    fallbackQueue: new SqsQueue(sqs, config.FALLBACK_QUEUE_URL, queues.fallback),
    presignInput: (_bucket: string, key: string) => inputs.presignGet(key, 6 * 3_600),
    gate: new DynamoCapacityGate(doc, config.TABLE_NAME, config.MODELSLAB_MAX_CONCURRENCY),
    jobsQueue: new SqsQueue(sqs, config.JOBS_QUEUE_URL, queues.jobs),
    clock: systemClock,
    copyOutput: s3OutputCopier(outputs, config.OUTPUTS_BUCKET, downloadPolicy(config)),
    discardOutputs: s3OutputDiscarder(outputs, logger),
    // Finalize never builds callback URLs; it only needs the retry settings.
    settings: {
      ...dispatchSettings(config, "unused"),
      storingTimeoutSeconds: config.STORING_TIMEOUT_SECONDS,
    },
  };

  return sqsConsumer({
    queue: queues.results,
    logger,
    handle: async (message) => {
      const outcome = await finalizeResult(deps, message);
      logger.info("result finalized", { jobId: message.jobId, source: message.source, outcome });
    },
  });
}

export const handler = createHandler(process.env);
