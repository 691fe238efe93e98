/**
 * OpenCV's wasm build (`@techstark/opencv-js`), shared by the annotators: loading it once, freeing
 * Mats, and RGB images in and out of Mats.
 */
import { createRequire } from "node:module";
import type { RgbImage } from "../images.ts";

export type CV = typeof import("@techstark/opencv-js");
export type Mat = InstanceType<CV["Mat"]>;

let cvPromise: Promise<{ cv: CV }> | null = null;

/**
 * OpenCV's wasm build, initialised once (about half a second on Node 20). The module object is a
 * thenable (Emscripten), so it is wrapped: a promise resolved with it (or an async function returning
 * it) would never settle.
 */
export function loadOpenCv(): Promise<{ cv: CV }> {
  cvPromise ??= new Promise<{ cv: CV }>((resolve, reject) => {
    try {
      const require = createRequire(import.meta.url);
      const cv = require("@techstark/opencv-js") as CV & { onRuntimeInitialized?: () => void };
      if (typeof cv.Mat === "function") resolve({ cv });
      else
        cv.onRuntimeInitialized = () => {
          resolve({ cv });
        };
    } catch (error) {
      reject(error);
    }
  });
  return cvPromise;
}

/** Runs `fn`, deleting every Mat it passed through `track` afterwards (wasm memory is not collected). */
export function withMats<T>(fn: (track: (m: Mat) => Mat) => T): T {
  const mats: Mat[] = [];
  try {
    return fn((m) => {
      mats.push(m);
      return m;
    });
  } finally {
    for (const m of mats) m.delete();
  }
}

export function fromRgb(cv: CV, image: RgbImage): Mat {
  const mat = new cv.Mat(image.height, image.width, cv.CV_8UC3);
  mat.data.set(image.data);
  return mat;
}

/** An 8-bit Mat (one or three channels) as an RGB image. */
export function toRgb(cv: CV, mat: Mat): RgbImage {
  return withMats((track) => {
    let rgb = mat;
    if (mat.channels() === 1) {
      rgb = track(new cv.Mat());
      cv.cvtColor(mat, rgb, cv.COLOR_GRAY2RGB);
    }
    return { data: Uint8Array.from(rgb.data), width: mat.cols, height: mat.rows };
  });
}
