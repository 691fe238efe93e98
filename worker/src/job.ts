/**
 * One job: request → inputs (fetched, decoded, annotated) → pipeline → PNGs in the outputs bucket.
 */
import { randomInt } from "node:crypto";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { describeUnsupported, unsupportedOnFleet } from "../../shared/domain/fleet-capabilities.ts";
import { splitList } from "../../shared/schemas/controlnet.ts";
import { annotate } from "./annotators/index.ts";
import { badInput } from "./errors.ts";
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
import type {
  ControlInput,
  ControlNetPipeline,
  GenerateParams,
  GenerateResult,
} from "./pipeline/pipeline.ts";
import type { SessionFactory } from "./pipeline/session.ts";
import { NOT_FOR_GENERATION } from "./schedulers/index.ts";

export const DEFAULTS = {
  width: 512,
  height: 512,
  steps: 30,
  guidanceScale: 7.5,
  /** The provider's documented default scheduler. */
  scheduler: "UniPCMultistepScheduler",
  /** img2img strength when both init_image and control_image are given and strength is not. */
  strength: 0.8,
} as const;

export interface JobDeps {
  pipeline: ControlNetPipeline;
  sessions: SessionFactory;
  fetchImage: ImageFetcher;
  annotatorDir: string | null;
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
}

/** Width/height in 64..1024 rounded down to a multiple of 8, as the latent space needs. */
const toMultipleOf8 = (n: number) => Math.max(64, Math.floor(n / 8) * 8);

export async function buildParams(
  message: WorkerJobMessage,
  deps: Pick<JobDeps, "fetchImage" | "annotatorDir" | "sessions" | "maxSteps">,
  signal?: AbortSignal,
): Promise<GenerateParams> {
  const r = message.request;
  // The API refuses these at submit and never routes such an `auto` job here; a message that carries
  // one anyway fails naming it rather than "succeeding" without it.
  const unsupported = unsupportedOnFleet(r);
  if (unsupported.length > 0) throw badInput(describeUnsupported(unsupported));
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
  const params = await buildParams(message, deps, signal);
  let result: GenerateResult;
  try {
    result = await deps.pipeline.generate(params);
  } catch (error) {
    // The provider's default scheduler may be one this worker lacks; an explicit request is honoured or refused.
    if (
      message.request.scheduler !== undefined ||
      !deps.fallbackScheduler ||
      !/scheduler/i.test(String(error))
    )
      throw error;
    result = await deps.pipeline.generate({ ...params, scheduler: deps.fallbackScheduler });
  }
  const outputs: { kind: "url"; url: string }[] = [];
  for (const [index, data] of result.images.entries()) {
    const png = await encodePng({ data, width: result.width, height: result.height });
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
    result,
  };
}
