import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { startFauxqs } from "fauxqs";
import { createS3Client } from "../shared/adapters/s3/object-store.ts";
import { createSqsClient } from "../shared/adapters/sqs/queue.ts";
import { modelCatalogJson } from "../shared/schemas/model-catalog.ts";
import { buildTinyModel } from "../worker/src/models/tiny.ts";
import { type RunningWorker, type StartWorkerOptions, startWorker } from "../worker/src/start.ts";
import { startDynalite } from "./dynalite.ts";
import { type BusEvent, LocalEventBus } from "./event-bus.ts";
import { FunctionUrlServer } from "./function-url.ts";
import { type GatewayCors, HttpGateway } from "./http-gateway.ts";
import { LocalFunction } from "./lambda-runtime.ts";
import { Scheduler } from "./scheduler.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "./simulator/index.ts";
import { SqsPoller } from "./sqs-poller.ts";
import { staticSite } from "./static-site.ts";
import { type CfnTemplate, type LocalTopology, provisionLocal, synthesizeTemplates } from "./template.ts";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Where the local stack serves the console (the `console/` folder) beside the API. */
export const CONSOLE_PATH = "/console";

export interface LocalStackOptions {
  /** HTTP port of the API; 0 picks a free one. */
  port?: number;
  /** Where dynalite persists; null keeps everything in memory (tests). */
  dataDir?: string | null;
  /**
   * An AWS emulator already running elsewhere (moto_server: `npm run test:moto`), one endpoint for
   * DynamoDB, SQS and S3, and a prefix for the tables, queues and buckets the stack creates there, so
   * that stacks can share it. Absent: the stack starts dynalite and fauxqs in this process.
   */
  aws?: { endpoint: string; namePrefix: string };
  /** Seconds between reconcile runs (the CDK schedule says every minute; locally faster). */
  reconcileIntervalSeconds?: number;
  /** Extra environment for the functions, applied over what the template says. */
  environment?: Record<string, string>;
  /** CDK context for the synthesized templates (as `-c key=value` gives `cdk synth`): e.g. `{ lifecycleEvents: "all" }`. */
  context?: Record<string, string>;
  /**
   * The provider: "simulator" (default) starts the ModelsLab-compatible simulator with these options
   * and points everything at it; "configured" uses MODELSLAB_BASE_URL / MODELSLAB_API_KEY as given.
   */
  provider?: { kind: "simulator"; options?: Partial<SimulatorOptions> } | { kind: "configured" };
  /**
   * Where the queue consumers (SQS pollers) and the schedule run. "in-process" (default): here.
   * "none": not started at all; the caller runs them elsewhere (the chaos run starts them in a child
   * process, `local/pollers-process.ts`, that it kills and restarts) — `pollers` is then empty and
   * `runSchedules` does nothing.
   */
  queueConsumers?: "in-process" | "none";
  /**
   * Routes the functions' S3 traffic through another endpoint (e.g. `local/fault-proxy.ts` in front
   * of fauxqs): called with the S3 emulator's address, answers the URL to use as AWS_ENDPOINT_URL_S3.
   */
  s3Endpoint?: (s3Address: string) => Promise<string>;
  /**
   * Runs the self-hosted GPU worker in this process (`startWorker`, on the CPU) against the local
   * fallback queue, outputs bucket and results queue, with the functions' catalog (SELF_HOSTED_MODELS:
   * local/template.ts's LOCAL_SELF_HOSTED_MODELS unless the context says otherwise). `true` takes the
   * models from MODEL_DIR (`<MODEL_DIR>/<id>`) when set, else builds the tiny random-weight model into
   * each entry's folder; an object passes options through (tests).
   */
  worker?: boolean | Partial<StartWorkerOptions>;
  log?: (line: string) => void;
}

export interface LocalStack {
  url: string;
  /** Where the provider's callbacks arrive: the callback function's URL, or `url` (infra `callbackIngress`). */
  callbackBaseUrl: string;
  topology: LocalTopology;
  functions: Record<string, LocalFunction>;
  endpoints: { dynamodb: string; sqs: string; region: string };
  pollers: SqsPoller[];
  /** The provider simulator, when the stack started one. */
  simulator: Simulator | null;
  /** The in-process self-hosted worker, when asked for. */
  worker: RunningWorker | null;
  /** Lifecycle events the functions published (EventBridge stand-in). */
  events: BusEvent[];
  /** Runs every scheduled function once, now (tests use it instead of waiting for the interval). */
  runSchedules(): Promise<void>;
  stop(): Promise<void>;
}

