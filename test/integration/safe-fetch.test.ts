/**
 * safeDownload against a real loopback HTTP server. aws-mode rules are exercised by resolving test
 * names to a public address and routing the (checked) socket to the loopback server through the
 * `transport` seam; no traffic ever leaves loopback. The default transport's TLS (name sent and
 * verified while the socket goes to the checked address, handshake deadline) is exercised against
 * loopback TLS servers.
 */
import { createServer, type Server } from "node:http";
import net, { type AddressInfo } from "node:net";
import { text } from "node:stream/consumers";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { Connector } from "../../shared/adapters/http/guarded-connection.ts";
import { type DownloadPolicy, safeDownload } from "../../shared/adapters/http/safe-fetch.ts";
import { DownloadRefused } from "../../shared/domain/downloads.ts";

let server: Server;
let port: number;
const hits: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    hits.push(req.url ?? "");
    const url = new URL(req.url ?? "/", "http://x");
    const to = url.searchParams.get("to");
    switch (url.pathname) {
      case "/hello":
        res.writeHead(200, { "content-type": "text/plain" }).end("hello");
        return;
      case "/redirect":
        res.writeHead(302, { location: to ?? "/hello" }).end();
        return;
      case "/loop":
        res.writeHead(302, { location: "/loop" }).end();
        return;
      case "/declared-big":
        res.writeHead(200, { "content-length": "5000" }).end(Buffer.alloc(5000));
        return;
      case "/chunked-big":
        res.writeHead(200);
        for (let i = 0; i < 10; i++) res.write(Buffer.alloc(1000));
        res.end();
        return;
      case "/stall":
        res.writeHead(200);
        res.write("x"); // then nothing
        return;
      case "/status":
        res.writeHead(Number(url.searchParams.get("code") ?? 500)).end();
        return;
      default:
        res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

afterEach(() => vi.restoreAllMocks());

const local = (): DownloadPolicy => ({
  mode: "local",
  allowedHosts: ["127.0.0.1"],
  maxBytes: 2_000,
  timeoutMs: 1_000,
  retryForMs: 0,
});

const readText = (url: string, policy: DownloadPolicy, options = {}) =>
  safeDownload(url, policy, (body) => text(body), options);

async function refusal(promise: Promise<unknown>): Promise<DownloadRefused> {
  const error = await promise.then(
    () => {
      throw new Error("the download was not refused");
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DownloadRefused);
  return error as DownloadRefused;
}

describe("safeDownload in local mode", () => {
  it("downloads from an allow-listed loopback host, through net.connect to the checked address", async () => {
    const netConnect = vi.spyOn(net, "connect");
    const seen: string[] = [];
    const body = await readText(`http://127.0.0.1:${port}/hello`, local(), {
      onConnect: (address: string) => seen.push(address),
    });
    expect(body).toBe("hello");
    expect(seen).toEqual(["127.0.0.1"]);
    expect(netConnect).toHaveBeenCalled(); // the spy sees undici's sockets, so "not called" below means something
  });

  it("follows a redirect on the same host", async () => {
    expect(await readText(`http://127.0.0.1:${port}/redirect?to=/hello`, local())).toBe("hello");
  });

  it("refuses a redirect to another host, even an allow-listed one", async () => {
    const policy = { ...local(), allowedHosts: ["127.0.0.1", "localhost"] };
    const error = await refusal(
      readText(
        `http://127.0.0.1:${port}/redirect?to=${encodeURIComponent(`http://localhost:${port}/hello`)}`,
        policy,
      ),
    );
    expect(error.code).toBe("REDIRECT_NOT_ALLOWED");
    expect(error.message).toMatch(/another host \(localhost\)/);
  });

  it("refuses a redirect to the metadata service without connecting to it", async () => {
    const seen: string[] = [];
    const error = await refusal(
      readText(
        `http://127.0.0.1:${port}/redirect?to=${encodeURIComponent("http://169.254.169.254/latest/meta-data/")}`,
        local(),
        {
          onConnect: (address: string) => seen.push(address),
        },
      ),
    );
    expect(error.code).toBe("REDIRECT_NOT_ALLOWED");
    expect(seen).toEqual(["127.0.0.1"]);
  });

  it("refuses redirect loops", async () => {
    expect((await refusal(readText(`http://127.0.0.1:${port}/loop`, local()))).code).toBe(
      "REDIRECT_NOT_ALLOWED",
    );
  });

  it("refuses a body larger than maxBytes, declared or counted", async () => {
    const declared = await refusal(readText(`http://127.0.0.1:${port}/declared-big`, local()));
    expect(declared).toMatchObject({ code: "TOO_LARGE", retryable: false });
    const counted = await refusal(readText(`http://127.0.0.1:${port}/chunked-big`, local()));
    expect(counted).toMatchObject({ code: "TOO_LARGE", retryable: false });
  });

  it("times out a stalled body as a retryable TIMEOUT", async () => {
    const error = await refusal(readText(`http://127.0.0.1:${port}/stall`, { ...local(), timeoutMs: 300 }));
    // The policy's 300 ms, not the default 1 s, ended it.
    expect(error).toMatchObject({
      code: "TIMEOUT",
      retryable: true,
      message: expect.stringContaining("300 ms"),
    });
  });

  it.each([
    [403, true],
    [404, true],
    [429, true],
    [500, true],
    [503, true],
    [400, false],
    [410, false],
  ])("maps HTTP %i to HTTP_STATUS (retryable: %s)", async (code, retryable) => {
    const error = await refusal(readText(`http://127.0.0.1:${port}/status?code=${code}`, local()));
    expect(error).toMatchObject({ code: "HTTP_STATUS", status: code, retryable });
  });

  it("refuses hosts that are not allow-listed, and loopback names not on the list", async () => {
    const seen: string[] = [];
    const error = await refusal(
      readText(`http://localhost:${port}/hello`, local(), { onConnect: (a: string) => seen.push(a) }),
    );
    expect(error.code).toBe("URL_NOT_ALLOWED");
    expect(seen).toEqual([]);
  });

  it("maps a refused connection to a retryable NETWORK refusal", async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const error = await refusal(readText(`http://127.0.0.1:${closedPort}/hello`, local()));
    expect(error).toMatchObject({ code: "NETWORK", retryable: true });
  });
});

describe("safeDownload in aws mode", () => {
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
    maxBytes: 2_000,
    timeoutMs: 1_000,
    retryForMs: 0,
  };
  const PUBLIC = "93.184.216.34";
  /** cdn.test has a public address; rebind.test answers with the metadata address. */
  const resolve = vi.fn(async (host: string) => [
    { address: host === "rebind.test" ? "169.254.169.254" : PUBLIC, family: 4 },
  ]);
  /** Routes sockets for checked addresses to the loopback server (never to the address itself). */
  const routed: string[] = [];
  const transport: Connector = (options, callback) => {
    routed.push(options.hostname);
    if (options.hostname !== PUBLIC) {
      callback(new Error(`test transport asked for ${options.hostname}`), null);
      return;
    }
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => callback(null, socket));
    socket.once("error", (error) => callback(error, null));
  };
  const options = { resolve, transport };

  afterEach(() => {
    routed.length = 0;
  });

  it("downloads over https from a public address of an allow-listed host", async () => {
    expect(await readText("https://cdn.test/hello", policy, options)).toBe("hello");
    expect(routed).toEqual([PUBLIC]);
  });

  it.each([
    ["https://169.254.169.254/latest/meta-data/", "ADDRESS_NOT_ALLOWED"],
    ["https://127.0.0.1/hello", "ADDRESS_NOT_ALLOWED"],
    ["https://[::1]/hello", "ADDRESS_NOT_ALLOWED"],
    ["https://[::ffff:127.0.0.1]/hello", "ADDRESS_NOT_ALLOWED"],
    ["https://10.0.0.1/hello", "ADDRESS_NOT_ALLOWED"],
    ["https://rebind.test/hello", "ADDRESS_NOT_ALLOWED"],
    ["file:///etc/passwd", "URL_NOT_ALLOWED"],
    [`http://cdn.test/hello`, "URL_NOT_ALLOWED"],
    [`https://cdn.test:${"8443"}/hello`, "URL_NOT_ALLOWED"],
  ])("refuses %s before any connection attempt", async (url, code) => {
    const netConnect = vi.spyOn(net, "connect");
    const tlsConnect = vi.spyOn(tls, "connect");
    const error = await refusal(readText(url, policy, options));
    expect(error.code).toBe(code);
    expect(error.retryable).toBe(false);
    expect(routed).toEqual([]);
    expect(netConnect).not.toHaveBeenCalled();
    expect(tlsConnect).not.toHaveBeenCalled();
  });

  it("refuses localhost by its resolved address (system DNS), before any connection attempt", async () => {
    const netConnect = vi.spyOn(net, "connect");
    const error = await refusal(readText("https://localhost/hello", policy, { transport }));
    expect(error.code).toBe("ADDRESS_NOT_ALLOWED");
    expect(error.message).toMatch(/localhost resolves to/);
    expect(routed).toEqual([]);
    expect(netConnect).not.toHaveBeenCalled();
  });

  it.each([
    "https://169.254.169.254/latest/meta-data/",
    "https://127.0.0.1/hello",
    "https://[::1]/hello",
    "https://rebind.test/hello",
    "http://cdn.test/hello",
    "https://cdn.test:8443/hello",
  ])("refuses a redirect to %s", async (target) => {
    const error = await refusal(
      readText(`https://cdn.test/redirect?to=${encodeURIComponent(target)}`, policy, options),
    );
    expect(error.code).toBe("REDIRECT_NOT_ALLOWED");
    expect(routed).toEqual([PUBLIC]);
    expect(hits.some((hit) => hit.includes("meta-data") && !hit.startsWith("/redirect"))).toBe(false);
  });

  it("refuses an over-size body", async () => {
    expect((await refusal(readText("https://cdn.test/chunked-big", policy, options))).code).toBe("TOO_LARGE");
  });
});

