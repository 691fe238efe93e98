import { BatchProcessor, EventType, processPartialResponse } from "@aws-lambda-powertools/batch";
import type { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { InvalidMessageError } from "../domain/errors.ts";
import { decodeMessage, type QueueDefinition } from "../schemas/queue.ts";

export interface SqsConsumerOptions<M> {
  /** The queue it consumes (`shared/schemas/messages.ts`): each record's body is parsed with its schema. */
  queue: QueueDefinition<M>;
  /** One valid message; a throw reports the record failed (SQS delivers it again, then to the DLQ). */
  handle: (message: M, record: SQSRecord) => Promise<void>;
  logger: Logger;
  /** Handle a batch's records concurrently (the default) or one after another. */
  processInParallel?: boolean;
  /** Flushes the function's metrics after each batch (`createMetrics`' middleware). */
  metrics?: middy.MiddlewareObj;
}

/**
 * A Lambda SQS consumer: middy with the logger's Lambda context, Powertools' partial batch response
 * (`reportBatchItemFailures`), and each record parsed with its queue's schema before `handle` sees it.
 *
 * A record that is not a valid message is logged and reported failed like any other failure: SQS
 * delivers it again until the queue's maxReceiveCount and then moves it to the dead-letter queue,
 * where its alarm fires. It is not dropped: a body that fails the schema is either a sender's bug or
 * a message from an older or newer version of the code, and either deserves a look.
 *
 * A batch processor per invocation: its state (records, successes, failures) belongs to one batch.
 * Lambda runs one invocation at a time per environment (or keeps concurrent ones apart in its invoke
 * store), but the local stack's pollers invoke one handler with several batches at once.
 */
export function sqsConsumer<M>({
  queue,
  handle,
  logger,
  processInParallel = true,
  metrics,
}: SqsConsumerOptions<M>): middy.MiddyfiedHandler<SQSEvent, SQSBatchResponse> {
  const record = async (record: SQSRecord): Promise<void> => {
    let message: M;
    try {
      message = decodeMessage(queue, record.body);
    } catch (error) {
      if (error instanceof InvalidMessageError) {
        logger.error("invalid message; reported failed, so it ends in the dead-letter queue", {
          queue: queue.name,
          messageId: record.messageId,
          receiveCount: record.attributes.ApproximateReceiveCount,
          problems: error.problems,
        });
      }
      throw error;
    }
    await handle(message, record);
  };
  const handler = middy<SQSEvent, SQSBatchResponse>().use(injectLambdaContext(logger));
  if (metrics) handler.use(metrics);
  return handler.handler((event, context) =>
    processPartialResponse(event, record, new BatchProcessor(EventType.SQS), {
      context,
      processInParallel,
    }),
  );
}
