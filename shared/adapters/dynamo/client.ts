import { DynamoDBClient, type DynamoDBClientConfig } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { AWS_CLIENT_DEFAULTS, boundedHttpHandler, type Environment, serviceLocation } from "../aws-client.ts";

/**
 * The document client every DynamoDB adapter is given. Create it once per function (cold start) and
 * inject it. Region and endpoint come from `env` (`AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB`, ...:
 * `serviceLocation`), credentials from the SDK's default chain, unless `options` overrides them
 * (tests point it at dynalite).
 */
export function createDocumentClient(
  options: DynamoDBClientConfig = {},
  env: Environment = process.env,
): DynamoDBDocumentClient {
  const client = new DynamoDBClient({
    maxAttempts: AWS_CLIENT_DEFAULTS.maxAttempts,
    requestHandler: boundedHttpHandler(),
    ...serviceLocation(env, "DYNAMODB"),
    ...options,
  });
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}

// Kept here for the DynamoDB adapters' imports; defined beside the other AWS client defaults.
export { isTransientAwsError } from "../aws-client.ts";
