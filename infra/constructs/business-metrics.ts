import { Duration } from "aws-cdk-lib";
import {
  Alarm,
  ComparisonOperator,
  GraphWidget,
  type IAlarmAction,
  type IWidget,
  MathExpression,
  Metric,
  SingleValueWidget,
  TreatMissingData,
} from "aws-cdk-lib/aws-cloudwatch";
import { Construct } from "constructs";
import { METRIC_CATALOG, type MetricDimension, type MetricName } from "../../shared/ports/metrics.ts";
import type { InfraConfig } from "../config.ts";

/** The runbook of every alarm here: its section is named in the alarm's description. */
export const RUNBOOK = "docs/operations.md";

export interface BusinessMetricsProps {
  config: Pick<
    InfraConfig,
    | "stage"
    | "metricsNamespace"
    | "alarmFailureRatePercent"
    | "alarmFailureRateMinJobs"
    | "alarmOldestWaitingSeconds"
    | "alarmLowUtilisationPercent"
    | "alarmLowUtilisationMinutes"
    | "alarmBreakerOpenMinutes"
    | "alarmDeadLetteredNotifications"
  >;
  /** Every provider of the deployment, and whether it has a circuit breaker. */
  providers: readonly { id: string; breaker: boolean }[];
  alarmAction: IAlarmAction;
}

const MINUTE = Duration.minutes(1);
const FIVE_MINUTES = Duration.minutes(5);

/**
 * The business metrics the functions write as EMF (shared/ports/metrics.ts) as CloudWatch sees them,
 * the alarms that mean something to an operator (each with its runbook section in docs/operations.md),
 * and the dashboard rows that show them.
 */
export class BusinessMetrics extends Construct {
  readonly alarms: Record<string, Alarm> = {};
  private readonly props: BusinessMetricsProps;

  constructor(scope: Construct, id: string, props: BusinessMetricsProps) {
    super(scope, id);
    this.props = props;
    const { config } = props;

    const succeeded = this.metric("Jobs", { outcome: "succeeded" }, "Sum", FIVE_MINUTES);
    const failed = this.metric("Jobs", { outcome: "failed" }, "Sum", FIVE_MINUTES);
    this.alarm("JobFailureRate", "Job failure rate", {
      metric: new MathExpression({
        // Missing data is a quiet period (no jobs), and a period with fewer jobs than the minimum is no rate.
        expression: `IF((FILL(s, 0) + FILL(f, 0)) >= ${config.alarmFailureRateMinJobs}, 100 * FILL(f, 0) / (FILL(s, 0) + FILL(f, 0)), 0)`,
        usingMetrics: { s: succeeded, f: failed },
        period: FIVE_MINUTES,
        label: "Failed jobs (%)",
      }),
      threshold: config.alarmFailureRatePercent,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      description: `More than ${config.alarmFailureRatePercent}% of the jobs that ended in 5 minutes failed (at least ${config.alarmFailureRateMinJobs} ended).`,
    });

    this.alarm("OldestWaitingJob", "Oldest waiting job", {
      metric: this.metric("OldestWaitingAge", {}, "Maximum", MINUTE),
      threshold: config.alarmOldestWaitingSeconds,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      description: `A job has waited more than ${config.alarmOldestWaitingSeconds} s for a provider slot.`,
    });

    for (const provider of props.providers) {
      const slug = pascal(provider.id);
      this.alarm(`${slug}AdmissionStuck`, "Admission stuck", {
        metric: new MathExpression({
          expression: `IF(w > 0 AND u < ${config.alarmLowUtilisationPercent}, 1, 0)`,
          usingMetrics: {
            w: this.metric("WaitingJobs", { provider: provider.id }, "Minimum", MINUTE),
            u: this.metric("SlotUtilisation", { provider: provider.id }, "Maximum", MINUTE),
          },
          period: MINUTE,
          label: `${provider.id}: jobs wait while slots are free`,
        }),
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: config.alarmLowUtilisationMinutes,
        description: `${provider.id}: jobs wait for a slot while fewer than ${config.alarmLowUtilisationPercent}% of its slots are in use, for ${config.alarmLowUtilisationMinutes} minutes.`,
      });
      if (provider.breaker) {
        this.alarm(`${slug}BreakerOpen`, "Circuit breaker open", {
          metric: this.metric("BreakerOpen", { provider: provider.id }, "Minimum", MINUTE),
          threshold: 1,
          comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          evaluationPeriods: config.alarmBreakerOpenMinutes,
          description: `${provider.id}'s circuit breaker has stayed open for ${config.alarmBreakerOpenMinutes} minutes.`,
        });
      }
    }

    this.alarm("NotificationsDeadLettered", "Notifications dead-lettered", {
      metric: this.metric("Notifications", { outcome: "dead_lettered" }, "Sum", FIVE_MINUTES),
      threshold: config.alarmDeadLetteredNotifications,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      description: `At least ${config.alarmDeadLetteredNotifications} webhook notification(s) exhausted every try in 5 minutes.`,
    });
  }

