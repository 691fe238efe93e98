import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Match, Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../infra/build-app.ts";
import { InfraConfigError, loadInfraConfig } from "../../infra/config.ts";
import { REPO_ROOT } from "../../infra/constructs/house-function.ts";
import {
  backlogSteps,
  CUDA_MINIMUM_DRIVER,
  ecrRepositoryOf,
  GPU_PLATFORM,
  HOST_MODEL_DIR,
  SCALE_IN_IDLE_MINUTES,
  WORKER_UID,
  WorkerImageError,
  workerImage,
} from "../../infra/gpu-fallback.ts";
import { only, refTarget, resources, TEST_CONTEXT } from "./support.ts";

const CONTEXT = {
  ...TEST_CONTEXT,
  gpuInstanceType: "g6.xlarge",
  gpuMaxTasks: "3",
  gpuBacklogPerTask: "4",
  selfHostedModels: [
    {
      id: "sd15",
      kind: "sd15",
      controlnets: ["canny"],
      annotators: [],
      s3Uri: "s3://my-models/controlnet/v1/",
    },
    {
      id: "sdxl-base",
      kind: "sdxl",
      controlnets: ["canny", "depth"],
      annotators: ["depth"],
      upscaler: { scale: 4 },
      safetyChecker: true,
      s3Uri: "s3://other-models/sdxl/",
    },
  ],
};

let gpu: Template;
const statefulExports: Record<string, string> = {};

beforeAll(() => {
  const { stacks } = buildApp({ skipBundling: true, context: CONTEXT });
  gpu = Template.fromStack(stacks.gpu);
  const outputs = Template.fromStack(stacks.stateful).toJSON().Outputs as Record<
    string,
    { Value: unknown; Export: { Name: string } }
  >;
  for (const output of Object.values(outputs)) {
    statefulExports[output.Export.Name] = JSON.stringify(output.Value);
  }
});

