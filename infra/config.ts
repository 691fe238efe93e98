import { z } from "zod";
import { type ModelCatalog, withoutLocations } from "../shared/domain/model-catalog.ts";
import { SHARED_DEFAULTS } from "../shared/schemas/config.ts";
import { parseModelCatalog } from "../shared/schemas/model-catalog.ts";

/**
 * Deployment configuration, read once from CDK context (`cdk.json` "context", or `-c key=value` on the
 * command line, where every value arrives as a string) and validated with zod so a typo fails the synth
 * with every problem named instead of deploying something half-configured.
 */

/** The retention periods CloudWatch Logs accepts (aws-cdk-lib's RetentionDays values, bar "infinite"). */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;
export type LogRetentionDays = (typeof LOG_RETENTION_DAYS)[number];

const isRetention = (value: number): value is LogRetentionDays =>
  (LOG_RETENTION_DAYS as readonly number[]).includes(value);

/** DynamoDB autoscaling's default target (the console's default too); the cost bench prices at it. */
export const TABLE_TARGET_UTILIZATION_DEFAULT = 70;

export const infraConfigSchema = z.object({
  /** Deployment stage; names the stacks. `prod` retains and protects stateful resources. */
  stage: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,15}$/, "lower-case letters, digits and dashes, starting with a letter (max 16)")
    .default("dev"),
  logRetentionDays: z.coerce
    .number()
    .int()
    .refine(isRetention, { message: `one of ${LOG_RETENTION_DAYS.join(", ")}` })
    .default(30)
    .transform((days) => days as LogRetentionDays),
  logLevel: z.enum(["DEBUG", "INFO", "WARN", "ERROR"]).default("INFO"),
  /** ModelsLab API base; the local stack points it at its simulator. */
  modelslabBaseUrl: z.url().default(SHARED_DEFAULTS.MODELSLAB_BASE_URL),
  /** The provider account's concurrent-request allowance the dispatcher must stay under. */
  modelslabMaxConcurrency: z.coerce
    .number()
    .int()
    .min(1)
    .max(1_000)
    .default(SHARED_DEFAULTS.MODELSLAB_MAX_CONCURRENCY),
  /** Hosts provider outputs may be downloaded from (`*.r2.dev` matches any subdomain). */
  providerOutputHosts: z
    .union([z.array(z.string()), z.string().transform((value) => value.split(","))])
    .default(["*.r2.dev", "cdn2.stablediffusionapi.com", "modelslab.com", "*.modelslab.com"])
    .transform((hosts) => hosts.map((host) => host.trim().toLowerCase()).filter(Boolean)),
  /**
   * Which job state changes are published on the event bus: `terminal` (succeeded, failed,
   * cancelled), `all` (every transition: more EventBridge events, each billed) or `none` (clients use
   * webhooks only; no events to pay for). `npm run bench -- --context lifecycleEvents=…` prices each.
   */
  lifecycleEvents: z.enum(["terminal", "all", "none"]).default(SHARED_DEFAULTS.LIFECYCLE_EVENTS),
  /**
   * Where the provider's callbacks come in: `function-url` (default), a Lambda function URL on the
   * callback function (no API Gateway request charge per callback), or `http-api`, a route of the
   * HTTP API (one public endpoint, API Gateway throttling and access logs).
   */
  callbackIngress: z.enum(["function-url", "http-api"]).default("function-url"),
  /**
   * Origins of browser pages allowed to call the HTTP API (CORS): where the console (`console/`) is
   * hosted when not on the API's own origin, e.g. `https://console.example.com`. Comma-separated on
   * the command line. None by default: no CORS, browsers only call the API from its own origin.
   */
  consoleOrigins: z
    .union([z.array(z.string()), z.string().transform((value) => value.split(","))])
    .default([])
    .transform((origins) => origins.map((origin) => origin.trim()).filter(Boolean))
    .pipe(
      z.array(
        z
          .string()
          .regex(
            /^(https:\/\/[a-z0-9.-]+(:\d{1,5})?|http:\/\/(localhost|127\.0\.0\.1)(:\d{1,5})?)$/,
            "an origin: https://host[:port] (no path, no wildcard), or http://localhost[:port] to try a console locally",
          ),
      ),
    ),
  /**
   * DynamoDB billing: `on-demand` (default: no capacity to plan, any burst absorbed) or `provisioned`
   * with target-tracking autoscaling on the table and each index — cheaper per write at the target
   * utilization for steady high volume (`npm run bench` prices both), but a fixed hourly floor while
   * idle and throttling (retried, alarmed) when a burst outruns the scaling.
   */
  tableBilling: z.enum(["on-demand", "provisioned"]).default("on-demand"),
  /** Provisioned billing: capacity units the autoscaling keeps between (each of table and indexes). */
  tableMinWriteCapacity: z.coerce.number().int().min(1).max(40_000).default(5),
  tableMaxWriteCapacity: z.coerce.number().int().min(1).max(40_000).default(1_000),
  tableMinReadCapacity: z.coerce.number().int().min(1).max(40_000).default(5),
  tableMaxReadCapacity: z.coerce.number().int().min(1).max(40_000).default(500),
  /** Provisioned billing: the consumed/provisioned percentage autoscaling tracks. */
  tableTargetUtilization: z.coerce.number().int().min(20).max(90).default(TABLE_TARGET_UTILIZATION_DEFAULT),
  /** The CloudWatch namespace of the business metrics (the functions' METRICS_NAMESPACE). */
  metricsNamespace: z
    .string()
    .regex(/^[A-Za-z0-9._#/-]{1,255}$/, "letters, digits and . _ # / - (max 255), as CloudWatch allows")
    .refine((value) => !value.startsWith("AWS/"), { message: "AWS/ is reserved for AWS services" })
    .default(SHARED_DEFAULTS.METRICS_NAMESPACE),
  /** Per-tenant waiting gauges (one billed metric per tenant that waits); off by default. */
  metricsTenantGauges: z
    .union([z.boolean(), z.enum(["true", "false"]).transform((value) => value === "true")])
    .default(false),
  /** Alarm: failed over (succeeded + failed) jobs of a 5-minute period, in percent, above this… */
  alarmFailureRatePercent: z.coerce.number().min(0.1).max(100).default(10),
  /** …once the period ended at least this many jobs (a single failure of a quiet period is no rate). */
  alarmFailureRateMinJobs: z.coerce.number().int().min(1).max(1_000_000).default(20),
  /** Alarm: the longest-waiting job has waited for a provider slot longer than this. */
  alarmOldestWaitingSeconds: z.coerce.number().int().min(60).max(86_400).default(900),
  /** Alarm (admission stuck): a provider's slot utilisation stays below this while jobs wait for it… */
  alarmLowUtilisationPercent: z.coerce.number().int().min(1).max(100).default(50),
  /** …for this many consecutive minutes. */
  alarmLowUtilisationMinutes: z.coerce.number().int().min(1).max(60).default(10),
  /** Alarm: a provider's circuit breaker stays open (or half-open) this many consecutive minutes. */
  alarmBreakerOpenMinutes: z.coerce.number().int().min(1).max(60).default(5),
  /** Alarm: at least this many notifications dead-lettered (every delivery try failed) in 5 minutes. */
  alarmDeadLetteredNotifications: z.coerce.number().int().min(1).max(10_000).default(1),
  /** Where alarm notifications go (an SNS email subscription, confirmed by the recipient); none if unset. */
  alarmEmail: z.email().optional(),
  /** Days after which uploaded control images (inputs) are deleted. */
  inputsExpireDays: z.coerce.number().int().min(1).max(3650).default(7),
  /** Days after which generated images move to S3 Standard-IA (0: never; S3 needs at least 30). */
  outputsInfrequentAccessDays: z.coerce
    .number()
    .int()
    .min(0)
    .max(3650)
    .refine((days) => days === 0 || days >= 30, { message: "0 (never) or at least 30" })
    .default(30),
  /** Days after which generated images are deleted (0: never). */
  outputsExpireDays: z.coerce.number().int().min(0).max(36500).default(90),
  /** Days the S3 server access logs are kept. */
  accessLogsExpireDays: z.coerce.number().int().min(1).max(3650).default(90),
  /** GPU fallback: the EC2 instance type of the ECS capacity (g5 or g6 family: one NVIDIA GPU per xlarge). */
  gpuInstanceType: z
    .string()
    .regex(/^g(5|6|6e)\.(xlarge|[248]xlarge|1[26]xlarge)$/, "a g5, g6 or g6e instance type, e.g. g5.xlarge")
    .default("g5.xlarge"),
  /** GPU fallback: tasks (one per instance, one GPU each) kept running when the queue is empty. */
  gpuMinTasks: z.coerce.number().int().min(0).max(100).default(0),
  /** GPU fallback: most tasks (and instances) at full backlog. */
  gpuMaxTasks: z.coerce.number().int().min(1).max(100).default(2),
  /** GPU fallback: queued jobs per running task before another task starts. */
  gpuBacklogPerTask: z.coerce.number().int().min(1).max(1_000).default(4),
  /**
   * GPU fallback: the self-hosted model catalog (shared/schemas/model-catalog.ts), a JSON array (in
   * cdk.json, or a string with `-c`): each model's `id` (the model_id jobs name), `kind`, `s3Uri` (the
   * S3 prefix the worker syncs its folder from), `controlnets`, `annotators`, optional `upscaler` and
   * `safetyChecker`. Required, with no default: the fallback runs only the models it declares.
   */
  selfHostedModels: z.unknown().transform((value, ctx): ModelCatalog => {
    let raw = value;
    if (typeof value === "string") {
      try {
        raw = JSON.parse(value);
      } catch {
        ctx.addIssue({ code: "custom", message: "a JSON array of model entries" });
        return z.NEVER;
      }
    }
    if (raw === undefined) {
      ctx.addIssue({
        code: "custom",
        message: 'required: the self-hosted models (docs/deploy.md, "The self-hosted model catalog")',
      });
      return z.NEVER;
    }
    const parsed = parseModelCatalog(raw);
    if ("problems" in parsed) {
      for (const problem of parsed.problems) ctx.addIssue({ code: "custom", message: problem });
      return z.NEVER;
    }
    for (const [index, model] of parsed.catalog.entries()) {
      if (!model.s3Uri)
        ctx.addIssue({ code: "custom", path: [index, "s3Uri"], message: "required: the model's S3 prefix" });
    }
    if (lambdaCatalog(parsed.catalog).length > MAX_LAMBDA_CATALOG_CHARS) {
      ctx.addIssue({
        code: "custom",
        message: `the catalog, without its S3 locations, must fit ${MAX_LAMBDA_CATALOG_CHARS} characters of a Lambda function's environment (4 KB in all)`,
      });
    }
    return parsed.catalog;
  }),
  /**
   * GPU fallback: the worker's container image URI. When unset the image is built from
   * `worker/Dockerfile` as a Docker asset (a real deploy with Docker); tests and Docker-less synths set it.
   */
  workerImage: z
    .string()
    .regex(
      /^[a-z0-9][a-z0-9._/:@-]*$/i,
      "a container image URI, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/worker:1",
    )
    .optional(),
  /** Target account/region; from context, else the CLI's CDK_DEFAULT_* (never looked up). */
  account: z
    .string()
    .regex(/^\d{12}$/)
    .optional(),
  region: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/)
    .optional(),
});

