/** Results queue consumer: the one place where provider results become stored outputs and terminal states. */
import type { Environment } from "../shared/adapters/aws-client.ts";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { createS3Client, S3ObjectStore } from "../shared/adapters/s3/object-store.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { createLogger } from "../shared/lambda/logger.ts";
import { createMetrics } from "../shared/lambda/metrics.ts";
import { lambdaProviders } from "../shared/lambda/providers.ts";
import { resolveSecret } from "../shared/lambda/secrets.ts";
import { finalizeSettings } from "../shared/lambda/settings.ts";
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
export async function createHandler(env: Environment) {
  const config = loadConfig(finalizeConfig, env);
  const logger = createLogger(env);
  const { metrics, middleware: flushMetrics } = createMetrics(config, logger);
  const doc = createDocumentClient({}, env);
  const sqs = createSqsClient({}, env);
  const s3 = createS3Client({}, env);
  const inputs = new S3ObjectStore(s3, config.INPUTS_BUCKET);
  const outputs = new S3ObjectStore(s3, config.OUTPUTS_BUCKET);
  const deps: FinalizeDeps = {
    jobs: lifecycleJobStore({ doc, sqs, env, logger, metrics }, config),
    // Attempts end here (their slots are released); an `auto` job whose primary attempts keep failing
    // starts on the fallback provider from here.
    providers: lambdaProviders({ doc, sqs, logger }, config),
    presignInput: (_bucket: string, key: string) => inputs.presignGet(key, config.INPUT_URL_EXPIRY_SECONDS),
    jobsQueue: new SqsQueue(sqs, config.JOBS_QUEUE_URL, queues.jobs),
    admissionsQueue: new SqsQueue(sqs, config.ADMISSIONS_QUEUE_URL, queues.admissions),
    resultsQueue: new SqsQueue(sqs, config.RESULTS_QUEUE_URL, queues.results),
    clock: systemClock,
    copyOutput: s3OutputCopier(outputs, config.OUTPUTS_BUCKET, downloadPolicy(config)),
    discardOutputs: s3OutputDiscarder(outputs, logger),
    settings: finalizeSettings(config, await resolveSecret(config, "CALLBACK_SECRET", "CALLBACK_SECRET_ARN")),
    metrics,
    log: (message: string, data: Record<string, unknown>) => logger.warn(message, data),
  };

  return sqsConsumer({
    queue: queues.results,
    logger,
    metrics: flushMetrics,
    handle: async (message) => {
      const outcome = await finalizeResult(deps, message);
      const { jobId, provider, attempt, source } = message;
      logger.info("result finalized", { jobId, provider, attempt, source, outcome });
    },
  });
}

export const handler = await createHandler(process.env);
