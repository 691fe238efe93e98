/**
 * The annotators against their controlnet_aux references (huggingface/controlnet_aux, src/controlnet_aux/
 * <name>/__init__.py and util.py), on small synthetic images and tiny ONNX graphs with the reference
 * models' input and output shapes: what goes into each model (normalisation), what comes out of it
 * (inversion, decoding, palette, thresholds), at the detect resolution (`resize_image(image, 512)`).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { annotate } from "../../worker/src/annotators/index.ts";
import { ADE20K_PALETTE, decodeMlsd } from "../../worker/src/annotators/models.ts";
import { type RgbImage, resizeLanczos } from "../../worker/src/images.ts";
import { buildParams } from "../../worker/src/job.ts";
import type { WorkerJobMessage } from "../../worker/src/messages.ts";
import { GraphBuilder } from "../../worker/src/models/onnx-builder.ts";
import { SessionFactory } from "../../worker/src/pipeline/session.ts";
import { captureLog, tinyEntry } from "./support.ts";

const size = 128;

/** A square of `inner` (RGB) on a background of `outer`, 128×128. */
function square(outer: readonly number[], inner: readonly number[]): RgbImage {
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const inside = x >= 32 && x < 96 && y >= 32 && y < 96;
      data.set(inside ? inner : outer, (y * size + x) * 3);
    }
  return { data, width: size, height: size };
}
const px = (img: RgbImage, x: number, y: number) =>
  Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));

function install(name: string, g: GraphBuilder): string {
  const dir = mkdtempSync(join(tmpdir(), "annotators-ref-"));
  mkdirSync(join(dir, name));
  writeFileSync(join(dir, name, "model.onnx"), g.encode(name));
  return dir;
}
const options = (annotatorDir: string | null) => ({
  annotatorDir,
  sessions: new SessionFactory("cpu", captureLog().log),
  seed: 7,
});
/** The mean over the colour channels, [1,1,h,w]. */
const channelMean = (g: GraphBuilder, x: string) => g.node("ReduceMean", [x], { axes: [1], keepdims: 1 });

describe("canny (canny/__init__.py CannyDetector)", () => {
  it("runs cv2.Canny(100, 200) on the RGB image, so an edge of equal grey but different colour is found", async () => {
    // (200, 0, 0) and (60, 60, 60) are both grey 60: a grey-level Canny sees no edge at all.
    const out = await annotate("canny", square([60, 60, 60], [200, 0, 0]), options(null));
    expect(out.width).toBe(size);
    expect(out.height).toBe(size);
    // A 1-pixel edge at the 512² detect resolution, brought to 128² (Lanczos): faint but there.
    let edge = 0;
    for (let y = 40; y < 88; y++)
      if (Math.max(...[30, 31, 32].map((x) => px(out, x, y)[0] as number)) > 20) edge++;
    expect(edge).toBe(48);
    expect(px(out, 64, 64)).toEqual([0, 0, 0]);
    expect(px(out, 5, 5)).toEqual([0, 0, 0]);
  });
});

