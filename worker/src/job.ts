/**
 * One job: request → inputs (fetched, decoded, annotated) → pipeline → PNGs in the outputs bucket.
 */
import { randomInt } from "node:crypto";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { describeUnsupported, unsupportedOnFleet } from "../../shared/domain/fleet-capabilities.ts";
import {
  ALGORITHM_TYPE_MAP,
  DEFAULT_SCHEDULER,
  KARRAS_SCHEDULERS,
  type ModelCatalog,
} from "../../shared/domain/model-catalog.ts";
import { splitList } from "../../shared/schemas/controlnet.ts";
import { annotate } from "./annotators/index.ts";
import type { ModelPool } from "./catalog.ts";
import { badInput, resourceError, StopError } from "./errors.ts";
import {
  decodeMask,
  decodeOriginal,
  decodeRgb,
  encodePng,
  type ImageFetcher,
  inpaintCondition,
  readImageRef,
  toPlanar01,
  toPlanarSigned,
} from "./images.ts";
import type { WorkerJobMessage } from "./messages.ts";
import type { ControlInput, GenerateParams, GenerateResult } from "./pipeline/pipeline.ts";
import type { SessionFactory } from "./pipeline/session.ts";
import { checkSafety, upscale } from "./postprocess.ts";
import { NOT_FOR_GENERATION } from "./schedulers/index.ts";

export const DEFAULTS = {
  width: 512,
  height: 512,
  steps: 30,
  guidanceScale: 7.5,
  /** The provider's documented default scheduler. */
  scheduler: DEFAULT_SCHEDULER,
  /** img2img strength when both init_image and control_image are given and strength is not. */
  strength: 0.8,
} as const;

export interface JobDeps {
  /** The catalog's models: a job runs on the one its model_id names, never another. */
  models: ModelPool;
  sessions: SessionFactory;
  fetchImage: ImageFetcher;
  s3: S3Client;
  outputsBucket: string;
  /** Caps num_inference_steps (e.g. for the local stack's tiny model); null for none. */
  maxSteps?: number | null;
  /** Scheduler used when the request names none and the default is unavailable. */
  fallbackScheduler?: string;
}

export interface JobOutcome {
  outputs: { kind: "url"; url: string }[];
  seed: number;
  generationTimeSeconds: number;
  result: GenerateResult;
  /** Whether the safety checker flagged (and blacked out) an image; null when the job did not ask for it. */
  nsfwContentDetected: boolean | null;
}

/** What buildParams needs: the job's model's annotator weights, and the catalog to check the job against. */
export interface ParamDeps extends Pick<JobDeps, "fetchImage" | "sessions" | "maxSteps"> {
  /** The weighted annotators' folder of the job's model (`<model>/annotators`); null for none. */
  annotatorDir: string | null;
  catalog: ModelCatalog;
}

/** Width/height in 64..1024 rounded down to a multiple of 8, as the latent space needs. */
const toMultipleOf8 = (n: number) => Math.max(64, Math.floor(n / 8) * 8);

/**
 * What the catalog's model lacks (the model itself, a ControlNet, annotator weights, an upscaler, a
 * safety checker) is this deployment's gap, not the request's fault: a retryable rejection, so an
 * `auto` job can still run on the provider. Anything else the fleet never does fails the job.
 */
const MODEL_PARAMS: readonly string[] = [
  "model_id",
  "controlnet_model",
  "auto_hint",
  "upscale",
  "safety_checker",
];

function refuseUnsupported(request: Readonly<Record<string, unknown>>, catalog: ModelCatalog): void {
  const unsupported = unsupportedOnFleet(request, catalog);
  if (unsupported.length === 0) return;
  const message = describeUnsupported(unsupported);
  throw unsupported.every((u) => MODEL_PARAMS.includes(u.param)) ? resourceError(message) : badInput(message);
}

