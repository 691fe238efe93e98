import { NotAnImageError, sniffImage } from "../../../shared/domain/image-sniff.ts";
import { InvalidInputError } from "./errors.ts";
import { type FileInput, type ImageField, UPLOADABLE_FIELDS, type UploadContentType } from "./types.ts";

/** The largest local image the client uploads (the provider's own inputs are far smaller). */
export const DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024;

export const isFileInput = (value: unknown): value is FileInput =>
  value instanceof Uint8Array ||
  (typeof Blob !== "undefined" && value instanceof Blob) ||
  value instanceof URL ||
  (typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { path?: unknown }).path === "string");

/** The image fields of `request` that hold a local file, to upload before submitting. */
export const fileFieldsOf = (request: Record<string, unknown>): ImageField[] =>
  UPLOADABLE_FIELDS.filter((field) => isFileInput(request[field]));

async function readPath(path: string, maxBytes: number): Promise<Uint8Array> {
  const { open } = await import("node:fs/promises");
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw new InvalidInputError(`Cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const { size, isFile } = await handle.stat().then((stat) => ({ size: stat.size, isFile: stat.isFile() }));
    if (!isFile) throw new InvalidInputError(`${path} is not a file.`);
    if (size > maxBytes)
      throw new InvalidInputError(`${path} is ${size} bytes, over the limit of ${maxBytes}.`);
    // Read no more than the limit allows, whatever the file grew to since stat.
    const buffer = new Uint8Array(size);
    const { bytesRead } = await handle.read(buffer, 0, size, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** The bytes of a file input, at most `maxBytes` of them. */
export async function bytesOf(input: FileInput, maxBytes: number): Promise<Uint8Array> {
  let bytes: Uint8Array;
  if (input instanceof Uint8Array) {
    bytes = input;
  } else if (input instanceof URL) {
    if (input.protocol !== "file:") {
      throw new InvalidInputError(
        `Only file: URLs are read as files; pass ${input.protocol} URLs as strings.`,
      );
    }
    const { fileURLToPath } = await import("node:url");
    return readPath(fileURLToPath(input), maxBytes);
  } else if ("path" in input) {
    return readPath(input.path, maxBytes);
  } else {
    if (input.size > maxBytes) {
      throw new InvalidInputError(`The Blob is ${input.size} bytes, over the limit of ${maxBytes}.`);
    }
    bytes = new Uint8Array(await input.arrayBuffer());
  }
  if (bytes.byteLength > maxBytes) {
    throw new InvalidInputError(`The image is ${bytes.byteLength} bytes, over the limit of ${maxBytes}.`);
  }
  return bytes;
}

/** The upload Content-Type of an image, read from its bytes (PNG, JPEG or WebP: what the API stores). */
export function contentTypeOf(bytes: Uint8Array): UploadContentType {
  try {
    return sniffImage(bytes).contentType;
  } catch (error) {
    if (error instanceof NotAnImageError) {
      throw new InvalidInputError(`Not an image the API takes (PNG, JPEG or WebP): ${error.message}`, {
        cause: error,
      });
    }
    throw error;
  }
}
