/**
 * One HTTP/1.1 exchange over `node:http` / `node:https`: the request is sent, the promise resolves with
 * the status and headers as soon as they arrive, and the body is handed over as a stream to read (or
 * destroy) under the caller's own limits.
 *
 * Why not undici: it would be the largest package of each Lambda bundle and much of its import
 * time, for what Node's own HTTP client does at no cost.
 * The adapters need nothing undici alone has: a guarded connection (guarded-connection's
 * `Agent.createConnection`), deadlines (an AbortSignal plus the connect timeout below) and a streamed body.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";

/** The `code` of the error a request fails with when its connection is not up in time: nothing was sent. */
export const CONNECT_TIMEOUT_CODE = "ERR_CONNECT_TIMEOUT";

/** An error carrying `CONNECT_TIMEOUT_CODE`. */
export function connectTimeoutError(ms: number, target: string): Error {
  return Object.assign(new Error(`Connecting to ${target} took longer than ${ms} ms`), {
    code: CONNECT_TIMEOUT_CODE,
  });
}

export interface ExchangeOptions {
  method: "GET" | "POST";
  headers?: Record<string, string>;
  /** Sent whole, with its Content-Length. */
  body?: string;
  /** The agent that pools and opens connections; Node's global agent of the URL's scheme by default. */
  agent?: http.Agent;
  /** Aborts the exchange, body included (the body stream then fails with ECONNRESET "aborted"). */
  signal?: AbortSignal;
  /**
   * When a new connection (TCP, and the TLS handshake for https) is not up within this time, the request
   * fails with `CONNECT_TIMEOUT_CODE` before a byte of it was written. A reused connection is not timed.
   */
  connectTimeoutMs?: number;
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body; read it, or destroy it (a destroyed body closes the connection rather than reuse it). */
  body: IncomingMessage;
}

/** Sends one request; resolves when the answer's head has arrived, rejects when there is no answer. */
export function exchange(url: URL, options: ExchangeOptions): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const requestOptions: http.RequestOptions = { method: options.method };
    if (options.headers) requestOptions.headers = options.headers;
    if (options.agent) requestOptions.agent = options.agent;
    if (options.signal) requestOptions.signal = options.signal;
    let request: http.ClientRequest;
    try {
      request = (url.protocol === "https:" ? https : http).request(url, requestOptions);
    } catch (error) {
      reject(error);
      return;
    }
    // Kept for the request's whole life: the socket's errors reach the request even after the answer's
    // head (the body stream reports them to its reader too); settled promises ignore them.
    request.on("error", reject);
    request.once("response", (response) =>
      resolve({ status: response.statusCode ?? 0, headers: response.headers, body: response }),
    );
    const connectTimeoutMs = options.connectTimeoutMs;
    if (connectTimeoutMs !== undefined) {
      request.once("socket", (socket: Socket) => {
        if (!socket.connecting) return; // kept alive, or opened by a connector that waited for it
        const ready = socket instanceof TLSSocket ? "secureConnect" : "connect";
        const timer = setTimeout(
          () => request.destroy(connectTimeoutError(connectTimeoutMs, url.host)),
          connectTimeoutMs,
        );
        const clear = () => clearTimeout(timer);
        socket.once(ready, clear);
        socket.once("close", clear);
      });
    }
    request.end(options.body);
  });
}
