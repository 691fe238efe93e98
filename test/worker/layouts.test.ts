/**
 * The model folders the worker loads (worker/src/pipeline/layouts.ts, docs/onnx-layouts.md), built as
 * tiny graphs with each exporter's names, shapes and dtypes:
 * - diffusers' scripts/convert_stable_diffusion_controlnet_to_onnx.py: UNet2DConditionControlNetModel
 *   (UNet2DConditionXLControlNetModel for --sd_xl) and convert_models()'s onnx_export call give one
 *   unet/model.onnx with inputs sample, timestep, encoder_hidden_states, controlnet_conds,
 *   conditioning_scales (+ text_embeds, time_ids) and output noise_pred; examples/community/
 *   run_onnx_controlnet.py feeds it.
 * - onnx-web: api/onnx_web/convert/diffusion/diffusers.py (convert_diffusion_diffusers_cnet: the
 *   residual UNet in cnet/, inputs down_block_{i} and mid_block_additional_residual, timestep [batch])
 *   and convert/diffusion/control.py (convert_diffusion_control: output_names names two of the
 *   ControlNet's 13 outputs, and there is no conditioning_scale input).
 * - optimum: optimum/exporters/onnx/model_configs.py UNetOnnxConfig (no residual inputs, scalar
 *   timestep, out_sample).
 * - the split layout of tools/export-onnx/export.py, named by tools/export-onnx/contract.json.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { buildTinyModel, TINY } from "../../worker/src/models/tiny.ts";
import { checkSize } from "../../worker/src/pipeline/layouts.ts";
import { controlNetIo, textEncoderIo, unetIo } from "../../worker/src/pipeline/models.ts";
import type { GenerateParams } from "../../worker/src/pipeline/pipeline.ts";
import type { LoadedSession } from "../../worker/src/pipeline/session.ts";
import { pipelineOpener, tinyModel } from "./support.ts";

const W = 256;
const H = 192;

function pattern(seed: number): Float32Array {
  const plane = W * H;
  const img = new Float32Array(3 * plane);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const v = (((x + seed * 16) >> 5) + (y >> 5)) % 2;
      for (let c = 0; c < 3; c++) img[c * plane + y * W + x] = v;
    }
  return img;
}

const base = (over: Partial<GenerateParams> = {}): GenerateParams => ({
  prompt: "a photo of a cat",
  negativePrompt: "",
  width: W,
  height: H,
  samples: 1,
  steps: 2,
  guidanceScale: 7.5,
  seed: 77,
  clipSkip: 1,
  scheduler: "EulerDiscreteScheduler",
  controls: [{ name: "canny", image: pattern(0), scale: 1 }],
  guessMode: false,
  ...over,
});

const pipelineFor = pipelineOpener();

/** The largest difference between two images' bytes. */
function maxDiff(a: Uint8Array | undefined, b: Uint8Array | undefined): number {
  if (!a || !b || a.length !== b.length) throw new Error("images of different sizes");
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return max;
}

const io = (s: LoadedSession) => ({
  inputs: s.inputs.map((i) => ({ name: i.name, type: i.type, shape: [...i.shape] })),
  outputs: s.outputs.map((o) => o.name),
});

