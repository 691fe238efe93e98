/**
 * The ControlNet diffusion pipeline on ONNX Runtime: CLIP text encoding (with clip_skip; text.ts), one
 * or more ControlNets (each with its conditioning scale, guess_mode), the UNet with their residuals,
 * classifier-free guidance, img2img and inpainting through the VAE, and the VAE decoder. SD 1.x/2.x and
 * SDXL: an export is SDXL when its UNet takes text_embeds and time_ids (then two text encoders, pooled
 * embeddings and size ids go to the UNet and the ControlNets).
 *
 * Every tensor's name, dtype and shape comes from the loaded sessions (see models.ts).
 */
import type ort from "onnxruntime-node";
import { badInput, nonFiniteOutput, resourceError, StopError } from "../errors.ts";
import { simdGuidance } from "../schedulers/simd.ts";
import { checkSize, fusedControlFeeds, fusedNames, refuseWithoutResiduals } from "./layouts.ts";
import { controlNetIo, type ModelSet, unetIo } from "./models.ts";
import { createRandom, type Random } from "./random.ts";
import type { Scheduler, SchedulerFactory } from "./scheduler.ts";
import { floatTensor, type IoSpec, type LoadedSession, readFloats, timestepTensor } from "./session.ts";
import { addedConditionFeeds, encodePrompts } from "./text.ts";

export interface ControlInput {
  /** ControlNet name in the model folder (controlnet_model entry). */
  name: string;
  /** Conditioning image, planar [3, height, width], values in 0..1 (inpaint condition: -1 where masked). */
  image: Float32Array;
  scale: number;
}

export interface GenerateParams {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  samples: number;
  steps: number;
  guidanceScale: number;
  seed: number;
  /**
   * 1 = the last layer (no skip), 2 = the penultimate, ... (the A1111 / ModelsLab convention; diffusers'
   * clip_skip is this minus 1). Exact, as diffusers computes it: see text.ts.
   */
  clipSkip: number;
  scheduler: string;
  /** Options over the model's scheduler_config.json (use_karras_sigmas, algorithm_type) the job sets. */
  schedulerOptions?: Record<string, unknown>;
  controls: ControlInput[];
  guessMode: boolean;
  /** img2img: planar [3,H,W] in -1..1 and how much of it to repaint (0..1). */
  init?: { image: Float32Array; strength: number };
  /** Inpainting: [H,W], 1 where to repaint. Requires `init`. */
  mask?: Float32Array;
  signal?: AbortSignal;
}

export interface StepTiming {
  totalMs: number;
  /** ONNX Runtime session.run time (ControlNets + UNet). */
  modelMs: number;
  /** scaleModelInput + step (+ addNoise for inpainting). */
  schedulerMs: number;
}

export interface GenerateResult {
  /** RGB, interleaved, width*height*3 bytes each. */
  images: Uint8Array[];
  width: number;
  height: number;
  seed: number;
  steps: StepTiming[];
}

type Feeds = Record<string, ort.Tensor>;

/** A residual input of the UNet: its buffer, where this step's values start in it, and its tensor. */
interface Residual {
  data: Float32Array;
  offset: number;
  input: () => ort.Tensor;
}

async function run(
  s: LoadedSession,
  feeds: Feeds,
  timing: { modelMs: number },
): Promise<ort.InferenceSession.ReturnType> {
  const t0 = performance.now();
  const out = await s.session.run(feeds);
  timing.modelMs += performance.now() - t0;
  return out;
}

function tile(data: Float32Array, times: number): Float32Array {
  if (times === 1) return data;
  const out = new Float32Array(data.length * times);
  for (let i = 0; i < times; i++) out.set(data, i * data.length);
  return out;
}

function get(out: ort.InferenceSession.ReturnType, name: string): ort.Tensor {
  const t = out[name];
  if (!t) throw new Error(`model gave no output ${name}`);
  return t;
}

