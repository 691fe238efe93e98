/**
 * The worker's model catalog: each entry's folder is checked at start against what it declares (else
 * the worker is not ready); a job runs on the model its model_id names, never another, loaded on
 * demand a bounded number at once; the scheduler options a job sets (Karras sigmas, the seed's
 * algorithm types); the upscaler and safety checker an entry declares.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  annotatorWeightsFor,
  KARRAS_SCHEDULERS,
  type SelfHostedModel,
  WEIGHTED_ANNOTATORS,
} from "../../shared/domain/model-catalog.ts";
import { SCHEDULERS } from "../../shared/schemas/controlnet.ts";
import { MODEL_ANNOTATORS } from "../../worker/src/annotators/index.ts";
import { checkModelFolder, ModelCatalogError, ModelPool } from "../../worker/src/catalog.ts";
import { type JobDeps, runJob } from "../../worker/src/job.ts";
import type { WorkerJobMessage } from "../../worker/src/messages.ts";
import { addTinyPostprocessing } from "../../worker/src/models/tiny-postprocess.ts";
import { SessionFactory } from "../../worker/src/pipeline/session.ts";
import { createScheduler } from "../../worker/src/schedulers/index.ts";
import { launchWorker, startWorker } from "../../worker/src/start.ts";
import { captureLog, modelRoot, testSchedulers, tinyEntry, tinyModel, useWorkerAws } from "./support.ts";

const aws = useWorkerAws();
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A copy of a tiny model folder, to add parts to. */
function copyOf(dir: string): string {
  const copy = mkdtempSync(join(tmpdir(), "model-copy-"));
  dirs.push(copy);
  cpSync(dir, copy, { recursive: true });
  return copy;
}

describe("the catalog's folders, checked at start", () => {
  it("accepts a folder that holds everything its entry declares", () => {
    expect(checkModelFolder(tinyModel(), tinyEntry("sd15"))).toEqual([]);
    expect(
      checkModelFolder(
        tinyModel({ sdxl: true, controlnets: ["canny"] }),
        tinyEntry("xl", { kind: "sdxl", controlnets: ["canny"] }),
      ),
    ).toEqual([]);
  });

  it("names each missing part: a ControlNet, annotator weights, the upscaler, the safety checker, the kind", () => {
    const problems = checkModelFolder(
      tinyModel(),
      tinyEntry("sd15", {
        kind: "sdxl",
        controlnets: ["canny", "mlsd"],
        annotators: ["depth"],
        upscaler: { scale: 2 },
        safetyChecker: true,
      }),
    );
    expect(problems).toEqual([
      expect.stringMatching(/^sd15: declared sdxl, but the folder is not SDXL/),
      expect.stringContaining("controlnet/mlsd/model.onnx is missing"),
      expect.stringContaining("annotators/depth/model.onnx is missing"),
      expect.stringContaining("upscaler/model.onnx is missing"),
      expect.stringContaining("safety_checker/model.onnx is missing"),
    ]);
    expect(checkModelFolder(join(tmpdir(), "no-such-model"), tinyEntry("gone"))[0]).toMatch(
      /^gone: model not installed/,
    );
  });

  it("tells SD 1.x from SD 2.x by the text encoder's width when its config states it", () => {
    const dir = copyOf(tinyModel());
    writeFileSync(join(dir, "text_encoder", "config.json"), JSON.stringify({ hidden_size: 1024 }));
    expect(checkModelFolder(dir, tinyEntry("m", { kind: "sd2" }))).toEqual([]);
    expect(checkModelFolder(dir, tinyEntry("m"))).toEqual([expect.stringContaining("width 768")]);
  });

  it("a worker whose folders lack what the catalog declares never starts: ModelCatalogError naming each", async () => {
    const fallback = aws.fauxqs.createQueue("catalog-not-ready");
    const results = aws.fauxqs.createQueue("catalog-not-ready-results");
    const started = startWorker({
      fallbackQueueUrl: fallback.queueUrl,
      resultsQueueUrl: results.queueUrl,
      outputsBucket: "outputs",
      modelDir: modelRoot({ sd15: tinyModel() }),
      catalog: [tinyEntry("sd15", { controlnets: ["canny", "openpose"] }), tinyEntry("absent")],
      executionProvider: "cpu",
      endpoints: {
        sqs: aws.fauxqs.address,
        s3: aws.fauxqs.address,
        region: aws.region,
        credentials: aws.credentials,
      },
      log: captureLog().log,
      healthPort: null,
    });
    const error = await started.then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ModelCatalogError);
    expect((error as ModelCatalogError).problems).toEqual([
      expect.stringContaining("sd15: declares the openpose ControlNet"),
      expect.stringContaining("absent: model not installed"),
    ]);
  });

  it("shows as unhealthy on the health endpoint (503, the reason naming each gap), polling nothing", async () => {
    const fallback = aws.fauxqs.createQueue("catalog-unhealthy");
    const launched = await launchWorker({
      fallbackQueueUrl: fallback.queueUrl,
      resultsQueueUrl: fallback.queueUrl,
      outputsBucket: "outputs",
      modelDir: modelRoot({ sd15: tinyModel() }),
      catalog: [tinyEntry("sd15", { safetyChecker: true })],
      executionProvider: "cpu",
      endpoints: {
        sqs: aws.fauxqs.address,
        s3: aws.fauxqs.address,
        region: aws.region,
        credentials: aws.credentials,
      },
      log: captureLog().log,
      healthPort: 0,
    });
    try {
      await launched.ready.catch(() => undefined);
      const response = await fetch(launched.healthUrl as string);
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({
        status: "unhealthy",
        reason: expect.stringContaining(
          "sd15: declares a safety checker; safety_checker/model.onnx is missing",
        ),
      });
    } finally {
      await launched.stop();
    }
  });

  it("the weighted annotators the catalog names are the worker's model-based annotators (pose uses openpose's, scribble HED's)", () => {
    expect([...MODEL_ANNOTATORS].sort()).toEqual([...WEIGHTED_ANNOTATORS, "pose", "scribble"].sort());
    expect(annotatorWeightsFor("scribble")).toBe("hed");
    expect(annotatorWeightsFor("pose")).toBe("openpose");
  });
});

