/**
 * The worker computes what diffusers computes (issue 17, item 2), each step checked against the
 * diffusers source it follows (huggingface/diffusers, src/diffusers/pipelines/...), on tiny graphs and
 * with the real sessions' feeds and outputs recorded (RecordingFactory).
 */
import { cpSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import type ort from "onnxruntime-node";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { type ResultMessage, resultMessageSchema } from "../../shared/schemas/messages.ts";
import { decodeMask, decodeRgb } from "../../worker/src/images.ts";
import type { WorkerJobMessage } from "../../worker/src/messages.ts";
import { GraphBuilder } from "../../worker/src/models/onnx-builder.ts";
import type { ModelSet } from "../../worker/src/pipeline/models.ts";
import { ControlNetPipeline, type GenerateParams } from "../../worker/src/pipeline/pipeline.ts";
import { readFloats } from "../../worker/src/pipeline/session.ts";
import { encodePrompts } from "../../worker/src/pipeline/text.ts";
import { startWorker } from "../../worker/src/start.ts";
import {
  captureLog,
  checkerboard,
  modelRoot,
  pipelineOpener,
  RecordingFactory,
  testSchedulers,
  tinyEntry,
  tinyModel,
  useWorkerAws,
} from "./support.ts";

const W = 128;
const H = 128;
const plane = W * H;
const h = H / 8;
const w = W / 8;

const pipelineFor = pipelineOpener(() => new RecordingFactory());
const checker = (): Float32Array => checkerboard(W, H, 16);

const base = (over: Partial<GenerateParams> = {}): GenerateParams => ({
  prompt: "a photo of a cat",
  negativePrompt: "blurry",
  width: W,
  height: H,
  samples: 1,
  steps: 1,
  guidanceScale: 7.5,
  seed: 1234,
  clipSkip: 1,
  scheduler: "EulerDiscreteScheduler",
  controls: [{ name: "canny", image: checker(), scale: 0.7 }],
  guessMode: false,
  ...over,
});

const floats = (t: ort.Tensor | undefined): Float32Array => {
  if (!t) throw new Error("missing tensor");
  return Float32Array.from(readFloats(t));
};

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

const embed = (models: ModelSet, prompt: string, clipSkip: number, sdxl = false) =>
  encodePrompts(models, {
    prompt,
    negativePrompt: "",
    samples: 1,
    clipSkip,
    cfg: false,
    sdxl,
    timing: { modelMs: 0 },
  });

describe("clip_skip applies to the positive prompt only (diffusers' encode_prompt)", () => {
  it("SD: the negative prompt is last_hidden_state whatever clip_skip is (pipeline_stable_diffusion.py, encode_prompt: negative_prompt_embeds = text_encoder(uncond_input.input_ids)[0])", async () => {
    const models = pipelineFor(tinyModel({ controlnets: ["canny"] })).models;
    const both = await encodePrompts(models, {
      prompt: "a photo of a cat",
      negativePrompt: "blurry",
      samples: 1,
      clipSkip: 3,
      cfg: true,
      sdxl: false,
      timing: { modelMs: 0 },
    });
    const positive = await embed(models, "a photo of a cat", 3);
    const negative = await embed(models, "blurry", 1);
    expect(maxDiff(both.cond.data, positive.cond.data)).toBe(0);
    expect(maxDiff(both.uncond?.data ?? [], negative.cond.data)).toBe(0);
    // and clip_skip really changes the positive embedding
    const unskipped = await embed(models, "a photo of a cat", 1);
    expect(maxDiff(both.cond.data, unskipped.cond.data)).toBeGreaterThan(1e-3);
  });

  it("SDXL: the negative prompt is always hidden_states[-2] of both encoders (pipeline_controlnet_sd_xl.py, encode_prompt: negative_prompt_embeds.hidden_states[-2])", async () => {
    const models = pipelineFor(tinyModel({ sdxl: true, controlnets: ["canny"] })).models;
    const both = await encodePrompts(models, {
      prompt: "a lighthouse",
      negativePrompt: "blurry",
      samples: 1,
      clipSkip: 2,
      cfg: true,
      sdxl: true,
      timing: { modelMs: 0 },
    });
    const positive = await embed(models, "a lighthouse", 2, true);
    const negative = await embed(models, "blurry", 1, true);
    expect(maxDiff(both.cond.data, positive.cond.data)).toBe(0);
    expect(maxDiff(both.uncond?.data ?? [], negative.cond.data)).toBe(0);
    expect(maxDiff(both.pooled?.uncond ?? [], negative.pooled?.cond ?? [])).toBe(0);
    const unskipped = await embed(models, "a lighthouse", 1, true);
    expect(maxDiff(both.cond.data, unskipped.cond.data)).toBeGreaterThan(1e-3);
  });
});

describe("guess_mode (controlnet.py ControlNetModel.forward: residuals × logspace(-1, 0, 13) × conditioning_scale)", () => {
  const { pipeline, models, factory } = pipelineFor(tinyModel({ controlnets: ["canny"] }));
  const unetPath = () => models.folder.paths.unet;
  const cnPath = () => models.controlNetPath("canny");
  const scales = Array.from({ length: 13 }, (_, i) => 10 ** (-1 + i / 12) * 0.7);

  /** The ControlNet's residual outputs (in index order) and the UNet's residual feeds of the only step. */
  function residuals() {
    const cnOut = factory.outputs.get(cnPath())?.[0] ?? {};
    const unetIn = factory.last(unetPath());
    const names = Object.keys(cnOut).sort((a, b) => order(a) - order(b));
    const inputs = Object.keys(unetIn)
      .filter((n) => /residual/.test(n))
      .sort((a, b) => order(a) - order(b));
    expect(names).toHaveLength(13);
    expect(inputs).toHaveLength(13);
    return names.map((n, i) => ({ out: floats(cnOut[n]), fed: floats(unetIn[inputs[i] as string]) }));
  }
  const order = (name: string) => (/mid/.test(name) ? 99 : Number(/(\d+)$/.exec(name)?.[1]));

  it("at guidance ≤ 1 the residuals are still scaled (the pipeline passes guess_mode to the ControlNet at any guidance)", async () => {
    factory.clear();
    await pipeline.generate(base({ guidanceScale: 1, guessMode: true }));
    const cn = factory.last(cnPath());
    // The scale is applied outside the model, with the logspace factors.
    expect(floats(cn.conditioning_scale)).toEqual(Float32Array.from([1]));
    expect(cn.sample?.dims[0]).toBe(1);
    residuals().forEach(({ out, fed }, i) => {
      const want = out.map((v) => v * (scales[i] as number));
      expect(maxDiff(fed, want), `residual ${i}`).toBeLessThan(1e-6);
    });
  });

  it("above guidance 1 the ControlNet runs on the conditional half only and the unconditional half gets zeros (pipeline_controlnet.py __call__)", async () => {
    factory.clear();
    await pipeline.generate(base({ guidanceScale: 5, guessMode: true }));
    const cn = factory.last(cnPath());
    expect(cn.sample?.dims[0]).toBe(1);
    expect(cn.encoder_hidden_states?.dims[0]).toBe(1);
    residuals().forEach(({ out, fed }, i) => {
      expect(fed.length).toBe(2 * out.length);
      expect(fed.subarray(0, out.length).every((v) => v === 0)).toBe(true);
      const want = out.map((v) => v * (scales[i] as number));
      expect(maxDiff(fed.subarray(out.length), want), `residual ${i}`).toBeLessThan(1e-6);
    });
  });

  it("without guess_mode every residual has the conditioning scale alone", async () => {
    factory.clear();
    await pipeline.generate(base({ guidanceScale: 1 }));
    expect(floats(factory.last(cnPath()).conditioning_scale)[0]).toBeCloseTo(0.7, 6);
    for (const { out, fed } of residuals()) expect(maxDiff(fed, out)).toBe(0);
  });
});

describe("img2img and inpainting latents", () => {
  it("a 9-channel UNet gets the VAE encoding of image * (mask < 0.5) and the mask resized by nearest neighbour (pipeline_controlnet_inpaint.py: masked_image = init_image * (mask < 0.5); prepare_mask_latents: interpolate, _encode_vae_image)", async () => {
    const { pipeline, models, factory } = pipelineFor(
      tinyModel({ inpaintUnet: true, controlnets: ["inpaint"] }),
    );
    const init = new Float32Array(3 * plane);
    for (let i = 0; i < init.length; i++) init[i] = Math.sin(i * 0.37) * 0.8;
    // Repaint one column in eight (x % 8 == 0) and the whole right half: nearest-neighbour sampling
    // of the mask at (8y, 8x) makes every latent pixel "repaint"; an 8×8 average would keep the left.
    const mask = new Float32Array(plane);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) mask[y * W + x] = x % 8 === 0 || x >= W / 2 ? 1 : 0;
    factory.clear();
    await pipeline.generate(
      base({
        guidanceScale: 1,
        init: { image: init, strength: 1 },
        mask,
        controls: [{ name: "inpaint", image: checker(), scale: 1 }],
      }),
    );
    const vae = models.folder.paths.vaeEncoder as string;
    const encoded = factory.runs.get(vae) ?? [];
    const masked = init.map((v, i) => ((mask[i % plane] as number) < 0.5 ? v : 0));
    const index = encoded.findIndex((f) => maxDiff(floats(f.sample), masked) === 0);
    expect(index).toBeGreaterThanOrEqual(0);
    // The encoder gives the latent sample, or (the split layout) the distribution's mean and
    // log-variance, sampled by the worker: the tiny encoder's variance is e^-12, so within 0.01 of the mean.
    const encoderOut = Object.values(factory.outputs.get(vae)?.[index] ?? {})[0];
    const mean = floats(encoderOut).subarray(0, 4 * h * w);
    const sf = models.folder.scalingFactor;
    const unetIn = floats(factory.last(models.folder.paths.unetInpaint as string).sample);
    expect(unetIn.length).toBe(9 * h * w);
    expect(unetIn.subarray(4 * h * w, 5 * h * w).every((v) => v === 1)).toBe(true);
    const maskedLatents = unetIn.subarray(5 * h * w);
    expect(
      maxDiff(
        maskedLatents,
        mean.map((v) => v * sf),
      ),
    ).toBeLessThan(0.01);
    expect(maskedLatents.some((v) => Math.abs(v) > 0.05)).toBe(true);
  });

  it("img2img at strength 1 starts from the init image noised to the first timestep (pipeline_controlnet_img2img.py prepare_latents: scheduler.add_noise(init_latents, noise, timestep))", async () => {
    const { pipeline } = pipelineFor(tinyModel({ controlnets: ["canny"] }));
    const a = await pipeline.generate(
      base({ init: { image: new Float32Array(3 * plane).fill(0.6), strength: 1 } }),
    );
    const b = await pipeline.generate(
      base({ init: { image: new Float32Array(3 * plane).fill(-0.6), strength: 1 } }),
    );
    expect(Buffer.from(a.images[0] as Uint8Array).equals(Buffer.from(b.images[0] as Uint8Array))).toBe(false);
  });

  it("img2img tells the scheduler where the run begins (get_timesteps: scheduler.set_begin_index(t_start * order))", async () => {
    const { models } = pipelineFor(tinyModel({ controlnets: ["canny"] }));
    const begins: number[] = [];
    const pipeline = new ControlNetPipeline(models, (name, config) => {
      const scheduler = testSchedulers(name, config);
      const set = scheduler.setBeginIndex?.bind(scheduler);
      expect(set).toBeDefined();
      scheduler.setBeginIndex = (index: number) => {
        begins.push(index);
        set?.(index);
      };
      return scheduler;
    });
    const init = { image: new Float32Array(3 * plane).fill(0.2), strength: 0.5 };
    // Heun: two timestep entries per step; int(4 × 0.5) = 2 steps run, t_start = 2, begin index 4.
    await pipeline.generate(base({ steps: 4, init, scheduler: "HeunDiscreteScheduler" }));
    expect(begins).toEqual([4]);
  });

  it("strength below one step is refused, as diffusers' get_timesteps leaves no step (int(num_inference_steps * strength) = 0)", async () => {
    const { pipeline } = pipelineFor(tinyModel({ controlnets: ["canny"] }));
    const init = { image: new Float32Array(3 * plane).fill(0.2), strength: 0.2 };
    await expect(pipeline.generate(base({ steps: 4, init }))).rejects.toMatchObject({
      kind: "bad_input",
      message: expect.stringContaining("no denoising step"),
    });
    // int(4 × 0.25) = 1: one step, the last of the schedule
    const one = await pipeline.generate(base({ steps: 4, init: { ...init, strength: 0.25 } }));
    expect(one.steps).toHaveLength(1);
  });
});