export class ControlNetPipeline {
  constructor(
    private readonly models: ModelSet,
    private readonly createScheduler: SchedulerFactory,
  ) {}

  private scheduler(name: string, options: Record<string, unknown> = {}): Scheduler {
    const config = { ...this.models.folder.schedulerConfig, ...options };
    try {
      return this.createScheduler(name, config);
    } catch (error) {
      throw badInput(`scheduler ${name} is not supported by the self-hosted worker`, error);
    }
  }

  async generate(p: GenerateParams): Promise<GenerateResult> {
    const { width, height, samples } = p;
    if (width % 8 !== 0 || height % 8 !== 0) throw badInput("width and height must be multiples of 8");
    const h = height / 8;
    const w = width / 8;
    const latentSize = 4 * h * w;
    const cfg = p.guidanceScale > 1;
    const timing = { modelMs: 0 };
    const random = createRandom(p.seed);
    const folder = this.models.folder;

    // Sessions and their IO.
    const wantsInpaintUnet = p.mask !== undefined && folder.paths.unetInpaint !== null;
    const unetSession = await this.models.session(
      wantsInpaintUnet ? (folder.paths.unetInpaint as string) : folder.paths.unet,
    );
    const unet = unetIo(unetSession);
    checkSize(unet.sample, unetSession.path, width, height);

    // Text (SDXL when the UNet takes text_embeds and time_ids).
    const text = await encodePrompts(this.models, {
      prompt: p.prompt,
      negativePrompt: p.negativePrompt,
      samples,
      clipSkip: p.clipSkip,
      cfg,
      sdxl: unet.added !== null,
      timing,
    });
    const cond = text.cond;
    const uncond = text.uncond;

    // diffusers' fused export runs its own ControlNets inside the UNet (fed below, with the UNet's inputs).
    const fused = unet.fused ? fusedNames(unet.fused, folder.fusedControlNets, unetSession.path) : null;
    const controls = await Promise.all(
      (fused ? [] : p.controls).map(async (c) => {
        if (unet.down.length === 0 && unet.mid === null) refuseWithoutResiduals(unetSession.path, c.name);
        const s = await this.models.session(this.models.controlNetPath(c.name));
        const io = controlNetIo(s);
        if (io.down.length !== unet.down.length || unet.mid === null) {
          throw resourceError(
            `ControlNet ${c.name} gives ${io.down.length} down residuals and a mid residual; the UNet takes ${unet.down.length}${unet.mid ? " and a mid residual" : " and no mid residual"}`,
          );
        }
        if ((io.added === null) !== (unet.added === null)) {
          throw resourceError(
            `ControlNet ${c.name} is ${io.added ? "an SDXL" : "an SD 1.x/2.x"} model and the UNet is ${unet.added ? "SDXL" : "not"}`,
          );
        }
        return { ...c, session: s, io };
      }),
    );

    // Scheduler and initial latents.
    const scheduler = this.scheduler(p.scheduler, p.schedulerOptions);
    scheduler.setTimesteps(p.steps);
    let timesteps = scheduler.timesteps.slice();
    const noise = random.normal(samples * latentSize);
    let latents: Float32Array;
    let initLatents: Float32Array | null = null;
    let maskLatent: Float32Array | null = null;
    let maskedImageLatents: Float32Array | null = null;
    if (p.mask && !p.init) throw badInput("mask_image needs init_image");
    if (p.init) {
      // diffusers' get_timesteps: int(num_inference_steps * strength) steps are run, the last ones of
      // the schedule (timesteps[t_start * order:], order 2 for Heun/KDPM2: two entries per step). None
      // left is refused: diffusers' SD pipelines would denoise an empty batch and return no image, its
      // SDXL inpaint pipeline raises "the number of pipeline steps is 0 which is < 1".
      const initSteps = Math.min(Math.floor(p.steps * p.init.strength), p.steps);
      if (initSteps < 1)
        throw badInput(
          `strength ${p.init.strength} × num_inference_steps ${p.steps} leaves no denoising step (int(steps × strength) = 0): raise strength or num_inference_steps`,
        );
      const beginIndex = (p.steps - initSteps) * (scheduler.order ?? 1);
      timesteps = timesteps.slice(beginIndex);
      scheduler.setBeginIndex?.(beginIndex);
      initLatents = tile(await this.encodeImage(p.init.image, width, height, timing, random), samples);
    }
    if (p.mask && p.init) {
      // diffusers' prepare_mask_latents: the mask resized to the latent size by nearest neighbour;
      // a 9-channel UNet also takes the VAE encoding of the masked image, init * (mask < 0.5).
      maskLatent = tile(downsampleMask(p.mask, width, height), samples);
      if (unet.channels === 9) {
        const masked = maskImage(p.init.image, p.mask);
        maskedImageLatents = tile(await this.encodeImage(masked, width, height, timing, random), samples);
      }
    }
    // prepare_latents: img2img always starts from the init image noised to the first timestep; the
    // inpaint pipeline starts from pure noise at strength 1 (is_strength_max), like text-to-image.
    const strengthMax = p.init !== undefined && p.mask !== undefined && p.init.strength === 1;
    if (initLatents && !strengthMax) {
      latents = scheduler.addNoise(initLatents, noise, timesteps[0] as number);
    } else {
      latents = new Float32Array(noise.length);
      const sigma = scheduler.initNoiseSigma;
      for (let i = 0; i < noise.length; i++) latents[i] = (noise[i] as number) * sigma;
    }

    // Constant inputs.
    const batch = cfg ? 2 * samples : samples;
    const ehsAll = uncond ? concat(uncond.data, cond.data) : cond.data;
    const ehsDims = [batch, ...cond.dims.slice(1)];
    const unetEhs = floatTensor(unet.encoderHiddenStates, ehsAll, ehsDims);
    // guess_mode as diffusers runs it (StableDiffusionControlNetPipeline.__call__ and ControlNetModel.forward):
    // the residuals are scaled by logspace(-1, 0, n) at any guidance scale (`guessScaled`); only with
    // classifier-free guidance is the ControlNet run on the conditional half alone (`condOnly`), the
    // unconditional half getting zero residuals.
    const guessScaled = p.guessMode;
    const condOnly = p.guessMode && cfg;
    const cnBatch = condOnly ? samples : batch;
    const cnEhs = (io: (typeof controls)[number]["io"]) =>
      condOnly ? floatTensor(io.encoderHiddenStates, cond.data, [samples, ...cond.dims.slice(1)]) : null;
    // Buffers and tensors the steps reuse, so that a step allocates little: the model input (the scaled
    // latents, twice with CFG: unconditional and conditional halves) and the ONNX Runtime tensors over it,
    // which it reads in place (float32; a float16 input is converted at each step).
    const latentLength = samples * latentSize;
    const modelInput = new Float32Array(batch * latentSize);
    const scaledInput = modelInput.subarray(0, latentLength);
    // SDXL: pooled text embeddings and size ids, for the UNet and (cond half in guess_mode with CFG) ControlNets.
    const unetAdded = unet.added ? addedConditionFeeds(unet.added, text, height, width, "all") : {};
    const controlFeeds = controls.map((c) => {
      if (c.image.length !== 3 * width * height)
        throw badInput(`control image for ${c.name} has the wrong size`);
      const scaleInModel = c.io.scale !== null && !guessScaled;
      // The inputs that are the same at every step; the loop sets the sample and the timestep.
      const feeds: Feeds = {
        [c.io.encoderHiddenStates.name]:
          cnEhs(c.io) ?? floatTensor(c.io.encoderHiddenStates, ehsAll, ehsDims),
        [c.io.cond.name]: floatTensor(c.io.cond, tile(c.image, cnBatch), [cnBatch, 3, height, width]),
        ...(c.io.added
          ? addedConditionFeeds(c.io.added, text, height, width, condOnly ? "cond" : "all")
          : {}),
      };
      if (c.io.scale) feeds[c.io.scale.name] = scalarTensor(c.io.scale, scaleInModel ? c.scale : 1);
      return {
        ...c,
        feeds,
        outputs: [...c.io.down, c.io.mid],
        factor: scaleInModel ? 1 : c.scale,
        sample: reusableInput(c.io.sample, condOnly ? scaledInput : modelInput, [cnBatch, 4, h, w]),
        timestep: timestepInput(c.io.timestep, cnBatch),
      };
    });
    // guess_mode: residual i is scaled by 10^(-1 + i/12) (diffusers' logspace(-1, 0, 13); SDXL's 10).
    const residualCount = unet.down.length + 1;
    const guessScales = Array.from({ length: residualCount }, (_, i) =>
      guessScaled ? 10 ** (-1 + i / Math.max(residualCount - 1, 1)) : 1,
    );
    // Buffers and tensors the steps reuse (see also modelInput above).
    let unetInput: Float32Array = modelInput;
    let unetChannels = 4;
    if (unet.channels === 9 && maskLatent && maskedImageLatents) {
      // Inpainting UNet: [latents, mask, masked image latents] per batch item; only the latents change.
      unetChannels = 9;
      unetInput = concatChannels(
        modelInput,
        cfg ? tile(maskLatent, 2) : maskLatent,
        cfg ? tile(maskedImageLatents, 2) : maskedImageLatents,
        batch,
        h,
        w,
      );
    }
    const unetSample = reusableInput(unet.sample, unetInput, [batch, unetChannels, h, w]);
    const unetTimestep = timestepInput(unet.timestep, batch);
    const unetFeeds: Feeds = { [unet.encoderHiddenStates.name]: unetEhs, ...unetAdded };
    if (unet.fused && fused) {
      const args = { io: unet.fused, names: fused, path: unetSession.path, controls: p.controls, batch };
      Object.assign(unetFeeds, fusedControlFeeds({ ...args, width, height, guess: guessScaled }));
    }
    const residualInputs = [...unet.down, ...(unet.mid ? [unet.mid] : [])];
    // Residuals summed over the ControlNets (or zeros without any), allocated at the first step, when the
    // outputs' sizes are known; guess_mode: the unconditional half stays zero (no ControlNet residuals).
    let residuals: Residual[] | null = null;
    const stepOptions = {
      generator: () => random.gaussian(),
      shape: [samples, 4, h, w] as const,
      predOriginalSample: false,
    };

    const steps: StepTiming[] = [];
    for (let k = 0; k < timesteps.length; k++) {
      if (p.signal?.aborted) throw new StopError();
      const t = timesteps[k] as number;
      const stepStart = performance.now();
      const modelBefore = timing.modelMs;

      let schedulerMs = 0;
      let mark = performance.now();
      const scaled = scheduler.scaleModelInput(latents, t, scaledInput);
      schedulerMs += performance.now() - mark;
      if (scaled !== scaledInput) scaledInput.set(scaled);
      if (cfg) modelInput.copyWithin(latentLength, 0, latentLength);
      if (unetInput !== modelInput) {
        const item = 4 * h * w;
        for (let b = 0; b < batch; b++) {
          unetInput.set(modelInput.subarray(b * item, (b + 1) * item), b * 9 * h * w);
        }
      }

      // ControlNets: residuals summed over every ControlNet. One ControlNet whose scale is applied in
      // the model hands its output tensors to the UNet as they are (no copy, no dtype conversion).
      let summed = false;
      for (const c of controlFeeds) {
        c.feeds[c.io.sample.name] = c.sample();
        c.feeds[c.io.timestep.name] = c.timestep(t);
        const out = await run(c.session, c.feeds, timing);
        const passThrough =
          controlFeeds.length === 1 &&
          !guessScaled &&
          c.factor === 1 &&
          c.outputs.every((n, i) => get(out, n).type === residualInputs[i]?.type);
        if (passThrough) {
          c.outputs.forEach((n, i) => {
            unetFeeds[(residualInputs[i] as { name: string }).name] = get(out, n);
          });
          continue;
        }
        residuals ??= c.outputs.map((n, i) => {
          const dims = get(out, n).dims;
          const perItem = dims.slice(1).reduce((a, b) => a * b, 1);
          const data = new Float32Array(perItem * batch);
          const input = reusableInput(residualInputs[i] as IoSpec, data, [batch, ...dims.slice(1)]);
          return { data, offset: condOnly ? perItem * samples : 0, input };
        });
        c.outputs.forEach((n, i) => {
          const { data, offset } = (residuals as Residual[])[i] as Residual;
          const f = c.factor * (guessScales[i] as number);
          addScaled(data, offset, readFloats(get(out, n)), f, summed);
        });
        summed = true;
      }
      if (controlFeeds.length === 0) {
        residuals ??= residualInputs.map((spec, i) => {
          const dims = residualDims(spec.shape, i, unet.down.length, h, w);
          const data = new Float32Array(dims.slice(1).reduce((a, b) => a * b, 1) * batch);
          return { data, offset: 0, input: reusableInput(spec, data, [batch, ...dims.slice(1)]) };
        });
        summed = true;
      }
      if (summed) {
        residualInputs.forEach((spec, i) => {
          unetFeeds[spec.name] = ((residuals as Residual[])[i] as Residual).input();
        });
      }

      // UNet.
      unetFeeds[unet.sample.name] = unetSample();
      unetFeeds[unet.timestep.name] = unetTimestep(t);
      const out = await run(unetSession, unetFeeds, timing);
      const pred = readFloats(get(out, unet.output));

      // Classifier-free guidance, in place: ONNX Runtime gives new output buffers at every run (no outputs are
      // preallocated), so the model output is ours to overwrite and a multistep scheduler may keep it.
      const noisePred = cfg ? guidance(pred, latentLength, p.guidanceScale) : pred;

      mark = performance.now();
      latents = scheduler.step(noisePred, t, latents, stepOptions).prevSample;
      schedulerMs += performance.now() - mark;

      // Inpainting with a plain UNet: keep the unmasked area on the init image's noise trajectory.
      if (maskLatent && initLatents && unet.channels !== 9) {
        const next = timesteps[k + 1];
        const known = next === undefined ? initLatents : scheduler.addNoise(initLatents, noise, next);
        blend(latents, known, maskLatent);
      }
      steps.push({
        totalMs: performance.now() - stepStart,
        modelMs: timing.modelMs - modelBefore,
        schedulerMs,
      });
    }

    if (p.signal?.aborted) throw new StopError();
    const images: Uint8Array[] = [];
    for (let s = 0; s < samples; s++) {
      images.push(await this.decode(latents.subarray(s * latentSize, (s + 1) * latentSize), h, w, timing));
    }
    return { images, width, height, seed: p.seed, steps };
  }