describe("diffusers' fused export (convert_stable_diffusion_controlnet_to_onnx.py)", () => {
  const split = pipelineFor(tinyModel());
  const fused = pipelineFor(tinyModel({ layout: "fused", fusedControlNets: ["canny", "depth"] }));

  it("has the script's inputs, dtypes and shapes; the worker reads it with the ControlNets it was exported with", async () => {
    const s = await fused.models.session(fused.models.folder.paths.unet);
    // onnx_export(...ordered_input_names, output_names=["noise_pred"], dynamic_axes): N = 2 fixed,
    // timestep [1] and conditioning_scales [N, 1] without dynamic axes.
    expect(io(s)).toEqual({
      inputs: [
        { name: "sample", type: "float32", shape: ["2B", 4, "H", "W"] },
        { name: "timestep", type: "float32", shape: [1] },
        { name: "encoder_hidden_states", type: "float32", shape: ["2B", 77, TINY.hidden] },
        { name: "controlnet_conds", type: "float32", shape: [2, "2B", 3, "8H", "8W"] },
        { name: "conditioning_scales", type: "float32", shape: [2, 1] },
      ],
      outputs: ["noise_pred"],
    });
    const unet = unetIo(s);
    expect(unet.fused?.count).toBe(2);
    expect(unet.down).toEqual([]);
    expect(unet.mid).toBeNull();
    expect(unet.output).toBe("noise_pred");
    expect(fused.models.folder.fusedControlNets).toEqual(["canny", "depth"]);
    expect(fused.models.folder.controlnets.size).toBe(0);
  });

  it("computes what the split folder with the same weights computes: one ControlNet, both (stacked conds and scales), none, and without guidance", async () => {
    const cases: Partial<GenerateParams>[] = [
      {},
      { controls: [{ name: "depth", image: pattern(1), scale: 0.6 }] },
      {
        controls: [
          { name: "depth", image: pattern(1), scale: 0.4 },
          { name: "canny", image: pattern(0), scale: 0.7 },
        ],
      },
      { controls: [] },
      { guidanceScale: 1, samples: 2 },
    ];
    const outputs: Uint8Array[] = [];
    for (const over of cases) {
      const a = await split.pipeline.generate(base(over));
      const b = await fused.pipeline.generate(base(over));
      expect(b.images).toHaveLength(a.images.length);
      a.images.forEach((image, i) => {
        expect(maxDiff(image, b.images[i])).toBeLessThanOrEqual(1);
      });
      outputs.push(b.images[0] as Uint8Array);
    }
    // The cases differ from each other: the stacked inputs reach the graph.
    expect(maxDiff(outputs[0], outputs[1])).toBeGreaterThan(0);
    expect(maxDiff(outputs[1], outputs[2])).toBeGreaterThan(0);
    expect(maxDiff(outputs[0], outputs[3])).toBeGreaterThan(0);
  });

  it("--fp16 (every float input float16, the timestep too) and --sd_xl (text_embeds, time_ids) run", async () => {
    const half = pipelineFor(tinyModel({ layout: "fused", float: "float16", fusedControlNets: ["canny"] }));
    const s = await half.models.session(half.models.folder.paths.unet);
    expect(s.inputs.every((i) => i.type === "float16")).toBe(true);
    const a = await half.pipeline.generate(base());
    expect(maxDiff(a.images[0], (await half.pipeline.generate(base())).images[0])).toBe(0);

    const xlSplit = pipelineFor(tinyModel({ sdxl: true, controlnets: ["canny", "depth"] }));
    const xlFused = pipelineFor(
      tinyModel({
        sdxl: true,
        controlnets: ["canny", "depth"],
        layout: "fused",
        fusedControlNets: ["canny"],
      }),
    );
    const xl = await xlFused.models.session(xlFused.models.folder.paths.unet);
    expect(io(xl).inputs.slice(5)).toEqual([
      { name: "text_embeds", type: "float32", shape: ["2B", TINY.projection] },
      { name: "time_ids", type: "float32", shape: ["2B", 6] },
    ]);
    const want = await xlSplit.pipeline.generate(base());
    expect(maxDiff(want.images[0], (await xlFused.pipeline.generate(base())).images[0])).toBeLessThanOrEqual(
      1,
    );
  });

  it("refuses by name a ControlNet the graph was not exported with, one named twice, and guess_mode at any guidance", async () => {
    await expect(
      fused.pipeline.generate(base({ controls: [{ name: "openpose", image: pattern(0), scale: 1 }] })),
    ).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringMatching(/"openpose" is not in the fused UNet .*exported with canny, depth/),
    });
    const twice = [
      { name: "canny", image: pattern(0), scale: 1 },
      { name: "canny", image: pattern(1), scale: 1 },
    ];
    await expect(fused.pipeline.generate(base({ controls: twice }))).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringContaining('"canny" is named twice'),
    });
    await expect(fused.pipeline.generate(base({ guessMode: true }))).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringContaining("guess_mode"),
    });
    // diffusers scales guess_mode's residuals without guidance too, which the fused graph cannot.
    await expect(fused.pipeline.generate(base({ guessMode: true, guidanceScale: 1 }))).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringContaining("guess_mode"),
    });
  });

  it("without unet/controlnets.json, or with one naming another count, the folder is not usable (resource error saying what to write)", async () => {
    const unnamed = pipelineFor(tinyModel({ layout: "fused", fusedNamesFile: false }));
    await expect(unnamed.pipeline.generate(base())).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringContaining("write unet/controlnets.json"),
    });
    const miscounted = pipelineFor(tinyModel({ layout: "fused", fusedControlNets: ["canny"] }));
    const dir = miscounted.models.folder.dir;
    const wrong = buildTinyModel(mkdtempSync(join(tmpdir(), "tiny-fused-")), {
      layout: "fused",
      fusedControlNets: ["canny", "depth"],
    });
    // the two-ControlNet graph with the one-name file
    copyFileSync(join(dir, "unet", "controlnets.json"), join(wrong, "unet", "controlnets.json"));
    await expect(pipelineFor(wrong).pipeline.generate(base())).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringContaining("names 1 ControlNet(s) (canny) and"),
    });
    writeFileSync(join(wrong, "unet", "controlnets.json"), '{"controlnets": ["canny", "canny"]}');
    expect(() => pipelineFor(wrong)).toThrow(expect.objectContaining({ kind: "resource" }));
    rmSync(wrong, { recursive: true, force: true });
  });
});

