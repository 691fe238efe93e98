import { getSecret } from "@aws-lambda-powertools/parameters/secrets";
import { ConfigError } from "../schemas/config.ts";

/**
 * Resolves a secret at cold start: the plain value when given (local stack, tests), otherwise the
 * Secrets Manager secret named by the ARN variable (AWS), fetched once with Powertools Parameters.
 */
export async function resolveSecret(
  env: Record<string, unknown>,
  valueName: string,
  arnName: string,
): Promise<string> {
  const value = env[valueName];
  if (typeof value === "string" && value) return value;
  const arn = env[arnName];
  if (typeof arn !== "string" || !arn)
    throw new ConfigError([`${valueName}: set ${valueName}, or ${arnName} to a Secrets Manager secret`]);
  const secret = await getSecret(arn, { maxAge: 300 });
  if (typeof secret !== "string" || secret.length === 0) {
    throw new ConfigError([`${arnName}: the secret ${arn} is empty or not a string`]);
  }
  return secret;
}
