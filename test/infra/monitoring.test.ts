import { Match, Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../../infra/build-app.ts";
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
