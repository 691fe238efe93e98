import type { Environment } from "../adapters/aws-client.ts";
import { createDocumentClient } from "../adapters/dynamo/client.ts";
import { S3UrlPresigner } from "../adapters/s3/presigner.ts";
import { createSqsClient, SqsQueue } from "../adapters/sqs/queue.ts";
import { systemClock } from "../ports/index.ts";
import { dispatchConfig, loadConfig } from "../schemas/config.ts";
import { type DispatchMessage, queues } from "../schemas/messages.ts";
import type { QueueDefinition } from "../schemas/queue.ts";
import { type DispatchDeps, dispatchJob } from "../usecases/dispatch-job.ts";
import { createLogger } from "./logger.ts";
import { createMetrics } from "./metrics.ts";
import { lambdaProviders } from "./providers.ts";
import { resolveSecret } from "./secrets.ts";
import { dispatchSettings } from "./settings.ts";
import { sqsConsumer } from "./sqs-consumer.ts";
import { lifecycleJobStore } from "./wiring.ts";

/**
 * The dispatch use case as an SQS consumer of `queue`, configured by `env`. Two functions run it: one
 * on the jobs queue (first looks, retries), one on the admissions queue (jobs admitted on a freed slot),
 * so that an admission never waits behind the jobs queue's backlog.
 */
export async function createDispatchHandler<M extends DispatchMessage>(
  env: Environment,
  queue: QueueDefinition<M>,
) {
  const config = loadConfig(dispatchConfig, env);
  const logger = createLogger(env);
  const { metrics, middleware: flushMetrics } = createMetrics(config, logger);
  const doc = createDocumentClient({}, env);
  const sqs = createSqsClient({}, env);
  // Only presigned GETs of stored inputs: no S3 client (shared/adapters/s3/presigner.ts).
  const inputs = new S3UrlPresigner(config.INPUTS_BUCKET, {}, env);
  const deps: DispatchDeps = {
    jobs: lifecycleJobStore({ doc, sqs, env, logger, metrics }, config),
    providers: lambdaProviders({ doc, sqs, logger }, config),
    jobsQueue: new SqsQueue(sqs, config.JOBS_QUEUE_URL, queues.jobs),
    admissionsQueue: new SqsQueue(sqs, config.ADMISSIONS_QUEUE_URL, queues.admissions),
    resultsQueue: new SqsQueue(sqs, config.RESULTS_QUEUE_URL, queues.results),
    clock: systemClock,
    settings: dispatchSettings(config, await resolveSecret(config, "CALLBACK_SECRET", "CALLBACK_SECRET_ARN")),
    // The provider fetches our stored inputs through presigned URLs valid for the job's first hours.
    presignInput: (_bucket: string, key: string) => inputs.presignGet(key, config.INPUT_URL_EXPIRY_SECONDS),
    metrics,
    log: (message: string, data: Record<string, unknown>) => logger.warn(message, data),
  };

  return sqsConsumer({
    queue,
    logger,
    metrics: flushMetrics,
    handle: async (message) => {
      const outcome = await dispatchJob(deps, message);
      logger.debug("dispatched", { jobId: message.jobId, outcome });
    },
  });
}
