/**
 * The model-based annotators other than openpose, each a port of its controlnet_aux detector's
 * pre- and post-processing around an ONNX export of the reference model (huggingface/controlnet_aux,
 * src/controlnet_aux/<name>/__init__.py). Every one detects at controlnet_aux's detect resolution
 * (`resize_image(image, 512)`, reference.ts) and its hint goes back to the output size as diffusers
 * resizes a control image. The input/output contract of each graph is in docs/annotators.md.
 */
import { badInput } from "../errors.ts";
import type { RgbImage } from "../images.ts";
import type { IoSpec, LoadedSession } from "../pipeline/session.ts";
import { floatTensor, readFloats } from "../pipeline/session.ts";
import { type CV, withMats } from "./opencv.ts";
import {
  gaussianBlur8,
  grey,
  nms,
  resizeFloatLinear,
  toByte,
  toDetectResolution,
  toOutputSize,
} from "./reference.ts";

/** ImageNet mean and standard deviation (torchvision Normalize, as NormalBAE and UperNet use them). */
const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** controlnet_aux util.py `ade_palette()`: the ADE20K colour of each of the 150 classes. */
export const ADE20K_PALETTE: readonly (readonly [number, number, number])[] = [
  [120, 120, 120],
  [180, 120, 120],
  [6, 230, 230],
  [80, 50, 50],
  [4, 200, 3],
  [120, 120, 80],
  [140, 140, 140],
  [204, 5, 255],
  [230, 230, 230],
  [4, 250, 7],
  [224, 5, 255],
  [235, 255, 7],
  [150, 5, 61],
  [120, 120, 70],
  [8, 255, 51],
  [255, 6, 82],
  [143, 255, 140],
  [204, 255, 4],
  [255, 51, 7],
  [204, 70, 3],
  [0, 102, 200],
  [61, 230, 250],
  [255, 6, 51],
  [11, 102, 255],
  [255, 7, 71],
  [255, 9, 224],
  [9, 7, 230],
  [220, 220, 220],
  [255, 9, 92],
  [112, 9, 255],
  [8, 255, 214],
  [7, 255, 224],
  [255, 184, 6],
  [10, 255, 71],
  [255, 41, 10],
  [7, 255, 255],
  [224, 255, 8],
  [102, 8, 255],
  [255, 61, 6],
  [255, 194, 7],
  [255, 122, 8],
  [0, 255, 20],
  [255, 8, 41],
  [255, 5, 153],
  [6, 51, 255],
  [235, 12, 255],
  [160, 150, 20],
  [0, 163, 255],
  [140, 140, 140],
  [250, 10, 15],
  [20, 255, 0],
  [31, 255, 0],
  [255, 31, 0],
  [255, 224, 0],
  [153, 255, 0],
  [0, 0, 255],
  [255, 71, 0],
  [0, 235, 255],
  [0, 173, 255],
  [31, 0, 255],
  [11, 200, 200],
  [255, 82, 0],
  [0, 255, 245],
  [0, 61, 255],
  [0, 255, 112],
  [0, 255, 133],
  [255, 0, 0],
  [255, 163, 0],
  [255, 102, 0],
  [194, 255, 0],
  [0, 143, 255],
  [51, 255, 0],
  [0, 82, 255],
  [0, 255, 41],
  [0, 255, 173],
  [10, 0, 255],
  [173, 255, 0],
  [0, 255, 153],
  [255, 92, 0],
  [255, 0, 255],
  [255, 0, 245],
  [255, 0, 102],
  [255, 173, 0],
  [255, 0, 20],
  [255, 184, 184],
  [0, 31, 255],
  [0, 255, 61],
  [0, 71, 255],
  [255, 0, 204],
  [0, 255, 194],
  [0, 255, 82],
  [0, 10, 255],
  [0, 112, 255],
  [51, 0, 255],
  [0, 194, 255],
  [0, 122, 255],
  [0, 255, 163],
  [255, 153, 0],
  [0, 255, 10],
  [255, 112, 0],
  [143, 255, 0],
  [82, 0, 255],
  [163, 255, 0],
  [255, 235, 0],
  [8, 184, 170],
  [133, 0, 255],
  [0, 255, 92],
  [184, 0, 255],
  [255, 0, 31],
  [0, 184, 255],
  [0, 214, 255],
  [255, 0, 112],
  [92, 255, 0],
  [0, 224, 255],
  [112, 224, 255],
  [70, 184, 160],
  [163, 0, 255],
  [153, 0, 255],
  [71, 255, 0],
  [255, 0, 163],
  [255, 204, 0],
  [255, 0, 143],
  [0, 255, 235],
  [133, 255, 0],
  [255, 0, 235],
  [245, 0, 255],
  [255, 0, 122],
  [255, 245, 0],
  [10, 190, 212],
  [214, 255, 0],
  [0, 204, 255],
  [20, 0, 255],
  [255, 255, 0],
  [0, 153, 255],
  [0, 41, 255],
  [0, 255, 204],
  [41, 0, 255],
  [41, 255, 0],
  [173, 0, 255],
  [0, 245, 255],
  [71, 0, 255],
  [122, 0, 255],
  [0, 255, 184],
  [0, 92, 255],
  [184, 255, 0],
  [0, 133, 255],
  [255, 214, 0],
  [25, 194, 194],
  [102, 255, 0],
  [92, 0, 255],
];

