import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import sharp from "sharp";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SIMULATOR_OPTIONS, type Simulator, startSimulator } from "../../local/simulator/index.ts";
import { ModelsLabProvider } from "../../shared/adapters/modelslab/client.ts";
import type {
  ProviderFetch,
  ProviderHandle,
  ProviderResult,
  ProviderSubmission,
} from "../../shared/ports/provider.ts";

const KEY = "client-test-key";

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

/** A tiny HTTP server that records every request (method, url, body) and answers 200 "{}". */
async function startRecorder(): Promise<{
  server: Server;
  url: string;
  received: { url: string; body: string }[];
}> {
  const received: { url: string; body: string }[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => {
      body += chunk.toString("utf8");
    });
    req.on("end", () => {
      received.push({ url: req.url ?? "", body });
      res
        .writeHead(200, { "content-type": "application/json" })
        .end('{"status":"success","output":["https://x.test/a.png"]}');
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

let sim: Simulator;
let controlImage: string;
let webhookSink: Awaited<ReturnType<typeof startRecorder>>;

const params = (extra: Record<string, unknown> = {}) => ({
  model_id: "sd-1.5",
  controlnet_model: "canny",
  controlnet_type: "canny",
  prompt: "a house",
  init_image: controlImage,
  width: 128,
  height: 128,
  samples: 1,
  ...extra,
});

const provider = (extra: Partial<ConstructorParameters<typeof ModelsLabProvider>[0]> = {}) =>
  new ModelsLabProvider({ baseUrl: sim.url, apiKey: KEY, ...extra });

let trackSeq = 0;
/** One attempt's submission; the job id is what ModelsLab gets as track_id. */
const submission = (extra: Record<string, unknown> = {}): ProviderSubmission => ({
  jobId: `track-${++trackSeq}`,
  tenantId: "tenant-a",
  attempt: 0,
  params: params(extra),
  callbackUrl: `${webhookSink.url}/callbacks/modelslab/job?attempt=0&token=t`,
});

/** A fetch of request `providerId` with the handle ModelsLab gives (`{ fetchUrl }`). */
const lookUp = (providerId: string | null, fetchUrl: string | null): ProviderFetch => ({
  providerId,
  handle: { fetchUrl },
});

/** The accepted answer's fetch URL (its handle) and id, which a simulator answer always has. */
const fetchUrlOf = (accepted: { handle: ProviderHandle }): string | null =>
  typeof accepted.handle.fetchUrl === "string" ? accepted.handle.fetchUrl : null;
const idOf = (accepted: { providerId: string | null }): string => {
  if (accepted.providerId === null) throw new Error("accepted without an id");
  return accepted.providerId;
};

beforeAll(async () => {
  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: "#336699" } })
    .png()
    .toBuffer();
  controlImage = `data:image/png;base64,${png.toString("base64")}`;
  webhookSink = await startRecorder();
  sim = await startSimulator({ apiKey: KEY, completionDelayMs: 100 });
});

afterEach(() => {
  // Back to defaults for the next test (keeps key and port).
  const { apiKey: _apiKey, host: _host, port: _port, ...rest } = DEFAULT_SIMULATOR_OPTIONS;
  sim.setOptions({ ...rest, completionDelayMs: 100 });
});

afterAll(async () => {
  await sim.stop();
  await closeServer(webhookSink.server);
});