describe("onnx-web's folder", () => {
  it("runs its residual UNet from cnet/ and reads its ControlNet's residuals by position", async () => {
    const web = pipelineFor(tinyModel({ layout: "onnx-web", controlnets: ["canny"] }));
    expect(web.models.folder.paths.unet).toMatch(/cnet[/\\]model\.onnx$/);
    const unet = unetIo(await web.models.session(web.models.folder.paths.unet));
    expect(unet.down.map((d) => d.name)).toEqual(Array.from({ length: 12 }, (_, i) => `down_block_${i}`));
    expect(unet.timestep.shape).toEqual(["batch"]);
    const cn = controlNetIo(await web.models.session(web.models.controlNetPath("canny")));
    expect(cn.scale).toBeNull();
    // torch.onnx.export gave output_names' two names to the first two of the 13 outputs.
    expect(cn.down.slice(0, 2)).toEqual(["down_block_res_samples", "mid_block_res_sample"]);
    expect(cn.down).toHaveLength(12);
    expect(cn.mid).toBe("2785");
    // The same weights as the split folder: the same image, with the scale applied by the worker.
    const split = pipelineFor(tinyModel({ controlnets: ["canny"] }));
    for (const scale of [1, 0.5]) {
      const over = { controls: [{ name: "canny", image: pattern(0), scale }] };
      const a = await split.pipeline.generate(base(over));
      const b = await web.pipeline.generate(base(over));
      expect(maxDiff(a.images[0], b.images[0])).toBeLessThanOrEqual(1);
    }
  });
});

describe("a UNet without residual inputs (optimum's UNetOnnxConfig)", () => {
  it("runs no ControlNet: a job with one is refused, saying which export to make", async () => {
    const optimum = pipelineFor(tinyModel({ layout: "optimum", timestep: "float" }));
    const s = await optimum.models.session(optimum.models.folder.paths.unet);
    expect(io(s).inputs.map((i) => [i.name, i.shape])).toEqual([
      ["sample", ["batch", 4, "height", "width"]],
      ["timestep", []],
      ["encoder_hidden_states", ["batch", 77, TINY.hidden]],
    ]);
    expect(io(s).outputs).toEqual(["out_sample"]);
    await expect(optimum.pipeline.generate(base())).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringMatching(/takes no ControlNet residuals.*"canny".*tools\/export-onnx/),
    });
  });
});