  /** One business metric of this stage, by its catalog name and the dimensions besides the stage. */
  metric(
    name: MetricName,
    dims: Partial<Record<MetricDimension, string>>,
    statistic: string,
    period: Duration = MINUTE,
    label?: string,
  ): Metric {
    const spec = METRIC_CATALOG[name];
    const keys = Object.keys(dims).sort();
    const published = spec.dimensionSets.some((set) => [...set].sort().join() === keys.join());
    if (!published)
      throw new Error(`${name} is not published under the dimensions ${keys.join(", ") || "(stage only)"}`);
    return new Metric({
      namespace: this.props.config.metricsNamespace,
      metricName: name,
      dimensionsMap: { stage: this.props.config.stage, ...dims },
      statistic,
      period,
      ...(label && { label }),
    });
  }

  private alarm(
    id: string,
    section: string,
    options: {
      metric: Metric | MathExpression;
      threshold: number;
      comparisonOperator: ComparisonOperator;
      evaluationPeriods: number;
      description: string;
    },
  ): void {
    const alarm = new Alarm(this, `${id}Alarm`, {
      metric: options.metric,
      threshold: options.threshold,
      comparisonOperator: options.comparisonOperator,
      evaluationPeriods: options.evaluationPeriods,
      // No data: no jobs ended, none waits, the reconciler sampled nothing: nothing to alarm on.
      treatMissingData: TreatMissingData.NOT_BREACHING,
      alarmDescription: `${options.description} Runbook: ${RUNBOOK}, "${section}".`,
    });
    alarm.addAlarmAction(this.props.alarmAction);
    this.alarms[id] = alarm;
  }

  /** The dashboard rows: outcomes and failures, times, slots and waiting, routing and deliveries. */
  widgets(): IWidget[][] {
    const { config, providers } = this.props;
    const byProvider = (
      name: MetricName,
      statistic: string,
      extra: Partial<Record<MetricDimension, string>> = {},
    ) => providers.map((p) => this.metric(name, { provider: p.id, ...extra }, statistic, MINUTE, p.id));
    const search = (dimensions: string, name: MetricName, statistic: string, label: string) =>
      new MathExpression({
        expression: `SEARCH('{${config.metricsNamespace},${dimensions}} MetricName="${name}" stage="${config.stage}"', '${statistic}', 300)`,
        label,
        period: FIVE_MINUTES,
      });
    return [
      [
        new GraphWidget({
          title: "Jobs ended, by outcome",
          left: ["succeeded", "failed", "cancelled"].map((outcome) =>
            this.metric("Jobs", { outcome }, "Sum", FIVE_MINUTES, outcome),
          ),
          width: 8,
        }),
        new GraphWidget({
          title: "Failed jobs, by error code",
          left: [search("stage,outcome,code", "Jobs", "Sum", "")],
          width: 8,
        }),
        new GraphWidget({
          title: "Failure rate (%), as its alarm computes it",
          left: [this.alarms.JobFailureRate?.metric as MathExpression],
          leftAnnotations: [{ value: config.alarmFailureRatePercent, label: "alarm" }],
          width: 8,
        }),
      ],
      [
        new GraphWidget({
          title: "End-to-end time p50 / p99 (ms)",
          left: [
            this.metric("EndToEndTime", {}, "p50", FIVE_MINUTES, "p50"),
            this.metric("EndToEndTime", {}, "p99", FIVE_MINUTES, "p99"),
          ],
          width: 6,
        }),
        new GraphWidget({
          title: "Provider submit latency p99 (ms)",
          left: byProvider("ProviderSubmitLatency", "p99"),
          width: 6,
        }),
        new GraphWidget({
          title: "Time waiting for a slot p99 (ms)",
          left: byProvider("SlotWait", "p99"),
          width: 6,
        }),
        new GraphWidget({
          title: "Time at the provider / storing p50 (ms)",
          left: byProvider("ProviderTime", "p50"),
          right: byProvider("StoringTime", "p50"),
          width: 6,
        }),
      ],
      [
        new GraphWidget({
          title: "Slot utilisation (%) and waiting jobs",
          left: byProvider("SlotUtilisation", "Maximum"),
          right: byProvider("WaitingJobs", "Maximum"),
          leftAnnotations: [{ value: config.alarmLowUtilisationPercent, label: "admission-stuck floor" }],
          width: 8,
        }),
        new GraphWidget({
          title: "Oldest waiting job (s)",
          left: [this.metric("OldestWaitingAge", {}, "Maximum", MINUTE, "oldest")],
          leftAnnotations: [{ value: config.alarmOldestWaitingSeconds, label: "alarm" }],
          width: 8,
        }),
        new SingleValueWidget({
          title: "Breaker open (1) / closed (0)",
          metrics: providers
            .filter((p) => p.breaker)
            .map((p) => this.metric("BreakerOpen", { provider: p.id }, "Maximum", MINUTE, p.id)),
          width: 8,
        }),
      ],
      [
        new GraphWidget({
          title: "Fallback routings",
          left: byProvider("FallbackRoutings", "Sum"),
          width: 8,
        }),
        new GraphWidget({
          title: "Webhook tries, by outcome",
          left: ["delivered", "retried", "gone", "dead_lettered"].map((outcome) =>
            this.metric("Notifications", { outcome }, "Sum", FIVE_MINUTES, outcome),
          ),
          width: 8,
        }),
        new GraphWidget({
          title: "Output bytes stored",
          left: byProvider("OutputBytes", "Sum"),
          width: 8,
        }),
      ],
    ];
  }
}

const pascal = (id: string): string =>
  id
    .split(/[^A-Za-z0-9]+/)
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1))
    .join("");
