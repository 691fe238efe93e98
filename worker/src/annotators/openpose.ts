/**
 * The openpose/pose annotator: controlnet_aux's OpenposeDetector (body only) on an ONNX export of its
 * body model (body_pose_model.pth, CMU's 18-keypoint COCO network: part affinity fields [1,38,h,w] and
 * heatmaps [1,19,h,w] at stride 8).
 *
 * A port of controlnet_aux `OpenposeDetector.__call__` → `Body.__call__` → `draw_bodypose`:
 *  1. the image is resized so its short side is 512 (sides rounded to 64), as `resize_image` does;
 *  2. BGR, scaled by 0.5·368/H, padded right and down to a multiple of 8 with 128, `x/256 - 0.5`;
 *  3. the model's maps are upsampled ×8 (Lanczos), the padding cropped, resized to the detect size;
 *  4. each heatmap is smoothed (Gaussian σ=3); peaks above 0.1 are the keypoint candidates
 *     (`findPeaks`); candidate pairs of each limb are scored along the PAF (`connectLimb`); limbs are
 *     assembled into people (`assemblePeople`);
 *  5. each person is drawn on black: limbs as filled ellipses (stick width 4) in the limb's colour
 *     ×0.6, then keypoints as radius-4 discs; the canvas is resized to the image with INTER_LINEAR.
 *
 * Resizing, blurring and drawing are OpenCV (wasm); the decoding steps are pure functions on planar
 * float maps, so they can be tested with synthetic heatmaps and PAFs.
 */
import { badInput } from "../errors.ts";
import type { RgbImage } from "../images.ts";
import type { IoSpec, LoadedSession } from "../pipeline/session.ts";
import { floatTensor, readFloats } from "../pipeline/session.ts";
import { type CV, fromRgb, loadOpenCv, type Mat, toRgb, withMats } from "./opencv.ts";

// ---- constants (controlnet_aux open_pose/body.py and util.py) ---------------------------------------

export const DETECT_RESOLUTION = 512;
const BOXSIZE = 368;
const SCALE_SEARCH = 0.5;
export const STRIDE = 8;
const PAD_VALUE = 128;
/** Heatmap peak threshold (thre1). */
export const THRE1 = 0.1;
/** PAF score threshold per sample along a limb (thre2). */
export const THRE2 = 0.05;
/** Samples along a limb (mid_num). */
export const MID_NUM = 10;
const SIGMA = 3;
/** scipy's gaussian_filter kernel: radius int(4σ + 0.5). */
const KERNEL = 2 * Math.trunc(4 * SIGMA + 0.5) + 1;
const STICK_WIDTH = 4;
const DISC_RADIUS = 4;
/**
 * Not in controlnet_aux: a bound on candidates per keypoint (the strongest are kept), so a degenerate
 * map (a plateau above the threshold) cannot make limb scoring quadratic in the pixel count. Real maps
 * have a few peaks per person.
 */
export const MAX_PEAKS_PER_PART = 100;

export const HEATMAP_CHANNELS = 19;
export const PAF_CHANNELS = 38;

/** The 18 COCO keypoints, in the model's heatmap order. */
export const KEYPOINTS = [
  "nose",
  "neck",
  "right_shoulder",
  "right_elbow",
  "right_wrist",
  "left_shoulder",
  "left_elbow",
  "left_wrist",
  "right_hip",
  "right_knee",
  "right_ankle",
  "left_hip",
  "left_knee",
  "left_ankle",
  "right_eye",
  "left_eye",
  "right_ear",
  "left_ear",
] as const;
const PARTS = KEYPOINTS.length;

/** controlnet_aux `limbSeq` (1-based there): keypoint pairs, in the order limbs are connected. */
export const LIMBS: readonly (readonly [number, number])[] = [
  [1, 2],
  [1, 5],
  [2, 3],
  [3, 4],
  [5, 6],
  [6, 7],
  [1, 8],
  [8, 9],
  [9, 10],
  [1, 11],
  [11, 12],
  [12, 13],
  [1, 0],
  [0, 14],
  [14, 16],
  [0, 15],
  [15, 17],
  [2, 16],
  [5, 17],
];

