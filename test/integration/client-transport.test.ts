import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import sharp from "sharp";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../packages/client/src/cli.ts";
import {
  ApiError,
  type ClientOptions,
  createClient,
  InvalidInputError,
  NetworkError,
  ResponseTooLargeError,
  TimeoutError,
  UnavailableError,
} from "../../packages/client/src/index.ts";

/**
 * The client's transport against a real HTTP server of the test's own, for what the local stack never
 * does: answers that never come, 503s and 429s, oversized and foreign bodies.
 */

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;
let handler: Handler;
let requests: { method: string; url: string; headers: IncomingMessage["headers"]; body: Buffer }[];
let server: Server;
let baseUrl: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      handler(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
beforeEach(() => {
  requests = [];
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const JOB = { id: "01JOB", status: "queued", attempts: [], outputs: [] };
const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) =>
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
const unavailable = {
  error: { code: "STORE_UNAVAILABLE", message: "try later", details: [], details_total: 0 },
};
const client = (options: Partial<ClientOptions> = {}) =>
  createClient({ baseUrl, apiKey: "cnk_test", retry: { defaultDelayMs: 10 }, ...options });

describe("client transport", () => {
  it("gives up a call whose answer never comes with TimeoutError, when its timeout fires", async () => {
    handler = () => undefined;
    const started = Date.now();
    const error = await client({ timeoutMs: 300 })
      .jobs.get("01JOB")
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toMatchObject({ code: "TIMEOUT", timeoutMs: 300 });
    expect(Date.now() - started).toBeLessThan(5_000);
    // A timeout is not retried: the call may have been slow, not lost.
    expect(requests).toHaveLength(1);
  });

  it("times out a body that stops half-way too", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"id":"01JOB",');
    };
    await expect(client({ timeoutMs: 300 }).jobs.get("01JOB")).rejects.toBeInstanceOf(TimeoutError);
  });

  it("retries a read answered 503 after its Retry-After, then answers", async () => {
    let count = 0;
    handler = (_req, res) =>
      count++ === 0 ? json(res, 503, unavailable, { "retry-after": "0" }) : json(res, 200, JOB);
    expect(await client().jobs.get("01JOB")).toMatchObject({ id: "01JOB" });
    expect(requests.map((r) => `${r.method} ${r.url}`)).toEqual(["GET /v1/jobs/01JOB", "GET /v1/jobs/01JOB"]);
  });

  it("retries a bounded number of times, then throws UnavailableError with the API's code", async () => {
    handler = (_req, res) => json(res, 503, unavailable, { "retry-after": "0", "apigw-requestid": "req-1" });
    const error = await client({ retry: { retries: 2, defaultDelayMs: 10 } })
      .jobs.get("01JOB")
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnavailableError);
    expect(error).toMatchObject({
      code: "STORE_UNAVAILABLE",
      status: 503,
      requestId: "req-1",
      retryAfterSeconds: 0,
    });
    expect(requests).toHaveLength(3);
  });

  it("does not wait for a Retry-After longer than the policy allows", async () => {
    handler = (_req, res) => json(res, 429, { message: "Too Many Requests" }, { "retry-after": "3600" });
    const started = Date.now();
    const error = await client()
      .jobs.get("01JOB")
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnavailableError);
    expect(error).toMatchObject({ code: "UNEXPECTED_RESPONSE", status: 429, retryAfterSeconds: 3600 });
    expect(requests).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("never sends a non-idempotent write twice, and sends every submit with an Idempotency-Key so it can", async () => {
    handler = (_req, res) => json(res, 503, unavailable, { "retry-after": "0" });
    await expect(client().notifications.replay("01JOB")).rejects.toBeInstanceOf(UnavailableError);
    expect(requests).toHaveLength(1);

    requests = [];
    let count = 0;
    handler = (_req, res) =>
      count++ === 0 ? json(res, 503, unavailable, { "retry-after": "0" }) : json(res, 202, JOB);
    await client().jobs.create({ model_id: "sd15", controlnet_model: "canny", controlnet_type: "canny" });
    expect(requests).toHaveLength(2);
    const [first, second] = requests.map((r) => r.headers["idempotency-key"]);
    expect(first).toMatch(/^[0-9a-f-]{36}$/);
    expect(second).toBe(first);
  });

  it("sends Prefer: wait and gives the call that much more time", async () => {
    handler = (_req, res) => setTimeout(() => json(res, 200, { ...JOB, status: "succeeded" }), 600);
    const job = await client({ timeoutMs: 300 }).jobs.create(
      { model_id: "sd15", controlnet_model: "canny", controlnet_type: "canny" },
      { wait: 1, idempotencyKey: "k-1" },
    );
    expect(job.status).toBe("succeeded");
    expect(requests[0]?.headers).toMatchObject({ prefer: "wait=1", "idempotency-key": "k-1" });
    for (const wait of [-1, 1.5, Number.NaN]) {
      await expect(
        client().jobs.create(
          { model_id: "sd15", controlnet_model: "canny", controlnet_type: "canny" },
          { wait },
        ),
      ).rejects.toBeInstanceOf(InvalidInputError);
    }
    expect(requests).toHaveLength(1);
  });

  it("refuses an answer larger than its limit, declared or streamed", async () => {
    handler = (_req, res) => json(res, 200, { ...JOB, padding: "x".repeat(10_000) });
    await expect(client({ maxResponseBytes: 1_000 }).jobs.get("01JOB")).rejects.toBeInstanceOf(
      ResponseTooLargeError,
    );
    handler = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      for (let i = 0; i < 20; i++) res.write("x".repeat(1_000));
      res.end();
    };
    await expect(client({ maxResponseBytes: 1_000 }).jobs.get("01JOB")).rejects.toMatchObject({
      code: "RESPONSE_TOO_LARGE",
      limitBytes: 1_000,
    });
  });

  it("turns a foreign error page into ApiError UNEXPECTED_RESPONSE with the gateway's request id", async () => {
    handler = (_req, res) =>
      res.writeHead(502, { "content-type": "text/html", "x-request-id": "abc" }).end("<h1>Bad gateway</h1>");
    const error = await client()
      .jobs.get("01JOB")
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ code: "UNEXPECTED_RESPONSE", status: 502, requestId: "abc", kind: null });
    expect((error as Error).message).toContain("Bad gateway");
  });

  it("refuses a 2xx that is not the API's JSON (a wrong base URL) instead of handing it on as a job", async () => {
    handler = (_req, res) => res.writeHead(200, { "content-type": "text/html" }).end("<html>welcome</html>");
    await expect(client().jobs.get("01JOB")).rejects.toMatchObject({
      code: "UNEXPECTED_RESPONSE",
      status: 200,
    });
  });

  it("reports an unreachable API as NetworkError after its retries", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", () => resolve()));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const error = await createClient({
      baseUrl: `http://127.0.0.1:${port}`,
      apiKey: "k",
      retry: { defaultDelayMs: 1 },
    })
      .jobs.get("01JOB")
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect(error).toMatchObject({ code: "NETWORK_ERROR" });
  });

  it("uploads a Blob with the Content-Type its bytes show, to the presigned URL without the API key", async () => {
    const webp = await sharp({ create: { width: 8, height: 8, channels: 3, background: "#f00" } })
      .webp()
      .toBuffer();
    handler = (req, res) => {
      if (req.url === "/v1/uploads") {
        json(res, 201, {
          upload_id: "u1",
          image: "upload:u1",
          upload_url: `${baseUrl}/bucket/u1?X-Amz-Signature=s`,
          method: "PUT",
          headers: { "content-type": "image/webp" },
          expires_at: new Date().toISOString(),
        });
      } else {
        res.writeHead(200).end();
      }
    };
    const upload = await client().uploads.create(new Blob([webp]));
    expect(upload.image).toBe("upload:u1");
    const [create, put] = requests;
    expect(JSON.parse(create?.body.toString() ?? "")).toEqual({ content_type: "image/webp" });
    expect(put).toMatchObject({ method: "PUT", url: "/bucket/u1?X-Amz-Signature=s" });
    expect(put?.headers["content-type"]).toBe("image/webp");
    expect(put?.headers.authorization).toBeUndefined();
    expect(Buffer.compare(put?.body as Buffer, webp)).toBe(0);
  });

  it("cnctl watch stops waiting on an interrupt: exit 130, the job named, the job left alone", async () => {
    const controller = new AbortController();
    handler = (_req, res) => {
      json(res, 200, JOB);
      if (requests.length === 2) controller.abort(new Error("SIGINT"));
    };
    const stdout: string[] = [];
    const stderr: string[] = [];
    const code = await main(["watch", "01JOB", "--json", "--api-url", baseUrl, "--api-key", "cnk_test"], {
      stdout: { write: (text: string) => stdout.push(text) },
      stderr: { write: (text: string) => stderr.push(text), isTTY: false },
      env: {},
      signal: controller.signal,
    });
    expect(code).toBe(130);
    expect(JSON.parse(stdout.join(""))).toEqual({
      error: { code: "INTERRUPTED", job_id: "01JOB", message: expect.stringContaining("cnctl watch 01JOB") },
    });
    expect(stderr.at(-1)).toBe("cnctl: interrupted; job 01JOB goes on (cnctl watch 01JOB to follow it)\n");
    expect(requests.every((r) => r.method === "GET")).toBe(true);
  });
});