/** What a Lambda's environment holds of the catalog (SELF_HOSTED_MODELS): Lambda allows 4 KB of environment in all. */
export const MAX_LAMBDA_CATALOG_CHARS = 2_048;

/** SELF_HOSTED_MODELS for the Lambda functions: the catalog as JSON, without the S3 locations. */
export const lambdaCatalog = (catalog: ModelCatalog): string => JSON.stringify(withoutLocations(catalog));

export const infraConfigSchemaChecked = infraConfigSchema.superRefine((config, ctx) => {
  if (config.gpuMinTasks > config.gpuMaxTasks) {
    ctx.addIssue({ code: "custom", path: ["gpuMinTasks"], message: "must not exceed gpuMaxTasks" });
  }
  for (const unit of ["Write", "Read"] as const) {
    if (config[`tableMin${unit}Capacity`] > config[`tableMax${unit}Capacity`]) {
      ctx.addIssue({
        code: "custom",
        path: [`tableMin${unit}Capacity`],
        message: `must not exceed tableMax${unit}Capacity`,
      });
    }
  }
  if (config.outputsExpireDays !== 0 && config.outputsInfrequentAccessDays !== 0) {
    if (config.outputsExpireDays <= config.outputsInfrequentAccessDays) {
      ctx.addIssue({
        code: "custom",
        path: ["outputsExpireDays"],
        message: "must be later than outputsInfrequentAccessDays (or 0)",
      });
    }
  }
});