describe("sizes a traced UNet cannot take", () => {
  const split = pipelineFor(tinyModel());

  it("the tiny UNet, like a traced one, fails inside the graph when the latent does not halve evenly at every level", async () => {
    const s = await split.models.session(split.models.folder.paths.unet);
    const unet = unetIo(s);
    const run = (latent: number) => {
      const sizes = [latent, Math.ceil(latent / 2), Math.ceil(latent / 4), Math.ceil(latent / 8)];
      const level = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3];
      const feeds: Record<string, ort.Tensor> = {
        sample: new ort.Tensor("float32", new Float32Array(4 * latent * latent), [1, 4, latent, latent]),
        timestep: new ort.Tensor("float32", new Float32Array([500]), [1]),
        encoder_hidden_states: new ort.Tensor("float32", new Float32Array(77 * TINY.hidden), [
          1,
          77,
          TINY.hidden,
        ]),
      };
      const residual = (spec: (typeof unet.down)[number], l: number) => {
        const c = spec.shape[1] as number;
        const n = sizes[l] as number;
        feeds[spec.name] = new ort.Tensor("float32", new Float32Array(c * n * n), [1, c, n, n]);
      };
      unet.down.forEach((spec, i) => {
        residual(spec, level[i] as number);
      });
      if (unet.mid) residual(unet.mid, 3);
      return s.session.run(feeds);
    };
    expect((await run(16)).out_sample?.dims).toEqual([1, 4, 16, 16]);
    // 96 px: latent 12 → 6 → 3 → 2, upsampled to 4 against a skip of 3.
    await expect(run(12)).rejects.toThrow(/Concat|dimension|shape/i);
  });

  it("the worker refuses them as bad input naming width and height, before running anything; multiples of 64 run", async () => {
    for (const [width, height] of [
      [96, 192],
      [256, 200],
    ] as const) {
      await expect(
        split.pipeline.generate(
          base({
            width,
            height,
            controls: [{ name: "canny", image: new Float32Array(3 * width * height), scale: 1 }],
          }),
        ),
      ).rejects.toMatchObject({
        kind: "bad_input",
        message: expect.stringContaining(`width ${width} and height ${height} must be multiples of 64`),
      });
    }
    const wide = await split.pipeline.generate(
      base({
        width: 320,
        height: 64,
        controls: [{ name: "canny", image: new Float32Array(3 * 320 * 64), scale: 1 }],
      }),
    );
    expect(wide.images[0]).toHaveLength(320 * 64 * 3);
  });

  it("an export traced at a fixed size takes only that size", () => {
    const sample = { name: "sample", type: "float16", shape: [2, 4, 64, 96] };
    expect(() => checkSize(sample, "unet/model.onnx", 768, 512)).not.toThrow();
    expect(() => checkSize(sample, "unet/model.onnx", 512, 512)).toThrow(
      expect.objectContaining({
        kind: "bad_input",
        message: expect.stringContaining("exported for width 768, height 512 only"),
      }),
    );
  });
});

