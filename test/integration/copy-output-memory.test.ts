/**
 * Memory: copying a 50 MB output must not hold it in memory. The image server and S3 (fauxqs) run
 * in a child process, so that only the copy itself (download, hash, sniff, multipart upload) is
 * measured here: fauxqs keeps stored objects in memory, and the server's own garbage is not ours.
 * Peak RSS is sampled every 5 ms during the copy.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { SafeDownloader } from "../../shared/adapters/http/safe-fetch.ts";
import { createS3Client, S3ObjectStore } from "../../shared/adapters/s3/object-store.ts";
import { copyOutput } from "../../shared/usecases/copy-output.ts";
import { LOCAL_CREDENTIALS, LOCAL_REGION } from "../support/emulators.ts";

const FILLER_BYTES = 50 * 1024 * 1024;
const CHUNK = 64 * 1024;
const MAX_GROWTH = 64 * 1024 * 1024;
const BUCKET = "outputs";

/**
 * Runs in the child process: fauxqs with the bucket, and an HTTP server that generates the body chunk
 * by chunk (a PNG signature and 4000x3000 IHDR, then one huge IDAT of deterministic filler) and
 * answers its sha256 on /sha256. Prints both addresses as one JSON line.
 */
const CHILD = `
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { Readable } from "node:stream";
import { startFauxqs } from "fauxqs";

const FILLER = ${FILLER_BYTES};
const CHUNK = ${CHUNK};
function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
function head() {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(4000, 0);
  ihdr.writeUInt32BE(3000, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const type = Buffer.from("IHDR", "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([type, ihdr])));
  const idat = Buffer.alloc(8);
  idat.writeUInt32BE(FILLER, 0);
  idat.write("IDAT", 4, "latin1");
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]), type, ihdr, crc, idat]);
}
function* body() {
  yield head();
  for (let sent = 0, n = 0; sent < FILLER; sent += CHUNK, n++) {
    const chunk = Buffer.alloc(Math.min(CHUNK, FILLER - sent));
    for (let i = 0; i + 4 <= chunk.length; i += 4) chunk.writeUInt32LE((n * 2654435761 + i) >>> 0, i);
    yield chunk;
  }
}
const hash = createHash("sha256");
let bytes = 0;
for (const chunk of body()) { hash.update(chunk); bytes += chunk.length; }
const expected = JSON.stringify({ sha256: hash.digest("hex"), bytes });

const s3 = await startFauxqs({ port: 0, logger: false });
s3.createBucket(${JSON.stringify(BUCKET)});
const server = createServer((req, res) => {
  if (req.url === "/expected") return res.writeHead(200).end(expected);
  res.writeHead(200, { "content-type": "image/png" });
  Readable.from(body()).pipe(res);
});
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ s3: s3.address, http: "http://127.0.0.1:" + server.address().port }));
});
`;

let child: ChildProcess;
let s3: S3Client;
let imageBase: string;

beforeAll(async () => {
  child = spawn(process.execPath, ["--input-type=module", "-e", CHILD], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const addresses = await new Promise<{ s3: string; http: string }>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`the emulator process exited (${code})`)));
    child.stdout?.once("data", (data: Buffer) => resolve(JSON.parse(data.toString())));
  });
  s3 = createS3Client({ endpoint: addresses.s3, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  imageBase = addresses.http;
}, 30_000);

afterAll(() => {
  s3?.destroy();
  child?.kill();
});

function collectGarbage(): void {
  let gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    setFlagsFromString("--expose-gc");
    gc = runInNewContext("gc") as () => void;
  }
  gc();
  gc();
}

it("copies a 50 MB output with peak RSS growth under 64 MB", async () => {
  const { sha256: expectedSha, bytes: expectedBytes } = (await (
    await fetch(`${imageBase}/expected`)
  ).json()) as {
    sha256: string;
    bytes: number;
  };

  collectGarbage();
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 5);
  const started = Date.now();
  let copied: Awaited<ReturnType<typeof copyOutput>>;
  try {
    copied = await copyOutput(
      {
        store: new S3ObjectStore(s3, BUCKET),
        downloader: new SafeDownloader({
          mode: "local",
          allowedHosts: ["127.0.0.1"],
          maxBytes: 64 * 1024 * 1024,
          timeoutMs: 15_000,
          retryForMs: 0,
        }),
        limits: { maxBytes: 64 * 1024 * 1024, retryForMs: 0 },
      },
      { source: { kind: "url", url: `${imageBase}/big.png` }, keyPrefix: "tenant/job/0" },
    );
  } finally {
    clearInterval(sampler);
  }
  peak = Math.max(peak, process.memoryUsage.rss());
  const growth = peak - baseline;
  const seconds = (Date.now() - started) / 1000;
  console.log(
    `copy of ${(expectedBytes / 1048576).toFixed(1)} MiB in ${seconds.toFixed(2)} s: baseline RSS ${(baseline / 1048576).toFixed(1)} MiB, peak ${(peak / 1048576).toFixed(1)} MiB, growth ${(growth / 1048576).toFixed(1)} MiB`,
  );

  expect(copied).toEqual({
    key: "tenant/job/0.png",
    content_type: "image/png",
    bytes: expectedBytes,
    sha256: expectedSha,
    width: 4000,
    height: 3000,
  });
  expect(growth).toBeLessThan(MAX_GROWTH);

  // The stored object is the whole body (streamed back and hashed, after the measurement).
  const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: copied.key }));
  expect(object.ContentLength).toBe(expectedBytes);
  expect(object.ContentType).toBe("image/png");
  const stored = createHash("sha256");
  for await (const chunk of object.Body as Readable) stored.update(chunk as Buffer);
  expect(stored.digest("hex")).toBe(expectedSha);
}, 30_000);
