import { DescribeTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { Duration, RemovalPolicy } from "aws-cdk-lib";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueWithDlq } from "../../infra/constructs/queue-with-dlq.ts";
import { FUNCTIONS } from "../../infra/functions.ts";
import {
  type CfnTemplate,
  type LocalTopology,
  provisionLocal,
  synthesizeTemplates,
} from "../../local/template.ts";
import { INDEXES } from "../../shared/adapters/dynamo/table-design.ts";
import { type Emulators, startEmulators } from "../support/emulators.ts";

const REGION = "us-east-1";
const credentials = { accessKeyId: "local", secretAccessKey: "local" };

// On moto's shared server the "t-" names are this file's alone: the local stack's names have other prefixes.
let emulators: Emulators;
let endpoints: { dynamodb: string; sqs: string; region: string };
let templates: Record<string, CfnTemplate>;
let topology: LocalTopology;
let dynamodbClient: DynamoDBClient;
let sqsClient: SQSClient;

beforeAll(async () => {
  process.env.AWS_REGION = REGION;
  emulators = await startEmulators();
  endpoints = { dynamodb: emulators.dynamoEndpoint, sqs: emulators.sqsEndpoint, region: REGION };
  dynamodbClient = new DynamoDBClient({ region: REGION, endpoint: endpoints.dynamodb, credentials });
  sqsClient = new SQSClient({ region: REGION, endpoint: endpoints.sqs, credentials });

  // One synth for the whole file, with a queue a test added to the stateful stack the way the app adds
  // every queue (with its DLQ and alarms).
  templates = await synthesizeTemplates({
    configure: ({ stacks }) => {
      new QueueWithDlq(stacks.stateful, "Extra", {
        visibilityTimeout: Duration.seconds(42),
        deliveryDelay: Duration.seconds(3),
        maxReceiveCount: 7,
        maxMessageAge: Duration.minutes(5),
        alarmAction: new SnsAction(stacks.stateful.alarmTopic),
        removalPolicy: RemovalPolicy.DESTROY,
      });
    },
  });
  topology = await provisionLocal(templates, endpoints, { namePrefix: "t-" });
});

afterAll(async () => {
  dynamodbClient?.destroy();
  sqsClient?.destroy();
  await emulators?.stop();
});

const queueAttributes = async (url: string) =>
  (await sqsClient.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["All"] })))
    .Attributes ?? {};