/** controlnet_aux `mapIdx` minus 19: the PAF channels (x, y) of each limb. */
export const LIMB_PAF: readonly (readonly [number, number])[] = [
  [12, 13],
  [20, 21],
  [14, 15],
  [16, 17],
  [22, 23],
  [24, 25],
  [0, 1],
  [2, 3],
  [4, 5],
  [6, 7],
  [8, 9],
  [10, 11],
  [28, 29],
  [30, 31],
  [34, 35],
  [32, 33],
  [36, 37],
  [18, 19],
  [26, 27],
];

/** Limbs connected from here on only join people already started (the ear–shoulder limbs). */
const LIMBS_STARTING_PEOPLE = 17;
/** draw_bodypose draws the first 17 limbs (not ear–shoulder). */
const LIMBS_DRAWN = 17;

/** The 18 standard OpenPose colours (RGB): limb k and keypoint k. */
export const COLORS: readonly (readonly [number, number, number])[] = [
  [255, 0, 0],
  [255, 85, 0],
  [255, 170, 0],
  [255, 255, 0],
  [170, 255, 0],
  [85, 255, 0],
  [0, 255, 0],
  [0, 255, 85],
  [0, 255, 170],
  [0, 255, 255],
  [0, 170, 255],
  [0, 85, 255],
  [0, 0, 255],
  [85, 0, 255],
  [170, 0, 255],
  [255, 0, 255],
  [255, 0, 170],
  [255, 0, 85],
];

// ---- decoding (pure) --------------------------------------------------------------------------

/** A keypoint candidate: pixel position, heatmap value there, and a running id over all parts. */
export interface Peak {
  x: number;
  y: number;
  score: number;
  id: number;
}

/** A chosen limb: peak ids of its two ends, its PAF score, and the ends' indexes in their part's peaks. */
export interface Connection {
  a: number;
  b: number;
  score: number;
  i: number;
  j: number;
}

/** One person being assembled (a `subset` row): a peak id or -1 per keypoint, total score, part count. */
export interface PersonRow {
  parts: number[];
  score: number;
  count: number;
}

/** A keypoint in 0..1 of the detect image's width and height. */
export interface Keypoint {
  x: number;
  y: number;
}

export interface BodyPose {
  /** One per COCO keypoint (KEYPOINTS order); null when not found. */
  keypoints: (Keypoint | null)[];
  score: number;
  parts: number;
}

/** Heatmaps (19 planes) and PAFs (38 planes), planar float32, at the detect image's size. */
export interface PoseMaps {
  width: number;
  height: number;
  heatmaps: Float32Array;
  pafs: Float32Array;
}

/**
 * Peaks of one keypoint's heatmap (controlnet_aux: `>=` its four neighbours, a neighbour outside the map
 * counting as 0, and `> threshold`), in row-major order, scored with the unsmoothed map.
 */
export function findPeaks(
  smoothed: Float32Array,
  original: Float32Array,
  width: number,
  height: number,
  firstId: number,
  threshold = THRE1,
): Peak[] {
  let found: Omit<Peak, "id">[] = [];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const v = smoothed[i] as number;
      if (!(v > threshold)) continue;
      if (y > 0 && v < (smoothed[i - width] as number)) continue;
      if (y < height - 1 && v < (smoothed[i + width] as number)) continue;
      if (x > 0 && v < (smoothed[i - 1] as number)) continue;
      if (x < width - 1 && v < (smoothed[i + 1] as number)) continue;
      found.push({ x, y, score: original[i] as number });
    }
  }
  if (found.length > MAX_PEAKS_PER_PART) {
    const strength = (p: Omit<Peak, "id">) => smoothed[p.y * width + p.x] as number;
    found = found
      .map((p, order) => ({ p, order }))
      .sort((a, b) => strength(b.p) - strength(a.p))
      .slice(0, MAX_PEAKS_PER_PART)
      .sort((a, b) => a.order - b.order)
      .map(({ p }) => p);
  }
  return found.map((p, n) => ({ ...p, id: firstId + n }));
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The connections of one limb: every pair of candidates (a from candA, b from candB) scored by the
 * PAF along the segment a→b, sampled at MID_NUM points: the mean of PAF·unit(b−a), plus
 * min(0.5·imageHeight/length − 1, 0) (long limbs are penalised). A pair qualifies when more than 80% of
 * the samples exceed THRE2 and the score is positive; the best pairs are taken greedily, each candidate
 * used once, at most min(|candA|, |candB|).
 */
