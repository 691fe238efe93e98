import type { SQSClient } from "@aws-sdk/client-sqs";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { DynamoCapacityGate } from "../adapters/dynamo/capacity-gate.ts";
import { DynamoCircuitBreaker } from "../adapters/dynamo/circuit-breaker.ts";
import { SqsQueue } from "../adapters/sqs/queue.ts";
import { bindProviders, type ProviderSet } from "../providers/registry.ts";
import type { providerSettingsConfig, tableConfig } from "../schemas/config.ts";
import { logger } from "./logger.ts";
import { resolveSecret } from "./secrets.ts";
import { breakerSettings } from "./settings.ts";

type Config = import("zod/mini").infer<typeof providerSettingsConfig> &
  import("zod/mini").infer<typeof tableConfig>;

/**
 * Every registry provider for a function that uses them, built with the function's clients: its
 * gate and breaker items in the jobs table, its queues on the function's SQS client, its secrets read
 * (on first use) from the function's environment.
 */
export function lambdaProviders(config: Config, doc: DynamoDBDocumentClient, sqs: SQSClient): ProviderSet {
  return bindProviders(
    config,
    {
      queue: (url) => new SqsQueue(sqs, url),
      secret: resolveSecret,
      log: (message, data) => logger.warn(message, data),
    },
    {
      gate: (key, limit) => new DynamoCapacityGate(doc, config.TABLE_NAME, limit, key),
      breaker: (key) => new DynamoCircuitBreaker(doc, config.TABLE_NAME, breakerSettings(config), key),
    },
  );
}
