/**
 * Content type and dimensions of an image, read from its first bytes. Only the formats the product
 * stores are recognised: PNG, JPEG and WebP. Anything else is refused with `NotAnImageError`.
 *
 * The sniffer is incremental: feed it chunks as they arrive and it answers as soon as it knows.
 * PNG and WebP need their first 30 bytes; a JPEG's frame header (SOFn) may come after large
 * metadata segments (EXIF, ICC profiles), so those are skipped without being kept. The sniffer
 * holds at most a few dozen bytes itself, and gives up after `limitBytes`.
 */
export type ImageContentType = "image/png" | "image/jpeg" | "image/webp";

export interface SniffedImage {
  contentType: ImageContentType;
  /** File extension for the type, without the dot. */
  extension: "png" | "jpg" | "webp";
  width: number;
  height: number;
}

export class NotAnImageError extends Error {
  readonly code = "NOT_AN_IMAGE";
  constructor(message: string) {
    super(message);
    this.name = "NotAnImageError";
  }
}

/** How far into a file the sniffer looks for the dimensions before giving up. */
export const DEFAULT_SNIFF_LIMIT_BYTES = 1_048_576;

/** Bytes needed to tell the formats apart and read PNG/WebP dimensions. */
const HEAD_BYTES = 30;

/** Signature, IHDR length and type, width, height. */
const PNG_HEAD_BYTES = 24;
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const MAX_DIMENSION = 0x7fffffff;

const ascii = (bytes: Uint8Array, start: number, length: number): string =>
  String.fromCharCode(...bytes.subarray(start, start + length));

const u8 = (bytes: Uint8Array, at: number): number => bytes[at] ?? 0;
const be16 = (b: Uint8Array, at: number): number => (u8(b, at) << 8) | u8(b, at + 1);
const le16 = (b: Uint8Array, at: number): number => u8(b, at) | (u8(b, at + 1) << 8);
const le24 = (b: Uint8Array, at: number): number => le16(b, at) | (u8(b, at + 2) << 16);
const be32 = (b: Uint8Array, at: number): number => be16(b, at) * 0x10000 + be16(b, at + 2);

function image(
  contentType: ImageContentType,
  extension: SniffedImage["extension"],
  width: number,
  height: number,
): SniffedImage {
  if (!(width > 0 && height > 0 && width <= MAX_DIMENSION && height <= MAX_DIMENSION)) {
    throw new NotAnImageError(
      `The ${extension.toUpperCase()} header gives invalid dimensions ${width}x${height}.`,
    );
  }
  return { contentType, extension, width, height };
}

function startsWith(bytes: Uint8Array, prefix: number[]): boolean {
  return prefix.every((byte, i) => bytes[i] === byte);
}

function isJpegStart(head: Uint8Array): boolean {
  return head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff;
}

function isWebpStart(head: Uint8Array): boolean {
  return ascii(head, 0, 4) === "RIFF" && ascii(head, 8, 4) === "WEBP";
}

function parsePng(head: Uint8Array): SniffedImage {
  // Signature (8), IHDR length (4) = 13, "IHDR" (4), width (4), height (4).
  if (be32(head, 8) !== 13 || ascii(head, 12, 4) !== "IHDR") {
    throw new NotAnImageError("PNG signature without an IHDR chunk.");
  }
  return image("image/png", "png", be32(head, 16), be32(head, 20));
}

