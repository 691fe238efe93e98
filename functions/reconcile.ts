/**
 * Scheduled sweep (every minute in AWS): re-sends lost dispatch messages and lost submissions to
 * providers that take them again (the self-hosted fleet's queue), polls providers for jobs whose
 * callback is overdue, fails jobs past their deadline, resumes interrupted stores,
 * re-announces terminal jobs whose notification stalled and heals capacity slots whose release was lost.
 */
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { S3UrlPresigner } from "../shared/adapters/s3/presigner.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { logger } from "../shared/lambda/logger.ts";
import { lambdaProviders } from "../shared/lambda/providers.ts";
import { resolveSecret } from "../shared/lambda/secrets.ts";
import { dispatchSettings } from "../shared/lambda/settings.ts";
import { lifecycleJobStore } from "../shared/lambda/wiring.ts";
import { systemClock } from "../shared/ports/index.ts";
import { loadConfig, reconcileConfig } from "../shared/schemas/config.ts";
import { reconcile } from "../shared/usecases/reconcile.ts";

const config = loadConfig(reconcileConfig);
const doc = createDocumentClient();
const sqs = createSqsClient();
// Only presigned GETs of stored inputs: no S3 client (shared/adapters/s3/presigner.ts).
const inputs = new S3UrlPresigner(config.INPUTS_BUCKET);
const deps = {
  jobs: lifecycleJobStore(doc, sqs, config),
  notifications: new SqsQueue(sqs, config.NOTIFICATIONS_QUEUE_URL),
  jobsQueue: new SqsQueue(sqs, config.JOBS_QUEUE_URL),
  resultsQueue: new SqsQueue(sqs, config.RESULTS_QUEUE_URL),
  presignInput: (_bucket: string, key: string) => inputs.presignGet(key, 6 * 3_600),
  // Polled, submitted to again, and their slots healed.
  providers: lambdaProviders(config, doc, sqs),
  clock: systemClock,
  dispatch: dispatchSettings(config, await resolveSecret(config, "CALLBACK_SECRET", "CALLBACK_SECRET_ARN")),
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

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async () => {
    const report = await reconcile(deps);
    if (report.examined > 0 || report.slotsHealed > 0) logger.info("reconciled", { ...report });
    return report;
  });
