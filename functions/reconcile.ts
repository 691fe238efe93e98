/**
 * Scheduled sweep (every minute in AWS): re-sends lost dispatch messages and lost submissions to
 * providers that take them again (the self-hosted fleet's queue), polls providers for jobs whose
 * callback is overdue, fails jobs past their deadline, resumes interrupted stores,
 * re-announces terminal jobs whose notification stalled and heals capacity slots whose release was lost.
 */
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { Environment } from "../shared/adapters/aws-client.ts";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { S3UrlPresigner } from "../shared/adapters/s3/presigner.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { createLogger } from "../shared/lambda/logger.ts";
import { createMetrics } from "../shared/lambda/metrics.ts";
import { lambdaProviders } from "../shared/lambda/providers.ts";
import { resolveSecret } from "../shared/lambda/secrets.ts";
import { dispatchSettings, reconcileSettings } from "../shared/lambda/settings.ts";
import { lifecycleJobStore } from "../shared/lambda/wiring.ts";
import { systemClock } from "../shared/ports/index.ts";
import { loadConfig, reconcileConfig } from "../shared/schemas/config.ts";
import { queues } from "../shared/schemas/messages.ts";
import { type ReconcileDeps, reconcile } from "../shared/usecases/reconcile.ts";
import { type GaugeDeps, reportGauges } from "../shared/usecases/report-gauges.ts";

/** The function as configured by `env`: its configuration, clients and handler (tests build several). */
export async function createHandler(env: Environment) {
  const config = loadConfig(reconcileConfig, env);
  const logger = createLogger(env);
  const { metrics, middleware: flushMetrics } = createMetrics(config, logger);
  const doc = createDocumentClient({}, env);
  const sqs = createSqsClient({}, env);
  // Only presigned GETs of stored inputs: no S3 client (shared/adapters/s3/presigner.ts).
  const inputs = new S3UrlPresigner(config.INPUTS_BUCKET, {}, env);
  // Polled, submitted to again, their slots healed and sampled.
  const providers = lambdaProviders({ doc, sqs, logger }, config);
  const deps: ReconcileDeps = {
    jobs: lifecycleJobStore({ doc, sqs, env, logger, metrics }, config),
    notifications: new SqsQueue(sqs, config.NOTIFICATIONS_QUEUE_URL, queues.notifications),
    jobsQueue: new SqsQueue(sqs, config.JOBS_QUEUE_URL, queues.jobs),
    admissionsQueue: new SqsQueue(sqs, config.ADMISSIONS_QUEUE_URL, queues.admissions),
    resultsQueue: new SqsQueue(sqs, config.RESULTS_QUEUE_URL, queues.results),
    presignInput: (_bucket: string, key: string) => inputs.presignGet(key, config.INPUT_URL_EXPIRY_SECONDS),
    providers,
    dispatch: dispatchSettings(config, await resolveSecret(config, "CALLBACK_SECRET", "CALLBACK_SECRET_ARN")),
    clock: systemClock,
    settings: reconcileSettings(config),
    metrics,
    log: (message: string, data: Record<string, unknown>) => logger.warn(message, data),
  };
  const gauges: GaugeDeps = {
    providers,
    metrics,
    clock: systemClock,
    perTenant: config.METRICS_TENANT_GAUGES,
    log: deps.log,
  };

  return middy()
    .use(injectLambdaContext(logger))
    .use(flushMetrics)
    .handler(async () => {
      const report = await reconcile(deps);
      await reportGauges(gauges);
      if (report.examined > 0 || report.slotsHealed > 0 || report.admitted > 0)
        logger.info("reconciled", { ...report });
      return report;
    });
}

export const handler = await createHandler(process.env);
