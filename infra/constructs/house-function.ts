import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { AssetStaging, Duration, type RemovalPolicy, Stack, Validations } from "aws-cdk-lib";
import { Alarm, ComparisonOperator, type IAlarmAction, TreatMissingData } from "aws-cdk-lib/aws-cloudwatch";
import type { ITable } from "aws-cdk-lib/aws-dynamodb";
import type { IEventBus } from "aws-cdk-lib/aws-events";
import {
  type IRole,
  ManagedPolicy,
  PolicyDocument,
  PolicyStatement,
  Role,
  ServicePrincipal,
} from "aws-cdk-lib/aws-iam";
import { Architecture, type CfnFunction, Runtime, Tracing } from "aws-cdk-lib/aws-lambda";
import { NodejsFunction, OutputFormat } from "aws-cdk-lib/aws-lambda-nodejs";
import { LogGroup, type RetentionDays } from "aws-cdk-lib/aws-logs";
import type { CfnBucket, IBucket } from "aws-cdk-lib/aws-s3";
import type { ISecret } from "aws-cdk-lib/aws-secretsmanager";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import type { BucketAccess, QueueAccess, TableAccess } from "../functions.ts";
import { HOUSE_BUNDLING } from "./house-bundling.ts";

/** The repository root: entries, the lock file and the bundling project root are relative to it. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Template Metadata key naming the function's TypeScript module (repo-relative) for the local stack. */
export const LOCAL_ENTRY_METADATA = "local:entry";

/** The handler export every function module provides. */
export const HANDLER_EXPORT = "handler";

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
 * The house Lambda: Node.js 22 on arm64, an ESM bundle made by esbuild with `HOUSE_BUNDLING`
 * (`house-bundling.ts`, shared with `npm run bench:cold`: minified, with source maps without sources
 * content, the AWS SDK bundled rather than taken from the runtime so the code runs against the SDK it
 * was tested with, its default credential chain reduced to the environment variables Lambda sets),
 * X-Ray tracing, and its own log group with a retention. The template records the TypeScript
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
  /** The execution role (`<id>Role`): only what the binders grant, plus writing its own log group. */
  readonly role: Role;
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

    // Not AWSLambdaBasicExecutionRole (logs:CreateLogGroup/CreateLogStream/PutLogEvents on every log group
    // of the account): this function may write to its own log group and nowhere else.
    this.role = new Role(this, "Role", {
      assumedBy: new ServicePrincipal("lambda.amazonaws.com"),
      description: `Execution role of ${id} (${this.entry})`,
      inlinePolicies: {
        logs: new PolicyDocument({
          statements: [
            new PolicyStatement({
              actions: ["logs:CreateLogStream", "logs:PutLogEvents"],
              resources: [this.logGroup.logGroupArn],
            }),
          ],
        }),
      },
    });
    Validations.of(this.role).acknowledge({
      id: "AwsSolutions-IAM5[Resource::*]",
      reason:
        `${id}'s active X-Ray tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which ` +
        "support no resource-level permissions; every other statement of this role names its resources",
    });

    this.function = new NodejsFunction(this, "Function", {
      role: this.role,
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
        format: HOUSE_BUNDLING.format === "esm" ? OutputFormat.ESM : OutputFormat.CJS,
        target: HOUSE_BUNDLING.target,
        mainFields: [...HOUSE_BUNDLING.mainFields],
        banner: HOUSE_BUNDLING.banner,
        minify: HOUSE_BUNDLING.minify,
        sourceMap: HOUSE_BUNDLING.sourceMap,
        sourcesContent: HOUSE_BUNDLING.sourcesContent,
        bundleAwsSDK: true,
        externalModules: [...HOUSE_BUNDLING.external],
        // `--alias:<package>=<./path>`; esbuild resolves the path from its working directory, the project
        // root locally and `workingDirectory` (the mounted project) when bundling in Docker.
        esbuildArgs: {
          "--alias": Object.entries(HOUSE_BUNDLING.alias).map(([from, to]) => `${from}=${to}`),
        },
        workingDirectory: AssetStaging.BUNDLING_INPUT_DIR,
      },
    });

    (this.function.node.defaultChild as CfnFunction).addMetadata(LOCAL_ENTRY_METADATA, this.entry);
    Validations.of(this.function).acknowledge({
      id: "AwsSolutions-L1",
      reason:
        `${id} runs on Node.js 22, the runtime issue #6 sets for every function and the one the code and ` +
        "its bundle target (esbuild node22) are tested on; moving to a newer runtime is a deliberate upgrade",
    });

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