  private async encodeImage(
    image: Float32Array,
    width: number,
    height: number,
    timing: { modelMs: number },
    random: Random,
  ): Promise<Float32Array> {
    const path = this.models.folder.paths.vaeEncoder;
    if (!path)
      throw badInput("init_image needs a VAE encoder, and this model has none (vae_encoder/model.onnx)");
    const s = await this.models.session(path);
    const input = s.inputs[0];
    const output = s.outputs[0];
    if (!input || !output) throw new Error(`VAE encoder ${path} has no inputs or outputs`);
    const out = await run(s, { [input.name]: floatTensor(input, image, [1, 3, height, width]) }, timing);
    const tensor = get(out, output.name);
    const data = readFloats(tensor);
    const channels = tensor.dims[1] ?? 4;
    const plane = (height / 8) * (width / 8);
    const latents = new Float32Array(4 * plane);
    if (channels === 8) {
      // Mean and log-variance: sample from the distribution, as diffusers' latent_dist.sample() does.
      const eps = random.normal(4 * plane);
      for (let i = 0; i < 4 * plane; i++) {
        const logvar = Math.min(20, Math.max(-30, data[4 * plane + i] as number));
        latents[i] = (data[i] as number) + Math.exp(0.5 * logvar) * (eps[i] as number);
      }
    } else latents.set(data.subarray(0, 4 * plane));
    const sf = this.models.folder.scalingFactor;
    for (let i = 0; i < latents.length; i++) latents[i] = (latents[i] as number) * sf;
    return latents;
  }

