/**
 * Tiny stand-ins for a model entry's optional upscaler and safety checker, with the input and output
 * names, dtypes and ranks of the real exports (see worker/src/postprocess.ts):
 *
 * - upscaler: ESRGAN-like, `input` [1, 3, H, W] → `output` [1, 3, sH, sW] (here a nearest-neighbour
 *   Resize by `scale`).
 * - safety checker: diffusers' StableDiffusionSafetyChecker ONNX export, `clip_input` [B, 3, 224, 224]
 *   and `images` [B, H, W, 3] → `out_images` (the images) and `has_nsfw_concepts` [B] (bool), here true
 *   when the mean of `clip_input` is above `threshold` (a large negative threshold flags every image,
 *   a large positive one none).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GraphBuilder } from "./onnx-builder.ts";

export function buildTinyUpscaler(scale: 2 | 4): Uint8Array {
  const g = new GraphBuilder(7);
  const x = g.input("input", "float", [1, 3, "height", "width"]);
  const scales = g.floats([4], [1, 1, scale, scale]);
  const up = g.node("Resize", [x, "", scales], { mode: "nearest" });
  g.alias(up, "output");
  g.output("output", "float", [1, 3, "out_height", "out_width"]);
  return g.encode("upscaler");
}

export function buildTinySafetyChecker(threshold: number): Uint8Array {
  const g = new GraphBuilder(8);
  const clip = g.input("clip_input", "float", ["batch", "channels", "height", "width"]);
  const images = g.input("images", "float", ["batch", "height", "width", "channels"]);
  const mean = g.node("ReduceMean", [clip], { axes: [1, 2, 3], keepdims: 0 });
  g.node("Greater", [mean, g.scalar(threshold)], {}, ["has_nsfw_concepts"]);
  g.alias(images, "out_images");
  g.output("out_images", "float", ["batch", "height", "width", "channels"]);
  g.output("has_nsfw_concepts", "bool", ["batch"]);
  return g.encode("safety_checker");
}

/** Adds them to a model folder: upscaler/model.onnx and safety_checker/model.onnx. */
export function addTinyPostprocessing(
  dir: string,
  options: { upscale?: 2 | 4; nsfwThreshold?: number },
): string {
  if (options.upscale) {
    mkdirSync(join(dir, "upscaler"), { recursive: true });
    writeFileSync(join(dir, "upscaler", "model.onnx"), buildTinyUpscaler(options.upscale));
  }
  if (options.nsfwThreshold !== undefined) {
    mkdirSync(join(dir, "safety_checker"), { recursive: true });
    writeFileSync(join(dir, "safety_checker", "model.onnx"), buildTinySafetyChecker(options.nsfwThreshold));
  }
  return dir;
}
