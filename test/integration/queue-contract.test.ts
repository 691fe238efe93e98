/**
 * One contract for the two implementations of the Queue port, SqsQueue against fauxqs and the
 * in-memory FakeQueue the use-case tests use: both are built from a queue's declaration
 * (`queues` in shared/schemas/messages.ts), send what the consumer then reads, and refuse a message
 * that fails the declared schema, before anything is sent and whatever the state of the queue.
 */
import { createServer } from "node:net";
import { CreateQueueCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSqsClient, SqsQueue } from "../../shared/adapters/sqs/queue.ts";
import { InvalidMessageError, UnavailableError } from "../../shared/domain/errors.ts";
import type { Queue } from "../../shared/ports/index.ts";
import { queues } from "../../shared/schemas/messages.ts";
import { decodeMessage, type MessageOf, type QueueDefinition } from "../../shared/schemas/queue.ts";
import { type Emulators, startEmulators } from "../support/emulators.ts";
import { buildJob, FakeClock, FakeQueue } from "../support/fakes.ts";

/** A queue under test: where it sends, what its consumer reads, and the same queue unreachable. */
interface Subject<M> {
  queue: Queue<M>;
  received(): Promise<M[]>;
  unavailable(): Queue<M>;
}

type Implementation = <M>(definition: QueueDefinition<M>) => Promise<Subject<M>>;

let emulators: Emulators;
let sqs: SQSClient;
let down: SQSClient;
let downUrl: string;
let queueCount = 0;

beforeAll(async () => {
  emulators = await startEmulators();
  sqs = createSqsClient({
    endpoint: emulators.sqsEndpoint,
    region: emulators.region,
    credentials: emulators.credentials,
  });
  // A loopback port nothing listens on: bound once, then released.
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  down = createSqsClient({
    endpoint: `http://127.0.0.1:${address.port}`,
    region: emulators.region,
    credentials: emulators.credentials,
    maxAttempts: 1,
  });
  downUrl = `http://127.0.0.1:${address.port}/000000000000/down`;
});

afterAll(async () => {
  sqs?.destroy();
  down?.destroy();
  await emulators?.stop();
});

const implementations: Record<string, Implementation> = {
  "SqsQueue (fauxqs)": async (definition) => {
    const created = await sqs.send(
      new CreateQueueCommand({ QueueName: `${definition.name}-${++queueCount}` }),
    );
    const url = created.QueueUrl ?? "";
    return {
      queue: new SqsQueue(sqs, url, definition),
      received: async () => {
        const out = await sqs.send(
          new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
        );
        return (out.Messages ?? []).map((message) => decodeMessage(definition, message.Body ?? ""));
      },
      unavailable: () => new SqsQueue(down, downUrl, definition),
    };
  },
  FakeQueue: async (definition) => {
    const queue = new FakeQueue(definition);
    return {
      queue,
      received: async () => queue.sent.map((sent) => sent.message),
      unavailable: () => {
        const failing = new FakeQueue(definition);
        failing.failNext = 1;
        return failing;
      },
    };
  },
};

const JOB = "01JOB000000000000000000001";
const REQUEST = buildJob(new FakeClock()).request;

/**
 * Per declared queue: a valid message with one key the schema does not know (dropped on the way),
 * and an invalid one with the path its schema names.
 */
interface Example<M> {
  definition: QueueDefinition<M>;
  valid: M;
  invalid: M;
  problem: string;
}
const example = <M>(e: Example<M>) => e as Example<unknown>;
const withExtra = <M>(message: M): M => ({ ...message, unknownKey: "dropped" });