describe("the detectors see the image as uploaded (controlnet_aux is given the upload; diffusers resizes the hint)", () => {
  /** 512² grey 60 with a 1-pixel vertical line of 120 at x 256: a detail that a 128² copy loses. */
  function fineLine(): RgbImage {
    const data = new Uint8Array(512 * 512 * 3).fill(60);
    for (let y = 0; y < 512; y++) data.fill(120, (y * 512 + 256) * 3, (y * 512 + 257) * 3);
    return { data, width: 512, height: 512 };
  }
  const lineColumn = (hint: RgbImage) =>
    Math.max(...[62, 63, 64, 65].map((x) => px(hint, x, 64)[0] as number));

  it("canny detects on `original` and returns the hint at the output size", async () => {
    const original = fineLine();
    const small: RgbImage = {
      data: await resizeLanczos(original.data, original, 3, size, size),
      width: size,
      height: size,
    };
    const fromUpload = await annotate("canny", small, { ...options(null), original });
    expect(fromUpload.width).toBe(size);
    expect(lineColumn(fromUpload)).toBeGreaterThan(40);
    // On the output-size copy the line is too faint for Canny(100, 200).
    expect(lineColumn(await annotate("canny", small, options(null)))).toBe(0);
  });

  it("the job gives the annotator the uploaded control image", async () => {
    const original = fineLine();
    const png = await sharp(original.data, { raw: { width: 512, height: 512, channels: 3 } })
      .png()
      .toBuffer();
    const message: WorkerJobMessage = {
      jobId: "job-1",
      tenantId: "tenant-a",
      attempt: 1,
      outputsPrefix: "tenant-a/job-1",
      request: {
        model_id: "sd15",
        controlnet_model: "canny",
        controlnet_type: "canny",
        prompt: "a lighthouse",
        control_image: png.toString("base64"),
        base64: "yes",
        auto_hint: "yes",
        width: size,
        height: size,
      } as WorkerJobMessage["request"],
    };
    const params = await buildParams(message, {
      fetchImage: async (url) => {
        throw new Error(`no network in tests: ${url}`);
      },
      annotatorDir: null,
      sessions: new SessionFactory("cpu", captureLog().log),
      maxSteps: null,
      catalog: [tinyEntry("sd15")],
    });
    const hint = params.controls[0]?.image as Float32Array;
    expect(hint).toHaveLength(3 * size * size);
    const column = Math.max(...[62, 63, 64, 65].map((x) => hint[64 * size + x] as number));
    expect(column * 255).toBeGreaterThan(40);
  });
});

describe("lineart (lineart/__init__.py LineartDetector)", () => {
  it("feeds RGB / 255 and returns the model's line map inverted (255 - map)", async () => {
    // Generator(3, 1, 3)'s shapes: [1,3,H,W] in, [1,1,H,W] out; here the line map is the channel mean.
    const g = new GraphBuilder(1);
    const x = g.input("input", "float", [1, 3, "h", "w"]);
    g.alias(channelMean(g, x), "output");
    g.output("output", "float", [1, 1, "h", "w"]);
    const out = await annotate(
      "lineart",
      square([20, 20, 20], [230, 230, 230]),
      options(install("lineart", g)),
    );
    // 255 - trunc(v / 255 * 255): background 20 → 235, square 230 → 25 (± float rounding).
    expect(Math.abs((px(out, 4, 4)[0] as number) - 235)).toBeLessThanOrEqual(1);
    expect(Math.abs((px(out, 64, 64)[0] as number) - 25)).toBeLessThanOrEqual(1);
  });
});

describe("depth (midas/__init__.py MidasDetector)", () => {
  it("feeds RGB / 127.5 - 1 and min-max normalises the depth", async () => {
    // |mean| of the normalised input: 20 → 0.84 (the largest), 230 → 0.80; in 0..1 the order flips.
    const g = new GraphBuilder(2);
    const x = g.input("image", "float", [1, 3, "h", "w"]);
    g.alias(g.node("Abs", [channelMean(g, x)]), "depth");
    g.output("depth", "float", [1, 1, "h", "w"]);
    const out = await annotate("depth", square([20, 20, 20], [230, 230, 230]), options(install("depth", g)));
    // (The detect-resolution resize rings at the square's edges, which stretches the min-max range.)
    expect(px(out, 4, 4)[0] as number).toBeGreaterThan(px(out, 64, 64)[0] as number);
  });
});