describe("the split layout's contract (tools/export-onnx/contract.json)", () => {
  const contract = JSON.parse(
    readFileSync(new URL("../../tools/export-onnx/contract.json", import.meta.url), "utf8"),
  ) as {
    size_multiple: number;
    residual_count: { sd: number; sdxl: number };
    text_encoder: { inputs: string[]; outputs: string[]; hidden_states: string };
    text_encoder_2: { inputs: string[]; outputs: string[]; hidden_states: string };
    unet: {
      inputs: string[];
      sdxl_inputs: string[];
      down_residual: string;
      mid_residual: string;
      outputs: string[];
    };
    controlnet: { inputs: string[]; sdxl_inputs: string[]; down_residual: string; mid_residual: string };
    vae_encoder: { inputs: string[]; outputs: string[] };
    vae_decoder: { inputs: string[]; outputs: string[] };
  };
  const indexed = (pattern: string, n: number) =>
    Array.from({ length: n }, (_, i) => pattern.replace("{i}", String(i)));

  it.each([
    ["SD", false],
    ["SDXL", true],
  ] as const)(
    "%s: the tiny split graphs carry exactly its names, and the loader reads them in order",
    async (_, sdxl) => {
      const { models } = pipelineFor(tinyModel(sdxl ? { sdxl: true, controlnets: ["canny"] } : {}));
      const n = sdxl ? contract.residual_count.sdxl : contract.residual_count.sd;
      const added = sdxl ? contract.unet.sdxl_inputs : [];
      const p = models.folder.paths;
      const unetSession = await models.session(p.unet);
      expect(io(unetSession).inputs.map((i) => i.name)).toEqual([
        ...contract.unet.inputs,
        ...added,
        ...indexed(contract.unet.down_residual, n),
        contract.unet.mid_residual,
      ]);
      expect(io(unetSession).outputs).toEqual(contract.unet.outputs);
      const unet = unetIo(unetSession);
      expect(unet.down.map((d) => d.name)).toEqual(indexed(contract.unet.down_residual, n));
      expect(unet.mid?.name).toBe(contract.unet.mid_residual);

      const cnSession = await models.session(models.controlNetPath("canny"));
      expect(io(cnSession).inputs.map((i) => i.name)).toEqual([...contract.controlnet.inputs, ...added]);
      expect(io(cnSession).outputs).toEqual([
        ...indexed(contract.controlnet.down_residual, n),
        contract.controlnet.mid_residual,
      ]);
      const cn = controlNetIo(cnSession);
      expect(cn.down).toEqual(indexed(contract.controlnet.down_residual, n));
      expect(cn.mid).toBe(contract.controlnet.mid_residual);

      const te = await models.session(p.textEncoder);
      expect(io(te).inputs.map((i) => i.name)).toEqual(contract.text_encoder.inputs);
      expect(io(te).outputs.slice(0, 2)).toEqual(contract.text_encoder.outputs);
      expect(textEncoderIo(te).hiddenStates).toEqual(
        indexed(contract.text_encoder.hidden_states, TINY.layers + 1),
      );
      if (sdxl) {
        const te2 = await models.session(p.textEncoder2 as string);
        expect(io(te2).outputs.slice(0, 2)).toEqual(contract.text_encoder_2.outputs);
        expect(textEncoderIo(te2).textEmbeds).toBe("text_embeds");
      }
      const enc = await models.session(p.vaeEncoder as string);
      expect(io(enc)).toMatchObject({ outputs: contract.vae_encoder.outputs });
      expect(enc.outputs[0]?.shape[1]).toBe(8);
      const dec = await models.session(p.vaeDecoder);
      expect(io(dec).inputs.map((i) => i.name)).toEqual(contract.vae_decoder.inputs);
      expect(io(dec).outputs).toEqual(contract.vae_decoder.outputs);
      expect(contract.size_multiple).toBe(64);
    },
  );

  it("export.py names every graph from contract.json and hard-codes none of its names", () => {
    const script = readFileSync(new URL("../../tools/export-onnx/export.py", import.meta.url), "utf8");
    expect(script).toContain("contract.json");
    for (const name of [
      contract.unet.down_residual.replace("{i}", ""),
      contract.unet.mid_residual,
      contract.controlnet.down_residual.replace("{i}", ""),
      contract.controlnet.mid_residual,
      ...contract.vae_encoder.outputs,
    ]) {
      expect(script).not.toContain(`"${name}`);
    }
  });
});