type Tensor = { data: Float32Array; dims: readonly number[] };
/** The size of the hint: the job's output size. */
export type Size = { width: number; height: number };

/** Interleaved RGB → planar [channels,H,W] floats, `f(value, channel)` for the three colour planes. */
function planar(image: RgbImage, f: (v: number, c: number) => number, channels = 3): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(channels * plane);
  for (let i = 0; i < plane; i++)
    for (let c = 0; c < 3; c++) out[c * plane + i] = f(image.data[i * 3 + c] as number, c);
  return out;
}

function firstInput(s: LoadedSession): IoSpec {
  const input = s.inputs[0];
  if (!input || s.outputs.length === 0) throw badInput(`annotator model ${s.path} has no inputs or outputs`);
  return input;
}

async function run(s: LoadedSession, data: Float32Array, dims: number[]): Promise<Tensor[]> {
  const input = firstInput(s);
  const out = await s.session.run({ [input.name]: floatTensor(input, data, dims) });
  return s.outputs.map((o) => {
    const t = out[o.name];
    if (!t) throw new Error(`annotator model ${s.path} gave no output ${o.name}`);
    return { data: Float32Array.from(readFloats(t)), dims: t.dims };
  });
}

const hw = (t: Tensor) => ({ height: t.dims.at(-2) as number, width: t.dims.at(-1) as number });

/**
 * lineart (LineartDetector): RGB / 255 in, the line map (1 channel) out, `(line * 255).clip` to bytes,
 * then inverted (`255 - detected_map`): white lines on black, as the lineart ControlNet takes them.
 */
export async function lineart(cv: CV, image: RgbImage, s: LoadedSession, out: Size): Promise<RgbImage> {
  const d = toDetectResolution(cv, image);
  const [line] = (await run(
    s,
    planar(d, (v) => v / 255),
    [1, 3, d.height, d.width],
  )) as [Tensor];
  const size = hw(line);
  const bytes = new Uint8Array(size.width * size.height);
  for (let i = 0; i < bytes.length; i++) bytes[i] = 255 - toByte(line.data[i] as number);
  return toOutputSize(grey(bytes, size.width, size.height), out.width, out.height);
}

/** depth (MidasDetector): RGB / 127.5 - 1 in, depth out, min-max normalised to bytes. */
export async function midas(cv: CV, image: RgbImage, s: LoadedSession, out: Size): Promise<RgbImage> {
  const d = toDetectResolution(cv, image);
  const [depth] = (await run(
    s,
    planar(d, (v) => v / 127.5 - 1),
    [1, 3, d.height, d.width],
  )) as [Tensor];
  const size = hw(depth);
  const n = size.width * size.height;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const v = depth.data[i] as number;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  // depth -= min; depth /= max: a constant map divides 0 by 0 (NaN, which astype stores as 0).
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const v = ((depth.data[i] as number) - min) / (max - min);
    bytes[i] = Number.isNaN(v) ? 0 : toByte(v);
  }
  return toOutputSize(grey(bytes, size.width, size.height), out.width, out.height);
}

