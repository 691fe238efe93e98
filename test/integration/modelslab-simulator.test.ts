import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import sharp from "sharp";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  pngSize,
  pngTextChunks,
  SIMULATED_COMMENT,
  type Simulator,
  type SimulatorOptions,
  startSimulator,
} from "../../local/simulator/index.ts";

const KEY = "sim-test-key";
type Json = Record<string, unknown>;

async function waitFor<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 5_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

/** Webhook receiver: records callback bodies in arrival order. Also serves the control image. */
interface Receiver {
  url: string;
  imageUrl: string;
  callbacks: { path: string; body: Json }[];
  server: Server;
}

let receiver: Receiver;
let controlPng: Buffer;
let sim: Simulator | null = null;

async function startReceiver(): Promise<Receiver> {
  const callbacks: { path: string; body: Json }[] = [];
  const server = createServer((req, res) => {
    if (req.method === "GET" && req.url === "/control.png") {
      res.writeHead(200, { "content-type": "image/png" }).end(controlPng);
      return;
    }
    if (req.method === "GET" && req.url === "/not-an-image.png") {
      res.writeHead(200, { "content-type": "image/png" }).end("this is not an image");
      return;
    }
    if (req.method !== "POST") {
      res.writeHead(404).end("not found");
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      try {
        callbacks.push({
          path: req.url ?? "",
          body: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Json,
        });
        res.writeHead(200).end("ok");
      } catch {
        res.writeHead(400).end("bad json");
      }
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, imageUrl: `${url}/control.png`, callbacks, server };
}

async function start(options: Partial<SimulatorOptions> = {}): Promise<Simulator> {
  sim = await startSimulator({ apiKey: KEY, completionDelayMs: 50, ...options });
  return sim;
}

async function post(url: string, body: unknown): Promise<{ status: number; body: Json; text: string }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: Json = {};
  try {
    parsed = JSON.parse(text) as Json;
  } catch {
    // HTML error pages stay in `text`
  }
  return { status: response.status, body: parsed, text };
}

let trackSeq = 0;
function request(extra: Json = {}): Json {
  const trackId = `job-${++trackSeq}`;
  return {
    key: KEY,
    model_id: "sd-1.5",
    controlnet_model: "canny",
    controlnet_type: "canny",
    prompt: "a castle",
    init_image: receiver.imageUrl,
    width: 200,
    height: 120,
    samples: 2,
    webhook: `${receiver.url}/callbacks/modelslab/${trackId}?token=abc`,
    track_id: trackId,
    ...extra,
  };
}

const callbacksFor = (trackId: unknown) => receiver.callbacks.filter((c) => c.body.track_id === trackId);

beforeAll(async () => {
  // A control image with structure, so the edge map is not blank.
  controlPng = await sharp({ create: { width: 96, height: 64, channels: 3, background: "#202020" } })
    .composite([
      {
        input: await sharp({ create: { width: 40, height: 30, channels: 3, background: "#f0f0f0" } })
          .png()
          .toBuffer(),
        left: 20,
        top: 10,
      },
    ])
    .png()
    .toBuffer();
  receiver = await startReceiver();
});

beforeEach(() => {
  receiver.callbacks.length = 0;
});

afterEach(async () => {
  await sim?.stop();
  sim = null;
});

afterAll(async () => {
  await closeServer(receiver.server);
});

describe("ModelsLab simulator", () => {
  it("answers processing, then calls the webhook with track_id echoed and simulated PNGs of the right size", async () => {
    const s = await start();
    const body = request({ seed: 1234 });
    const submitted = await post(`${s.url}/v5/controlnet`, body);
    expect(submitted.status).toBe(200);
    expect(submitted.body).toMatchObject({
      status: "processing",
      id: expect.any(Number),
      eta: expect.any(Number),
      output: "",
      fetch_result: `${s.url}/v6/images/fetch/${submitted.body.id}`,
    });
    expect(submitted.body.future_links).toHaveLength(2);

    const [callback] = await waitFor(
      () => {
        const found = callbacksFor(body.track_id);
        return found.length > 0 ? found : undefined;
      },
      5_000,
      "the webhook",
    );
    expect(callback?.path).toBe(`/callbacks/modelslab/${body.track_id}?token=abc`);
    expect(callback?.body).toMatchObject({
      status: "success",
      id: submitted.body.id,
      track_id: body.track_id,
      generationTime: expect.any(Number),
      meta: expect.objectContaining({ seed: 1234 }),
    });
    const output = callback?.body.output as string[];
    expect(output).toEqual(submitted.body.future_links);
    for (const link of output) {
      const image = Buffer.from(await (await fetch(link)).arrayBuffer());
      expect(pngSize(image)).toEqual({ width: 200, height: 120 });
      expect(pngTextChunks(image).Comment).toBe(SIMULATED_COMMENT);
      const meta = await sharp(image).metadata();
      expect(meta.format).toBe("png");
    }

    // Fetch after completion answers success with the same outputs.
    const fetched = await post(String(submitted.body.fetch_result), { key: KEY });
    expect(fetched.body).toMatchObject({
      status: "success",
      id: submitted.body.id,
      output,
      webhook_status: "sent",
    });
    expect(s.stats()).toMatchObject({ submits: 1, accepted: 1, callbacksSent: 1, fetches: 1, inFlight: 0 });
  });

  it("serves the same route on /v6/images/controlnet, and fetch says processing before completion", async () => {
    const s = await start({ completionDelayMs: 60_000 });
    const submitted = await post(`${s.url}/v6/images/controlnet`, request());
    expect(submitted.body.status).toBe("processing");
    const fetched = await post(`${s.url}/v6/images/fetch/${submitted.body.id}`, { key: KEY });
    expect(fetched.body).toMatchObject({ status: "processing", id: submitted.body.id });
    const future = await fetch(String((submitted.body.future_links as string[])[0]));
    expect(future.status).toBe(404);
    const unknown = await post(`${s.url}/v6/images/fetch/424242`, { key: KEY });
    expect(unknown).toMatchObject({ status: 404, body: { status: "error" } });
  });

  it("outputs are deterministic for the same seed and inputs, and differ across seeds", async () => {
    const s = await start({ immediate: true });
    const download = async (seed: number) => {
      const answer = await post(`${s.url}/v5/controlnet`, request({ seed, samples: 1 }));
      expect(answer.body.status).toBe("success");
      const link = (answer.body.output as string[])[0] ?? "";
      return Buffer.from(await (await fetch(link)).arrayBuffer());
    };
    const a = await download(5);
    const b = await download(5);
    const c = await download(6);
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
  });

  it("base64: yes takes a data-less base64 control image and answers base64 outputs", async () => {
    const s = await start({ immediate: true });
    const answer = await post(
      `${s.url}/v5/controlnet`,
      request({
        base64: "yes",
        init_image: controlPng.toString("base64"),
        width: 64,
        height: 80,
        samples: 1,
      }),
    );
    expect(answer.body.status).toBe("success");
    const [data] = answer.body.output as string[];
    expect(pngSize(Buffer.from(data ?? "", "base64"))).toEqual({ width: 64, height: 80 });
  });

  it("enforces the account concurrency limit with 429 + retry_after, and counts it", async () => {
    const s = await start({ concurrencyLimit: 2, completionDelayMs: 400, retryAfterSeconds: 7 });
    const answers = await Promise.all([1, 2, 3, 4].map(() => post(`${s.url}/v5/controlnet`, request())));
    const accepted = answers.filter((a) => a.status === 200);
    const limited = answers.filter((a) => a.status === 429);
    expect(accepted).toHaveLength(2);
    expect(limited).toHaveLength(2);
    for (const answer of limited) {
      expect(answer.body).toMatchObject({ status: "error", retry_after: 7 });
      expect(String(answer.body.message)).toMatch(/rate limit exceeded/i);
    }
    expect(s.stats()).toMatchObject({ submits: 4, accepted: 2, rejected429: 2, maxInFlight: 2, inFlight: 2 });
    const requestCount = await post(`${s.url}/v6/processing/request_count`, { key: KEY });
    expect(requestCount.body).toMatchObject({ status: "success", request_count: 2 });

    await waitFor(() => (s.stats().inFlight === 0 ? true : undefined), 5_000, "jobs to finish");
    const again = await post(`${s.url}/v5/controlnet`, request());
    expect(again.status).toBe(200);
    expect(s.stats().maxInFlight).toBe(2);
  });

  it("rateLimitBurst answers 429 to the next N submits; legacyErrors answers them with HTTP 200 and tips", async () => {
    const s = await start({ rateLimitBurst: 1 });
    expect((await post(`${s.url}/v5/controlnet`, request())).status).toBe(429);
    expect((await post(`${s.url}/v5/controlnet`, request())).status).toBe(200);
    s.setOptions({ rateLimitBurst: 1, legacyErrors: true });
    const legacy = await post(`${s.url}/v5/controlnet`, request());
    expect(legacy.status).toBe(200);
    expect(legacy.body).toMatchObject({ status: "error", tips: expect.any(String) });
    expect(s.stats().rejected429).toBe(2);
  });

  it("validates like the provider: key, required fields, ranges, known models", async () => {
    const s = await start();
    const badKey = await post(`${s.url}/v5/controlnet`, request({ key: "nope" }));
    expect(badKey).toMatchObject({ status: 401, body: { status: "error", message: "Invalid Api Key" } });

    const invalid = await post(`${s.url}/v5/controlnet`, {
      ...request({ controlnet_model: "canny,warp", width: 2000, samples: 9 }),
      init_image: undefined,
    });
    expect(invalid.status).toBe(400);
    const message = invalid.body.message as Record<string, string[]>;
    expect(Object.keys(message).sort()).toEqual(["controlnet_model", "init_image", "samples", "width"]);
    expect(s.stats()).toMatchObject({ accepted: 0, rejectedInvalid: 1 });
  });

  it("an unreachable control image fails the request like the provider", async () => {
    const s = await start({ imageFetchTimeoutMs: 1_000 });
    const answer = await post(
      `${s.url}/v5/controlnet`,
      request({ init_image: `${receiver.url}/missing.png` }),
    );
    expect(answer.body.status).toBe("error");
    expect(String(answer.body.message)).toMatch(/failed to load the image/i);
    expect(s.stats()).toMatchObject({ accepted: 0, inFlight: 0 });
  });

  it("a control image that cannot be decoded fails the job (callback status failed)", async () => {
    const s = await start();
    const body = request({ init_image: `${receiver.url}/not-an-image.png` });
    const answer = await post(`${s.url}/v5/controlnet`, body);
    expect(answer.body.status).toBe("processing");
    const [callback] = await waitFor(() => {
      const found = callbacksFor(body.track_id);
      return found.length > 0 ? found : undefined;
    });
    expect(callback?.body).toMatchObject({ status: "failed", id: answer.body.id, track_id: body.track_id });
    expect(String(callback?.body.message)).toMatch(/control image/i);
    expect(s.stats()).toMatchObject({ failedJobs: 1, inFlight: 0 });
  });

  it("failJobRate and misspellMessage: failed callback with messege, string ids", async () => {
    const s = await start({ failJobRate: 1, misspellMessage: true, idStyle: "string" });
    const body = request();
    const answer = await post(`${s.url}/v5/controlnet`, body);
    expect(answer.body).toMatchObject({
      status: "processing",
      id: expect.stringMatching(/^sim-\d+$/),
      messege: expect.any(String),
    });
    expect(answer.body.message).toBeUndefined();
    const [callback] = await waitFor(() => {
      const found = callbacksFor(body.track_id);
      return found.length > 0 ? found : undefined;
    });
    expect(callback?.body).toMatchObject({
      status: "failed",
      id: answer.body.id,
      messege: expect.any(String),
    });
  });

  it("dropCallbackRate 1: no webhook, but fetch still reports success", async () => {
    const s = await start({ dropCallbackRate: 1 });
    const body = request();
    const answer = await post(`${s.url}/v5/controlnet`, body);
    await waitFor(() => (s.stats().callbacksDropped === 1 ? true : undefined), 5_000, "the drop");
    const fetched = await post(String(answer.body.fetch_result), { key: KEY });
    expect(fetched.body).toMatchObject({ status: "success", webhook_status: "failed" });
    expect(callbacksFor(body.track_id)).toHaveLength(0);
    expect(s.stats()).toMatchObject({ callbacksSent: 0, callbacksDropped: 1 });
  });

  it("duplicateCallbackRate 1: the same callback arrives twice", async () => {
    const s = await start({ duplicateCallbackRate: 1 });
    const body = request();
    await post(`${s.url}/v5/controlnet`, body);
    const found = await waitFor(() => {
      const list = callbacksFor(body.track_id);
      return list.length >= 2 ? list : undefined;
    });
    expect(found).toHaveLength(2);
    expect(found[0]?.body).toEqual(found[1]?.body);
    // The receiver records a callback before the simulator has read its answer and counted it sent.
    await waitFor(() => s.stats().callbacksSent === 2 || undefined);
    expect(s.stats()).toMatchObject({ callbacksSent: 2, callbacksFailed: 0 });
  });

  it("reorderCallbacks: a stale processing callback arrives after the final one", async () => {
    const s = await start({ reorderCallbacks: true });
    const body = request();
    await post(`${s.url}/v5/controlnet`, body);
    const found = await waitFor(() => {
      const list = callbacksFor(body.track_id);
      return list.length >= 2 ? list : undefined;
    });
    expect(found.map((c) => c.body.status)).toEqual(["success", "processing"]);
  });

  it("earlyCallbackRate 1: the callback is delivered before the submit answer is written", async () => {
    const s = await start({ earlyCallbackRate: 1 });
    const body = request();
    const answer = await post(`${s.url}/v5/controlnet`, body);
    // No waiting: the callback must already be there when the answer arrives.
    const found = callbacksFor(body.track_id);
    expect(found).toHaveLength(1);
    expect(found[0]?.body).toMatchObject({ status: "success", id: answer.body.id });
    expect(answer.body.status).toBe("processing");
  });

  it("errorRate5xx answers 500/503 without accepting anything; the PRNG seed makes it reproducible", async () => {
    const run = async (seed: number) => {
      const s = await start({ errorRate5xx: 0.5, random: seed });
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++)
        statuses.push((await post(`${s.url}/v5/controlnet`, request({ samples: 1 }))).status);
      const stats = s.stats();
      expect(stats.accepted + stats.rejected5xx).toBe(8);
      await s.stop();
      return statuses;
    };
    const first = await run(42);
    const second = await run(42);
    expect(second).toEqual(first);
    expect(first.some((status) => status >= 500)).toBe(true);
  });

  it("slowResponseMs delays the answer but the job is already accepted", async () => {
    const s = await start({ slowResponseMs: 300, completionDelayMs: 10 });
    const body = request();
    const pending = post(`${s.url}/v5/controlnet`, body);
    await waitFor(() => (s.stats().accepted === 1 ? true : undefined), 2_000, "acceptance");
    expect((await pending).body.status).toBe("processing");
    expect(s.stats().acceptedByTrackId[String(body.track_id)]).toBe(1);
  });
});