/** A self-signed certificate for cdn.test (test only): trusted by nobody, so a handshake must fail on it. */
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgcZ2tmxmh1DsRjPj6
vNgRXtcw7a8en1PTbzaMCdHjwXihRANCAASroUM5r2H3WJaRACer9900rj46//Pk
02gUbTLbZ3pIHnkb7iERfQmM9nk/Wiz092hojhgqOsnJagkAvVYPHS4G
-----END PRIVATE KEY-----`;
const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIBkjCCATigAwIBAgIUI+RLEFKXokAOCrnrGS8isyMJoT0wCgYIKoZIzj0EAwIw
EzERMA8GA1UEAwwIY2RuLnRlc3QwIBcNMjYxMTI1MDU1NzU2WhgPMjEyNjExMDEw
NTU3NTZaMBMxETAPBgNVBAMMCGNkbi50ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEq6FDOa9h91iWkQAnq/fdNK4+Ov/z5NNoFG0y22d6SB55G+4hEX0JjPZ5
P1os9PdoaI4YKjrJyWoJAL1WDx0uBqNoMGYwHQYDVR0OBBYEFALy/8JHBhnQgEcT
L1wdL9kwscecMB8GA1UdIwQYMBaAFALy/8JHBhnQgEcTL1wdL9kwscecMA8GA1Ud
EwEB/wQFMAMBAf8wEwYDVR0RBAwwCoIIY2RuLnRlc3QwCgYIKoZIzj0EAwIDSAAw
RQIhALWABot9pMn+cO3E2lpqpdti2TXKXqZGnyVyqYICUSQAAiBe1fC6W3aAK/lC
inh0VInZ0SM86CIqzfkRvU41CsNvpQ==
-----END CERTIFICATE-----`;

