/**
 * copyOutput's own rules, with the download behind its port: what it retries and for how long, what
 * it refuses at once, what it stores under which key. The HTTP downloader itself is exercised in
 * test/integration/safe-fetch.test.ts and, composed with this use case, copy-output.test.ts there.
 */
import { Readable } from "node:stream";
import sharp from "sharp";
import { beforeAll, describe, expect, it } from "vitest";
import { DownloadRefused } from "../../shared/domain/downloads.ts";
import type { Downloader } from "../../shared/ports/network.ts";
import { CopyFailed, type CopyOutputDeps, copyOutput } from "../../shared/usecases/copy-output.ts";
import { FakeClock, InMemoryObjectStore } from "../support/fakes.ts";

let png: Buffer;
beforeAll(async () => {
  png = await sharp({ create: { width: 8, height: 6, channels: 3, background: "#3366cc" } })
    .png()
    .toBuffer();
});

/** A downloader that answers each call from a script: a refusal to throw, or bytes to hand over. */
class ScriptedDownloader implements Downloader {
  readonly urls: string[] = [];
  constructor(private readonly script: Array<DownloadRefused | Buffer>) {}
  async download<T>(url: string, onBody: (body: Readable) => Promise<T>): Promise<T> {
    this.urls.push(url);
    const next = this.script[Math.min(this.urls.length, this.script.length) - 1];
    if (next instanceof DownloadRefused) throw next;
    return onBody(Readable.from([next as Buffer]));
  }
}

function setup(script: Array<DownloadRefused | Buffer>, retryForMs = 10_000) {
  const clock = new FakeClock();
  const downloader = new ScriptedDownloader(script);
  const store = new InMemoryObjectStore();
  const waits: number[] = [];
  const deps: CopyOutputDeps = {
    store,
    downloader,
    limits: { maxBytes: 1_000_000, retryForMs },
    clock,
    sleep: async (ms) => {
      waits.push(ms);
      clock.advance(ms);
    },
  };
  return { deps, downloader, store, waits };
}

const url = { kind: "url", url: "https://cdn.example.com/out/0.png" } as const;
const notYet = () => new DownloadRefused("HTTP_STATUS", "HTTP 404.", { status: 404, retryable: true });

describe("copyOutput behind the Downloader port", () => {
  it("stores the downloaded image under the prefix and its sniffed extension", async () => {
    const { deps, downloader, store } = setup([png]);
    const copied = await copyOutput(deps, { source: url, keyPrefix: "t/j/0" });
    expect(copied).toMatchObject({ key: "t/j/0.png", content_type: "image/png", width: 8, height: 6 });
    expect(downloader.urls).toEqual([url.url]);
    expect(store.objects.get("t/j/0.png")?.body.equals(png)).toBe(true);
  });

  it("retries a retryable refusal with growing waits, then stores what comes", async () => {
    const { deps, downloader, waits } = setup([notYet(), notYet(), notYet(), png]);
    expect((await copyOutput(deps, { source: url, keyPrefix: "t/j/0" })).key).toBe("t/j/0.png");
    expect(downloader.urls).toHaveLength(4);
    expect(waits).toEqual([200, 400, 800]);
  });

  it("gives up on retryable refusals once limits.retryForMs would pass, storing nothing", async () => {
    const { deps, downloader, store, waits } = setup([notYet()], 1_000);
    const error = await copyOutput(deps, { source: url, keyPrefix: "t/j/0" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CopyFailed);
    expect(error).toMatchObject({ code: "HTTP_STATUS", attempts: 3 });
    expect((error as Error).message).toMatch(/gave up after 3 attempts over 0\.6 s/);
    expect(waits).toEqual([200, 400]);
    expect(downloader.urls).toHaveLength(3);
    expect(store.objects.size).toBe(0);
  });

  it("refuses at once what the downloader refuses for good", async () => {
    const { deps, downloader } = setup([new DownloadRefused("ADDRESS_NOT_ALLOWED", "Address 10.0.0.1 …")]);
    const error = await copyOutput(deps, { source: url, keyPrefix: "t/j/0" }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ADDRESS_NOT_ALLOWED", attempts: 1 });
    expect(downloader.urls).toHaveLength(1);
  });

  it("refuses a body that is not an image, whoever downloaded it", async () => {
    const { deps, store } = setup([Buffer.from("<html>Access denied</html>")]);
    const error = await copyOutput(deps, { source: url, keyPrefix: "t/j/0" }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "NOT_AN_IMAGE", attempts: 1 });
    expect(store.objects.size).toBe(0);
  });

  it("holds base64 outputs to limits.maxBytes without any download", async () => {
    const { deps, downloader } = setup([]);
    deps.limits = { ...deps.limits, maxBytes: png.length - 1 };
    const error = await copyOutput(deps, {
      source: { kind: "base64", data: png.toString("base64") },
      keyPrefix: "t/j/0",
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "TOO_LARGE" });
    expect(downloader.urls).toEqual([]);
  });
});
