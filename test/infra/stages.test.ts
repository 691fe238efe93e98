import { App, Duration } from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import { Queue } from "aws-cdk-lib/aws-sqs";
import { beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../infra/build-app.ts";
import { InfraConfigError, loadInfraConfig } from "../../infra/config.ts";
import { ReadableStack } from "../../infra/constructs/readable-stack.ts";
import { FUNCTIONS } from "../../infra/functions.ts";
import { resources, TEST_CONTEXT } from "./support.ts";

describe("infra config", () => {
  /** The context given, over the one value without a default (the self-hosted catalog). */
  const context = (values: Record<string, unknown>) => (key: string) =>
    ({ selfHostedModels: TEST_CONTEXT.selfHostedModels, ...values })[key];

  it("defaults to a dev stage with 30-day logs and no fixed environment", () => {
    expect(loadInfraConfig(context({}), {})).toMatchObject({
      stage: "dev",
      logRetentionDays: 30,
      logLevel: "INFO",
      lifecycleEvents: "terminal",
      account: undefined,
      region: undefined,
    });
  });

  it("takes strings from `-c key=value` and the CLI's CDK_DEFAULT_* variables", () => {
    const config = loadInfraConfig(
      context({
        stage: "prod",
        logRetentionDays: "90",
        modelslabMaxConcurrency: "12",
        lifecycleEvents: "all",
      }),
      {
        CDK_DEFAULT_ACCOUNT: "123456789012",
        CDK_DEFAULT_REGION: "eu-west-1",
      },
    );
    expect(config).toMatchObject({
      stage: "prod",
      logRetentionDays: 90,
      modelslabMaxConcurrency: 12,
      lifecycleEvents: "all",
      account: "123456789012",
      region: "eu-west-1",
    });
  });

  it("lets a deployment turn lifecycle events off (webhooks only)", () => {
    expect(loadInfraConfig(context({ lifecycleEvents: "none" }), {}).lifecycleEvents).toBe("none");
    expect(() => loadInfraConfig(context({ lifecycleEvents: "some" }), {})).toThrow(
      /lifecycleEvents: Invalid option: expected one of "terminal"\|"all"\|"none"/,
    );
  });

  it("names every problem", () => {
    try {
      loadInfraConfig(context({ stage: "Prod!", logRetentionDays: 31, modelslabBaseUrl: "nope" }), {});
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(InfraConfigError);
      expect((error as InfraConfigError).problems.map((p) => p.split(":")[0]).sort()).toEqual([
        "logRetentionDays",
        "modelslabBaseUrl",
        "stage",
      ]);
    }
  });
});

describe("prod stage", () => {
  let stateful: Template;
  let service: Template;
  let stackNames: string[];
  const extraRow = {
    // Any existing module will do: the row is what is under test.
    id: "Extra",
    entry: "functions/callback.ts",
    memoryMb: 256,
    timeout: Duration.seconds(30),
    table: "read",
  } as const;

  beforeAll(() => {
    const { stacks } = buildApp({
      skipBundling: true,
      context: { ...TEST_CONTEXT, stage: "prod", logRetentionDays: "365" },
      functions: [...FUNCTIONS, extraRow],
    });
    stackNames = [stacks.stateful.stackName, stacks.service.stackName];
    stateful = Template.fromStack(stacks.stateful);
    service = Template.fromStack(stacks.service);
  });

  it("names the stacks after the stage", () => {
    expect(stackNames).toEqual(["controlnet-prod-stateful", "controlnet-prod-service"]);
  });

  it("retains and protects stateful resources", () => {
    stateful.hasResource("AWS::DynamoDB::Table", {
      DeletionPolicy: "Retain",
      UpdateReplacePolicy: "Retain",
      Properties: Match.objectLike({ DeletionProtectionEnabled: true }),
    });
    for (const [id, queue] of Object.entries(resources(stateful, "AWS::SQS::Queue"))) {
      expect(queue.DeletionPolicy, id).toBe("Retain");
    }
    for (const [id, secret] of Object.entries(resources(stateful, "AWS::SecretsManager::Secret"))) {
      expect(secret.DeletionPolicy, id).toBe("Retain");
    }
  });

  it("applies the configured log retention", () => {
    for (const [id, logGroup] of Object.entries(resources(service, "AWS::Logs::LogGroup"))) {
      expect(logGroup.Properties?.RetentionInDays, id).toBe(365);
    }
  });

  it("turns one more row of the function table into one more function", () => {
    const extra = resources(service, "AWS::Lambda::Function").ExtraFunction;
    expect(extra?.Metadata?.["local:entry"]).toBe("functions/callback.ts");
    expect(extra?.Properties).toMatchObject({ MemorySize: 256, Timeout: 30, Runtime: "nodejs22.x" });
  });

  it("fails the synth loudly when a row's module does not exist", () => {
    expect(() =>
      buildApp({
        skipBundling: true,
        context: TEST_CONTEXT,
        functions: [...FUNCTIONS, { ...extraRow, id: "Missing", entry: "functions/missing.ts" }],
      }),
    ).toThrow(/Missing: entry functions\/missing.ts does not exist/);
  });
});

describe("ReadableStack", () => {
  it("refuses two constructs whose ids flatten to the same logical id", () => {
    const app = new App();
    const stack = new ReadableStack(app, "S");
    new Queue(stack, "AB");
    const nested = new Queue(stack, "A");
    new Queue(nested, "B");
    expect(() => app.synth()).toThrow(/collides/);
  });
});
