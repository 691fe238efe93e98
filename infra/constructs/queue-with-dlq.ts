import { Duration, type RemovalPolicy, Validations } from "aws-cdk-lib";
import { Alarm, ComparisonOperator, type IAlarmAction, TreatMissingData } from "aws-cdk-lib/aws-cloudwatch";
import { Queue, QueueEncryption } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";

/** Receives after which a message goes to its queue's dead-letter queue. */
export const MAX_RECEIVE_COUNT = 5;
/** Dead letters are kept as long as SQS allows, for an operator to look at and redrive. */
export const DLQ_RETENTION = Duration.days(14);

export interface QueueWithDlqProps {
  /** At least 6× the consumer's timeout (see `visibilityTimeoutFor`); SQS's 30 s default otherwise. */
  visibilityTimeout?: Duration;
  /** The age of the oldest message above which the backlog alarm fires (the consumer is stuck or too slow). */
  maxMessageAge: Duration;
  /** Where both alarms notify (the SNS alarm topic). */
  alarmAction: IAlarmAction;
  removalPolicy: RemovalPolicy;
  maxReceiveCount?: number;
  /** Delay of every message sent to the work queue. */
  deliveryDelay?: Duration;
}

/**
 * The only way this app makes a queue: an SSE-encrypted, TLS-only work queue (`<id>Queue`) with its own
 * dead-letter queue (`<id>Dlq`), an alarm on any message in the DLQ (`<id>DlqAlarm`) and an alarm on the
 * age of the work queue's oldest message (`<id>AgeAlarm`). A queue without its DLQ and alarms cannot be
 * declared by accident.
 */
export class QueueWithDlq extends Construct {
  readonly queue: Queue;
  readonly dlq: Queue;
  readonly dlqAlarm: Alarm;
  readonly ageAlarm: Alarm;

  constructor(scope: Construct, id: string, props: QueueWithDlqProps) {
    super(scope, id);
    this.dlq = new Queue(this, "Dlq", {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: DLQ_RETENTION,
      removalPolicy: props.removalPolicy,
    });
    Validations.of(this.dlq).acknowledge({
      id: "AwsSolutions-SQS3",
      reason: `${id}Dlq is itself the dead-letter queue of ${id}Queue; a DLQ of a DLQ would only hide dead letters`,
    });
    this.queue = new Queue(this, "Queue", {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: props.visibilityTimeout,
      deliveryDelay: props.deliveryDelay,
      deadLetterQueue: { queue: this.dlq, maxReceiveCount: props.maxReceiveCount ?? MAX_RECEIVE_COUNT },
      removalPolicy: props.removalPolicy,
    });

    this.dlqAlarm = new Alarm(this, "DlqAlarm", {
      alarmDescription: `Messages in ${id}Dlq: work that failed ${props.maxReceiveCount ?? MAX_RECEIVE_COUNT} times; inspect and redrive`,
      metric: this.dlq.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(1),
        statistic: "Maximum",
      }),
      threshold: 1,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    this.ageAlarm = new Alarm(this, "AgeAlarm", {
      alarmDescription: `Oldest message in ${id}Queue is older than ${props.maxMessageAge.toHumanString()}: its consumer is stuck or too slow`,
      metric: this.queue.metricApproximateAgeOfOldestMessage({
        period: Duration.minutes(1),
        statistic: "Maximum",
      }),
      threshold: props.maxMessageAge.toSeconds(),
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 3,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    for (const alarm of [this.dlqAlarm, this.ageAlarm]) alarm.addAlarmAction(props.alarmAction);
  }
}
