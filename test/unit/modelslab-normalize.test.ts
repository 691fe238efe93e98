import { describe, expect, it, vi } from "vitest";
import {
  flattenMessage,
  normalizeCallback,
  normalizeId,
  normalizeProviderBody,
  type UnexpectedResponse,
} from "../../shared/adapters/modelslab/normalize.ts";
import { MAX_PROVIDER_ID_CHARS, MAX_SAMPLES, OUTPUT_LIMITS } from "../../shared/domain/job.ts";
import type { ProviderResult } from "../../shared/ports/provider.ts";

const PNG_B64 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const FETCH = "https://modelslab.com/api/v6/images/fetch/123";
const R2 = "https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/generations/abc-0.png";

type Row = {
  variant: string;
  status: number | null;
  body: unknown;
  /** Fields the result must contain (toMatchObject). */
  expected: Partial<Record<string, unknown>> & { kind: ProviderResult["kind"] };
  /** Substrings the reason must contain (case-insensitive). */
  reasonHas?: string[];
};

// Every response variant shapes/statuses in docs/provider-modelslab.md, one row each.
const rows: Row[] = [
  {
    variant: 'processing, numeric id, eta, fetch_result, future_links, output ""',
    status: 200,
    body: {
      status: "processing",
      tip: "Your image is processing in background",
      eta: 12.5,
      messege: "Try to fetch request after given estimated time",
      fetch_result: FETCH,
      id: 123,
      output: "",
      future_links: [R2],
    },
    expected: { kind: "accepted", providerId: "123", etaSeconds: 12.5, handle: { fetchUrl: FETCH } },
  },
  {
    variant: "processing, string id, output [] and eta as a string",
    status: 200,
    body: { status: "processing", id: "abc-9", eta: "7", output: [] },
    expected: { kind: "accepted", providerId: "abc-9", etaSeconds: 7, handle: { fetchUrl: null } },
  },
  {
    variant: "processing, empty id but fetch_result names it",
    status: 200,
    body: { status: "processing", id: "", fetch_result: "https://modelslab.com/api/v6/images/fetch/456" },
    expected: { kind: "accepted", providerId: "456" },
  },
  {
    variant: "processing, empty id and no fetch_result → indeterminate (never re-post)",
    status: 200,
    body: { status: "processing", id: "", eta: 5 },
    expected: { kind: "indeterminate" },
    reasonHas: ["without an id"],
  },
  {
    variant: "processing with non-URL future_links and fetch_result entries ignored",
    status: 200,
    body: {
      status: "processing",
      id: 5,
      future_links: [R2, 7, "not a url"],
      fetch_result: "javascript:alert(1)",
    },
    expected: { kind: "accepted", providerId: "5", handle: { fetchUrl: null } },
  },
  {
    variant: "success with URL array, generationTime, meta.seed as number",
    status: 200,
    body: {
      status: "success",
      generationTime: 3.21,
      id: 77,
      output: [R2],
      meta: { seed: 42, controlnet_conditioning_scale: "0.5" },
    },
    expected: {
      kind: "done",
      providerId: "77",
      outputs: [{ kind: "url", url: R2 }],
      generationTimeSeconds: 3.21,
      seed: 42,
    },
  },
  {
    variant: "success with meta.seed as a string",
    status: 200,
    body: { status: "success", id: 1, output: [R2], meta: { seed: "1234567" } },
    expected: { kind: "done", seed: 1234567, generationTimeSeconds: null },
  },
  {
    variant: "success with bare base64 outputs (base64: yes)",
    status: 200,
    body: { status: "success", id: 2, output: [PNG_B64] },
    expected: { kind: "done", outputs: [{ kind: "base64", data: PNG_B64 }] },
  },
  {
    variant: "success with data-URI base64 outputs (prefix stripped)",
    status: 200,
    body: { status: "success", id: 3, output: [`data:image/png;base64,${PNG_B64}`] },
    expected: { kind: "done", outputs: [{ kind: "base64", data: PNG_B64 }] },
  },
  {
    variant: 'success with output "" but proxy_links',
    status: 200,
    body: { status: "success", id: 4, output: "", proxy_links: [R2] },
    expected: { kind: "done", outputs: [{ kind: "url", url: R2 }] },
  },
  {
    variant: 'success with output "" → rejected, no outputs',
    status: 200,
    body: { status: "success", id: 5, output: "" },
    expected: { kind: "rejected", retryable: false, providerId: "5" },
    reasonHas: ["no outputs"],
  },
  {
    variant: "success with output missing → rejected, no outputs",
    status: 200,
    body: { status: "success", id: 6 },
    expected: { kind: "rejected", retryable: false },
    reasonHas: ["no outputs"],
  },
  {
    variant: "fetch-style success with nsfw_content_detected and webhook_status",
    status: 200,
    body: { status: "success", id: 8, output: [R2], nsfw_content_detected: false, webhook_status: "sent" },
    expected: { kind: "done", providerId: "8" },
  },
  {
    variant: "error with misspelt messege, HTTP 200",
    status: 200,
    body: { status: "error", messege: "Model not found" },
    expected: { kind: "rejected", retryable: false, httpStatus: 200, providerId: null },
    reasonHas: ["Model not found"],
  },
  {
    variant: "validation error: object-valued message, HTTP 200",
    status: 200,
    body: {
      status: "error",
      id: "",
      message: { prompt: ["is required"], width: ["must be at most 1024", "must be an integer"] },
    },
    expected: { kind: "rejected", retryable: false, providerId: null },
    reasonHas: ["prompt: is required", "width: must be at most 1024; must be an integer"],
  },
  {
    variant: "validation error with HTTP 400",
    status: 400,
    body: { status: "error", message: { init_image: ["The init image field is required."] } },
    expected: { kind: "rejected", retryable: false, httpStatus: 400 },
    reasonHas: ["init_image: The init image field is required."],
  },
  {
    variant: "error with tip, tip_1 and tips carried into the reason",
    status: 200,
    body: {
      status: "error",
      message: "Image could not be fetched",
      tip: "Check the URL",
      tip_1: "Use a public host",
      tips: ["Try jpg"],
    },
    expected: { kind: "rejected", retryable: false },
    reasonHas: ["Image could not be fetched", "Check the URL", "Use a public host", "Try jpg"],
  },
  {
    variant: "HTTP 429 with retry_after",
    status: 429,
    body: { status: "error", message: "Rate limit exceeded, please try again later", retry_after: 30 },
    expected: { kind: "rejected", retryable: true, retryAfterSeconds: 30, httpStatus: 429 },
    reasonHas: ["rate limit"],
  },
  {
    variant: "rate-limit text with HTTP 200 and tips (older routes)",
    status: 200,
    body: {
      status: "error",
      message: "Rate limit exceeded",
      tips: "Upgrade your plan for more queued requests",
    },
    expected: { kind: "rejected", retryable: true, retryAfterSeconds: null, httpStatus: 200 },
    reasonHas: ["Upgrade your plan"],
  },
  {
    variant: "transient error text with HTTP 200 (server busy)",
    status: 200,
    body: { status: "error", message: "Server is busy, please try again" },
    expected: { kind: "rejected", retryable: true },
  },
  {
    variant: "invalid API key with HTTP 200 → not retryable, account problem",
    status: 200,
    body: { status: "error", message: "Invalid Api Key" },
    expected: { kind: "rejected", retryable: false },
    reasonHas: ["account problem"],
  },
  {
    variant: "HTTP 401",
    status: 401,
    body: { status: "error", message: "Invalid Api Key" },
    expected: { kind: "rejected", retryable: false, httpStatus: 401 },
    reasonHas: ["account problem", "API key"],
  },
  {
    variant: "HTTP 402 (credits)",
    status: 402,
    body: { status: "error", message: "Insufficient credits" },
    expected: { kind: "rejected", retryable: false, httpStatus: 402 },
    reasonHas: ["account problem", "payment"],
  },
  {
    variant: "HTTP 403",
    status: 403,
    body: { status: "error", message: "Forbidden" },
    expected: { kind: "rejected", retryable: false, httpStatus: 403 },
    reasonHas: ["account problem"],
  },
  {
    variant: "HTTP 500 JSON error",
    status: 500,
    body: { status: "error", message: "Internal Server Error" },
    expected: { kind: "rejected", retryable: true, httpStatus: 500 },
  },
  {
    variant: "HTTP 503 JSON error",
    status: 503,
    body: { status: "error", message: "Service Unavailable" },
    expected: { kind: "rejected", retryable: true, httpStatus: 503 },
  },
  {
    variant: "processing body with HTTP 500 still proves the job exists → accepted",
    status: 500,
    body: { status: "processing", id: 9 },
    expected: { kind: "accepted", providerId: "9" },
  },
  {
    variant: "status failed (callback / old response)",
    status: 200,
    body: { status: "failed", id: 10, message: "Failed to generate image", output: [] },
    expected: { kind: "rejected", retryable: false, providerId: "10" },
    reasonHas: ["Failed to generate image"],
  },
  {
    variant: 'status in unusual case ("Success")',
    status: 200,
    body: { status: "Success", id: 11, output: [R2] },
    expected: { kind: "done", providerId: "11" },
  },
  {
    variant: "unknown status → not retryable, raw body in the reason",
    status: 200,
    body: { status: "queued_forever", id: 12, secret_field: "zzz" },
    expected: { kind: "rejected", retryable: false, providerId: "12" },
    reasonHas: ["unknown status", "queued_forever", "secret_field"],
  },
  {
    variant: "missing status",
    status: 200,
    body: { id: 13, output: [R2] },
    expected: { kind: "rejected", retryable: false },
    reasonHas: ["no status"],
  },
];