  private async decode(
    latent: Float32Array,
    h: number,
    w: number,
    timing: { modelMs: number },
  ): Promise<Uint8Array> {
    const s = await this.models.session(this.models.folder.paths.vaeDecoder);
    const input = s.inputs[0];
    const output = s.outputs[0];
    if (!input || !output) throw new Error("VAE decoder has no inputs or outputs");
    // Non-finite latents (an fp16 UNet overflowing) would decode to NaN too: named at their source.
    const badLatent = firstNonFinite(latent);
    if (badLatent >= 0)
      throw nonFiniteOutput(
        `the denoised latents hold ${latent[badLatent]} at value ${badLatent} of ${latent.length} (the UNet or a ControlNet overflowed): the image would be black`,
      );
    const sf = this.models.folder.scalingFactor;
    const scaled = new Float32Array(latent.length);
    for (let i = 0; i < latent.length; i++) scaled[i] = (latent[i] as number) / sf;
    const out = await run(s, { [input.name]: floatTensor(input, scaled, [1, 4, h, w]) }, timing);
    const img = readFloats(get(out, output.name));
    const bad = firstNonFinite(img);
    if (bad >= 0)
      throw nonFiniteOutput(
        `the VAE decoder (${output.type}) gave ${img[bad]} at value ${bad} of ${img.length}: the image would be black; an fp16 VAE overflows where diffusers upcasts it to float32 (force_upcast), so export the VAE in float32`,
      );
    const H = h * 8;
    const W = w * 8;
    const plane = H * W;
    const rgb = new Uint8Array(plane * 3);
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        const v = ((img[c * plane + i] as number) / 2 + 0.5) * 255;
        rgb[i * 3 + c] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
      }
    }
    return rgb;
  }
}

