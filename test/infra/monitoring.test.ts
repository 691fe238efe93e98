import { Match, Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../infra/build-app.ts";
import { InfraConfigError } from "../../infra/config.ts";
import { FUNCTIONS, QUEUES } from "../../infra/functions.ts";
import { only, refTarget, resources, TEST_CONTEXT } from "./support.ts";

let stateful: Template;
let service: Template;

beforeAll(() => {
  const { stacks } = buildApp({
    skipBundling: true,
    context: { ...TEST_CONTEXT, alarmEmail: "ops@example.com" },
  });
  stateful = Template.fromStack(stacks.stateful);
  service = Template.fromStack(stacks.service);
});

type AlarmProps = {
  MetricName: string;
  Namespace: string;
  Dimensions: Array<{ Name: string; Value: unknown }>;
  Threshold: number;
  ComparisonOperator: string;
  AlarmActions: unknown[];
  TreatMissingData: string;
};
const alarmsOf = (template: Template) =>
  Object.values(resources(template, "AWS::CloudWatch::Alarm")).map(
    (alarm) => alarm.Properties as unknown as AlarmProps,
  );

/** The logical id an alarm's single dimension points at (a queue's Fn::GetAtt QueueName, a function's Ref). */
const dimensionTarget = (alarm: AlarmProps, name: string): string | undefined => {
  const dimension = alarm.Dimensions.find((d) => d.Name === name);
  if (!dimension) return undefined;
  const value = dimension.Value as Record<string, unknown>;
  // Cross-stack: { "Fn::ImportValue": "...:ExportsOutputFnGetAttJobsQueue..." }.
  const imported = value["Fn::ImportValue"];
  if (typeof imported === "string")
    return /(?:Ref|FnGetAtt)([A-Za-z0-9]+?)(?:QueueName)?[0-9A-F]{8}$/.exec(imported)?.[1];
  return refTarget(value);
};

describe("alarm topic", () => {
  it("is TLS-only and has the configured email subscription", () => {
    const [topicId] = only(resources(stateful, "AWS::SNS::Topic"), "alarm topic");
    expect(topicId).toBe("AlarmTopic");
    stateful.hasResourceProperties("AWS::SNS::Subscription", {
      Protocol: "email",
      Endpoint: "ops@example.com",
      TopicArn: { Ref: "AlarmTopic" },
    });
    stateful.hasResourceProperties("AWS::SNS::TopicPolicy", {
      Topics: [{ Ref: "AlarmTopic" }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
        ]),
      },
    });
  });

  it("receives every alarm of both stacks", () => {
    for (const alarm of alarmsOf(stateful)) {
      expect(alarm.AlarmActions).toEqual([{ Ref: "AlarmTopic" }]);
    }
    for (const alarm of alarmsOf(service)) {
      expect(JSON.stringify(alarm.AlarmActions)).toMatch(/AlarmTopic/);
    }
  });
});

describe("queue alarms", () => {
  it("alarms on any message in every dead-letter queue", () => {
    const dlqs = Object.keys(resources(stateful, "AWS::SQS::Queue")).filter((id) => id.endsWith("Dlq"));
    expect(dlqs.sort()).toEqual(
      Object.values(QUEUES)
        .map((q) => `${q.id}Dlq`)
        .sort(),
    );
    for (const dlq of dlqs) {
      const alarm = alarmsOf(stateful).find(
        (a) =>
          a.MetricName === "ApproximateNumberOfMessagesVisible" &&
          refTarget(a.Dimensions[0]?.Value as { "Fn::GetAtt": unknown }) === dlq,
      );
      expect(alarm, dlq).toMatchObject({
        Namespace: "AWS/SQS",
        Threshold: 1,
        ComparisonOperator: "GreaterThanOrEqualToThreshold",
        TreatMissingData: "notBreaching",
      });
    }
  });

  it("alarms on the age of the oldest message of every work queue", () => {
    for (const spec of Object.values(QUEUES)) {
      const alarm = alarmsOf(stateful).find(
        (a) =>
          a.MetricName === "ApproximateAgeOfOldestMessage" &&
          refTarget(a.Dimensions[0]?.Value) === `${spec.id}Queue`,
      );
      expect(alarm, spec.id).toMatchObject({
        Namespace: "AWS/SQS",
        Threshold: spec.maxMessageAge.toSeconds(),
        ComparisonOperator: "GreaterThanOrEqualToThreshold",
      });
    }
  });
});

