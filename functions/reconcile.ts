/**
 * Scheduled sweep (every minute in AWS): re-sends lost dispatch and worker messages, polls the provider
 * for jobs whose callback is overdue, fails jobs past their deadline, resumes interrupted stores,
 * re-announces terminal jobs whose notification stalled and heals capacity slots whose release was lost.
 */
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { Environment } from "../shared/adapters/aws-client.ts";
import { DynamoCapacityGate } from "../shared/adapters/dynamo/capacity-gate.ts";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { ModelsLabProvider } from "../shared/adapters/modelslab/client.ts";
import { S3UrlPresigner } from "../shared/adapters/s3/presigner.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { createLogger } from "../shared/lambda/logger.ts";
import { resolveSecret } from "../shared/lambda/secrets.ts";
import { lifecycleJobStore } from "../shared/lambda/wiring.ts";
import { systemClock } from "../shared/ports/index.ts";
import { loadConfig, reconcileConfig } from "../shared/schemas/config.ts";
import { queues } from "../shared/schemas/messages.ts";
import { type ReconcileDeps, reconcile } from "../shared/usecases/reconcile.ts";

/** The function as configured by `env`: its configuration, clients and handler (tests build several). */
export async function createHandler(env: Environment) {
  const config = loadConfig(reconcileConfig, env);
  const logger = createLogger(env);
  const doc = createDocumentClient({}, env);
  const sqs = createSqsClient({}, env);
  // Only presigned GETs of stored inputs: no S3 client (shared/adapters/s3/presigner.ts).
  const inputs = new S3UrlPresigner(config.INPUTS_BUCKET, {}, env);
  const deps: ReconcileDeps = {
    jobs: lifecycleJobStore({ doc, sqs, env, logger }, config),
    notifications: new SqsQueue(sqs, config.NOTIFICATIONS_QUEUE_URL, queues.notifications),
    jobsQueue: new SqsQueue(sqs, config.JOBS_QUEUE_URL, queues.jobs),
    resultsQueue: new SqsQueue(sqs, config.RESULTS_QUEUE_URL, queues.results),
    fallbackQueue: new SqsQueue(sqs, config.FALLBACK_QUEUE_URL, queues.fallback),
    presignInput: (_bucket: string, key: string) => inputs.presignGet(key, 6 * 3_600),
    gate: new DynamoCapacityGate(doc, config.TABLE_NAME, config.MODELSLAB_MAX_CONCURRENCY),
    provider: new ModelsLabProvider({
      baseUrl: config.MODELSLAB_BASE_URL,
      apiKey: await resolveSecret(config, "MODELSLAB_API_KEY", "MODELSLAB_API_KEY_SECRET_ARN"),
    }),
    clock: systemClock,
    settings: {
      queuedResendAfterSeconds: config.QUEUED_RESEND_AFTER_SECONDS,
      batchSize: config.RECONCILE_BATCH_SIZE,
      pollBaseSeconds: config.POLL_BASE_SECONDS,
      pollMaxSeconds: config.POLL_MAX_SECONDS,
      slotGraceSeconds: config.SLOT_GRACE_SECONDS,
      storingRetrySeconds: config.STORING_TIMEOUT_SECONDS,
      unknownOutcomeSeconds: config.UNKNOWN_OUTCOME_SECONDS,
      notifyGraceSeconds: config.NOTIFY_GRACE_SECONDS,
    },
    log: (message: string, data: Record<string, unknown>) => logger.warn(message, data),
  };

  return middy()
    .use(injectLambdaContext(logger))
    .handler(async () => {
      const report = await reconcile(deps);
      if (report.examined > 0 || report.slotsHealed > 0) logger.info("reconciled", { ...report });
      return report;
    });
}

export const handler = await createHandler(process.env);