// The per-step loops over whole tensors live in small functions of their own, which V8 optimises; in the
// body of the long async generate() they would run far slower.

/**
 * Classifier-free guidance: `u + g * (c - u)` over the [uncond, cond] halves of `pred`, written over the
 * unconditional half, which it returns.
 */
function guidance(pred: Float32Array, half: number, g: number): Float32Array {
  const out = pred.subarray(0, half);
  if (simdGuidance(pred, half, g, out)) return out;
  for (let i = 0; i < half; i++) {
    const u = pred[i] as number;
    pred[i] = u + g * ((pred[half + i] as number) - u);
  }
  return out;
}

/** The index of the first NaN or infinite value, or -1. */
function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i] as number)) return i;
  return -1;
}

/** `dst[offset..] = src * f`, or `+= src * f` when `accumulate`. */
function addScaled(
  dst: Float32Array,
  offset: number,
  src: Float32Array,
  f: number,
  accumulate: boolean,
): void {
  const n = src.length;
  if (accumulate) {
    for (let j = 0; j < n; j++) dst[offset + j] = (dst[offset + j] as number) + (src[j] as number) * f;
  } else if (f === 1) dst.set(src, offset);
  else for (let j = 0; j < n; j++) dst[offset + j] = (src[j] as number) * f;
}