export function connectLimb(
  candA: readonly Peak[],
  candB: readonly Peak[],
  pafX: Float32Array,
  pafY: Float32Array,
  width: number,
  imageHeight: number,
): Connection[] {
  if (candA.length === 0 || candB.length === 0) return [];
  const scored: { i: number; j: number; score: number }[] = [];
  for (const [i, a] of candA.entries()) {
    for (const [j, b] of candB.entries()) {
      let vx = b.x - a.x;
      let vy = b.y - a.y;
      const norm = Math.max(0.001, Math.sqrt(vx * vx + vy * vy));
      vx /= norm;
      vy /= norm;
      // np.linspace(start, stop, MID_NUM): start + n·step, the last sample exactly at stop.
      const stepX = (b.x - a.x) / (MID_NUM - 1);
      const stepY = (b.y - a.y) / (MID_NUM - 1);
      let sum = 0;
      let above = 0;
      for (let n = 0; n < MID_NUM; n++) {
        const sx = n === MID_NUM - 1 ? b.x : n * stepX + a.x;
        const sy = n === MID_NUM - 1 ? b.y : n * stepY + a.y;
        const k = roundHalfEven(sy) * width + roundHalfEven(sx);
        const s = (pafX[k] as number) * vx + (pafY[k] as number) * vy;
        sum += s;
        if (s > THRE2) above++;
      }
      const score = sum / MID_NUM + Math.min((0.5 * imageHeight) / norm - 1, 0);
      if (above > 0.8 * MID_NUM && score > 0) scored.push({ i, j, score });
    }
  }
  // Array.prototype.sort is stable, like Python's sorted(reverse=True).
  scored.sort((p, q) => q.score - p.score);
  const connections: Connection[] = [];
  const usedA = new Set<number>();
  const usedB = new Set<number>();
  for (const { i, j, score } of scored) {
    if (usedA.has(i) || usedB.has(j)) continue;
    usedA.add(i);
    usedB.add(j);
    connections.push({ a: (candA[i] as Peak).id, b: (candB[j] as Peak).id, score, i, j });
    if (connections.length >= Math.min(candA.length, candB.length)) break;
  }
  return connections;
}

/**
 * People from limbs (controlnet_aux's `subset`): limb by limb, a connection extends the person that
 * already holds one of its ends, merges two people holding one end each when they share no keypoint,
 * or (for the first 17 limbs) starts a person. People with fewer than 4 keypoints or a mean score under
 * 0.4 are dropped.
 *
 * `candidates` is every peak indexed by id; `connections[k]` is limb k's (LIMBS order).
 */
