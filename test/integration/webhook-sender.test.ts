/**
 * SafeWebhookSender against a real loopback receiver (local mode), and its aws-mode refusals, which
 * must happen before any socket is opened.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import net, { type AddressInfo } from "node:net";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { DownloadPolicy } from "../../shared/adapters/http/safe-fetch.ts";
import { SafeWebhookSender } from "../../shared/adapters/http/webhook-sender.ts";

const TIMEOUT_MS = 400;

const policy = (mode: DownloadPolicy["mode"]): DownloadPolicy => ({
  mode,
  allowedHosts: [],
  maxBytes: 1024,
  timeoutMs: TIMEOUT_MS,
  retryForMs: 0,
});

let server: Server;
let base: string;
const received: { path: string; method: string; headers: IncomingHttpHeaders; body: string }[] = [];
const hanging: ServerResponse[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const path = req.url ?? "/";
      received.push({
        path,
        method: req.method ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      switch (path) {
        case "/ok":
          res.writeHead(200, { "content-type": "text/plain" }).end("thanks");
          return;
        case "/accepted":
          res.writeHead(204).end();
          return;
        case "/fail":
          res.writeHead(500).end("oops");
          return;
        case "/gone":
          res.writeHead(410).end();
          return;
        case "/redirect":
          res.writeHead(302, { location: "/ok" }).end();
          return;
        case "/big":
          res.writeHead(200);
          res.end(Buffer.alloc(256 * 1024, 120));
          return;
        case "/hang":
          hanging.push(res); // never answers
          return;
        default:
          res.writeHead(404).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  received.length = 0;
  for (const res of hanging.splice(0)) res.destroy();
  vi.restoreAllMocks();
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const HEADERS = { "content-type": "application/json", "webhook-id": "msg_1" };
const BODY = JSON.stringify({ type: "job.succeeded", data: { id: "job-1" } });

describe("SafeWebhookSender (local mode, loopback receiver)", () => {
  const sender = new SafeWebhookSender(policy("local"));

  it("a 200 answer is status 200, and the receiver got the headers and body", async () => {
    const result = await sender.send(`${base}/ok`, HEADERS, BODY);
    expect(result).toMatchObject({ status: 200, error: null });
    expect(result.durationMs).toBeGreaterThan(0);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ path: "/ok", method: "POST", body: BODY });
    expect(received[0]?.headers).toMatchObject(HEADERS);
  });

  it("any 2xx comes back as it was", async () => {
    expect(await sender.send(`${base}/accepted`, HEADERS, BODY)).toMatchObject({ status: 204, error: null });
  });

  it("a 500 answer is status 500", async () => {
    expect(await sender.send(`${base}/fail`, HEADERS, BODY)).toMatchObject({ status: 500, error: null });
  });

  it("a 410 answer is status 410", async () => {
    expect(await sender.send(`${base}/gone`, HEADERS, BODY)).toMatchObject({ status: 410, error: null });
  });

  it("a hanging receiver is status null with a timeout error, after the policy timeout", async () => {
    // The receiver never answers: only the sender's own timer can end this call.
    const started = performance.now();
    const result = await sender.send(`${base}/hang`, HEADERS, BODY);
    const elapsed = performance.now() - started;
    expect(result.status).toBeNull();
    expect(result.error).toBe(`TIMEOUT: no complete answer within ${TIMEOUT_MS} ms`);
    // Not before the timeout; and the duration it reports is the time the call took.
    expect(result.durationMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(result.durationMs).toBeLessThanOrEqual(elapsed);
  });

  it("redirects are not followed: a 302 is the answer", async () => {
    const result = await sender.send(`${base}/redirect`, HEADERS, BODY);
    expect(result).toMatchObject({ status: 302, error: null });
    expect(received.map((r) => r.path)).toEqual(["/redirect"]);
  });

  it("a large answer is read only up to the cap and still counts by its status", async () => {
    const small = new SafeWebhookSender(policy("local"), 1024);
    expect(await small.send(`${base}/big`, HEADERS, BODY)).toMatchObject({ status: 200, error: null });
  });

  it("a receiver that is not listening is status null with an error", async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const result = await sender.send(`http://127.0.0.1:${port}/`, HEADERS, BODY);
    expect(result.status).toBeNull();
    expect(result.error).toBeTruthy();
  });

  it("keeps the connection to a receiver alive between deliveries", async () => {
    let connections = 0;
    const onConnection = () => {
      connections++;
    };
    server.on("connection", onConnection);
    try {
      const fresh = new SafeWebhookSender(policy("local"));
      for (let i = 0; i < 3; i++) expect((await fresh.send(`${base}/ok`, HEADERS, BODY)).status).toBe(200);
      expect(connections).toBe(1);
    } finally {
      server.off("connection", onConnection);
    }
  });

  it("a malformed URL is status null, not a throw", async () => {
    const result = await sender.send("not a url", HEADERS, BODY);
    expect(result.status).toBeNull();
    expect(result.error).toBeTruthy();
  });
});

describe("SafeWebhookSender (aws mode refusals)", () => {
  const sender = new SafeWebhookSender(policy("aws"));

  function watchSockets() {
    const netConnect = vi.spyOn(net, "connect");
    const netCreate = vi.spyOn(net, "createConnection");
    const tlsConnect = vi.spyOn(tls, "connect");
    return () => netConnect.mock.calls.length + netCreate.mock.calls.length + tlsConnect.mock.calls.length;
  }

  it("(the socket watch sees real connections)", async () => {
    const sockets = watchSockets();
    const fresh = new SafeWebhookSender(policy("local"));
    expect((await fresh.send(`${base}/ok`, HEADERS, BODY)).status).toBe(200);
    expect(sockets()).toBeGreaterThan(0);
  });

  it("refuses an http URL: status null, the error names the scheme", async () => {
    const sockets = watchSockets();
    const result = await sender.send(`${base}/ok`, HEADERS, BODY);
    expect(result.status).toBeNull();
    expect(result.error).toMatch(/scheme/i);
    expect(result.error).toMatch(/http:/);
    expect(received).toEqual([]);
    expect(sockets()).toBe(0);
  });

  it("refuses https://127.0.0.1/ before any connection", async () => {
    const sockets = watchSockets();
    const result = await sender.send("https://127.0.0.1/", HEADERS, BODY);
    expect(result.status).toBeNull();
    expect(result.error).toMatch(/^ADDRESS_NOT_ALLOWED: .*127\.0\.0\.1/);
    expect(sockets()).toBe(0);
  });

  it("refuses https://[::ffff:127.0.0.1]/ (IPv4-mapped loopback) before any connection", async () => {
    const sockets = watchSockets();
    const result = await sender.send("https://[::ffff:127.0.0.1]/", HEADERS, BODY);
    expect(result.status).toBeNull();
    expect(result.error).toMatch(/^ADDRESS_NOT_ALLOWED/);
    expect(sockets()).toBe(0);
  });

  it.each(["https://169.254.169.254/latest/meta-data", "https://10.0.0.1/hook", "https://[fd00:ec2::254]/"])(
    "refuses %s",
    async (url) => {
      const result = await sender.send(url, HEADERS, BODY);
      expect(result).toMatchObject({ status: null, error: expect.stringMatching(/^ADDRESS_NOT_ALLOWED/) });
    },
  );

  it("refuses credentials and non-default ports", async () => {
    expect((await sender.send("https://u:p@example.com/", HEADERS, BODY)).error).toMatch(/credentials/);
    expect((await sender.send("https://example.com:8443/", HEADERS, BODY)).error).toMatch(/port/i);
  });

  it("refuses a name that resolves to loopback at connection time", async () => {
    const tlsConnect = vi.spyOn(tls, "connect");
    const result = await sender.send("https://localhost/hook", HEADERS, BODY);
    expect(result.status).toBeNull();
    expect(result.error).toMatch(/^ADDRESS_NOT_ALLOWED: Host localhost resolves to/);
    expect(tlsConnect).not.toHaveBeenCalled();
  });
});