/** The stateful-stack logical id an `Fn::ImportValue` in the GPU stack points at. */
const imported = (value: unknown): string => {
  const name = (value as { "Fn::ImportValue"?: string })["Fn::ImportValue"];
  const exported = name ? statefulExports[name] : undefined;
  if (!exported) throw new Error(`not an import of the stateful stack: ${JSON.stringify(value)}`);
  const target = /"(?:Ref|Fn::GetAtt)":\[?"([A-Za-z0-9]+)"/.exec(exported)?.[1];
  if (!target) throw new Error(`export ${name} is ${exported}`);
  return target;
};

describe("network: nothing that bills while idle", () => {
  it("has public subnets only, no NAT gateway, and free S3/DynamoDB gateway endpoints", () => {
    expect(Object.keys(resources(gpu, "AWS::EC2::NatGateway"))).toEqual([]);
    for (const subnet of Object.values(resources(gpu, "AWS::EC2::Subnet"))) {
      expect(subnet.Properties?.MapPublicIpOnLaunch).toBe(true);
    }
    const endpoints = Object.values(resources(gpu, "AWS::EC2::VPCEndpoint"));
    expect(endpoints.map((e) => e.Properties?.VpcEndpointType ?? "Gateway")).toEqual(["Gateway", "Gateway"]);
    expect(JSON.stringify(endpoints)).toMatch(/\.s3/);
    expect(JSON.stringify(endpoints)).toMatch(/\.dynamodb/);
  });

  it("lets nothing in to the instances", () => {
    const [, group] = only(resources(gpu, "AWS::EC2::SecurityGroup"), "security group");
    expect(group.Properties?.SecurityGroupIngress).toBeUndefined();
    expect(Object.keys(resources(gpu, "AWS::EC2::SecurityGroupIngress"))).toEqual([]);
  });

  it("logs rejected traffic", () => {
    gpu.hasResourceProperties("AWS::EC2::FlowLog", { TrafficType: "REJECT" });
  });
});

describe("GPU capacity", () => {
  it("launches the configured g5/g6 type from the ECS GPU-optimised AMI, IMDSv2 only, encrypted disk", () => {
    const [, template] = only(resources(gpu, "AWS::EC2::LaunchTemplate"), "launch template");
    const data = template.Properties?.LaunchTemplateData as Record<string, unknown>;
    expect(data.InstanceType).toBe("g6.xlarge");
    const amiParameter = (data.ImageId as { Ref: string }).Ref;
    expect(gpu.toJSON().Parameters[amiParameter].Default).toBe(GPU_PLATFORM.amiParameter);
    expect(data.MetadataOptions).toEqual({ HttpTokens: "required", HttpPutResponseHopLimit: 1 });
    expect(data.BlockDeviceMappings).toEqual([
      expect.objectContaining({ Ebs: expect.objectContaining({ Encrypted: true }) }),
    ]);
  });

  it("scales the instances from zero, managed by an ECS capacity provider", () => {
    gpu.hasResourceProperties("AWS::AutoScaling::AutoScalingGroup", {
      MinSize: "0",
      MaxSize: "3",
      NewInstancesProtectedFromScaleIn: true,
    });
    gpu.hasResourceProperties("AWS::ECS::CapacityProvider", {
      AutoScalingGroupProvider: {
        ManagedScaling: Match.objectLike({ Status: "ENABLED", TargetCapacity: 100 }),
        ManagedTerminationProtection: "ENABLED",
      },
    });
  });
});

describe("worker task and service", () => {
  const container = () => {
    const [, task] = only(resources(gpu, "AWS::ECS::TaskDefinition"), "task definition");
    return ((task.Properties?.ContainerDefinitions ?? []) as Array<Record<string, unknown>>)[0] ?? {};
  };

  it("runs the configured image with one GPU, a reservation, a stop timeout and its own log group", () => {
    const worker = container();
    expect(worker.Image).toBe(TEST_CONTEXT.workerImage);
    expect(worker.ResourceRequirements).toEqual([{ Type: "GPU", Value: "1" }]);
    expect(worker.MemoryReservation).toBeGreaterThan(0);
    expect(worker.StopTimeout).toBe(120);
    const logGroup = (worker.LogConfiguration as { Options: Record<string, { Ref: string }> }).Options[
      "awslogs-group"
    ]?.Ref as string;
    expect(resources(gpu, "AWS::Logs::LogGroup")[logGroup]?.Properties?.RetentionInDays).toBe(30);
  });

  it("passes the queues, the outputs bucket and the model catalog with its S3 locations", () => {
    const env = Object.fromEntries(
      (container().Environment as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]),
    );
    expect(imported(env.FALLBACK_QUEUE_URL)).toBe("FallbackQueue");
    expect(imported(env.RESULTS_QUEUE_URL)).toBe("ResultsQueue");
    expect(imported(env.OUTPUTS_BUCKET)).toBe("OutputsBucket");
    expect(JSON.parse(env.SELF_HOSTED_MODELS as string)).toEqual(CONTEXT.selfHostedModels);
    expect(env.MODEL_S3_URI).toBeUndefined();
    expect(Number(env.DRAIN_TIMEOUT_SECONDS)).toBeLessThan(120);
  });

  it("has ECS check the worker's /health (liveness) with a start period for the sync and warm-up", () => {
    const check = container().HealthCheck as Record<string, unknown>;
    expect(check).toMatchObject({ Interval: 30, Timeout: 5, Retries: 3, StartPeriod: 300 });
    const command = check.Command as string[];
    expect(command.slice(0, 3)).toEqual(["CMD", "node", "-e"]);
    expect(command[3]).toContain("http://127.0.0.1:8080/health");
    const env = Object.fromEntries(
      (container().Environment as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]),
    );
    expect(env.HEALTH_PORT).toBe("8080");
    expect(env.EXECUTION_PROVIDER).toBe("cuda");
  });

  it("keeps the models on a host folder of the instance, owned by the worker's user, reused across tasks", () => {
    const [, task] = only(resources(gpu, "AWS::ECS::TaskDefinition"), "task definition");
    expect(task.Properties?.Volumes).toEqual([{ Name: "models", Host: { SourcePath: HOST_MODEL_DIR } }]);
    expect(container().MountPoints).toEqual([
      { SourceVolume: "models", ContainerPath: "/models", ReadOnly: false },
    ]);
    const env = Object.fromEntries(
      (container().Environment as Array<{ Name: string; Value: unknown }>).map((e) => [e.Name, e.Value]),
    );
    expect(env.MODEL_DIR).toBe("/models");
    const [, template] = only(resources(gpu, "AWS::EC2::LaunchTemplate"), "launch template");
    const userData = JSON.stringify(
      (template.Properties?.LaunchTemplateData as { UserData?: unknown } | undefined)?.UserData,
    );
    expect(userData).toContain(`mkdir -p ${HOST_MODEL_DIR}`);
    expect(userData).toContain(`chown ${WORKER_UID}:${WORKER_UID} ${HOST_MODEL_DIR}`);
    // The same user as the image runs as.
    const dockerfile = readFileSync(path.join(REPO_ROOT, "worker", "Dockerfile"), "utf8");
    expect(/useradd[^\n]*--uid (\d+)/.exec(dockerfile)?.[1]).toBe(String(WORKER_UID));
  });

  it("starts with no task, on the GPU capacity provider", () => {
    const [, service] = only(resources(gpu, "AWS::ECS::Service"), "service");
    expect(service.Properties).toMatchObject({
      DesiredCount: 0,
      DeploymentConfiguration: expect.objectContaining({ MinimumHealthyPercent: 0, MaximumPercent: 100 }),
    });
    const [providerId] = only(resources(gpu, "AWS::ECS::CapacityProvider"), "capacity provider");
    expect(service.Properties?.CapacityProviderStrategy).toEqual([
      { CapacityProvider: { Ref: providerId }, Weight: 1 },
    ]);
  });

  it("gives the task role exactly: consume fallback, send results, put outputs, read each model's prefix", () => {
    const [, task] = only(resources(gpu, "AWS::ECS::TaskDefinition"), "task");
    const taskRoleArn = task.Properties?.TaskRoleArn as { "Fn::GetAtt": [string, string] };
    const taskRoleId = taskRoleArn["Fn::GetAtt"][0];
    const [, policy] = only(
      gpu.findResources("AWS::IAM::Policy", { Properties: { Roles: [{ Ref: taskRoleId }] } }),
      "task policy",
    );
    const statements = (
      policy.Properties.PolicyDocument as {
        Statement: Array<{ Action: string | string[]; Resource: unknown; Condition?: unknown }>;
      }
    ).Statement;
    const byResource = statements.map((s) => ({
      actions: [s.Action].flat().sort(),
      resource: JSON.stringify(s.Resource),
      condition: s.Condition,
    }));
    expect(byResource).toEqual([
      {
        actions: [
          "sqs:ChangeMessageVisibility",
          "sqs:DeleteMessage",
          "sqs:GetQueueAttributes",
          "sqs:GetQueueUrl",
          "sqs:ReceiveMessage",
        ],
        resource: expect.stringContaining("FallbackQueueArn"),
        condition: undefined,
      },
      {
        actions: ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"],
        resource: expect.stringContaining("ResultsQueueArn"),
        condition: undefined,
      },
      {
        actions: ["s3:GetObject"],
        resource: expect.stringContaining(":s3:::my-models/controlnet/v1/*"),
        condition: undefined,
      },
      {
        actions: ["s3:ListBucket"],
        resource: expect.stringContaining(':s3:::my-models"'),
        condition: { StringLike: { "s3:prefix": ["controlnet/v1/*"] } },
      },
      {
        actions: ["s3:GetObject"],
        resource: expect.stringContaining(":s3:::other-models/sdxl/*"),
        condition: undefined,
      },
      {
        actions: ["s3:ListBucket"],
        resource: expect.stringContaining(':s3:::other-models"'),
        condition: { StringLike: { "s3:prefix": ["sdxl/*"] } },
      },
    ]);
    const role = resources(gpu, "AWS::IAM::Role")[taskRoleId];
    const managed = ((role?.Properties?.ManagedPolicyArns ?? []) as unknown[]).map(imported);
    expect(managed).toEqual(["OutputsBucketPutPolicy"]);
  });
});

