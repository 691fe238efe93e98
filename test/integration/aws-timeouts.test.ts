/**
 * Every AWS client the project builds gives up on a server that stops answering: one that takes the
 * request and never sends headers, and one that sends headers and part of a body and then nothing. The
 * clients come from the project's factories with a short request timeout; each call must fail (not hang)
 * after its attempts, each cut at about that timeout, with an error `isTransientAwsError` retries.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Readable } from "node:stream";
import { CreateQueueCommand, ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { GetCommand } from "@aws-sdk/lib-dynamodb";
import { startFauxqs } from "fauxqs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AWS_CLIENT_DEFAULTS, isTransientAwsError } from "../../shared/adapters/aws-client.ts";
import { createDocumentClient } from "../../shared/adapters/dynamo/client.ts";
import { createS3Client, S3_CLIENT_DEFAULTS, S3ObjectStore } from "../../shared/adapters/s3/object-store.ts";
import { createSqsClient, receiveTimeoutMs } from "../../shared/adapters/sqs/queue.ts";
import { createSecretsProvider, resolveSecret } from "../../shared/lambda/secrets.ts";
import { LOCAL_CREDENTIALS, LOCAL_REGION } from "../support/emulators.ts";

/** The request timeout the clients are built with here. */
const TIMEOUT_MS = 300;
/** Past this a test has hung: with the SDK's warn-only request timeout the calls never end. */
const HANG_MS = 10_000;

type Stall = "before-headers" | "after-headers";

interface StallingServer {
  endpoint: string;
  /** Requests received so far (each attempt of a call is one). */
  requests: number;
  close(): Promise<void>;
}

/**
 * An HTTP server on loopback that reads each request and then stalls: without a word, or after the
 * headers of a 200 whose announced body is cut short (the client waits for the rest).
 */
async function startStallingServer(stall: Stall, contentType: string): Promise<StallingServer> {
  const state = { requests: 0 };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    state.requests += 1;
    req.resume();
    if (stall === "after-headers") {
      res.writeHead(200, { "content-type": contentType, "content-length": "4096" });
      res.write(contentType.includes("json") ? "{" : "<");
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get requests() {
      return state.requests;
    },
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

interface Failure {
  error: unknown;
  elapsedMs: number;
}

/** Runs `call`, which must fail; returns its error and how long it took. */
async function failure(call: () => Promise<unknown>): Promise<Failure> {
  const started = performance.now();
  try {
    await call();
  } catch (error) {
    return { error, elapsedMs: performance.now() - started };
  }
  throw new Error("the call succeeded against a server that never completes a response");
}

/**
 * Each of `attempts` attempts is cut at the timeout, none waits much longer: the upper bound is generous
 * (the retries' backoff, a loaded machine), far under the SDK's default timeouts and what a hang takes.
 */
function expectTimedOut({ error, elapsedMs }: Failure, attempts: number): void {
  expect(error).toMatchObject({ name: "TimeoutError" });
  expect(isTransientAwsError(error)).toBe(true);
  expect(elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS * attempts - 50);
  expect(elapsedMs).toBeLessThan(TIMEOUT_MS * attempts * 2 + 1_000);
}

async function readAll(stream: Readable): Promise<void> {
  for await (const _ of stream) {
    // drained
  }
}

const servers: StallingServer[] = [];
async function stallingServer(stall: Stall, contentType: string): Promise<StallingServer> {
  const server = await startStallingServer(stall, contentType);
  servers.push(server);
  return server;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

const clientOptions = (endpoint: string) => ({
  endpoint,
  region: LOCAL_REGION,
  credentials: LOCAL_CREDENTIALS,
  timeouts: { requestTimeoutMs: TIMEOUT_MS },
});

describe.each<Stall>(["before-headers", "after-headers"])("a server that stalls %s", (stall) => {
  it(
    "fails a DynamoDB call after its attempts, each cut at the request timeout",
    async () => {
      const server = await stallingServer(stall, "application/x-amz-json-1.0");
      const doc = createDocumentClient(clientOptions(server.endpoint));
      try {
        const result = await failure(() => doc.send(new GetCommand({ TableName: "t", Key: { pk: "a" } })));
        expectTimedOut(result, AWS_CLIENT_DEFAULTS.maxAttempts);
        expect(server.requests).toBe(AWS_CLIENT_DEFAULTS.maxAttempts);
      } finally {
        doc.destroy();
      }
    },
    HANG_MS,
  );

  it(
    "fails an SQS call after its attempts, each cut at the request timeout",
    async () => {
      const server = await stallingServer(stall, "application/x-amz-json-1.0");
      const sqs = createSqsClient(clientOptions(server.endpoint));
      try {
        const queueUrl = `${server.endpoint}/000000000000/jobs`;
        const result = await failure(() =>
          sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: "{}" })),
        );
        expectTimedOut(result, AWS_CLIENT_DEFAULTS.maxAttempts);
        expect(server.requests).toBe(AWS_CLIENT_DEFAULTS.maxAttempts);
      } finally {
        sqs.destroy();
      }
    },
    HANG_MS,
  );

  it(
    "fails a Secrets Manager fetch after its attempts, each cut at the request timeout",
    async () => {
      const server = await stallingServer(stall, "application/x-amz-json-1.1");
      const provider = createSecretsProvider(clientOptions(server.endpoint));
      const arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:callback-AbCdEf";
      const result = await failure(() =>
        resolveSecret({ CALLBACK_SECRET_ARN: arn }, "CALLBACK_SECRET", "CALLBACK_SECRET_ARN", provider),
      );
      // Powertools wraps the SDK's error.
      expectTimedOut({ ...result, error: (result.error as Error).cause }, AWS_CLIENT_DEFAULTS.maxAttempts);
      expect(server.requests).toBe(AWS_CLIENT_DEFAULTS.maxAttempts);
    },
    HANG_MS,
  );

  it(
    "fails an S3 PutObject after its attempts, each cut at the request timeout",
    async () => {
      const server = await stallingServer(stall, "application/xml");
      const s3 = createS3Client(clientOptions(server.endpoint));
      try {
        const store = new S3ObjectStore(s3, "outputs");
        const body = new TextEncoder().encode("png bytes");
        const result = await failure(() => store.put("job/output.png", body, { contentType: "image/png" }));
        expectTimedOut(result, S3_CLIENT_DEFAULTS.maxAttempts);
        expect(server.requests).toBe(S3_CLIENT_DEFAULTS.maxAttempts);
      } finally {
        s3.destroy();
      }
    },
    HANG_MS,
  );
});