const REGION = "us-east-1";

/**
 * The whole product on loopback: emulators, resources created from the synthesized CloudFormation
 * templates, the same handler modules Lambda runs, invoked by an API Gateway stand-in, SQS pollers
 * and a schedule.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const log = options.log ?? (() => undefined);
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((error) => log(`stop failed: ${String(error)}`));
  };
  try {
    let dynamoEndpoint: string;
    let awsEndpoint: string; // SQS and S3
    let createBucket: (name: string) => Promise<void>;
    if (options.aws) {
      const { endpoint } = options.aws;
      dynamoEndpoint = endpoint;
      awsEndpoint = endpoint;
      createBucket = async (name) => {
        const s3 = createS3Client({
          endpoint,
          region: REGION,
          credentials: { accessKeyId: "local", secretAccessKey: "local" },
        });
        try {
          await s3.send(new CreateBucketCommand({ Bucket: name }));
        } finally {
          s3.destroy();
        }
      };
    } else {
      const dataDir = options.dataDir ?? null;
      if (dataDir) mkdirSync(dataDir, { recursive: true });
      const dynamo = await startDynalite(dataDir ? { path: dataDir } : {});
      stops.push(() => dynamo.stop());
      dynamoEndpoint = dynamo.endpoint;
      const fauxqs = await startFauxqs({ port: 0, logger: false });
      stops.push(() => fauxqs.stop());
      // fauxqs serves S3 too (path-style)
      awsEndpoint = fauxqs.address;
      createBucket = async (name) => {
        fauxqs.createBucket(name);
      };
    }
    const eventBus = new LocalEventBus(log);
    const eventBusUrl = await eventBus.listen();
    stops.push(() => eventBus.close());
    const endpoints = { dynamodb: dynamoEndpoint, sqs: awsEndpoint, region: REGION };

    // The functions' AWS SDK clients find the emulators through the standard environment variables.
    Object.assign(process.env, {
      AWS_REGION: REGION,
      AWS_DEFAULT_REGION: REGION,
      AWS_ACCESS_KEY_ID: "local",
      AWS_SECRET_ACCESS_KEY: "local",
      AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb,
      AWS_ENDPOINT_URL_SQS: endpoints.sqs,
      AWS_ENDPOINT_URL_S3: options.s3Endpoint ? await options.s3Endpoint(awsEndpoint) : awsEndpoint,
      AWS_ENDPOINT_URL_EVENTBRIDGE: eventBusUrl,
    });

    // The GPU service is not emulated here (the worker runs in-process with --with-worker), so its
    // image is only a name in the template: no Docker build.
    const templates = await synthesizeTemplates({
      context: { workerImage: "local/controlnet-worker:unused", ...options.context },
    });
    // The HTTP endpoints listen first, so the template's references to their URLs (the callback
    // base URL in the dispatcher's environment) resolve to these addresses; they route once the
    // functions exist.
    const gateway = new HttpGateway();
    gateway.setCors(corsOf(templates));
    gateway.mountStatic(staticSite(CONSOLE_PATH, resolve(REPO_ROOT, "console")));
    const url = await gateway.listen(options.port ?? 3000);
    stops.push(() => gateway.close());
    const localUrls: Record<string, string> = {};
    for (const id of logicalIdsOfType(templates, "AWS::ApiGatewayV2::Api")) localUrls[id] = url;
    const functionUrlServers = new Map<string, FunctionUrlServer>();
    for (const id of logicalIdsOfType(templates, "AWS::Lambda::Url")) {
      const server = new FunctionUrlServer();
      stops.push(() => server.close());
      localUrls[id] = await server.listen();
      functionUrlServers.set(id, server);
    }
    const topology = await provisionLocal(templates, endpoints, {
      localUrls,
      ...(options.aws && { namePrefix: options.aws.namePrefix }),
    });
    for (const bucket of Object.values(topology.buckets)) await createBucket(bucket.name);

    const functions: Record<string, LocalFunction> = {};
    for (const [id, fn] of Object.entries(topology.functions)) {
      functions[id] = new LocalFunction(fn, REPO_ROOT);
    }
    gateway.setRoutes(
      topology.routes.map((route) => ({
        routeKey: route.routeKey,
        function: required(functions, route.functionId),
        ...(route.authorizer && {
          authorizer: {
            function: required(functions, route.authorizer.functionId),
            identitySource: route.authorizer.identitySource,
            ttlSeconds: route.authorizer.ttlSeconds,
          },
        }),
      })),
    );
    for (const functionUrl of topology.functionUrls) {
      if (functionUrl.authType !== "NONE") {
        throw new Error(
          `Function URL ${functionUrl.logicalId}: auth type ${functionUrl.authType} is not supported locally`,
        );
      }
      required(Object.fromEntries(functionUrlServers), functionUrl.logicalId).bind(
        required(functions, functionUrl.functionId),
      );
    }

    const provider = options.provider ?? { kind: "simulator" };
    let simulator: Simulator | null = null;
    let providerEnvironment: Record<string, string>;
    if (provider.kind === "simulator") {
      const apiKey = `sim-${randomBytes(12).toString("hex")}`;
      simulator = await startSimulator({ ...provider.options, apiKey });
      stops.push(() => (simulator as Simulator).stop());
      providerEnvironment = {
        MODELSLAB_BASE_URL: simulator.url,
        MODELSLAB_API_KEY: apiKey,
        PROVIDER_OUTPUT_HOSTS: "127.0.0.1,localhost",
      };
    } else {
      providerEnvironment = pick(process.env, [
        "MODELSLAB_BASE_URL",
        "MODELSLAB_API_KEY",
        "PROVIDER_OUTPUT_HOSTS",
      ]);
    }

    // All functions share this process, so their environments merge; two functions must not give one
    // variable different values (the template would then mean different things locally and in AWS).
    const environment = mergeEnvironments(topology, {
      // Downloads and webhook deliveries may reach loopback (the simulator, test receivers) locally.
      NETWORK_POLICY: "local",
      // Locally secrets are plain values; the *_SECRET_ARN variables (Secrets Manager in AWS) stay empty.
      MODELSLAB_API_KEY_SECRET_ARN: "",
      CALLBACK_SECRET_ARN: "",
      CALLBACK_SECRET: process.env.CALLBACK_SECRET || randomBytes(32).toString("base64url"),
      // The business metrics' EMF lines print on stdout, as in Lambda (docs/operations.md): on even when
      // POWERTOOLS_DEV is set for readable logs (Powertools then turns metrics off), unless asked off.
      POWERTOOLS_METRICS_DISABLED: process.env.POWERTOOLS_METRICS_DISABLED || "false",
      ...pick(process.env, PASS_THROUGH),
      ...providerEnvironment,
      ...options.environment,
    });
    Object.assign(process.env, environment);

    const consumersHere = (options.queueConsumers ?? "in-process") === "in-process";
    const sqs = createSqsClient();
    const mappings = consumersHere ? topology.eventSourceMappings : [];
    const pollers = mappings.map((mapping) => {
      const queue = required(topology.queues, mapping.queueLogicalId);
      return new SqsPoller(
        sqs,
        {
          queueUrl: queue.url,
          queueArn: queue.arn,
          function: required(functions, mapping.functionId),
          batchSize: mapping.batchSize,
          maxBatchingWindowSeconds: mapping.maxBatchingWindowSeconds,
          reportBatchItemFailures: mapping.reportBatchItemFailures,
          maxConcurrency: mapping.maxConcurrency ?? 2,
        },
        (error) => log(`poller ${mapping.functionId}: ${String(error)}`),
      );
    });
    for (const poller of pollers) poller.start();
    stops.push(async () => {
      await Promise.all(pollers.map((p) => p.stop()));
      sqs.destroy();
    });

    const scheduler = new Scheduler(
      (consumersHere ? topology.schedules : []).map((s) => required(functions, s.functionId)),
      options.reconcileIntervalSeconds ?? 5,
      (error) => log(`schedule: ${String(error)}`),
    );
    if (consumersHere) scheduler.start();
    stops.push(() => scheduler.stop());

    let worker: RunningWorker | null = null;
    if (options.worker) {
      const own = typeof options.worker === "object" ? options.worker : {};
      // The same catalog as the functions'; its S3 locations are names only (stripped there anyway).
      const catalog = modelCatalogJson.parse(requiredEnv(environment, "SELF_HOSTED_MODELS"));
      const ownModels = process.env.MODEL_DIR || null;
      let modelDir = ownModels;
      if (!modelDir && !own.modelDir) {
        modelDir = mkdtempSync(join(tmpdir(), "local-models-"));
        for (const entry of catalog) {
          buildTinyModel(join(modelDir, entry.id), {
            sdxl: entry.kind === "sdxl",
            controlnets: entry.controlnets,
          });
        }
      }
      const started = await startWorker({
        fallbackQueueUrl: requiredEnv(environment, "FALLBACK_QUEUE_URL"),
        resultsQueueUrl: requiredEnv(environment, "RESULTS_QUEUE_URL"),
        outputsBucket: requiredEnv(environment, "OUTPUTS_BUCKET"),
        catalog,
        modelDir,
        // The tiny model's outputs are noise at any step count: a few steps keep local jobs quick.
        ...(ownModels ? {} : { maxSteps: 4 }),
        executionProvider: "cpu",
        healthPort: null,
        // Inputs are presigned URLs of the S3 emulator, on loopback: the local stack's NETWORK_POLICY.
        imageDownloads: { mode: "local" },
        endpoints: {
          sqs: endpoints.sqs,
          s3: process.env.AWS_ENDPOINT_URL_S3 ?? awsEndpoint,
          region: REGION,
          credentials: { accessKeyId: "local", secretAccessKey: "local" },
        },
        log: (level, message, fields = {}) => log(`worker ${level}: ${message} ${JSON.stringify(fields)}`),
        // Short long-polls, so that stopping the stack does not wait out a 20 s receive.
        service: { waitTimeSeconds: 1 },
        ...own,
      });
      worker = started;
      stops.push(() => started.stop());
    }

    return {
      url,
      callbackBaseUrl: requiredEnv(environment, "CALLBACK_BASE_URL"),
      topology,
      functions,
      endpoints,
      pollers,
      simulator,
      worker,
      events: eventBus.events,
      runSchedules: () => scheduler.runOnce(),
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** The HTTP API's CORS configuration (CDK context `consoleOrigins`), or null without one. */
function corsOf(templates: Record<string, CfnTemplate>): GatewayCors | null {
  for (const template of Object.values(templates)) {
    for (const resource of Object.values(template.Resources ?? {})) {
      if (resource.Type !== "AWS::ApiGatewayV2::Api") continue;
      const cors = (resource.Properties as { CorsConfiguration?: GatewayCors } | undefined)
        ?.CorsConfiguration;
      if (cors) return cors;
    }
  }
  return null;
}

