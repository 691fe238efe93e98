import { GetObjectCommand } from "@aws-sdk/client-s3";
import { ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { type ResultMessage, resultMessageSchema } from "../../shared/schemas/messages.ts";
import type { WorkerJobMessage } from "../../worker/src/messages.ts";
import type { Scheduler } from "../../worker/src/pipeline/scheduler.ts";
import { type RunningWorker, type StartWorkerOptions, startWorker } from "../../worker/src/start.ts";
import { captureLog, testSchedulers, tinyModel, useWorkerAws } from "./support.ts";

const aws = useWorkerAws();
let n = 0;

function queues() {
  n += 1;
  const fallback = aws.fauxqs.createQueue(`fallback-${n}`, { attributes: { VisibilityTimeout: "30" } });
  const results = aws.fauxqs.createQueue(`results-${n}`);
  return { fallback, results };
}

async function start(
  q: ReturnType<typeof queues>,
  over: Partial<StartWorkerOptions> = {},
): Promise<RunningWorker> {
  return startWorker({
    fallbackQueueUrl: q.fallback.queueUrl,
    resultsQueueUrl: q.results.queueUrl,
    outputsBucket: "outputs",
    modelDir: tinyModel(),
    executionProvider: "cpu",
    endpoints: {
      sqs: aws.fauxqs.address,
      s3: aws.fauxqs.address,
      region: aws.region,
      credentials: aws.credentials,
    },
    createScheduler: testSchedulers,
    fetchImage: async (url) => {
      throw new Error(`no network in tests: ${url}`);
    },
    log: captureLog().log,
    healthPort: null,
    threads: 1,
    ...over,
    service: { waitTimeSeconds: 1, heartbeatSeconds: 1, visibilityTimeoutSeconds: 30, ...over.service },
  });
}

function job(jobId: string, request: Partial<WorkerJobMessage["request"]> = {}): WorkerJobMessage {
  return {
    jobId,
    tenantId: "tenant-a",
    attempt: 1,
    outputsPrefix: `tenant-a/${jobId}`,
    request: {
      model_id: "sd15",
      controlnet_model: "canny",
      controlnet_type: "canny",
      prompt: "a photo of a lighthouse at dusk",
      control_image: aws.control,
      base64: "yes",
      auto_hint: "yes",
      width: 256,
      height: 256,
      num_inference_steps: 3,
      seed: 5,
      scheduler: "EulerDiscreteScheduler",
      ...request,
    } as WorkerJobMessage["request"],
  };
}

async function send(queueUrl: string, body: unknown): Promise<void> {
  await aws.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(body) }));
}

async function nextResult(queueUrl: string, timeoutMs = 20_000): Promise<ResultMessage> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const out = await aws.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1, MaxNumberOfMessages: 1 }),
    );
    const m = out.Messages?.[0];
    if (m) return resultMessageSchema.parse(JSON.parse(m.Body ?? ""));
  }
  throw new Error("no result message");
}

const counts = (name: string) => {
  const q = aws.fauxqs.inspectQueue(name);
  return { ready: q?.messages.ready.length ?? -1, inflight: q?.messages.inflight.length ?? -1 };
};

