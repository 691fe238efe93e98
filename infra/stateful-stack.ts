import { Duration, RemovalPolicy, type StackProps, Validations } from "aws-cdk-lib";
import { Alarm, ComparisonOperator, TreatMissingData } from "aws-cdk-lib/aws-cloudwatch";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import { AttributeType, BillingMode, Operation, ProjectionType, Table } from "aws-cdk-lib/aws-dynamodb";
import { EventBus } from "aws-cdk-lib/aws-events";
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  type LifecycleRule,
  ObjectOwnership,
  StorageClass,
} from "aws-cdk-lib/aws-s3";
import { Secret } from "aws-cdk-lib/aws-secretsmanager";
import { Topic } from "aws-cdk-lib/aws-sns";
import { EmailSubscription } from "aws-cdk-lib/aws-sns-subscriptions";
import type { Queue } from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import {
  INDEXES,
  type IndexProjection,
  TABLE_KEYS,
  TTL_ATTRIBUTE,
} from "../shared/adapters/dynamo/table-design.ts";
import { type InfraConfig, isProduction } from "./config.ts";
import { QueueWithDlq } from "./constructs/queue-with-dlq.ts";
import { ReadableStack } from "./constructs/readable-stack.ts";
import {
  FUNCTIONS,
  type FunctionSpec,
  QUEUE_NAMES,
  QUEUES,
  type QueueName,
  visibilityTimeoutFor,
} from "./functions.ts";

export interface StatefulStackProps extends StackProps {
  config: InfraConfig;
  /** The function table whose consumers size the queues' visibility timeouts. */
  functions?: readonly FunctionSpec[];
}

/**
 * Everything that holds state: the single table, the work queues each with its own dead-letter queue
 * and alarms, the buckets, the event bus, the alarm topic, and the provider secrets. Kept apart from
 * the service stack so replacing functions or the API never touches data. In `prod` all of it is
 * retained and the table is deletion-protected (buckets are retained in every stage).
 */
export class StatefulStack extends ReadableStack {
  readonly table: Table;
  readonly queues: Record<QueueName, Queue>;
  readonly deadLetterQueues: Record<QueueName, Queue>;
  /** Each queue with its DLQ and alarms. */
  readonly queueSets: Record<QueueName, QueueWithDlq>;
  /** Every alarm of the app notifies this topic (and the `alarmEmail` subscription when configured). */
  readonly alarmTopic: Topic;
  /** Control images clients upload (presigned PUTs); expire after `inputsExpireDays`. */
  readonly inputsBucket: Bucket;
  /** Generated images; move to Standard-IA and expire per context. */
  readonly outputsBucket: Bucket;
  /** Server access logs of the other two buckets. */
  readonly accessLogsBucket: Bucket;
  /** Job lifecycle events (`controlnet-<stage>`); clients' rules subscribe to it. */
  readonly eventBus: EventBus;
  /** ModelsLab API key (operators put the real value; the generated one is a placeholder). */
  readonly modelslabApiKey: Secret;
  /** Key of the per-job HMAC tokens in callback URLs. */
  readonly callbackSecret: Secret;

