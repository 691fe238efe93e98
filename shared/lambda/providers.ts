import type { Logger } from "@aws-lambda-powertools/logger";
import type { SQSClient } from "@aws-sdk/client-sqs";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import type * as z from "zod/mini";
import { DynamoCapacityGate } from "../adapters/dynamo/capacity-gate.ts";
import { DynamoCircuitBreaker } from "../adapters/dynamo/circuit-breaker.ts";
import { DynamoTenantStore } from "../adapters/dynamo/tenant-store.ts";
import { DynamoWaitingList } from "../adapters/dynamo/waiting-list.ts";
import { SqsQueue } from "../adapters/sqs/queue.ts";
import { bindProviders, type ProviderSet } from "../providers/registry.ts";
import type { providerSettingsConfig, tableConfig } from "../schemas/config.ts";
import { queues } from "../schemas/messages.ts";
import { resolveSecret } from "./secrets.ts";
import { breakerSettings } from "./settings.ts";

type Config = z.infer<typeof providerSettingsConfig> & z.infer<typeof tableConfig>;

/**
 * Every registry provider for a function that uses them, built with the function's clients: its
 * gate and breaker items in the jobs table, its queues on the function's SQS client, its secrets read
 * (on first use) from the function's configuration.
 */
export function lambdaProviders(
  deps: { doc: DynamoDBDocumentClient; sqs: SQSClient; logger: Logger },
  config: Config,
): ProviderSet {
  const { doc, sqs, logger } = deps;
  const tenants = new DynamoTenantStore(doc, config.TABLE_NAME);
  return bindProviders(
    config,
    {
      queue: (name, url) => new SqsQueue(sqs, url, queues[name]),
      secret: resolveSecret,
      log: (message, data) => logger.warn(message, data),
    },
    {
      gate: (key, limit) => new DynamoCapacityGate(doc, config.TABLE_NAME, limit, key),
      waiting: (key) =>
        new DynamoWaitingList(doc, config.TABLE_NAME, key, (tenant) => tenants.admissionSettings(tenant)),
      breaker: (key) => new DynamoCircuitBreaker(doc, config.TABLE_NAME, breakerSettings(config), key),
    },
  );
}