/** Inpainting: `latents = m * latents + (1 - m) * known`, in place. */
function blend(latents: Float32Array, known: Float32Array, mask: Float32Array): void {
  for (let i = 0; i < latents.length; i++) {
    const m = mask[i] as number;
    latents[i] = m * (latents[i] as number) + (1 - m) * (known[i] as number);
  }
}

/**
 * A step input over `data`, which the loop rewrites in place: float32 wraps it in one tensor that every
 * step passes again (ONNX Runtime reads the buffer at each run); float16 converts it at each step.
 */
function reusableInput(spec: IoSpec, data: Float32Array, dims: readonly number[]): () => ort.Tensor {
  if (spec.type !== "float32") return () => floatTensor(spec, data, dims);
  const tensor = floatTensor(spec, data, dims);
  return () => tensor;
}

/** The timestep input of a step: one tensor whose data each step overwrites (float16: a new tensor). */
function timestepInput(spec: IoSpec, batch: number): (t: number) => ort.Tensor {
  const tensor = timestepTensor(spec, 0, batch);
  const data: unknown = tensor.data;
  // The same values as timestepTensor writes: float32 as is, integers rounded.
  let fill: ((t: number) => void) | null = null;
  if (data instanceof Float32Array) fill = (t) => data.fill(t);
  else if (data instanceof Int32Array) fill = (t) => data.fill(Math.round(t));
  else if (data instanceof BigInt64Array) fill = (t) => data.fill(BigInt(Math.round(t)));
  if (!fill) return (t) => timestepTensor(spec, t, batch);
  const write = fill;
  return (t) => {
    write(t);
    return tensor;
  };
}

