/** HTTP API: jobs, uploads, notifications and webhook settings; OpenAPI; 404/405 for everything else. */
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import type { Environment } from "../shared/adapters/aws-client.ts";
import { DynamoCapacityGate } from "../shared/adapters/dynamo/capacity-gate.ts";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { DynamoNotificationStore } from "../shared/adapters/dynamo/notification-store.ts";
import { DynamoTenantStore } from "../shared/adapters/dynamo/tenant-store.ts";
import { DynamoWaitingList } from "../shared/adapters/dynamo/waiting-list.ts";
import { systemHostResolver } from "../shared/adapters/http/dns.ts";
import { createS3Client, S3ObjectStore } from "../shared/adapters/s3/object-store.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { createApi } from "../shared/http/api.ts";
import type { HttpResponse } from "../shared/http/responses.ts";
import { httpErrors } from "../shared/lambda/http-errors.ts";
import { createLogger } from "../shared/lambda/logger.ts";
import { createMetrics } from "../shared/lambda/metrics.ts";
import { apiSettings } from "../shared/lambda/settings.ts";
import { lifecycleJobStore } from "../shared/lambda/wiring.ts";
import { systemClock } from "../shared/ports/index.ts";
import { apiConfig, loadConfig } from "../shared/schemas/config.ts";
import { queues } from "../shared/schemas/messages.ts";
import { queuePosition } from "../shared/usecases/admission.ts";
import { presignedPresenter } from "../shared/usecases/present-job.ts";

/** The function as configured by `env`: its configuration, clients and handler (tests build several). */
export function createHandler(env: Environment) {
  const config = loadConfig(apiConfig, env);
  const logger = createLogger(env);
  const { metrics, middleware: flushMetrics } = createMetrics(config, logger);
  const doc = createDocumentClient({}, env);
  const sqs = createSqsClient({}, env);
  const s3 = createS3Client({}, env);
  const tenants = new DynamoTenantStore(doc, config.TABLE_NAME);
  const api = createApi({
    jobs: lifecycleJobStore({ doc, sqs, env, logger, metrics }, config),
    jobsQueue: new SqsQueue(sqs, config.JOBS_QUEUE_URL, queues.jobs),
    clock: systemClock,
    settings: apiSettings(config),
    onDeferredSend: (jobId, error) =>
      logger.warn("queue send failed; the reconciler will re-send", { jobId, error: error as Error }),
    present: presignedPresenter(
      new S3ObjectStore(s3, config.OUTPUTS_BUCKET),
      config.OUTPUT_URL_EXPIRY_SECONDS,
    ),
    leaveWaitingList: async (job) => {
      const place = job.waiting;
      if (!place) return;
      await new DynamoWaitingList(doc, config.TABLE_NAME, place.provider, (t) =>
        tenants.admissionSettings(t),
      ).remove(place);
    },
    queuePosition: (job) => {
      const provider = job.waiting?.provider;
      if (!provider) return Promise.resolve(null);
      // Reads only: the gate's limit is the one its acquirers store on the gate item.
      return queuePosition(
        {
          gate: new DynamoCapacityGate(doc, config.TABLE_NAME, 0, provider),
          waiting: new DynamoWaitingList(doc, config.TABLE_NAME, provider, (t) =>
            tenants.admissionSettings(t),
          ),
        },
        job,
      );
    },
    inputs: {
      inputs: new S3ObjectStore(s3, config.INPUTS_BUCKET),
      inputsBucket: config.INPUTS_BUCKET,
      policy: { mode: config.NETWORK_POLICY },
      resolve: systemHostResolver,
    },
    notifications: new DynamoNotificationStore(doc, config.TABLE_NAME),
    notifyQueue: new SqsQueue(sqs, config.NOTIFICATIONS_QUEUE_URL, queues.notifications),
    tenants,
    apiKeys: tenants,
    models: config.SELF_HOSTED_MODELS,
  });

  return middy<APIGatewayProxyEventV2, HttpResponse>()
    .use(injectLambdaContext(logger))
    .use(flushMetrics)
    .use(httpErrors(logger))
    .handler((event) => api(event));
}

export const handler = createHandler(process.env);
