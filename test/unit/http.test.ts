import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { describe, expect, it } from "vitest";
import {
  AppError,
  MethodNotAllowedError,
  StaleWriteError,
  ValidationError,
} from "../../shared/domain/errors.ts";
import { parseOrThrow } from "../../shared/domain/validation.ts";
import { errorToHttp } from "../../shared/http/errors.ts";
import { readJsonBody } from "../../shared/http/request.ts";
import { Router } from "../../shared/http/router.ts";
import { submitJobBodySchema } from "../../shared/schemas/api.ts";
import { validJobRequest } from "../support/requests.ts";

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
      error: {
        code: "VALIDATION_FAILED",
        message: "bad",
        details: [{ path: "width", message: "too big" }],
        details_total: 1,
      },
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

describe("error answers are bounded", () => {
  /** The 400 a job body gets, as the API would answer it. */
  const answer = (body: unknown) => {
    let thrown: unknown;
    try {
      parseOrThrow(submitJobBodySchema, body, "The job request");
    } catch (error) {
      thrown = error;
    }
    const response = errorToHttp(thrown);
    return {
      response,
      bytes: Buffer.byteLength(response.body as string),
      body: JSON.parse(response.body as string),
    };
  };

  it("answers a body of 200,000 unknown keys with the first 20 and the count of all, in under 16 KB", () => {
    const body = validJobRequest();
    for (let i = 0; i < 200_000; i++) body[`unknown_${i}`] = 0;

    const { response, bytes, body: error } = answer(body);

    expect(response.statusCode).toBe(400);
    expect(bytes).toBeLessThan(16 * 1024);
    expect(error.error.code).toBe("VALIDATION_FAILED");
    expect(error.error.details).toHaveLength(20);
    expect(error.error.details[0]).toEqual({ path: "unknown_0", message: "unknown field" });
    expect(error.error.details_total).toBe(200_000);
    expect(error.error.message).toMatch(/unknown_19 and 199980 more\.$/);
  });

  it("clips long paths and messages, and counts issues of every kind", () => {
    const { bytes, body: error } = answer({
      ...validJobRequest({ width: "wide", prompt: "p".repeat(100_000) }),
      ["k".repeat(200_000)]: 1,
      [`${"\u{1F600}".repeat(150)}`]: 1,
    });

    expect(bytes).toBeLessThan(16 * 1024);
    expect(error.error.details_total).toBe(4);
    for (const detail of error.error.details) {
      expect(detail.path.length).toBeLessThanOrEqual(200);
      expect(detail.message.length).toBeLessThanOrEqual(500);
    }
    expect(error.error.details.map((d: { path: string }) => d.path)).toEqual(
      expect.arrayContaining(["width", "prompt", `${"k".repeat(199)}…`]),
    );
    // A clip never splits a surrogate pair: the emoji key is cut on a whole character.
    const emoji = error.error.details.find((d: { path: string }) => d.path.startsWith("\u{1F600}"));
    expect(emoji.path).toBe(`${"\u{1F600}".repeat(99)}…`);
    expect(error.error.message.length).toBeLessThanOrEqual(1_000);
  });

  it("keeps details_total equal to the details when nothing was left out", () => {
    const { body: error } = answer(validJobRequest({ width: "wide" }));
    expect(error.error.details).toEqual([{ path: "width", message: expect.any(String) }]);
    expect(error.error.details_total).toBe(1);
  });
});