function parseWebp(head: Uint8Array): SniffedImage {
  const chunk = ascii(head, 12, 4);
  const data = 20;
  if (chunk === "VP8 ") {
    // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height.
    if (head[data + 3] !== 0x9d || head[data + 4] !== 0x01 || head[data + 5] !== 0x2a) {
      throw new NotAnImageError("WebP VP8 chunk without a key-frame start code.");
    }
    return image("image/webp", "webp", le16(head, data + 6) & 0x3fff, le16(head, data + 8) & 0x3fff);
  }
  if (chunk === "VP8L") {
    if (head[data] !== 0x2f) throw new NotAnImageError("WebP VP8L chunk without its signature byte.");
    const bits =
      u8(head, data + 1) |
      (u8(head, data + 2) << 8) |
      (u8(head, data + 3) << 16) |
      (u8(head, data + 4) << 24);
    return image("image/webp", "webp", (bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
  }
  if (chunk === "VP8X") {
    // Flags (4 bytes), then canvas width - 1 and height - 1 as 24-bit little-endian numbers.
    return image("image/webp", "webp", le24(head, data + 4) + 1, le24(head, data + 7) + 1);
  }
  throw new NotAnImageError(`WebP container with an unknown first chunk "${chunk}".`);
}

/** SOFn markers that carry frame dimensions (not DHT c4, JPG c8, DAC cc). */
const isStartOfFrame = (marker: number): boolean =>
  marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
/** Markers without a length field. */
const isStandalone = (marker: number): boolean => marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7);

/** Walks JPEG segments (after SOI) until the first SOFn, skipping segment payloads without keeping them. */
class JpegScanner {
  private state: "marker-prefix" | "marker" | "length" | "skip" | "frame" = "marker-prefix";
  private marker = 0;
  private field: number[] = [];
  private skipRemaining = 0;

  /** Returns the image once the frame header is read; null when more bytes are needed. */
  feed(bytes: Uint8Array): SniffedImage | null {
    let i = 0;
    while (i < bytes.length) {
      switch (this.state) {
        case "skip": {
          const n = Math.min(this.skipRemaining, bytes.length - i);
          i += n;
          this.skipRemaining -= n;
          if (this.skipRemaining === 0) this.state = "marker-prefix";
          break;
        }
        case "marker-prefix": {
          if (bytes[i++] !== 0xff) throw new NotAnImageError("JPEG segment does not start with a marker.");
          this.state = "marker";
          break;
        }
        case "marker": {
          const marker = u8(bytes, i++);
          if (marker === 0xff) break; // fill byte
          if (marker === 0x00) throw new NotAnImageError("JPEG with a stuffed byte where a marker belongs.");
          if (isStandalone(marker)) {
            this.state = "marker-prefix";
            break;
          }
          if (marker === 0xd9 || marker === 0xda || marker === 0xd8) {
            throw new NotAnImageError("JPEG without a frame header before its image data.");
          }
          this.marker = marker;
          this.field = [];
          this.state = "length";
          break;
        }
        case "length": {
          this.field.push(u8(bytes, i++));
          if (this.field.length < 2) break;
          const length = ((this.field[0] ?? 0) << 8) | (this.field[1] ?? 0);
          if (length < 2) throw new NotAnImageError("JPEG segment with an invalid length.");
          this.field = [];
          if (isStartOfFrame(this.marker)) {
            if (length < 7) throw new NotAnImageError("JPEG frame header too short.");
            this.state = "frame";
          } else {
            this.skipRemaining = length - 2;
            this.state = this.skipRemaining === 0 ? "marker-prefix" : "skip";
          }
          break;
        }
        case "frame": {
          // Precision (1), height (2), width (2).
          this.field.push(u8(bytes, i++));
          if (this.field.length < 5) break;
          const frame = Uint8Array.from(this.field);
          return image("image/jpeg", "jpg", be16(frame, 3), be16(frame, 1));
        }
      }
    }
    return null;
  }
}

/**
 * Incremental sniffer. `push` each chunk in order; it returns the image once known and null while it
 * needs more bytes. Call `end()` when the stream ends early. Throws `NotAnImageError` as soon as the
 * bytes cannot be a PNG, JPEG or WebP, or when `limitBytes` pass without an answer.
 */
export class ImageSniffer {
  private head = new Uint8Array(HEAD_BYTES);
  private headLength = 0;
  private seen = 0;
  private jpeg: JpegScanner | null = null;
  private found: SniffedImage | null = null;

  constructor(private readonly limitBytes: number = DEFAULT_SNIFF_LIMIT_BYTES) {}

  get result(): SniffedImage | null {
    return this.found;
  }

  push(chunk: Uint8Array): SniffedImage | null {
    if (this.found) return this.found;
    this.seen += chunk.length;
    let rest = chunk;
    if (!this.jpeg) {
      const take = Math.min(HEAD_BYTES - this.headLength, chunk.length);
      this.head.set(chunk.subarray(0, take), this.headLength);
      this.headLength += take;
      rest = chunk.subarray(take);
      this.rejectEarly();
      if (this.headLength >= 3 && isJpegStart(this.head)) {
        this.jpeg = new JpegScanner();
        // Feed everything after SOI (ff d8) that has been collected so far.
        this.found = this.jpeg.feed(this.head.subarray(2, this.headLength));
      } else if (this.headLength >= PNG_HEAD_BYTES && startsWith(this.head, PNG_SIGNATURE)) {
        this.found = parsePng(this.head);
      } else if (this.headLength === HEAD_BYTES) {
        this.found = this.parseHead();
      }
    }
    if (!this.found && this.jpeg && rest.length > 0) this.found = this.jpeg.feed(rest);
    if (!this.found && this.seen >= this.limitBytes) {
      throw new NotAnImageError(`No image dimensions within the first ${this.limitBytes} bytes.`);
    }
    return this.found;
  }

  /** The stream ended: returns the image, or throws when the bytes were too few to be one. */
  end(): SniffedImage {
    if (this.found) return this.found;
    if (!this.jpeg && this.headLength > 0) this.rejectEarly();
    throw new NotAnImageError(
      this.seen === 0
        ? "The output is empty."
        : `The output ended after ${this.seen} bytes, before its image header.`,
    );
  }

  /** Fails on the first bytes that match none of the signatures, without waiting for a full head. */
  private rejectEarly(): void {
    const head = this.head.subarray(0, this.headLength);
    const candidates: number[][] = [PNG_SIGNATURE, [0xff, 0xd8, 0xff], [0x52, 0x49, 0x46, 0x46]];
    const possible = candidates.some((signature) =>
      signature.slice(0, head.length).every((byte, i) => head[i] === byte),
    );
    const riffButNotWebp = head.length >= 12 && ascii(head, 0, 4) === "RIFF" && ascii(head, 8, 4) !== "WEBP";
    if (!possible || riffButNotWebp) {
      throw new NotAnImageError("The output is not a PNG, JPEG or WebP image.");
    }
  }

  private parseHead(): SniffedImage {
    if (isWebpStart(this.head)) return parseWebp(this.head);
    throw new NotAnImageError("The output is not a PNG, JPEG or WebP image.");
  }
}

/** Sniffs a complete image held in memory. */
export function sniffImage(bytes: Uint8Array, limitBytes = DEFAULT_SNIFF_LIMIT_BYTES): SniffedImage {
  const sniffer = new ImageSniffer(limitBytes);
  return sniffer.push(bytes) ?? sniffer.end();
}