describe("an S3 object whose body stalls", () => {
  it(
    "fails its reader at the request timeout",
    async () => {
      const server = await stallingServer("after-headers", "image/png");
      const s3 = createS3Client(clientOptions(server.endpoint));
      try {
        const store = new S3ObjectStore(s3, "outputs");
        const result = await failure(async () => {
          const body = await store.get("job/output.png");
          if (!body) throw new Error("no body");
          await readAll(body);
        });
        // The headers came: one attempt, whose body then times out in the reader's hands.
        expectTimedOut(result, 1);
        expect(server.requests).toBe(1);
      } finally {
        s3.destroy();
      }
    },
    HANG_MS,
  );

  it(
    "fails a GetObject whose headers never come after its attempts",
    async () => {
      const server = await stallingServer("before-headers", "image/png");
      const s3 = createS3Client(clientOptions(server.endpoint));
      try {
        const store = new S3ObjectStore(s3, "outputs");
        const result = await failure(() => store.get("job/output.png"));
        expectTimedOut(result, S3_CLIENT_DEFAULTS.maxAttempts);
      } finally {
        s3.destroy();
      }
    },
    HANG_MS,
  );
});

describe("an SQS long poll (fauxqs)", () => {
  let fauxqs: Awaited<ReturnType<typeof startFauxqs>>;
  let queueUrl: string;
  const sqs = () => createSqsClient(clientOptions(fauxqs.address));

  beforeAll(async () => {
    fauxqs = await startFauxqs({ port: 0, logger: false });
    const client = sqs();
    try {
      const created = await client.send(new CreateQueueCommand({ QueueName: "long-poll" }));
      queueUrl = created.QueueUrl ?? "";
    } finally {
      client.destroy();
    }
  });

  afterAll(async () => {
    await fauxqs?.stop();
  });

  // One second of wait is longer than the request timeout: the poll's own timeout must allow for it.
  const receive = () =>
    new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1, MaxNumberOfMessages: 1 });

  it(
    "waits for its messages with the receive's timeout",
    async () => {
      const client = sqs();
      try {
        const started = performance.now();
        const out = await client.send(receive(), { requestTimeout: receiveTimeoutMs(1) });
        expect(out.Messages ?? []).toEqual([]);
        expect(performance.now() - started).toBeGreaterThanOrEqual(900);
      } finally {
        client.destroy();
      }
    },
    HANG_MS,
  );

  it(
    "is cut at the client's request timeout without it",
    async () => {
      const client = createSqsClient({ ...clientOptions(fauxqs.address), maxAttempts: 1 });
      try {
        expectTimedOut(await failure(() => client.send(receive())), 1);
      } finally {
        client.destroy();
      }
    },
    HANG_MS,
  );
});
