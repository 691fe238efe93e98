import { SecretsProvider } from "@aws-lambda-powertools/parameters/secrets";
import type { SecretsManagerClientConfig } from "@aws-sdk/client-secrets-manager";
import {
  AWS_CLIENT_DEFAULTS,
  type BoundedClientOptions,
  boundedHttpHandler,
} from "../adapters/aws-client.ts";
import { ConfigError } from "../schemas/config.ts";

/**
 * A Powertools secrets provider whose Secrets Manager client has the bounds of every other client here
 * (Powertools' default provider builds one with the SDK's defaults, which never time out a response).
 */
export function createSecretsProvider(
  options: SecretsManagerClientConfig & BoundedClientOptions = {},
): SecretsProvider {
  const { timeouts, ...config } = options;
  return new SecretsProvider({
    clientConfig: {
      maxAttempts: AWS_CLIENT_DEFAULTS.maxAttempts,
      requestHandler: boundedHttpHandler(timeouts),
      ...config,
    },
  });
}

let defaultProvider: SecretsProvider | undefined;

/** Built on the first secret fetched: a function given plain values (local stack, tests) never builds it. */
function sharedProvider(): SecretsProvider {
  defaultProvider ??= createSecretsProvider();
  return defaultProvider;
}

/**
 * Resolves a secret at cold start: the plain value when given (local stack, tests), otherwise the
 * Secrets Manager secret named by the ARN variable (AWS), fetched once with Powertools Parameters.
 */
export async function resolveSecret(
  env: Record<string, unknown>,
  valueName: string,
  arnName: string,
  provider?: SecretsProvider,
): Promise<string> {
  const value = env[valueName];
  if (typeof value === "string" && value) return value;
  const arn = env[arnName];
  if (typeof arn !== "string" || !arn)
    throw new ConfigError([`${valueName}: set ${valueName}, or ${arnName} to a Secrets Manager secret`]);
  const secret = await (provider ?? sharedProvider()).get(arn, { maxAge: 300 });
  if (typeof secret !== "string" || secret.length === 0) {
    throw new ConfigError([`${arnName}: the secret ${arn} is empty or not a string`]);
  }
  return secret;
}
