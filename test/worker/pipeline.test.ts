import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildTinyModel, TINY_SCHEDULER_CONFIG } from "../../worker/src/models/tiny.ts";
import { controlNetIo, ModelSet, textEncoderIo, unetIo } from "../../worker/src/pipeline/models.ts";
import type { GenerateParams } from "../../worker/src/pipeline/pipeline.ts";
import { SessionFactory } from "../../worker/src/pipeline/session.ts";
import { captureLog, checkerboard, pipelineOpener, tinyModel } from "./support.ts";

const W = 256;
const H = 256;
const plane = W * H;

const checker = (): Float32Array => checkerboard(W, H, 32);

const base = (over: Partial<GenerateParams> = {}): GenerateParams => ({
  prompt: "a photo of a cat",
  negativePrompt: "",
  width: W,
  height: H,
  samples: 1,
  steps: 3,
  guidanceScale: 7.5,
  seed: 1234,
  clipSkip: 1,
  scheduler: "EulerDiscreteScheduler",
  controls: [{ name: "canny", image: checker(), scale: 1 }],
  guessMode: false,
  ...over,
});

const pipelineFor = pipelineOpener();

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe("IO introspection", () => {
  it("reads names, dtypes, timestep kind and residual order from the sessions (int32 ids, fp32)", async () => {
    const { models } = pipelineFor(tinyModel());
    const p = models.folder.paths;
    const te = textEncoderIo(await models.session(p.textEncoder));
    expect(te.ids).toMatchObject({ name: "input_ids", type: "int32" });
    expect(te.hiddenStates).toEqual([
      "hidden_states.0",
      "hidden_states.1",
      "hidden_states.2",
      "hidden_states.3",
    ]);
    const unet = unetIo(await models.session(p.unet));
    expect(unet.sample.type).toBe("float32");
    expect(unet.timestep).toMatchObject({ type: "float32", shape: [1] });
    expect(unet.down.map((d) => d.name)).toEqual(
      Array.from({ length: 12 }, (_, i) => `down_block_additional_residual_${i}`),
    );
    expect(unet.mid?.name).toBe("mid_block_additional_residual");
    const cn = controlNetIo(await models.session(models.controlNetPath("canny")));
    expect(cn.scale?.name).toBe("conditioning_scale");
    expect(cn.cond.name).toBe("controlnet_cond");
  });

  it("handles int64 ids, fp16 tensors, int64 per-batch timesteps, other names and shuffled output order", async () => {
    const dir = tinyModel({
      ids: "int64",
      float: "float16",
      timestep: "int64",
      residualNames: "short",
      shuffleOutputs: true,
      scaleInput: false,
      controlnets: ["canny"],
    });
    const { pipeline, models } = pipelineFor(dir);
    const p = models.folder.paths;
    expect(textEncoderIo(await models.session(p.textEncoder)).ids.type).toBe("int64");
    const unet = unetIo(await models.session(p.unet));
    expect(unet.sample.type).toBe("float16");
    expect(unet.timestep).toMatchObject({ type: "int64", shape: ["batch"] });
    const cn = controlNetIo(await models.session(models.controlNetPath("canny")));
    expect(cn.scale).toBeNull();
    // Exported as 11, 10, ..., 0; used in index order.
    const session = await models.session(models.controlNetPath("canny"));
    expect(session.outputs[0]?.name).toBe("down_block_11");
    expect(cn.down).toEqual(Array.from({ length: 12 }, (_, i) => `down_block_${i}`));
    const out = await pipeline.generate(base({ clipSkip: 2 }));
    expect(out.images[0]).toHaveLength(plane * 3);
    const again = await pipeline.generate(base({ clipSkip: 2 }));
    expect(same(out.images[0] as Uint8Array, again.images[0] as Uint8Array)).toBe(true);
  });
});

