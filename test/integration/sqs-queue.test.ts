import { createServer } from "node:net";
import { CreateQueueCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AWS_CLIENT_DEFAULTS } from "../../shared/adapters/aws-client.ts";
import { clampDelaySeconds, createSqsClient, SqsQueue } from "../../shared/adapters/sqs/queue.ts";
import { UnavailableError } from "../../shared/domain/errors.ts";
import { queues, type ResultMessage } from "../../shared/schemas/messages.ts";
import { type Emulators, ownName, startEmulators } from "../support/emulators.ts";

let emulators: Emulators;
let sqs: SQSClient;
let queueUrl: string;
let queueCount = 0;

beforeAll(async () => {
  emulators = await startEmulators();
  sqs = createSqsClient({
    endpoint: emulators.sqsEndpoint,
    region: emulators.region,
    credentials: emulators.credentials,
  });
});

afterAll(async () => {
  sqs?.destroy();
  await emulators?.stop();
});

beforeEach(async () => {
  const out = await sqs.send(new CreateQueueCommand({ QueueName: ownName(`jobs-${++queueCount}`) }));
  queueUrl = out.QueueUrl ?? "";
});

const receive = async (wait = 0) =>
  (
    await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: wait }),
    )
  ).Messages ?? [];

/** A loopback port nothing listens on: bound once by us, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

describe("SqsQueue", () => {
  it("sends the message as a JSON body", async () => {
    const message: ResultMessage = {
      jobId: "01J0000000000000000000000A",
      provider: "self-hosted",
      attempt: 0,
      source: "worker",
      observedAt: "2026-01-01T00:00:00.000Z",
      result: {
        kind: "done",
        providerId: null,
        outputs: [{ kind: "url", url: "s3://outputs/t/j/0.png" }],
        generationTimeSeconds: 1.5,
        seed: 7,
      },
    };
    await new SqsQueue(sqs, queueUrl, queues.results).send(message);
    const [received] = await receive();
    expect(JSON.parse(received?.Body ?? "null")).toEqual(message);
  });

  it("honours delaySeconds: the message is not visible at once", async () => {
    const queue = new SqsQueue(sqs, queueUrl, queues.jobs);
    await queue.send({ jobId: "delayed" }, { delaySeconds: 60 });
    await queue.send({ jobId: "now" }, { delaySeconds: 0 });
    const received = await receive();
    expect(received.map((m) => JSON.parse(m.Body ?? "null"))).toEqual([{ jobId: "now" }]);
  });

  it("clamps delays to SQS's 0..900 range instead of failing", async () => {
    const queue = new SqsQueue(sqs, queueUrl, queues.jobs);
    await queue.send({ jobId: "negative" }, { delaySeconds: -5 });
    await queue.send({ jobId: "huge" }, { delaySeconds: 10_000 });
    expect((await receive()).map((m) => JSON.parse(m.Body ?? "null"))).toEqual([{ jobId: "negative" }]);
    expect(clampDelaySeconds(10_000)).toBe(900);
    expect(clampDelaySeconds(-1)).toBe(0);
    expect(clampDelaySeconds(1.2)).toBe(2);
    expect(clampDelaySeconds(Number.NaN)).toBe(0);
    expect(clampDelaySeconds(Number.POSITIVE_INFINITY)).toBe(900);
  });

  it("wraps an unreachable endpoint in QUEUE_UNAVAILABLE after the house's bounded attempts", async () => {
    const port = await closedPort();
    const down = createSqsClient({
      endpoint: `http://127.0.0.1:${port}`,
      region: "us-east-1",
      credentials: { accessKeyId: "x", secretAccessKey: "x" },
    });
    try {
      const error = await new SqsQueue(down, `http://127.0.0.1:${port}/000000000000/jobs`, queues.jobs)
        .send({ jobId: "01J" })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error).toMatchObject({ code: "QUEUE_UNAVAILABLE", kind: "unavailable" });
      // Refused connections are retried, but only the house's bounded number of times.
      expect((error as Error).cause).toMatchObject({
        code: "ECONNREFUSED",
        $metadata: { attempts: AWS_CLIENT_DEFAULTS.maxAttempts },
      });
    } finally {
      down.destroy();
    }
  });

  it("wraps a missing queue in QUEUE_UNAVAILABLE", async () => {
    const error = await new SqsQueue(sqs, `${emulators.sqsEndpoint}/000000000000/does-not-exist`, queues.jobs)
      .send({ jobId: "01J" })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "QUEUE_UNAVAILABLE" });
  });
});