describe("image preprocessing (image_processor.py VaeImageProcessor.preprocess / resize: resize_mode 'default', resample 'lanczos')", () => {
  /** 200×100 PNG: the left quarter red, the rest blue. */
  async function wide(left: [number, number, number], right: [number, number, number]) {
    const raw = new Uint8Array(200 * 100 * 3);
    for (let y = 0; y < 100; y++)
      for (let x = 0; x < 200; x++) raw.set(x < 50 ? left : right, (y * 200 + x) * 3);
    return sharp(raw, { raw: { width: 200, height: 100, channels: 3 } })
      .png()
      .toBuffer();
  }

  it("resizes the whole image to the target size (no cover crop)", async () => {
    const png = await wide([255, 0, 0], [0, 0, 255]);
    const out = await decodeRgb(png, 64, 64, "control_image");
    // The left quarter of the source is the left quarter of the output (x < 16); a centre crop of a
    // 2:1 image to a square would have cut it away.
    for (const x of [0, 6, 12]) {
      const [r, , b] = out.data.subarray((32 * 64 + x) * 3, (32 * 64 + x) * 3 + 3);
      expect(r, `x=${x}`).toBeGreaterThan(240);
      expect(b, `x=${x}`).toBeLessThan(15);
    }
    const [r, , b] = out.data.subarray((32 * 64 + 40) * 3, (32 * 64 + 40) * 3 + 3);
    expect(r).toBeLessThan(15);
    expect(b).toBeGreaterThan(240);
  });

  it("reads a mask as PIL's convert('L'), resizes it whole, then binarizes at 0.5 (mask_processor: do_convert_grayscale, do_binarize)", async () => {
    // (0, 200, 0) is 117 in PIL's ITU-R 601 luma, under 128: keep. White: repaint.
    const png = await wide([0, 200, 0], [255, 255, 255]);
    const mask = await decodeMask(png, 64, 64);
    expect(mask[32 * 64 + 4]).toBe(0);
    expect(mask[32 * 64 + 10]).toBe(0);
    expect(mask[32 * 64 + 40]).toBe(1);
    // A mask is stretched like the image it goes with: the kept quarter is the left quarter.
    let kept = 0;
    for (let x = 0; x < 64; x++) if (mask[32 * 64 + x] === 0) kept++;
    expect(kept).toBe(16);
  });
});

