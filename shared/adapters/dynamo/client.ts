import { DynamoDBClient, type DynamoDBClientConfig } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { AWS_CLIENT_DEFAULTS, type BoundedClientOptions, boundedHttpHandler } from "../aws-client.ts";

/**
 * The document client every DynamoDB adapter is given. Create it once per module (cold start) and
 * inject it. Region, credentials and endpoint come from the SDK's default chain (`AWS_REGION`,
 * `AWS_ENDPOINT_URL_DYNAMODB`, ...) unless `options` overrides them (tests point it at dynalite).
 */
export function createDocumentClient(
  options: DynamoDBClientConfig & BoundedClientOptions = {},
): DynamoDBDocumentClient {
  const { timeouts, ...config } = options;
  const client = new DynamoDBClient({
    maxAttempts: AWS_CLIENT_DEFAULTS.maxAttempts,
    requestHandler: boundedHttpHandler(timeouts),
    ...config,
  });
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}

// Kept here for the DynamoDB adapters' imports; defined beside the other AWS client defaults.
export { isTransientAwsError } from "../aws-client.ts";
