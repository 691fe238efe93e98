import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { annotate } from "../../worker/src/annotators/index.ts";
import { loadOpenCv, toRgb } from "../../worker/src/annotators/opencv.ts";
import {
  assemblePeople,
  type BodyPose,
  COLORS,
  type Connection,
  connectLimb,
  decodePose,
  detectSize,
  drawPoses,
  findPeaks,
  inputLayout,
  type Keypoint,
  LIMB_PAF,
  LIMBS,
  MAX_PEAKS_PER_PART,
  type Peak,
  type PoseMaps,
  poseOutputs,
} from "../../worker/src/annotators/openpose.ts";
import type { RgbImage } from "../../worker/src/images.ts";
import { GraphBuilder } from "../../worker/src/models/onnx-builder.ts";
import { SessionFactory } from "../../worker/src/pipeline/session.ts";
import { captureLog } from "./support.ts";

type Point = readonly [number, number];

/** An upright person (COCO order) as offsets from the hips' midpoint. */
const TEMPLATE: readonly Point[] = [
  [0, -36], // nose
  [0, -26], // neck
  [-9, -26], // right shoulder
  [-13, -14], // right elbow
  [-15, -2], // right wrist
  [9, -26], // left shoulder
  [13, -14], // left elbow
  [15, -2], // left wrist
  [-6, 0], // right hip
  [-7, 14], // right knee
  [-7, 28], // right ankle
  [6, 0], // left hip
  [7, 14], // left knee
  [7, 28], // left ankle
  [-3, -39], // right eye
  [3, -39], // left eye
  [-6, -37], // right ear
  [6, -37], // left ear
];
const personAt = (cx: number, cy: number, scale = 1): Point[] =>
  TEMPLATE.map(([dx, dy]) => [cx + dx * scale, cy + dy * scale] as const);

/**
 * What the model would output for these people, at width×height: a Gaussian blob per keypoint in its
 * heatmap, and the limb's unit vector in its two PAF channels within `band` of each limb segment.
 */
function syntheticMaps(people: readonly Point[][], width: number, height: number, sigma = 2, band = 1.5) {
  const plane = width * height;
  const heatmaps = new Float32Array(19 * plane);
  const pafs = new Float32Array(38 * plane);
  for (const person of people) {
    for (const [part, [px, py]] of person.entries())
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++) {
          const v = Math.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma * sigma));
          const i = part * plane + y * width + x;
          heatmaps[i] = Math.max(heatmaps[i] as number, v);
        }
    for (const [k, [a, b]] of LIMBS.entries()) {
      const [ax, ay] = person[a] as Point;
      const [bx, by] = person[b] as Point;
      const length = Math.hypot(bx - ax, by - ay);
      const ux = (bx - ax) / length;
      const uy = (by - ay) / length;
      const [cx, cy] = LIMB_PAF[k] as readonly [number, number];
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++) {
          const along = (x - ax) * ux + (y - ay) * uy;
          const across = Math.abs((x - ax) * uy - (y - ay) * ux);
          if (along < -band || along > length + band || across > band) continue;
          pafs[cx * plane + y * width + x] = ux;
          pafs[cy * plane + y * width + x] = uy;
        }
    }
  }
  return { width, height, heatmaps, pafs } satisfies PoseMaps;
}

const pixels = (pose: BodyPose, width: number, height: number) =>
  pose.keypoints.map((k) => (k ? [Math.round(k.x * width), Math.round(k.y * height)] : null));