describe("normalizeProviderBody: every response variant", () => {
  it.each(rows)("$variant", ({ body, status, expected, reasonHas }) => {
    const result = normalizeProviderBody(JSON.stringify(body), status);
    expect(result).toMatchObject(expected);
    if (reasonHas) {
      const reason = "reason" in result ? result.reason.toLowerCase() : "";
      for (const part of reasonHas) expect(reason).toContain(part.toLowerCase());
    }
  });
});

describe("normalizeProviderBody: bodies that are not JSON objects", () => {
  it.each([
    {
      variant: "HTML error page with 502",
      text: "<html><body>502 Bad Gateway</body></html>",
      status: 502,
      retryable: true,
    },
    { variant: "HTML page with 404", text: "<html>Not Found</html>", status: 404, retryable: false },
    {
      variant: "HTML page with 200",
      text: "<!doctype html><p>maintenance</p>",
      status: 200,
      retryable: false,
    },
    { variant: "non-JSON with no status (callback)", text: "garbage", status: null, retryable: true },
    { variant: "empty body with 504", text: "", status: 504, retryable: true },
    { variant: "JSON array", text: "[1,2,3]", status: 200, retryable: false },
    { variant: "JSON string", text: '"success"', status: 200, retryable: false },
    { variant: "JSON null", text: "null", status: 200, retryable: false },
    { variant: "JSON array with 503", text: "[]", status: 503, retryable: true },
  ])("$variant → rejected, retryable=$retryable", ({ text, status, retryable }) => {
    const result = normalizeProviderBody(text, status);
    expect(result).toMatchObject({ kind: "rejected", retryable, httpStatus: status });
  });

  it("truncates a huge body in the reason and reports it through onUnexpected", () => {
    const onUnexpected = vi.fn<(event: UnexpectedResponse) => void>();
    const html = `<html>${"x".repeat(10_000)}</html>`;
    const result = normalizeProviderBody(html, 500, { onUnexpected });
    expect(result.kind).toBe("rejected");
    expect("reason" in result && result.reason.length).toBeLessThan(1_100);
    expect(onUnexpected).toHaveBeenCalledWith(
      expect.objectContaining({ problem: "non_json", httpStatus: 500 }),
    );
    expect(onUnexpected.mock.calls[0]?.[0].rawBody.length).toBeLessThan(600);
  });

  it("reports unknown statuses through onUnexpected with the raw body", () => {
    const onUnexpected = vi.fn<(event: UnexpectedResponse) => void>();
    normalizeProviderBody('{"status":"weird"}', 200, { onUnexpected });
    expect(onUnexpected).toHaveBeenCalledWith({
      problem: "unknown_status",
      httpStatus: 200,
      rawBody: '{"status":"weird"}',
    });
  });
});

