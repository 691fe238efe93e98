import * as z from "zod/mini";
import "./mini-locale.ts";

/*
 * The field types of function configuration (environment variables), shared by config.ts and the
 * provider modules' own fragments (shared/providers/), which config.ts composes.
 */

/**
 * Defaults of the settings the CDK context (`infra/config.ts`) also exposes: it sets these variables
 * in AWS, and its own defaults are these values.
 */
export const SHARED_DEFAULTS = {
  MODELSLAB_BASE_URL: "https://modelslab.com/api",
  MODELSLAB_MAX_CONCURRENCY: 5,
  LIFECYCLE_EVENTS: "terminal",
  /** The CloudWatch namespace of the business metrics (shared/ports/metrics.ts), the alarms' and the dashboard's. */
  METRICS_NAMESPACE: "ControlNetOrchestrator",
} as const;

/** An integer in [min, max], `fallback` when unset. */
export const int = (min: number, max: number, fallback: number) =>
  z._default(z.coerce.number().check(z.int(), z.gte(min), z.lte(max)), fallback);

/** A non-empty string. */
export const name = () => z.string().check(z.minLength(1));

/**
 * A secret comes either as a plain value (local stack, tests) or as the ARN of a Secrets Manager
 * secret that the function reads once (AWS). An empty value is unset.
 */
export const optionalSecret = z.pipe(
  z.optional(z.string()),
  z.transform((value: string | undefined) => value || undefined),
);