describe("worker service on fauxqs (SQS + S3)", () => {
  it("takes a job from the fallback queue to PNGs in S3 and a done result; deletes the message", async () => {
    const q = queues();
    const worker = await start(q, { healthPort: 0 });
    try {
      const health = await fetch(worker.healthUrl as string);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ provider: "cpu" });
      await send(q.fallback.queueUrl, job("job-ok", { samples: 2 }));
      const result = await nextResult(q.results.queueUrl);
      expect(result).toMatchObject({ jobId: "job-ok", source: "worker" });
      if (result.result.kind !== "done") throw new Error(JSON.stringify(result));
      expect(result.result.seed).toBe(5);
      expect(result.result.outputs).toEqual([
        { kind: "url", url: "s3://outputs/tenant-a/job-ok/0.png" },
        { kind: "url", url: "s3://outputs/tenant-a/job-ok/1.png" },
      ]);
      const object = await aws.s3.send(
        new GetObjectCommand({ Bucket: "outputs", Key: "tenant-a/job-ok/0.png" }),
      );
      expect(object.ContentType).toBe("image/png");
      const meta = await sharp(
        Buffer.from(
          await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
        ),
      ).metadata();
      expect(meta).toMatchObject({ format: "png", width: 256, height: 256 });
      await expect.poll(() => counts(`fallback-${n}`)).toEqual({ ready: 0, inflight: 0 });
      expect(worker.service.health().completed).toBe(1);
    } finally {
      await worker.stop();
    }
  });

  it("fails bad input with a clear message, reports a missing model as retryable, and keeps going", async () => {
    const q = queues();
    const worker = await start(q);
    try {
      await send(
        q.fallback.queueUrl,
        job("job-depth", { controlnet_model: "depth", controlnet_type: "depth" }),
      );
      const bad = await nextResult(q.results.queueUrl);
      expect(bad).toMatchObject({
        jobId: "job-depth",
        // The result of the attempt the message named, as the self-hosted provider's.
        provider: "self-hosted",
        attempt: 1,
        result: {
          kind: "rejected",
          retryable: false,
          reason: expect.stringContaining("annotator model not installed"),
        },
      });
      await send(
        q.fallback.queueUrl,
        job("job-mlsd", { controlnet_model: "mlsd", controlnet_type: "mlsd", auto_hint: "no" }),
      );
      const missing = await nextResult(q.results.queueUrl);
      expect(missing).toMatchObject({
        jobId: "job-mlsd",
        result: { kind: "rejected", retryable: true, reason: expect.stringContaining("model not installed") },
      });
      // Invalid, but it names its job and attempt: the attempt is reported as failed.
      await send(q.fallback.queueUrl, { jobId: "job-garbage", attempt: 2, request: { nope: true } });
      const garbage = await nextResult(q.results.queueUrl);
      expect(garbage).toMatchObject({
        jobId: "job-garbage",
        provider: "self-hosted",
        attempt: 2,
        result: { kind: "rejected", retryable: false },
      });
      await expect.poll(() => counts(`fallback-${n}`)).toEqual({ ready: 0, inflight: 0 });
    } finally {
      await worker.stop();
    }
  });

  /** A scheduler whose steps take ~40 ms, so a job is still running when stop() comes. */
  const slowSchedulers = (name: string, config?: Record<string, unknown>): Scheduler => {
    const inner = testSchedulers(name, config);
    return new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === "step")
          return (...args: Parameters<Scheduler["step"]>) => {
            const until = Date.now() + 40;
            while (Date.now() < until) {}
            return target.step(...args);
          };
        const value = Reflect.get(target, prop, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };

  it("SIGTERM drain: a job that cannot finish in time is released at once (visibility 0), no result", async () => {
    const q = queues();
    const worker = await start(q, { createScheduler: slowSchedulers, service: { drainTimeoutMs: 100 } });
    await send(q.fallback.queueUrl, job("job-drain", { num_inference_steps: 50 }));
    await expect.poll(() => worker.service.health().state, { timeout: 10_000 }).toBe("busy");
    await worker.stop();
    // Released, not run to the end: stop() did not wait for the job's 50 slow steps.
    expect(worker.service.health()).toMatchObject({ state: "stopped", released: 1, completed: 0 });
    expect(counts(`fallback-${n}`)).toEqual({ ready: 1, inflight: 0 });
    expect(counts(`results-${n}`).ready).toBe(0);
  });

  it("SIGTERM drain: a job that can finish within the stop timeout finishes, then the worker stops", async () => {
    const q = queues();
    const worker = await start(q, { createScheduler: slowSchedulers, service: { drainTimeoutMs: 20_000 } });
    await send(q.fallback.queueUrl, job("job-finish", { num_inference_steps: 8 }));
    await expect.poll(() => worker.service.health().state, { timeout: 10_000 }).toBe("busy");
    await worker.stop();
    expect(worker.service.health()).toMatchObject({ state: "stopped", completed: 1, released: 0 });
    const result = await nextResult(q.results.queueUrl);
    expect(result).toMatchObject({ jobId: "job-finish", result: { kind: "done" } });
    expect(counts(`fallback-${n}`)).toEqual({ ready: 0, inflight: 0 });
  });
});
