/** Scheduled sweep: moves forward every non-terminal job whose `dueAt` has passed. */
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { DynamoJobStore } from "../shared/adapters/dynamo/job-store.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { logger } from "../shared/lambda/logger.ts";
import { systemClock } from "../shared/ports/index.ts";
import { loadConfig, reconcileConfig } from "../shared/schemas/config.ts";
import { reconcile } from "../shared/usecases/reconcile.ts";

const config = loadConfig(reconcileConfig);
const deps = {
  jobs: new DynamoJobStore(createDocumentClient(), config.TABLE_NAME),
  jobsQueue: new SqsQueue(createSqsClient(), config.JOBS_QUEUE_URL),
  clock: systemClock,
  settings: { queuedResendAfterSeconds: config.QUEUED_RESEND_AFTER_SECONDS, batchSize: config.RECONCILE_BATCH_SIZE },
};

export const handler = middy()
  .use(injectLambdaContext(logger))
  .handler(async () => {
    const report = await reconcile(deps);
    if (report.examined > 0) logger.info("reconciled", { ...report });
    return report;
  });