describe("scaling on the fallback queue's backlog", () => {
  const backlogAlarms = () =>
    Object.values(resources(gpu, "AWS::CloudWatch::Alarm")).filter((alarm) =>
      JSON.stringify(alarm.Properties?.Metrics ?? "").includes("visible + inflight"),
    );

  it("counts visible and in-flight messages of the fallback queue", () => {
    const alarms = backlogAlarms();
    expect(alarms.length).toBe(2);
    for (const alarm of alarms) {
      const metrics = alarm.Properties?.Metrics as Array<{
        MetricStat?: { Metric: { MetricName: string; Dimensions: Array<{ Value: unknown }> } };
      }>;
      const names = metrics.flatMap((m) => (m.MetricStat ? [m.MetricStat.Metric.MetricName] : [])).sort();
      expect(names).toEqual(["ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesVisible"]);
      for (const metric of metrics) {
        if (metric.MetricStat)
          expect(imported(metric.MetricStat.Metric.Dimensions[0]?.Value)).toBe("FallbackQueue");
      }
    }
  });

  it("sets the task count from 0 to the configured maximum, one task per 4 queued jobs", () => {
    gpu.hasResourceProperties("AWS::ApplicationAutoScaling::ScalableTarget", {
      MinCapacity: 0,
      MaxCapacity: 3,
      ScalableDimension: "ecs:service:DesiredCount",
    });
    const policies = Object.values(resources(gpu, "AWS::ApplicationAutoScaling::ScalingPolicy")).map(
      (p) =>
        p.Properties?.StepScalingPolicyConfiguration as {
          AdjustmentType: string;
          StepAdjustments: Array<Record<string, number>>;
        },
    );
    expect(policies.every((p) => p.AdjustmentType === "ExactCapacity")).toBe(true);
    const scaleOut = policies.find((p) => p.StepAdjustments.length > 1);
    // Threshold 1: backlog 1..4 → 1 task, 5..8 → 2, 9+ → 3.
    expect(scaleOut?.StepAdjustments).toEqual([
      { MetricIntervalLowerBound: 0, MetricIntervalUpperBound: 4, ScalingAdjustment: 1 },
      { MetricIntervalLowerBound: 4, MetricIntervalUpperBound: 8, ScalingAdjustment: 2 },
      { MetricIntervalLowerBound: 8, ScalingAdjustment: 3 },
    ]);
    const scaleIn = policies.find((p) => p.StepAdjustments.length === 1);
    expect(scaleIn?.StepAdjustments).toEqual([{ MetricIntervalUpperBound: 0, ScalingAdjustment: 0 }]);
  });

  it("goes to zero tasks only after the queue has been empty a while", () => {
    const idle = backlogAlarms().find(
      (a) => a.Properties?.ComparisonOperator === "LessThanOrEqualToThreshold",
    );
    expect(idle?.Properties).toMatchObject({
      Threshold: 0,
      EvaluationPeriods: SCALE_IN_IDLE_MINUTES,
      TreatMissingData: "breaching",
    });
  });

  it("computes exact-capacity steps for any backlog per task", () => {
    expect(backlogSteps(4, 1)).toEqual([
      { lower: 1, upper: 5, change: 1 },
      { lower: 5, change: 1 },
    ]);
    expect(backlogSteps(2, 3)).toEqual([
      { lower: 1, upper: 3, change: 1 },
      { lower: 3, upper: 5, change: 2 },
      { lower: 5, change: 3 },
    ]);
  });
});