function scalarTensor(spec: Parameters<typeof floatTensor>[0], value: number): ort.Tensor {
  const dims = spec.shape.length === 0 ? [] : [1];
  return floatTensor(spec, new Float32Array([value]), dims);
}

function residualDims(
  shape: ReadonlyArray<number | string>,
  i: number,
  downCount: number,
  h: number,
  w: number,
): number[] {
  // Only used without any ControlNet: zeros in the shape the UNet declares (channels must be fixed).
  const channels = typeof shape[1] === "number" ? shape[1] : 0;
  // Three residuals per level; the mid block is at the deepest level (3 for SD's 12, 2 for SDXL's 9).
  const level = Math.min(3, Math.floor((i >= downCount ? downCount - 1 : i) / 3));
  const f = 2 ** level;
  return [1, channels, Math.ceil(h / f), Math.ceil(w / f)];
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function concatChannels(
  latents: Float32Array,
  mask: Float32Array,
  masked: Float32Array,
  batch: number,
  h: number,
  w: number,
): Float32Array {
  const plane = h * w;
  const out = new Float32Array(batch * 9 * plane);
  for (let b = 0; b < batch; b++) {
    out.set(latents.subarray(b * 4 * plane, (b + 1) * 4 * plane), b * 9 * plane);
    out.set(mask.subarray(b * 4 * plane, b * 4 * plane + plane), b * 9 * plane + 4 * plane);
    out.set(masked.subarray(b * 4 * plane, (b + 1) * 4 * plane), b * 9 * plane + 5 * plane);
  }
  return out;
}

/** The masked image diffusers encodes: `image * (mask < 0.5)` over planar [3,H,W] and an [H,W] mask. */
function maskImage(image: Float32Array, mask: Float32Array): Float32Array {
  const plane = mask.length;
  const out = new Float32Array(image.length);
  for (let c = 0; c < 3; c++)
    for (let i = 0; i < plane; i++) {
      out[c * plane + i] = (mask[i] as number) < 0.5 ? (image[c * plane + i] as number) : 0;
    }
  return out;
}

/**
 * [H,W] mask (1 = repaint) → [4, H/8, W/8], as torch.nn.functional.interpolate(mask, size) does by
 * default (mode "nearest": latent pixel (y, x) takes mask pixel (8y, 8x)).
 */
function downsampleMask(mask: Float32Array, width: number, height: number): Float32Array {
  const h = height / 8;
  const w = width / 8;
  const out = new Float32Array(4 * h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const m = mask[y * 8 * width + x * 8] as number;
      for (let c = 0; c < 4; c++) out[c * h * w + y * w + x] = m;
    }
  }
  return out;
}