/**
 * normal (NormalBAEDetector): RGB / 255 then ImageNet-normalised in; `normal[0][-1][:, :3]`: of the
 * network's predictions (at 1/8, 1/4, 1/2 and full size; the traced graph lists the 1/8 one again
 * after them) the full-size one, the largest, and its first three channels (the fourth is kappa);
 * `((n + 1) * 0.5).clip(0, 1)` to bytes.
 */
export async function normalBae(cv: CV, image: RgbImage, s: LoadedSession, out: Size): Promise<RgbImage> {
  const d = toDetectResolution(cv, image);
  const input = planar(d, (v, c) => (v / 255 - (IMAGENET_MEAN[c] as number)) / (IMAGENET_STD[c] as number));
  const outs = await run(s, input, [1, 3, d.height, d.width]);
  const area = (o: Tensor) => hw(o).width * hw(o).height;
  const t = outs.reduce((best, o) => (area(o) > area(best) ? o : best));
  if ((t.dims[1] ?? 0) < 3) throw badInput(`normal model ${s.path} gives ${t.dims[1]} channels, not 3 or 4`);
  const size = hw(t);
  const plane = size.width * size.height;
  const rgb = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++)
    for (let c = 0; c < 3; c++) {
      const v = Math.min(1, Math.max(0, ((t.data[c * plane + i] as number) + 1) * 0.5));
      rgb[i * 3 + c] = toByte(v);
    }
  return toOutputSize({ data: rgb, width: size.width, height: size.height }, out.width, out.height);
}

/**
 * hed / scribble (HEDdetector, ControlNetHED_Apache2): RGB in 0..255 (the network subtracts
 * its own `norm`), its side outputs (logits, any sizes) resized to the detect size (INTER_LINEAR),
 * averaged, sigmoid, to bytes. scribble (`scribble=True`): nms(127, σ 3), Gaussian blur σ 3, then 255
 * where above 4, else 0.
 */
export async function hed(
  cv: CV,
  image: RgbImage,
  s: LoadedSession,
  out: Size,
  scribble: boolean,
): Promise<RgbImage> {
  const d = toDetectResolution(cv, image);
  const sides = await run(
    s,
    planar(d, (v) => v),
    [1, 3, d.height, d.width],
  );
  const n = d.width * d.height;
  const sum = new Float64Array(n);
  for (const side of sides) {
    const size = hw(side);
    const first = side.data.subarray(0, size.width * size.height);
    const resized = resizeFloatLinear(cv, first, size, d.width, d.height);
    for (let i = 0; i < n; i++) sum[i] = (sum[i] as number) + (resized[i] as number);
  }
  let bytes: Uint8Array = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = toByte(1 / (1 + Math.exp(-(sum[i] as number) / sides.length)));
  if (scribble) {
    bytes = gaussianBlur8(cv, nms(cv, bytes, d.width, d.height, 127, 3), d.width, d.height, 3);
    for (let i = 0; i < n; i++) bytes[i] = (bytes[i] as number) > 4 ? 255 : 0;
  }
  return toOutputSize(grey(bytes, d.width, d.height), out.width, out.height);
}

/**
 * softedge (PidiNetDetector, as tools/export-onnx exports it): BGR / 255 in; the last output (the fused
 * edge map, already through a sigmoid) to bytes; `safe=False`, `apply_filter=False`.
 */
export async function pidinet(cv: CV, image: RgbImage, s: LoadedSession, out: Size): Promise<RgbImage> {
  const d = toDetectResolution(cv, image);
  const plane = d.width * d.height;
  const bgr = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++)
    for (let c = 0; c < 3; c++) bgr[c * plane + i] = (d.data[i * 3 + (2 - c)] as number) / 255;
  const outs = await run(s, bgr, [1, 3, d.height, d.width]);
  const edge = outs[outs.length - 1] as Tensor;
  const size = hw(edge);
  const bytes = new Uint8Array(size.width * size.height);
  for (let i = 0; i < bytes.length; i++) bytes[i] = toByte(edge.data[i] as number);
  return toOutputSize(grey(bytes, size.width, size.height), out.width, out.height);
}