describe("function alarms and dashboard", () => {
  it("alarms on errors and throttles of every function", () => {
    for (const spec of FUNCTIONS) {
      for (const metric of ["Errors", "Throttles"]) {
        const alarm = alarmsOf(service).find(
          (a) =>
            a.MetricName === metric &&
            a.Namespace === "AWS/Lambda" &&
            dimensionTarget(a, "FunctionName") === `${spec.id}Function`,
        );
        expect(alarm, `${spec.id} ${metric}`).toMatchObject({
          Threshold: 1,
          ComparisonOperator: "GreaterThanOrEqualToThreshold",
          TreatMissingData: "notBreaching",
        });
      }
    }
  });

  it("has a dashboard showing every queue, dead-letter queue and function", () => {
    const [, dashboard] = only(resources(service, "AWS::CloudWatch::Dashboard"), "dashboard");
    expect(dashboard.Properties?.DashboardName).toBe("controlnet-orchestrator-dev");
    const body = JSON.stringify(dashboard.Properties?.DashboardBody);
    for (const spec of Object.values(QUEUES)) {
      expect(body, spec.id).toContain(`${spec.id}Queue`);
      expect(body, spec.id).toContain(`${spec.id}Dlq`);
    }
    for (const spec of FUNCTIONS) expect(body, spec.id).toContain(`${spec.id}Function`);
  });
});