describe("openpose decoding (pure, on synthetic maps)", () => {
  it("findPeaks: local maxima above 0.1 (edges count as 0), row-major, scored on the unsmoothed map, ids from firstId", () => {
    const w = 20;
    const h = 10;
    const smoothed = new Float32Array(w * h);
    const original = new Float32Array(w * h);
    smoothed[3 * w + 15] = 0.9;
    original[3 * w + 15] = 0.7;
    smoothed[6 * w + 4] = 0.5;
    smoothed[6 * w + 5] = 0.3;
    smoothed[9 * w + 0] = 0.2; // a corner: its outside neighbours are 0
    smoothed[1 * w + 1] = 0.05; // under the threshold
    const peaks = findPeaks(smoothed, original, w, h, 7);
    expect(peaks).toEqual([
      { x: 15, y: 3, score: expect.closeTo(0.7, 6), id: 7 },
      { x: 4, y: 6, score: 0, id: 8 },
      { x: 0, y: 9, score: 0, id: 9 },
    ]);
  });

  it("findPeaks keeps the strongest MAX_PEAKS_PER_PART of a degenerate (flat) map", () => {
    const w = 40;
    const h = 40;
    const flat = new Float32Array(w * h).fill(0.5);
    flat[5 * w + 5] = 0.6;
    const peaks = findPeaks(flat, flat, w, h, 0);
    expect(peaks).toHaveLength(MAX_PEAKS_PER_PART);
    expect(peaks[0]).toMatchObject({ x: 0, y: 0, id: 0 });
    expect(peaks.some((p) => p.x === 5 && p.y === 5)).toBe(true);
  });

  it("connectLimb pairs candidates along the PAF, each once, and rejects wrong directions and long limbs", () => {
    const w = 60;
    const h = 40;
    const maps = syntheticMaps([personAt(15, 30, 0.5), personAt(45, 30, 0.5)], w, h);
    const plane = w * h;
    const peak = (x: number, y: number, id: number): Peak => ({ x, y, score: 1, id });
    // Limb 0 (neck → right shoulder) of both people; candidates listed in crossed order.
    const [neckA, neckB] = [personAt(15, 30, 0.5)[1], personAt(45, 30, 0.5)[1]] as Point[];
    const [shA, shB] = [personAt(15, 30, 0.5)[2], personAt(45, 30, 0.5)[2]] as Point[];
    const necks = [peak(...(neckB as Point), 0), peak(...(neckA as Point), 1)];
    const shoulders = [peak(...(shA as Point), 2), peak(...(shB as Point), 3)];
    const [cx, cy] = LIMB_PAF[0] as readonly [number, number];
    const pafX = maps.pafs.subarray(cx * plane, (cx + 1) * plane);
    const pafY = maps.pafs.subarray(cy * plane, (cy + 1) * plane);
    const found = connectLimb(necks, shoulders, pafX, pafY, w, h);
    expect(found.map((c) => [c.a, c.b]).sort()).toEqual([
      [0, 3],
      [1, 2],
    ]);
    for (const c of found) expect(c.score).toBeCloseTo(1, 5);
    // Reversed (shoulder → neck) the PAF points the other way: no connection.
    expect(connectLimb(shoulders, necks, pafX, pafY, w, h)).toEqual([]);
    // The distance prior, min(0.5·H/length − 1, 0), sinks a weak PAF (0.3) on a limb long for the image.
    const weakX = pafX.map((v) => v * 0.3);
    const weakY = pafY.map((v) => v * 0.3);
    expect(connectLimb(necks, shoulders, weakX, weakY, w, h)).toHaveLength(2);
    expect(connectLimb(necks, shoulders, weakX, weakY, w, 4)).toEqual([]);
    expect(connectLimb([], shoulders, pafX, pafY, w, h)).toEqual([]);
  });

  it("assemblePeople grows people limb by limb, merges disjoint ones, drops those under 4 parts", () => {
    const peaks: Peak[] = Array.from({ length: 12 }, (_, id) => ({ x: id, y: id, score: 1, id }));
    const conn = (a: number, b: number): Connection => ({ a, b, score: 0.8, i: 0, j: 0 });
    const connections: Connection[][] = LIMBS.map(() => []);
    connections[0] = [conn(0, 1)]; // neck 0 → right shoulder 1: starts person 1
    connections[2] = [conn(1, 2)]; // right shoulder 1 → right elbow 2: grows it
    connections[6] = [conn(0, 3)]; // neck 0 → right hip 3: grows it
    connections[10] = [conn(10, 11)]; // left hip 10 → left knee 11: a person of 2 parts, dropped
    connections[13] = [conn(6, 7)]; // nose 6 → right eye 7: starts person 2
    connections[14] = [conn(7, 8)]; // right eye 7 → right ear 8: grows person 2
    connections[17] = [conn(1, 8)]; // right shoulder 1 → right ear 8: joins persons 1 and 2
    const people = assemblePeople(peaks, connections);
    expect(people).toHaveLength(1);
    const [person] = people;
    const parts = new Array(18).fill(-1);
    Object.assign(parts, { 0: 6, 1: 0, 2: 1, 3: 2, 8: 3, 14: 7, 16: 8 });
    expect(person?.parts).toEqual(parts);
    expect(person?.count).toBe(7);
    // Parts' scores plus limbs' scores: 7 × 1 + 6 × 0.8.
    expect(person?.score).toBeCloseTo(11.8, 10);
  });

  it("assemblePeople: an ear–shoulder limb never starts a person", () => {
    const peaks: Peak[] = Array.from({ length: 4 }, (_, id) => ({ x: id, y: id, score: 1, id }));
    const connections: Connection[][] = LIMBS.map(() => []);
    connections[17] = [{ a: 0, b: 1, score: 1, i: 0, j: 0 }];
    connections[18] = [{ a: 2, b: 3, score: 1, i: 0, j: 0 }];
    expect(assemblePeople(peaks, connections)).toEqual([]);
  });

  it("decodes two people from Gaussian blobs and constant PAFs, with every keypoint in place", async () => {
    const w = 128;
    const h = 112;
    const a = personAt(36, 56);
    const b = personAt(92, 56);
    const bodies = await decodePose(syntheticMaps([a, b], w, h));
    expect(bodies).toHaveLength(2);
    const sorted = [...bodies].sort((p, q) => (p.keypoints[1]?.x ?? 0) - (q.keypoints[1]?.x ?? 0));
    expect(pixels(sorted[0] as BodyPose, w, h)).toEqual(a);
    expect(pixels(sorted[1] as BodyPose, w, h)).toEqual(b);
    for (const body of bodies) expect(body.parts).toBe(18);
  });

  it("decodes a person with missing keypoints (no left arm) and leaves them null", async () => {
    const w = 64;
    const h = 112;
    const a = personAt(32, 56);
    const maps = syntheticMaps([a], w, h);
    const plane = w * h;
    for (const part of [6, 7]) maps.heatmaps.fill(0, part * plane, (part + 1) * plane);
    const [body] = await decodePose(maps);
    const got = pixels(body as BodyPose, w, h);
    expect(got[6]).toBeNull();
    expect(got[7]).toBeNull();
    expect(got.filter((k) => k !== null)).toHaveLength(16);
    expect(got[5]).toEqual(a[5]);
  });

  it("finds nobody in empty maps", async () => {
    expect(await decodePose(syntheticMaps([], 32, 32))).toEqual([]);
  });
});

