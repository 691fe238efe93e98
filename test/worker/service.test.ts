import { createServer, type Server } from "node:http";
import net, { type AddressInfo } from "node:net";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Connector } from "../../shared/adapters/http/guarded-connection.ts";
import { type ResultMessage, resultMessageSchema } from "../../shared/schemas/messages.ts";
import type { WorkerJobMessage } from "../../worker/src/messages.ts";
import type { Scheduler } from "../../worker/src/pipeline/scheduler.ts";
import { type RunningWorker, type StartWorkerOptions, startWorker } from "../../worker/src/start.ts";
import { captureLog, modelRoot, testSchedulers, tinyEntry, tinyModel, useWorkerAws } from "./support.ts";

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
    modelDir: modelRoot({ sd15: tinyModel() }),
    catalog: [tinyEntry("sd15")],
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

  it("fails bad input with a clear message, reports what the model lacks as retryable, and keeps going", async () => {
    const q = queues();
    const worker = await start(q);
    try {
      await send(q.fallback.queueUrl, job("job-karras-ve", { scheduler: "KarrasVeScheduler" }));
      const bad = await nextResult(q.results.queueUrl);
      expect(bad).toMatchObject({
        jobId: "job-karras-ve",
        // The result of the attempt the message named, as the self-hosted provider's.
        provider: "self-hosted",
        attempt: 1,
        result: { kind: "rejected", retryable: false, reason: expect.stringContaining("KarrasVeScheduler") },
      });
      // An annotator without weights is what this model lacks, never a permanent failure of the job.
      await send(
        q.fallback.queueUrl,
        job("job-depth", { controlnet_model: "depth", controlnet_type: "depth" }),
      );
      const weightless = await nextResult(q.results.queueUrl);
      expect(weightless).toMatchObject({
        jobId: "job-depth",
        result: { kind: "rejected", retryable: true, reason: expect.stringContaining("auto_hint") },
      });
      await send(
        q.fallback.queueUrl,
        job("job-mlsd", { controlnet_model: "mlsd", controlnet_type: "mlsd", auto_hint: "no" }),
      );
      const missing = await nextResult(q.results.queueUrl);
      expect(missing).toMatchObject({
        jobId: "job-mlsd",
        result: { kind: "rejected", retryable: true, reason: expect.stringContaining("controlnet_model") },
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

describe("worker input images under the Lambdas' address policy", () => {
  let server: Server;
  let port: number;
  const served: string[] = [];
  beforeAll(async () => {
    const png = Buffer.from(aws.control, "base64");
    server = createServer((req, res) => {
      served.push(req.url ?? "");
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/control.png") res.writeHead(200, { "content-type": "image/png" }).end(png);
      else if (url.pathname === "/redirect")
        res.writeHead(302, { location: url.searchParams.get("to") ?? "/control.png" }).end();
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /**
   * aws rules over loopback: cdn.test resolves to a public address, rebind.test to the metadata
   * address; a socket to the checked public address is routed to the test server (nothing else is).
   */
  const PUBLIC = "93.184.216.34";
  const connected: string[] = [];
  const imageConnect = {
    resolve: async (host: string) => [
      { address: host === "rebind.test" ? "169.254.169.254" : PUBLIC, family: 4 },
    ],
    transport: ((options, callback) => {
      connected.push(options.hostname);
      if (options.hostname !== PUBLIC) {
        callback(new Error(`test transport asked for ${options.hostname}`), null);
        return;
      }
      const socket = net.connect({ host: "127.0.0.1", port });
      socket.once("connect", () => callback(null, socket));
      socket.once("error", (error) => callback(error, null));
    }) satisfies Connector,
  };

  const small = { width: 64, height: 64, num_inference_steps: 1, auto_hint: "no" } as const;

  /** Runs each [jobId, request] through one worker and answers the results by job id. */
  async function runAll(
    over: Partial<StartWorkerOptions>,
    jobs: [string, Partial<WorkerJobMessage["request"]>][],
  ): Promise<Map<string, ResultMessage>> {
    const q = queues();
    const worker = await start(q, { fetchImage: undefined, ...over });
    try {
      for (const [id, request] of jobs) await send(q.fallback.queueUrl, job(id, { ...small, ...request }));
      const results = new Map<string, ResultMessage>();
      while (results.size < jobs.length) {
        const result = await nextResult(q.results.queueUrl);
        results.set(result.jobId, result);
      }
      return results;
    } finally {
      await worker.stop();
    }
  }

  const refused = (field: string, code: string) => ({
    result: {
      kind: "rejected",
      retryable: false,
      reason: expect.stringMatching(new RegExp(`^${field}: the image could not be fetched \\(${code}\\)`)),
    },
  });

  it("aws: refuses loopback, private, metadata and rebound addresses and plain http, naming the field; never connects", async () => {
    connected.length = 0;
    served.length = 0;
    const results = await runAll({ imageDownloads: { mode: "aws" }, imageConnect }, [
      ["job-loopback", { control_image: `https://127.0.0.1:${port}/control.png` }],
      ["job-loopback-443", { control_image: "https://127.0.0.1/control.png" }],
      ["job-metadata", { control_image: "https://169.254.169.254/latest/meta-data/" }],
      ["job-private", { control_image: "https://10.0.0.1/control.png" }],
      ["job-rebind", { control_image: "https://rebind.test/control.png" }],
      ["job-http", { control_image: `http://127.0.0.1:${port}/control.png` }],
      ["job-init", { init_image: "https://[::ffff:7f00:1]/control.png", control_image: aws.control }],
      // The mask counts (and is fetched) only with the inpaint ControlNet.
      [
        "job-mask",
        {
          controlnet_model: "canny,inpaint",
          init_image: aws.control,
          mask_image: "https://192.168.1.1/mask.png",
        },
      ],
    ]);
    expect(results.get("job-loopback")).toMatchObject(refused("control_image", "URL_NOT_ALLOWED"));
    expect(results.get("job-loopback-443")).toMatchObject(refused("control_image", "ADDRESS_NOT_ALLOWED"));
    expect(results.get("job-metadata")).toMatchObject(refused("control_image", "ADDRESS_NOT_ALLOWED"));
    expect(results.get("job-private")).toMatchObject(refused("control_image", "ADDRESS_NOT_ALLOWED"));
    expect(results.get("job-rebind")).toMatchObject(refused("control_image", "ADDRESS_NOT_ALLOWED"));
    expect(results.get("job-http")).toMatchObject(refused("control_image", "URL_NOT_ALLOWED"));
    expect(results.get("job-init")).toMatchObject(refused("init_image", "ADDRESS_NOT_ALLOWED"));
    expect(results.get("job-mask")).toMatchObject(refused("mask_image", "ADDRESS_NOT_ALLOWED"));
    expect(connected).toEqual([]);
    expect(served).toEqual([]);
  });

  it("aws: checks redirects (another host, a private target, plain http) and follows one that passes", async () => {
    connected.length = 0;
    served.length = 0;
    const via = (to: string) => `https://cdn.test/redirect?to=${encodeURIComponent(to)}`;
    const results = await runAll({ imageDownloads: { mode: "aws" }, imageConnect }, [
      ["job-to-metadata", { control_image: via("https://169.254.169.254/latest/meta-data/") }],
      ["job-to-loopback", { control_image: via(`http://127.0.0.1:${port}/control.png`) }],
      ["job-to-http", { control_image: via("http://cdn.test/control.png") }],
      ["job-to-same-host", { control_image: via("/control.png") }],
      ["job-direct", { control_image: "https://cdn.test/control.png" }],
    ]);
    expect(results.get("job-to-metadata")).toMatchObject(refused("control_image", "REDIRECT_NOT_ALLOWED"));
    expect(results.get("job-to-loopback")).toMatchObject(refused("control_image", "REDIRECT_NOT_ALLOWED"));
    expect(results.get("job-to-http")).toMatchObject(refused("control_image", "REDIRECT_NOT_ALLOWED"));
    expect(results.get("job-to-same-host")).toMatchObject({ result: { kind: "done" } });
    expect(results.get("job-direct")).toMatchObject({ result: { kind: "done" } });
    // Only the checked public address was ever connected to; the refused targets were never asked for.
    expect(new Set(connected)).toEqual(new Set([PUBLIC]));
    expect(served.filter((url) => url === "/control.png")).toHaveLength(2);
  });

  it("aws: a body over the size limit is refused; local mode (the local stack's S3 emulator) fetches from loopback", async () => {
    const tooBig = await runAll({ imageDownloads: { mode: "aws", maxBytes: 1024 }, imageConnect }, [
      ["job-big", { control_image: "https://cdn.test/control.png" }],
    ]);
    expect(tooBig.get("job-big")).toMatchObject(refused("control_image", "TOO_LARGE"));
    const local = await runAll({ imageDownloads: { mode: "local" } }, [
      ["job-local", { control_image: `http://127.0.0.1:${port}/control.png` }],
      ["job-local-metadata", { control_image: "http://169.254.169.254/latest/meta-data/" }],
    ]);
    expect(local.get("job-local")).toMatchObject({ result: { kind: "done" } });
    expect(local.get("job-local-metadata")).toMatchObject(refused("control_image", "ADDRESS_NOT_ALLOWED"));
  });
});