describe("business metrics: namespace, alarms and dashboard", () => {
  const businessAlarms = (template: Template) =>
    Object.entries(resources(template, "AWS::CloudWatch::Alarm"))
      .filter(([id]) => id.startsWith("BusinessMetrics"))
      .map(([id, alarm]) => ({ ...(alarm.Properties as Record<string, any>), id }) as Record<string, any>);
  const alarm = (template: Template, name: string) => {
    const found = businessAlarms(template).find((a) => a.id.startsWith(`BusinessMetrics${name}Alarm`));
    if (!found) throw new Error(`no ${name} alarm`);
    return found as Record<string, any>;
  };
  /** The metric stats of an alarm on one metric, or of each metric of an alarm on an expression. */
  const metricsOf = (a: Record<string, any>) =>
    a.Metrics
      ? a.Metrics.filter((m: any) => m.MetricStat).map((m: any) => m.MetricStat.Metric)
      : [{ Namespace: a.Namespace, MetricName: a.MetricName, Dimensions: a.Dimensions }];

  it("gives every function the metrics' namespace and stage, from configuration", () => {
    const { stacks } = buildApp({
      skipBundling: true,
      context: { ...TEST_CONTEXT, metricsNamespace: "Acme/Jobs", stage: "qa" },
    });
    const functions = Object.values(resources(Template.fromStack(stacks.service), "AWS::Lambda::Function"));
    const ours = functions.filter((fn) => JSON.stringify(fn.Properties).includes("POWERTOOLS_SERVICE_NAME"));
    expect(ours.length).toBe(FUNCTIONS.length);
    for (const fn of ours) {
      const { Environment } = fn.Properties as { Environment: { Variables: Record<string, string> } };
      const variables = Environment.Variables;
      expect(variables).toMatchObject({
        METRICS_NAMESPACE: "Acme/Jobs",
        STAGE: "qa",
        METRICS_TENANT_GAUGES: "false",
      });
    }
  });

  it("alarms on the failure rate, the oldest waiting job, admission stuck, the breaker and dead-lettered notifications, each with its runbook", () => {
    const ids = businessAlarms(service).map((a) => a.id.replace(/Alarm([0-9A-F]{8})?$/, ""));
    expect(ids.sort()).toEqual(
      [
        "BusinessMetricsJobFailureRate",
        "BusinessMetricsOldestWaitingJob",
        "BusinessMetricsModelslabAdmissionStuck",
        "BusinessMetricsSelfHostedAdmissionStuck",
        "BusinessMetricsModelslabBreakerOpen",
        "BusinessMetricsNotificationsDeadLettered",
      ].sort(),
    );
    for (const a of businessAlarms(service)) {
      expect(a.AlarmDescription, a.id).toMatch(/Runbook: docs\/operations\.md, "[^"]+"\./);
      expect(JSON.stringify(a.AlarmActions), a.id).toMatch(/AlarmTopic/);
      expect(a.TreatMissingData, a.id).toBe("notBreaching");
      for (const metric of metricsOf(a)) {
        expect(metric.Namespace, a.id).toBe("ControlNetOrchestrator");
        expect(metric.Dimensions, a.id).toContainEqual({ Name: "stage", Value: "dev" });
      }
    }
    expect(metricsOf(alarm(service, "ModelslabBreakerOpen"))[0]).toMatchObject({
      MetricName: "BreakerOpen",
      Dimensions: expect.arrayContaining([
        { Name: "stage", Value: "dev" },
        { Name: "provider", Value: "modelslab" },
      ]),
    });
  });

  it("takes every alarm's threshold from configuration: changing a value changes the synthesized alarm", () => {
    const synth = (context: Record<string, string>) =>
      Template.fromStack(
        buildApp({ skipBundling: true, context: { ...TEST_CONTEXT, ...context } }).stacks.service,
      );
    const defaults = service;
    const tuned = synth({
      alarmFailureRatePercent: "25",
      alarmFailureRateMinJobs: "50",
      alarmOldestWaitingSeconds: "120",
      alarmLowUtilisationPercent: "30",
      alarmLowUtilisationMinutes: "15",
      alarmBreakerOpenMinutes: "3",
      alarmDeadLetteredNotifications: "5",
    });
    const expression = (a: Record<string, any>) =>
      a.Metrics.find((m: any) => m.Expression)?.Expression as string;

    expect(alarm(defaults, "JobFailureRate").Threshold).toBe(10);
    expect(alarm(tuned, "JobFailureRate").Threshold).toBe(25);
    expect(expression(alarm(defaults, "JobFailureRate"))).toContain(">= 20,");
    expect(expression(alarm(tuned, "JobFailureRate"))).toContain(">= 50,");
    expect(alarm(defaults, "OldestWaitingJob").Threshold).toBe(900);
    expect(alarm(tuned, "OldestWaitingJob").Threshold).toBe(120);
    expect(expression(alarm(defaults, "ModelslabAdmissionStuck"))).toContain("u < 50");
    expect(expression(alarm(tuned, "ModelslabAdmissionStuck"))).toContain("u < 30");
    expect(alarm(defaults, "ModelslabAdmissionStuck").EvaluationPeriods).toBe(10);
    expect(alarm(tuned, "ModelslabAdmissionStuck").EvaluationPeriods).toBe(15);
    expect(alarm(defaults, "ModelslabBreakerOpen").EvaluationPeriods).toBe(5);
    expect(alarm(tuned, "ModelslabBreakerOpen").EvaluationPeriods).toBe(3);
    expect(alarm(defaults, "NotificationsDeadLettered").Threshold).toBe(1);
    expect(alarm(tuned, "NotificationsDeadLettered").Threshold).toBe(5);
  });

  it("refuses a namespace CloudWatch would not take", () => {
    for (const metricsNamespace of ["AWS/Lambda", "has space", "x".repeat(256)]) {
      const build = () => buildApp({ skipBundling: true, context: { ...TEST_CONTEXT, metricsNamespace } });
      expect(build, metricsNamespace).toThrow(InfraConfigError);
    }
  });

  it("shows the business metrics on the operations dashboard beside what it had", () => {
    const [, dashboard] = only(resources(service, "AWS::CloudWatch::Dashboard"), "dashboard");
    const body = JSON.stringify(dashboard.Properties?.DashboardBody);
    expect(body).toContain("ControlNetOrchestrator");
    for (const name of [
      "Jobs",
      "EndToEndTime",
      "ProviderSubmitLatency",
      "SlotWait",
      "ProviderTime",
      "StoringTime",
      "SlotUtilisation",
      "WaitingJobs",
      "OldestWaitingAge",
      "BreakerOpen",
      "FallbackRoutings",
      "Notifications",
      "OutputBytes",
    ]) {
      expect(body, name).toContain(`\\"${name}\\"`);
    }
    expect(body).toContain("ApproximateAgeOfOldestMessage"); // what it had stays
  });
});
