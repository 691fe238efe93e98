import { SendMessageCommand, SQSClient, type SQSClientConfig } from "@aws-sdk/client-sqs";
import { UnavailableError } from "../../domain/errors.ts";
import type { Queue, SendOptions } from "../../ports/index.ts";
import { encodeMessage, type QueueDefinition } from "../../schemas/queue.ts";
import {
  AWS_CLIENT_DEFAULTS,
  type BoundedClientOptions,
  boundedHttpHandler,
  type Environment,
  serviceLocation,
} from "../aws-client.ts";

/** SQS's own bound on per-message delay. */
export const MAX_DELAY_SECONDS = 900;

/**
 * Create once per function and inject. Region and endpoint come from `env` (`AWS_REGION`,
 * `AWS_ENDPOINT_URL_SQS`, ...: `serviceLocation`), credentials from the SDK's default chain, unless
 * `options` overrides them.
 */
export function createSqsClient(
  options: SQSClientConfig & BoundedClientOptions = {},
  env: Environment = process.env,
): SQSClient {
  const { timeouts, ...config } = options;
  return new SQSClient({
    maxAttempts: AWS_CLIENT_DEFAULTS.maxAttempts,
    requestHandler: boundedHttpHandler(timeouts),
    // Address requests to the configured (or regional) endpoint, not to the host inside the queue
    // URL: the same in AWS, and what makes emulators with their own URL scheme work.
    useQueueUrlAsEndpoint: false,
    ...serviceLocation(env, "SQS"),
    ...config,
  });
}

/**
 * The request timeout of a ReceiveMessage that long-polls for `waitSeconds`: SQS answers only when that
 * wait is over, so the client's timeout comes on top of it. Pass it with the call:
 * `sqs.send(receive, { requestTimeout: receiveTimeoutMs(wait) })`.
 */
export const receiveTimeoutMs = (waitSeconds: number): number =>
  waitSeconds * 1_000 + AWS_CLIENT_DEFAULTS.requestTimeoutMs;

/** Whole seconds in SQS's 0..900 range; rounded up so a message is never delivered earlier than asked. */
export function clampDelaySeconds(seconds: number): number {
  if (!Number.isFinite(seconds)) return seconds > 0 ? MAX_DELAY_SECONDS : 0;
  return Math.min(MAX_DELAY_SECONDS, Math.max(0, Math.ceil(seconds)));
}

/** The queue `definition` declares, at `queueUrl`: each message is checked against its schema before it is sent. */
export class SqsQueue<M> implements Queue<M> {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
    private readonly definition: QueueDefinition<M>,
  ) {}

  async send(message: M, options: SendOptions = {}): Promise<void> {
    // Outside the try: an invalid message is the sender's bug, not an unavailable queue.
    const body = encodeMessage(this.definition, message);
    try {
      await this.sqs.send(
        new SendMessageCommand({
          QueueUrl: this.queueUrl,
          MessageBody: body,
          // Left out when not asked for, so the queue's own default delay applies.
          DelaySeconds:
            options.delaySeconds === undefined ? undefined : clampDelaySeconds(options.delaySeconds),
        }),
      );
    } catch (error) {
      throw new UnavailableError(
        "QUEUE_UNAVAILABLE",
        `Could not send to the ${this.definition.name} queue (${queueName(this.queueUrl)}).`,
        { cause: error },
      );
    }
  }
}

const queueName = (url: string): string => url.slice(url.lastIndexOf("/") + 1) || url;
