import sharp from "sharp";
import { beforeAll, describe, expect, it } from "vitest";
import {
  ImageSniffer,
  NotAnImageError,
  type SniffedImage,
  sniffImage,
} from "../../shared/domain/image-sniff.ts";

const solid = (width: number, height: number, channels: 3 | 4 = 3) =>
  sharp({ create: { width, height, channels, background: { r: 200, g: 40, b: 90, alpha: 0.5 } } });

/** Feeds `bytes` to a fresh sniffer in chunks of `size` bytes, as a stream would. */
function sniffInChunks(bytes: Uint8Array, size: number, limit?: number): SniffedImage {
  const sniffer = new ImageSniffer(limit);
  for (let at = 0; at < bytes.length; at += size) {
    const found = sniffer.push(bytes.subarray(at, at + size));
    if (found) return found;
  }
  return sniffer.end();
}

/** Inserts an APPn segment of `payload` bytes right after a JPEG's SOI marker. */
function withAppSegment(jpeg: Buffer, payload: number, marker = 0xef): Buffer {
  const segment = Buffer.alloc(4 + payload, 0x41);
  segment[0] = 0xff;
  segment[1] = marker;
  segment.writeUInt16BE(payload + 2, 2);
  return Buffer.concat([jpeg.subarray(0, 2), segment, jpeg.subarray(2)]);
}

let png: Buffer;
let pngAlpha: Buffer;
let jpeg: Buffer;
let progressiveJpeg: Buffer;
let webpLossy: Buffer;
let webpLossless: Buffer;
let webpExtended: Buffer;

beforeAll(async () => {
  png = await solid(37, 21).png().toBuffer();
  pngAlpha = await solid(1, 1, 4).png().toBuffer();
  jpeg = await solid(640, 480).jpeg({ quality: 80 }).withMetadata({ icc: "p3" }).toBuffer();
  progressiveJpeg = await solid(33, 17).jpeg({ progressive: true }).toBuffer();
  webpLossy = await solid(123, 45).webp({ quality: 50 }).toBuffer();
  webpLossless = await solid(16383, 3).webp({ lossless: true }).toBuffer();
  webpExtended = await solid(300, 200, 4)
    .webp({ quality: 50 })
    .withMetadata({ exif: { IFD0: { Copyright: "x" } } })
    .toBuffer();
});

describe("sniffImage on real images", () => {
  it("reads PNG type and IHDR dimensions", () => {
    expect(sniffImage(png)).toEqual({ contentType: "image/png", extension: "png", width: 37, height: 21 });
    expect(sniffImage(pngAlpha)).toMatchObject({ width: 1, height: 1 });
  });

  it("reads JPEG dimensions from the SOF marker after metadata segments", () => {
    expect(sniffImage(jpeg)).toEqual({
      contentType: "image/jpeg",
      extension: "jpg",
      width: 640,
      height: 480,
    });
    expect(sniffImage(progressiveJpeg)).toMatchObject({ contentType: "image/jpeg", width: 33, height: 17 });
  });

  it("reads WebP VP8, VP8L and VP8X dimensions", () => {
    expect(webpLossy.subarray(12, 16).toString("latin1")).toBe("VP8 ");
    expect(webpLossless.subarray(12, 16).toString("latin1")).toBe("VP8L");
    expect(webpExtended.subarray(12, 16).toString("latin1")).toBe("VP8X");
    expect(sniffImage(webpLossy)).toEqual({
      contentType: "image/webp",
      extension: "webp",
      width: 123,
      height: 45,
    });
    expect(sniffImage(webpLossless)).toMatchObject({ width: 16383, height: 3 });
    expect(sniffImage(webpExtended)).toMatchObject({ width: 300, height: 200 });
  });

  it.each([1, 2, 3, 7, 29, 4096])("gives the same answers when fed in %i-byte chunks", (size) => {
    for (const image of [png, jpeg, progressiveJpeg, webpLossy, webpLossless, webpExtended]) {
      expect(sniffInChunks(image, size)).toEqual(sniffImage(image));
    }
  });

  it("finds a JPEG frame header behind 200 KB of APP segments without buffering them", () => {
    let big = jpeg;
    for (let i = 0; i < 4; i++) big = withAppSegment(big, 50_000);
    expect(sniffInChunks(big, 16_384)).toMatchObject({ contentType: "image/jpeg", width: 640, height: 480 });
  });

  it("answers from the first bytes of a PNG however large the rest is", () => {
    const sniffer = new ImageSniffer();
    expect(sniffer.push(png.subarray(0, 24))).toMatchObject({ width: 37, height: 21 });
    expect(sniffer.push(Buffer.alloc(10_000_000))).toMatchObject({ width: 37 });
  });
});

describe("sniffImage refuses everything else", () => {
  const refused = (bytes: Uint8Array, message?: RegExp) => {
    const attempt = () => sniffImage(bytes);
    expect(attempt).toThrow(NotAnImageError);
    if (message) expect(attempt).toThrow(message);
  };

  it("refuses garbage, text and other formats", () => {
    refused(Buffer.from("<html><body>Not found</body></html>"), /not a PNG, JPEG or WebP/);
    refused(Buffer.from("GIF89a\x01\x00\x01\x00\x00\x00\x00;", "latin1"));
    refused(Buffer.from("RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00", "latin1"));
    refused(
      Buffer.from([
        0x42, 0x4d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      ]),
    );
    refused(Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256)));
  });

  it("refuses the first non-matching byte without waiting for more", () => {
    const sniffer = new ImageSniffer();
    expect(() => sniffer.push(Buffer.from([0x00]))).toThrow(NotAnImageError);
  });

  it("refuses empty and truncated images", () => {
    refused(Buffer.alloc(0), /empty/);
    refused(png.subarray(0, 20), /ended after 20 bytes/);
    refused(jpeg.subarray(0, 10));
    refused(webpLossy.subarray(0, 25));
  });

  it("refuses broken headers", () => {
    const noIhdr = Buffer.from(png);
    noIhdr.write("IDAT", 12, "latin1");
    refused(noIhdr, /IHDR/);
    const zeroWidth = Buffer.from(png);
    zeroWidth.writeUInt32BE(0, 16);
    refused(zeroWidth, /invalid dimensions/);
    const unknownWebpChunk = Buffer.from(webpLossy);
    unknownWebpChunk.write("VP9 ", 12, "latin1");
    refused(unknownWebpChunk, /unknown first chunk/);
    // A JPEG whose scan starts before any frame header.
    refused(Buffer.from([0xff, 0xd8, 0xff, 0xda, 0x00, 0x02, 0x00]), /frame header/);
    // A JPEG segment not introduced by 0xff.
    refused(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0x12, 0x34]), /marker/);
  });

  it("gives up on a JPEG whose frame header is beyond the limit", () => {
    const far = withAppSegment(jpeg, 60_000);
    expect(() => sniffInChunks(far, 8192, 32_768)).toThrow(/first 32768 bytes/);
  });
});
