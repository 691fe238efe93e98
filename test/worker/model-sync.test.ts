/**
 * The model sync against fauxqs's S3, with a loopback proxy in front of it for what the emulator never
 * does by itself: a connection cut in the middle of a body, a body that stalls, GETs held to see how
 * many run at once.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeleteObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { type FauxqsServer, startFauxqs } from "fauxqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelSyncError, SYNC_MANIFEST, syncS3Prefix } from "../../worker/src/model-sync.ts";
import { waitFor } from "../support/wait.ts";

const credentials = { accessKeyId: "local", secretAccessKey: "local" };
let fauxqs: FauxqsServer;
let s3: S3Client;
let bucketN = 0;

type Mode =
  | { kind: "pass" }
  /** Sends the headers and half the body of GETs for this key, then drops the connection. */
  | { kind: "cut"; key: string }
  /** Sends the headers and half the body of GETs for this key, then nothing more. */
  | { kind: "stall"; key: string }
  /** Holds every GET's answer until released. */
  | { kind: "hold" };

interface Proxy {
  url: string;
  mode: Mode;
  inFlight: number;
  maxInFlight: number;
  gets: number;
  held: Array<() => void>;
  release(): void;
  client: S3Client;
  close(): Promise<void>;
}

async function startProxy(upstream: string): Promise<Proxy> {
  const target = new URL(upstream);
  const open = new Set<ServerResponse>();
  const proxy = {
    mode: { kind: "pass" } as Mode,
    inFlight: 0,
    maxInFlight: 0,
    gets: 0,
    held: [] as Array<() => void>,
    release() {
      proxy.mode = { kind: "pass" };
      for (const go of proxy.held.splice(0)) go();
    },
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const isGet = req.method === "GET" && !(req.url ?? "").includes("list-type");
    if (isGet) {
      proxy.gets++;
      proxy.inFlight++;
      proxy.maxInFlight = Math.max(proxy.maxInFlight, proxy.inFlight);
    }
    open.add(res);
    res.on("close", () => {
      open.delete(res);
      if (isGet) proxy.inFlight--;
    });
    const upstreamReq = httpRequest(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        const chunks: Buffer[] = [];
        up.on("data", (c: Buffer) => chunks.push(c));
        up.on("end", () => {
          const body = Buffer.concat(chunks);
          const mode = proxy.mode;
          const answer = () => {
            const path = decodeURIComponent(req.url ?? "");
            const forKey = (key: string) => isGet && path.includes(key) && up.statusCode === 200;
            res.writeHead(up.statusCode ?? 502, up.headers);
            if ((mode.kind === "cut" || mode.kind === "stall") && forKey(mode.key)) {
              res.write(body.subarray(0, Math.floor(body.length / 2)));
              if (mode.kind === "cut") res.socket?.destroy();
              return;
            }
            res.end(body);
          };
          if (mode.kind === "hold" && isGet) proxy.held.push(answer);
          else answer();
        });
      },
    );
    req.pipe(upstreamReq);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new S3Client({
    endpoint: url,
    region: "us-east-1",
    credentials,
    forcePathStyle: true,
    maxAttempts: 1,
  });
  return Object.assign(proxy, {
    url,
    client,
    close: async () => {
      client.destroy();
      for (const res of open) res.socket?.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}

async function put(bucket: string, key: string, body: string | Buffer): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

async function bucketWith(files: Record<string, string | Buffer>): Promise<string> {
  bucketN++;
  const bucket = `models-${bucketN}`;
  fauxqs.createBucket(bucket);
  for (const [key, body] of Object.entries(files)) await put(bucket, key, body);
  return bucket;
}

const folder = () => mkdtempSync(join(tmpdir(), "model-sync-"));
const read = (dir: string, path: string) => readFileSync(join(dir, path), "utf8");
const leftovers = (dir: string): string[] => {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith(".partial") || e.name.endsWith(".tmp")) out.push(e.name);
    }
  };
  walk(dir);
  return out;
};

beforeAll(async () => {
  fauxqs = await startFauxqs({ port: 0, logger: false });
  s3 = new S3Client({ endpoint: fauxqs.address, region: "us-east-1", credentials, forcePathStyle: true });
});
afterAll(async () => {
  s3?.destroy();
  await fauxqs?.stop();
});

const FILES = {
  "sd15/model_index.json": '{"_class_name":"x"}',
  "sd15/unet/model.onnx": "u".repeat(50_000),
  "sd15/vae_decoder/model.onnx": "v".repeat(20_000),
  "other/not-mine.onnx": "o",
};

