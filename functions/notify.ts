/** Notifications queue consumer: records client notifications, publishes terminal lifecycle events, delivers signed webhooks with retries. */
import { BatchProcessor, EventType, processPartialResponse } from "@aws-lambda-powertools/batch";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { SQSEvent, SQSRecord } from "aws-lambda";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { DynamoNotificationStore } from "../shared/adapters/dynamo/notification-store.ts";
import { DynamoTenantStore } from "../shared/adapters/dynamo/tenant-store.ts";
import { createEventBridgeClient, EventBridgePublisher } from "../shared/adapters/eventbridge/publisher.ts";
import { SafeWebhookSender } from "../shared/adapters/http/webhook-sender.ts";
import { S3UrlPresigner } from "../shared/adapters/s3/presigner.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { logger } from "../shared/lambda/logger.ts";
import { notifySettings } from "../shared/lambda/settings.ts";
import { downloadPolicy, lifecycleJobStore } from "../shared/lambda/wiring.ts";
import { systemClock } from "../shared/ports/index.ts";
import { loadConfig, notifyConfig } from "../shared/schemas/config.ts";
import { notifyMessageSchema } from "../shared/schemas/messages.ts";
import { handleNotifyMessage, type NotifyDeps } from "../shared/usecases/notify.ts";
import { presignedPresenter } from "../shared/usecases/present-job.ts";

const config = loadConfig(notifyConfig);
const doc = createDocumentClient();
const sqs = createSqsClient();
// Only presigned GETs of stored outputs: no S3 client (shared/adapters/s3/presigner.ts).
const outputs = new S3UrlPresigner(config.OUTPUTS_BUCKET);
const deps: NotifyDeps = {
  jobs: lifecycleJobStore(doc, sqs, config),
  notifications: new DynamoNotificationStore(doc, config.TABLE_NAME),
  tenants: new DynamoTenantStore(doc, config.TABLE_NAME),
  notifyQueue: new SqsQueue(sqs, config.NOTIFICATIONS_QUEUE_URL),
  deadLetters: new SqsQueue(sqs, config.NOTIFICATIONS_DLQ_URL),
  events: new EventBridgePublisher(createEventBridgeClient(), config.EVENT_BUS_NAME),
  publishTerminalEvents: config.LIFECYCLE_EVENTS !== "none",
  sender: new SafeWebhookSender({
    ...downloadPolicy(config),
    timeoutMs: config.NOTIFY_TIMEOUT_SECONDS * 1000,
  }),
  clock: systemClock,
  present: presignedPresenter(outputs, config.OUTPUT_URL_EXPIRY_SECONDS),
  settings: notifySettings(config),
};

const processor = new BatchProcessor(EventType.SQS);

const notifyRecord = async (record: SQSRecord) => {
  const message = notifyMessageSchema.parse(JSON.parse(record.body));
  const outcome = await handleNotifyMessage(deps, message);
  logger.info("notification step", { ...message, outcome });
};

export const handler = middy<SQSEvent>()
  .use(injectLambdaContext(logger))
  .handler((event, context) =>
    processPartialResponse(event, notifyRecord, processor, { context, processInParallel: true }),
  );