export async function buildParams(
  message: WorkerJobMessage,
  deps: ParamDeps,
  signal?: AbortSignal,
): Promise<GenerateParams> {
  const r = message.request;
  // The API refuses these at submit and never routes such an `auto` job here; a message that carries
  // one anyway fails naming it rather than "succeeding" without it (or on another model).
  refuseUnsupported(r, deps.catalog);
  const scheduler = r.scheduler ?? DEFAULTS.scheduler;
  if ((NOT_FOR_GENERATION as readonly string[]).includes(scheduler))
    throw badInput(`scheduler ${scheduler} cannot drive this worker's SD UNet`);
  const width = toMultipleOf8(r.width ?? DEFAULTS.width);
  const height = toMultipleOf8(r.height ?? DEFAULTS.height);
  const seed = r.seed ?? randomInt(0, 2 ** 32 - 1);
  const models = splitList(r.controlnet_model);
  const scaleList =
    r.controlnet_conditioning_scale === undefined
      ? models.map(() => 1)
      : typeof r.controlnet_conditioning_scale === "number"
        ? models.map(() => r.controlnet_conditioning_scale as number)
        : splitList(r.controlnet_conditioning_scale).map(Number);
  const scales = scaleList.length === 1 ? models.map(() => scaleList[0] as number) : scaleList;
  if (scales.length !== models.length)
    throw badInput("controlnet_conditioning_scale needs one value per model");

  const fetchRgb = async (ref: string, what: string) =>
    decodeRgb(await readImageRef(what, ref, deps.fetchImage, signal), width, height, what);
  const controlRef = r.control_image ?? r.init_image;
  if (controlRef === undefined) throw badInput("init_image or control_image is required");
  const controlWhat = r.control_image ? "control_image" : "init_image";
  const controlBytes = await readImageRef(controlWhat, controlRef, deps.fetchImage, signal);
  const controlImage = await decodeRgb(controlBytes, width, height, controlWhat);
  const initImage =
    r.init_image === undefined
      ? null
      : r.control_image === undefined
        ? controlImage
        : await fetchRgb(r.init_image, "init_image");
  // The provider inpaints only with the inpaint ControlNet and ignores a mask otherwise; so does the worker.
  const mask =
    r.mask_image === undefined || !models.includes("inpaint")
      ? null
      : await decodeMask(
          await readImageRef("mask_image", r.mask_image, deps.fetchImage, signal),
          width,
          height,
        );
  if (mask && !initImage) throw badInput("mask_image needs init_image");

  const autoHint = r.auto_hint === "yes";
  // controlnet_aux's detectors are given the image as uploaded, not resized to the output size.
  const original = autoHint ? await decodeOriginal(controlBytes, controlWhat) : undefined;
  const controls: ControlInput[] = [];
  for (const [i, name] of models.entries()) {
    let image: Float32Array;
    if (name === "inpaint") {
      if (!mask || !initImage) throw badInput("the inpaint ControlNet needs init_image and mask_image");
      image = inpaintCondition(initImage, mask);
    } else {
      const hint = autoHint
        ? await annotate(name, controlImage, {
            annotatorDir: deps.annotatorDir,
            sessions: deps.sessions,
            seed,
            ...(original ? { original } : {}),
          })
        : controlImage;
      image = toPlanar01(hint);
    }
    controls.push({ name, image, scale: scales[i] as number });
  }

  // img2img when there is an image to start from besides the control image, or a mask to fill.
  const img2img =
    initImage !== null && (r.control_image !== undefined || mask !== null || r.strength !== undefined);
  const strength = r.strength ?? (mask ? 1 : DEFAULTS.strength);
  const steps = Math.min(r.num_inference_steps ?? DEFAULTS.steps, deps.maxSteps ?? Number.POSITIVE_INFINITY);
  // Scheduler options the request sets, over the model's scheduler_config.json (unsupportedOnFleet has
  // refused them where the scheduler has no such option).
  const schedulerOptions: Record<string, unknown> = {};
  if (r.use_karras_sigmas !== undefined && KARRAS_SCHEDULERS.includes(scheduler))
    schedulerOptions.use_karras_sigmas = r.use_karras_sigmas === "yes";
  const algorithm = r.algorithm_type === undefined ? null : ALGORITHM_TYPE_MAP[r.algorithm_type];
  if (algorithm) schedulerOptions.algorithm_type = algorithm;
  return {
    prompt: r.prompt ?? "",
    negativePrompt: r.negative_prompt ?? "",
    width,
    height,
    samples: r.samples ?? 1,
    steps,
    guidanceScale: r.guidance_scale ?? DEFAULTS.guidanceScale,
    seed,
    // The API's clip_skip (1 = no skip) is diffusers' clip_skip + 1; pipeline/text.ts applies it exactly.
    clipSkip: r.clip_skip ?? 1,
    scheduler,
    schedulerOptions,
    controls,
    guessMode: r.guess_mode === "yes",
    ...(img2img && initImage ? { init: { image: toPlanarSigned(initImage), strength } } : {}),
    ...(mask ? { mask } : {}),
    ...(signal ? { signal } : {}),
  };
}

