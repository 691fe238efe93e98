import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Duration, type RemovalPolicy } from "aws-cdk-lib";
import { Alarm, ComparisonOperator, type IAlarmAction, TreatMissingData } from "aws-cdk-lib/aws-cloudwatch";
import type { ITable } from "aws-cdk-lib/aws-dynamodb";
import type { IEventBus } from "aws-cdk-lib/aws-events";
import { type IGrantable, PolicyStatement } from "aws-cdk-lib/aws-iam";
import { Architecture, type CfnFunction, Runtime, Tracing } from "aws-cdk-lib/aws-lambda";
import { NodejsFunction, OutputFormat } from "aws-cdk-lib/aws-lambda-nodejs";
import { LogGroup, type RetentionDays } from "aws-cdk-lib/aws-logs";
import type { IBucket } from "aws-cdk-lib/aws-s3";
import type { ISecret } from "aws-cdk-lib/aws-secretsmanager";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import type { BucketAccess, QueueAccess, TableAccess } from "../functions.ts";

/** The repository root: entries, the lock file and the bundling project root are relative to it. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Template Metadata key naming the function's TypeScript module (repo-relative) for the local stack. */
export const LOCAL_ENTRY_METADATA = "local:entry";

/** The handler export every function module provides. */
export const HANDLER_EXPORT = "handler";

/** ESM bundles have no `require`; some bundled CommonJS dependencies still call it. */
const ESM_REQUIRE_BANNER =
  "import { createRequire as __houseCreateRequire } from 'node:module';const require = __houseCreateRequire(import.meta.url);";

export interface HouseFunctionProps {
  /** Module under `functions/`, relative to the repository root. */
  entry: string;
  memoryMb: number;
  timeout: Duration;
  logRetention: RetentionDays;
  logRemovalPolicy: RemovalPolicy;
  environment?: Record<string, string>;
  description?: string;
  /** Where the function's Errors and Throttles alarms notify (required: no function goes unwatched). */
  alarmAction: IAlarmAction;
}

/**
 * The house Lambda: Node.js 22 on arm64, an ESM bundle made by esbuild (minified, with source maps, the
 * AWS SDK bundled rather than taken from the runtime so the code runs against the SDK it was tested
 * with), X-Ray tracing, and its own log group with a retention. The template records the TypeScript
 * entry in Metadata (`local:entry`) so the local stack can import the same module.
 *
 * Every house function is watched: an alarm on any error (`<id>ErrorsAlarm`) and on any throttle
 * (`<id>ThrottlesAlarm`) in a 5-minute window.
 *
 * Children: `Function` (logical id `<id>Function`), `LogGroup`, `ErrorsAlarm`, `ThrottlesAlarm`.
 */
export class HouseFunction extends Construct {
  readonly function: NodejsFunction;
  readonly logGroup: LogGroup;
  readonly errorsAlarm: Alarm;
  readonly throttlesAlarm: Alarm;
  /** The entry, relative to the repository root (`functions/api.ts`). */
  readonly entry: string;