describe("normalizeProviderBody: bounded outputs", () => {
  const success = (output: unknown[]) =>
    JSON.stringify({ status: "success", id: 77, output, proxy_links: output });

  it.each([MAX_SAMPLES + 1, 15_000])(
    "refuses a success naming %i outputs (more than any request asks for), not retryable",
    (count) => {
      const onUnexpected = vi.fn<(event: UnexpectedResponse) => void>();
      const urls = Array.from({ length: count }, (_, i) => `${R2}?n=${i}`);
      const result = normalizeProviderBody(success(urls), 200, { onUnexpected });
      expect(result).toMatchObject({ kind: "rejected", retryable: false, providerId: "77" });
      expect("reason" in result && result.reason).toContain(`${count} outputs`);
      expect(JSON.stringify(result).length).toBeLessThan(1_500);
      expect(onUnexpected).toHaveBeenCalledWith(expect.objectContaining({ problem: "too_many_outputs" }));
    },
  );

  it("keeps up to MAX_SAMPLES outputs", () => {
    const urls = Array.from({ length: MAX_SAMPLES }, (_, i) => `${R2}?n=${i}`);
    const result = normalizeProviderBody(success(urls), 200);
    expect(result).toMatchObject({ kind: "done" });
    expect(result.kind === "done" && result.outputs).toHaveLength(MAX_SAMPLES);
  });

  it("finds an output over OUTPUT_LIMITS unusable (and says so)", () => {
    const onUnexpected = vi.fn<(event: UnexpectedResponse) => void>();
    const longUrl = `${R2}?pad=${"a".repeat(OUTPUT_LIMITS.urlChars)}`;
    const bigInline = "A".repeat(OUTPUT_LIMITS.inlineChars + 4);
    const result = normalizeProviderBody(success([longUrl, bigInline, R2, PNG_B64]), 200, { onUnexpected });
    expect(result).toMatchObject({
      kind: "done",
      outputs: [
        { kind: "url", url: R2 },
        { kind: "base64", data: PNG_B64 },
      ],
    });
    expect(onUnexpected).toHaveBeenCalledWith(expect.objectContaining({ problem: "unusable_output" }));
    // Nothing usable at all is the "no outputs" refusal.
    expect(normalizeProviderBody(success([longUrl]), 200)).toMatchObject({
      kind: "rejected",
      retryable: false,
    });
  });

  it("keeps no fetch URL longer than OUTPUT_LIMITS.urlChars", () => {
    const fetchUrl = `${FETCH}?pad=${"a".repeat(OUTPUT_LIMITS.urlChars)}`;
    const result = normalizeProviderBody(
      JSON.stringify({ status: "processing", id: 5, fetch_result: fetchUrl }),
      200,
    );
    expect(result).toMatchObject({ kind: "accepted", providerId: "5", handle: { fetchUrl: null } });
  });
});

