/**
 * Composition helpers shared by the function entry points: each function's `createHandler(env)`
 * creates its clients once, at cold start, and passes them in.
 */

import type { Logger } from "@aws-lambda-powertools/logger";
import type { SQSClient } from "@aws-sdk/client-sqs";
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import type { Environment } from "../adapters/aws-client.ts";
import { DynamoJobStore } from "../adapters/dynamo/job-store.ts";
import { createEventBridgeClient, EventBridgePublisher } from "../adapters/eventbridge/publisher.ts";
import { type DownloadPolicy, SafeDownloader } from "../adapters/http/safe-fetch.ts";
import { SqsQueue } from "../adapters/sqs/queue.ts";
import { type Clock, type JobStore, type ObjectStore, systemClock } from "../ports/index.ts";
import type { Metrics } from "../ports/metrics.ts";
import { queues } from "../schemas/messages.ts";
import { CopyFailed, copyOutput, discardJobOutputs, jobOutputsFolder } from "../usecases/copy-output.ts";
import { type OutputCopier, type OutputDiscarder, OutputRefused } from "../usecases/finalize-result.ts";
import { LifecycleJobStore } from "../usecases/lifecycle.ts";

/**
 * The job store every state-changing function uses: DynamoDB, announcing each change (events +
 * notification outbox) and measuring it (`metrics`).
 */
export function lifecycleJobStore(
  deps: { doc: DynamoDBDocumentClient; sqs: SQSClient; env: Environment; logger: Logger; metrics?: Metrics },
  config: {
    TABLE_NAME: string;
    NOTIFICATIONS_QUEUE_URL: string;
    EVENT_BUS_NAME: string;
    NOTIFY_GRACE_SECONDS: number;
    LIFECYCLE_EVENTS: "terminal" | "all" | "none";
  },
  clock: Clock = systemClock,
): JobStore {
  const { doc, sqs, env, logger, metrics } = deps;
  return new LifecycleJobStore(new DynamoJobStore(doc, config.TABLE_NAME, { clock }), {
    ...(metrics && { metrics }),
    notifications: new SqsQueue(sqs, config.NOTIFICATIONS_QUEUE_URL, queues.notifications),
    events: new EventBridgePublisher(createEventBridgeClient(env), config.EVENT_BUS_NAME),
    clock,
    notifyGraceSeconds: config.NOTIFY_GRACE_SECONDS,
    publish: config.LIFECYCLE_EVENTS,
    log: (message, data) => logger.warn(message, data),
  });
}

export function downloadPolicy(config: {
  NETWORK_POLICY: "aws" | "local";
  PROVIDER_OUTPUT_HOSTS?: string[];
  OUTPUT_MAX_BYTES: number;
  OUTPUT_DOWNLOAD_TIMEOUT_SECONDS: number;
  OUTPUT_RETRY_FOR_SECONDS: number;
}): DownloadPolicy {
  return {
    mode: config.NETWORK_POLICY,
    allowedHosts: config.PROVIDER_OUTPUT_HOSTS ?? [],
    maxBytes: config.OUTPUT_MAX_BYTES,
    timeoutMs: config.OUTPUT_DOWNLOAD_TIMEOUT_SECONDS * 1000,
    retryForMs: config.OUTPUT_RETRY_FOR_SECONDS * 1000,
  };
}

/**
 * Finalize's output copier: provider output → outputs bucket `{tenant}/{jobId}/{index}.{ext}`, URLs
 * downloaded over HTTP under `policy` (`SafeDownloader`). A worker's output (`s3://<bucket>/…`,
 * already in this bucket) is read back and described; `s3://` URLs of any other bucket are refused.
 */
export function s3OutputCopier(store: ObjectStore, bucket: string, policy: DownloadPolicy): OutputCopier {
  const deps = {
    store,
    ownBucket: bucket,
    downloader: new SafeDownloader(policy),
    limits: { maxBytes: policy.maxBytes, retryForMs: policy.retryForMs },
  };
  return async (job, output, index) => {
    try {
      const copied = await copyOutput(deps, {
        source: output,
        keyPrefix: `${jobOutputsFolder(job)}${index}`,
      });
      return { url: `s3://${bucket}/${copied.key}`, ...copied };
    } catch (error) {
      if (error instanceof CopyFailed) throw new OutputRefused(error.message, `OUTPUT_${error.code}`);
      throw error;
    }
  };
}

/** Finalize's discarder: empties the job's folder of the outputs bucket (a job that did not succeed keeps nothing there). */
export function s3OutputDiscarder(store: ObjectStore, logger: Pick<Logger, "info">): OutputDiscarder {
  return async (job) => {
    const removed = await discardJobOutputs(store, job);
    if (removed > 0)
      logger.info("discarded the outputs of a job that did not succeed", { jobId: job.id, removed });
  };
}