export type InfraConfig = z.infer<typeof infraConfigSchema>;

export class InfraConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid CDK context:\n  ${problems.join("\n  ")}`);
    this.name = "InfraConfigError";
  }
}

/** Context keys this app reads; anything else in the context (CDK's own flags) is ignored. */
const KEYS = Object.keys(infraConfigSchema.shape) as Array<keyof InfraConfig>;

/**
 * Builds the config from a context lookup (`(key) => app.node.tryGetContext(key)`) and the environment
 * (for CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION, which the CDK CLI sets without any lookup of its own).
 */
export function loadInfraConfig(
  lookup: (key: string) => unknown,
  env: NodeJS.ProcessEnv = process.env,
): InfraConfig {
  const raw: Record<string, unknown> = {};
  for (const key of KEYS) {
    const value = lookup(key);
    if (value !== undefined && value !== "") raw[key] = value;
  }
  raw.account ??= env.CDK_DEFAULT_ACCOUNT || undefined;
  raw.region ??= env.CDK_DEFAULT_REGION || undefined;
  const result = infraConfigSchemaChecked.safeParse(raw);
  if (result.success) return result.data;
  throw new InfraConfigError(
    result.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`),
  );
}

export const isProduction = (config: InfraConfig): boolean => config.stage === "prod";

/** `s3://bucket/prefix/` → `{ bucket, prefix }` (prefix without leading slash, possibly empty). */
export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (!match?.[1]) throw new Error(`not an s3:// URI: ${uri}`);
  return { bucket: match[1], prefix: match[2] ?? "" };
}
