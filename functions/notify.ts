/** Notifications queue consumer: records client notifications, publishes terminal lifecycle events, delivers signed webhooks with retries. */
import type { Environment } from "../shared/adapters/aws-client.ts";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { DynamoNotificationStore } from "../shared/adapters/dynamo/notification-store.ts";
import { DynamoTenantStore } from "../shared/adapters/dynamo/tenant-store.ts";
import { createEventBridgeClient, EventBridgePublisher } from "../shared/adapters/eventbridge/publisher.ts";
import { SafeWebhookSender } from "../shared/adapters/http/webhook-sender.ts";
import { S3UrlPresigner } from "../shared/adapters/s3/presigner.ts";
import { createSqsClient, SqsQueue } from "../shared/adapters/sqs/queue.ts";
import { createLogger } from "../shared/lambda/logger.ts";
import { createMetrics } from "../shared/lambda/metrics.ts";
import { notifySettings } from "../shared/lambda/settings.ts";
import { sqsConsumer } from "../shared/lambda/sqs-consumer.ts";
import { downloadPolicy, lifecycleJobStore } from "../shared/lambda/wiring.ts";
import { systemClock } from "../shared/ports/index.ts";
import { loadConfig, notifyConfig } from "../shared/schemas/config.ts";
import { queues } from "../shared/schemas/messages.ts";
import { handleNotifyMessage, type NotifyDeps } from "../shared/usecases/notify.ts";

/** The function as configured by `env`: its configuration, clients and handler (tests build several). */
export function createHandler(env: Environment) {
  const config = loadConfig(notifyConfig, env);
  const logger = createLogger(env);
  const { metrics, middleware: flushMetrics } = createMetrics(config, logger);
  const doc = createDocumentClient({}, env);
  const sqs = createSqsClient({}, env);
  // Only presigned GETs of stored outputs: no S3 client (shared/adapters/s3/presigner.ts).
  const outputs = new S3UrlPresigner(config.OUTPUTS_BUCKET, {}, env);
  const deps: NotifyDeps = {
    jobs: lifecycleJobStore({ doc, sqs, env, logger, metrics }, config),
    notifications: new DynamoNotificationStore(doc, config.TABLE_NAME),
    tenants: new DynamoTenantStore(doc, config.TABLE_NAME),
    notifyQueue: new SqsQueue(sqs, config.NOTIFICATIONS_QUEUE_URL, queues.notifications),
    deadLetters: new SqsQueue(sqs, config.NOTIFICATIONS_DLQ_URL, queues.notificationsDeadLetters),
    events: new EventBridgePublisher(createEventBridgeClient(env), config.EVENT_BUS_NAME),
    publishTerminalEvents: config.LIFECYCLE_EVENTS !== "none",
    sender: new SafeWebhookSender({
      ...downloadPolicy(config),
      timeoutMs: config.NOTIFY_TIMEOUT_SECONDS * 1000,
    }),
    clock: systemClock,
    presignOutput: (key) => outputs.presignGet(key, config.OUTPUT_URL_EXPIRY_SECONDS),
    settings: notifySettings(config),
    metrics,
  };

  return sqsConsumer({
    queue: queues.notifications,
    logger,
    metrics: flushMetrics,
    handle: async (message) => {
      const outcome = await handleNotifyMessage(deps, message);
      logger.info("notification step", { ...message, outcome });
    },
  });
}

export const handler = createHandler(process.env);
