/**
 * Every DynamoDB adapter fails alike when DynamoDB throttles or fails on its side: STORE_UNAVAILABLE,
 * which the API answers as a 503. dynalite never throttles nor answers 5xx, so the adapters talk to a
 * local endpoint that answers every request with the error DynamoDB sends (the real SDK client parses it).
 */

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Logger } from "@aws-lambda-powertools/logger";
import middy from "@middy/core";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DynamoCapacityGate } from "../../shared/adapters/dynamo/capacity-gate.ts";
import { DynamoCircuitBreaker } from "../../shared/adapters/dynamo/circuit-breaker.ts";
import { createDocumentClient } from "../../shared/adapters/dynamo/client.ts";
import { DynamoJobStore } from "../../shared/adapters/dynamo/job-store.ts";
import { DynamoNotificationStore } from "../../shared/adapters/dynamo/notification-store.ts";
import { DynamoTenantStore } from "../../shared/adapters/dynamo/tenant-store.ts";
import { UnavailableError } from "../../shared/domain/errors.ts";
import { newJobId } from "../../shared/domain/ids.ts";
import { createApi } from "../../shared/http/api.ts";
import type { HttpResponse } from "../../shared/http/responses.ts";
import { httpErrors } from "../../shared/lambda/http-errors.ts";
import type { NotificationRecord } from "../../shared/ports/index.ts";
import { queues } from "../../shared/schemas/messages.ts";
import { presentJob } from "../../shared/usecases/present-job.ts";
import {
  buildJob,
  FakeClock,
  FakeQueue,
  InMemoryApiKeys,
  InMemoryJobStore,
  InMemoryObjectStore,
  InMemoryWebhookSettings,
} from "../support/fakes.ts";
import { TEST_MODELS, testApiSettings } from "../support/settings.ts";

/** What the endpoint answers: the HTTP status, and the `__type` DynamoDB names the error with. */
interface Failure {
  status: number;
  type?: string;
}