const examples: Record<keyof typeof queues, Example<unknown>> = {
  jobs: example({
    definition: queues.jobs,
    valid: withExtra<MessageOf<typeof queues.jobs>>({ jobId: JOB, admittedBy: "modelslab" }),
    invalid: { jobId: JOB, admittedBy: "elsewhere" as "modelslab" },
    problem: "admittedBy: Invalid option",
  }),
  admissions: example({
    definition: queues.admissions,
    valid: withExtra<MessageOf<typeof queues.admissions>>({ jobId: JOB, admittedBy: "self-hosted" }),
    invalid: { jobId: JOB } as MessageOf<typeof queues.admissions>,
    problem: "admittedBy: Invalid option",
  }),
  results: example({
    definition: queues.results,
    valid: withExtra<MessageOf<typeof queues.results>>({
      jobId: JOB,
      provider: "self-hosted",
      attempt: 0,
      source: "worker",
      observedAt: "2026-01-01T00:00:00.000Z",
      result: {
        kind: "rejected",
        providerId: null,
        retryable: true,
        reason: "out of memory",
        retryAfterSeconds: null,
        httpStatus: null,
      },
    }),
    invalid: {
      jobId: JOB,
      provider: "self-hosted",
      attempt: 0,
      source: "worker",
      observedAt: "yesterday",
      result: { kind: "done", providerId: null, outputs: [], generationTimeSeconds: null, seed: null },
    },
    problem: "observedAt: Invalid ISO datetime",
  }),
  notifications: example({
    definition: queues.notifications,
    valid: withExtra<MessageOf<typeof queues.notifications>>({
      kind: "delivery",
      jobId: JOB,
      notificationId: `msg_${JOB}_succeeded`,
      attempt: 2,
      roundStart: 1,
      notBefore: 1_767_225_600_000,
    }),
    invalid: { kind: "job-event", jobId: JOB, status: "" },
    problem: "status: Too small",
  }),
  notificationsDeadLetters: example({
    definition: queues.notificationsDeadLetters,
    valid: withExtra<MessageOf<typeof queues.notificationsDeadLetters>>({
      kind: "notification-exhausted",
      jobId: JOB,
      notificationId: `msg_${JOB}_failed`,
    }),
    invalid: { kind: "notification-exhausted", jobId: "x".repeat(65), notificationId: "n" },
    problem: "jobId: Too big",
  }),
  fallback: example({
    definition: queues.fallback,
    valid: withExtra<MessageOf<typeof queues.fallback>>({
      jobId: JOB,
      tenantId: "acme",
      attempt: 0,
      request: REQUEST,
      outputsPrefix: `acme/${JOB}`,
    }),
    invalid: {
      jobId: JOB,
      tenantId: "acme",
      attempt: 0,
      request: REQUEST,
      outputsPrefix: "../elsewhere",
    },
    problem: "outputsPrefix: must not start or end with / or contain ..",
  }),
};

describe.each(Object.entries(implementations))("the Queue contract: %s", (_name, implementation) => {
  describe.each(Object.values(examples))("the $definition.name queue", (e) => {
    it("delivers a valid message as its schema parses it (unknown keys dropped)", async () => {
      const subject = await implementation(e.definition);
      await subject.queue.send(e.valid);
      const { unknownKey: _dropped, ...expected } = e.valid as Record<string, unknown>;
      expect(await subject.received()).toEqual([expected]);
    });

    it("refuses an invalid message with INVALID_QUEUE_MESSAGE and sends nothing", async () => {
      const subject = await implementation(e.definition);
      const error = await subject.queue.send(e.invalid).catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(InvalidMessageError);
      expect(error).toMatchObject({
        code: "INVALID_QUEUE_MESSAGE",
        kind: "internal",
        queue: e.definition.name,
      });
      expect((error as InvalidMessageError).problems.join("\n")).toContain(e.problem);
      expect(await subject.received()).toEqual([]);
    });
  });

  it("refuses an invalid message before trying the queue, even an unreachable one", async () => {
    const subject = await implementation(queues.jobs);
    const error = await subject
      .unavailable()
      .send({ jobId: "" })
      .catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(InvalidMessageError);
  });

  it("reports an unreachable queue as QUEUE_UNAVAILABLE", async () => {
    const subject = await implementation(queues.jobs);
    const error = await subject
      .unavailable()
      .send({ jobId: JOB })
      .catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(UnavailableError);
    expect(error).toMatchObject({ code: "QUEUE_UNAVAILABLE", kind: "unavailable" });
  });
});