describe("normal (normalbae/__init__.py NormalBAEDetector)", () => {
  it("feeds ImageNet-normalised RGB / 255 and maps the first three channels by ((n + 1) / 2) × 255", async () => {
    // NNET's prediction [1,4,H,W] (normal x, y, z and kappa); here the normalised input and its mean.
    // The traced graph's outputs: the predictions (here the full-size one) and the 1/8 one again, last.
    const g = new GraphBuilder(3);
    const x = g.input("image", "float", [1, 3, "h", "w"]);
    const full = g.node("Concat", [x, channelMean(g, x)], { axis: 1 });
    g.alias(full, "output_0");
    g.output("output_0", "float", [1, 4, "h", "w"]);
    const eighth = g.node("AveragePool", [full], { kernel_shape: [8, 8], strides: [8, 8] });
    g.alias(g.node("Sub", [g.node("Mul", [eighth, g.scalar(0)]), g.scalar(1)]), "output_1");
    g.output("output_1", "float", [1, 4, "h8", "w8"]);
    const grey = square([128, 128, 128], [128, 128, 128]);
    const out = await annotate("normal", grey, options(install("normal", g)));
    // (128/255 - mean) / std per channel, then trunc(((n + 1) / 2) × 255).
    expect(px(out, 64, 64)).toEqual([136, 153, 181]);
    expect(px(out, 3, 100)).toEqual([136, 153, 181]);
  });
});

/** ControlNetHED_Apache2's five side outputs (logits at /1 … /16) from (mean pixel - 125) / 50. */
function hedGraph(): GraphBuilder {
  const g = new GraphBuilder(4);
  const x = g.input("image", "float", [1, 3, "h", "w"]);
  let side = g.node("Div", [g.node("Sub", [channelMean(g, x), g.scalar(125)]), g.scalar(50)]);
  for (let i = 0; i < 5; i++) {
    if (i > 0) side = g.node("AveragePool", [side], { kernel_shape: [2, 2], strides: [2, 2] });
    g.alias(side, `projection${i + 1}`);
    g.output(`projection${i + 1}`, "float", [1, 1, `h${i}`, `w${i}`]);
  }
  return g;
}

describe("hed and scribble (hed/__init__.py HEDdetector)", () => {
  it("hed feeds RGB in 0..255 and takes the sigmoid of the mean of the side outputs", async () => {
    const out = await annotate(
      "hed",
      square([20, 20, 20], [230, 230, 230]),
      options(install("hed", hedGraph())),
    );
    // sigmoid(∓2.1) × 255, truncated: 27 and 227.
    expect(Math.abs((px(out, 4, 4)[0] as number) - 27)).toBeLessThanOrEqual(1);
    expect(Math.abs((px(out, 64, 64)[0] as number) - 227)).toBeLessThanOrEqual(1);
  });

  it("scribble is HED with scribble=True: nms(127, σ 3), blur, then only 0 or 255 (the HED model, no Canny)", async () => {
    const dir = install("hed", hedGraph());
    const out = await annotate("scribble", square([20, 20, 20], [230, 230, 230]), options(dir));
    // The HED map is above 127 inside the square and below outside it.
    expect(px(out, 64, 64)).toEqual([255, 255, 255]);
    expect(px(out, 4, 4)).toEqual([0, 0, 0]);
    await expect(
      annotate("scribble", square([20, 20, 20], [230, 230, 230]), options(null)),
    ).rejects.toMatchObject({
      kind: "bad_input",
      message: expect.stringContaining("hed/model.onnx"),
    });
  });
});

describe("softedge (pidi/__init__.py PidiNetDetector)", () => {
  it("feeds BGR / 255 and takes the last output (the fused edge map, a sigmoid already) as it is", async () => {
    // PidiNet's outputs: side maps, then the fused one [1,1,H,W]; here the first input channel (blue).
    const g = new GraphBuilder(7);
    const x = g.input("image", "float", [1, 3, "h", "w"]);
    g.alias(
      g.node("AveragePool", [channelMean(g, x)], { kernel_shape: [2, 2], strides: [2, 2] }),
      "output_0",
    );
    g.output("output_0", "float", [1, 1, "h2", "w2"]);
    g.alias(g.node("Conv", [x, g.floats([1, 3, 1, 1], [1, 0, 0])]), "output_1");
    g.output("output_1", "float", [1, 1, "h", "w"]);
    const out = await annotate(
      "softedge",
      square([200, 0, 10], [10, 0, 200]),
      options(install("softedge", g)),
    );
    expect(Math.abs((px(out, 4, 4)[0] as number) - 10)).toBeLessThanOrEqual(1);
    expect(Math.abs((px(out, 64, 64)[0] as number) - 200)).toBeLessThanOrEqual(1);
  });
});

