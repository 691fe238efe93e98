/**
 * The worker long-polls its queue for longer than its SQS client's request timeout: each receive asks
 * for the time its wait needs (`receiveTimeoutMs`), so an empty poll is not cut and logged as a failure.
 */
import { expect, it } from "vitest";
import { createSqsClient } from "../../shared/adapters/sqs/queue.ts";
import { startWorker } from "../../worker/src/start.ts";
import { waitFor } from "../support/wait.ts";
import { captureLog, modelRoot, testSchedulers, tinyEntry, tinyModel, useWorkerAws } from "./support.ts";

const aws = useWorkerAws();

it("polls an empty queue for longer than the client's request timeout without a failed receive", async () => {
  const fallback = aws.fauxqs.createQueue("fallback-long-poll");
  const results = aws.fauxqs.createQueue("results-long-poll");
  const sqs = createSqsClient({
    endpoint: aws.fauxqs.address,
    region: aws.region,
    credentials: aws.credentials,
    // Shorter than the one-second wait below.
    timeouts: { requestTimeoutMs: 300 },
  });
  const { log, lines } = captureLog();
  const worker = await startWorker({
    fallbackQueueUrl: fallback.queueUrl,
    resultsQueueUrl: results.queueUrl,
    outputsBucket: "outputs",
    modelDir: modelRoot({ sd15: tinyModel() }),
    catalog: [tinyEntry("sd15")],
    executionProvider: "cpu",
    sqs,
    endpoints: { s3: aws.fauxqs.address, region: aws.region, credentials: aws.credentials },
    createScheduler: testSchedulers,
    fetchImage: async (url) => {
      throw new Error(`no network in tests: ${url}`);
    },
    log,
    healthPort: null,
    threads: 1,
    service: { waitTimeSeconds: 1 },
  });
  try {
    // Three polls started: the first two have ended, each after its one-second wait or a failure.
    const started = new Set<string>();
    await waitFor(
      () => {
        const at = worker.service.health().lastPollAt;
        if (at) started.add(at);
        return started.size >= 3;
      },
      { what: "three polls", timeoutMs: 15_000 },
    );
    expect(lines.filter((line) => line.message === "receive failed")).toEqual([]);
  } finally {
    await worker.stop();
    sqs.destroy();
  }
});
