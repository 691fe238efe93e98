/**
 * ControlNet annotators (`auto_hint`): turn an input image into the hint a ControlNet was trained on.
 * What each one matches of its controlnet_aux reference, and where it approximates it:
 * docs/annotators.md.
 *
 * Without weights, on OpenCV (wasm) and sharp: canny, tile, blur, gray, low_quality, shuffle, and
 * qrcode (pass-through); inpaint's condition is built from the mask by the job (see job.ts).
 * With an ONNX model under `<annotatorDir>/<folder>/model.onnx` (the folder is the name, except pose:
 * openpose, scribble: hed): depth, hed, mlsd, normal, openpose/pose, segmentation, softedge, scribble,
 * lineart (models.ts, openpose.ts), face_detector; without one the job fails with
 * "annotator model not installed".
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import { badInput } from "../errors.ts";
import type { RgbImage } from "../images.ts";
import { createRandom } from "../pipeline/random.ts";
import type { LoadedSession, SessionFactory } from "../pipeline/session.ts";
import { floatTensor, readFloats } from "../pipeline/session.ts";
import { hed, lineart, midas, mlsd, normalBae, pidinet, type Size, segmentation } from "./models.ts";
import { type CV, fromRgb, loadOpenCv, type Mat, toRgb, withMats } from "./opencv.ts";
import { openpose } from "./openpose.ts";
import { grey, toDetectResolution, toOutputSize } from "./reference.ts";

export { loadOpenCv };

export const WEIGHTLESS = [
  "canny",
  "tile",
  "blur",
  "gray",
  "low_quality",
  "shuffle",
  "qrcode",
  "inpaint",
] as const;
export const MODEL_ANNOTATORS = [
  "depth",
  "hed",
  "mlsd",
  "normal",
  "openpose",
  "pose",
  "segmentation",
  "softedge",
  "scribble",
  "lineart",
  "face_detector",
] as const;

/** The model folder of an annotator whose network is another's: scribble is HEDdetector(scribble=True). */
const MODEL_FOLDER: Record<string, string> = { pose: "openpose", scribble: "hed" };

export interface AnnotatorOptions {
  /** Folder with <name>/model.onnx per model-based annotator; null when none is installed. */
  annotatorDir: string | null;
  sessions: SessionFactory;
  /** Seed for the random parts (shuffle), so the same job gives the same hint. */
  seed: number;
  /**
   * The control image as uploaded (decoded, not resized), which controlnet_aux's detectors are given:
   * the ports detect on it and return the hint at the size of `image` (the output size). Without it
   * they detect on `image`.
   */
  original?: RgbImage;
}

export async function annotate(name: string, image: RgbImage, options: AnnotatorOptions): Promise<RgbImage> {
  const { width, height } = image;
  if (name === "qrcode" || name === "inpaint") return image;
  if ((MODEL_ANNOTATORS as readonly string[]).includes(name)) return modelAnnotator(name, image, options);
  const { cv } = await loadOpenCv();
  if (name === "canny") return canny(cv, options.original ?? image, image);
  return withMats((track) => {
    const src = track(fromRgb(cv, image));
    const out = track(new cv.Mat());
    switch (name) {
      case "blur":
        cv.GaussianBlur(src, out, new cv.Size(0, 0), Math.max(width, height) / 128);
        break;
      case "gray":
        cv.cvtColor(src, out, cv.COLOR_RGB2GRAY);
        break;
      case "low_quality": {
        const small = track(new cv.Mat());
        cv.resize(
          src,
          small,
          new cv.Size(Math.max(1, width >> 2), Math.max(1, height >> 2)),
          0,
          0,
          cv.INTER_AREA,
        );
        cv.resize(small, out, new cv.Size(width, height), 0, 0, cv.INTER_LINEAR);
        break;
      }
      case "tile": {
        // controlnet_aux's tile preprocessor: one pyramid level down and back up (detail removed).
        const small = track(new cv.Mat());
        cv.pyrDown(src, small);
        cv.resize(small, out, new cv.Size(width, height), 0, 0, cv.INTER_CUBIC);
        break;
      }
      case "shuffle":
        contentShuffle(cv, src, out, width, height, options.seed, track);
        break;
      default:
        throw badInput(`no annotator for ControlNet model "${name}"`);
    }
    return toRgb(cv, out);
  });
}

/**
 * controlnet_aux CannyDetector: cv2.Canny(100, 200) on the RGB image (OpenCV takes the strongest
 * channel's gradient) at the detect resolution, the map resized back as diffusers resizes a control image.
 */
async function canny(cv: CV, image: RgbImage, out: Size): Promise<RgbImage> {
  const detect = toDetectResolution(cv, image);
  const edges = withMats((track) => {
    const src = track(fromRgb(cv, detect));
    const dst = track(new cv.Mat());
    cv.Canny(src, dst, 100, 200);
    return Uint8Array.from(dst.data);
  });
  return toOutputSize(grey(edges, detect.width, detect.height), out.width, out.height);
}