export function assemblePeople(
  candidates: readonly Peak[],
  connections: readonly (readonly Connection[])[],
): PersonRow[] {
  let rows: PersonRow[] = [];
  const scoreOf = (id: number) => (candidates[id] as Peak).score;
  for (const [k, limbConnections] of connections.entries()) {
    const [partA, partB] = LIMBS[k] as readonly [number, number];
    for (const c of limbConnections) {
      // controlnet_aux keeps room for two matches (a third would be an IndexError there).
      const found: PersonRow[] = [];
      for (const row of rows) {
        if ((row.parts[partA] === c.a || row.parts[partB] === c.b) && found.length < 2) found.push(row);
      }
      const [first, second] = found;
      if (first && !second) {
        if (first.parts[partB] !== c.b) {
          first.parts[partB] = c.b;
          first.count += 1;
          first.score += scoreOf(c.b) + c.score;
        }
      } else if (first && second) {
        const shared = first.parts.some((id, n) => id >= 0 && (second.parts[n] as number) >= 0);
        if (!shared) {
          for (let n = 0; n < PARTS; n++)
            first.parts[n] = (first.parts[n] as number) + (second.parts[n] as number) + 1;
          first.score += second.score;
          first.count += second.count;
          first.score += c.score;
          rows = rows.filter((row) => row !== second);
        } else {
          first.parts[partB] = c.b;
          first.count += 1;
          first.score += scoreOf(c.b) + c.score;
        }
      } else if (k < LIMBS_STARTING_PEOPLE) {
        const parts = new Array<number>(PARTS).fill(-1);
        parts[partA] = c.a;
        parts[partB] = c.b;
        rows.push({ parts, count: 2, score: scoreOf(c.a) + scoreOf(c.b) + c.score });
      }
    }
  }
  return rows.filter((row) => !(row.count < 4 || row.score / row.count < 0.4));
}

/**
 * Bodies from the maps: peaks of the (already smoothed) heatmaps, limbs scored on the PAFs, people
 * assembled; keypoints normalised to 0..1 as controlnet_aux's PoseResult has them.
 */
export function decodeBodies(maps: PoseMaps, smoothed: readonly Float32Array[]): BodyPose[] {
  const { width, height } = maps;
  const plane = width * height;
  const peaks: Peak[][] = [];
  let nextId = 0;
  for (let part = 0; part < PARTS; part++) {
    const original = maps.heatmaps.subarray(part * plane, (part + 1) * plane);
    const found = findPeaks(smoothed[part] as Float32Array, original, width, height, nextId);
    peaks.push(found);
    nextId += found.length;
  }
  const paf = (channel: number) => maps.pafs.subarray(channel * plane, (channel + 1) * plane);
  const connections = LIMBS.map(([a, b], k) => {
    const [cx, cy] = LIMB_PAF[k] as readonly [number, number];
    return connectLimb(peaks[a] as Peak[], peaks[b] as Peak[], paf(cx), paf(cy), width, height);
  });
  const candidates = peaks.flat();
  return assemblePeople(candidates, connections).map((row) => ({
    keypoints: row.parts.map((id) => {
      const p = candidates[id];
      return id < 0 || !p ? null : { x: p.x / width, y: p.y / height };
    }),
    score: row.score,
    parts: row.count,
  }));
}

// ---- OpenCV steps -----------------------------------------------------------------------------

/** scipy.ndimage.gaussian_filter(σ=3) on the 18 keypoint heatmaps ('reflect' = OpenCV BORDER_REFLECT). */
export function smoothHeatmaps(cv: CV, maps: PoseMaps): Float32Array[] {
  const plane = maps.width * maps.height;
  return withMats((track) => {
    const src = track(new cv.Mat(maps.height, maps.width, cv.CV_32F));
    const dst = track(new cv.Mat());
    const out: Float32Array[] = [];
    for (let part = 0; part < PARTS; part++) {
      src.data32F.set(maps.heatmaps.subarray(part * plane, (part + 1) * plane));
      cv.GaussianBlur(src, dst, new cv.Size(KERNEL, KERNEL), SIGMA, SIGMA, cv.BORDER_REFLECT);
      out.push(Float32Array.from(dst.data32F));
    }
    return out;
  });
}

/** Bodies in an image's maps: smoothing (OpenCV) then `decodeBodies`. */
export async function decodePose(maps: PoseMaps): Promise<BodyPose[]> {
  const { cv } = await loadOpenCv();
  return decodeBodies(maps, smoothHeatmaps(cv, maps));
}

