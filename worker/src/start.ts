/**
 * startWorker(): everything the ECS entry point (main.ts) and the local stack need to run a worker:
 * the catalog's model folders (each synced from its S3 prefix when it has one, then checked against
 * its entry), sessions on CUDA or the CPU, the service loop and the health endpoint.
 */
import { mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import type { SafeConnectOptions } from "../../shared/adapters/http/guarded-connection.ts";
import { createS3Client } from "../../shared/adapters/s3/object-store.ts";
import { createSqsClient } from "../../shared/adapters/sqs/queue.ts";
import type { ModelCatalog } from "../../shared/domain/model-catalog.ts";
import { checkCatalog, ModelPool } from "./catalog.ts";
import {
  DEFAULT_IMAGE_DOWNLOADS,
  type ImageDownloadPolicy,
  type ImageFetcher,
  safeImageFetcher,
} from "./images.ts";
import { syncModelsFromS3 } from "./model-sync.ts";
import { loadSchedulerFactory, type SchedulerFactory } from "./pipeline/scheduler.ts";
import { type ExecutionProvider, type Logger, SessionFactory } from "./pipeline/session.ts";
import { WorkerService, type WorkerServiceOptions } from "./service.ts";

export interface StartWorkerOptions {
  fallbackQueueUrl: string;
  resultsQueueUrl: string;
  outputsBucket: string;
  /**
   * The self-hosted models (SELF_HOSTED_MODELS): a job runs on the one its model_id names. Each entry's
   * folder is `<modelDir>/<id>`: synced from its s3Uri at start when it has one, else already there.
   */
  catalog: ModelCatalog;
  /** The models root (one folder per catalog entry); a folder under the system's temporary one by default. */
  modelDir?: string | null;
  /** Models kept open at once (their sessions loaded); another one closes the least recently used. */
  openModels?: number;
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
  /** Caps num_inference_steps (none by default). */
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
  models: ModelPool;
  /** The models root. */
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

  const modelDir = options.modelDir ?? join(tmpdir(), "controlnet-models");
  mkdirSync(modelDir, { recursive: true });
  for (const entry of options.catalog) {
    if (!entry.s3Uri) continue;
    const synced = await syncModelsFromS3(s3, entry.s3Uri, join(modelDir, entry.id));
    log("info", "model synced from S3", { model: entry.id, uri: entry.s3Uri, ...synced });
  }
  // Not ready until every folder holds what its entry declares: a ModelCatalogError naming each gap.
  checkCatalog(modelDir, options.catalog);

  const sessions = new SessionFactory(options.executionProvider ?? "auto", log, options.threads);
  const createScheduler = options.createScheduler ?? (await loadSchedulerFactory());
  const models = new ModelPool(modelDir, options.catalog, sessions, createScheduler, options.openModels ?? 1);
  await models.warm();
  const service = new WorkerService({
    sqs,
    fallbackQueueUrl: options.fallbackQueueUrl,
    resultsQueueUrl: options.resultsQueueUrl,
    log,
    ...options.service,
    job: {
      models,
      sessions,
      fetchImage:
        options.fetchImage ??
        safeImageFetcher({ ...DEFAULT_IMAGE_DOWNLOADS, ...options.imageDownloads }, options.imageConnect),
      s3,
      outputsBucket: options.outputsBucket,
      maxSteps: options.maxSteps ?? null,
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
  log("info", "worker started", {
    modelDir,
    models: options.catalog.map((entry) => entry.id),
    provider: sessions.activeProvider,
    healthUrl,
  });

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