describe("normalizeProviderBody: options", () => {
  it("uses the caller's known id when a fetch answer carries none", () => {
    expect(
      normalizeProviderBody('{"status":"processing","eta":3}', 200, { knownProviderId: "55" }),
    ).toMatchObject({
      kind: "accepted",
      providerId: "55",
    });
    expect(
      normalizeProviderBody(`{"status":"success","output":["${R2}"]}`, 200, { knownProviderId: "55" }),
    ).toMatchObject({
      kind: "done",
      providerId: "55",
    });
  });

  it("takes Retry-After from the header when the body has no retry_after", () => {
    expect(
      normalizeProviderBody('{"status":"error","message":"slow down"}', 429, { retryAfterHeader: "12" }),
    ).toMatchObject({
      kind: "rejected",
      retryable: true,
      retryAfterSeconds: 12,
    });
  });

  it("redacts a key or a callback token echoed in a raw body", () => {
    const body = JSON.stringify({
      status: "odd",
      meta: {
        key: "sk-secret-123",
        webhook: "https://api.example.com/callbacks/modelslab/j1?token=tok-secret",
      },
    });
    const onUnexpected = vi.fn<(event: UnexpectedResponse) => void>();
    const result = normalizeProviderBody(body, 200, { onUnexpected });
    const reason = "reason" in result ? result.reason : "";
    for (const text of [reason, onUnexpected.mock.calls[0]?.[0].rawBody ?? ""]) {
      expect(text).toContain("[redacted]");
      expect(text).not.toContain("sk-secret-123");
      expect(text).not.toContain("tok-secret");
    }
  });

  it("never throws, whatever the input", () => {
    for (const text of [
      "",
      "{",
      "1e999",
      '{"status":{}}',
      '{"status":"success","output":[null,{},1]}',
      '{"id":{"a":1}}',
    ]) {
      expect(() => normalizeProviderBody(text, 200)).not.toThrow();
    }
  });
});