/** controlnet_aux `draw_bodypose` for one person, on an 8-bit RGB canvas. */
export function drawBodyPose(cv: CV, canvas: Mat, keypoints: readonly (Keypoint | null)[]): void {
  const W = canvas.cols;
  const H = canvas.rows;
  withMats((track) => {
    for (let k = 0; k < LIMBS_DRAWN; k++) {
      const [a, b] = LIMBS[k] as readonly [number, number];
      const k1 = keypoints[a];
      const k2 = keypoints[b];
      if (!k1 || !k2) continue;
      const [y0, y1] = [k1.x * W, k2.x * W];
      const [x0, x1] = [k1.y * H, k2.y * H];
      const mX = (x0 + x1) / 2;
      const mY = (y0 + y1) / 2;
      const length = Math.sqrt((x0 - x1) ** 2 + (y0 - y1) ** 2);
      const angle = Math.atan2(x0 - x1, y0 - y1) * (180 / Math.PI);
      const polygon = new cv.PointVector();
      try {
        cv.ellipse2Poly(
          new cv.Point(Math.trunc(mY), Math.trunc(mX)),
          new cv.Size(Math.trunc(length / 2), STICK_WIDTH),
          Math.trunc(angle),
          0,
          360,
          1,
          polygon,
        );
        const flat: number[] = [];
        for (let n = 0; n < polygon.size(); n++) {
          const p = polygon.get(n);
          flat.push(p.x, p.y);
        }
        const points = track(cv.matFromArray(polygon.size(), 1, cv.CV_32SC2, flat));
        const [r, g, bl] = COLORS[k] as readonly [number, number, number];
        const dim = (c: number) => Math.trunc(c * 0.6);
        cv.fillConvexPoly(canvas, points, new cv.Scalar(dim(r), dim(g), dim(bl)));
      } finally {
        polygon.delete();
      }
    }
  });
  for (const [part, keypoint] of keypoints.entries()) {
    if (!keypoint || part >= PARTS) continue;
    const [r, g, b] = COLORS[part] as readonly [number, number, number];
    const center = new cv.Point(Math.trunc(keypoint.x * W), Math.trunc(keypoint.y * H));
    cv.circle(canvas, center, DISC_RADIUS, new cv.Scalar(r, g, b), -1);
  }
}

/** controlnet_aux `draw_poses` (bodies only): every person on one black width×height canvas. */
export function drawPoses(cv: CV, poses: readonly BodyPose[], width: number, height: number): Mat {
  const canvas = new cv.Mat(height, width, cv.CV_8UC3, new cv.Scalar(0, 0, 0));
  for (const pose of poses) drawBodyPose(cv, canvas, pose.keypoints);
  return canvas;
}

// ---- model input and output -------------------------------------------------------------------

/** controlnet_aux `resize_image`: short side to `resolution`, both sides rounded to multiples of 64. */
export function detectSize(
  width: number,
  height: number,
  resolution: number,
): { width: number; height: number } {
  const k = resolution / Math.min(width, height);
  return {
    width: Math.max(64, roundHalfEven((width * k) / 64) * 64),
    height: Math.max(64, roundHalfEven((height * k) / 64) * 64),
  };
}

/** Where the scaled image sits in the model's input: its size (th×tw) and the padded size (ph×pw). */
export interface InputLayout {
  scale: number;
  th: number;
  tw: number;
  ph: number;
  pw: number;
}

const fixedDim = (d: number | string | undefined) => (typeof d === "number" && d > 0 ? d : null);

/**
 * controlnet_aux's scale (0.5·368/H) and padding to a multiple of the stride; a model with a fixed input
 * size gets the image at that scale or smaller (to fit), padded up to the fixed size.
 */
