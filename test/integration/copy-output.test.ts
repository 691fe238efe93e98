/**
 * copyOutput end to end: a loopback HTTP server as the provider's CDN, fauxqs (or moto) as S3. aws-mode rules
 * run through the `transport` seam (test names resolve to a public address; the checked socket is
 * routed to the loopback server), so no traffic ever leaves loopback.
 */
import { createHash } from "node:crypto";
import { lookup } from "node:dns/promises";
import { createServer, type Server } from "node:http";
import net, { type AddressInfo } from "node:net";
import tls from "node:tls";
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import sharp from "sharp";
import type { buildConnector } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { SafeConnectOptions } from "../../shared/adapters/http/guarded-connection.ts";
import { type DownloadPolicy, SafeDownloader } from "../../shared/adapters/http/safe-fetch.ts";
import { createS3Client, S3ObjectStore } from "../../shared/adapters/s3/object-store.ts";
import { CopyFailed, type CopyOutputDeps, copyOutput } from "../../shared/usecases/copy-output.ts";
import {
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  ownName,
  type S3Emulator,
  startS3Emulator,
} from "../support/emulators.ts";

let emulator: S3Emulator;
let s3: S3Client;
let server: Server;
let base: string;
let port: number;
const images: Record<string, Buffer> = {};
const counters = new Map<string, number>();

