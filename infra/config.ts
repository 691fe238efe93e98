import { z } from "zod";

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
  modelslabBaseUrl: z.url().default("https://modelslab.com/api"),
  /** The provider account's concurrent-request allowance the dispatcher must stay under. */
  modelslabMaxConcurrency: z.coerce.number().int().min(1).max(1_000).default(5),
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
  const result = infraConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new InfraConfigError(
    result.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`),
  );
}

export const isProduction = (config: InfraConfig): boolean => config.stage === "prod";