  constructor(scope: Construct, id: string, props: HouseFunctionProps) {
    super(scope, id);
    this.entry = path.posix.normalize(props.entry.split(path.sep).join("/"));
    const absoluteEntry = path.join(REPO_ROOT, this.entry);
    // Even when bundling is skipped (tests, the local stack): a row without its module is a broken app.
    if (!existsSync(absoluteEntry)) {
      throw new Error(`HouseFunction ${id}: entry ${this.entry} does not exist (${absoluteEntry})`);
    }

    this.logGroup = new LogGroup(this, "LogGroup", {
      retention: props.logRetention,
      removalPolicy: props.logRemovalPolicy,
    });

    this.function = new NodejsFunction(this, "Function", {
      entry: absoluteEntry,
      handler: HANDLER_EXPORT,
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memoryMb,
      timeout: props.timeout,
      tracing: Tracing.ACTIVE,
      logGroup: this.logGroup,
      description: props.description ?? this.entry,
      // Stack traces through the minified bundle point at the TypeScript sources.
      environment: { NODE_OPTIONS: "--enable-source-maps", ...props.environment },
      projectRoot: REPO_ROOT,
      depsLockFilePath: path.join(REPO_ROOT, "package-lock.json"),
      bundling: {
        format: OutputFormat.ESM,
        target: "node22",
        mainFields: ["module", "main"],
        banner: ESM_REQUIRE_BANNER,
        minify: true,
        sourceMap: true,
        bundleAwsSDK: true,
        externalModules: [],
      },
    });

    (this.function.node.defaultChild as CfnFunction).addMetadata(LOCAL_ENTRY_METADATA, this.entry);

    const alarm = (alarmId: string, metric: ReturnType<NodejsFunction["metricErrors"]>, what: string) => {
      const created = new Alarm(this, alarmId, {
        alarmDescription: `${id} (${this.entry}): ${what} in the last 5 minutes`,
        metric,
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
      created.addAlarmAction(props.alarmAction);
      return created;
    };
    const period = Duration.minutes(5);
    this.errorsAlarm = alarm(
      "ErrorsAlarm",
      this.function.metricErrors({ period, statistic: "Sum" }),
      "invocations failed",
    );
    this.throttlesAlarm = alarm(
      "ThrottlesAlarm",
      this.function.metricThrottles({ period, statistic: "Sum" }),
      "invocations were throttled",
    );
  }
}

type Bindable = HouseFunction | NodejsFunction;
const fnOf = (target: Bindable): NodejsFunction =>
  target instanceof HouseFunction ? target.function : target;

/** Sets TABLE_NAME and grants the access together. */
export function bindTable(target: Bindable, table: ITable, access: TableAccess): void {
  const fn = fnOf(target);
  fn.addEnvironment("TABLE_NAME", table.tableName);
  if (access === "read") table.grantReadData(fn);
  else table.grantReadWriteData(fn);
}

/**
 * Sets the queue URL variable and grants the access together. `consume` grants receive, delete,
 * ChangeMessageVisibility (backoff) and GetQueueAttributes.
 */
export function bindQueue(
  target: Bindable,
  queue: IQueue,
  variable: string,
  access: QueueAccess | readonly QueueAccess[],
): void {
  const fn = fnOf(target);
  fn.addEnvironment(variable, queue.queueUrl);
  const accesses: readonly QueueAccess[] = typeof access === "string" ? [access] : access;
  if (accesses.includes("send")) queue.grantSendMessages(fn);
  if (accesses.includes("consume")) queue.grantConsumeMessages(fn);
}

/** Sets `<variable>` to the secret's ARN (never its value) and grants read. */
export function bindSecret(target: Bindable, secret: ISecret, variable: string): void {
  const fn = fnOf(target);
  fn.addEnvironment(variable, secret.secretArn);
  secret.grantRead(fn);
}

/**
 * The S3 actions of each bucket access, on the bucket's objects. Multipart uploads (lib-storage's
 * `Upload`) need only s3:PutObject plus s3:AbortMultipartUpload to clean up after a failure.
 */
export const BUCKET_OBJECT_ACTIONS: Record<BucketAccess, readonly string[]> = {
  read: ["s3:GetObject"],
  put: ["s3:PutObject", "s3:AbortMultipartUpload"],
  readWrite: ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
};

/**
 * Grants a bucket access to any grantee (a function, the GPU task role): only the actions of `access`,
 * only on the bucket's objects (under `prefix` when given). `readWrite` adds s3:ListBucket on the bucket
 * so that a HeadObject of a missing key answers 404 rather than 403.
 */
export function grantBucket(grantee: IGrantable, bucket: IBucket, access: BucketAccess, prefix = ""): void {
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({
      actions: [...BUCKET_OBJECT_ACTIONS[access]],
      resources: [bucket.arnForObjects(`${prefix}*`)],
    }),
  );
  if (access === "readWrite") {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new PolicyStatement({ actions: ["s3:ListBucket"], resources: [bucket.bucketArn] }),
    );
  }
}

/** Sets `<variable>` to the bucket's name and grants the access together. */
export function bindBucket(
  target: Bindable,
  bucket: IBucket,
  variable: "INPUTS_BUCKET" | "OUTPUTS_BUCKET",
  access: BucketAccess,
): void {
  const fn = fnOf(target);
  fn.addEnvironment(variable, bucket.bucketName);
  grantBucket(fn, bucket, access);
}

/** Sets EVENT_BUS_NAME and grants events:PutEvents on that bus only. */
export function bindEventBus(target: Bindable, bus: IEventBus): void {
  const fn = fnOf(target);
  fn.addEnvironment("EVENT_BUS_NAME", bus.eventBusName);
  bus.grantPutEventsTo(fn);
}
