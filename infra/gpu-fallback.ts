import { existsSync } from "node:fs";
import path from "node:path";
import {
  Aws,
  CrossStackReferences,
  Duration,
  ReferenceStrength,
  RemovalPolicy,
  type StackProps,
  Validations,
} from "aws-cdk-lib";
import {
  AdjustmentType,
  ScalableTarget,
  ServiceNamespace,
  StepScalingAction,
} from "aws-cdk-lib/aws-applicationautoscaling";
import {
  AutoScalingGroup,
  BlockDeviceVolume,
  EbsDeviceVolumeType,
  ScalingEvents,
} from "aws-cdk-lib/aws-autoscaling";
import { Alarm, ComparisonOperator, MathExpression, TreatMissingData } from "aws-cdk-lib/aws-cloudwatch";
import { ApplicationScalingAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import {
  FlowLogDestination,
  FlowLogTrafficType,
  GatewayVpcEndpointAwsService,
  InstanceType,
  LaunchTemplate,
  SecurityGroup,
  SubnetType,
  UserData,
  Vpc,
} from "aws-cdk-lib/aws-ec2";
import {
  AmiHardwareType,
  AsgCapacityProvider,
  Cluster,
  ContainerImage,
  Ec2Service,
  Ec2TaskDefinition,
  EcsOptimizedImage,
  LogDrivers,
  NetworkMode,
} from "aws-cdk-lib/aws-ecs";
import { PolicyStatement, Role, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import { LogGroup } from "aws-cdk-lib/aws-logs";
import type { IBucket } from "aws-cdk-lib/aws-s3";
import type { ITopic } from "aws-cdk-lib/aws-sns";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { type InfraConfig, isProduction, parseS3Uri } from "./config.ts";
import { grantBucket, REPO_ROOT } from "./constructs/house-function.ts";
import { ReadableStack } from "./constructs/readable-stack.ts";

/** The worker's Dockerfile, relative to the repository root (the build context: it copies shared/ too). */
export const WORKER_DOCKERFILE = "worker/Dockerfile";

/** Seconds ECS waits after SIGTERM before SIGKILL; the worker drains within DRAIN_TIMEOUT_SECONDS (less). */
export const WORKER_STOP_TIMEOUT = Duration.seconds(120);
export const WORKER_DRAIN_TIMEOUT_SECONDS = 90;
/** Minutes the fallback queue must be empty (nothing visible, nothing in flight) before tasks go to zero. */
export const SCALE_IN_IDLE_MINUTES = 10;

/**
 * The GPU platform, and why its parts fit (docs/deploy.md, "GPU platform"; test/infra/gpu-fallback.test.ts
 * checks these against the Dockerfile, onnxruntime-node's install metadata and the synthesized AMI).
 * - The instances run the ECS GPU-optimised Amazon Linux 2023 AMI; its releases (aws/amazon-ecs-ami,
 *   20260609 to 20261113) ship NVIDIA driver 580 (580.159.03, then 580.178.04): CUDA up to 13.0.
 *   The Amazon Linux 2 GPU AMI ships driver 550.163.01 (CUDA 12.4): too old for the image below, whose
 *   NVIDIA_REQUIRE_CUDA (cuda>=12.8) makes the NVIDIA container runtime refuse to start it there.
 * - The worker image is nvidia/cuda 12.8.1 with cuDNN 9 (worker/Dockerfile's CUDA_IMAGE).
 * - onnxruntime-node ~1.29 installs the `cuda12` build of the CUDA provider: CUDA 12.x and cuDNN 9.x.
 */
export const GPU_PLATFORM = {
  amiParameter: "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
  /** The NVIDIA driver of the AMI's latest release read (20261113). */
  amiDriverVersion: "580.178.04",
  /** CUDA of the worker image (its runtime libraries; the driver must run at least this). */
  imageCuda: "12.8.1",
  imageCudnnMajor: 9,
  /** The CUDA major of onnxruntime-node's CUDA provider build. */
  onnxRuntimeCudaMajor: 12,
} as const;

/**
 * The oldest Linux driver each CUDA minor release runs on without the compatibility package (NVIDIA's
 * CUDA Toolkit release notes, table 3); what NVIDIA_REQUIRE_CUDA in an nvidia/cuda image asks of the host.
 */
export const CUDA_MINIMUM_DRIVER: Readonly<Record<string, string>> = {
  "12.0": "525.60.13",
  "12.1": "530.30.02",
  "12.2": "535.54.03",
  "12.3": "545.23.06",
  "12.4": "550.54.14",
  "12.5": "555.42.02",
  "12.6": "560.28.03",
  "12.8": "570.26",
  "12.9": "575.51.03",
  "13.0": "580.65.06",
};

/** The worker's user id in the image (worker/Dockerfile's useradd): the host model folder is given to it. */
export const WORKER_UID = 10001;
/** Where the models live on the GPU instance, kept across the tasks that instance runs. */
export const HOST_MODEL_DIR = "/var/lib/controlnet/models";
/** Where the task mounts that folder (the image's MODEL_DIR). */
export const CONTAINER_MODEL_DIR = "/models";

/**
 * The ECS container health check: GET /health on the worker's port, from inside the container (node
 * is there; curl is not). /health is liveness: 200 while starting, syncing, warming and ready, 503 once
 * unhealthy (CUDA missing, a failed sync). The start period is ECS's most (300 s): failures in it do
 * not count; a sync longer than that still answers 200.
 */
export const WORKER_HEALTH_PORT = 8080;
export const WORKER_HEALTH_CHECK = {
  command: [
    "CMD",
    "node",
    "-e",
    `fetch('http://127.0.0.1:${WORKER_HEALTH_PORT}/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`,
  ],
  interval: Duration.seconds(30),
  timeout: Duration.seconds(5),
  retries: 3,
  startPeriod: Duration.seconds(300),
};

/** A private ECR image URI: account, region, repository (and tag or digest). */
export function ecrRepositoryOf(
  image: string,
): { account: string; region: string; repositoryName: string } | null {
  const m =
    /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/([a-z0-9._/-]+?)(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$/.exec(
      image,
    );
  if (!m?.[1] || !m[2] || !m[3]) return null;
  return { account: m[1], region: m[2], repositoryName: m[3] };
}

export class WorkerImageError extends Error {
  constructor() {
    super(
      `The GPU fallback needs a worker image: set CDK context workerImage (-c workerImage=<image URI>) ` +
        `or add ${WORKER_DOCKERFILE} so the image is built as a Docker asset at deploy time`,
    );
    this.name = "WorkerImageError";
  }
}

/** The worker's container image: a given URI, else `worker/Dockerfile` built as an asset (needs Docker at deploy). */
export function workerImage(
  config: InfraConfig,
  repoRoot = REPO_ROOT,
): { image: ContainerImage; asset: boolean } {
  if (config.workerImage) return { image: ContainerImage.fromRegistry(config.workerImage), asset: false };
  if (!existsSync(path.join(repoRoot, WORKER_DOCKERFILE))) throw new WorkerImageError();
  return {
    image: ContainerImage.fromAsset(repoRoot, {
      file: WORKER_DOCKERFILE,
      exclude: [
        "node_modules",
        "**/node_modules",
        "cdk.out",
        ".git",
        ".data",
        ".scratch",
        "coverage",
        "*.log",
      ],
    }),
    asset: true,
  };
}

/**
 * Exact task counts for a backlog (visible + in-flight messages): 1 task for 1..perTask messages,
 * 2 for perTask+1..2·perTask, ... up to `maxTasks`. Step scaling keeps the backlog per task at most
 * `perTask` (the "backlog per task" target) without a custom metric.
 */
export function backlogSteps(
  perTask: number,
  maxTasks: number,
): Array<{ lower: number; upper?: number; change: number }> {
  const steps = Array.from({ length: maxTasks }, (_, index) => {
    const tasks = index + 1;
    const lower = index * perTask + 1;
    return tasks === maxTasks ? { lower, change: tasks } : { lower, upper: lower + perTask, change: tasks };
  });
  // Step scaling needs two intervals at least.
  const last = steps[steps.length - 1];
  if (steps.length === 1 && last)
    return [
      { lower: 1, upper: 1 + perTask, change: 1 },
      { lower: 1 + perTask, change: 1 },
    ];
  return steps;
}

export interface GpuFallbackProps {
  config: InfraConfig;
  fallbackQueue: IQueue;
  resultsQueue: IQueue;
  outputsBucket: IBucket;
  /** Receives the GPU group's launch and terminate errors. */
  alarmTopic: ITopic;
}

/**
 * The self-hosted GPU fallback: an ECS cluster on GPU EC2 capacity that starts at zero instances, a
 * one-GPU task definition for the ONNX worker, and a service scaled on the fallback queue's backlog.
 *
 * Network, chosen for the idle bill: a VPC of public subnets only, in two AZs, and no NAT gateway (one
 * is billed by the hour per AZ, idle or not). Instances get a public address for egress (ECR, SQS,
 * ECS, CloudWatch) and a security group with no inbound rule at all; S3 and DynamoDB traffic stays on
 * free gateway endpoints. Tasks use bridge networking on the instance's interface (awsvpc task ENIs get
 * no public address and would need the NAT). Instance metadata requires IMDSv2 and containers cannot
 * reach the instance role.
 */
export class GpuFallback extends Construct {
  readonly vpc: Vpc;
  readonly cluster: Cluster;
  readonly autoScalingGroup: AutoScalingGroup;
  readonly capacityProvider: AsgCapacityProvider;
  readonly taskDefinition: Ec2TaskDefinition;
  readonly service: Ec2Service;
  readonly scalableTarget: ScalableTarget;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: GpuFallbackProps) {
    super(scope, id);
    const { config } = props;
    const removalPolicy = isProduction(config) ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    const image = workerImage(config);

    this.vpc = new Vpc(this, "Vpc", {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: "Public", subnetType: SubnetType.PUBLIC, cidrMask: 24 }],
      gatewayEndpoints: {
        S3: { service: GatewayVpcEndpointAwsService.S3 },
        DynamoDb: { service: GatewayVpcEndpointAwsService.DYNAMODB },
      },
    });
    const flowLogs = new LogGroup(this, "FlowLogs", { retention: config.logRetentionDays, removalPolicy });
    this.vpc.addFlowLog("FlowLog", {
      destination: FlowLogDestination.toCloudWatchLogs(flowLogs),
      // Rejected traffic only: what a no-inbound security group turns away, at a fraction of the volume.
      trafficType: FlowLogTrafficType.REJECT,
    });

    this.cluster = new Cluster(this, "Cluster", {
      vpc: this.vpc,
      clusterName: `controlnet-${config.stage}-gpu`,
    });
    Validations.of(this.cluster).acknowledge({
      id: "AwsSolutions-ECS4",
      reason:
        "Container Insights bills its metrics even while the GPU cluster sits at zero tasks; the worker " +
        "logs to CloudWatch Logs and the fallback queue's backlog and age alarms watch its throughput",
    });

    const securityGroup = new SecurityGroup(this, "InstanceSecurityGroup", {
      vpc: this.vpc,
      description: "GPU worker instances: no inbound traffic; outbound to AWS APIs and the image registry",
      allowAllOutbound: true,
    });
    const instanceRole = new Role(this, "InstanceRole", {
      assumedBy: new ServicePrincipal("ec2.amazonaws.com"),
      description: "ECS container instances of the GPU fallback (the ECS agent's permissions only)",
    });
    const userData = UserData.forLinux();
    // The model folder outlives the tasks on an instance (a later task syncs only what changed); Docker
    // would create a missing bind-mount source owned by root, which the non-root worker cannot write.
    userData.addCommands(
      `mkdir -p ${HOST_MODEL_DIR}`,
      `chown ${WORKER_UID}:${WORKER_UID} ${HOST_MODEL_DIR}`,
      `chmod 700 ${HOST_MODEL_DIR}`,
    );
    const launchTemplate = new LaunchTemplate(this, "LaunchTemplate", {
      instanceType: new InstanceType(config.gpuInstanceType),
      machineImage: EcsOptimizedImage.amazonLinux2023(AmiHardwareType.GPU),
      userData,
      role: instanceRole,
      securityGroup,
      associatePublicIpAddress: true,
      requireImdsv2: true,
      // Bridge-networked containers are one hop further than the instance: they cannot get an IMDSv2
      // token, so they cannot borrow the instance role (tasks get their own role from the ECS agent).
      httpPutResponseHopLimit: 1,
      blockDevices: [
        {
          // Images with CUDA and ONNX Runtime, plus the models, need room.
          deviceName: "/dev/xvda",
          volume: BlockDeviceVolume.ebs(100, { encrypted: true, volumeType: EbsDeviceVolumeType.GP3 }),
        },
      ],
    });
    this.autoScalingGroup = new AutoScalingGroup(this, "Instances", {
      vpc: this.vpc,
      vpcSubnets: { subnetType: SubnetType.PUBLIC },
      launchTemplate,
      minCapacity: 0,
      maxCapacity: config.gpuMaxTasks,
      // Failed launches (no g5/g6 capacity in the AZs, a quota) reach the alarm topic.
      notifications: [{ topic: props.alarmTopic, scalingEvents: ScalingEvents.ERRORS }],
    });
    Validations.of(this.autoScalingGroup).acknowledge({
      id: "AwsSolutions-AS3",
      reason:
        "The GPU group notifies the alarm topic of launch and terminate errors only; successful launches " +
        "and terminations are the routine scale from and to zero and would bury real alarms in mail",
    });
    this.capacityProvider = new AsgCapacityProvider(this, "CapacityProvider", {
      autoScalingGroup: this.autoScalingGroup,
      capacityProviderName: `controlnet-${config.stage}-gpu`,
      enableManagedScaling: true,
      enableManagedTerminationProtection: true,
      // Instances exactly for the tasks placed: none while the service is at zero.
      targetCapacityPercent: 100,
      instanceWarmupPeriod: 300,
    });
    this.cluster.addAsgCapacityProvider(this.capacityProvider);
    Validations.of(instanceRole).acknowledge(
      {
        id: "AwsSolutions-IAM5[Action::ecs:Submit*]",
        reason:
          "The ECS agent reports container and task state changes (ecs:SubmitContainerStateChange, " +
          "SubmitTaskStateChange, SubmitAttachmentStateChanges) on this cluster's ARN only",
      },
      {
        id: "AwsSolutions-IAM5[Resource::*]",
        reason:
          "The ECS agent's ecs:DiscoverPollEndpoint, ecr:GetAuthorizationToken and its log calls support no " +
          "resource-level permission; ecs:Poll and StartTelemetrySession are conditioned on this cluster",
      },
    );

    this.logGroup = new LogGroup(this, "WorkerLogs", { retention: config.logRetentionDays, removalPolicy });
    this.taskDefinition = new Ec2TaskDefinition(this, "WorkerTask", { networkMode: NetworkMode.BRIDGE });
    this.taskDefinition.addVolume({ name: "models", host: { sourcePath: HOST_MODEL_DIR } });
    const locations = config.selfHostedModels.map((model) => ({
      id: model.id,
      ...parseS3Uri(model.s3Uri as string),
    }));
    const worker = this.taskDefinition.addContainer("Worker", {
      image: image.image,
      essential: true,
      gpuCount: 1,
      // Fits every g5/g6 xlarge (4 vCPU, 16 GiB) with room for the ECS agent and the OS.
      cpu: 3072,
      memoryReservationMiB: 12_288,
      stopTimeout: WORKER_STOP_TIMEOUT,
      healthCheck: WORKER_HEALTH_CHECK,
      logging: LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: "worker" }),
      environment: {
        FALLBACK_QUEUE_URL: props.fallbackQueue.queueUrl,
        RESULTS_QUEUE_URL: props.resultsQueue.queueUrl,
        OUTPUTS_BUCKET: props.outputsBucket.bucketName,
        // The whole catalog, S3 locations included: the worker syncs and checks each model's folder.
        SELF_HOSTED_MODELS: JSON.stringify(config.selfHostedModels),
        MODEL_DIR: CONTAINER_MODEL_DIR,
        HEALTH_PORT: String(WORKER_HEALTH_PORT),
        EXECUTION_PROVIDER: "cuda",
        DRAIN_TIMEOUT_SECONDS: String(WORKER_DRAIN_TIMEOUT_SECONDS),
        AWS_REGION: Aws.REGION,
      },
    });
    worker.addMountPoints({ sourceVolume: "models", containerPath: CONTAINER_MODEL_DIR, readOnly: false });
    Validations.of(this.taskDefinition).acknowledge({
      id: "AwsSolutions-ECS2",
      reason:
        "The worker's environment holds only queue URLs, the outputs bucket name, the model catalog (ids, " +
        "capabilities and S3 prefixes) and " +
        "tuning values, no secrets; they are set at deploy time and read once at start",
    });

    // Task role: consume the fallback queue, send results, put outputs, read the models prefix. Nothing else.
    const taskRole = this.taskDefinition.taskRole;
    props.fallbackQueue.grantConsumeMessages(taskRole);
    props.resultsQueue.grantSendMessages(taskRole);
    grantBucket(taskRole as Role, props.outputsBucket, "put");
    // Each model's prefix: read its objects, list only under it.
    for (const location of locations) {
      const objects = `arn:${Aws.PARTITION}:s3:::${location.bucket}/${location.prefix}*`;
      taskRole.addToPrincipalPolicy(new PolicyStatement({ actions: ["s3:GetObject"], resources: [objects] }));
      taskRole.addToPrincipalPolicy(
        new PolicyStatement({
          actions: ["s3:ListBucket"],
          resources: [`arn:${Aws.PARTITION}:s3:::${location.bucket}`],
          conditions: { StringLike: { "s3:prefix": [`${location.prefix}*`] } },
        }),
      );
      Validations.of(taskRole).acknowledge({
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::${location.bucket}/${location.prefix}*]`,
        reason:
          `The worker syncs model ${location.id}'s ONNX files under s3://${location.bucket}/${location.prefix} ` +
          "(names set by whoever publishes the model), read-only (s3:GetObject), and lists only that prefix",
      });
    }
    // A private ECR image given by URI: the execution role (which the ECS agent pulls with) and the
    // instance role may pull that repository; ContainerImage.fromRegistry grants nothing. (An image in
    // another account also needs that repository's policy to allow this account.)
    const ecr = config.workerImage ? ecrRepositoryOf(config.workerImage) : null;
    if (ecr) {
      const repositoryArn = `arn:${Aws.PARTITION}:ecr:${ecr.region}:${ecr.account}:repository/${ecr.repositoryName}`;
      for (const role of [this.taskDefinition.obtainExecutionRole(), instanceRole]) {
        role.addToPrincipalPolicy(
          new PolicyStatement({ actions: ["ecr:GetAuthorizationToken"], resources: ["*"] }),
        );
        role.addToPrincipalPolicy(
          new PolicyStatement({
            actions: ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            resources: [repositoryArn],
          }),
        );
      }
    }
    if (image.asset || ecr) {
      Validations.of(this.taskDefinition.obtainExecutionRole()).acknowledge({
        id: "AwsSolutions-IAM5[Resource::*]",
        reason:
          "The execution role pulls the worker image from its ECR repository (the CDK asset repository or " +
          "the workerImage one); ecr:GetAuthorizationToken supports no resource-level permission (the pull " +
          "actions name the repository)",
      });
    }

    this.service = new Ec2Service(this, "WorkerService", {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      serviceName: `controlnet-${config.stage}-gpu-worker`,
      desiredCount: 0,
      // One GPU per task: a deployment stops old tasks before starting new ones rather than need spare GPUs.
      minHealthyPercent: 0,
      maxHealthyPercent: 100,
      circuitBreaker: { rollback: true },
      capacityProviderStrategies: [
        { capacityProvider: this.capacityProvider.capacityProviderName, weight: 1 },
      ],
    });

    // Backlog = visible + in flight: a task busy with the last message must not be scaled in under it.
    const backlog = new MathExpression({
      expression: "visible + inflight",
      usingMetrics: {
        visible: props.fallbackQueue.metricApproximateNumberOfMessagesVisible({ statistic: "Maximum" }),
        inflight: props.fallbackQueue.metricApproximateNumberOfMessagesNotVisible({ statistic: "Maximum" }),
      },
      label: "Fallback backlog",
      period: Duration.minutes(1),
    });
    this.scalableTarget = new ScalableTarget(this, "TaskCount", {
      serviceNamespace: ServiceNamespace.ECS,
      scalableDimension: "ecs:service:DesiredCount",
      resourceId: `service/${this.cluster.clusterName}/${this.service.serviceName}`,
      minCapacity: config.gpuMinTasks,
      maxCapacity: config.gpuMaxTasks,
    });
    this.scalableTarget.node.addDependency(this.service);
    this.scalableTarget.scaleOnMetric("BacklogScaleOut", {
      metric: backlog,
      adjustmentType: AdjustmentType.EXACT_CAPACITY,
      scalingSteps: backlogSteps(config.gpuBacklogPerTask, config.gpuMaxTasks),
      evaluationPeriods: 1,
      cooldown: Duration.minutes(1),
    });
    const scaleIn = new StepScalingAction(this, "IdleScaleIn", {
      scalingTarget: this.scalableTarget,
      adjustmentType: AdjustmentType.EXACT_CAPACITY,
      cooldown: Duration.minutes(5),
    });
    scaleIn.addAdjustment({ adjustment: 0, upperBound: 0 });
    const idle = new Alarm(this, "IdleAlarm", {
      alarmDescription: `Fallback queue empty for ${SCALE_IN_IDLE_MINUTES} minutes: GPU tasks go to zero`,
      metric: backlog,
      threshold: 0,
      comparisonOperator: ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: SCALE_IN_IDLE_MINUTES,
      // No data (SQS stops reporting an idle queue) counts as empty.
      treatMissingData: TreatMissingData.BREACHING,
    });
    idle.addAlarmAction(new ApplicationScalingAction(scaleIn));
  }
}

export interface GpuStackProps extends StackProps, GpuFallbackProps {}

/** The GPU fallback in a stack of its own: its VPC and instances change apart from the service. */
export class GpuStack extends ReadableStack {
  readonly fallback: GpuFallback;

  constructor(scope: Construct, id: string, props: GpuStackProps) {
    super(scope, id, props);
    // Strong references (exports + Fn::ImportValue): the stateful stack cannot drop what the workers use.
    CrossStackReferences.of(this).consume(ReferenceStrength.STRONG);
    this.fallback = new GpuFallback(this, "Gpu", props);
  }
}
