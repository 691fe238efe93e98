/**
 * The worker's health from the first moment: syncing → warming → ready over HTTP, and unhealthy with
 * the reason when it cannot work (CUDA asked for and missing, models that cannot be synced) — on fauxqs
 * (SQS + S3) with the tiny model, and through main.ts as ECS starts it.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { describe, expect, it } from "vitest";
import { type HealthReport, startHealthServer, WorkerHealth } from "../../worker/src/health.ts";
import { CudaUnavailableError } from "../../worker/src/pipeline/session.ts";
import { type LaunchedWorker, launchWorker, type StartWorkerOptions } from "../../worker/src/start.ts";
import { waitFor } from "../support/wait.ts";
import { captureLog, modelRoot, testSchedulers, tinyEntry, tinyModel, useWorkerAws } from "./support.ts";

const aws = useWorkerAws();
let n = 0;

function queues() {
  n += 1;
  return {
    fallback: aws.fauxqs.createQueue(`health-fallback-${n}`),
    results: aws.fauxqs.createQueue(`health-results-${n}`),
  };
}

function options(q: ReturnType<typeof queues>, over: Partial<StartWorkerOptions> = {}): StartWorkerOptions {
  return {
    fallbackQueueUrl: q.fallback.queueUrl,
    resultsQueueUrl: q.results.queueUrl,
    outputsBucket: "outputs",
    catalog: [tinyEntry("tiny")],
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
    healthPort: 0,
    threads: 1,
    service: { waitTimeSeconds: 1 },
    ...over,
  };
}

async function get(url: string): Promise<{ status: number; body: HealthReport }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as HealthReport };
}

/** Uploads the tiny model folder under `prefix` of a new bucket. */
async function uploadTinyModel(bucket: string, prefix: string): Promise<void> {
  aws.fauxqs.createBucket(bucket);
  const root = tinyModel();
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      return statSync(path).isDirectory() ? walk(path) : [path];
    });
  for (const path of walk(root)) {
    await aws.s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `${prefix}${relative(root, path)}`,
        Body: readFileSync(path),
      }),
    );
  }
}

/** An S3 client on fauxqs whose GetObject calls wait until `open()`: the sync is held in progress. */
function gatedS3(): { s3: S3Client; open(): void; waiting(): number } {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let waiting = 0;
  const s3 = new S3Client({
    endpoint: aws.fauxqs.address,
    region: aws.region,
    credentials: aws.credentials,
    forcePathStyle: true,
  });
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === "GetObjectCommand") {
        waiting++;
        await gate;
      }
      return next(args);
    },
    { step: "initialize", name: "holdGets" },
  );
  return { s3, open: () => release(), waiting: () => waiting };
}