describe("provisionLocal", () => {
  it("creates the table with the template's keys and indexes", async () => {
    const table = topology.tables.JobsTable;
    expect(table?.name).toBe("t-JobsTable");
    const { Table } = await dynamodbClient.send(new DescribeTableCommand({ TableName: table?.name }));
    expect(Table?.KeySchema).toEqual([
      { AttributeName: "pk", KeyType: "HASH" },
      { AttributeName: "sk", KeyType: "RANGE" },
    ]);
    const indexes = Object.fromEntries(
      (Table?.GlobalSecondaryIndexes ?? []).map((i) => [i.IndexName, i.KeySchema]),
    );
    for (const index of Object.values(INDEXES)) {
      expect(indexes[index.name], index.name).toEqual([
        { AttributeName: index.partitionKey, KeyType: "HASH" },
        { AttributeName: index.sortKey, KeyType: "RANGE" },
      ]);
    }
    expect(Table?.AttributeDefinitions).toContainEqual({ AttributeName: "wakeAt", AttributeType: "N" });
  });

  it("creates the work queues with redrive policies to their dead-letter queues", async () => {
    for (const [queueId, dlqId] of [
      ["JobsQueue", "JobsDlq"],
      ["ResultsQueue", "ResultsDlq"],
      ["NotificationsQueue", "NotificationsDlq"],
      ["FallbackQueue", "FallbackDlq"],
    ] as const) {
      const queue = topology.queues[queueId];
      const dlq = topology.queues[dlqId];
      expect(queue && dlq, queueId).toBeTruthy();
      const attributes = await queueAttributes(queue?.url ?? "");
      expect(JSON.parse(attributes.RedrivePolicy ?? "{}")).toMatchObject({
        deadLetterTargetArn: dlq?.arn,
        maxReceiveCount: 5,
      });
      expect(queue?.dlqArn).toBe(dlq?.arn);
      expect(Number(attributes.VisibilityTimeout)).toBe(queue?.visibilityTimeoutSeconds);
      expect(Number((await queueAttributes(dlq?.url ?? "")).MessageRetentionPeriod)).toBe(14 * 86_400);
    }
    expect(topology.queues.JobsQueue?.visibilityTimeoutSeconds).toBeGreaterThanOrEqual(6 * 120);
    expect(topology.queues.FallbackQueue?.visibilityTimeoutSeconds).toBe(15 * 60);
  });

  it("names the buckets and the event bus, and resolves function environments to those names", () => {
    expect(topology.buckets).toEqual({
      AccessLogsBucket: { name: "t-accesslogsbucket", arn: "arn:aws:s3:::t-accesslogsbucket" },
      InputsBucket: { name: "t-inputsbucket", arn: "arn:aws:s3:::t-inputsbucket" },
      OutputsBucket: { name: "t-outputsbucket", arn: "arn:aws:s3:::t-outputsbucket" },
    });
    expect(topology.eventBuses.EventBus).toEqual({
      name: "t-controlnet-dev",
      arn: `arn:aws:events:${REGION}:000000000000:event-bus/t-controlnet-dev`,
    });
    expect(topology.functions.ApiFunction?.environment).toMatchObject({
      INPUTS_BUCKET: "t-inputsbucket",
      OUTPUTS_BUCKET: "t-outputsbucket",
      EVENT_BUS_NAME: "t-controlnet-dev",
    });
    expect(topology.functions.FinalizeFunction?.environment).toMatchObject({
      OUTPUTS_BUCKET: "t-outputsbucket",
      EVENT_BUS_NAME: "t-controlnet-dev",
    });
    const unresolved = topology.unresolved.map(({ variable }) => variable);
    for (const variable of ["INPUTS_BUCKET", "OUTPUTS_BUCKET", "EVENT_BUS_NAME"]) {
      expect(unresolved).not.toContain(variable);
    }
  });

  it("creates a queue added to the CDK app, with its attributes and DLQ", async () => {
    const extra = topology.queues.ExtraQueue;
    expect(extra?.name).toBe("t-ExtraQueue");
    const attributes = await queueAttributes(extra?.url ?? "");
    expect(attributes).toMatchObject({ VisibilityTimeout: "42", DelaySeconds: "3" });
    expect(JSON.parse(attributes.RedrivePolicy ?? "{}")).toMatchObject({
      deadLetterTargetArn: topology.queues.ExtraDlq?.arn,
      maxReceiveCount: 7,
    });
  });

  it("accepts tables and queues that already exist (dynalite persists between runs)", async () => {
    const again = await provisionLocal(templates, endpoints, { namePrefix: "t-" });
    expect(again.tables).toEqual(topology.tables);
    expect(again.queues).toEqual(topology.queues);
  });

  it("reads the functions, with local values for what the emulators provide", () => {
    const api = topology.functions.ApiFunction;
    expect(api).toMatchObject({
      entry: "functions/api.ts",
      handlerExport: "handler",
      timeoutSeconds: 29,
      memoryMb: 512,
    });
    expect(api?.environment).toMatchObject({
      TABLE_NAME: "t-JobsTable",
      JOBS_QUEUE_URL: topology.queues.JobsQueue?.url,
    });
    expect(topology.functions.DispatchFunction?.environment.RESULTS_QUEUE_URL).toBe(
      topology.queues.ResultsQueue?.url,
    );
    expect(Object.keys(topology.functions).sort()).toEqual(
      FUNCTIONS.map((spec) => spec.id)
        .map((id) => `${id}Function`)
        .sort(),
    );
  });

  it("reports what has no local value instead of inventing it", () => {
    const unresolved = topology.unresolved.map(({ functionId, variable }) => `${functionId}.${variable}`);
    expect(unresolved).toEqual(
      expect.arrayContaining([
        "DispatchFunction.CALLBACK_BASE_URL",
        "DispatchFunction.MODELSLAB_API_KEY_SECRET_ARN",
        "DispatchFunction.CALLBACK_SECRET_ARN",
        "CallbackFunction.CALLBACK_SECRET_ARN",
      ]),
    );
    expect(topology.functions.DispatchFunction?.environment).not.toHaveProperty("CALLBACK_BASE_URL");
  });

  it("resolves references to the HTTP endpoints to the local addresses it is given", async () => {
    const local = await provisionLocal(templates, endpoints, {
      namePrefix: "t-",
      localUrls: { CallbackFunctionFunctionUrl: "http://127.0.0.1:4001/", HttpApi: "http://127.0.0.1:4000" },
    });
    expect(local.functions.DispatchFunction?.environment.CALLBACK_BASE_URL).toBe("http://127.0.0.1:4001/");
    expect(local.unresolved.map((u) => u.variable)).not.toContain("CALLBACK_BASE_URL");
  });

  it("reads routes, authorizer, queue subscriptions and schedules from the template", () => {
    const routes = Object.fromEntries(topology.routes.map((route) => [route.routeKey, route]));
    expect(routes["POST /v1/jobs"]).toMatchObject({
      functionId: "ApiFunction",
      authorizer: {
        functionId: "AuthorizerFunction",
        identitySource: ["$request.header.Authorization"],
        ttlSeconds: 300,
      },
    });
    expect(routes["GET /v1/jobs/{id}"]?.authorizer?.functionId).toBe("AuthorizerFunction");
    expect(routes.$default).toMatchObject({ functionId: "ApiFunction" });
    expect(routes.$default?.authorizer).toBeUndefined();
    // The provider's callbacks come in on the callback function's own URL, not through the API.
    expect(routes["POST /callbacks/modelslab/{jobId}"]).toBeUndefined();
    expect(topology.functionUrls).toEqual([
      { logicalId: "CallbackFunctionFunctionUrl", functionId: "CallbackFunction", authType: "NONE" },
    ]);

    expect(topology.eventSourceMappings).toEqual(
      expect.arrayContaining([
        {
          queueLogicalId: "JobsQueue",
          functionId: "DispatchFunction",
          batchSize: 10,
          // No window on the jobs and results queues: admission's messages and the releases that send them come one by one.
          maxBatchingWindowSeconds: 0,
          reportBatchItemFailures: true,
          maxConcurrency: 2,
        },
        {
          queueLogicalId: "ResultsQueue",
          functionId: "FinalizeFunction",
          batchSize: 10,
          maxBatchingWindowSeconds: 0,
          reportBatchItemFailures: true,
        },
      ]),
    );
    expect(topology.schedules).toEqual([{ functionId: "ReconcileFunction", expression: "rate(1 minute)" }]);
  });
});
