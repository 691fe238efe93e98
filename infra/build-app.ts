import { App, Tags, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { type InfraConfig, loadInfraConfig } from "./config.ts";
import { FUNCTIONS, type FunctionSpec } from "./functions.ts";
import { GpuStack } from "./gpu-fallback.ts";
import { ServiceStack } from "./service-stack.ts";
import { StatefulStack } from "./stateful-stack.ts";

/** Context key with which CDK decides which stacks' assets to bundle (`[]`: none). */
export const BUNDLING_STACKS_CONTEXT = "aws:cdk:bundling-stacks";

/**
 * Feature flags this app is written for, set here rather than in cdk.json so tests, the local stack and
 * the CLI synthesize the same templates.
 */
export const FEATURE_FLAGS = {
  // Server access logs are delivered under a bucket policy, not the legacy LogDeliveryWrite ACL (ACLs stay
  // disabled on every bucket).
  "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": true,
} as const;

export interface BuildAppOptions {
  /** CDK context (the CLI passes cdk.json's and `-c` values through the environment instead). */
  context?: Record<string, unknown>;
  /** Don't run esbuild: templates only (tests, the local stack). The assets are then unusable. */
  skipBundling?: boolean;
  /**
   * CDK's built-in CloudFormation template validation (warnings; it lengthens every synth). Default:
   * on for real synths, off with `skipBundling` (tests, the local stack). cdk-nag runs either way.
   */
  templateValidation?: boolean;
  /** Cloud assembly directory; a fresh temporary one by default (the CLI sets its own). */
  outdir?: string;
  /** The function table (tests may add rows). */
  functions?: readonly FunctionSpec[];
}

export interface BuiltApp {
  app: App;
  config: InfraConfig;
  stacks: { stateful: StatefulStack; service: ServiceStack; gpu: GpuStack };
}

/** Stack construct ids; the deployed stack names add the project and stage (`controlnet-dev-stateful`). */
export const STACK_IDS = { stateful: "Stateful", service: "Service", gpu: "Gpu" } as const;

export function buildApp(options: BuildAppOptions = {}): BuiltApp {
  const app = new App({
    context: {
      ...FEATURE_FLAGS,
      ...options.context,
      ...(options.skipBundling ? { [BUNDLING_STACKS_CONTEXT]: [] } : {}),
    },
    ...(options.outdir ? { outdir: options.outdir } : {}),
    builtinCloudFormationValidation: options.templateValidation ?? !options.skipBundling,
  });
  const config = loadInfraConfig((key) => app.node.tryGetContext(key));
  // Only what the context or the CLI's CDK_DEFAULT_* say: no account lookups at synth.
  const env = { account: config.account, region: config.region };
  const functions = options.functions ?? FUNCTIONS;

  const stateful = new StatefulStack(app, STACK_IDS.stateful, {
    stackName: `controlnet-${config.stage}-stateful`,
    description: "ControlNet orchestrator: table, queues, secrets",
    terminationProtection: config.stage === "prod",
    env,
    config,
    functions,
  });
  const service = new ServiceStack(app, STACK_IDS.service, {
    stackName: `controlnet-${config.stage}-service`,
    description: "ControlNet orchestrator: functions, HTTP API, schedule",
    env,
    config,
    functions,
    stateful,
  });

  const gpu = new GpuStack(app, STACK_IDS.gpu, {
    stackName: `controlnet-${config.stage}-gpu`,
    description: "ControlNet orchestrator: GPU fallback workers on ECS (zero instances while idle)",
    env,
    config,
    fallbackQueue: stateful.queues.fallback,
    resultsQueue: stateful.queues.results,
    outputsBucket: stateful.outputsBucket,
    alarmTopic: stateful.alarmTopic,
  });

  // Every synth (CLI, tests, the local stack) runs the AwsSolutions rules: an unacknowledged error fails
  // it. Acknowledgements sit on the resource they concern, with the reason (Validations.of(x).acknowledge).
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));

  Tags.of(app).add("project", "controlnet-orchestrator");
  Tags.of(app).add("stage", config.stage);
  return { app, config, stacks: { stateful, service, gpu } };
}