describe("worker image and GPU configuration", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  const config = (values: Record<string, unknown>) =>
    loadInfraConfig((key) => ({ selfHostedModels: CONTEXT.selfHostedModels, ...values })[key], {});

  it("refuses to synth without workerImage or worker/Dockerfile, naming both", () => {
    const root = mkdtempSync(path.join(tmpdir(), "no-worker-"));
    dirs.push(root);
    expect(() => workerImage(config({}), root)).toThrow(WorkerImageError);
    expect(() => workerImage(config({}), root)).toThrow(/context workerImage.*worker\/Dockerfile/);
  });

  it("builds worker/Dockerfile as an asset when no image is given", () => {
    const root = mkdtempSync(path.join(tmpdir(), "worker-"));
    dirs.push(root);
    mkdirSync(path.join(root, "worker"));
    writeFileSync(path.join(root, "worker", "Dockerfile"), "FROM scratch\n");
    expect(workerImage(config({}), root).asset).toBe(true);
    expect(workerImage(config({ workerImage: "repo/worker:1" }), root).asset).toBe(false);
  });

  it("accepts g5/g6 instance types only, and min tasks no more than max", () => {
    expect(config({ gpuInstanceType: "g5.2xlarge" }).gpuInstanceType).toBe("g5.2xlarge");
    for (const bad of [{ gpuInstanceType: "p3.2xlarge" }, { gpuMinTasks: 3, gpuMaxTasks: 2 }]) {
      expect(() => config(bad), JSON.stringify(bad)).toThrow(InfraConfigError);
    }
  });
});

