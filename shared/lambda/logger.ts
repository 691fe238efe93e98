import { Logger } from "@aws-lambda-powertools/logger";

/** One structured JSON logger per function process (POWERTOOLS_SERVICE_NAME and LOG_LEVEL configure it). */
export const logger = new Logger({
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "controlnet-orchestrator",
});