  constructor(scope: Construct, id: string, props: StatefulStackProps) {
    super(scope, id, props);
    const prod = isProduction(props.config);
    const removalPolicy = prod ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    const functions = props.functions ?? FUNCTIONS;

    const config = props.config;
    const provisioned = config.tableBilling === "provisioned";
    // Provisioned: start at the floor; target tracking raises it (the table keeps up to 5 minutes of
    // unused capacity as burst meanwhile).
    const capacity = provisioned
      ? { readCapacity: config.tableMinReadCapacity, writeCapacity: config.tableMinWriteCapacity }
      : {};
    this.table = new Table(this, "JobsTable", {
      partitionKey: { name: TABLE_KEYS.partitionKey, type: AttributeType.STRING },
      sortKey: { name: TABLE_KEYS.sortKey, type: AttributeType.STRING },
      billingMode: provisioned ? BillingMode.PROVISIONED : BillingMode.PAY_PER_REQUEST,
      ...capacity,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TTL_ATTRIBUTE,
      deletionProtection: prod,
      removalPolicy,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: INDEXES.byTenantStatus.name,
      partitionKey: { name: INDEXES.byTenantStatus.partitionKey, type: AttributeType.STRING },
      sortKey: { name: INDEXES.byTenantStatus.sortKey, type: AttributeType.STRING },
      ...cdkProjection(INDEXES.byTenantStatus.projection),
      ...capacity,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: INDEXES.due.name,
      partitionKey: { name: INDEXES.due.partitionKey, type: AttributeType.STRING },
      // Epoch ms: a number so the reconciler's `wakeAt <= now` range query orders numerically.
      sortKey: { name: INDEXES.due.sortKey, type: AttributeType.NUMBER },
      ...cdkProjection(INDEXES.due.projection),
      ...capacity,
    });

    this.alarmTopic = new Topic(this, "AlarmTopic", {
      displayName: `ControlNet orchestrator alarms (${props.config.stage})`,
      enforceSSL: true,
    });
    Validations.of(this.alarmTopic).acknowledge({
      id: "AwsSolutions-SNS2",
      reason:
        "AlarmTopic carries only CloudWatch alarm state changes (alarm names, metric values), no job data; " +
        "CloudWatch cannot publish to a topic under the AWS-managed SNS key, and a customer managed key " +
        "would cost $1/month while idle",
    });
    if (props.config.alarmEmail) {
      this.alarmTopic.addSubscription(new EmailSubscription(props.config.alarmEmail));
    }
    const alarmAction = new SnsAction(this.alarmTopic);
    if (provisioned) this.scaleProvisionedCapacity(config, alarmAction);

    const queues = {} as Record<QueueName, QueueWithDlq>;
    for (const name of QUEUE_NAMES) {
      const spec = QUEUES[name];
      queues[name] = new QueueWithDlq(this, spec.id, {
        visibilityTimeout: visibilityTimeoutFor(name, functions) ?? spec.visibilityTimeout,
        maxMessageAge: spec.maxMessageAge,
        alarmAction,
        removalPolicy,
      });
    }
    this.queueSets = queues;
    this.queues = mapRecord(queues, (set) => set.queue);
    this.deadLetterQueues = mapRecord(queues, (set) => set.dlq);

    // Buckets outlive the stacks in every stage: CloudFormation cannot delete a bucket that holds
    // objects, and emptying one needs a custom-resource Lambda. `cdk destroy` leaves them (docs/deploy.md).
    const bucketDefaults = {
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: RemovalPolicy.RETAIN,
    } as const;
    const abortUploads: LifecycleRule = {
      id: "abort-incomplete-multipart-uploads",
      abortIncompleteMultipartUploadAfter: Duration.days(1),
    };
    this.accessLogsBucket = new Bucket(this, "AccessLogsBucket", {
      ...bucketDefaults,
      lifecycleRules: [
        { id: "expire-logs", expiration: Duration.days(config.accessLogsExpireDays) },
        abortUploads,
      ],
    });
    Validations.of(this.accessLogsBucket).acknowledge({
      id: "AwsSolutions-S1",
      reason:
        "AccessLogsBucket is the target of the inputs and outputs buckets' server access logs; logging " +
        "its own accesses into itself would log forever",
    });
    this.inputsBucket = new Bucket(this, "InputsBucket", {
      ...bucketDefaults,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: "inputs/",
      lifecycleRules: [
        { id: "expire-inputs", expiration: Duration.days(config.inputsExpireDays) },
        abortUploads,
      ],
    });
    this.outputsBucket = new Bucket(this, "OutputsBucket", {
      ...bucketDefaults,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: "outputs/",
      lifecycleRules: [
        {
          id: "age-outputs",
          ...(config.outputsInfrequentAccessDays > 0 && {
            transitions: [
              {
                storageClass: StorageClass.INFREQUENT_ACCESS,
                transitionAfter: Duration.days(config.outputsInfrequentAccessDays),
              },
            ],
          }),
          ...(config.outputsExpireDays > 0 && { expiration: Duration.days(config.outputsExpireDays) }),
        },
        abortUploads,
      ].filter((rule) => rule.transitions || rule.expiration || rule.abortIncompleteMultipartUploadAfter),
    });

    this.eventBus = new EventBus(this, "EventBus", {
      eventBusName: `controlnet-${config.stage}`,
      description: "ControlNet orchestrator job lifecycle events",
    });

    this.modelslabApiKey = new Secret(this, "ModelslabApiKeySecret", {
      description: `ModelsLab API key (${props.config.stage}); put the real value after the first deploy`,
      removalPolicy,
    });
    this.callbackSecret = new Secret(this, "CallbackSecret", {
      description: `HMAC key of per-job callback tokens (${props.config.stage})`,
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
      removalPolicy,
    });
    Validations.of(this.modelslabApiKey).acknowledge({
      id: "AwsSolutions-SMG4",
      reason:
        "ModelslabApiKeySecret holds a key issued by ModelsLab's dashboard; no API exists to rotate it, so " +
        "operators rotate it by hand with put-secret-value (docs/deploy.md)",
    });
    Validations.of(this.callbackSecret).acknowledge({
      id: "AwsSolutions-SMG4",
      reason:
        "CallbackSecret signs the tokens inside callback URLs already handed to ModelsLab for in-flight jobs; " +
        "rotating it automatically would make their callbacks fail verification (reconcile would recover " +
        "them late), so it is rotated deliberately between deployments",
    });
  }