describe("worker health endpoint", () => {
  it("answers from the start: syncing while the models sync, then warming, then ready", async () => {
    await uploadTinyModel("models-health", "tiny/");
    const gated = gatedS3();
    const q = queues();
    const modelDir = mkdtempSync(join(tmpdir(), "health-models-"));
    let worker: LaunchedWorker | null = null;
    try {
      worker = await launchWorker(
        options(q, {
          s3: gated.s3,
          catalog: [tinyEntry("tiny", { s3Uri: "s3://models-health/tiny/" })],
          // A fresh folder: one that holds this model already would need no GetObject at all.
          modelDir,
        }),
      );
      const url = worker.healthUrl as string;
      await waitFor(() => gated.waiting() > 0, { what: "the sync's first GetObject" });
      const syncing = await get(url);
      expect(syncing.status).toBe(200);
      expect(syncing.body).toMatchObject({
        status: "syncing",
        reason: null,
        detail: { uri: "s3://models-health/tiny/" },
      });
      expect((await get(url.replace("/health", "/ready"))).status).toBe(503);

      gated.open();
      const running = await worker.ready;
      expect(running.provider).toBe("cpu");
      const ready = await get(url.replace("/health", "/ready"));
      expect(ready.status).toBe(200);
      expect(ready.body).toMatchObject({
        status: "ready",
        provider: "cpu",
        detail: { worker: { state: "idle" } },
      });
      expect(worker.health.phases).toEqual(["starting", "syncing", "warming", "ready"]);
      await worker.stop();

      // The next task on the same instance (the same host folder) downloads nothing.
      const { log, lines } = captureLog();
      worker = await launchWorker(
        options(q, { catalog: [tinyEntry("tiny", { s3Uri: "s3://models-health/tiny/" })], modelDir, log }),
      );
      await worker.ready;
      const synced = lines.find((l) => l.message === "models synced from S3");
      expect(synced?.fields).toMatchObject({ downloaded: 0, bytes: 0 });
      expect(synced?.fields.kept).toBeGreaterThan(5);
    } finally {
      await worker?.stop();
      gated.s3.destroy();
    }
  });

  it("a model sync that fails makes it unhealthy with the reason; it does not poll", async () => {
    const q = queues();
    const worker = await launchWorker(
      options(q, { catalog: [tinyEntry("tiny", { s3Uri: "s3://no-such-bucket/models/" })], modelDir: null }),
    );
    try {
      await expect(worker.ready).rejects.toThrow();
      const health = await get(worker.healthUrl as string);
      expect(health.status).toBe(503);
      expect(health.body.status).toBe("unhealthy");
      expect(health.body.reason).toMatch(/no-such-bucket/);
      expect(worker.health.phases).toEqual(["starting", "syncing", "unhealthy"]);
    } finally {
      await worker.stop();
    }
  });

  it("EXECUTION_PROVIDER=cuda without a working CUDA: unhealthy with the reason, before any sync, and no job taken", async () => {
    const q = queues();
    await aws.sqs.send(new SendMessageCommand({ QueueUrl: q.fallback.queueUrl, MessageBody: "{}" }));
    const worker = await launchWorker(
      options(q, {
        executionProvider: "cuda",
        // Never reached: CUDA is checked first.
        catalog: [tinyEntry("tiny", { s3Uri: "s3://no-such-bucket/models/" })],
        modelDir: mkdtempSync(join(tmpdir(), "health-models-")),
      }),
    );
    try {
      const error = await worker.ready.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CudaUnavailableError);
      const health = await get(worker.healthUrl as string);
      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({ status: "unhealthy", provider: null });
      expect(health.body.reason).toMatch(
        /^CUDA execution provider unavailable \(EXECUTION_PROVIDER=cuda\): .+/,
      );
      expect(worker.health.phases).toEqual(["starting", "unhealthy"]);
      const fallback = aws.fauxqs.inspectQueue(`health-fallback-${n}`);
      expect(fallback?.messages.ready.length).toBe(1);
    } finally {
      await worker.stop();
    }
  });

  it("EXECUTION_PROVIDER=auto without CUDA: ready on the CPU, with a warning", async () => {
    const q = queues();
    const { log, lines } = captureLog();
    const worker = await launchWorker(
      options(q, { executionProvider: "auto", modelDir: modelRoot({ tiny: tinyModel() }), log }),
    );
    try {
      const running = await worker.ready;
      expect(running.provider).toBe("cpu");
      const health = await get(worker.healthUrl as string);
      expect(health).toMatchObject({ status: 200, body: { status: "ready", provider: "cpu" } });
      expect(lines.some((l) => l.level === "warn" && /falling back to the CPU/.test(l.message))).toBe(true);
    } finally {
      await worker.stop();
    }
  });

  it("main.ts as the ECS task runs it: CUDA asked for and missing keeps answering 503 with the reason until SIGTERM", async () => {
    const q = queues();
    const child = spawn(process.execPath, ["--import", "tsx", "worker/src/main.ts"], {
      env: {
        ...process.env,
        FALLBACK_QUEUE_URL: q.fallback.queueUrl,
        RESULTS_QUEUE_URL: q.results.queueUrl,
        OUTPUTS_BUCKET: "outputs",
        MODEL_DIR: modelRoot({ tiny: tinyModel() }),
        SELF_HOSTED_MODELS: JSON.stringify([tinyEntry("tiny")]),
        EXECUTION_PROVIDER: "cuda",
        HEALTH_PORT: "0",
        AWS_REGION: aws.region,
        AWS_ENDPOINT_URL: aws.fauxqs.address,
        AWS_ACCESS_KEY_ID: "local",
        AWS_SECRET_ACCESS_KEY: "local",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      out += c.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      const healthUrl = await waitFor(() => /"healthUrl":"([^"]+)"/.exec(out)?.[1], {
        what: "the health endpoint's log line",
        timeoutMs: 25_000,
      });
      const health = await waitFor(
        async () => {
          const h = await get(healthUrl);
          return h.status === 503 ? h : null;
        },
        { what: "an unhealthy answer" },
      );
      expect(health.body.reason).toMatch(/CUDA execution provider unavailable/);
      expect(child.exitCode).toBeNull();
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});

describe("WorkerHealth", () => {
  it("turns unhealthy for good when a failure is found after it was ready (CUDA gone for a new session)", async () => {
    const health = new WorkerHealth();
    health.enter("ready");
    const server = await startHealthServer(health, 0);
    try {
      expect((await get(server.url)).status).toBe(200);
      const reason = "CUDA execution provider unavailable (EXECUTION_PROVIDER=cuda): device lost";
      health.fail(reason);
      const answer = await get(server.url);
      expect(answer.status).toBe(503);
      expect(answer.body).toMatchObject({ status: "unhealthy", reason });
      health.enter("ready");
      expect((await get(server.url)).body.status).toBe("unhealthy");
      expect((await fetch(server.url, { method: "POST" })).status).toBe(405);
      expect((await fetch(server.url.replace("/health", "/metrics"))).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});