describe("openpose drawing (controlnet_aux draw_bodypose)", () => {
  const keypoints = (points: readonly (Point | null)[], w: number, h: number): (Keypoint | null)[] =>
    points.map((p) => (p ? { x: p[0] / w, y: p[1] / h } : null));
  const render = async (poses: (Keypoint | null)[][], w: number, h: number): Promise<RgbImage> => {
    const { cv } = await loadOpenCv();
    const canvas = drawPoses(
      cv,
      poses.map((k) => ({ keypoints: k, score: 1, parts: 18 })),
      w,
      h,
    );
    try {
      return toRgb(cv, canvas);
    } finally {
      canvas.delete();
    }
  };
  const at = (img: RgbImage, [x, y]: Point) =>
    Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));
  const dim = (c: readonly number[]) => c.map((v) => Math.trunc(v * 0.6));

  it("draws limbs in their colour ×0.6, keypoints as full-colour discs, on black", async () => {
    const w = 128;
    const h = 112;
    const a = personAt(36, 56);
    const b = personAt(92, 56);
    const img = await render([keypoints(a, w, h), keypoints(b, w, h)], w, h);
    expect(img.width).toBe(w);
    expect(img.height).toBe(h);
    for (const person of [a, b]) {
      const [kx, ky] = person[9] as Point; // right knee
      const [ax, ay] = person[10] as Point; // right ankle
      // Limb 8 (right knee → right ankle), at its middle, away from the discs.
      expect(at(img, [(kx + ax) / 2, (ky + ay) / 2])).toEqual(dim(COLORS[8] as readonly number[]));
      // Right ankle's disc (keypoint 10), at its centre and 3 px off (radius 4).
      expect(at(img, [ax, ay])).toEqual([...(COLORS[10] as readonly number[])]);
      expect(at(img, [ax + 3, ay])).toEqual([...(COLORS[10] as readonly number[])]);
      // Stick width 4: 3 px across the shin is still limb, 7 px is not.
      expect(at(img, [(kx + ax) / 2 + 3, (ky + ay) / 2])).toEqual(dim(COLORS[8] as readonly number[]));
      expect(at(img, [(kx + ax) / 2 - 7, (ky + ay) / 2])).toEqual([0, 0, 0]);
    }
    expect(at(img, [64, 100])).toEqual([0, 0, 0]);
    expect(at(img, [2, 2])).toEqual([0, 0, 0]);
  });

  it("draws the first 17 limbs only (no ear–shoulder), and skips limbs with a missing end", async () => {
    const w = 80;
    const h = 80;
    const points: (Point | null)[] = new Array(18).fill(null);
    points[1] = [10, 40]; // neck
    points[2] = [40, 40]; // right shoulder: limb 0 (neck → right shoulder)
    points[16] = [40, 10]; // right ear: limb 17 (right shoulder → right ear) is not drawn
    points[3] = null; // right elbow missing: limb 2 (shoulder → elbow) is skipped
    const img = await render([keypoints(points, w, h)], w, h);
    expect(at(img, [25, 40])).toEqual(dim(COLORS[0] as readonly number[]));
    expect(at(img, [40, 25])).toEqual([0, 0, 0]);
    expect(at(img, [40, 10])).toEqual([...(COLORS[16] as readonly number[])]);
    let coloured = 0;
    for (let i = 0; i < img.data.length; i += 3)
      if (img.data[i] || img.data[i + 1] || img.data[i + 2]) coloured++;
    // One ellipse (30×8 px) and three discs (radius 4).
    expect(coloured).toBeGreaterThan(200);
    expect(coloured).toBeLessThan(450);
  });
});

