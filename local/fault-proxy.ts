/**
 * A small HTTP reverse proxy for fault injection, e.g. in front of fauxqs's S3 endpoint
 * (AWS_ENDPOINT_URL_S3 → proxy → fauxqs): it forwards every request unchanged, except that a fraction
 * of the writes (PUT, POST — PutObject, the multipart calls) is answered with an S3-style 500 or 503
 * error instead of being forwarded. Reads (GET, HEAD: presigned output URLs) always pass. The rate
 * can be changed while it runs; every choice comes from a seeded PRNG.
 */
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createPrng } from "./simulator/prng.ts";

export interface FaultProxyOptions {
  /** Where requests are forwarded, e.g. http://127.0.0.1:4566. */
  target: string;
  /** Fraction (0..1) of PUT/POST requests answered 500/503. */
  writeErrorRate: number;
  seed?: number;
}

export interface FaultProxyStats {
  requests: number;
  writes: number;
  faulted: number;
}

export interface FaultProxy {
  url: string;
  stats(): FaultProxyStats;
  setWriteErrorRate(rate: number): void;
  stop(): Promise<void>;
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  const prng = createPrng(options.seed ?? 7);
  let rate = options.writeErrorRate;
  const stats: FaultProxyStats = { requests: 0, writes: 0, faulted: 0 };

  const fault = (req: IncomingMessage, res: ServerResponse) => {
    // Read the body first so the client is not cut off mid-upload (it sees a clean error answer).
    req.resume();
    req.on("end", () => {
      const unavailable = prng() < 0.5;
      const code = unavailable ? "ServiceUnavailable" : "InternalError";
      const body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
        `<Message>Injected fault</Message><RequestId>fault-proxy</RequestId></Error>`;
      res.writeHead(unavailable ? 503 : 500, {
        "content-type": "application/xml",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
    });
  };

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const upstream = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", (error) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(String(error));
    });
    req.pipe(upstream);
  };

  const server: Server = createServer((req, res) => {
    stats.requests++;
    const write = req.method === "PUT" || req.method === "POST";
    if (write) stats.writes++;
    if (write && rate > 0 && prng() < rate) {
      stats.faulted++;
      fault(req, res);
      return;
    }
    forward(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stats: () => ({ ...stats }),
    setWriteErrorRate(next) {
      rate = next;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