describe("scheduler options a job sets", () => {
  const config = { beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 };

  it("use_karras_sigmas: the schedulers that take it are exactly those whose port has Karras sigmas, and it changes their schedule", () => {
    const withOption = SCHEDULERS.filter(
      (name) => "use_karras_sigmas" in (createScheduler(name) as unknown as { config: object }).config,
    );
    expect(withOption.sort()).toEqual([...KARRAS_SCHEDULERS].sort());
    for (const name of KARRAS_SCHEDULERS) {
      const plain = createScheduler(name, { ...config, use_karras_sigmas: false });
      const karras = createScheduler(name, { ...config, use_karras_sigmas: true });
      plain.setTimesteps(10);
      karras.setTimesteps(10);
      expect(karras.timesteps, name).not.toEqual(plain.timesteps);
    }
  });

  it("algorithm_type dpmsolver+++ runs DPM-Solver's sde-dpmsolver++", () => {
    const scheduler = createScheduler("DPMSolverMultistepScheduler", {
      ...config,
      algorithm_type: "sde-dpmsolver++",
    });
    expect((scheduler as unknown as { algorithm: string }).algorithm).toBe("sde-dpmsolver++");
  });
});

describe("jobs on the catalog's models", () => {
  const sessions = new SessionFactory("cpu", captureLog().log, 1);
  let root: string;
  let pool: ModelPool;
  const catalog: SelfHostedModel[] = [
    tinyEntry("alpha", { controlnets: ["canny"], upscaler: { scale: 4 }, safetyChecker: true }),
    tinyEntry("beta", { controlnets: ["canny"], safetyChecker: true }),
  ];

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "catalog-"));
    dirs.push(root);
    // Two models with other weights: alpha flags nothing, beta flags every image.
    cpSync(tinyModel({ controlnets: ["canny"], seed: 11 }), join(root, "alpha"), { recursive: true });
    cpSync(tinyModel({ controlnets: ["canny"], seed: 22 }), join(root, "beta"), { recursive: true });
    addTinyPostprocessing(join(root, "alpha"), { upscale: 4, nsfwThreshold: 1e9 });
    addTinyPostprocessing(join(root, "beta"), { nsfwThreshold: -1e9 });
    mkdirSync(join(root, "unused"), { recursive: true });
    pool = new ModelPool(root, catalog, sessions, testSchedulers, 1);
  });
  afterAll(async () => {
    await pool.release();
  });

  const deps = (): JobDeps => ({
    models: pool,
    sessions,
    fetchImage: async (url) => {
      throw new Error(`no network in tests: ${url}`);
    },
    s3: aws.s3,
    outputsBucket: "outputs",
    maxSteps: null,
  });

  const message = (jobId: string, request: Record<string, unknown>): WorkerJobMessage => ({
    jobId,
    tenantId: "t",
    attempt: 1,
    outputsPrefix: `t/${jobId}`,
    request: {
      model_id: "alpha",
      controlnet_model: "canny",
      controlnet_type: "canny",
      prompt: "a lighthouse",
      control_image: aws.control,
      base64: "yes",
      width: 64,
      height: 64,
      num_inference_steps: 2,
      seed: 3,
      scheduler: "EulerDiscreteScheduler",
      ...request,
    } as WorkerJobMessage["request"],
  });

  const stored = async (key: string) => {
    const object = await aws.s3.send(new GetObjectCommand({ Bucket: "outputs", Key: key }));
    return Buffer.from(
      await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  };

  it("runs each job on the model it names (other weights, other image), one model open at a time", async () => {
    await runJob(message("a1", {}), deps());
    expect(pool.openIds()).toEqual(["alpha"]);
    await runJob(message("b1", { model_id: "beta" }), deps());
    expect(pool.openIds()).toEqual(["beta"]);
    await runJob(message("a2", {}), deps());
    const [a1, b1, a2] = await Promise.all(["t/a1/0.png", "t/b1/0.png", "t/a2/0.png"].map(stored));
    expect(a2?.equals(a1 as Buffer)).toBe(true);
    expect(b1?.equals(a1 as Buffer)).toBe(false);
  });

  it("fails a job naming a model the catalog lacks (retryable: the provider may have it), running nothing", async () => {
    const error = await runJob(message("x1", { model_id: "gamma" }), deps()).then(
      () => null,
      (e: unknown) => e as Error & { kind: string },
    );
    expect(error?.kind).toBe("resource");
    expect(error?.message).toContain('model_id (the fleet has no model "gamma" (it has alpha, beta))');
  });

  it("honours use_karras_sigmas: another schedule, another image", async () => {
    // Two steps run sigma_max then sigma_min either way: Karras' schedule differs in between.
    const plain = await runJob(message("k0", { use_karras_sigmas: "no", num_inference_steps: 5 }), deps());
    const karras = await runJob(message("k1", { use_karras_sigmas: "yes", num_inference_steps: 5 }), deps());
    expect(
      Buffer.from(karras.result.images[0] as Uint8Array).equals(
        Buffer.from(plain.result.images[0] as Uint8Array),
      ),
    ).toBe(false);
  });

  it("upscale: the entry's 4× upscaler, resized to the provider's 2×", async () => {
    const outcome = await runJob(message("u1", { upscale: "yes" }), deps());
    expect(outcome.result).toMatchObject({ width: 128, height: 128 });
    expect(await sharp(await stored("t/u1/0.png")).metadata()).toMatchObject({ width: 128, height: 128 });
    expect(outcome.nsfwContentDetected).toBeNull();
  });

  it("safety_checker: a flagged image is blacked out and reported; an unflagged one is kept", async () => {
    const kept = await runJob(message("s1", { safety_checker: "yes" }), deps());
    expect(kept.nsfwContentDetected).toBe(false);
    expect((kept.result.images[0] as Uint8Array).some((v) => v !== 0)).toBe(true);
    const flagged = await runJob(
      message("s2", { model_id: "beta", safety_checker: "yes", samples: 2 }),
      deps(),
    );
    expect(flagged.nsfwContentDetected).toBe(true);
    for (const image of flagged.result.images) expect(image.every((v) => v === 0)).toBe(true);
    const { data } = await sharp(await stored("t/s2/1.png"))
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect(data.every((v) => v === 0)).toBe(true);
  });
});
