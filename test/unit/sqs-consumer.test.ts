import { Logger } from "@aws-lambda-powertools/logger";
import type { Context, SQSEvent, SQSRecord } from "aws-lambda";
import { describe, expect, it, vi } from "vitest";
import { sqsConsumer } from "../../shared/lambda/sqs-consumer.ts";
import { type DispatchMessage, queues } from "../../shared/schemas/messages.ts";

const context = (): Context => ({
  callbackWaitsForEmptyEventLoop: false,
  functionName: "dispatch",
  functionVersion: "$LATEST",
  invokedFunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:dispatch",
  memoryLimitInMB: "256",
  awsRequestId: "req-1",
  logGroupName: "/aws/lambda/dispatch",
  logStreamName: "local",
  getRemainingTimeInMillis: () => 30_000,
  done: () => undefined,
  fail: () => undefined,
  succeed: () => undefined,
});

const record = (messageId: string, body: string): SQSRecord => ({
  messageId,
  receiptHandle: `rh-${messageId}`,
  body,
  attributes: {
    ApproximateReceiveCount: "1",
    SentTimestamp: "0",
    SenderId: "local",
    ApproximateFirstReceiveTimestamp: "0",
  },
  messageAttributes: {},
  md5OfBody: "",
  eventSource: "aws:sqs",
  eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:jobs",
  awsRegion: "us-east-1",
});

const event = (...records: SQSRecord[]): SQSEvent => ({ Records: records });

const quietLogger = () => new Logger({ serviceName: "test", logLevel: "SILENT" });

/** Resolves when `release` is called: lets a test hold handlers in flight. */
const gate = () => {
  let release: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { opened, release };
};

describe("sqsConsumer", () => {
  it("hands each record's message to `handle` as the queue's schema parses it", async () => {
    const handled: DispatchMessage[] = [];
    const handler = sqsConsumer({
      queue: queues.jobs,
      logger: quietLogger(),
      handle: async (message) => {
        handled.push(message);
      },
    });
    const response = await handler(
      event(record("m1", JSON.stringify({ jobId: "01JA", extra: true })), record("m2", '{"jobId":"01JB"}')),
      context(),
    );
    expect(response).toEqual({ batchItemFailures: [] });
    expect(handled).toEqual(expect.arrayContaining([{ jobId: "01JA" }, { jobId: "01JB" }]));
    expect(handled).toHaveLength(2);
  });

  it("reports an invalid body failed (it reaches the DLQ after maxReceiveCount), logs why, and handles the rest", async () => {
    const logger = quietLogger();
    const logged = vi.spyOn(logger, "error");
    const handle = vi.fn(async (_message: DispatchMessage) => undefined);
    const handler = sqsConsumer({ queue: queues.jobs, logger, handle });
    const response = await handler(
      event(
        record("not-json", "{jobId"),
        record("bad", JSON.stringify({ jobId: "", admittedBy: 1.5 })),
        record("good", JSON.stringify({ jobId: "01JA" })),
      ),
      context(),
    );
    expect(response).toEqual({
      batchItemFailures: [{ itemIdentifier: "not-json" }, { itemIdentifier: "bad" }],
    });
    expect(handle.mock.calls).toEqual([[{ jobId: "01JA" }, expect.objectContaining({ messageId: "good" })]]);
    expect(logged).toHaveBeenCalledTimes(2);
    expect(logged.mock.calls[1]?.[1]).toMatchObject({
      queue: "jobs",
      messageId: "bad",
      problems: [
        "jobId: Too small: expected string to have >=1 characters",
        'admittedBy: Invalid option: expected one of "modelslab"|"self-hosted"',
      ],
    });
  });

  it("reports a record whose handling throws failed, and only that one", async () => {
    const handler = sqsConsumer({
      queue: queues.jobs,
      logger: quietLogger(),
      handle: async (message) => {
        if (message.jobId === "01JB") throw new Error("provider down");
      },
    });
    const response = await handler(
      event(record("a", '{"jobId":"01JA"}'), record("b", '{"jobId":"01JB"}')),
      context(),
    );
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: "b" }] });
  });

  it("keeps concurrent invocations' batches apart (the local stack polls with several at once)", async () => {
    const slow = gate();
    const handler = sqsConsumer({
      queue: queues.jobs,
      logger: quietLogger(),
      handle: async (message) => {
        if (message.jobId === "01JSLOW") await slow.opened;
        if (message.jobId === "01JFAIL") throw new Error("fails");
      },
    });
    const first = handler(event(record("slow", '{"jobId":"01JSLOW"}')), context());
    const second = handler(
      event(record("fail", '{"jobId":"01JFAIL"}'), record("ok", '{"jobId":"01JOK"}')),
      context(),
    );
    const secondResponse = await second;
    slow.release();
    expect(await first).toEqual({ batchItemFailures: [] });
    expect(secondResponse).toEqual({ batchItemFailures: [{ itemIdentifier: "fail" }] });
  });

  it("handles records one after another when processInParallel is off", async () => {
    let inFlight = 0;
    let most = 0;
    const handler = sqsConsumer({
      queue: queues.jobs,
      logger: quietLogger(),
      processInParallel: false,
      handle: async () => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((resolve) => setImmediate(resolve));
        inFlight--;
      },
    });
    await handler(event(record("a", '{"jobId":"01JA"}'), record("b", '{"jobId":"01JB"}')), context());
    expect(most).toBe(1);
  });
});