describe("normalizeCallback", () => {
  it("success callback with numeric track_id and numeric id", () => {
    const { trackId, result } = normalizeCallback({
      status: "success",
      generationTime: 1.5,
      id: 321,
      output: [R2],
      track_id: 987654,
      meta: { seed: "99" },
    });
    expect(trackId).toBe("987654");
    expect(result).toEqual({
      kind: "done",
      providerId: "321",
      outputs: [{ kind: "url", url: R2 }],
      generationTimeSeconds: 1.5,
      seed: 99,
    });
  });

  it("failed callback with string track_id", () => {
    const { trackId, result } = normalizeCallback({
      status: "failed",
      id: "77",
      message: "Out of memory",
      track_id: "01JOB",
    });
    expect(trackId).toBe("01JOB");
    expect(result).toMatchObject({ kind: "rejected", retryable: false, providerId: "77", httpStatus: null });
  });

  it("stale processing callback", () => {
    expect(normalizeCallback({ status: "processing", id: 5, track_id: "j" })).toEqual({
      trackId: "j",
      result: { kind: "accepted", providerId: "5", etaSeconds: null, handle: { fetchUrl: null } },
    });
  });

  it("missing or empty track_id is null", () => {
    expect(normalizeCallback({ status: "success", id: 1, output: [R2] }).trackId).toBeNull();
    expect(normalizeCallback({ status: "success", id: 1, output: [R2], track_id: "" }).trackId).toBeNull();
  });

  it("accepts the raw text of a callback", () => {
    const { trackId, result } = normalizeCallback(
      `{"status":"success","id":1,"output":["${R2}"],"track_id":"t1"}`,
    );
    expect(trackId).toBe("t1");
    expect(result.kind).toBe("done");
  });

  it("non-object bodies are rejected without a track_id", () => {
    for (const body of [null, 42, [1], "not json", undefined]) {
      const { trackId, result } = normalizeCallback(body);
      expect(trackId).toBeNull();
      expect(result.kind).toBe("rejected");
    }
  });
});

describe("helpers", () => {
  it("normalizeId", () => {
    expect(normalizeId(12)).toBe("12");
    expect(normalizeId(" 12 ")).toBe("12");
    expect(normalizeId("")).toBeNull();
    expect(normalizeId(null)).toBeNull();
    expect(normalizeId(Number.NaN)).toBeNull();
    expect(normalizeId({})).toBeNull();
    expect(normalizeId("7".repeat(MAX_PROVIDER_ID_CHARS))).toBe("7".repeat(MAX_PROVIDER_ID_CHARS));
    expect(normalizeId("7".repeat(MAX_PROVIDER_ID_CHARS + 1))).toBeNull();
  });

  it("flattenMessage", () => {
    expect(flattenMessage({ a: ["x", "y"], b: "z", c: { d: ["e"] } })).toBe("a: x; y; b: z; c: d: e");
    expect(flattenMessage(["one", "two"])).toBe("one; two");
    expect(flattenMessage("")).toBeNull();
  });
});

describe("nsfw_content_detected", () => {
  const success = (extra: Record<string, unknown>) =>
    normalizeProviderBody(
      JSON.stringify({ status: "success", id: 5, output: [R2], meta: { seed: 11 }, ...extra }),
      200,
    );

  it("is kept where the provider reports it, read leniently", () => {
    expect(success({ nsfw_content_detected: true })).toMatchObject({
      kind: "done",
      nsfwContentDetected: true,
    });
    expect(success({ nsfw_content_detected: false })).toMatchObject({
      kind: "done",
      nsfwContentDetected: false,
    });
    expect(success({ nsfw_content_detected: "true" })).toMatchObject({ nsfwContentDetected: true });
    expect(success({ nsfw_content_detected: [false, true] })).toMatchObject({ nsfwContentDetected: true });
    expect(success({ nsfw_content_detected: [false] })).toMatchObject({ nsfwContentDetected: false });
  });

  it("is absent when the provider does not say, or says something unreadable", () => {
    for (const extra of [
      {},
      { nsfw_content_detected: "maybe" },
      { nsfw_content_detected: [] },
      { nsfw_content_detected: 1 },
    ]) {
      const result = success(extra);
      expect(result.kind).toBe("done");
      expect(result).not.toHaveProperty("nsfwContentDetected");
    }
  });
});