describe("model sync from S3 (fauxqs)", () => {
  it("downloads every file once; a second sync downloads nothing", async () => {
    const bucket = await bucketWith(FILES);
    const dir = folder();
    const first = await syncS3Prefix({ s3, bucket, prefix: "sd15/", dir });
    expect(first).toMatchObject({ files: 3, downloaded: 3, kept: 0, removed: 0, bytes: 70_019 });
    expect(read(dir, "unet/model.onnx")).toBe(FILES["sd15/unet/model.onnx"]);
    expect(read(dir, "model_index.json")).toBe(FILES["sd15/model_index.json"]);
    expect(existsSync(join(dir, "not-mine.onnx"))).toBe(false);
    expect(Object.keys(JSON.parse(read(dir, SYNC_MANIFEST)).files).sort()).toEqual([
      "model_index.json",
      "unet/model.onnx",
      "vae_decoder/model.onnx",
    ]);

    const second = await syncS3Prefix({ s3, bucket, prefix: "sd15/", dir });
    expect(second).toMatchObject({ files: 3, downloaded: 0, kept: 3, removed: 0, bytes: 0 });
  });

  it("downloads again an object whose ETag changed, even at the same size, and keeps the rest", async () => {
    const bucket = await bucketWith(FILES);
    const dir = folder();
    await syncS3Prefix({ s3, bucket, prefix: "sd15/", dir });
    await put(bucket, "sd15/unet/model.onnx", "U".repeat(50_000));
    const again = await syncS3Prefix({ s3, bucket, prefix: "sd15/", dir });
    expect(again).toMatchObject({ downloaded: 1, kept: 2, bytes: 50_000 });
    expect(read(dir, "unet/model.onnx")).toBe("U".repeat(50_000));
  });

  it("deletes what the prefix no longer holds, and the folders it leaves empty", async () => {
    const bucket = await bucketWith(FILES);
    const dir = folder();
    await syncS3Prefix({ s3, bucket, prefix: "sd15/", dir });
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "sd15/vae_decoder/model.onnx" }));
    const again = await syncS3Prefix({ s3, bucket, prefix: "sd15/", dir });
    expect(again).toMatchObject({ files: 2, downloaded: 0, kept: 2, removed: 1 });
    expect(existsSync(join(dir, "vae_decoder"))).toBe(false);
    expect(existsSync(join(dir, "unet/model.onnx"))).toBe(true);
  });

  it("never leaves a partial download under the final name: a cut connection keeps the old file", async () => {
    const bucket = await bucketWith(FILES);
    const dir = folder();
    await syncS3Prefix({ s3, bucket, prefix: "sd15/", dir });
    await put(bucket, "sd15/unet/model.onnx", "N".repeat(60_000));
    await put(bucket, "sd15/text_encoder/model.onnx", "T".repeat(40_000));
    const proxy = await startProxy(fauxqs.address);
    try {
      // A new file cut short: nothing under its name.
      proxy.mode = { kind: "cut", key: "sd15/text_encoder/model.onnx" };
      await expect(
        syncS3Prefix({ s3: proxy.client, bucket, prefix: "sd15/", dir, concurrency: 1 }),
      ).rejects.toThrow(ModelSyncError);
      expect(existsSync(join(dir, "text_encoder/model.onnx"))).toBe(false);
      expect(leftovers(dir)).toEqual([]);

      // A changed file cut short: the old, complete file is still there.
      proxy.mode = { kind: "cut", key: "sd15/unet/model.onnx" };
      await expect(
        syncS3Prefix({ s3: proxy.client, bucket, prefix: "sd15/", dir, concurrency: 1 }),
      ).rejects.toThrow(ModelSyncError);
      expect(read(dir, "unet/model.onnx")).toBe("u".repeat(50_000));
      expect(leftovers(dir)).toEqual([]);
    } finally {
      await proxy.close();
    }
    const healed = await syncS3Prefix({ s3, bucket, prefix: "sd15/", dir });
    expect(healed.downloaded).toBe(healed.files - healed.kept);
    expect(read(dir, "unet/model.onnx")).toBe("N".repeat(60_000));
    expect(read(dir, "text_encoder/model.onnx")).toBe("T".repeat(40_000));
  });

  it("gives up on a body that stops arriving after the idle timeout, and removes its partial file", async () => {
    const bucket = await bucketWith(FILES);
    const dir = folder();
    const proxy = await startProxy(fauxqs.address);
    try {
      proxy.mode = { kind: "stall", key: "sd15/unet/model.onnx" };
      const started = Date.now();
      await expect(
        syncS3Prefix({ s3: proxy.client, bucket, prefix: "sd15/", dir, idleTimeoutMs: 300 }),
      ).rejects.toThrow(/sd15\/unet\/model\.onnx: no data for 300 ms/);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(existsSync(join(dir, "unet/model.onnx"))).toBe(false);
      expect(leftovers(dir)).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it("downloads in parallel, never more than the concurrency at once", async () => {
    const files = Object.fromEntries(
      Array.from({ length: 6 }, (_, i) => [`p/file-${i}.onnx`, String(i).repeat(1000 + i)]),
    );
    const bucket = await bucketWith(files);
    const dir = folder();
    const proxy = await startProxy(fauxqs.address);
    try {
      proxy.mode = { kind: "hold" };
      const sync = syncS3Prefix({ s3: proxy.client, bucket, prefix: "p/", dir, concurrency: 2 });
      await waitFor(() => proxy.held.length === 2, { what: "two GETs at once" });
      proxy.release();
      expect(await sync).toMatchObject({ downloaded: 6 });
      expect(proxy.maxInFlight).toBe(2);
      expect(proxy.gets).toBe(6);
    } finally {
      await proxy.close();
    }
  });

  it("refuses a prefix over the byte limit before downloading anything, and an empty prefix", async () => {
    const bucket = await bucketWith(FILES);
    const dir = folder();
    await expect(syncS3Prefix({ s3, bucket, prefix: "sd15/", dir, maxBytes: 70_000 })).rejects.toThrow(
      /holds 70019 bytes, over the limit of 70000/,
    );
    expect(readdirSync(dir)).toEqual([]);
    await expect(syncS3Prefix({ s3, bucket, prefix: "nothing/", dir })).rejects.toThrow(/no files under/);
  });
});
