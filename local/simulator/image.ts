/**
 * Simulated ControlNet outputs: real PNGs of the requested size, derived from the control image
 * (a grayscale edge map, the way a canny preprocessor sees it), shifted in brightness per seed and
 * sample so that different seeds give different, and equal seeds identical, images. Every PNG carries
 * a tEXt chunk `Comment: simulated by local ModelsLab simulator` so it can never pass for a real one.
 */
import sharp from "sharp";

export const SIMULATED_COMMENT = "simulated by local ModelsLab simulator";

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = (CRC_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typeAndData = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([length, typeAndData, crc]);
}

/** Inserts tEXt chunks right after IHDR (signature 8 bytes + IHDR chunk 25 bytes). */
export function addTextChunks(png: Buffer, entries: Record<string, string>): Buffer {
  if (png.length < 33 || !png.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error("not a PNG");
  const texts = Object.entries(entries).map(([keyword, text]) =>
    chunk(
      "tEXt",
      Buffer.concat([Buffer.from(keyword, "latin1"), Buffer.from([0]), Buffer.from(text, "latin1")]),
    ),
  );
  return Buffer.concat([png.subarray(0, 33), ...texts, png.subarray(33)]);
}

/** Width and height from a PNG's IHDR chunk, or null when `data` is not a PNG. */
export function pngSize(data: Uint8Array): { width: number; height: number } | null {
  const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buffer.length < 24 || !buffer.subarray(0, 8).equals(PNG_SIGNATURE)) return null;
  if (buffer.toString("latin1", 12, 16) !== "IHDR") return null;
  return { width: buffer.readUInt32BE(16), height: buffer.readUInt32BE(20) };
}

/** All tEXt chunks of a PNG, keyword → text. */
export function pngTextChunks(data: Uint8Array): Record<string, string> {
  const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const texts: Record<string, string> = {};
  let offset = 8;
  while (offset + 12 <= buffer.length) {
    const length = buffer.readUInt32BE(offset);
    const type = buffer.toString("latin1", offset + 4, offset + 8);
    if (type === "tEXt") {
      const body = buffer.subarray(offset + 8, offset + 8 + length);
      const nul = body.indexOf(0);
      if (nul > 0) texts[body.toString("latin1", 0, nul)] = body.toString("latin1", nul + 1);
    }
    if (type === "IEND") break;
    offset += 12 + length;
  }
  return texts;
}

export interface RenderRequest {
  /** The decoded-or-not bytes of the control (or init) image. */
  control: Buffer;
  width: number;
  height: number;
  samples: number;
  seed: number;
  controlnetModel: string;
}

/** Renders `samples` PNGs. Rejects when the control image cannot be decoded. */
export async function renderOutputs(request: RenderRequest): Promise<Buffer[]> {
  const edges = await sharp(request.control, { failOn: "error", limitInputPixels: 64 * 1024 * 1024 })
    // The alpha channel goes first: sharp convolves it with the colour, premultiplied, and this
    // kernel (sum 0) turns an opaque alpha into 0, so every pixel of an RGBA image came out
    // transparent, one flat value. Transparent areas read as black background, as for line art.
    .flatten({ background: "#000000" })
    .resize(request.width, request.height, { fit: "fill" })
    .greyscale()
    .convolve({ width: 3, height: 3, kernel: [-1, -1, -1, -1, 8, -1, -1, -1, -1] })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const outputs: Buffer[] = [];
  for (let index = 0; index < request.samples; index++) {
    // A per-seed, per-sample brightness offset: deterministic, and visibly different between seeds.
    const offset = ((request.seed + index * 7919) % 97) + 16;
    const png = await sharp(edges.data, { raw: edges.info })
      .linear(1, offset)
      .png({ compressionLevel: 6, adaptiveFiltering: false })
      .toBuffer();
    outputs.push(
      addTextChunks(png, {
        Comment: SIMULATED_COMMENT,
        Software: "local ModelsLab simulator",
        Description: `controlnet_model=${request.controlnetModel} seed=${request.seed} sample=${index}`,
      }),
    );
  }
  return outputs;
}
