/**
 * Image inputs and outputs: fetching (URL or base64), decoding and resizing with sharp, planar float
 * conversions for the models, PNG encoding.
 */
import sharp from "sharp";
import { badInput } from "./errors.ts";

/** RGB, interleaved, 8 bits per channel. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export type ImageFetcher = (url: string, signal?: AbortSignal) => Promise<Buffer>;

export const MAX_INPUT_BYTES = 20 * 1024 * 1024;
const FETCH_TIMEOUT_MS = 30_000;

/** Fetches an http(s) image with a timeout and a size bound. A 4xx is bad input; anything else is transient. */
export const httpFetcher: ImageFetcher = async (url, signal) => {
  const timeout = AbortSignal.timeout(FETCH_TIMEOUT_MS);
  const response = await fetch(url, {
    redirect: "follow",
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  });
  if (response.status >= 400 && response.status < 500) {
    throw badInput(`could not fetch image ${url}: HTTP ${response.status}`);
  }
  if (!response.ok || !response.body)
    throw new Error(`could not fetch image ${url}: HTTP ${response.status}`);
  const declared = Number(response.headers.get("content-length") ?? 0);
  if (declared > MAX_INPUT_BYTES) throw badInput(`image ${url} is larger than ${MAX_INPUT_BYTES} bytes`);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body) {
    total += chunk.byteLength;
    if (total > MAX_INPUT_BYTES) throw badInput(`image ${url} is larger than ${MAX_INPUT_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
};

/** The bytes of an image reference: an http(s) URL, a data URI or raw base64. */
export async function readImageRef(
  ref: string,
  fetcher: ImageFetcher,
  signal?: AbortSignal,
): Promise<Buffer> {
  if (/^https?:\/\//i.test(ref)) return fetcher(ref, signal);
  const data = ref.replace(/^data:image\/[a-z]+;base64,/i, "");
  const bytes = Buffer.from(data, "base64");
  if (bytes.length === 0) throw badInput("image data is empty");
  return bytes;
}

/** Decodes and resizes (cover, centre) to exactly width×height RGB. */
export async function decodeRgb(
  bytes: Buffer,
  width: number,
  height: number,
  what: string,
): Promise<RgbImage> {
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: 64 * 1024 * 1024 })
      .rotate()
      .resize(width, height, { fit: "cover" })
      .removeAlpha()
      .toColourspace("srgb")
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels, got ${info.channels}`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, height };
  } catch (error) {
    throw badInput(
      `${what} is not a readable image: ${error instanceof Error ? error.message : String(error)}`,
      error,
    );
  }
}

/** A mask: 1 where the pixel is light (repaint), 0 where dark (keep), as diffusers reads masks. */
export async function decodeMask(bytes: Buffer, width: number, height: number): Promise<Float32Array> {
  try {
    const data = await sharp(bytes)
      .resize(width, height, { fit: "cover" })
      .flatten({ background: "#000000" })
      .greyscale()
      .raw()
      .toBuffer();
    const mask = new Float32Array(width * height);
    for (let i = 0; i < mask.length; i++) mask[i] = (data[i] as number) >= 128 ? 1 : 0;
    return mask;
  } catch (error) {
    throw badInput(
      `mask_image is not a readable image: ${error instanceof Error ? error.message : String(error)}`,
      error,
    );
  }
}

/** Interleaved RGB → planar [3,H,W], 0..1. */
export function toPlanar01(image: RgbImage): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++)
    for (let c = 0; c < 3; c++) out[c * plane + i] = (image.data[i * 3 + c] as number) / 255;
  return out;
}

/** Interleaved RGB → planar [3,H,W], -1..1 (the VAE encoder's range). */
export function toPlanarSigned(image: RgbImage): Float32Array {
  const out = toPlanar01(image);
  for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) * 2 - 1;
  return out;
}

/** The inpaint ControlNet's condition: the image in 0..1 with masked pixels set to -1. */
export function inpaintCondition(image: RgbImage, mask: Float32Array): Float32Array {
  const out = toPlanar01(image);
  const plane = image.width * image.height;
  for (let i = 0; i < plane; i++) {
    if ((mask[i] as number) > 0.5) for (let c = 0; c < 3; c++) out[c * plane + i] = -1;
  }
  return out;
}

export async function encodePng(image: RgbImage): Promise<Buffer> {
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
}
