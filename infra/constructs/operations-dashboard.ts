import { Duration } from "aws-cdk-lib";
import type { IHttpApi } from "aws-cdk-lib/aws-apigatewayv2";
import {
  Dashboard,
  GraphWidget,
  type IWidget,
  Metric,
  SingleValueWidget,
  TextWidget,
} from "aws-cdk-lib/aws-cloudwatch";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import type { HouseFunction } from "./house-function.ts";

export interface OperationsDashboardProps {
  dashboardName: string;
  httpApi: IHttpApi;
  /** Work queues and their dead-letter queues, by short name. */
  queues: Record<string, { queue: IQueue; dlq: IQueue }>;
  functions: Record<string, HouseFunction>;
  /** Extra rows: the business metrics' (jobs, times, slots, routing, deliveries) and the GPU fallback's. */
  extraWidgets?: IWidget[][];
}

const PERIOD = Duration.minutes(1);

/**
 * One CloudWatch dashboard for the service: API traffic and errors, each queue's backlog and the age
 * of its oldest message, dead letters, and each function's invocations, errors, throttles and duration.
 * (The first three dashboards of an account are free; each further one costs $3/month.)
 */
export class OperationsDashboard extends Construct {
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: OperationsDashboardProps) {
    super(scope, id);
    const apiMetric = (metricName: string, statistic: string) =>
      new Metric({
        namespace: "AWS/ApiGateway",
        metricName,
        dimensionsMap: { ApiId: props.httpApi.apiId },
        statistic,
        period: PERIOD,
      });
    const queues = Object.entries(props.queues);
    const functions = Object.entries(props.functions);

    this.dashboard = new Dashboard(this, "Dashboard", {
      dashboardName: props.dashboardName,
      defaultInterval: Duration.hours(3),
    });
    this.dashboard.addWidgets(
      new TextWidget({
        markdown: `# ${props.dashboardName}\nAPI, queues, dead letters and functions of the ControlNet orchestrator; below them, its jobs: outcomes, times, provider slots, routing and webhook deliveries (runbook: docs/operations.md).`,
        width: 24,
        height: 2,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: "API requests and errors",
        left: [apiMetric("Count", "Sum")],
        right: [apiMetric("4xx", "Sum"), apiMetric("5xx", "Sum")],
        width: 12,
      }),
      new GraphWidget({
        title: "API latency (p50, p99)",
        left: [apiMetric("Latency", "p50"), apiMetric("Latency", "p99")],
        width: 12,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: "Queue backlog (visible messages)",
        left: queues.map(([name, { queue }]) =>
          queue.metricApproximateNumberOfMessagesVisible({
            period: PERIOD,
            statistic: "Maximum",
            label: name,
          }),
        ),
        width: 8,
      }),
      new GraphWidget({
        title: "Age of oldest message (s)",
        left: queues.map(([name, { queue }]) =>
          queue.metricApproximateAgeOfOldestMessage({ period: PERIOD, statistic: "Maximum", label: name }),
        ),
        width: 8,
      }),
      new SingleValueWidget({
        title: "Dead letters",
        metrics: queues.map(([name, { dlq }]) =>
          dlq.metricApproximateNumberOfMessagesVisible({
            period: PERIOD,
            statistic: "Maximum",
            label: `${name} DLQ`,
          }),
        ),
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({
        title: "Function invocations",
        left: functions.map(([name, fn]) =>
          fn.function.metricInvocations({ period: PERIOD, statistic: "Sum", label: name }),
        ),
        width: 6,
      }),
      new GraphWidget({
        title: "Function errors",
        left: functions.map(([name, fn]) =>
          fn.function.metricErrors({ period: PERIOD, statistic: "Sum", label: name }),
        ),
        width: 6,
      }),
      new GraphWidget({
        title: "Function throttles",
        left: functions.map(([name, fn]) =>
          fn.function.metricThrottles({ period: PERIOD, statistic: "Sum", label: name }),
        ),
        width: 6,
      }),
      new GraphWidget({
        title: "Function duration p99 (ms)",
        left: functions.map(([name, fn]) =>
          fn.function.metricDuration({ period: PERIOD, statistic: "p99", label: name }),
        ),
        width: 6,
      }),
    );
    for (const row of props.extraWidgets ?? []) this.dashboard.addWidgets(...row);
  }
}
