import type { Logger } from "@aws-lambda-powertools/logger";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import { EmfMetrics } from "../adapters/metrics/emf-metrics.ts";
import type { MetricsConfig } from "../schemas/config.ts";

/**
 * A function's business metrics (EMF lines on stdout, shared/adapters/metrics/emf-metrics.ts), created
 * once at cold start, and the middy middleware that flushes them after each invocation, whether it
 * succeeded or threw (Powertools' `logMetrics`).
 */
export function createMetrics(
  config: Pick<MetricsConfig, "METRICS_NAMESPACE" | "STAGE">,
  logger: Logger,
): { metrics: EmfMetrics; middleware: ReturnType<typeof logMetrics> } {
  const metrics = new EmfMetrics({ namespace: config.METRICS_NAMESPACE, stage: config.STAGE, logger });
  return { metrics, middleware: logMetrics(metrics) };
}