let server: Server;
let endpoint: string;
let failure: Failure = { status: 500 };

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const body = failure.type
        ? JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${failure.type}`, message: "injected" })
        : "";
      res.writeHead(failure.status, {
        "content-type": "application/x-amz-json-1.0",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const failingClient = () =>
  createDocumentClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "x", secretAccessKey: "x" },
    // The SDK's own retries are not what is tested here.
    maxAttempts: 1,
  });

const clock = new FakeClock(new Date("2026-01-01T00:00:00.000Z"));
const TABLE = "jobs";
const job = () => buildJob(clock, { tenantId: "acme" });
const record = (): NotificationRecord => ({
  id: "msg_1",
  jobId: "01JOBA00000000000000000000",
  tenantId: "acme",
  type: "job.succeeded",
  createdAt: clock.now().toISOString(),
  payload: "{}",
  url: "https://client.example/hook",
  state: "pending",
  attempts: [],
});
const attempt = { attempt: 1, at: clock.now().toISOString(), status: 500, error: null, duration_ms: 5 };
const idempotency = { keyHash: "a".repeat(64), requestHash: "b".repeat(64), expiresAt: 2_000_000_000 };
const breakerSettings = { failureThreshold: 3, windowSeconds: 60, coolDownSeconds: 30 };

/** Every call each DynamoDB adapter makes, on a client whose every request fails. */
const CALLS: [string, (doc: ReturnType<typeof failingClient>) => Promise<unknown>][] = [
  ["job store: create", (doc) => new DynamoJobStore(doc, TABLE).create(job())],
  [
    "job store: create with an idempotency key",
    (doc) => new DynamoJobStore(doc, TABLE).create(job(), idempotency),
  ],
  ["job store: get", (doc) => new DynamoJobStore(doc, TABLE).get(job().id)],
  ["job store: list", (doc) => new DynamoJobStore(doc, TABLE).listByTenant("acme", { limit: 10 })],
  [
    "job store: list by status",
    (doc) => new DynamoJobStore(doc, TABLE).listByTenant("acme", { limit: 10, status: "queued" }),
  ],
  ["job store: transition", (doc) => new DynamoJobStore(doc, TABLE).transition(job(), "processing")],
  ["job store: update", (doc) => new DynamoJobStore(doc, TABLE).update(job(), { attempts: [] })],
  ["job store: findDue", (doc) => new DynamoJobStore(doc, TABLE).findDue(clock.now(), 10)],
  [
    "tenant store: findByApiKeyHash",
    (doc) => new DynamoTenantStore(doc, TABLE).findByApiKeyHash("c".repeat(64)),
  ],
  [
    "tenant store: createTenant",
    (doc) => new DynamoTenantStore(doc, TABLE).createTenant({ id: "acme", name: "Acme", createdAt: "2026" }),
  ],
  ["tenant store: addApiKey", (doc) => new DynamoTenantStore(doc, TABLE).addApiKey("acme", "c".repeat(64))],
  ["tenant store: getWebhookSettings", (doc) => new DynamoTenantStore(doc, TABLE).getWebhookSettings("acme")],
  [
    "tenant store: setWebhookUrl",
    (doc) => new DynamoTenantStore(doc, TABLE).setWebhookUrl("acme", "https://acme.example/"),
  ],
  [
    "tenant store: addWebhookSecret",
    (doc) => new DynamoTenantStore(doc, TABLE).addWebhookSecret("acme", "whsec_x", clock.now(), clock.now()),
  ],
  [
    "notification store: createIfAbsent",
    (doc) => new DynamoNotificationStore(doc, TABLE).createIfAbsent(record()),
  ],
  ["notification store: get", (doc) => new DynamoNotificationStore(doc, TABLE).get(record().jobId, "msg_1")],
  [
    "notification store: listForJob",
    (doc) => new DynamoNotificationStore(doc, TABLE).listForJob(record().jobId),
  ],
  [
    "notification store: recordAttempt",
    (doc) => new DynamoNotificationStore(doc, TABLE).recordAttempt(record(), attempt, "pending"),
  ],
  ["notification store: reopen", (doc) => new DynamoNotificationStore(doc, TABLE).reopen(record())],
  [
    "capacity gate: tryAcquire",
    (doc) => new DynamoCapacityGate(doc, TABLE, 2, "modelslab").tryAcquire("job-1", clock.now()),
  ],
  ["capacity gate: release", (doc) => new DynamoCapacityGate(doc, TABLE, 2, "modelslab").release("job-1")],
  ["capacity gate: holders", (doc) => new DynamoCapacityGate(doc, TABLE, 2, "modelslab").holders()],
  [
    "circuit breaker: state",
    (doc) => new DynamoCircuitBreaker(doc, TABLE, breakerSettings, "modelslab").state(clock.now()),
  ],
  [
    "circuit breaker: claimProbe",
    (doc) => new DynamoCircuitBreaker(doc, TABLE, breakerSettings, "modelslab").claimProbe(clock.now()),
  ],
  [
    "circuit breaker: record a failure",
    (doc) =>
      new DynamoCircuitBreaker(doc, TABLE, breakerSettings, "modelslab").record("failure", clock.now()),
  ],
  [
    "circuit breaker: record a probe's success",
    (doc) =>
      new DynamoCircuitBreaker(doc, TABLE, breakerSettings, "modelslab").record("success", clock.now(), true),
  ],
];

const FAILURES: [string, Failure, string][] = [
  [
    "throttled",
    { status: 400, type: "ProvisionedThroughputExceededException" },
    "ProvisionedThroughputExceededException",
  ],
  ["throttled by the account", { status: 400, type: "ThrottlingException" }, "ThrottlingException"],
  ["failing on DynamoDB's side", { status: 500, type: "InternalServerError" }, "InternalServerError"],
  ["unavailable", { status: 503 }, ""],
];

describe.each(FAILURES)("DynamoDB %s", (_, answer, errorName) => {
  it.each(CALLS)("%s answers STORE_UNAVAILABLE", async (_name, call) => {
    failure = answer;
    const doc = failingClient();
    try {
      const error = await call(doc).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });
      // What DynamoDB answered is kept for the logs.
      const cause = (error as Error).cause as { name: string; $metadata: { httpStatusCode: number } };
      expect(cause.$metadata.httpStatusCode).toBe(answer.status);
      if (errorName) expect(cause.name).toBe(errorName);
    } finally {
      doc.destroy();
    }
  });
});

describe("a request DynamoDB refuses", () => {
  it.each(CALLS)("%s passes the error on unchanged: it is not a transient failure", async (_name, call) => {
    failure = { status: 400, type: "ValidationException" };
    const doc = failingClient();
    try {
      const error = await call(doc).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).not.toBeInstanceOf(UnavailableError);
      expect(error).toMatchObject({ name: "ValidationException" });
    } finally {
      doc.destroy();
    }
  });
});

describe("the API", () => {
  it("answers 503 STORE_UNAVAILABLE with Retry-After when the notification store is throttled", async () => {
    failure = { status: 400, type: "ProvisionedThroughputExceededException" };
    const doc = failingClient();
    const jobs = new InMemoryJobStore(clock);
    const stored = buildJob(clock, { id: newJobId(), tenantId: "acme" });
    await jobs.create(stored);
    const api = createApi({
      jobs,
      jobsQueue: new FakeQueue(queues.jobs),
      clock,
      settings: testApiSettings(),
      present: async (job) => presentJob(job),
      inputs: {
        inputs: new InMemoryObjectStore(),
        inputsBucket: "inputs",
        policy: { mode: "aws" },
        resolve: async () => ["93.184.216.34"],
      },
      notifications: new DynamoNotificationStore(doc, TABLE),
      notifyQueue: new FakeQueue(queues.notifications),
      tenants: new InMemoryWebhookSettings(clock),
      apiKeys: new InMemoryApiKeys(clock),
      models: TEST_MODELS,
    });
    // The chain the API function runs (functions/api.ts): errors become answers in httpErrors.
    const handler = middy<APIGatewayProxyEventV2, HttpResponse>()
      .use(httpErrors(new Logger({ logLevel: "SILENT" })))
      .handler((event) => api(event));
    const get = (path: string) =>
      handler(
        {
          rawPath: path,
          headers: {},
          requestContext: { http: { method: "GET", path }, authorizer: { lambda: { tenantId: "acme" } } },
        } as unknown as APIGatewayProxyEventV2,
        {} as never,
      );
    try {
      expect((await get(`/v1/jobs/${stored.id}`)).statusCode).toBe(200);
      const response = await get(`/v1/jobs/${stored.id}/notifications`);
      expect(response.statusCode).toBe(503);
      expect(response.headers).toMatchObject({ "retry-after": "1" });
      expect(JSON.parse(response.body as string)).toMatchObject({ error: { code: "STORE_UNAVAILABLE" } });
    } finally {
      doc.destroy();
    }
  });
});
