import { DynamoDBClient, type DynamoDBClientConfig } from "@aws-sdk/client-dynamodb";
import {
  DynamoDBDocumentClient,
  type DynamoDBDocumentClientResolvedConfig,
  type ServiceInputTypes,
  type ServiceOutputTypes,
} from "@aws-sdk/lib-dynamodb";
import type { Command } from "@smithy/types";
import { AppError, UnavailableError } from "../../domain/errors.ts";
import {
  AWS_CLIENT_DEFAULTS,
  type BoundedClientOptions,
  boundedHttpHandler,
  type Environment,
  isTransientAwsError,
  serviceLocation,
} from "../aws-client.ts";

/**
 * The document client every DynamoDB adapter is given. Create it once per function (cold start) and
 * inject it. Region and endpoint come from `env` (`AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB`, ...:
 * `serviceLocation`), credentials from the SDK's default chain, unless `options` overrides them
 * (tests point it at dynalite).
 */
export function createDocumentClient(
  options: DynamoDBClientConfig & BoundedClientOptions = {},
  env: Environment = process.env,
): DynamoDBDocumentClient {
  const { timeouts, ...config } = options;
  const client = new DynamoDBClient({
    maxAttempts: AWS_CLIENT_DEFAULTS.maxAttempts,
    requestHandler: boundedHttpHandler(timeouts),
    ...serviceLocation(env, "DYNAMODB"),
    ...config,
  });
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}

/** What a DynamoDB adapter sends its commands through: see `storeClient`. */
export interface StoreClient {
  send<I extends ServiceInputTypes, O extends ServiceOutputTypes>(
    command: Command<ServiceInputTypes, I, ServiceOutputTypes, O, DynamoDBDocumentClientResolvedConfig>,
  ): Promise<O>;
}

/**
 * The document client as every DynamoDB adapter sends through it, so that all of them fail alike:
 * throttling, 5xx and network failures that outlast the SDK's own retries become `UnavailableError`
 * STORE_UNAVAILABLE (a 503 with Retry-After at the API, a message tried again by a queue consumer).
 * Anything else (a failed condition, a request the table refuses) passes unchanged, for the adapter to
 * interpret. `store` names the adapter in the message ("job store").
 */
export function storeClient(doc: DynamoDBDocumentClient, store: string): StoreClient {
  return {
    send: (command) =>
      doc.send(command).catch((error: unknown) => {
        if (error instanceof AppError || !isTransientAwsError(error)) throw error;
        throw new UnavailableError("STORE_UNAVAILABLE", `The ${store} is unavailable; try again.`, {
          cause: error,
        });
      }),
  };
}