describe("the self-hosted model catalog (selfHostedModels)", () => {
  const load = (selfHostedModels: unknown) => loadInfraConfig((key) => ({ selfHostedModels })[key], {});
  const problems = (selfHostedModels: unknown): string => {
    try {
      load(selfHostedModels);
    } catch (error) {
      if (error instanceof InfraConfigError) return error.problems.join("\n");
      throw error;
    }
    return "";
  };
  const sd15 = CONTEXT.selfHostedModels[0] as Record<string, unknown>;

  it("is required: deploying the fallback without one fails the synth, naming it (no placeholder)", () => {
    expect(problems(undefined)).toMatch(/^selfHostedModels: required/);
    expect(problems("")).toMatch(/^selfHostedModels: required/);
    expect(problems([])).toMatch(/at least one model/);
    expect(() =>
      buildApp({ skipBundling: true, context: { workerImage: TEST_CONTEXT.workerImage } }),
    ).toThrow(/selfHostedModels/);
  });

  it("needs each model's S3 prefix, a known kind and ControlNet names, and distinct ids", () => {
    const { s3Uri: _, ...located } = sd15;
    expect(problems([located])).toMatch(/selfHostedModels\.0\.s3Uri: required/);
    expect(problems([{ ...sd15, s3Uri: "https://bucket/x/" }])).toMatch(/s3Uri/);
    expect(problems([{ ...sd15, kind: "flux" }])).toMatch(/kind/);
    expect(problems([{ ...sd15, controlnets: ["canny", "gray"] }])).toMatch(/controlnets/);
    expect(problems([{ ...sd15, annotators: ["canny"] }])).toMatch(/annotators/);
    expect(problems([{ ...sd15, upscaler: { scale: 3 } }])).toMatch(/upscaler/);
    expect(problems([sd15, sd15])).toMatch(/declared twice/);
  });

  it("takes the JSON text `-c selfHostedModels=...` gives, and refuses text that is not JSON", () => {
    expect(load(JSON.stringify([sd15])).selfHostedModels).toEqual([sd15]);
    expect(problems("[{")).toMatch(/JSON/);
  });

  it("must fit a Lambda's environment without its S3 locations", () => {
    const many = Array.from({ length: 16 }, (_, i) => ({
      ...sd15,
      id: `model-with-a-long-name-${i}`,
      controlnets: ["canny", "depth", "hed", "mlsd", "normal", "openpose", "scribble", "segmentation"],
    }));
    expect(problems(many)).toMatch(/Lambda/);
  });
});

describe("a private ECR worker image", () => {
  const ECR_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/controlnet-worker:1.0.0";
  let ecrGpu: Template;
  beforeAll(() => {
    const built = buildApp({ skipBundling: true, context: { ...CONTEXT, workerImage: ECR_IMAGE } });
    // The synth runs cdk-nag: the pull grants must come acknowledged where they need it.
    built.app.synth();
    const report = new AwsSolutionsChecks().validateScope(built.app);
    expect(report.violations.map((v) => `${v.severity} ${v.ruleName}`)).toEqual([]);
    ecrGpu = Template.fromStack(built.stacks.gpu);
  });

  const statementsOf = (template: Template, roleId: string) =>
    Object.values(
      template.findResources("AWS::IAM::Policy", { Properties: { Roles: [{ Ref: roleId }] } }),
    ).flatMap(
      (p) =>
        (
          p.Properties.PolicyDocument as {
            Statement: Array<{ Action: string | string[]; Resource: unknown }>;
          }
        ).Statement,
    );
  const pulls = (template: Template, roleId: string) => {
    const statements = statementsOf(template, roleId);
    const token = statements.some(
      (s) => [s.Action].flat().includes("ecr:GetAuthorizationToken") && s.Resource === "*",
    );
    const layers = statements.find((s) => [s.Action].flat().includes("ecr:BatchGetImage"));
    return {
      token,
      actions: layers ? [layers.Action].flat().sort() : [],
      resource: JSON.stringify(layers?.Resource ?? null),
    };
  };
  const roleIds = (template: Template) => {
    const [, task] = only(resources(template, "AWS::ECS::TaskDefinition"), "task");
    const execution = refTarget(task.Properties?.ExecutionRoleArn);
    const [instance] = only(
      template.findResources("AWS::IAM::Role", {
        Properties: {
          AssumeRolePolicyDocument: { Statement: [{ Principal: { Service: "ec2.amazonaws.com" } }] },
        },
      }),
      "instance role",
    );
    return { execution, instance };
  };

  it("parses private ECR URIs (tag or digest), and nothing else", () => {
    expect(ecrRepositoryOf(ECR_IMAGE)).toEqual({
      account: "123456789012",
      region: "eu-west-1",
      repositoryName: "team/controlnet-worker",
    });
    expect(
      ecrRepositoryOf(`123456789012.dkr.ecr.us-east-1.amazonaws.com/worker@sha256:${"a".repeat(64)}`),
    ).toMatchObject({ repositoryName: "worker" });
    expect(ecrRepositoryOf("public.ecr.aws/docker/library/node:22")).toBeNull();
    expect(ecrRepositoryOf("docker.io/library/node:22")).toBeNull();
  });

  it("lets the execution role and the instance role pull that repository, and nothing more", () => {
    const { execution, instance } = roleIds(ecrGpu);
    for (const role of [execution, instance]) {
      const grant = pulls(ecrGpu, role);
      expect(grant.token, role).toBe(true);
      expect(grant.actions, role).toEqual([
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
      ]);
      expect(grant.resource, role).toContain(":ecr:eu-west-1:123456789012:repository/team/controlnet-worker");
    }
    // An image from a public registry gets no ECR grant.
    const publicRoles = roleIds(gpu);
    expect(pulls(gpu, publicRoles.execution).actions).toEqual([]);
    expect(pulls(gpu, publicRoles.instance).actions).toEqual([]);
  });
});