describe("openpose model IO", () => {
  it("detect size: short side to 512, sides rounded to 64 (resize_image)", () => {
    expect(detectSize(512, 512, 512)).toEqual({ width: 512, height: 512 });
    expect(detectSize(96, 64, 512)).toEqual({ width: 768, height: 512 });
    expect(detectSize(1000, 700, 512)).toEqual({ width: 704, height: 512 });
    // 672·1 / 64 = 10.5: numpy rounds halves to even.
    expect(detectSize(672, 512, 512)).toEqual({ width: 640, height: 512 });
  });

  it("input layout: scale 0.5·368/H and padding to 8; a fixed input gets the image fitted and padded", () => {
    const dynamic = { name: "image", type: "float32", shape: [1, 3, "h", "w"] };
    expect(inputLayout(512, 512, dynamic)).toMatchObject({ th: 184, tw: 184, ph: 184, pw: 184 });
    expect(inputLayout(768, 512, dynamic)).toMatchObject({ th: 184, tw: 276, ph: 184, pw: 280 });
    const fixed = { name: "image", type: "float32", shape: [1, 3, 368, 368] };
    expect(inputLayout(768, 512, fixed)).toMatchObject({ th: 184, tw: 276, ph: 368, pw: 368 });
    const small = { name: "image", type: "float32", shape: [1, 3, 96, 96] };
    expect(inputLayout(768, 512, small)).toMatchObject({ th: 64, tw: 96, ph: 96, pw: 96 });
  });

  it("tells heatmaps from PAFs by channel count, whatever the order and names", () => {
    expect(
      poseOutputs([
        { name: "x", dims: [1, 38, 23, 23] },
        { name: "y", dims: [1, 19, 23, 23] },
      ]),
    ).toEqual({ heatmaps: { name: "y", offset: 0 }, pafs: { name: "x", offset: 0 } });
    expect(poseOutputs([{ name: "net_output", dims: [1, 57, 23, 23] }])).toEqual({
      heatmaps: { name: "net_output", offset: 0 },
      pafs: { name: "net_output", offset: 19 },
    });
    expect(() => poseOutputs([{ name: "depth", dims: [1, 1, 23, 23] }])).toThrow(/19 channels.*38 channels/);
  });
});