describe("safeDownload's default transport over TLS", () => {
  /** cdn.test resolves to loopback; local mode lets the download go there (on any port). */
  const policy = (timeoutMs = 1_000): DownloadPolicy => ({
    mode: "local",
    allowedHosts: ["cdn.test"],
    maxBytes: 2_000,
    timeoutMs,
    retryForMs: 0,
  });
  const resolve = async () => [{ address: "127.0.0.1", family: 4 }];

  it("opens TLS to the checked address, sends the host name (SNI) and refuses an untrusted certificate", async () => {
    const names: string[] = [];
    const context = tls.createSecureContext({ key: TEST_KEY, cert: TEST_CERT });
    const tlsServer = tls.createServer({
      key: TEST_KEY,
      cert: TEST_CERT,
      SNICallback: (name, done) => {
        names.push(name);
        done(null, context);
      },
    });
    tlsServer.on("tlsClientError", () => undefined);
    await new Promise<void>((done) => tlsServer.listen(0, "127.0.0.1", done));
    const tlsPort = (tlsServer.address() as AddressInfo).port;
    const tlsConnect = vi.spyOn(tls, "connect");
    const seen: string[] = [];
    try {
      const error = await readText(`https://cdn.test:${tlsPort}/hello`, policy(), {
        resolve,
        onConnect: (address: string) => seen.push(address),
      }).then(
        () => null,
        (e: unknown) => e as { code?: string },
      );
      expect(error?.code).toMatch(/SELF_SIGNED|CERT/);
      expect(seen).toEqual(["127.0.0.1"]);
      expect(names).toEqual(["cdn.test"]);
      expect(tlsConnect).toHaveBeenCalledWith(
        expect.objectContaining({ host: "127.0.0.1", port: tlsPort, servername: "cdn.test" }),
      );
    } finally {
      await new Promise((done) => tlsServer.close(done));
    }
  });

  it("times out a TLS handshake that never completes as a retryable TIMEOUT", async () => {
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => held.push(socket)); // accepts, never answers
    await new Promise<void>((done) => silent.listen(0, "127.0.0.1", done));
    const silentPort = (silent.address() as AddressInfo).port;
    try {
      const error = await refusal(readText(`https://cdn.test:${silentPort}/hello`, policy(300), { resolve }));
      // The server never answers the TLS hello: only the policy's 300 ms timer can end this.
      expect(error).toMatchObject({
        code: "TIMEOUT",
        retryable: true,
        message: expect.stringContaining("300 ms"),
      });
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((done) => silent.close(done));
    }
  });
});