  /**
   * Target-tracking autoscaling of the table and every index (an index short of write capacity
   * throttles the table's writes too), and an alarm when requests are throttled anyway: the SDK and
   * the queues retry them, but sustained throttling means the limits or the maximum are too low.
   */
  private scaleProvisionedCapacity(config: InfraConfig, alarmAction: SnsAction): void {
    const target = { targetUtilizationPercent: config.tableTargetUtilization };
    const reads = { minCapacity: config.tableMinReadCapacity, maxCapacity: config.tableMaxReadCapacity };
    const writes = { minCapacity: config.tableMinWriteCapacity, maxCapacity: config.tableMaxWriteCapacity };
    this.table.autoScaleReadCapacity(reads).scaleOnUtilization(target);
    this.table.autoScaleWriteCapacity(writes).scaleOnUtilization(target);
    for (const index of Object.values(INDEXES)) {
      this.table.autoScaleGlobalSecondaryIndexReadCapacity(index.name, reads).scaleOnUtilization(target);
      this.table.autoScaleGlobalSecondaryIndexWriteCapacity(index.name, writes).scaleOnUtilization(target);
    }
    const throttled = new Alarm(this, "JobsTableThrottleAlarm", {
      alarmDescription:
        "JobsTable requests throttled for 3 minutes: provisioned capacity (or its autoscaling maximum) is too low for the load",
      metric: this.table.metricThrottledRequestsForOperations({
        operations: [
          Operation.GET_ITEM,
          Operation.BATCH_GET_ITEM,
          Operation.QUERY,
          Operation.PUT_ITEM,
          Operation.UPDATE_ITEM,
          Operation.TRANSACT_WRITE_ITEMS,
        ],
        period: Duration.minutes(1),
      }),
      threshold: 1,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 3,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    throttled.addAlarmAction(alarmAction);
  }
}

const mapRecord = <K extends string, A, B>(record: Record<K, A>, f: (value: A) => B): Record<K, B> =>
  Object.fromEntries(Object.entries(record).map(([key, value]) => [key, f(value as A)])) as Record<K, B>;

/** An index's projection (table-design.ts) as the CDK's GSI props. */
function cdkProjection(projection: IndexProjection): {
  projectionType: ProjectionType;
  nonKeyAttributes?: string[];
} {
  return projection.type === "INCLUDE"
    ? { projectionType: ProjectionType.INCLUDE, nonKeyAttributes: [...projection.nonKeyAttributes] }
    : { projectionType: ProjectionType.KEYS_ONLY };
}