describe("openpose annotator through ONNX Runtime", () => {
  const options = (annotatorDir: string) => ({
    annotatorDir,
    sessions: new SessionFactory("cpu", captureLog().log),
    seed: 1,
  });
  const install = (model: Uint8Array) => {
    const dir = mkdtempSync(join(tmpdir(), "openpose-"));
    mkdirSync(join(dir, "openpose"));
    writeFileSync(join(dir, "openpose", "model.onnx"), model);
    return dir;
  };

  it("runs a tiny random-weight body model (input [1,3,H,W], 19- and 38-channel outputs at stride 8)", async () => {
    const g = new GraphBuilder(11);
    const x = g.input("image", "float", [1, 3, "h", "w"]);
    const pooled = g.node("AveragePool", [x], { kernel_shape: [8, 8], strides: [8, 8] });
    // Heatmaps first and names that say nothing: the annotator goes by channel counts.
    g.alias(g.node("Sigmoid", [g.conv1x1(pooled, 3, 19, 3)]), "out_a");
    g.alias(g.node("Tanh", [g.conv1x1(pooled, 3, 38, 3)]), "out_b");
    g.output("out_a", "float", [1, 19, "h8", "w8"]);
    g.output("out_b", "float", [1, 38, "h8", "w8"]);
    const dir = install(g.encode("openpose"));
    const data = new Uint8Array(96 * 64 * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 251;
    for (const name of ["openpose", "pose"]) {
      const out = await annotate(name, { data, width: 96, height: 64 }, options(dir));
      expect(out.width).toBe(96);
      expect(out.height).toBe(64);
      expect(out.data).toHaveLength(96 * 64 * 3);
    }
  });

  it("draws the person a fixed-size model reports, at the right place in the image", async () => {
    // A 512×512 image: detected at 512, fed as 184×184 padded to the model's fixed 192×192; outputs
    // 24×24 (the person's keypoints on that grid) are upsampled ×8, cropped to 184 and resized to 512.
    const grid = 24;
    const cell = (c: number) => (8 * c + 4) * (512 / 184) - 0.5;
    const person = personAt(12, 13, 0.3).map(([px, py]) => [Math.round(px), Math.round(py)] as const);
    const maps = syntheticMaps([person], grid, grid, 0.8, 0.8);
    const g = new GraphBuilder(3);
    const x = g.input("input", "float", [1, 3, 192, 192]);
    const zero = g.node("Mul", [g.node("ReduceMean", [x], { axes: [1, 2, 3], keepdims: 1 }), g.scalar(0)]);
    g.alias(g.node("Add", [g.floats([1, 38, grid, grid], maps.pafs), zero]), "Mconv7_stage6_L1");
    g.alias(g.node("Add", [g.floats([1, 19, grid, grid], maps.heatmaps), zero]), "Mconv7_stage6_L2");
    g.output("Mconv7_stage6_L1", "float", [1, 38, grid, grid]);
    g.output("Mconv7_stage6_L2", "float", [1, 19, grid, grid]);
    const dir = install(g.encode("openpose"));
    const image = { data: new Uint8Array(512 * 512 * 3).fill(90), width: 512, height: 512 };
    const out = await annotate("openpose", image, options(dir));
    expect(out.width).toBe(512);
    const near = (part: number, colour: readonly number[]) => {
      const [px, py] = person[part] as Point;
      const [ex, ey] = [Math.round(cell(px)), Math.round(cell(py))];
      for (let dy = -2; dy <= 2; dy++)
        for (let dx = -2; dx <= 2; dx++) {
          const i = ((ey + dy) * 512 + ex + dx) * 3;
          if (colour.every((c, n) => out.data[i + n] === c)) return true;
        }
      return false;
    };
    for (const part of [0, 1, 4, 7, 10, 13])
      expect(near(part, COLORS[part] as readonly number[]), `${part}`).toBe(true);
    // The shins are drawn (limbs 8 and 11), the background stays black.
    const [kx, ky] = person[9] as Point;
    const [ax, ay] = person[10] as Point;
    const mid = (Math.round(cell((ky + ay) / 2)) * 512 + Math.round(cell((kx + ax) / 2))) * 3;
    expect(Array.from(out.data.subarray(mid, mid + 3))).toEqual(COLORS[8]?.map((v) => Math.trunc(v * 0.6)));
    expect(Array.from(out.data.subarray(0, 3))).toEqual([0, 0, 0]);
  });
});
