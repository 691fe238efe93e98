import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { buildEvent, closeServer, listenOn, readBody, send, writeLambdaResult } from "./http-gateway.ts";
import type { LocalFunction } from "./lambda-runtime.ts";

/** Lambda refuses a synchronous (buffered) invocation's request payload over 6 MB. */
const FUNCTION_URL_MAX_BODY_BYTES = 6 * 1024 * 1024;

/**
 * A local stand-in for a Lambda function URL (auth type NONE, buffered): every method and path goes to
 * one function as a payload-2.0 event with route key `$default` and no path parameters, as Lambda
 * sends it. It listens before the function exists (the template's references to the URL resolve to
 * this address) and is bound once the local stack has built the functions.
 */
export class FunctionUrlServer {
  private server: Server | undefined;
  private target: LocalFunction | undefined;

  bind(fn: LocalFunction): void {
    this.target = fn;
  }

  /** Answers the base URL with a trailing slash, as the `FunctionUrl` attribute does. */
  async listen(port = 0, host = "127.0.0.1"): Promise<string> {
    this.server = await listenOn(port, host, async (req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      const method = (req.method ?? "GET").toUpperCase();
      const body = await readBody(req, FUNCTION_URL_MAX_BODY_BYTES);
      if (body === null) return send(res, 413, { Message: "Request must be smaller than 6291456 bytes" });
      if (!this.target) return send(res, 503, { Message: "Function not bound yet" });
      let result: unknown;
      try {
        result = await this.target.invoke(buildEvent(req, url, method, body, "$default", {}));
      } catch (error) {
        console.error("function URL: function error", error);
        return send(res, 502, { Message: "Internal Server Error" });
      }
      writeLambdaResult(res, result);
    });
    const address = this.server.address() as AddressInfo;
    return `http://${host}:${address.port}/`;
  }

  async close(): Promise<void> {
    if (this.server) await closeServer(this.server);
  }
}
