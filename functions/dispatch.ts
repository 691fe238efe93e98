/**
 * Jobs queue consumer: the chosen provider's capacity gate, `queued → processing`, the submission (a
 * provider with callbacks gets our callback URL) — or, for `auto` jobs, the fallback provider while
 * the primary's breaker is open or when its capacity would come too late.
 */
import type { Environment } from "../shared/adapters/aws-client.ts";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { S3UrlPresigner } from "../shared/adapters/s3/presigner.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { createLogger } from "../shared/lambda/logger.ts";
import { createMetrics } from "../shared/lambda/metrics.ts";
import { lambdaProviders } from "../shared/lambda/providers.ts";
import { resolveSecret } from "../shared/lambda/secrets.ts";
import { dispatchSettings } from "../shared/lambda/settings.ts";
import { sqsConsumer } from "../shared/lambda/sqs-consumer.ts";
import { lifecycleJobStore } from "../shared/lambda/wiring.ts";
import { systemClock } from "../shared/ports/index.ts";
import { dispatchConfig, loadConfig } from "../shared/schemas/config.ts";
import { queues } from "../shared/schemas/messages.ts";
import { type DispatchDeps, dispatchJob } from "../shared/usecases/dispatch-job.ts";

/** The function as configured by `env`: its configuration, clients and handler (tests build several). */
export async function createHandler(env: Environment) {
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
    resultsQueue: new SqsQueue(sqs, config.RESULTS_QUEUE_URL, queues.results),
    clock: systemClock,
    settings: dispatchSettings(config, await resolveSecret(config, "CALLBACK_SECRET", "CALLBACK_SECRET_ARN")),
    // The provider fetches our stored inputs through presigned URLs valid for the job's first hours.
    presignInput: (_bucket: string, key: string) => inputs.presignGet(key, config.INPUT_URL_EXPIRY_SECONDS),
    metrics,
    log: (message: string, data: Record<string, unknown>) => logger.warn(message, data),
  };

  return sqsConsumer({
    queue: queues.jobs,
    logger,
    metrics: flushMetrics,
    handle: async (message) => {
      const outcome = await dispatchJob(deps, message);
      logger.debug("dispatched", { jobId: message.jobId, outcome });
    },
  });
}

export const handler = await createHandler(process.env);