describe("mlsd (mlsd/__init__.py MLSDdetector, mlsd/utils.py pred_lines)", () => {
  /** A [1, 9, 256, 256] map with one line centre at (x 128, y 100), displacements ±50 along x. */
  function lineMap(): Float32Array {
    const plane = 256 * 256;
    const map = new Float32Array(9 * plane);
    map.fill(-10, 0, plane);
    const at = 100 * 256 + 128;
    map[at] = 5;
    map[plane + at] = -50; // start x
    map[3 * plane + at] = 50; // end x
    return map;
  }

  it("decodes a line: sigmoid centre above 0.1, 3×3 maximum, displacement ×2 to input pixels", () => {
    expect(decodeMlsd(lineMap(), 256, 256)).toEqual([[156, 200, 356, 200]]);
    // A centre under the score threshold gives nothing.
    const weak = lineMap();
    weak[100 * 256 + 128] = -3;
    expect(decodeMlsd(weak, 256, 256)).toEqual([]);
  });

  it("draws the decoded line white on black and brings it to the image size", async () => {
    // M-LSD's shapes: [1,4,H,W] (RGB and ones) in, [1,9,H/2,W/2] out; here a fixed map (+ 0 × input).
    const g = new GraphBuilder(5);
    const x = g.input("image", "float", [1, 4, "h", "w"]);
    const pooled = channelMean(g, g.node("AveragePool", [x], { kernel_shape: [2, 2], strides: [2, 2] }));
    const zero = g.node("Mul", [pooled, g.scalar(0)]);
    g.alias(g.node("Add", [g.floats([1, 9, 256, 256], lineMap()), zero]), "lines");
    g.output("lines", "float", [1, 9, "h2", "w2"]);
    const out = await annotate("mlsd", square([20, 20, 20], [230, 230, 230]), options(install("mlsd", g)));
    // The 512² detect canvas has the line at y 200, x 156…356: y 50, x 39…89 at 128².
    expect(px(out, 64, 50)[0]).toBeGreaterThan(40);
    expect(px(out, 64, 40)[0]).toBeLessThan(10);
    expect(px(out, 20, 50)[0]).toBeLessThan(10);
    expect(px(out, 110, 50)[0]).toBeLessThan(10);
  });
});

describe("segmentation (ADE20K palette, controlnet_aux util.py ade_palette)", () => {
  it("colours each pixel's argmax class with its ADE20K colour", async () => {
    expect(ADE20K_PALETTE).toHaveLength(150);
    // UperNet's shapes: [1,3,H,W] in, [1,150,H,W] logits out. Class 0 (wall) where the normalised
    // pixel is dark, class 2 (sky) where it is light, every other class far below.
    const g = new GraphBuilder(6);
    const x = g.input("pixel_values", "float", [1, 3, "h", "w"]);
    const weight = new Float32Array(150 * 3);
    const bias = new Float32Array(150).fill(-100);
    weight.fill(-1, 0, 3);
    weight.fill(1, 6, 9);
    bias[0] = 0;
    bias[2] = 0;
    g.alias(g.node("Conv", [x, g.floats([150, 3, 1, 1], weight), g.floats([150], bias)]), "logits");
    g.output("logits", "float", [1, 150, "h", "w"]);
    const out = await annotate(
      "segmentation",
      square([20, 20, 20], [230, 230, 230]),
      options(install("segmentation", g)),
    );
    expect(px(out, 4, 4)).toEqual([120, 120, 120]);
    expect(px(out, 64, 64)).toEqual([6, 230, 230]);
  });
});
