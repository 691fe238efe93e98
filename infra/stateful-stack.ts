import { Duration, RemovalPolicy, type StackProps } from "aws-cdk-lib";
import { AttributeType, BillingMode, ProjectionType, Table } from "aws-cdk-lib/aws-dynamodb";
import { Secret } from "aws-cdk-lib/aws-secretsmanager";
import { Queue, QueueEncryption } from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import { INDEXES, TABLE_KEYS, TTL_ATTRIBUTE } from "../shared/adapters/dynamo/table-design.ts";
import { type InfraConfig, isProduction } from "./config.ts";
import { ReadableStack } from "./constructs/readable-stack.ts";
import { FUNCTIONS, type FunctionSpec, type QueueName, visibilityTimeoutFor } from "./functions.ts";

export interface StatefulStackProps extends StackProps {
  config: InfraConfig;
  /** The function table whose consumers size the queues' visibility timeouts. */
  functions?: readonly FunctionSpec[];
}

/** Receives after which a message goes to its queue's dead-letter queue. */
export const MAX_RECEIVE_COUNT = 5;
export const DLQ_RETENTION = Duration.days(14);

/**
 * Everything that holds state: the single table, the work queues each with its own dead-letter queue,
 * and the provider secrets. Kept apart from the service stack so replacing functions or the API never
 * touches data. In `prod` all of it is retained and the table is deletion-protected.
 */
export class StatefulStack extends ReadableStack {
  readonly table: Table;
  readonly queues: Record<QueueName, Queue>;
  readonly deadLetterQueues: Record<QueueName, Queue>;
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

    const jobs = this.workQueue("Jobs", "jobs", functions, removalPolicy);
    const results = this.workQueue("Results", "results", functions, removalPolicy);
    this.queues = { jobs: jobs.queue, results: results.queue };
    this.deadLetterQueues = { jobs: jobs.dlq, results: results.dlq };

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

  /** `<name>Queue` with its own `<name>Dlq`; visibility from the consumer's timeout in the function table. */
  private workQueue(
    name: string,
    queue: QueueName,
    functions: readonly FunctionSpec[],
    removalPolicy: RemovalPolicy,
  ): { queue: Queue; dlq: Queue } {
    const dlq = new Queue(this, `${name}Dlq`, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: DLQ_RETENTION,
      removalPolicy,
    });
    const work = new Queue(this, `${name}Queue`, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: visibilityTimeoutFor(queue, functions),
      deadLetterQueue: { queue: dlq, maxReceiveCount: MAX_RECEIVE_COUNT },
      removalPolicy,
    });
    return { queue: work, dlq };
  }
}
