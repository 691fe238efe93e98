/**
 * launchWorker() / startWorker(): everything the ECS entry point (main.ts) and the local stack need to
 * run a worker: the health endpoint first, then the execution provider check, the catalog's model
 * folders (each synced from its S3 prefix when it has one, then checked against its entry), sessions
 * on CUDA or the CPU, and the service loop.
 */
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import type { SafeConnectOptions } from "../../shared/adapters/http/guarded-connection.ts";
import { createS3Client } from "../../shared/adapters/s3/object-store.ts";
import { createSqsClient } from "../../shared/adapters/sqs/queue.ts";
import type { ModelCatalog } from "../../shared/domain/model-catalog.ts";
import { checkCatalog, ModelPool } from "./catalog.ts";
import { type HealthServer, startHealthServer, WorkerHealth } from "./health.ts";
import {
  DEFAULT_IMAGE_DOWNLOADS,
  type ImageDownloadPolicy,
  type ImageFetcher,
  safeImageFetcher,
} from "./images.ts";
import { type SyncOptions, syncModelsFromS3 } from "./model-sync.ts";
import { verifyCuda } from "./pipeline/cuda-probe.ts";
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
  /** Bounds of the model sync (concurrency, timeouts, byte limit); defaults: SYNC_DEFAULTS. */
  modelSync?: Pick<SyncOptions, "concurrency" | "responseTimeoutMs" | "idleTimeoutMs" | "maxBytes">;
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
  health: WorkerHealth;
  stop(): Promise<void>;
}

export interface LaunchedWorker {
  health: WorkerHealth;
  /** http://127.0.0.1:<port>/health when a health port was asked for; it answers from now on. */
  healthUrl: string | null;
  /**
   * Settles when the start is over: the running worker, or the reason it cannot work (health is then
   * unhealthy with that reason, and the health endpoint keeps saying so until stop()).
   */
  ready: Promise<RunningWorker>;
  /** Stops the start (an S3 sync in progress is aborted) or the running worker, then the health endpoint. */
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

/** launchWorker() and wait until it is ready; on failure its health endpoint is closed and the error thrown. */
export async function startWorker(options: StartWorkerOptions): Promise<RunningWorker> {
  const launched = await launchWorker(options);
  try {
    return await launched.ready;
  } catch (error) {
    await launched.stop();
    throw error;
  }
}

/**
 * Starts the health endpoint, then the rest in the background (see LaunchedWorker.ready). Resolves
 * as soon as the health endpoint listens.
 */
export async function launchWorker(options: StartWorkerOptions): Promise<LaunchedWorker> {
  const log = options.log ?? jsonLogger;
  const health = new WorkerHealth();
  let server: HealthServer | null = null;
  if (options.healthPort !== undefined && options.healthPort !== null) {
    server = await startHealthServer(health, options.healthPort);
    log("info", "health endpoint listening", { healthUrl: server.url });
  }
  const abort = new AbortController();
  const ready = boot(options, log, health, server?.url ?? null, abort.signal).catch((error: unknown) => {
    const reason = error instanceof Error ? error.message : String(error);
    if (!abort.signal.aborted) {
      health.fail(reason);
      log("error", "worker cannot work: unhealthy", { reason });
    }
    throw error;
  });
  // The caller may never await `ready` (main.ts watches health instead): no unhandled rejection.
  ready.catch(() => undefined);

  let stopped: Promise<void> | null = null;
  const stop = () => {
    stopped ??= (async () => {
      abort.abort(new Error("worker stopping"));
      health.enter("stopping");
      await ready.then(
        (worker) => worker.shutdown(),
        () => undefined,
      );
      await server?.close();
    })();
    return stopped;
  };
  const readyWorker = ready.then((worker): RunningWorker => ({ ...worker.public, stop }));
  readyWorker.catch(() => undefined);
  return { health, healthUrl: server?.url ?? null, ready: readyWorker, stop };
}

interface Booted {
  public: Omit<RunningWorker, "stop">;
  shutdown(): Promise<void>;
}

async function boot(
  options: StartWorkerOptions,
  log: Logger,
  health: WorkerHealth,
  healthUrl: string | null,
  signal: AbortSignal,
): Promise<Booted> {
  const requested = options.executionProvider ?? "auto";
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
  const destroyClients = () => {
    if (!options.sqs) sqs.destroy();
    if (!options.s3) s3.destroy();
  };
  let models: ModelPool | null = null;
  try {
    // CUDA first: a GPU that cannot work is known in a second, not after a multi-GB sync.
    if (requested === "cuda") {
      const placement = await verifyCuda();
      log("info", "CUDA execution provider verified", { placement: placement.byProvider });
    }
    const modelDir = options.modelDir ?? join(tmpdir(), "controlnet-models");
    mkdirSync(modelDir, { recursive: true });
    for (const entry of options.catalog) {
      if (!entry.s3Uri) continue;
      health.enter("syncing", { model: entry.id, uri: entry.s3Uri });
      const synced = await syncModelsFromS3(s3, entry.s3Uri, join(modelDir, entry.id), {
        ...options.modelSync,
        signal,
        log,
        onProgress: (progress) => health.progress(progress),
      });
      log("info", "models synced from S3", { model: entry.id, uri: entry.s3Uri, ...synced });
    }
    signal.throwIfAborted();
    // Not ready until every folder holds what its entry declares: a ModelCatalogError naming each gap
    // (the health endpoint answers 503 with it).
    checkCatalog(modelDir, options.catalog);

    health.enter("warming", { modelDir });
    const sessions = new SessionFactory(requested, log, options.threads);
    const createScheduler = options.createScheduler ?? (await loadSchedulerFactory());
    models = new ModelPool(modelDir, options.catalog, sessions, createScheduler, options.openModels ?? 1);
    await models.warm();
    health.provider = sessions.activeProvider;
    signal.throwIfAborted();
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
    health.extra = () => ({ worker: service.health() });
    // A session loaded later (a ControlNet on first use) that finds CUDA gone: that job is reported
    // retryable (it runs elsewhere), the worker takes no more and reports itself unhealthy.
    sessions.onFailure = (reason) => {
      health.fail(reason);
      log("error", "worker cannot work: unhealthy", { reason });
      void service.stop();
    };
    service.start();
    health.enter("ready");
    log("info", "worker started", {
      modelDir,
      models: options.catalog.map((entry) => entry.id),
      provider: sessions.activeProvider,
      healthUrl,
    });
    const ready = models;
    return {
      public: { service, models: ready, modelDir, provider: sessions.activeProvider, healthUrl, health },
      shutdown: async () => {
        await service.stop();
        await ready.release();
        destroyClients();
      },
    };
  } catch (error) {
    await models?.release().catch(() => undefined);
    destroyClients();
    throw error;
  }
}