describe("pipeline", () => {
  const { pipeline } = pipelineFor(tinyModel());

  it("is deterministic: same seed and inputs give identical bytes; another seed differs", async () => {
    const a = await pipeline.generate(base());
    const b = await pipeline.generate(base());
    const c = await pipeline.generate(base({ seed: 99 }));
    expect(same(a.images[0] as Uint8Array, b.images[0] as Uint8Array)).toBe(true);
    expect(same(a.images[0] as Uint8Array, c.images[0] as Uint8Array)).toBe(false);
    expect(a.steps).toHaveLength(3);
  });

  it("the prompt, guidance, clip_skip and the ControlNet scale all change the output", async () => {
    const ref = (await pipeline.generate(base())).images[0] as Uint8Array;
    for (const over of [
      { prompt: "a red dog" },
      { guidanceScale: 1 },
      { clipSkip: 2 },
      { controls: [{ name: "canny", image: checker(), scale: 2 }] },
    ]) {
      const img = (await pipeline.generate(base(over))).images[0] as Uint8Array;
      expect(same(ref, img), JSON.stringify(Object.keys(over))).toBe(false);
    }
  });

  it("runs several samples and several ControlNets (residuals summed with their own scales)", async () => {
    const single = await pipeline.generate(base());
    const multi = await pipeline.generate(
      base({
        samples: 2,
        controls: [
          { name: "canny", image: checker(), scale: 1 },
          { name: "depth", image: checker(), scale: 0.5 },
        ],
      }),
    );
    expect(multi.images).toHaveLength(2);
    expect(same(multi.images[0] as Uint8Array, multi.images[1] as Uint8Array)).toBe(false);
    expect(same(single.images[0] as Uint8Array, multi.images[0] as Uint8Array)).toBe(false);
  });

  it("guess_mode changes the output (ControlNet on the conditional half only, scaled residuals)", async () => {
    const plain = await pipeline.generate(base());
    const guess = await pipeline.generate(base({ guessMode: true }));
    expect(same(plain.images[0] as Uint8Array, guess.images[0] as Uint8Array)).toBe(false);
  });

  it("img2img starts from the init image and runs strength × steps steps", async () => {
    const init = new Float32Array(3 * plane).fill(0.2);
    const out = await pipeline.generate(base({ steps: 4, init: { image: init, strength: 0.5 } }));
    expect(out.steps).toHaveLength(2);
    const other = await pipeline.generate(
      base({ steps: 4, init: { image: init.map(() => -0.7), strength: 0.5 } }),
    );
    expect(same(out.images[0] as Uint8Array, other.images[0] as Uint8Array)).toBe(false);
  });

  it("inpainting keeps the unmasked area close to the init image", async () => {
    const init = new Float32Array(3 * plane).fill(-0.5);
    const mask = new Float32Array(plane);
    for (let y = 0; y < H; y++) for (let x = W / 2; x < W; x++) mask[y * W + x] = 1; // repaint the right half
    const out = await pipeline.generate(base({ init: { image: init, strength: 1 }, mask }));
    const img = out.images[0] as Uint8Array;
    const decodedInit = await pipeline.generate(
      base({ init: { image: init, strength: 1 }, mask: new Float32Array(plane) }),
    );
    const ref = decodedInit.images[0] as Uint8Array;
    // The left (kept) half equals the result of keeping everything; the right half differs.
    let leftDiff = 0;
    let rightDiff = 0;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < 3; c++) {
          const i = (y * W + x) * 3 + c;
          const d = Math.abs((img[i] as number) - (ref[i] as number));
          if (x < W / 2 - 8) leftDiff += d;
          else if (x >= W / 2 + 8) rightDiff += d;
        }
    expect(leftDiff).toBe(0);
    expect(rightDiff).toBeGreaterThan(0);
  });

  it("uses a 9-channel inpainting UNet with mask and masked-image latents when the folder has one", async () => {
    const { pipeline: p9, models } = pipelineFor(tinyModel({ inpaintUnet: true, controlnets: ["inpaint"] }));
    const init = new Float32Array(3 * plane).fill(0.1);
    const mask = new Float32Array(plane).fill(1);
    const out = await p9.generate(
      base({
        init: { image: init, strength: 1 },
        mask,
        controls: [{ name: "inpaint", image: checker(), scale: 1 }],
      }),
    );
    expect(out.images[0]).toHaveLength(plane * 3);
    const unet = unetIo(await models.session(models.folder.paths.unetInpaint as string));
    expect(unet.channels).toBe(9);
  });

  it("a ControlNet missing from the folder is a resource error (retried elsewhere)", async () => {
    await expect(
      pipeline.generate(base({ controls: [{ name: "mlsd", image: checker(), scale: 1 }] })),
    ).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringContaining("model not installed"),
    });
  });

  it("a scheduler_config.json option the port does not implement is a bad input, not ignored", async () => {
    const dir = buildTinyModel(mkdtempSync(join(tmpdir(), "tiny-model-")));
    writeFileSync(
      join(dir, "scheduler", "scheduler_config.json"),
      JSON.stringify({ ...TINY_SCHEDULER_CONFIG, use_exponential_sigmas: true }),
    );
    const { pipeline: exotic } = pipelineFor(dir);
    await expect(exotic.generate(base({ scheduler: "EulerDiscreteScheduler" }))).rejects.toMatchObject({
      kind: "bad_input",
      message: expect.stringContaining("EulerDiscreteScheduler"),
    });
    // the same key at diffusers' default is accepted
    writeFileSync(
      join(dir, "scheduler", "scheduler_config.json"),
      JSON.stringify({ ...TINY_SCHEDULER_CONFIG, use_exponential_sigmas: false }),
    );
    const { pipeline: plain } = pipelineFor(dir);
    expect((await plain.generate(base({ scheduler: "EulerDiscreteScheduler" }))).images).toHaveLength(1);
  });

  it("a missing base model is a resource error", () => {
    const empty = mkdtempSync(join(tmpdir(), "no-model-"));
    expect(() => ModelSet.open(empty, new SessionFactory("cpu", captureLog().log))).toThrow(
      expect.objectContaining({ kind: "resource", message: expect.stringContaining("model not installed") }),
    );
  });
});
