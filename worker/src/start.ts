/**
 * startWorker(): everything the ECS entry point (main.ts) and the local stack need to run a worker:
 * model folder (synced from S3 when asked, or a tiny built one), sessions on CUDA or the CPU, the
 * service loop and the health endpoint.
 */
import { mkdirSync, mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import type { SafeConnectOptions } from "../../shared/adapters/http/guarded-connection.ts";
import { createS3Client } from "../../shared/adapters/s3/object-store.ts";
import { createSqsClient } from "../../shared/adapters/sqs/queue.ts";
import {
  DEFAULT_IMAGE_DOWNLOADS,
  type ImageDownloadPolicy,
  type ImageFetcher,
  safeImageFetcher,
} from "./images.ts";
import { syncModelsFromS3 } from "./model-sync.ts";
import { buildTinyModel } from "./models/tiny.ts";
import { ModelSet } from "./pipeline/models.ts";
import { ControlNetPipeline } from "./pipeline/pipeline.ts";
import { loadSchedulerFactory, type SchedulerFactory } from "./pipeline/scheduler.ts";
import { type ExecutionProvider, type Logger, SessionFactory } from "./pipeline/session.ts";
import { WorkerService, type WorkerServiceOptions } from "./service.ts";

export interface StartWorkerOptions {
  fallbackQueueUrl: string;
  resultsQueueUrl: string;
  outputsBucket: string;
  /** Diffusers-style ONNX folder. Without it (and without modelS3Uri) a tiny random model is built. */
  modelDir?: string | null;
  /** s3://bucket/prefix synced into modelDir at start. */
  modelS3Uri?: string | null;
  annotatorDir?: string | null;
  executionProvider?: ExecutionProvider;
  /** Health endpoint port: 0 for a random one, null for none. */
  healthPort?: number | null;
  sqs?: SQSClient;
  s3?: S3Client;
  /** Endpoint overrides for emulators (both SQS and S3), with region and credentials. */
  endpoints?: {
    sqs?: string;
    s3?: string;
    region?: string;
    credentials?: { accessKeyId: string; secretAccessKey: string };
  };
  /** How input images are fetched (the address policy's mode, size and time limits); aws rules by default. */
  imageDownloads?: Partial<ImageDownloadPolicy>;
  /** Connection seams of the image downloads (name resolution, transport); tests only. */
  imageConnect?: SafeConnectOptions;
  /** Replaces the image downloads altogether (tests without a network). */
  fetchImage?: ImageFetcher;
  createScheduler?: SchedulerFactory;
  log?: Logger;
  /** Caps num_inference_steps (defaults to 4 with the tiny model, else none). */
  maxSteps?: number | null;
  threads?: number;
  service?: Partial<
    Pick<
      WorkerServiceOptions,
      "visibilityTimeoutSeconds" | "heartbeatSeconds" | "waitTimeSeconds" | "drainTimeoutMs" | "maxReceives"
    >
  >;
}

export interface RunningWorker {
  service: WorkerService;
  models: ModelSet;
  modelDir: string;
  provider: "cuda" | "cpu";
  /** http://127.0.0.1:<port>/health when a health port was asked for. */
  healthUrl: string | null;
  stop(): Promise<void>;
}

export const jsonLogger: Logger = (level, message, fields = {}) => {
  const line = JSON.stringify({
    level,
    time: new Date().toISOString(),
    service: "worker",
    message,
    ...fields,
  });
  if (level === "error" || level === "warn") console.error(line);
  else console.log(line);
};

export async function startWorker(options: StartWorkerOptions): Promise<RunningWorker> {
  const log = options.log ?? jsonLogger;
  const region = options.endpoints?.region;
  const credentials = options.endpoints?.credentials;
  const sqs =
    options.sqs ??
    createSqsClient({
      ...(options.endpoints?.sqs ? { endpoint: options.endpoints.sqs } : {}),
      ...(region ? { region } : {}),
      ...(credentials ? { credentials } : {}),
    });
  const s3 =
    options.s3 ??
    createS3Client({
      ...(options.endpoints?.s3 ? { endpoint: options.endpoints.s3, forcePathStyle: true } : {}),
      ...(region ? { region } : {}),
      ...(credentials ? { credentials } : {}),
    });

  let modelDir = options.modelDir ?? null;
  let tiny = false;
  if (options.modelS3Uri) {
    modelDir ??= join(tmpdir(), "controlnet-models");
    mkdirSync(modelDir, { recursive: true });
    const synced = await syncModelsFromS3(s3, options.modelS3Uri, modelDir);
    log("info", "models synced from S3", { uri: options.modelS3Uri, ...synced });
  } else if (!modelDir) {
    modelDir = buildTinyModel(mkdtempSync(join(tmpdir(), "tiny-controlnet-")));
    tiny = true;
    log("warn", "no MODEL_DIR: running the tiny random-weight model (outputs are noise)", { modelDir });
  }

  const sessions = new SessionFactory(options.executionProvider ?? "auto", log, options.threads);
  const models = ModelSet.open(modelDir, sessions);
  await models.warm();
  const createScheduler = options.createScheduler ?? (await loadSchedulerFactory());
  const pipeline = new ControlNetPipeline(models, createScheduler);
  const service = new WorkerService({
    sqs,
    fallbackQueueUrl: options.fallbackQueueUrl,
    resultsQueueUrl: options.resultsQueueUrl,
    log,
    ...options.service,
    job: {
      pipeline,
      sessions,
      fetchImage:
        options.fetchImage ??
        safeImageFetcher({ ...DEFAULT_IMAGE_DOWNLOADS, ...options.imageDownloads }, options.imageConnect),
      annotatorDir: options.annotatorDir ?? null,
      s3,
      outputsBucket: options.outputsBucket,
      maxSteps: options.maxSteps === undefined ? (tiny ? 4 : null) : options.maxSteps,
      fallbackScheduler: "EulerDiscreteScheduler",
    },
  });

  let server: Server | null = null;
  let healthUrl: string | null = null;
  if (options.healthPort !== undefined && options.healthPort !== null) {
    server = createServer((req, res) => {
      const stats = service.health();
      const healthy = stats.state === "idle" || stats.state === "busy";
      if (req.url !== "/health" && req.url !== "/") {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(healthy ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify({ ...stats, provider: sessions.activeProvider }));
    });
    await new Promise<void>((resolve) => server?.listen(options.healthPort as number, "0.0.0.0", resolve));
    healthUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`;
  }

  service.start();
  log("info", "worker started", { modelDir, provider: sessions.activeProvider, healthUrl, tiny });

  let stopped: Promise<void> | null = null;
  return {
    service,
    models,
    modelDir,
    provider: sessions.activeProvider,
    healthUrl,
    stop: () => {
      stopped ??= (async () => {
        await service.stop();
        await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
        await models.release();
        if (!options.sqs) sqs.destroy();
        if (!options.s3) s3.destroy();
      })();
      return stopped;
    },
  };
}