/** The DynamoDB actions the job and tenant stores use (TransactWriteItems is authorised per item action). */
export const TABLE_ACTIONS: Record<TableAccess, readonly string[]> = {
  read: ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"],
  readWrite: [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:ConditionCheckItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
  ],
};

/**
 * Sets TABLE_NAME and grants the access together: only the actions of `access` (no Scan, no streams), on
 * the table and each named index (`indexNames`), never `index/*`.
 */
export function bindTable(
  target: Bindable,
  table: ITable,
  access: TableAccess,
  indexNames: readonly string[] = [],
): void {
  const fn = fnOf(target);
  fn.addEnvironment("TABLE_NAME", table.tableName);
  fn.addToRolePolicy(
    new PolicyStatement({
      actions: [...TABLE_ACTIONS[access]],
      resources: [table.tableArn, ...indexNames.map((name) => `${table.tableArn}/index/${name}`)],
    }),
  );
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
 * `Upload`) need only s3:PutObject plus s3:AbortMultipartUpload to clean up after a failure. A
 * `readWrite` user also removes what it wrote for nothing: the API the images staged for a job that
 * was then not written, finalize the outputs of a job that did not succeed.
 */
export const BUCKET_OBJECT_ACTIONS: Record<BucketAccess, readonly string[]> = {
  read: ["s3:GetObject"],
  put: ["s3:PutObject", "s3:AbortMultipartUpload"],
  readWrite: ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
};

const POLICY_IDS: Record<BucketAccess, string> = {
  read: "ReadPolicy",
  put: "PutPolicy",
  readWrite: "ReadWritePolicy",
};

/**
 * The customer managed policy of one kind of access to one bucket (`<bucket>ReadPolicy`,
 * `<bucket>PutPolicy`, `<bucket>ReadWritePolicy`), made once, next to the bucket, in the bucket's stack:
 * only the actions of `access`, only on the bucket's objects; `readWrite` adds s3:ListBucket on the bucket
 * so that a HeadObject of a missing key answers 404 rather than 403. Living beside the bucket, its
 * statements name the bucket by `Fn::GetAtt` whichever stack attaches it, so its acknowledgement is stable.
 */
export function bucketAccessPolicy(bucket: IBucket, access: BucketAccess): ManagedPolicy {
  const id = POLICY_IDS[access];
  const existing = bucket.node.tryFindChild(id);
  if (existing) return existing as ManagedPolicy;
  const policy = new ManagedPolicy(bucket, id, {
    description: `${access} access to the objects of ${bucket.node.id}`,
    statements: [
      new PolicyStatement({
        actions: [...BUCKET_OBJECT_ACTIONS[access]],
        resources: [bucket.arnForObjects("*")],
      }),
      ...(access === "readWrite"
        ? [new PolicyStatement({ actions: ["s3:ListBucket"], resources: [bucket.bucketArn] })]
        : []),
    ],
  });
  const bucketId = Stack.of(bucket).resolve((bucket.node.defaultChild as CfnBucket).logicalId);
  Validations.of(policy).acknowledge({
    id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/*]`,
    reason:
      `${bucket.node.id} object keys are per tenant and job, made at run time, so ${access} access covers ` +
      `the bucket's objects; the actions are only ${BUCKET_OBJECT_ACTIONS[access].join(", ")}`,
  });
  return policy;
}

/** Grants a bucket access to a role (a function's, the GPU task's) through `bucketAccessPolicy`. */
export function grantBucket(role: IRole, bucket: IBucket, access: BucketAccess): void {
  role.addManagedPolicy(bucketAccessPolicy(bucket, access));
}

/** Sets `<variable>` to the bucket's name and grants the access together. */
export function bindBucket(
  target: HouseFunction,
  bucket: IBucket,
  variable: "INPUTS_BUCKET" | "OUTPUTS_BUCKET",
  access: BucketAccess,
): void {
  target.function.addEnvironment(variable, bucket.bucketName);
  grantBucket(target.role, bucket, access);
}

/** Sets EVENT_BUS_NAME and grants events:PutEvents on that bus only. */
export function bindEventBus(target: Bindable, bus: IEventBus): void {
  const fn = fnOf(target);
  fn.addEnvironment("EVENT_BUS_NAME", bus.eventBusName);
  bus.grantPutEventsTo(fn);
}