export function inputLayout(width: number, height: number, input: IoSpec): InputLayout {
  const fixedH = fixedDim(input.shape[2]);
  const fixedW = fixedDim(input.shape[3]);
  let scale = (SCALE_SEARCH * BOXSIZE) / height;
  if (fixedH !== null) scale = Math.min(scale, fixedH / height);
  if (fixedW !== null) scale = Math.min(scale, fixedW / width);
  const th = Math.max(1, Math.trunc(height * scale));
  const tw = Math.max(1, Math.trunc(width * scale));
  const pad = (n: number) => Math.ceil(n / STRIDE) * STRIDE;
  return { scale, th, tw, ph: fixedH ?? pad(th), pw: fixedW ?? pad(tw) };
}

/** Where the heatmaps and PAFs are among the model's outputs: by channel count, not by order or name. */
export interface PoseOutputs {
  heatmaps: { name: string; offset: number };
  pafs: { name: string; offset: number };
}

/**
 * Heatmaps are the output with 19 channels, PAFs the one with 38 (pytorch-openpose's Mconv7_stage6_L2
 * and _L1); a single 57-channel output (the Caffe model's concatenation) holds heatmaps then PAFs.
 */
export function poseOutputs(outputs: readonly { name: string; dims: readonly number[] }[]): PoseOutputs {
  const channels = (dims: readonly number[]) => (dims.length === 4 ? dims[1] : undefined);
  const heat = outputs.find((o) => channels(o.dims) === HEATMAP_CHANNELS);
  const paf = outputs.find((o) => channels(o.dims) === PAF_CHANNELS);
  if (heat && paf) return { heatmaps: { name: heat.name, offset: 0 }, pafs: { name: paf.name, offset: 0 } };
  const both = outputs.find((o) => channels(o.dims) === HEATMAP_CHANNELS + PAF_CHANNELS);
  if (both)
    return { heatmaps: { name: both.name, offset: 0 }, pafs: { name: both.name, offset: HEATMAP_CHANNELS } };
  const seen = outputs.map((o) => `${o.name} [${o.dims.join(",")}]`).join(", ");
  throw badInput(
    `openpose model outputs ${seen}: expected NCHW heatmaps (19 channels) and PAFs (38 channels) at stride 8`,
  );
}

function interpolation(cv: CV, fromW: number, fromH: number, toW: number, toH: number): number {
  // controlnet_aux smart_resize: INTER_AREA when shrinking, else INTER_LANCZOS4.
  return (toW + toH) / (fromW + fromH) < 1 ? cv.INTER_AREA : cv.INTER_LANCZOS4;
}

/** The model input: BGR, scaled, padded with 128, `x/256 - 0.5`, planar [3, ph, pw]. */
function modelInput(cv: CV, detect: Mat, layout: InputLayout): Float32Array {
  return withMats((track) => {
    const bgr = track(new cv.Mat());
    cv.cvtColor(detect, bgr, cv.COLOR_RGB2BGR);
    const scaled = track(new cv.Mat());
    const method = interpolation(cv, detect.cols, detect.rows, layout.tw, layout.th);
    cv.resize(bgr, scaled, new cv.Size(layout.tw, layout.th), 0, 0, method);
    const padded = track(new cv.Mat());
    const value = new cv.Scalar(PAD_VALUE, PAD_VALUE, PAD_VALUE, PAD_VALUE);
    const { th, tw, ph, pw } = layout;
    cv.copyMakeBorder(scaled, padded, 0, ph - th, 0, pw - tw, cv.BORDER_CONSTANT, value);
    const plane = ph * pw;
    const planar = new Float32Array(3 * plane);
    const data = padded.data;
    for (let i = 0; i < plane; i++)
      for (let c = 0; c < 3; c++) planar[c * plane + i] = (data[i * 3 + c] as number) / 256 - 0.5;
    return planar;
  });
}

/**
 * One output's channels back to the detect size: ×8 (Lanczos), the padding cropped, then resized to
 * width×height (controlnet_aux smart_resize_k, crop, smart_resize), channel by channel.
 */
