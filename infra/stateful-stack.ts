import { RemovalPolicy, type StackProps, Validations } from "aws-cdk-lib";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import { AttributeType, BillingMode, ProjectionType, Table } from "aws-cdk-lib/aws-dynamodb";
import { Secret } from "aws-cdk-lib/aws-secretsmanager";
import { Topic } from "aws-cdk-lib/aws-sns";
import { EmailSubscription } from "aws-cdk-lib/aws-sns-subscriptions";
import type { Queue } from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import { INDEXES, TABLE_KEYS, TTL_ATTRIBUTE } from "../shared/adapters/dynamo/table-design.ts";
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
 * and alarms, the alarm topic, and the provider secrets. Kept apart from the service stack so replacing functions or the API never
 * touches data. In `prod` all of it is retained and the table is deletion-protected.
 */
export class StatefulStack extends ReadableStack {
  readonly table: Table;
  readonly queues: Record<QueueName, Queue>;
  readonly deadLetterQueues: Record<QueueName, Queue>;
  /** Each queue with its DLQ and alarms. */
  readonly queueSets: Record<QueueName, QueueWithDlq>;
  /** Every alarm of the app notifies this topic (and the `alarmEmail` subscription when configured). */
  readonly alarmTopic: Topic;
  /** ModelsLab API key (operators put the real value; the generated one is a placeholder). */
  readonly modelslabApiKey: Secret;
  /** Key of the per-job HMAC tokens in callback URLs. */
  readonly callbackSecret: Secret;

  constructor(scope: Construct, id: string, props: StatefulStackProps) {
    super(scope, id, props);
    const prod = isProduction(props.config);
    const removalPolicy = prod ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    const functions = props.functions ?? FUNCTIONS;

    this.table = new Table(this, "JobsTable", {
      partitionKey: { name: TABLE_KEYS.partitionKey, type: AttributeType.STRING },
      sortKey: { name: TABLE_KEYS.sortKey, type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TTL_ATTRIBUTE,
      deletionProtection: prod,
      removalPolicy,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: INDEXES.byTenant.name,
      partitionKey: { name: INDEXES.byTenant.partitionKey, type: AttributeType.STRING },
      sortKey: { name: INDEXES.byTenant.sortKey, type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: INDEXES.byTenantStatus.name,
      partitionKey: { name: INDEXES.byTenantStatus.partitionKey, type: AttributeType.STRING },
      sortKey: { name: INDEXES.byTenantStatus.sortKey, type: AttributeType.STRING },
      projectionType: ProjectionType.ALL,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: INDEXES.due.name,
      partitionKey: { name: INDEXES.due.partitionKey, type: AttributeType.STRING },
      // Epoch seconds: a number so the reconciler's `dueAt <= now` range query orders numerically.
      sortKey: { name: INDEXES.due.sortKey, type: AttributeType.NUMBER },
      projectionType: ProjectionType.ALL,
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

    this.modelslabApiKey = new Secret(this, "ModelslabApiKeySecret", {
      description: `ModelsLab API key (${props.config.stage}); put the real value after the first deploy`,
      removalPolicy,
    });
    this.callbackSecret = new Secret(this, "CallbackSecret", {
      description: `HMAC key of per-job callback tokens (${props.config.stage})`,
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
      removalPolicy,
    });
  }
}

const mapRecord = <K extends string, A, B>(record: Record<K, A>, f: (value: A) => B): Record<K, B> =>
  Object.fromEntries(Object.entries(record).map(([key, value]) => [key, f(value as A)])) as Record<K, B>;