/** The thresholds MLSDdetector passes to pred_lines (thr_v: score, thr_d: segment length). */
export const MLSD_SCORE_THRESHOLD = 0.1;
export const MLSD_DISTANCE_THRESHOLD = 0.1;
const MLSD_TOPK = 200;
const MLSD_KSIZE = 3;

/**
 * mlsd/utils.py `deccode_output_score_and_ptss` and `pred_lines`: the centre map (channel 0) through
 * a sigmoid, kept where it is its 3×3 neighbourhood's maximum, the 200 highest; each with a score
 * above 0.1 and a displacement (channels 1-4: start x, y, end x, y) longer than 0.1 is a segment,
 * in map coordinates ×2 (the map is at half the input's size) × the input-to-image ratio.
 */
export function decodeMlsd(
  map: Float32Array,
  mapWidth: number,
  mapHeight: number,
  ratio: { x: number; y: number } = { x: 1, y: 1 },
): [number, number, number, number][] {
  const plane = mapWidth * mapHeight;
  // torch.topk(heat, 200) fails on a smaller map; MLSDdetector catches it and draws nothing.
  if (plane < MLSD_TOPK) return [];
  const heat = new Float32Array(plane);
  for (let i = 0; i < plane; i++) heat[i] = 1 / (1 + Math.exp(-(map[i] as number)));
  const r = (MLSD_KSIZE - 1) / 2;
  const kept = new Float32Array(plane);
  for (let y = 0; y < mapHeight; y++)
    for (let x = 0; x < mapWidth; x++) {
      const v = heat[y * mapWidth + x] as number;
      let max = v;
      for (let dy = -r; dy <= r; dy++)
        for (let dx = -r; dx <= r; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < mapHeight && xx >= 0 && xx < mapWidth)
            max = Math.max(max, heat[yy * mapWidth + xx] as number);
        }
      kept[y * mapWidth + x] = max === v ? v : 0;
    }
  const order = Array.from({ length: plane }, (_, i) => i)
    .sort((a, b) => (kept[b] as number) - (kept[a] as number) || a - b)
    .slice(0, MLSD_TOPK);
  const lines: [number, number, number, number][] = [];
  for (const index of order) {
    const score = kept[index] as number;
    const y = Math.floor(index / mapWidth);
    const x = index - y * mapWidth;
    const d = (c: number) => map[c * plane + index] as number;
    const distance = Math.hypot(d(1) - d(3), d(2) - d(4));
    if (score > MLSD_SCORE_THRESHOLD && distance > MLSD_DISTANCE_THRESHOLD) {
      lines.push([
        2 * (x + d(1)) * ratio.x,
        2 * (y + d(2)) * ratio.y,
        2 * (x + d(3)) * ratio.x,
        2 * (y + d(4)) * ratio.y,
      ]);
    }
  }
  return lines;
}

/**
 * mlsd (MLSDdetector): RGB plus a channel of ones, / 127.5 - 1, in at the detect size (pred_lines is
 * given the image's own shape); the [1, 9, H/2, W/2] map out (channel 0 centres, 1-4 displacements);
 * the decoded segments drawn white, 1 px (cv2.line, ends truncated to integers) on black.
 */
export async function mlsd(cv: CV, image: RgbImage, s: LoadedSession, out: Size): Promise<RgbImage> {
  const d = toDetectResolution(cv, image);
  const input = planar(d, (v) => v / 127.5 - 1, 4);
  input.fill(1 / 127.5 - 1, 3 * d.width * d.height);
  const [map] = (await run(s, input, [1, 4, d.height, d.width])) as [Tensor];
  if ((map.dims[1] ?? 0) < 5) throw badInput(`mlsd model ${s.path} gives ${map.dims[1]} channels, not 9`);
  const size = hw(map);
  const lines = decodeMlsd(map.data, size.width, size.height);
  const drawn = withMats((track) => {
    const canvas = track(new cv.Mat(d.height, d.width, cv.CV_8UC1, new cv.Scalar(0)));
    for (const [x0, y0, x1, y1] of lines) {
      cv.line(
        canvas,
        new cv.Point(Math.trunc(x0), Math.trunc(y0)),
        new cv.Point(Math.trunc(x1), Math.trunc(y1)),
        new cv.Scalar(255),
        1,
      );
    }
    return Uint8Array.from(canvas.data);
  });
  return toOutputSize(grey(drawn, d.width, d.height), out.width, out.height);
}