/** controlnet_aux's ContentShuffleDetector: remap through smooth random flow fields. */
function contentShuffle(
  cv: CV,
  src: Mat,
  out: Mat,
  width: number,
  height: number,
  seed: number,
  track: (m: Mat) => Mat,
): void {
  const random = createRandom(seed ^ 0x5f3759df);
  const field = (scale: number) => {
    const f = 256;
    const gw = Math.max(2, Math.ceil(width / f) + 1);
    const gh = Math.max(2, Math.ceil(height / f) + 1);
    const noise = track(new cv.Mat(gh, gw, cv.CV_32F));
    const data = noise.data32F;
    for (let i = 0; i < data.length; i++) data[i] = random.uniform() * scale;
    const big = track(new cv.Mat());
    cv.resize(noise, big, new cv.Size(width, height), 0, 0, cv.INTER_CUBIC);
    return big;
  };
  const mapX = field(width);
  const mapY = field(height);
  cv.remap(src, out, mapX, mapY, cv.INTER_LINEAR, cv.BORDER_REFLECT);
}

/** The ports of controlnet_aux's detectors around their reference models (models.ts). */
const referenceDetectors: Record<
  string,
  (cv: CV, image: RgbImage, s: LoadedSession, out: Size) => Promise<RgbImage>
> = {
  lineart,
  depth: midas,
  normal: normalBae,
  hed: (cv, image, s, out) => hed(cv, image, s, out, false),
  softedge: pidinet,
  scribble: (cv, image, s, out) => hed(cv, image, s, out, true),
  mlsd,
  segmentation,
};

/**
 * A model-based annotator. openpose/pose: the CMU body model, decoded and drawn as controlnet_aux does
 * (openpose.ts); lineart, depth, normal, hed, softedge, scribble, mlsd, segmentation: models.ts. The
 * rest (face_detector): an image-to-map ONNX model (input [1,3,S,S] in 0..1, first output a map);
 * one channel → grey, three → RGB, min-max scaled.
 */
async function modelAnnotator(name: string, image: RgbImage, options: AnnotatorOptions): Promise<RgbImage> {
  const key = MODEL_FOLDER[name] ?? name;
  const path = options.annotatorDir ? join(options.annotatorDir, key, "model.onnx") : null;
  if (!path || !existsSync(path)) {
    throw badInput(
      `annotator model not installed: ${name} (auto_hint needs ${key}/model.onnx in the model's annotators/ folder)`,
    );
  }
  const s = await options.sessions.load(path);
  try {
    if (key === "openpose") return await openpose(options.original ?? image, s, { outputSize: image });
    const reference = referenceDetectors[name];
    if (reference) return await reference((await loadOpenCv()).cv, options.original ?? image, s, image);
    // face_detector: no reference port (controlnet_aux draws a MediaPipe face mesh); the model's first
    // output is mapped to an image as below.
    const input = s.inputs[0];
    const output = s.outputs[0];
    if (!input || !output) throw badInput(`annotator model ${path} has no inputs or outputs`);
    const fixedH = typeof input.shape[2] === "number" ? input.shape[2] : null;
    const fixedW = typeof input.shape[3] === "number" ? input.shape[3] : null;
    const H = fixedH ?? Math.round(image.height / 64) * 64;
    const W = fixedW ?? Math.round(image.width / 64) * 64;
    const resized = await sharp(image.data, {
      raw: { width: image.width, height: image.height, channels: 3 },
    })
      .resize(W, H, { fit: "fill" })
      .raw()
      .toBuffer();
    const plane = W * H;
    const planar = new Float32Array(3 * plane);
    for (let i = 0; i < plane; i++)
      for (let c = 0; c < 3; c++) planar[c * plane + i] = (resized[i * 3 + c] as number) / 255;
    const out = await s.session.run({ [input.name]: floatTensor(input, planar, [1, 3, H, W]) });
    const tensor = out[output.name];
    if (!tensor) throw new Error(`annotator ${name} gave no output`);
    const data = readFloats(tensor);
    const dims = tensor.dims;
    const mh = dims[dims.length - 2] as number;
    const mw = dims[dims.length - 1] as number;
    const channels = dims.length >= 4 ? (dims[1] as number) : 1;
    const mp = mh * mw;
    const rgb = new Uint8Array(mp * 3);
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < channels * mp; i++) {
      const v = data[i] as number;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const range = max - min || 1;
    for (let i = 0; i < mp; i++)
      for (let c = 0; c < 3; c++) {
        const v = data[(channels === 3 ? c : 0) * mp + i] as number;
        rgb[i * 3 + c] = Math.round(((v - min) / range) * 255);
      }
    const back = await sharp(rgb, { raw: { width: mw, height: mh, channels: 3 } })
      .resize(image.width, image.height, { fit: "fill" })
      .raw()
      .toBuffer();
    return { data: new Uint8Array(back), width: image.width, height: image.height };
  } finally {
    await s.session.release();
  }
}
