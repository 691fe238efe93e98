/**
 * `createHandler(env)`: two instances of one function, built in one process from two environments,
 * each use their own configuration and their own AWS endpoints, not process.env's. Two sets of
 * emulators stand for two accounts; process.env names a third endpoint where nothing listens.
 */
import { createServer } from "node:net";
import { CreateQueueCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import type { APIGatewayProxyEventV2, APIGatewayRequestAuthorizerEventV2, Context } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createDocumentClient } from "../../shared/adapters/dynamo/client.ts";
import { DynamoTenantStore } from "../../shared/adapters/dynamo/tenant-store.ts";
import { createSqsClient } from "../../shared/adapters/sqs/queue.ts";
import { callbackToken } from "../../shared/domain/callback-token.ts";
import { sha256Hex } from "../../shared/domain/hash.ts";
import { createTestTable, type Emulators, LOCAL_CREDENTIALS, startEmulators } from "../support/emulators.ts";

let a: Emulators;
let b: Emulators;

beforeAll(async () => {
  [a, b] = await Promise.all([startEmulators(), startEmulators()]);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  const nowhere = `http://127.0.0.1:${address.port}`;
  // What the modules' own `handler` (built from process.env at import) is given: endpoints where
  // nothing listens, so that a client of the instances below that read process.env would fail.
  for (const [name, value] of Object.entries({
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL_DYNAMODB: nowhere,
    AWS_ENDPOINT_URL_SQS: nowhere,
    TABLE_NAME: "process-env-table",
    RESULTS_QUEUE_URL: `${nowhere}/000000000000/process-env-results`,
    CALLBACK_SECRET: "process-env-secret",
    POWERTOOLS_LOG_LEVEL: "SILENT",
  })) {
    vi.stubEnv(name, value);
  }
});

afterAll(async () => {
  vi.unstubAllEnvs();
  await Promise.all([a?.stop(), b?.stop()]);
});

const context = (name: string): Context => ({
  callbackWaitsForEmptyEventLoop: false,
  functionName: name,
  functionVersion: "$LATEST",
  invokedFunctionArn: `arn:aws:lambda:us-east-1:000000000000:function:${name}`,
  memoryLimitInMB: "256",
  awsRequestId: "req-1",
  logGroupName: `/aws/lambda/${name}`,
  logStreamName: "test",
  getRemainingTimeInMillis: () => 30_000,
  done: () => undefined,
  fail: () => undefined,
  succeed: () => undefined,
});

/** The environment a function deployed against `emulators` would have. */
const environment = (emulators: Emulators, variables: Record<string, string>) => ({
  AWS_REGION: emulators.region,
  AWS_ENDPOINT_URL_DYNAMODB: emulators.dynamoEndpoint,
  AWS_ENDPOINT_URL_SQS: emulators.sqsEndpoint,
  POWERTOOLS_LOG_LEVEL: "SILENT",
  ...variables,
});

describe("createHandler(env)", () => {
  it("builds two authorizers that each read their own table on their own DynamoDB", async () => {
    const key = "cnk_the-same-key-in-both-accounts";
    for (const [emulators, table, tenant] of [
      [a, "tenants-a", "tenant-a"],
      [b, "tenants-b", "tenant-b"],
    ] as const) {
      await createTestTable(emulators.dynamoEndpoint, table);
      const doc = createDocumentClient({
        endpoint: emulators.dynamoEndpoint,
        region: emulators.region,
        credentials: emulators.credentials,
      });
      const store = new DynamoTenantStore(doc, table);
      await store.createTenant({ id: tenant, name: tenant, createdAt: "2026-01-01T00:00:00.000Z" });
      await store.addApiKey(tenant, sha256Hex(key));
      doc.destroy();
    }
    const { createHandler } = await import("../../functions/authorizer.ts");
    const first = createHandler(environment(a, { TABLE_NAME: "tenants-a" }));
    const second = createHandler(environment(b, { TABLE_NAME: "tenants-b" }));
    const event = {
      headers: { authorization: `Bearer ${key}` },
    } as unknown as APIGatewayRequestAuthorizerEventV2;

    expect(await first(event, context("authorizer"))).toEqual({
      isAuthorized: true,
      context: { tenantId: "tenant-a" },
    });
    expect(await second(event, context("authorizer"))).toEqual({
      isAuthorized: true,
      context: { tenantId: "tenant-b" },
    });
  });

  it("builds two callback receivers that each queue to their own queue on their own SQS, with their own secret", async () => {
    const jobId = "01JOB000000000000000000001";
    const queueOn = async (emulators: Emulators, name: string) => {
      const sqs = createSqsClient({
        endpoint: emulators.sqsEndpoint,
        region: emulators.region,
        credentials: emulators.credentials,
      });
      const url = (await sqs.send(new CreateQueueCommand({ QueueName: name }))).QueueUrl ?? "";
      return {
        url,
        bodies: async () => {
          const out = await sqs.send(
            new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
          );
          return (out.Messages ?? []).map((m) => JSON.parse(m.Body ?? "null") as { source: string });
        },
        close: () => sqs.destroy(),
      };
    };
    const [resultsA, resultsB] = await Promise.all([queueOn(a, "results-a"), queueOn(b, "results-b")]);
    const { createHandler } = await import("../../functions/callback.ts");
    const first = await createHandler(
      environment(a, { RESULTS_QUEUE_URL: resultsA.url, CALLBACK_SECRET: "secret-a" }),
    );
    const second = await createHandler(
      environment(b, { RESULTS_QUEUE_URL: resultsB.url, CALLBACK_SECRET: "secret-b" }),
    );
    const callback = (secret: string) =>
      ({
        rawPath: `/callbacks/modelslab/${jobId}`,
        pathParameters: { provider: "modelslab", jobId },
        queryStringParameters: { attempt: "0", token: callbackToken(secret, "modelslab", jobId, 0) },
        requestContext: { http: { method: "POST" } },
        headers: { "content-type": "application/json" },
        isBase64Encoded: false,
        body: JSON.stringify({
          status: "success",
          id: 9001,
          output: ["https://pub-x.r2.dev/a.png"],
          track_id: jobId,
        }),
      }) as unknown as APIGatewayProxyEventV2;

    try {
      expect(await first(callback("secret-a"), context("callback"))).toMatchObject({ statusCode: 202 });
      expect(await second(callback("secret-b"), context("callback"))).toMatchObject({ statusCode: 202 });
      // Each verifies tokens with its own secret.
      expect(await first(callback("secret-b"), context("callback"))).toMatchObject({ statusCode: 401 });
      expect(await resultsA.bodies()).toEqual([expect.objectContaining({ jobId, source: "callback" })]);
      expect(await resultsB.bodies()).toEqual([expect.objectContaining({ jobId, source: "callback" })]);
    } finally {
      resultsA.close();
      resultsB.close();
    }
  });
});