export async function runJob(
  message: WorkerJobMessage,
  deps: JobDeps,
  signal?: AbortSignal,
): Promise<JobOutcome> {
  const started = performance.now();
  const r = message.request;
  refuseUnsupported(r, deps.models.catalog);
  // The folder of the model the job names (refuseUnsupported has checked the catalog has it).
  const model = await deps.models.get(r.model_id);
  const params = await buildParams(
    message,
    { ...deps, annotatorDir: model.annotatorDir, catalog: deps.models.catalog },
    signal,
  );
  let result: GenerateResult;
  try {
    result = await model.pipeline.generate(params);
  } catch (error) {
    // The provider's default scheduler may be one this worker lacks; an explicit request is honoured or refused.
    if (r.scheduler !== undefined || !deps.fallbackScheduler || !/scheduler/i.test(String(error)))
      throw error;
    result = await model.pipeline.generate({ ...params, scheduler: deps.fallbackScheduler });
  }
  let images = result.images;
  let { width, height } = result;
  let nsfwContentDetected: boolean | null = null;
  if (r.safety_checker === "yes") {
    if (!model.safetyCheckerPath) throw badInput(`model ${model.entry.id} has no safety checker`);
    const checker = await model.models.session(model.safetyCheckerPath);
    nsfwContentDetected = await checkSafety(checker, images, width, height);
  }
  if (r.upscale === "yes") {
    if (!model.upscalerPath || !model.entry.upscaler)
      throw badInput(`model ${model.entry.id} has no upscaler`);
    const upscaler = await model.models.session(model.upscalerPath);
    const scaled = [];
    for (const image of images) {
      if (signal?.aborted) throw new StopError();
      scaled.push(await upscale(upscaler, image, width, height, model.entry.upscaler.scale));
    }
    images = scaled.map((image) => image.data);
    width = scaled[0]?.width ?? width;
    height = scaled[0]?.height ?? height;
  }
  const outputs: { kind: "url"; url: string }[] = [];
  for (const [index, data] of images.entries()) {
    const png = await encodePng({ data, width, height });
    const key = `${message.outputsPrefix}/${index}.png`;
    await deps.s3.send(
      new PutObjectCommand({ Bucket: deps.outputsBucket, Key: key, Body: png, ContentType: "image/png" }),
      signal ? { abortSignal: signal } : {},
    );
    outputs.push({ kind: "url", url: `s3://${deps.outputsBucket}/${key}` });
  }
  return {
    outputs,
    seed: result.seed,
    generationTimeSeconds: Math.round(performance.now() - started) / 1000,
    result: { ...result, images, width, height },
    nsfwContentDetected,
  };
}