/**
 * segmentation (UperNet on ADE20K, as diffusers' sd-controlnet-seg example runs it): RGB / 255,
 * ImageNet-normalised, at the model's fixed input size (else 512×512); the class logits
 * [1, 150, h, w] bilinearly resized (post_process_semantic_segmentation), argmax, each class in its
 * ADE20K colour. The reference resizes the logits to the uploaded image's size and diffusers then
 * resizes the colour map to the output size; here the logits go to the output size at once (one
 * resampling less, and no argmax over a full-size upload).
 */
export async function segmentation(cv: CV, image: RgbImage, s: LoadedSession, out: Size): Promise<RgbImage> {
  const input = firstInput(s);
  const H = typeof input.shape[2] === "number" ? input.shape[2] : 512;
  const W = typeof input.shape[3] === "number" ? input.shape[3] : 512;
  const resized = withMats((track) => {
    const src = track(new cv.Mat(image.height, image.width, cv.CV_8UC3));
    src.data.set(image.data);
    const dst = track(new cv.Mat());
    cv.resize(src, dst, new cv.Size(W, H), 0, 0, cv.INTER_LINEAR);
    return { data: Uint8Array.from(dst.data), width: W, height: H };
  });
  const [logits] = (await run(
    s,
    planar(resized, (v, c) => (v / 255 - (IMAGENET_MEAN[c] as number)) / (IMAGENET_STD[c] as number)),
    [1, 3, H, W],
  )) as [Tensor];
  const size = hw(logits);
  const labels = argmaxBilinear(
    logits.data,
    logits.dims[1] as number,
    size.width,
    size.height,
    out.width,
    out.height,
  );
  const rgb = new Uint8Array(out.width * out.height * 3);
  for (let i = 0; i < labels.length; i++) rgb.set(ADE20K_PALETTE[labels[i] as number] ?? [0, 0, 0], i * 3);
  return { data: rgb, width: out.width, height: out.height };
}

/**
 * argmax over classes of `logits` [C, h, w] resized to [C, H, W] (torch interpolate "bilinear",
 * align_corners=False), without materialising the resized logits.
 */
export function argmaxBilinear(
  logits: Float32Array,
  classes: number,
  w: number,
  h: number,
  W: number,
  H: number,
): Uint16Array {
  const plane = w * h;
  const out = new Uint16Array(W * H);
  const axis = (i: number, from: number, to: number) => {
    const src = Math.max(0, ((i + 0.5) * from) / to - 0.5);
    const i0 = Math.min(Math.floor(src), from - 1);
    const i1 = Math.min(i0 + 1, from - 1);
    return { i0, i1, f: src - i0 };
  };
  for (let y = 0; y < H; y++) {
    const ay = axis(y, h, H);
    for (let x = 0; x < W; x++) {
      const ax = axis(x, w, W);
      const a = ay.i0 * w + ax.i0;
      const b = ay.i0 * w + ax.i1;
      const c = ay.i1 * w + ax.i0;
      const d = ay.i1 * w + ax.i1;
      const wa = (1 - ay.f) * (1 - ax.f);
      const wb = (1 - ay.f) * ax.f;
      const wc = ay.f * (1 - ax.f);
      const wd = ay.f * ax.f;
      let best = 0;
      let bestValue = Number.NEGATIVE_INFINITY;
      for (let k = 0; k < classes; k++) {
        const o = k * plane;
        const v =
          (logits[o + a] as number) * wa +
          (logits[o + b] as number) * wb +
          (logits[o + c] as number) * wc +
          (logits[o + d] as number) * wd;
        if (v > bestValue) {
          bestValue = v;
          best = k;
        }
      }
      out[y * W + x] = best;
    }
  }
  return out;
}
