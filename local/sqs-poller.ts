import {
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import type { SQSEvent, SQSRecord } from "aws-lambda";
import { receiveTimeoutMs } from "../shared/adapters/sqs/queue.ts";
import type { LocalFunction } from "./lambda-runtime.ts";

/** How long each receive waits for messages (its long poll). */
const WAIT_SECONDS = 1;

export interface EventSourceMapping {
  queueUrl: string;
  queueArn: string;
  function: LocalFunction;
  batchSize: number;
  maxBatchingWindowSeconds: number;
  reportBatchItemFailures: boolean;
  maxConcurrency: number;
}

/**
 * Lambda's SQS event source mapping, locally: long-polls the queue, hands batches to the handler as
 * real SQS events, deletes what succeeded and leaves the rest to reappear after the visibility timeout
 * (and, past maxReceiveCount, to be moved to the DLQ by the queue's redrive policy).
 */
export class SqsPoller {
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];
  private paused = false;

  constructor(
    private readonly sqs: SQSClient,
    private readonly mapping: EventSourceMapping,
    private readonly onError: (error: unknown) => void = (error) => console.error("poller", error),
  ) {}

  start(): void {
    for (let i = 0; i < this.mapping.maxConcurrency; i++) this.loops.push(this.loop());
  }

  /** Stops polling (for fault injection: a consumer that is down). Messages wait in the queue. */
  pause(paused: boolean): void {
    this.paused = paused;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.loops);
    this.loops = [];
  }

  private async loop(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      if (this.paused) {
        await delay(50, signal);
        continue;
      }
      let messages: Message[] = [];
      try {
        const received = await this.sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: this.mapping.queueUrl,
            MaxNumberOfMessages: Math.min(10, this.mapping.batchSize),
            WaitTimeSeconds: WAIT_SECONDS,
            MessageSystemAttributeNames: ["All"],
            MessageAttributeNames: ["All"],
          }),
          { abortSignal: signal, requestTimeout: receiveTimeoutMs(WAIT_SECONDS) },
        );
        messages = received.Messages ?? [];
      } catch (error) {
        if (signal.aborted) return;
        this.onError(error);
        await delay(200, signal);
        continue;
      }
      if (messages.length === 0) continue;
      await this.deliver(messages);
    }
  }

  private async deliver(messages: Message[]): Promise<void> {
    const event: SQSEvent = { Records: messages.map((m) => toRecord(m, this.mapping.queueArn)) };
    let failed: Set<string>;
    try {
      const result = (await this.mapping.function.invoke(event)) as
        | { batchItemFailures?: { itemIdentifier: string }[] }
        | undefined;
      failed = this.mapping.reportBatchItemFailures
        ? new Set((result?.batchItemFailures ?? []).map((f) => f.itemIdentifier))
        : new Set();
    } catch (error) {
      // A thrown error fails the whole batch, as in Lambda.
      this.onError(error);
      return;
    }
    const done = messages.filter((m) => m.MessageId && !failed.has(m.MessageId));
    if (done.length === 0) return;
    try {
      await this.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.mapping.queueUrl,
          Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
        }),
      );
    } catch (error) {
      this.onError(error);
    }
  }
}

function toRecord(message: Message, queueArn: string): SQSRecord {
  const attributes = message.Attributes ?? {};
  return {
    messageId: message.MessageId ?? "",
    receiptHandle: message.ReceiptHandle ?? "",
    body: message.Body ?? "",
    attributes: {
      ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? "1",
      SentTimestamp: attributes.SentTimestamp ?? String(Date.now()),
      SenderId: attributes.SenderId ?? "local",
      ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    },
    messageAttributes: Object.fromEntries(
      Object.entries(message.MessageAttributes ?? {}).map(([name, value]) => [
        name,
        {
          dataType: value.DataType ?? "String",
          ...(value.StringValue !== undefined && { stringValue: value.StringValue }),
        },
      ]),
    ),
    md5OfBody: message.MD5OfBody ?? "",
    eventSource: "aws:sqs",
    eventSourceARN: queueArn,
    awsRegion: queueArn.split(":")[3] ?? "us-east-1",
  };
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
