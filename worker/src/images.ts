/**
 * Image inputs and outputs: fetching (URL or base64), decoding and resizing with sharp, planar float
 * conversions for the models, PNG encoding.
 */
import { buffer } from "node:stream/consumers";
import sharp from "sharp";
import type { SafeConnectOptions } from "../../shared/adapters/http/guarded-connection.ts";
import { safeDownload } from "../../shared/adapters/http/safe-fetch.ts";
import { type NetworkMode, urlHost } from "../../shared/domain/address-policy.ts";
import { findRefusal } from "../../shared/domain/downloads.ts";
import { badInput } from "./errors.ts";

/** RGB, interleaved, 8 bits per channel. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export type ImageFetcher = (url: string, signal?: AbortSignal) => Promise<Buffer>;

/** How input images may be fetched: the Lambdas' address policy (`NETWORK_POLICY`) and the worker's limits. */
export interface ImageDownloadPolicy {
  mode: NetworkMode;
  maxBytes: number;
  /** One image, from the request to its last byte. */
  timeoutMs: number;
}

/** The worker's defaults (its configuration's, `main.ts`): aws rules unless the local stack says otherwise. */
export const DEFAULT_IMAGE_DOWNLOADS: ImageDownloadPolicy = {
  mode: "aws",
  maxBytes: 20 * 1024 * 1024,
  timeoutMs: 30_000,
};

/**
 * Fetches an http(s) image as the Lambdas download provider outputs (`safeDownload`): the address
 * policy checked on the URL and at connection time, redirects only within the same host and under the
 * same checks, a size and a time limit. Any public host may serve an input (the client chose it, as
 * `stage-inputs` accepts it), so the allow-list is the URL's own host. Refusals are `DownloadRefused`;
 * `readImageRef` names the field they came from.
 */
export function safeImageFetcher(
  policy: ImageDownloadPolicy,
  connect: SafeConnectOptions = {},
): ImageFetcher {
  return (url, signal) => {
    let host: string[] = [];
    try {
      host = [urlHost(new URL(url))];
    } catch {
      // No host to allow: checkUrl refuses the URL as invalid.
    }
    return safeDownload(
      url,
      {
        mode: policy.mode,
        allowedHosts: host,
        maxBytes: policy.maxBytes,
        timeoutMs: policy.timeoutMs,
        retryForMs: 0,
      },
      (body) => buffer(body),
      { ...connect, ...(signal ? { signal } : {}) },
    );
  };
}

/**
 * The bytes of the image reference of request field `field`: an http(s) URL, a data URI or raw base64.
 * A refused download that can never succeed (address policy, redirect, size, a final HTTP status) is
 * bad input naming the field; a retryable one (timeout, network, a status that may change) is transient.
 */
export async function readImageRef(
  field: string,
  ref: string,
  fetcher: ImageFetcher,
  signal?: AbortSignal,
): Promise<Buffer> {
  if (/^https?:\/\//i.test(ref)) {
    try {
      return await fetcher(ref, signal);
    } catch (error) {
      const refusal = findRefusal(error);
      if (!refusal) throw error;
      const message = `${field}: the image could not be fetched (${refusal.code}): ${refusal.message}`;
      if (refusal.retryable) throw new Error(message, { cause: error });
      throw badInput(message, error);
    }
  }
  const data = ref.replace(/^data:image\/[a-z]+;base64,/i, "");
  const bytes = Buffer.from(data, "base64");
  if (bytes.length === 0) throw badInput(`${field}: image data is empty`);
  return bytes;
}

/**
 * Decodes to RGB (EXIF orientation applied, alpha dropped), as diffusers' `load_image` does
 * (`exif_transpose`, `convert("RGB")`), without resizing.
 */
async function decodeFull(bytes: Buffer): Promise<RgbImage> {
  const { data, info } = await sharp(bytes, { limitInputPixels: 64 * 1024 * 1024 })
    .rotate()
    .removeAlpha()
    .toColourspace("srgb")
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected 3 channels, got ${info.channels}`);
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width: info.width,
    height: info.height,
  };
}

/** The image as uploaded (RGB, EXIF orientation applied, alpha dropped, not resized): what annotators detect on. */
export async function decodeOriginal(bytes: Buffer, what: string): Promise<RgbImage> {
  try {
    return await decodeFull(bytes);
  } catch (error) {
    throw badInput(
      `${what} is not a readable image: ${error instanceof Error ? error.message : String(error)}`,
      error,
    );
  }
}

/**
 * Resizes raw 8-bit pixels to exactly width×height as diffusers' VaeImageProcessor.resize does with
 * its defaults (resize_mode "default", resample "lanczos": PIL's `image.resize((w, h), LANCZOS)`): the
 * whole image stretched to the target size, not cropped, with a Lanczos-3 filter.
 */
export async function resizeLanczos(
  data: Uint8Array,
  from: { width: number; height: number },
  channels: 1 | 3,
  width: number,
  height: number,
): Promise<Uint8Array> {
  if (from.width === width && from.height === height) return data;
  const resized = sharp(data, { raw: { width: from.width, height: from.height, channels } }).resize(
    width,
    height,
    { fit: "fill", kernel: "lanczos3" },
  );
  // sharp writes one band as sRGB unless told to keep it grey.
  const { data: out, info } = await (channels === 1 ? resized.toColourspace("b-w") : resized)
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== channels) throw new Error(`resize gave ${info.channels} channels, not ${channels}`);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Decodes and resizes to exactly width×height RGB, as diffusers prepares the init image
 * (image_processor) and the control image (control_image_processor.preprocess, in prepare_image).
 */
export async function decodeRgb(
  bytes: Buffer,
  width: number,
  height: number,
  what: string,
): Promise<RgbImage> {
  try {
    const full = await decodeFull(bytes);
    return { data: await resizeLanczos(full.data, full, 3, width, height), width, height };
  } catch (error) {
    throw badInput(
      `${what} is not a readable image: ${error instanceof Error ? error.message : String(error)}`,
      error,
    );
  }
}

/**
 * A mask: 1 where the pixel is light (repaint), 0 where dark (keep), as diffusers' mask_processor
 * reads it (do_convert_grayscale, resize, do_binarize): PIL's `convert("L")` (ITU-R 601 luma in
 * PIL's fixed point, alpha ignored), the Lanczos resize, then 1 where value / 255 ≥ 0.5.
 */
export async function decodeMask(bytes: Buffer, width: number, height: number): Promise<Float32Array> {
  try {
    const full = await decodeFull(bytes);
    const plane = full.width * full.height;
    const grey = new Uint8Array(plane);
    for (let i = 0; i < plane; i++) {
      const r = full.data[i * 3] as number;
      const g = full.data[i * 3 + 1] as number;
      const b = full.data[i * 3 + 2] as number;
      grey[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    }
    const data = await resizeLanczos(grey, full, 1, width, height);
    const mask = new Float32Array(width * height);
    for (let i = 0; i < mask.length; i++) mask[i] = (data[i] as number) / 255 >= 0.5 ? 1 : 0;
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
