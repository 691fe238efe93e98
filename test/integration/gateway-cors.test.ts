import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpGateway } from "../../local/http-gateway.ts";
import type { LocalFunction } from "../../local/lambda-runtime.ts";

/** A function that answers 200 and, as a backend may, a CORS header of its own (which must not pass). */
const answering = {
  invoke: async () => ({
    statusCode: 200,
    headers: { "content-type": "application/json", "access-control-allow-origin": "*" },
    body: "{}",
  }),
} as unknown as LocalFunction;

const CONSOLE = "https://console.example.com";

describe("the local gateway's CORS, as API Gateway's with a CorsConfiguration", () => {
  const gateway = new HttpGateway([{ routeKey: "GET /v1/jobs", function: answering }]);
  const plain = new HttpGateway([{ routeKey: "GET /v1/jobs", function: answering }]);
  let base: string;
  let plainBase: string;
  beforeAll(async () => {
    gateway.setCors({
      AllowOrigins: [CONSOLE],
      AllowMethods: ["GET", "POST"],
      AllowHeaders: ["authorization", "content-type"],
      ExposeHeaders: ["location"],
      AllowCredentials: false,
      MaxAge: 3600,
    });
    base = await gateway.listen(0);
    plainBase = await plain.listen(0);
  });
  afterAll(async () => {
    await gateway.close();
    await plain.close();
  });

  const preflight = (url: string, origin: string) =>
    fetch(`${url}/v1/jobs`, {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
      },
    });

  it("answers an allowed origin's preflight itself, with the configured methods, headers and max age", async () => {
    const answer = await preflight(base, CONSOLE);
    expect(answer.status).toBe(204);
    expect(answer.headers.get("access-control-allow-origin")).toBe(CONSOLE);
    expect(answer.headers.get("access-control-allow-methods")).toBe("GET,POST");
    expect(answer.headers.get("access-control-allow-headers")).toBe("authorization,content-type");
    expect(answer.headers.get("access-control-max-age")).toBe("3600");
  });

  it("gives another origin's preflight no CORS headers, so the browser refuses the call", async () => {
    const answer = await preflight(base, "https://evil.example.com");
    expect(answer.headers.get("access-control-allow-origin")).toBeNull();
    expect(answer.headers.get("access-control-allow-methods")).toBeNull();
  });

  it("adds its own headers to an allowed origin's answers and drops the function's", async () => {
    const allowed = await fetch(`${base}/v1/jobs`, { headers: { origin: CONSOLE } });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("access-control-allow-origin")).toBe(CONSOLE);
    expect(allowed.headers.get("access-control-expose-headers")).toBe("location");
    const other = await fetch(`${base}/v1/jobs`, { headers: { origin: "https://evil.example.com" } });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("has no CORS without a configuration: a preflight is just an unrouted OPTIONS", async () => {
    const answer = await preflight(plainBase, CONSOLE);
    expect(answer.status).toBe(404);
    expect(answer.headers.get("access-control-allow-origin")).toBeNull();
  });
});
