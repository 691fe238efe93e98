import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { describe, expect, it } from "vitest";
import {
  AppError,
  MethodNotAllowedError,
  StaleWriteError,
  ValidationError,
} from "../../shared/domain/errors.ts";
import { errorToHttp } from "../../shared/http/errors.ts";
import { readJsonBody } from "../../shared/http/request.ts";
import { Router } from "../../shared/http/router.ts";

const event = (body: string | undefined, contentType?: string, isBase64Encoded = false) =>
  ({
    body,
    isBase64Encoded,
    headers: contentType ? { "content-type": contentType } : {},
  }) as unknown as APIGatewayProxyEventV2;

describe("readJsonBody", () => {
  it("parses JSON with a charset parameter", () => {
    expect(readJsonBody(event('{"a":1}', "application/json; charset=utf-8"), 100)).toEqual({ a: 1 });
  });
  it.each([
    ["too large", event("x".repeat(101), "application/json"), "PAYLOAD_TOO_LARGE"],
    ["wrong type", event("{}", "text/plain"), "UNSUPPORTED_MEDIA_TYPE"],
    ["no type", event("{}"), "UNSUPPORTED_MEDIA_TYPE"],
    ["empty", event("", "application/json"), "INVALID_JSON"],
    ["not JSON", event("{nope", "application/json"), "INVALID_JSON"],
    [
      "invalid UTF-8",
      event(Buffer.from([0x7b, 0xff, 0x7d]).toString("base64"), "application/json", true),
      "INVALID_ENCODING",
    ],
  ])("rejects a body that is %s", (_, e, code) => {
    expect(() => readJsonBody(e, 100)).toThrow(expect.objectContaining({ code }));
  });
});

describe("Router", () => {
  const router = new Router<string>()
    .add("GET", "/v1/jobs/{id}", "get")
    .add("POST", "/v1/jobs/{id}/cancel", "cancel");
  it("matches and decodes path parameters", () => {
    expect(router.match("GET", "/v1/jobs/a%20b")).toEqual({ handler: "get", params: { id: "a b" } });
  });
  it("answers 405 with the allowed methods, 404 for unknown paths", () => {
    expect(() => router.match("DELETE", "/v1/jobs/1")).toThrow(MethodNotAllowedError);
    expect(() => router.match("GET", "/v2/nothing")).toThrow(
      expect.objectContaining({ code: "ROUTE_NOT_FOUND" }),
    );
  });
});

describe("errorToHttp", () => {
  it("maps each error kind to its status with the stable error body", () => {
    const response = errorToHttp(new ValidationError("bad", [{ path: "width", message: "too big" }]));
    expect(response.statusCode).toBe(400);
    expect(JSON.parse(response.body as string)).toEqual({
      error: { code: "VALIDATION_FAILED", message: "bad", details: [{ path: "width", message: "too big" }] },
    });
    expect(errorToHttp(new MethodNotAllowedError("PUT", "/x", ["GET"])).headers).toMatchObject({
      allow: "GET",
    });
    expect(errorToHttp(new StaleWriteError("raced")).statusCode).toBe(409);
    expect(errorToHttp(new AppError("unavailable", "STORE_UNAVAILABLE", "later")).statusCode).toBe(503);
  });
  it("hides unexpected errors behind a 500 INTERNAL", () => {
    const response = errorToHttp(new TypeError("secret detail"));
    expect(response.statusCode).toBe(500);
    expect(response.body).not.toContain("secret");
  });
});