beforeAll(async () => {
  emulator = await startS3Emulator();
  s3 = createS3Client({
    endpoint: emulator.s3Endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  const picture = () =>
    sharp({ create: { width: 64, height: 48, channels: 3, background: "#3a7" } }).composite([
      {
        input: Buffer.from('<svg width="20" height="20"><circle cx="10" cy="10" r="9" fill="#fff"/></svg>'),
        top: 10,
        left: 30,
      },
    ]);
  images.png = await picture().png().toBuffer();
  images.jpg = await picture().jpeg().toBuffer();
  images.webp = await picture().webp().toBuffer();
  images.large = await sharp({
    create: {
      width: 1500,
      height: 1000,
      channels: 3,
      background: "#000",
      noise: { type: "gaussian", mean: 128, sigma: 60 },
    },
  })
    .png({ compressionLevel: 0 })
    .toBuffer(); // ~4.5 MB, one PutObject
  // 12 MB: a real PNG head (signature + IHDR) and filler; sniffs as PNG and needs a multipart upload.
  images.huge = Buffer.concat([images.png.subarray(0, 33), Buffer.alloc(12_000_000, 7)]);

  server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const [, route, name] = url.pathname.split("/");
    const count = (counters.get(url.pathname) ?? 0) + 1;
    counters.set(url.pathname, count);
    const image = images[name ?? ""];
    switch (route) {
      case "img":
        if (!image) break;
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": image.length });
        res.end(image);
        return;
      case "late": // 404 twice, as a link that has not propagated yet, then the image
        if (!image) break;
        if (count <= 2) res.writeHead(404).end("not yet");
        else res.writeHead(200).end(image);
        return;
      case "flaky": // a 503 then the image
        if (!image) break;
        if (count <= 1) res.writeHead(503).end();
        else res.writeHead(200).end(image);
        return;
      case "truncated": // ends cleanly after 10 bytes
        if (!image) break;
        res.writeHead(200).end(image.subarray(0, 10));
        return;
      case "cut": // promises more than it sends, then drops the connection
        if (!image) break;
        res.writeHead(200, { "content-length": image.length });
        res.write(image.subarray(0, 10), () => res.socket?.destroy());
        return;
      case "chunked": // no content-length: only counting can stop it
        if (!image) break;
        res.writeHead(200);
        for (let at = 0; at < image.length; at += 65_536) res.write(image.subarray(at, at + 65_536));
        res.end();
        return;
      case "html":
        res.writeHead(200, { "content-type": "text/html" }).end("<html>Access denied</html>");
        return;
      case "redirect":
        res.writeHead(302, { location: url.searchParams.get("to") ?? "/" }).end();
        return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  s3?.destroy();
  await emulator?.stop();
});

afterEach(() => vi.restoreAllMocks());

let bucketCount = 0;
async function freshStore(): Promise<{ store: S3ObjectStore; bucket: string }> {
  const bucket = ownName(`outputs-${++bucketCount}`);
  await emulator.createBucket(bucket);
  return { store: new S3ObjectStore(s3, bucket), bucket };
}

async function listKeys(bucket: string): Promise<string[]> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
  return (listed.Contents ?? []).map((object) => object.Key ?? "").sort();
}

async function getObject(bucket: string, key: string): Promise<{ bytes: Buffer; contentType?: string }> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return {
    bytes: Buffer.from((await object.Body?.transformToByteArray()) ?? []),
    contentType: object.ContentType,
  };
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

const localPolicy = (overrides: Partial<DownloadPolicy> = {}): DownloadPolicy => ({
  mode: "local",
  allowedHosts: ["127.0.0.1"],
  maxBytes: 10_000_000,
  timeoutMs: 5_000,
  retryForMs: 3_000,
  ...overrides,
});

/** copyOutput's ports as finalize wires them: downloads over HTTP under `policy`, its limits for every output. */
const over = (
  store: S3ObjectStore,
  policy: DownloadPolicy,
  connect: SafeConnectOptions = {},
): CopyOutputDeps => ({
  store,
  downloader: new SafeDownloader(policy, connect),
  limits: { maxBytes: policy.maxBytes, retryForMs: policy.retryForMs },
});

async function copyFailure(promise: Promise<unknown>): Promise<CopyFailed> {
  const error = await promise.then(
    () => {
      throw new Error("the copy did not fail");
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CopyFailed);
  return error as CopyFailed;
}

describe("copyOutput from URLs and base64", () => {
  it.each([
    ["png", "image/png"],
    ["jpg", "image/jpeg"],
    ["webp", "image/webp"],
  ])("copies a %s from a URL with its type, size, sha256 and dimensions", async (name, contentType) => {
    const { store, bucket } = await freshStore();
    const image = images[name] as Buffer;
    const copied = await copyOutput(over(store, localPolicy()), {
      source: { kind: "url", url: `${base}/img/${name}` },
      keyPrefix: "tenant-a/job-1/0",
    });
    expect(copied).toEqual({
      key: `tenant-a/job-1/0.${name}`,
      content_type: contentType,
      bytes: image.length,
      sha256: sha256(image),
      width: 64,
      height: 48,
    });
    const stored = await getObject(bucket, copied.key);
    expect(stored.contentType).toBe(contentType);
    expect(sha256(stored.bytes)).toBe(sha256(image));
    expect(await store.head(copied.key)).toMatchObject({ bytes: image.length, contentType });
  });

  it.each(["png", "jpg", "webp"])("copies a %s from base64 (plain and data URL)", async (name) => {
    const { store, bucket } = await freshStore();
    const image = images[name] as Buffer;
    const plain = await copyOutput(over(store, localPolicy()), {
      source: { kind: "base64", data: image.toString("base64") },
      keyPrefix: "t/j/0",
    });
    const dataUrl = await copyOutput(over(store, localPolicy()), {
      source: { kind: "base64", data: `data:image/whatever;base64,${image.toString("base64")}` },
      keyPrefix: "t/j/1",
    });
    expect(plain).toMatchObject({
      key: `t/j/0.${name}`,
      bytes: image.length,
      sha256: sha256(image),
      width: 64,
      height: 48,
    });
    expect(dataUrl).toMatchObject({ key: `t/j/1.${name}`, sha256: sha256(image) });
    expect((await getObject(bucket, plain.key)).bytes.equals(image)).toBe(true);
  });

  it("copies a multi-megabyte image", async () => {
    const { store, bucket } = await freshStore();
    const image = images.large as Buffer;
    const copied = await copyOutput(over(store, localPolicy()), {
      source: { kind: "url", url: `${base}/img/large` },
      keyPrefix: "t/j/0",
    });
    expect(copied).toMatchObject({ bytes: image.length, sha256: sha256(image), width: 1500, height: 1000 });
    expect(sha256((await getObject(bucket, copied.key)).bytes)).toBe(sha256(image));
  });

  it("is idempotent: copying the same output twice gives the same record and one object", async () => {
    const { store, bucket } = await freshStore();
    const input = { source: { kind: "url" as const, url: `${base}/img/jpg` }, keyPrefix: "t/j/0" };
    const first = await copyOutput(over(store, localPolicy()), input);
    const second = await copyOutput(over(store, localPolicy()), input);
    expect(second).toEqual(first);
    expect(await listKeys(bucket)).toEqual(["t/j/0.jpg"]);
    expect(sha256((await getObject(bucket, first.key)).bytes)).toBe(first.sha256);
  });
});

describe("copyOutput retries", () => {
  it("retries 404s while a link propagates, then succeeds", async () => {
    const { store } = await freshStore();
    const copied = await copyOutput(
      { ...over(store, localPolicy()), sleep: async () => undefined },
      { source: { kind: "url", url: `${base}/late/png?n=1` }, keyPrefix: "t/j/0" },
    );
    expect(copied.sha256).toBe(sha256(images.png as Buffer));
    expect(counters.get("/late/png")).toBeGreaterThanOrEqual(3);
  });

  it("retries a 503", async () => {
    const { store } = await freshStore();
    const copied = await copyOutput(over(store, localPolicy()), {
      source: { kind: "url", url: `${base}/flaky/webp` },
      keyPrefix: "t/j/0",
    });
    expect(copied.content_type).toBe("image/webp");
  });

  it("fails with CopyFailed after retryForMs when the output never appears, storing nothing", async () => {
    const { store, bucket } = await freshStore();
    // Time passes only while it waits between attempts: the schedule, not this machine's speed.
    let now = 0;
    const waits: number[] = [];
    const error = await copyFailure(
      copyOutput(
        {
          ...over(store, localPolicy({ retryForMs: 700 })),
          clock: { now: () => new Date(now) },
          sleep: async (ms) => {
            waits.push(ms);
            now += ms;
          },
        },
        { source: { kind: "url", url: `${base}/img/missing` }, keyPrefix: "t/j/0" },
      ),
    );
    expect(error.code).toBe("HTTP_STATUS");
    // Backoff 200 ms then 400 ms; a third wait (800 ms) would end past retryForMs, so it gives up.
    expect(waits).toEqual([200, 400]);
    expect(error.attempts).toBe(3);
    expect(error.message).toMatch(/HTTP 404 from 127\.0\.0\.1.*gave up after 3 attempts over 0\.6 s/);
    expect(await listKeys(bucket)).toEqual([]);
  });
});

describe("copyOutput refusals store nothing", () => {
  it("refuses an over-size output at once (URL and base64)", async () => {
    const { store, bucket } = await freshStore();
    const policy = localPolicy({ maxBytes: 100 });
    const fromUrl = await copyFailure(
      copyOutput(over(store, policy), {
        source: { kind: "url", url: `${base}/img/png` },
        keyPrefix: "t/j/0",
      }),
    );
    expect(fromUrl).toMatchObject({ code: "TOO_LARGE", attempts: 1 });
    const fromBase64 = await copyFailure(
      copyOutput(over(store, policy), {
        source: { kind: "base64", data: (images.png as Buffer).toString("base64") },
        keyPrefix: "t/j/1",
      }),
    );
    expect(fromBase64.code).toBe("TOO_LARGE");
    expect(await listKeys(bucket)).toEqual([]);
  });

  it("stops an over-size body without content-length part-way through a multipart upload, leaving no object", async () => {
    const { store, bucket } = await freshStore();
    const error = await copyFailure(
      copyOutput(over(store, localPolicy({ maxBytes: 11_000_000 })), {
        source: { kind: "url", url: `${base}/chunked/huge` },
        keyPrefix: "t/j/0",
      }),
    );
    expect(error).toMatchObject({ code: "TOO_LARGE", attempts: 1 });
    expect(await listKeys(bucket)).toEqual([]);
    // The same body under the limit is stored whole.
    const copied = await copyOutput(over(store, localPolicy({ maxBytes: 13_000_000 })), {
      source: { kind: "url", url: `${base}/chunked/huge` },
      keyPrefix: "t/j/0",
    });
    expect(copied).toMatchObject({
      key: "t/j/0.png",
      bytes: (images.huge as Buffer).length,
      width: 64,
      height: 48,
    });
    expect(await store.head("t/j/0.png")).toMatchObject({ bytes: (images.huge as Buffer).length });
  });

  it("refuses outputs that are not images", async () => {
    const { store, bucket } = await freshStore();
    const html = await copyFailure(
      copyOutput(over(store, localPolicy()), {
        source: { kind: "url", url: `${base}/html/x` },
        keyPrefix: "t/j/0",
      }),
    );
    expect(html).toMatchObject({ code: "NOT_AN_IMAGE", attempts: 1 });
    expect(html.message).toMatch(/not a PNG, JPEG or WebP/);
    const gif = await copyFailure(
      copyOutput(over(store, localPolicy()), {
        source: { kind: "base64", data: Buffer.from("GIF89a....").toString("base64") },
        keyPrefix: "t/j/1",
      }),
    );
    expect(gif.code).toBe("NOT_AN_IMAGE");
    const truncated = await copyFailure(
      copyOutput(over(store, localPolicy({ retryForMs: 0 })), {
        source: { kind: "url", url: `${base}/truncated/png` },
        keyPrefix: "t/j/2",
      }),
    );
    expect(truncated.code).toBe("NOT_AN_IMAGE");
    expect(truncated.message).toMatch(/ended after 10 bytes/);
    const cut = await copyFailure(
      copyOutput(over(store, localPolicy({ retryForMs: 0 })), {
        source: { kind: "url", url: `${base}/cut/png` },
        keyPrefix: "t/j/4",
      }),
    );
    expect(cut).toMatchObject({ code: "NETWORK" });
    const notBase64 = await copyFailure(
      copyOutput(over(store, localPolicy()), {
        source: { kind: "base64", data: "%%%not base64%%%" },
        keyPrefix: "t/j/3",
      }),
    );
    expect(notBase64.code).toBe("INVALID_BASE64");
    expect(await listKeys(bucket)).toEqual([]);
  });

  it("refuses a redirect to another host", async () => {
    const { store, bucket } = await freshStore();
    const policy = localPolicy({ allowedHosts: ["127.0.0.1", "localhost"] });
    const error = await copyFailure(
      copyOutput(over(store, policy), {
        source: {
          kind: "url",
          url: `${base}/redirect/x?to=${encodeURIComponent(`http://localhost:${port}/img/png`)}`,
        },
        keyPrefix: "t/j/0",
      }),
    );
    expect(error).toMatchObject({ code: "REDIRECT_NOT_ALLOWED", attempts: 1 });
    expect(await listKeys(bucket)).toEqual([]);
  });

  it("refuses hosts that are not allow-listed in local mode", async () => {
    const { store, bucket } = await freshStore();
    const error = await copyFailure(
      copyOutput(over(store, localPolicy()), {
        source: { kind: "url", url: `http://localhost:${port}/img/png` },
        keyPrefix: "t/j/0",
      }),
    );
    expect(error.code).toBe("URL_NOT_ALLOWED");
    expect(await listKeys(bucket)).toEqual([]);
  });
});

describe("copyOutput in aws mode", () => {
  const PUBLIC = "93.184.216.34";
  const policy: DownloadPolicy = {
    mode: "aws",
    allowedHosts: [
      "cdn.test",
      "rebind.test",
      "localhost",
      "169.254.169.254",
      "127.0.0.1",
      "10.0.0.1",
      "::1",
      "::ffff:7f00:1",
    ],
    maxBytes: 10_000,
    timeoutMs: 2_000,
    retryForMs: 1_000,
  };
  const routed: string[] = [];
  /** Routes sockets for the checked public address to the loopback server; anything else is a test failure. */
  const transport: buildConnector.connector = (options, callback) => {
    routed.push(options.hostname);
    if (options.hostname !== PUBLIC) {
      callback(new Error(`test transport asked for ${options.hostname}`), null);
      return;
    }
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => callback(null, socket));
    socket.once("error", (error) => callback(error, null));
  };
  const deps = (store: S3ObjectStore): CopyOutputDeps =>
    over(store, policy, {
      transport,
      resolve: async (host) =>
        host === "localhost"
          ? lookup(host, { all: true }) // the real answer: 127.0.0.1 and/or ::1
          : [{ address: host === "rebind.test" ? "10.0.0.1" : PUBLIC, family: 4 }],
    });

  afterEach(() => {
    routed.length = 0;
  });

  it("copies from an allow-listed https host with a public address", async () => {
    const { store } = await freshStore();
    const copied = await copyOutput(deps(store), {
      source: { kind: "url", url: "https://cdn.test/img/png" },
      keyPrefix: "t/j/0",
    });
    expect(copied).toMatchObject({ key: "t/j/0.png", width: 64, height: 48 });
    expect(routed).toEqual([PUBLIC]);
  });

  it.each([
    ["https://169.254.169.254/latest/meta-data/iam/security-credentials/", "ADDRESS_NOT_ALLOWED"],
    ["https://127.0.0.1/img/png", "ADDRESS_NOT_ALLOWED"],
    ["https://[::1]/img/png", "ADDRESS_NOT_ALLOWED"],
    ["https://[::ffff:127.0.0.1]/img/png", "ADDRESS_NOT_ALLOWED"],
    ["https://10.0.0.1/img/png", "ADDRESS_NOT_ALLOWED"],
    ["https://rebind.test/img/png", "ADDRESS_NOT_ALLOWED"], // resolves to 10.0.0.1
    ["https://localhost/img/png", "ADDRESS_NOT_ALLOWED"], // system DNS: 127.0.0.1 / ::1
    ["file:///etc/passwd", "URL_NOT_ALLOWED"],
    ["http://cdn.test/img/png", "URL_NOT_ALLOWED"],
    [
      `https://cdn.test/redirect/x?to=${encodeURIComponent("https://169.254.169.254/latest/meta-data/")}`,
      "REDIRECT_NOT_ALLOWED",
    ],
    [
      `https://cdn.test/redirect/x?to=${encodeURIComponent("https://127.0.0.1/img/png")}`,
      "REDIRECT_NOT_ALLOWED",
    ],
    [
      `https://cdn.test/redirect/x?to=${encodeURIComponent("https://rebind.test/img/png")}`,
      "REDIRECT_NOT_ALLOWED",
    ],
    ["https://cdn.test/img/large", "TOO_LARGE"],
  ])(
    "refuses %s with %s on the first attempt, before connecting anywhere but the checked address, storing nothing",
    async (url, code) => {
      const { store, bucket } = await freshStore();
      const netConnect = vi.spyOn(net, "connect");
      const tlsConnect = vi.spyOn(tls, "connect");
      const error = await copyFailure(
        copyOutput(deps(store), { source: { kind: "url", url }, keyPrefix: "t/j/0" }),
      );
      expect(error.code).toBe(code);
      expect(error.attempts).toBe(1);
      // Only the transport's own loopback socket to the test server, and only for the allowed public address.
      expect(routed.every((address) => address === PUBLIC)).toBe(true);
      expect(tlsConnect).not.toHaveBeenCalled();
      for (const [options] of netConnect.mock.calls) {
        expect(options).toMatchObject({ host: "127.0.0.1", port });
      }
      if (code !== "REDIRECT_NOT_ALLOWED" && code !== "TOO_LARGE") expect(netConnect).not.toHaveBeenCalled();
      expect(await listKeys(bucket)).toEqual([]);
    },
  );
});