describe("ModelsLabProvider against the simulator", () => {
  it("submit answers processing, then fetch reports done with the outputs", async () => {
    const client = provider();
    const accepted = await client.submit(submission({ samples: 2 }));
    expect(accepted).toMatchObject({ kind: "accepted", etaSeconds: expect.any(Number) });
    if (accepted.kind !== "accepted") throw new Error("not accepted");
    expect(accepted.handle).toEqual({ fetchUrl: `${sim.url}/v6/images/fetch/${accepted.providerId}` });

    const early = await client.fetch(lookUp(accepted.providerId, fetchUrlOf(accepted)));
    expect(early.kind === "accepted" || early.kind === "done").toBe(true);

    const done = await waitFor(
      async () => {
        const result = await client.fetch(lookUp(accepted.providerId, fetchUrlOf(accepted)));
        return result.kind === "done" ? result : undefined;
      },
      5_000,
      "fetch to report done",
    );
    expect(done.providerId).toBe(accepted.providerId);
    expect(done.outputs).toEqual([
      { kind: "url", url: expect.any(String) },
      { kind: "url", url: expect.any(String) },
    ]);
    expect(done.seed).toEqual(expect.any(Number));
    const image = await fetch(done.outputs[0]?.kind === "url" ? done.outputs[0].url : "");
    expect(image.headers.get("content-type")).toBe("image/png");
  });

  it("fetch with a string id (idStyle string) is URL-encoded onto the canonical route", async () => {
    sim.setOptions({ idStyle: "string" });
    const client = provider();
    const accepted = await client.submit(submission());
    if (accepted.kind !== "accepted") throw new Error(`not accepted: ${JSON.stringify(accepted)}`);
    expect(accepted.providerId).toMatch(/^sim-\d+$/);
    const done = await waitFor(async () => {
      const result = await client.fetch(lookUp(accepted.providerId, null));
      return result.kind === "done" ? result : undefined;
    });
    expect(done.providerId).toBe(accepted.providerId);
  });

  it("immediate success is done at once, with base64 outputs when asked", async () => {
    sim.setOptions({ immediate: true });
    const result = await provider().submit(submission({ base64: "yes", samples: 2, seed: 7 }));
    expect(result).toMatchObject({ kind: "done", seed: 7 });
    if (result.kind !== "done") throw new Error("not done");
    expect(result.outputs).toHaveLength(2);
    for (const output of result.outputs) {
      expect(output.kind).toBe("base64");
      if (output.kind === "base64")
        expect(Buffer.from(output.data, "base64").subarray(1, 4).toString()).toBe("PNG");
    }
  });

  it("429 with retry_after is rejected, retryable, with the hint", async () => {
    sim.setOptions({ rateLimitBurst: 1, retryAfterSeconds: 30 });
    const result = await provider().submit(submission());
    expect(result).toMatchObject({
      kind: "rejected",
      retryable: true,
      retryAfterSeconds: 30,
      httpStatus: 429,
    });
  });

  it("rate limit on an older route (HTTP 200 + tips) is rejected, retryable", async () => {
    sim.setOptions({ rateLimitBurst: 1, legacyErrors: true });
    const result = await provider({ submitPath: "/v6/images/controlnet" }).submit(submission());
    expect(result).toMatchObject({ kind: "rejected", retryable: true, httpStatus: 200 });
  });

  it("a validation error names the fields and is not retryable", async () => {
    const result = await provider().submit(submission({ controlnet_model: "nonsense", width: 4096 }));
    expect(result).toMatchObject({ kind: "rejected", retryable: false, httpStatus: 400, providerId: null });
    if (result.kind !== "rejected") throw new Error("not rejected");
    expect(result.reason).toContain("controlnet_model");
    expect(result.reason).toContain("width");
  });

  it("a wrong key is an account problem, not retryable", async () => {
    const result = await new ModelsLabProvider({ baseUrl: sim.url, apiKey: "wrong" }).submit(submission());
    expect(result).toMatchObject({ kind: "rejected", retryable: false, httpStatus: 401 });
    if (result.kind === "rejected") expect(result.reason).toMatch(/account problem/i);
  });

  it("a 5xx (HTML or JSON) is rejected, retryable", async () => {
    sim.setOptions({ errorRate5xx: 1 });
    const results: ProviderResult[] = [];
    for (let i = 0; i < 4; i++) results.push(await provider().submit(submission()));
    for (const result of results) {
      expect(result).toMatchObject({ kind: "rejected", retryable: true });
      if (result.kind === "rejected") expect([500, 503]).toContain(result.httpStatus);
    }
  });

  it("sends the key only to the configured host: a foreign fetch_result URL is ignored", async () => {
    const other = await startRecorder();
    try {
      const client = provider();
      const accepted = await client.submit(submission());
      if (accepted.kind !== "accepted") throw new Error("not accepted");
      const fetchesBefore = sim.stats().fetches;
      const foreign = `${other.url}/api/v6/images/fetch/${accepted.providerId}`;
      const result = await client.fetch(lookUp(accepted.providerId, foreign));
      expect(result.kind === "accepted" || result.kind === "done").toBe(true);
      // Same host name, another port: also another origin.
      await client.fetch(
        lookUp(accepted.providerId, `http://127.0.0.1:${Number(new URL(other.url).port)}/x`),
      );
      // Lookalike host with the base URL as userinfo.
      await client.fetch(
        lookUp(
          accepted.providerId,
          `http://127.0.0.1:${sim.port}@${new URL(other.url).host}/api/v6/images/fetch/1`,
        ),
      );
      expect(other.received).toEqual([]);
      expect(sim.stats().fetches).toBe(fetchesBefore + 3);
      expect(client.fetchTarget(idOf(accepted), foreign)).toBe(
        `${sim.url}/v6/images/fetch/${accepted.providerId}`,
      );
    } finally {
      await closeServer(other.server);
    }
  });

  it("a submit that times out after sending is indeterminate (and the provider did accept it)", async () => {
    sim.setOptions({ slowResponseMs: 2_000 });
    const sent = submission();
    const before = sim.stats().acceptedByTrackId[sent.jobId] ?? 0;
    const result = await provider({ submitTimeoutMs: 300 }).submit(sent);
    expect(result.kind).toBe("indeterminate");
    expect(sim.stats().acceptedByTrackId[sent.jobId]).toBe(before + 1);
  });

  it("a fetch that times out is rejected, retryable (fetch is safe to repeat)", async () => {
    const client = provider();
    const accepted = await client.submit(submission());
    if (accepted.kind !== "accepted") throw new Error("not accepted");
    sim.setOptions({ slowResponseMs: 2_000 });
    const result = await provider({ fetchTimeoutMs: 300 }).fetch(
      lookUp(accepted.providerId, fetchUrlOf(accepted)),
    );
    expect(result).toMatchObject({ kind: "rejected", retryable: true, providerId: accepted.providerId });
  });

  it("connection refused is rejected, retryable: nothing was sent", async () => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1");
    await once(probe, "listening");
    const port = (probe.address() as AddressInfo).port;
    await closeServer(probe);
    const client = new ModelsLabProvider({ baseUrl: `http://127.0.0.1:${port}/api`, apiKey: KEY });
    expect(await client.submit(submission())).toMatchObject({
      kind: "rejected",
      retryable: true,
      httpStatus: null,
    });
    expect(await client.fetch(lookUp("1", null))).toMatchObject({
      kind: "rejected",
      retryable: true,
      providerId: "1",
    });
  });

  it("a connection that is not up within connectTimeoutMs (TLS never completes) is rejected, retryable: nothing was sent", async () => {
    const held: import("node:net").Socket[] = [];
    const silent = createNetServer((socket) => held.push(socket)); // accepts TCP, never answers the TLS hello
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    try {
      const port = (silent.address() as AddressInfo).port;
      const client = new ModelsLabProvider({
        baseUrl: `https://127.0.0.1:${port}/api`,
        apiKey: KEY,
        connectTimeoutMs: 200,
        submitTimeoutMs: 5_000,
      });
      const result = await client.submit(submission());
      // The connect timer, not the 5 s submit timer, ended it: "rejected" (nothing sent), naming 200 ms.
      expect(result).toMatchObject({ kind: "rejected", retryable: true, httpStatus: null });
      if (result.kind === "rejected") {
        expect(result.reason).toMatch(/nothing was sent.*took longer than 200 ms.*ERR_CONNECT_TIMEOUT/);
      }
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it("a connection reset mid-answer leaves a submit indeterminate and a fetch retryable, not as timeouts", async () => {
    const resetting = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "1000" });
      res.write('{"status":"proc');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    resetting.listen(0, "127.0.0.1");
    await once(resetting, "listening");
    try {
      const url = `http://127.0.0.1:${(resetting.address() as AddressInfo).port}/api`;
      const client = new ModelsLabProvider({ baseUrl: url, apiKey: KEY });
      const submitted = await client.submit(submission());
      expect(submitted.kind).toBe("indeterminate");
      if (submitted.kind === "indeterminate") expect(submitted.reason).toMatch(/the connection failed/);
      const fetched = await client.fetch(lookUp("7", null));
      expect(fetched).toMatchObject({ kind: "rejected", retryable: true, providerId: "7" });
      if (fetched.kind === "rejected") expect(fetched.reason).toMatch(/the connection failed/);
    } finally {
      await closeServer(resetting);
    }
  });

  it("a fetch without a provider id is refused, not retryable, and sends nothing", async () => {
    const before = sim.stats().fetches;
    expect(await provider().fetch(lookUp(null, `${sim.url}/v6/images/fetch/1`))).toMatchObject({
      kind: "rejected",
      retryable: false,
      providerId: null,
    });
    expect(sim.stats().fetches).toBe(before);
  });

  it("keeps the connection alive between calls", async () => {
    const recorder = await startRecorder();
    let connections = 0;
    recorder.server.on("connection", () => {
      connections++;
    });
    try {
      const client = new ModelsLabProvider({ baseUrl: recorder.url, apiKey: KEY });
      for (let i = 0; i < 3; i++) expect((await client.fetch(lookUp("1", null))).kind).toBe("done");
      expect(recorder.received).toHaveLength(3);
      expect(connections).toBe(1);
    } finally {
      await closeServer(recorder.server);
    }
  });

  it("a response over the size cap is rejected without being read whole", async () => {
    const result = await provider({ maxResponseBytes: 64 }).submit(submission());
    expect(result).toMatchObject({ kind: "rejected", retryable: false });
    if (result.kind === "rejected") expect(result.reason).toMatch(/exceeded the 64-byte limit/);
  });

  it("a chunked response over the size cap (no content-length) is rejected", async () => {
    const big = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      const chunk = "x".repeat(1024);
      for (let i = 0; i < 64; i++) res.write(chunk);
      res.end();
    });
    big.listen(0, "127.0.0.1");
    await once(big, "listening");
    try {
      const url = `http://127.0.0.1:${(big.address() as AddressInfo).port}/api`;
      const result = await new ModelsLabProvider({ baseUrl: url, apiKey: KEY, maxResponseBytes: 4096 }).fetch(
        lookUp("9", null),
      );
      expect(result).toMatchObject({ kind: "rejected", retryable: false, httpStatus: 200 });
    } finally {
      await closeServer(big);
    }
  });
});