describe("GPU platform: the AMI's driver runs the image's CUDA, which onnxruntime-node's provider needs", () => {
  const dockerfile = readFileSync(path.join(REPO_ROOT, "worker", "Dockerfile"), "utf8");
  const version = (v: string) => v.split(".").map(Number);
  const atLeast = (have: string, need: string) => {
    const [a, b] = [version(have), version(need)];
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
    }
    return true;
  };

  it("the Dockerfile's CUDA base image is the documented CUDA, with cuDNN", () => {
    const image = /^ARG CUDA_IMAGE=nvidia\/cuda:(\d+\.\d+\.\d+)-(cudnn)-runtime-/m.exec(dockerfile);
    expect(image?.[1]).toBe(GPU_PLATFORM.imageCuda);
    expect(image?.[2]).toBe("cudnn");
  });

  it("the image's CUDA major is the one onnxruntime-node installs its CUDA provider for", async () => {
    const major = Number(GPU_PLATFORM.imageCuda.split(".")[0]);
    expect(major).toBe(GPU_PLATFORM.onnxRuntimeCudaMajor);
    const { createRequire } = await import("node:module");
    const metadata = createRequire(import.meta.url)("onnxruntime-node/script/install-metadata.js") as {
      requirements: Record<string, string[]>;
    };
    expect(metadata.requirements["linux/x64"]).toContain(`cuda${major}`);
    expect(dockerfile).toMatch(new RegExp(`^ENV ONNXRUNTIME_NODE_INSTALL=cuda${major}$`, "m"));
  });

  it("the AMI's NVIDIA driver is new enough for the image's CUDA (NVIDIA_REQUIRE_CUDA would refuse it)", () => {
    const minor = GPU_PLATFORM.imageCuda.split(".").slice(0, 2).join(".");
    const needed = CUDA_MINIMUM_DRIVER[minor];
    expect(needed, `no driver minimum known for CUDA ${minor}`).toBeDefined();
    expect(atLeast(GPU_PLATFORM.amiDriverVersion, needed as string)).toBe(true);
    // The Amazon Linux 2 GPU AMI's driver (550.163.01) is not: the reason for Amazon Linux 2023.
    expect(atLeast("550.163.01", needed as string)).toBe(false);
  });

  it("docs/deploy.md states the versions", () => {
    const docs = readFileSync(path.join(REPO_ROOT, "docs", "deploy.md"), "utf8");
    for (const fact of [
      GPU_PLATFORM.amiDriverVersion,
      `CUDA ${GPU_PLATFORM.imageCuda}`,
      `cuDNN ${GPU_PLATFORM.imageCudnnMajor}`,
      "amazon-linux-2023/gpu",
    ]) {
      expect(docs, fact).toContain(fact);
    }
  });
});
