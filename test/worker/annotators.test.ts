import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { annotate, loadOpenCv } from "../../worker/src/annotators/index.ts";
import type { RgbImage } from "../../worker/src/images.ts";
import { GraphBuilder } from "../../worker/src/models/onnx-builder.ts";
import { SessionFactory } from "../../worker/src/pipeline/session.ts";
import { captureLog } from "./support.ts";

const size = 128;
function square(): RgbImage {
  const data = new Uint8Array(size * size * 3).fill(20);
  for (let y = 32; y < 96; y++)
    for (let x = 32; x < 96; x++) data.fill(230, (y * size + x) * 3, (y * size + x) * 3 + 3);
  return { data, width: size, height: size };
}
const options = (annotatorDir: string | null = null) => ({
  annotatorDir,
  sessions: new SessionFactory("cpu", captureLog().log),
  seed: 7,
});
const px = (img: RgbImage, x: number, y: number) =>
  Array.from(img.data.subarray((y * size + x) * 3, (y * size + x) * 3 + 3));

describe("annotators without weights (OpenCV wasm + sharp)", () => {
  it("loads OpenCV 4.x on this Node", async () => {
    const { cv } = await loadOpenCv();
    expect(cv.getBuildInformation()).toMatch(/OpenCV 4\.\d+/);
  });

  it("canny draws the square's edges, nothing elsewhere", async () => {
    const out = await annotate("canny", square(), options());
    expect(out.width).toBe(size);
    // Detected at 512² (controlnet_aux's detect resolution), so a 1-pixel edge is faint at 128².
    const edgeAt = (x: number, y: number) => px(out, x, y).every((v) => v > 20);
    let edge = 0;
    for (let y = 28; y < 100; y++) if (edgeAt(30, y) || edgeAt(31, y) || edgeAt(32, y)) edge++;
    expect(edge).toBeGreaterThan(50);
    expect(px(out, 64, 64)).toEqual([0, 0, 0]);
    expect(px(out, 5, 5)).toEqual([0, 0, 0]);
  });

  it("gray, blur, low_quality, tile, shuffle give same-size hints; qrcode and inpaint pass through", async () => {
    const src = square();
    for (const name of ["gray", "blur", "low_quality", "tile", "shuffle"]) {
      const out = await annotate(name, src, options());
      expect(out.data, name).toHaveLength(size * size * 3);
    }
    const gray = await annotate("gray", src, options());
    const [r, g, b] = px(gray, 64, 64);
    expect(r).toBe(g);
    expect(g).toBe(b);
    const blur = await annotate("blur", src, options());
    const mid = px(blur, 32, 64)[0] as number;
    expect(mid).toBeGreaterThan(40);
    expect(mid).toBeLessThan(220);
    const shuffleA = await annotate("shuffle", src, options());
    const shuffleB = await annotate("shuffle", src, options());
    expect(Buffer.from(shuffleA.data).equals(Buffer.from(shuffleB.data))).toBe(true);
    expect((await annotate("qrcode", src, options())).data).toBe(src.data);
  });

  it("model-based annotators fail with 'annotator model not installed' when no model is configured", async () => {
    for (const name of [
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
    ]) {
      await expect(annotate(name, square(), options()), name).rejects.toMatchObject({
        kind: "bad_input",
        message: expect.stringContaining("annotator model not installed"),
      });
    }
  });

  it("runs an installed image-to-map ONNX annotator (depth) and scales its map to the image", async () => {
    const dir = mkdtempSync(join(tmpdir(), "annotators-"));
    const g = new GraphBuilder(3);
    const x = g.input("image", "float", [1, 3, "h", "w"]);
    const mean = g.node("ReduceMean", [x], { axes: [1], keepdims: 1 });
    g.alias(g.node("AveragePool", [mean], { kernel_shape: [2, 2], strides: [2, 2] }), "depth");
    g.output("depth", "float", [1, 1, "h2", "w2"]);
    mkdirSync(join(dir, "depth"));
    writeFileSync(join(dir, "depth", "model.onnx"), g.encode("depth"));
    const out = await annotate("depth", square(), options(dir));
    expect(out.width).toBe(size);
    expect(px(out, 64, 64)[0]).toBeGreaterThan(200);
    expect(px(out, 4, 4)[0]).toBeLessThan(30);
  });
});
