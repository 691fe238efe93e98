/**
 * Shared helpers for the worker tests: tiny model folders (built once per options per process), a
 * scheduler factory over the ported schedulers, images as base64 PNG, fauxqs with clients on it.
 */
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import { type FauxqsServer, startFauxqs } from "fauxqs";
import ort from "onnxruntime-node";
import sharp from "sharp";
import { afterAll, beforeAll } from "vitest";
import type { SelfHostedModel } from "../../shared/domain/model-catalog.ts";
import { buildTinyModel, type TinyModelOptions } from "../../worker/src/models/tiny.ts";
import { ModelSet } from "../../worker/src/pipeline/models.ts";
import { ControlNetPipeline } from "../../worker/src/pipeline/pipeline.ts";
import type { SchedulerFactory } from "../../worker/src/pipeline/scheduler.ts";
import { type LoadedSession, type Logger, SessionFactory } from "../../worker/src/pipeline/session.ts";
import { createScheduler } from "../../worker/src/schedulers/index.ts";

const built = new Map<string, string>();

export function tinyModel(options: TinyModelOptions = {}): string {
  const key = JSON.stringify(options);
  let dir = built.get(key);
  if (!dir) {
    dir = buildTinyModel(mkdtempSync(join(tmpdir(), "tiny-model-")), options);
    built.set(key, dir);
  }
  return dir;
}

/** The ControlNets of the tiny model (buildTinyModel's default) that an SD model can have. */
export const TINY_CONTROLNETS = [
  "canny",
  "depth",
  "inpaint",
  "tile",
  "scribble",
  "shuffle",
  "qrcode",
  "blur",
];

/** A catalog entry for a tiny SD 1.5 model folder: its ControlNets, no annotator weights. */
export const tinyEntry = (id = "sd15", over: Partial<SelfHostedModel> = {}): SelfHostedModel => ({
  id,
  kind: "sd15",
  controlnets: TINY_CONTROLNETS,
  annotators: [],
  ...over,
});

/** A models root (the worker's MODEL_DIR): `<root>/<id>` is a link to each given model folder. */
export function modelRoot(models: Readonly<Record<string, string>>): string {
  const root = mkdtempSync(join(tmpdir(), "models-"));
  for (const [id, dir] of Object.entries(models)) symlinkSync(dir, join(root, id), "dir");
  return root;
}

/** The real scheduler ports (worker/src/schedulers). */
export const testSchedulers: SchedulerFactory = (name, config) => createScheduler(name, config);

/**
 * A test file's pipeline opener: each call opens a model folder with a fresh session factory from
 * `sessions` (a CPU factory on one thread unless given) and the real schedulers; every model it opened
 * is released after the file's tests.
 */
export function pipelineOpener<F extends SessionFactory>(
  sessions: () => F = () => new SessionFactory("cpu", captureLog().log, 1) as F,
): (dir: string) => { pipeline: ControlNetPipeline; models: ModelSet; factory: F } {
  const open: ModelSet[] = [];
  afterAll(async () => {
    await Promise.all(open.map((m) => m.release()));
  });
  return (dir) => {
    const factory = sessions();
    const models = ModelSet.open(dir, factory);
    open.push(models);
    return { pipeline: new ControlNetPipeline(models, testSchedulers), models, factory };
  };
}

/** A width×height RGB checkerboard of `cell`-pixel squares (0 and 1), planar CHW as the pipeline takes it. */
export function checkerboard(width: number, height: number, cell: number): Float32Array {
  const plane = width * height;
  const img = new Float32Array(3 * plane);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const v = (Math.floor(x / cell) + Math.floor(y / cell)) % 2;
      for (let c = 0; c < 3; c++) img[c * plane + y * width + x] = v;
    }
  return img;
}

type Feeds = Record<string, ort.Tensor>;

/** A copy of a tensor: the pipeline rewrites its step inputs in place, so a record keeps its own data. */
function snapshot(feeds: Feeds): Feeds {
  return Object.fromEntries(
    Object.entries(feeds).map(([k, t]) => [
      k,
      new ort.Tensor(t.type as "float32", (t.data as Float32Array).slice(), t.dims),
    ]),
  );
}

/**
 * A session factory that records a copy of every run's feeds and outputs, by model path (real sessions,
 * real runs).
 */
export class RecordingFactory extends SessionFactory {
  readonly runs = new Map<string, Feeds[]>();
  readonly outputs = new Map<string, Feeds[]>();

  constructor() {
    super("cpu", captureLog().log, 1);
  }

  override async load(path: string): Promise<LoadedSession> {
    const s = await super.load(path);
    const run = s.session.run.bind(s.session) as (...a: unknown[]) => Promise<Feeds>;
    const { runs, outputs } = this;
    (s.session as { run: unknown }).run = async (feeds: Feeds, ...rest: unknown[]) => {
      runs.set(path, [...(runs.get(path) ?? []), snapshot(feeds)]);
      const out = await run(feeds, ...rest);
      outputs.set(path, [...(outputs.get(path) ?? []), snapshot(out)]);
      return out;
    };
    return s;
  }

  last(path: string): Feeds {
    const list = this.runs.get(path);
    if (!list?.length) throw new Error(`no run of ${path}`);
    return list[list.length - 1] as Feeds;
  }

  clear(): void {
    this.runs.clear();
    this.outputs.clear();
  }
}

export interface LogLine {
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

export function captureLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { lines, log: (level, message, fields = {}) => lines.push({ level, message, fields }) };
}

/** A PNG with a white square on a dark background, as base64 (no data: prefix). */
export async function squarePng(size = 512, square = 0.5): Promise<string> {
  const inner = Math.round(size * square);
  const png = await sharp({ create: { width: size, height: size, channels: 3, background: "#202020" } })
    .composite([
      {
        input: await sharp({ create: { width: inner, height: inner, channels: 3, background: "#f0f0f0" } })
          .png()
          .toBuffer(),
        left: Math.round((size - inner) / 2),
        top: Math.round((size - inner) / 2),
      },
    ])
    .png()
    .toBuffer();
  return png.toString("base64");
}

export interface WorkerAws {
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  /** The fields below are set once the suite's `beforeAll` has run. */
  fauxqs: FauxqsServer;
  sqs: SQSClient;
  s3: S3Client;
  /** A 256² control image (base64 PNG). */
  control: string;
}

/**
 * Registers hooks that start fauxqs (SQS + S3, with an `outputs` bucket) and clients on it for the
 * enclosing suite, and stop them after.
 */
export function useWorkerAws(): WorkerAws {
  const aws = {
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  } as WorkerAws;
  beforeAll(async () => {
    aws.fauxqs = await startFauxqs({ port: 0, logger: false });
    aws.fauxqs.createBucket("outputs");
    const client = { endpoint: aws.fauxqs.address, region: aws.region, credentials: aws.credentials };
    aws.sqs = new SQSClient(client);
    aws.s3 = new S3Client({ ...client, forcePathStyle: true });
    aws.control = await squarePng(256);
  });
  afterAll(async () => {
    aws.sqs?.destroy();
    aws.s3?.destroy();
    await aws.fauxqs?.stop();
  });
  return aws;
}
