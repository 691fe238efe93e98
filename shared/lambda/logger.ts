import { Logger, LogLevel } from "@aws-lambda-powertools/logger";
import type { Environment } from "../adapters/aws-client.ts";

type Level = (typeof LogLevel)[keyof typeof LogLevel];
const isLevel = (value: string): value is Level => Object.hasOwn(LogLevel, value);

/**
 * One structured JSON logger per function instance, configured from its environment:
 * POWERTOOLS_SERVICE_NAME, and POWERTOOLS_LOG_LEVEL or LOG_LEVEL (Powertools' own order). An unknown
 * level is not passed (Powertools then reads process.env as usual); Lambda's advanced logging controls
 * (AWS_LAMBDA_LOG_LEVEL) take precedence over all of these, as with Powertools' own reading.
 */
export const createLogger = (env: Environment = process.env): Logger => {
  const level = (env.POWERTOOLS_LOG_LEVEL || env.LOG_LEVEL || "").toUpperCase();
  return new Logger({
    serviceName: env.POWERTOOLS_SERVICE_NAME ?? "controlnet-orchestrator",
    ...(isLevel(level) && { logLevel: level }),
  });
};
