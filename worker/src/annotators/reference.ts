/**
 * What controlnet_aux's detectors share (huggingface/controlnet_aux, src/controlnet_aux/util.py), and
 * the step after them: the hint at the detect resolution goes back to the output size as diffusers'
 * control_image_processor resizes a control image (Lanczos, images.ts).
 */
import type { RgbImage } from "../images.ts";
import { resizeLanczos } from "../images.ts";
import { type CV, fromRgb, toRgb, withMats } from "./opencv.ts";
import { detectSize } from "./openpose.ts";

/** controlnet_aux's detectors' default detect_resolution (and image_resolution). */
export const DETECT_RESOLUTION = 512;

/**
 * util.py `resize_image(input_image, 512)`: the short side to 512, both sides rounded to multiples of
 * 64 (numpy's round, halves to even), Lanczos-4 when enlarging, area when shrinking.
 */
export function toDetectResolution(cv: CV, image: RgbImage, resolution = DETECT_RESOLUTION): RgbImage {
  const { width, height } = detectSize(image.width, image.height, resolution);
  if (width === image.width && height === image.height) return image;
  const k = resolution / Math.min(image.width, image.height);
  return withMats((track) => {
    const src = track(fromRgb(cv, image));
    const out = track(new cv.Mat());
    cv.resize(src, out, new cv.Size(width, height), 0, 0, k > 1 ? cv.INTER_LANCZOS4 : cv.INTER_AREA);
    return toRgb(cv, out);
  });
}

/** A hint at the detect resolution, resized to the output size as diffusers resizes a control image. */
export async function toOutputSize(hint: RgbImage, width: number, height: number): Promise<RgbImage> {
  return { data: await resizeLanczos(hint.data, hint, 3, width, height), width, height };
}

/** A one-channel 8-bit map as RGB (util.py `HWC3`). */
export function grey(data: ArrayLike<number>, width: number, height: number): RgbImage {
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) out.fill(data[i] as number, i * 3, i * 3 + 3);
  return { data: out, width, height };
}

/** numpy's `(x * 255.0).clip(0, 255).astype(np.uint8)`: clipped, then truncated. */
export function toByte(v: number): number {
  const s = v * 255;
  return s >= 255 ? 255 : s > 0 ? Math.trunc(s) : 0;
}

/**
 * util.py `nms(x, t, s)`: Gaussian blur (σ = s), keep the values that are maxima along at least one of
 * four directions (dilation with a 3-tap line kernel leaves them unchanged), 255 where above `t`.
 */
export function nms(
  cv: CV,
  map: Uint8Array,
  width: number,
  height: number,
  t: number,
  s: number,
): Uint8Array {
  return withMats((track) => {
    const x = track(new cv.Mat(height, width, cv.CV_32F));
    x.data32F.set(map);
    cv.GaussianBlur(x, x, new cv.Size(0, 0), s, s, cv.BORDER_DEFAULT);
    const blurred = Float32Array.from(x.data32F);
    const y = new Float32Array(blurred.length);
    const kernels = [
      [0, 0, 0, 1, 1, 1, 0, 0, 0],
      [0, 1, 0, 0, 1, 0, 0, 1, 0],
      [1, 0, 0, 0, 1, 0, 0, 0, 1],
      [0, 0, 1, 0, 1, 0, 1, 0, 0],
    ];
    for (const k of kernels) {
      const kernel = track(cv.matFromArray(3, 3, cv.CV_8U, k));
      const dilated = track(new cv.Mat());
      cv.dilate(
        x,
        dilated,
        kernel,
        new cv.Point(-1, -1),
        1,
        cv.BORDER_CONSTANT,
        cv.morphologyDefaultBorderValue(),
      );
      const d = dilated.data32F;
      for (let i = 0; i < y.length; i++) if (d[i] === blurred[i]) y[i] = blurred[i] as number;
    }
    const z = new Uint8Array(y.length);
    for (let i = 0; i < y.length; i++) z[i] = (y[i] as number) > t ? 255 : 0;
    return z;
  });
}

/** cv2.GaussianBlur(x, (0, 0), sigma) on an 8-bit one-channel map. */
export function gaussianBlur8(
  cv: CV,
  map: Uint8Array,
  width: number,
  height: number,
  sigma: number,
): Uint8Array {
  return withMats((track) => {
    const x = track(new cv.Mat(height, width, cv.CV_8U));
    x.data.set(map);
    const out = track(new cv.Mat());
    cv.GaussianBlur(x, out, new cv.Size(0, 0), sigma, sigma, cv.BORDER_DEFAULT);
    return Uint8Array.from(out.data);
  });
}

/** cv2.resize(map, (width, height), interpolation=cv2.INTER_LINEAR) on a float one-channel map. */
export function resizeFloatLinear(
  cv: CV,
  map: Float32Array,
  from: { width: number; height: number },
  width: number,
  height: number,
): Float32Array {
  if (from.width === width && from.height === height) return map;
  return withMats((track) => {
    const x = track(new cv.Mat(from.height, from.width, cv.CV_32F));
    x.data32F.set(map);
    const out = track(new cv.Mat());
    cv.resize(x, out, new cv.Size(width, height), 0, 0, cv.INTER_LINEAR);
    return Float32Array.from(out.data32F);
  });
}