/** A copy of the tiny model whose VAE decoder overflows as an fp16 VAE can: sqrt of a negative, NaN everywhere. */
function nanVaeModel(): string {
  const dir = mkdtempSync(join(tmpdir(), "nan-vae-"));
  cpSync(tinyModel({ controlnets: ["canny"] }), dir, { recursive: true });
  const g = new GraphBuilder(5);
  const latent = g.input("latent_sample", "float", ["batch", 4, "height", "width"]);
  const up = g.node("DepthToSpace", [g.conv1x1(latent, 4, 3 * 64, 2)], { blocksize: 8, mode: "DCR" });
  const negative = g.node("Sub", [g.node("Neg", [g.node("Abs", [up])]), g.scalar(1)]);
  g.alias(g.node("Sqrt", [negative]), "sample");
  g.output("sample", "float", ["batch", 3, "image_height", "image_width"]);
  writeFileSync(join(dir, "vae_decoder", "model.onnx"), g.encode("vae_decoder"));
  return dir;
}

describe("a non-finite VAE output fails the job instead of storing a black image", () => {
  const aws = useWorkerAws();

  it("NaN from the VAE decoder is a NON_FINITE_OUTPUT failure", async () => {
    const { pipeline } = pipelineFor(nanVaeModel());
    await expect(pipeline.generate(base())).rejects.toMatchObject({
      kind: "bad_input",
      code: "NON_FINITE_OUTPUT",
      message: expect.stringContaining("NaN"),
    });
  });

  it("non-finite latents (an overflowing UNet) are the same failure, named at their source", async () => {
    const { models } = pipelineFor(tinyModel({ controlnets: ["canny"] }));
    const pipeline = new ControlNetPipeline(models, (name, config) => {
      const scheduler = testSchedulers(name, config);
      const step = scheduler.step.bind(scheduler);
      scheduler.step = (...args: Parameters<typeof step>) => {
        const result = step(...args);
        result.prevSample[7] = Number.POSITIVE_INFINITY;
        return result;
      };
      return scheduler;
    });
    await expect(pipeline.generate(base())).rejects.toMatchObject({
      kind: "bad_input",
      code: "NON_FINITE_OUTPUT",
      message: expect.stringContaining("latents hold Infinity at value 7"),
    });
  });

  it("the worker reports it as a final rejection naming the code, and stores no image", async () => {
    const fallback = aws.fauxqs.createQueue("nan-fallback", { attributes: { VisibilityTimeout: "30" } });
    const results = aws.fauxqs.createQueue("nan-results");
    const worker = await startWorker({
      fallbackQueueUrl: fallback.queueUrl,
      resultsQueueUrl: results.queueUrl,
      outputsBucket: "outputs",
      modelDir: modelRoot({ sd15: nanVaeModel() }),
      catalog: [tinyEntry("sd15", { controlnets: ["canny"] })],
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
      healthPort: null,
      threads: 1,
      service: { waitTimeSeconds: 1, heartbeatSeconds: 1, visibilityTimeoutSeconds: 30 },
    });
    try {
      const message: WorkerJobMessage = {
        jobId: "job-nan",
        tenantId: "tenant-a",
        attempt: 1,
        outputsPrefix: "tenant-a/job-nan",
        request: {
          model_id: "sd15",
          controlnet_model: "canny",
          controlnet_type: "canny",
          prompt: "a lighthouse",
          control_image: aws.control,
          base64: "yes",
          width: 128,
          height: 128,
          num_inference_steps: 1,
          seed: 5,
          scheduler: "EulerDiscreteScheduler",
        } as WorkerJobMessage["request"],
      };
      await aws.sqs.send(
        new SendMessageCommand({ QueueUrl: fallback.queueUrl, MessageBody: JSON.stringify(message) }),
      );
      let result: ResultMessage | null = null;
      await expect
        .poll(
          async () => {
            const out = await aws.sqs.send(
              new ReceiveMessageCommand({ QueueUrl: results.queueUrl, WaitTimeSeconds: 1 }),
            );
            const body = out.Messages?.[0]?.Body;
            if (body) result = resultMessageSchema.parse(JSON.parse(body));
            return result;
          },
          { timeout: 20_000 },
        )
        .not.toBeNull();
      expect(result).toMatchObject({
        jobId: "job-nan",
        result: { kind: "rejected", retryable: false, code: "NON_FINITE_OUTPUT" },
      });
      const listed = await aws.s3.send(
        new ListObjectsV2Command({ Bucket: "outputs", Prefix: "tenant-a/job-nan" }),
      );
      expect(listed.KeyCount ?? 0).toBe(0);
    } finally {
      await worker.stop();
    }
  });
});
