/**
 * What runs on the generated images when a job asks and its model entry has the model for it
 * (shared/domain/fleet-capabilities.ts refuses it otherwise):
 *
 * - `safety_checker: "yes"`: diffusers' StableDiffusionSafetyChecker as its ONNX export
 *   (scripts/convert_stable_diffusion_checkpoint_to_onnx.py, `forward_onnx`): inputs `clip_input`
 *   [B, 3, 224, 224] (CLIP's preprocessing: shortest side to 224, centre crop, CLIP mean/std) and
 *   `images` [B, H, W, 3] in 0..1; outputs `out_images` and `has_nsfw_concepts` [B] (bool). A flagged
 *   image is blacked out, as the provider ("replaces with blank image") and diffusers do, and the job
 *   reports `nsfw_content_detected`.
 * - `upscale: "yes"`: an ESRGAN-like image-to-image graph, [1, 3, H, W] in 0..1 → [1, 3, sH, sW]. The
 *   provider upscales 2× (512×512 becomes 1024×1024), so a 4× model's output is resized down to 2×.
 */
import type ort from "onnxruntime-node";
import sharp from "sharp";
import { PROVIDER_UPSCALE_FACTOR } from "../../shared/domain/model-catalog.ts";
import { resourceError } from "./errors.ts";
import { floatTensor, type LoadedSession, readFloats } from "./pipeline/session.ts";

/** CLIPImageProcessor's normalisation (openai/clip-vit-large-patch14, the safety checker's feature extractor). */
const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;
const CLIP_SIZE = 224;

function io(s: LoadedSession, name: string, where: "input" | "output") {
  const spec = (where === "input" ? s.inputs : s.outputs).find((x) => x.name === name);
  if (!spec)
    throw resourceError(
      `unsupported safety checker export ${s.path}: no ${where} ${name} (has ${(where === "input" ? s.inputs : s.outputs).map((x) => x.name).join(", ")})`,
    );
  return spec;
}

/** CLIP's input for one RGB image: [3, 224, 224], normalised. */
async function clipInput(rgb: Uint8Array, width: number, height: number): Promise<Float32Array> {
  const pixels = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .resize(CLIP_SIZE, CLIP_SIZE, { fit: "cover", position: "centre", kernel: "cubic" })
    .raw()
    .toBuffer();
  const plane = CLIP_SIZE * CLIP_SIZE;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      out[c * plane + i] =
        ((pixels[i * 3 + c] as number) / 255 - (CLIP_MEAN[c] as number)) / (CLIP_STD[c] as number);
    }
  }
  return out;
}

function flagged(tensor: ort.Tensor): boolean {
  const data = tensor.data as ArrayLike<unknown>;
  if (data.length < 1) throw resourceError("the safety checker gave no has_nsfw_concepts value");
  return Boolean(data[0]);
}

/**
 * Runs the safety checker on each image (one at a time, as diffusers' ONNX pipeline does); blacks out,
 * in place, each one it flags. Returns whether it flagged any.
 */
export async function checkSafety(
  s: LoadedSession,
  images: Uint8Array[],
  width: number,
  height: number,
): Promise<boolean> {
  const clip = io(s, "clip_input", "input");
  const imagesIn = io(s, "images", "input");
  io(s, "has_nsfw_concepts", "output");
  let any = false;
  for (const image of images) {
    const hwc = new Float32Array(image.length);
    for (let i = 0; i < image.length; i++) hwc[i] = (image[i] as number) / 255;
    const out = await s.session.run({
      [clip.name]: floatTensor(clip, await clipInput(image, width, height), [1, 3, CLIP_SIZE, CLIP_SIZE]),
      [imagesIn.name]: floatTensor(imagesIn, hwc, [1, height, width, 3]),
    });
    const nsfw = out.has_nsfw_concepts;
    if (!nsfw) throw resourceError("the safety checker gave no has_nsfw_concepts output");
    if (flagged(nsfw)) {
      image.fill(0);
      any = true;
    }
  }
  return any;
}

/**
 * Upscales one RGB image with the upscaler graph (scale `scale`), then, when that is not the
 * provider's factor, resizes to it. Returns the image and its size.
 */
export async function upscale(
  s: LoadedSession,
  image: Uint8Array,
  width: number,
  height: number,
  scale: number,
): Promise<{ data: Uint8Array; width: number; height: number }> {
  const input = s.inputs[0];
  const output = s.outputs[0];
  if (!input || !output) throw resourceError(`upscaler ${s.path} has no inputs or outputs`);
  const plane = width * height;
  const planar = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) planar[c * plane + i] = (image[i * 3 + c] as number) / 255;
  }
  const out = await s.session.run({ [input.name]: floatTensor(input, planar, [1, 3, height, width]) });
  const tensor = out[output.name];
  if (!tensor) throw resourceError(`upscaler ${s.path} gave no ${output.name}`);
  const [, channels, H, W] = tensor.dims;
  if (channels !== 3 || H !== height * scale || W !== width * scale) {
    throw resourceError(
      `upscaler ${s.path} gave [${tensor.dims.join(", ")}] for a ${width}×${height} image; its catalog entry says ${scale}×`,
    );
  }
  const values = readFloats(tensor);
  const big = W * H;
  const rgb = new Uint8Array(big * 3);
  for (let i = 0; i < big; i++) {
    for (let c = 0; c < 3; c++) {
      const v = (values[c * big + i] as number) * 255;
      rgb[i * 3 + c] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
    }
  }
  const targetW = width * PROVIDER_UPSCALE_FACTOR;
  const targetH = height * PROVIDER_UPSCALE_FACTOR;
  if (W === targetW && H === targetH) return { data: rgb, width: W, height: H };
  const resized = await sharp(rgb, { raw: { width: W, height: H, channels: 3 } })
    .resize(targetW, targetH, { fit: "fill", kernel: "lanczos3" })
    .raw()
    .toBuffer();
  return {
    data: new Uint8Array(resized.buffer, resized.byteOffset, resized.length),
    width: targetW,
    height: targetH,
  };
}