function upsampleChannels(
  cv: CV,
  data: Float32Array,
  dims: readonly number[],
  offset: number,
  count: number,
  layout: InputLayout,
  width: number,
  height: number,
): Float32Array {
  const oh = dims[2] as number;
  const ow = dims[3] as number;
  const outPlane = width * height;
  const out = new Float32Array(count * outPlane);
  withMats((track) => {
    const src = track(new cv.Mat(oh, ow, cv.CV_32F));
    const up = track(new cv.Mat());
    const dst = track(new cv.Mat());
    const uw = ow * STRIDE;
    const uh = oh * STRIDE;
    const crop = new cv.Rect(0, 0, Math.min(layout.tw, uw), Math.min(layout.th, uh));
    const method = interpolation(cv, crop.width, crop.height, width, height);
    for (let c = 0; c < count; c++) {
      src.data32F.set(data.subarray((offset + c) * oh * ow, (offset + c + 1) * oh * ow));
      cv.resize(src, up, new cv.Size(uw, uh), 0, 0, cv.INTER_LANCZOS4);
      const cropped = up.roi(crop);
      try {
        cv.resize(cropped, dst, new cv.Size(width, height), 0, 0, method);
      } finally {
        cropped.delete();
      }
      out.set(dst.data32F, c * outPlane);
    }
  });
  return out;
}

export interface OpenposeOptions {
  /** controlnet_aux's detect_resolution (short side the pose is detected and drawn at); 512. */
  detectResolution?: number;
  /** The size of the hint (the job's output size); the image's own by default. */
  outputSize?: { width: number; height: number };
}

/** The openpose hint for `image`, with the body model loaded in `s` (the caller releases it). */
export async function openpose(
  image: RgbImage,
  s: LoadedSession,
  options: OpenposeOptions = {},
): Promise<RgbImage> {
  const { cv } = await loadOpenCv();
  const input = s.inputs[0];
  if (!input || s.outputs.length === 0) throw badInput(`openpose model ${s.path} has no inputs or outputs`);
  const resolution = options.detectResolution ?? DETECT_RESOLUTION;
  const { width, height } = detectSize(image.width, image.height, resolution);
  const layout = inputLayout(width, height, input);
  const planar = withMats((track) => {
    const src = track(fromRgb(cv, image));
    const detect = track(new cv.Mat());
    // resize_image: Lanczos when enlarging (k > 1), area otherwise.
    const k = resolution / Math.min(image.width, image.height);
    cv.resize(src, detect, new cv.Size(width, height), 0, 0, k > 1 ? cv.INTER_LANCZOS4 : cv.INTER_AREA);
    return modelInput(cv, detect, layout);
  });
  const result = await s.session.run({
    [input.name]: floatTensor(input, planar, [1, 3, layout.ph, layout.pw]),
  });
  const tensors = s.outputs.flatMap((o) => {
    const t = result[o.name];
    return t ? [{ name: o.name, dims: t.dims, tensor: t }] : [];
  });
  const which = poseOutputs(tensors);
  const maps = (pick: { name: string; offset: number }, count: number) => {
    const t = tensors.find((o) => o.name === pick.name);
    if (!t) throw new Error(`openpose model gave no ${pick.name}`);
    return upsampleChannels(cv, readFloats(t.tensor), t.dims, pick.offset, count, layout, width, height);
  };
  const poseMaps: PoseMaps = {
    width,
    height,
    // The background heatmap (channel 18) is not used.
    heatmaps: maps(which.heatmaps, PARTS),
    pafs: maps(which.pafs, PAF_CHANNELS),
  };
  const poses = decodeBodies(poseMaps, smoothHeatmaps(cv, poseMaps));
  const target = options.outputSize ?? image;
  return withMats((track) => {
    const canvas = track(drawPoses(cv, poses, width, height));
    if (width === target.width && height === target.height) return toRgb(cv, canvas);
    const out = track(new cv.Mat());
    cv.resize(canvas, out, new cv.Size(target.width, target.height), 0, 0, cv.INTER_LINEAR);
    return toRgb(cv, out);
  });
}