function logicalIdsOfType(templates: Record<string, CfnTemplate>, type: string): string[] {
  return Object.values(templates).flatMap((template) =>
    Object.entries(template.Resources ?? {})
      .filter(([, resource]) => resource.Type === type)
      .map(([logicalId]) => logicalId),
  );
}

/** Settings a developer may override for `npm start` from their shell. */
const PASS_THROUGH = [
  "MODELSLAB_MAX_CONCURRENCY",
  "QUEUED_RESEND_AFTER_SECONDS",
  "DEFAULT_DEADLINE_SECONDS",
  "MAX_BODY_BYTES",
  "LOG_LEVEL",
  "POWERTOOLS_LOG_LEVEL",
];

function pick(env: NodeJS.ProcessEnv, names: readonly string[]): Record<string, string> {
  return Object.fromEntries(names.flatMap((name) => (env[name] ? [[name, env[name] as string]] : [])));
}

function mergeEnvironments(
  topology: LocalTopology,
  overrides: Record<string, string>,
): Record<string, string> {
  const merged: Record<string, string> = {};
  const owner: Record<string, string> = {};
  for (const [id, fn] of Object.entries(topology.functions)) {
    for (const [name, value] of Object.entries(fn.environment)) {
      if (name in overrides) continue;
      if (name in merged && merged[name] !== value) {
        throw new Error(
          `${id} and ${owner[name]} set ${name} to different values; the local stack runs them in one process`,
        );
      }
      merged[name] = value;
      owner[name] = id;
    }
  }
  const unresolved = topology.unresolved.filter(({ variable }) => !(variable in overrides));
  if (unresolved.length > 0) {
    throw new Error(
      `No local value for ${unresolved.map((u) => `${u.functionId}.${u.variable}`).join(", ")}: pass it in options.environment`,
    );
  }
  return { ...merged, ...overrides };
}

function requiredEnv(environment: Record<string, string>, name: string): string {
  const value = environment[name];
  if (!value) throw new Error(`The template gives the functions no ${name}; the local stack needs it`);
  return value;
}

function required<T>(map: Record<string, T>, key: string): T {
  const value = map[key];
  if (value === undefined)
    throw new Error(`The template refers to ${key}, which the local stack does not know`);
  return value;
}
