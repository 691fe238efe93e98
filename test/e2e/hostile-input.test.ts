import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalStack } from "../../local/stack.ts";
import { createSqsClient } from "../../shared/adapters/sqs/queue.ts";
import { callbackToken } from "../../shared/domain/callback-token.ts";
import { listBucket, nestedJson, rawHttp, rawRequest, scanTable } from "../support/hostile.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";
import { waitFor } from "../support/wait.ts";

/**
 * Hostile input, table-driven: every request below must get a clear 4xx and change nothing. After the
 * table runs, the DynamoDB table, the S3 buckets and Object.prototype are compared with a snapshot
 * taken before it. The stack runs with NETWORK_POLICY=aws so the address rules of production apply;
 * every refusal happens before any connection. Accepted jobs (the setup's) carry base64 images only,
 * so the simulator, which fetches image URLs, only ever fetches from the loopback S3.
 */

let stack: LocalStack;
let alice: TestClient;
let bob: TestClient;
/** alice's job, cancelled (terminal) before the snapshot. */
let victim: string;
/** bob's jobs, processing (the provider's callbacks are dropped). */
const bobJobs: string[] = [];
/** bob's own next_cursor, which alice must not be able to use. */
let bobCursor: string;
let secret: string;
/** An image alice uploaded before the snapshot. */
let uploadId: string;

/**
 * A 1x1 PNG sent as base64: stored in the inputs bucket and handed to the simulator as a presigned
 * loopback URL, so no accepted job ever makes the simulator fetch anything off this machine.
 */
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const USED_KEY = "hostile-used-key";
const valid = (overrides: Record<string, unknown> = {}) =>
  validJobRequest({ control_image: PNG, base64: "yes", ...overrides });

type Status = 400 | 401 | 404 | 405 | 409 | 413 | 415;
interface Case {
  name: string;
  request: () => Promise<Response>;
  expectStatus: Status;
  expectCode?: string;
  /** Paths that must be among error.details (the field is named). */
  expectPaths?: string[];
}

// ---------------------------------------------------------------------------------------------
// Request helpers

const send = (
  method: string,
  path: string,
  init: { body?: string | Uint8Array; headers?: Record<string, string>; as?: TestClient | null } = {},
): Promise<Response> => {
  const who = init.as === undefined ? alice : init.as;
  return fetch(`${stack.url}${path}`, {
    method,
    headers: { ...(who && { authorization: `Bearer ${who.apiKey}` }), ...init.headers },
    ...(init.body !== undefined && { body: init.body }),
  });
};
const JSON_TYPE = { "content-type": "application/json" };
const submitText = (text: string | Uint8Array, headers: Record<string, string> = JSON_TYPE) =>
  send("POST", "/v1/jobs", { body: text, headers });
const submit = (body: unknown, headers: Record<string, string> = {}) =>
  submitText(JSON.stringify(body), { ...JSON_TYPE, ...headers });
/** A valid body as JSON text, with `extra` spliced in raw (for keys JSON.stringify cannot write). */
const submitWith = (extra: string, overrides: Record<string, unknown> = {}) =>
  submitText(`${JSON.stringify(valid(overrides)).slice(0, -1)},${extra}}`);
const raw = (
  method: string,
  path: string,
  headers: Array<[string, string]>,
  body: string | Buffer = "",
  auth: TestClient | null = alice,
) =>
  rawHttp(
    stack.url,
    rawRequest(
      method,
      path,
      [...(auth ? [["Authorization", `Bearer ${auth.apiKey}`] as [string, string]] : []), ...headers],
      body,
    ),
  );
/** A ModelsLab callback for the job's first attempt (attempt 0), as its callback URL carries it. */
const callback = (jobId: string, token: string | null, body: string | Uint8Array, extraQuery = "") =>
  fetch(
    `${stack.callbackBaseUrl.replace(/\/$/, "")}/callbacks/modelslab/${encodeURIComponent(jobId)}?attempt=0${token === null ? "" : `&token=${encodeURIComponent(token)}`}${extraQuery}`,
    { method: "POST", headers: JSON_TYPE, body },
  );
/** The token of the job's first ModelsLab attempt. */
const tokenFor = (jobId: string) => callbackToken(secret, "modelslab", jobId, 0);
const success = (trackId: string, output = "https://169.254.169.254/latest/meta-data/iam/") =>
  JSON.stringify({ status: "success", id: 424_242, output: [output], track_id: trackId });
const bytes = (...parts: Array<string | number[]>) =>
  new Uint8Array(
    Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p)))),
  );

// ---------------------------------------------------------------------------------------------
// The table

const cases: Case[] = [];
const add = (...more: Case[]) => cases.push(...more);

// Size and depth
add(
  {
    name: "body over MAX_BODY_BYTES (5 MB by default)",
    request: () => submit(valid({ prompt: "x".repeat(5_500_000) })),
    expectStatus: 413,
    expectCode: "PAYLOAD_TOO_LARGE",
  },
  {
    name: "body over the gateway's 10 MB",
    // Raw, on its own connection: the gateway answers before reading it all and drops the connection.
    request: () =>
      raw(
        "POST",
        "/v1/jobs",
        [["Content-Type", "application/json"]],
        `{"prompt":"${"x".repeat(11 * 1024 * 1024)}"}`,
      ),
    expectStatus: 413,
  },
  {
    name: "10,000-deep nested arrays",
    request: () => submitText(nestedJson(10_000, "array")),
    expectStatus: 400,
    expectCode: "VALIDATION_FAILED",
  },
  {
    name: "10,000-deep nested objects",
    request: () => submitText(nestedJson(10_000, "object")),
    expectStatus: 400,
    expectCode: "VALIDATION_FAILED",
    expectPaths: ["a"],
  },
  {
    name: "100,000-deep nested arrays (under the size limit)",
    request: () => submitText(nestedJson(100_000, "array")),
    expectStatus: 400,
  },
  {
    name: "10,000-deep nesting inside metadata",
    request: () => submitWith(`"metadata":{"k":${nestedJson(10_000, "object")}}`),
    expectStatus: 400,
    expectCode: "VALIDATION_FAILED",
    expectPaths: ["metadata.k"],
  },
  {
    name: "10,000-deep nesting in prompt",
    request: () => submitWith(`"negative_prompt":${nestedJson(10_000, "array")}`),
    expectStatus: 400,
    expectPaths: ["negative_prompt"],
  },
  {
    name: "a huge unknown field name",
    request: () => submitWith(`"${"k".repeat(200_000)}":1`),
    expectStatus: 400,
    expectCode: "VALIDATION_FAILED",
  },
);

// Prototype pollution
for (const key of ["__proto__", "constructor", "prototype"]) {
  add(
    {
      name: `top-level ${key}`,
      request: () => submitWith(`"${key}":{"polluted":"yes","isAdmin":true}`),
      expectStatus: 400,
      expectCode: "VALIDATION_FAILED",
      expectPaths: [key],
    },
    {
      name: `metadata.${key} as a string`,
      request: () => submitWith(`"metadata":{"${key}":"x"}`),
      expectStatus: 400,
      expectCode: "VALIDATION_FAILED",
      expectPaths: [`metadata.${key}`],
    },
    {
      name: `metadata.${key} as an object`,
      request: () => submitWith(`"metadata":{"${key}":{"polluted":"yes"}}`),
      expectStatus: 400,
      expectCode: "VALIDATION_FAILED",
      expectPaths: [`metadata.${key}`],
    },
    {
      name: `${key} inside a field's value`,
      request: () => submitWith(`"scheduler":{"${key}":{"polluted":"yes"}}`),
      expectStatus: 400,
      expectPaths: ["scheduler"],
    },
    {
      name: `${key} in the webhook settings`,
      request: () =>
        send("PUT", "/v1/webhook", { body: `{"url":null,"${key}":{"polluted":"yes"}}`, headers: JSON_TYPE }),
      expectStatus: 400,
      expectPaths: [key],
    },
    {
      name: `${key} as a query parameter`,
      request: () => send("GET", `/v1/jobs?${key}=x&${key}[polluted]=yes`),
      expectStatus: 400,
      expectPaths: [key],
    },
  );
}

// Encoding
add(
  {
    name: "invalid UTF-8 (C3 28) in the body",
    request: () => submitText(bytes('{"model_id":"sd15","prompt":"', [0xc3, 0x28], '"}')),
    expectStatus: 400,
    expectCode: "INVALID_ENCODING",
  },
  {
    name: "overlong UTF-8 for '/' (C0 AF)",
    request: () => submitText(bytes('{"prompt":"..', [0xc0, 0xaf], '.."}')),
    expectStatus: 400,
    expectCode: "INVALID_ENCODING",
  },
  {
    name: "UTF-8-encoded surrogate (ED A0 80)",
    request: () => submitText(bytes('{"prompt":"', [0xed, 0xa0, 0x80], '"}')),
    expectStatus: 400,
    expectCode: "INVALID_ENCODING",
  },
  {
    name: "truncated UTF-8 sequence at the end",
    request: () => submitText(bytes('{"prompt":"a"}', [0xe2, 0x82])),
    expectStatus: 400,
    expectCode: "INVALID_ENCODING",
  },
  {
    name: "invalid UTF-8 in the webhook settings",
    request: () =>
      send("PUT", "/v1/webhook", { body: bytes('{"url":"', [0xff, 0xfe], '"}'), headers: JSON_TYPE }),
    expectStatus: 400,
    expectCode: "INVALID_ENCODING",
  },
  {
    name: "UTF-16 body declared as JSON",
    request: () =>
      submitText(new Uint8Array(Buffer.from(JSON.stringify(valid()), "utf16le")), {
        "content-type": "application/json; charset=utf-16",
      }),
    expectStatus: 400,
    expectCode: "INVALID_JSON",
  },
  {
    name: "NUL bytes around the JSON",
    request: () => submitText(bytes([0], JSON.stringify(valid()), [0])),
    expectStatus: 400,
    expectCode: "INVALID_JSON",
  },
);

// Unicode look-alikes
const CYRILLIC_A = "\u0430";
add(
  ...(
    [
      ["controlnet_model", `c${CYRILLIC_A}nny`, {}],
      ["controlnet_type", `c${CYRILLIC_A}nny`, {}],
      ["model_id", "sd\uff11\uff15", {}],
      ["width", "\uff11\uff12\uff18", {}],
      ["samples", "\uff11", {}],
      ["seed", "\uff14\uff12", {}],
      ["controlnet_conditioning_scale", "\uff10.\uff15", {}],
      ["safety_checker", "\uff59es", {}],
      ["base64", "\uff59es", {}],
      ["scheduler", "UniPCMultistepScheduler\u200b", {}],
      ["provider", "modelsIab", {}],
      ["provider", "modelslab\u200d", {}],
      ["controlnet_model", "canny\u0000", {}],
      ["ip_adapter_id", "ip-adapter_sd\u0031\u0335", {}],
    ] as const
  ).map(
    ([field, value, extra]): Case => ({
      name: `look-alike ${JSON.stringify(value)} in ${field}`,
      request: () => submit(valid({ ...extra, [field]: value })),
      expectStatus: 400,
      expectCode: "VALIDATION_FAILED",
      expectPaths: [field],
    }),
  ),
  {
    name: "Cyrillic letter in a metadata key",
    request: () => submit(valid({ metadata: { [`${"\u0441"}ustomer`]: "7" } })),
    expectStatus: 400,
    expectCode: "VALIDATION_FAILED",
  },
  {
    name: "zero-width space in a metadata key",
    request: () => submit(valid({ metadata: { "plan\u200b": "pro" } })),
    expectStatus: 400,
    expectCode: "VALIDATION_FAILED",
  },
  {
    name: "full-width digits in limit",
    request: () => send("GET", `/v1/jobs?limit=${encodeURIComponent("\uff11\uff10")}`),
    expectStatus: 400,
    expectPaths: ["limit"],
  },
  {
    name: "look-alike status filter",
    request: () => send("GET", `/v1/jobs?status=${encodeURIComponent(`qu\u0435ued`)}`),
    expectStatus: 400,
    expectPaths: ["status"],
  },
);

// Hostile job ids on every route that takes one
const hostileIds: Array<[label: string, id: () => string]> = [
  ["../..", () => "../.."],
  ["../../etc/passwd", () => "../../etc/passwd"],
  ["%2e%2e%2f (double-encoded)", () => "%2e%2e%2f%2e%2e%2f"],
  ["' OR 1=1 --", () => "' OR 1=1 --"],
  ['{"$ne":null}', () => '{"$ne":null}'],
  // Log4Shell-style lookup, spelled with "$" + "{" so no linter mistakes it for a template.
  ["$ {jndi:ldap://127.0.0.1:1/a}", () => `${"$"}{jndi:ldap://127.0.0.1:1/a}`],
  ["NUL byte", () => "\u0000"],
  ["8,000 characters", () => "A".repeat(8_000)],
  ["the victim's id with a zero-width space", () => `${victim}\u200b`],
  ["the victim's id with a zero-width joiner inside", () => `${victim.slice(0, 5)}\u200d${victim.slice(5)}`],
  [
    "the victim's id in full-width letters",
    () => victim.replace(/[0-9A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0)),
  ],
  ["the victim's id, lower case", () => victim.toLowerCase()],
  ["another tenant's job", () => bobJobs[0] as string],
];
for (const [label, id] of hostileIds) {
  for (const [method, suffix] of [
    ["GET", ""],
    ["POST", "/cancel"],
    ["GET", "/notifications"],
    ["POST", "/notifications/replay"],
  ] as const) {
    add({
      name: `${method} /v1/jobs/{${label}}${suffix}`,
      request: () => send(method, `/v1/jobs/${encodeURIComponent(id())}${suffix}`),
      expectStatus: 404,
      expectCode: "JOB_NOT_FOUND",
    });
  }
}
add(
  {
    name: "raw ../ traversal out of /v1/jobs",
    request: () => raw("GET", "/v1/jobs/../../../etc/passwd", []),
    expectStatus: 404,
    expectCode: "ROUTE_NOT_FOUND",
  },
  {
    name: "raw %2e%2e traversal out of /v1/jobs",
    request: () => raw("POST", "/v1/jobs/%2e%2e/%2e%2e/%2e%2e/etc/passwd", []),
    expectStatus: 404,
    expectCode: "ROUTE_NOT_FOUND",
  },
  {
    name: "backslash traversal in a job id",
    request: () => raw("GET", "/v1/jobs/..\\..\\windows\\win.ini", []),
    expectStatus: 404,
  },
);

// Cursors
const b64 = (value: string) => Buffer.from(value, "utf8").toString("base64url");
/** A cursor with some fields changed (a field set to undefined is left out). */
const withCursorFields = (cursor: string, changes: Record<string, unknown>) =>
  b64(JSON.stringify({ ...JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")), ...changes }));
add(
  ...(
    [
      ["garbage", () => "!!!not-a-cursor!!!"],
      ["JSON scalar", () => b64("7")],
      ["a traversal id", () => b64('{"v":1,"id":"../../../etc/passwd"}')],
      ["an injection id", () => b64(`{"v":1,"id":"' OR 1=1 --"}`)],
      ["a __proto__ payload", () => b64('{"__proto__":{"polluted":"yes"},"v":1}')],
      ["another tenant's cursor", () => bobCursor],
      ["another tenant's cursor with its owner removed", () => withCursorFields(bobCursor, { t: undefined })],
      ["another tenant's cursor with an extra field", () => withCursorFields(bobCursor, { x: 1 })],
      [
        "another tenant's cursor, re-encoded as standard base64",
        () => Buffer.from(bobCursor, "base64url").toString("base64"),
      ],
      ["300 characters", () => "A".repeat(300)],
      ["full-width characters", () => "\uff45\uff59\uff2a"],
      ["two cursors", () => `${bobCursor}&cursor=${bobCursor}`],
    ] as const
  ).map(
    ([label, cursor]): Case => ({
      name: `cursor: ${label}`,
      request: () =>
        send(
          "GET",
          `/v1/jobs?limit=1&cursor=${label === "two cursors" ? cursor() : encodeURIComponent(cursor())}`,
        ),
      expectStatus: 400,
      expectCode: "INVALID_CURSOR",
      expectPaths: ["cursor"],
    }),
  ),
  {
    name: "cursor: 7,000 characters",
    request: () => send("GET", `/v1/jobs?cursor=${"A".repeat(7_000)}`),
    expectStatus: 400,
    expectPaths: ["cursor"],
  },
);

// Headers
const validBody = () => JSON.stringify(valid());
add(
  {
    name: "Idempotency-Key of 256 characters",
    request: () => submit(valid(), { "idempotency-key": "k".repeat(256) }),
    expectStatus: 400,
    expectCode: "INVALID_IDEMPOTENCY_KEY",
  },
  {
    name: "empty Idempotency-Key",
    request: () => submit(valid(), { "idempotency-key": "" }),
    expectStatus: 400,
    expectCode: "INVALID_IDEMPOTENCY_KEY",
  },
  {
    name: "Idempotency-Key with a space",
    request: () => submit(valid(), { "idempotency-key": "order 42" }),
    expectStatus: 400,
    expectCode: "INVALID_IDEMPOTENCY_KEY",
  },
  {
    name: "Idempotency-Key with a tab",
    request: () => submit(valid(), { "idempotency-key": "order\t42" }),
    expectStatus: 400,
    expectCode: "INVALID_IDEMPOTENCY_KEY",
  },
  {
    name: "Idempotency-Key with a Latin-1 byte",
    request: () => submit(valid(), { "idempotency-key": "cl\u00e9" }),
    expectStatus: 400,
    expectCode: "INVALID_IDEMPOTENCY_KEY",
  },
  {
    name: "Idempotency-Key as raw UTF-8 (Cyrillic)",
    request: () =>
      raw(
        "POST",
        "/v1/jobs",
        [
          ["Content-Type", "application/json"],
          ["Idempotency-Key", Buffer.from("\u043a\u043b\u044e\u0447", "utf8").toString("latin1")],
        ],
        validBody(),
      ),
    expectStatus: 400,
    expectCode: "INVALID_IDEMPOTENCY_KEY",
  },
  {
    name: "Idempotency-Key in full-width letters",
    request: () =>
      raw(
        "POST",
        "/v1/jobs",
        [
          ["Content-Type", "application/json"],
          ["Idempotency-Key", Buffer.from("\uff4b\uff45\uff59", "utf8").toString("latin1")],
        ],
        validBody(),
      ),
    expectStatus: 400,
    expectCode: "INVALID_IDEMPOTENCY_KEY",
  },
  {
    name: "two Idempotency-Key headers (joined with ', ')",
    request: () =>
      raw(
        "POST",
        "/v1/jobs",
        [
          ["Content-Type", "application/json"],
          ["Idempotency-Key", "first"],
          ["Idempotency-Key", "second"],
        ],
        validBody(),
      ),
    expectStatus: 400,
    expectCode: "INVALID_IDEMPOTENCY_KEY",
  },
  {
    name: "CR injected into Idempotency-Key",
    request: () =>
      raw(
        "POST",
        "/v1/jobs",
        [
          ["Content-Type", "application/json"],
          ["Idempotency-Key", "abc\rX-Injected: yes"],
        ],
        validBody(),
      ),
    expectStatus: 400,
  },
  {
    name: "LF injected into Idempotency-Key",
    request: () =>
      raw(
        "POST",
        "/v1/jobs",
        [
          ["Content-Type", "application/json"],
          ["Idempotency-Key", "abc\nX-Injected: yes"],
        ],
        validBody(),
      ),
    expectStatus: 400,
  },
  {
    name: "CRLF + folded continuation in Idempotency-Key",
    request: () =>
      raw(
        "POST",
        "/v1/jobs",
        [
          ["Content-Type", "application/json"],
          ["Idempotency-Key", "abc\r\n X-Injected: yes"],
        ],
        validBody(),
      ),
    expectStatus: 400,
  },
  {
    name: "CRLF CRLF smuggling a second request through Idempotency-Key",
    request: () =>
      raw(
        "POST",
        "/v1/jobs",
        [
          ["Content-Type", "application/json"],
          ["Idempotency-Key", `abc\r\nContent-Length: 0\r\n\r\nPOST /v1/jobs HTTP/1.1\r\nX: y`],
        ],
        validBody(),
      ),
    expectStatus: 400,
  },
  {
    name: "Content-Length and Transfer-Encoding together",
    request: () =>
      raw(
        "POST",
        "/v1/jobs",
        [
          ["Content-Type", "application/json"],
          ["Transfer-Encoding", "chunked"],
        ],
        validBody(),
      ),
    expectStatus: 400,
  },
  {
    name: "NUL in a header",
    request: () => raw("GET", "/v1/jobs", [["X-Trace", "a\u0000b"]]),
    expectStatus: 400,
  },
  {
    name: "same Idempotency-Key with a changed body",
    // An uploaded image, so that staging writes nothing (see the known issue below).
    request: () =>
      submit(validJobRequest({ control_image: `upload:${uploadId}`, seed: 2 }), {
        "idempotency-key": USED_KEY,
      }),
    expectStatus: 409,
    expectCode: "IDEMPOTENCY_KEY_REUSED",
  },
);

// Content types and methods
for (const type of [
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/jsonp",
  "application/xml",
  "application/json-seq",
  "json",
]) {
  add({
    name: `POST /v1/jobs as ${type}`,
    request: () => submitText(validBody(), { "content-type": type }),
    expectStatus: 415,
    expectCode: "UNSUPPORTED_MEDIA_TYPE",
  });
}
add(
  {
    name: "POST /v1/jobs without a content type",
    request: () => submitText(new TextEncoder().encode(validBody()), {}),
    expectStatus: 415,
    expectCode: "UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "PUT /v1/webhook as text/plain",
    request: () =>
      send("PUT", "/v1/webhook", { body: '{"url":null}', headers: { "content-type": "text/plain" } }),
    expectStatus: 415,
    expectCode: "UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "POST /v1/uploads as text/plain",
    request: () =>
      send("POST", "/v1/uploads", {
        body: '{"content_type":"image/png"}',
        headers: { "content-type": "text/plain" },
      }),
    expectStatus: 415,
    expectCode: "UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "POST /v1/uploads for an SVG",
    request: () =>
      send("POST", "/v1/uploads", { body: '{"content_type":"image/svg+xml"}', headers: JSON_TYPE }),
    expectStatus: 400,
    expectPaths: ["content_type"],
  },
  {
    name: "DELETE /v1/jobs",
    request: () => send("DELETE", "/v1/jobs"),
    expectStatus: 405,
    expectCode: "METHOD_NOT_ALLOWED",
  },
  {
    name: "PATCH /v1/jobs/{id}",
    request: () =>
      send("PATCH", `/v1/jobs/${victim}`, { body: '{"status":"succeeded"}', headers: JSON_TYPE }),
    expectStatus: 405,
    expectCode: "METHOD_NOT_ALLOWED",
  },
  {
    name: "PUT /v1/jobs/{id}",
    request: () => send("PUT", `/v1/jobs/${victim}`, { body: validBody(), headers: JSON_TYPE }),
    expectStatus: 405,
    expectCode: "METHOD_NOT_ALLOWED",
  },
  {
    name: "GET /v1/jobs/{id}/cancel",
    request: () => send("GET", `/v1/jobs/${victim}/cancel`),
    expectStatus: 405,
    expectCode: "METHOD_NOT_ALLOWED",
  },
  {
    name: "cancel a terminal job",
    request: () => send("POST", `/v1/jobs/${victim}/cancel`),
    expectStatus: 409,
    expectCode: "JOB_ALREADY_TERMINAL",
  },
);

// Authorization
for (const [label, authorization] of [
  ["garbage bearer key", "Bearer cnk_this-key-does-not-exist"],
  ["10 KB bearer key", `Bearer ${"x".repeat(10_000)}`],
  ["Basic credentials", "Basic YWxpY2U6cGFzc3dvcmQ="],
  ["injection in the key", "Bearer ' OR 1=1 --"],
  ["no scheme, garbage", "garbage"],
  ["empty bearer", "Bearer "],
] as const) {
  add({
    name: `Authorization: ${label}`,
    request: () =>
      send("POST", "/v1/jobs", { as: null, body: validBody(), headers: { ...JSON_TYPE, authorization } }),
    expectStatus: 401,
  });
}
add(
  {
    name: "no Authorization header",
    request: () => send("POST", "/v1/jobs", { as: null, body: validBody(), headers: JSON_TYPE }),
    expectStatus: 401,
  },
  {
    name: "no Authorization on cancel",
    request: () => send("POST", `/v1/jobs/${bobJobs[0]}/cancel`, { as: null }),
    expectStatus: 401,
  },
  {
    name: "Authorization: another tenant's key with a zero-width space",
    request: () =>
      raw(
        "POST",
        `/v1/jobs/${bobJobs[0]}/cancel`,
        [["Authorization", `Bearer ${bob.apiKey}${Buffer.from("\u200b", "utf8").toString("latin1")}`]],
        "",
        null,
      ),
    expectStatus: 401,
  },
);

// Forged callbacks
add(
  {
    name: "callback without a token",
    request: () => callback(bobJobs[0] as string, null, success(bobJobs[0] as string)),
    expectStatus: 401,
    expectCode: "UNAUTHORIZED",
  },
  {
    name: "callback with a wrong token",
    request: () => callback(bobJobs[0] as string, "not-the-token", success(bobJobs[0] as string)),
    expectStatus: 401,
  },
  {
    name: "callback with another job's token",
    request: () => callback(bobJobs[0] as string, tokenFor(victim), success(bobJobs[0] as string)),
    expectStatus: 401,
  },
  {
    name: "callback with two tokens",
    request: () =>
      callback(
        bobJobs[0] as string,
        "x",
        success(bobJobs[0] as string),
        `&token=${tokenFor(bobJobs[0] as string)}`,
      ),
    expectStatus: 401,
  },
  {
    name: "callback naming another attempt than its token's",
    request: () =>
      fetch(
        `${stack.callbackBaseUrl.replace(/\/$/, "")}/callbacks/modelslab/${bobJobs[0]}?attempt=1&token=${tokenFor(bobJobs[0] as string)}`,
        { method: "POST", headers: JSON_TYPE, body: success(bobJobs[0] as string) },
      ),
    expectStatus: 401,
  },
  {
    name: "callback for a provider that does not call back",
    request: () =>
      fetch(
        `${stack.callbackBaseUrl.replace(/\/$/, "")}/callbacks/self-hosted/${bobJobs[0]}?attempt=0&token=${callbackToken(secret, "self-hosted", bobJobs[0] as string, 0)}`,
        { method: "POST", headers: JSON_TYPE, body: success(bobJobs[0] as string) },
      ),
    expectStatus: 404,
    expectCode: "ROUTE_NOT_FOUND",
  },
  {
    name: "callback with an empty token",
    request: () => callback(bobJobs[0] as string, "", success(bobJobs[0] as string)),
    expectStatus: 401,
  },
  {
    name: "callback for a traversal id",
    request: () => callback("../../v1/jobs", tokenFor(bobJobs[0] as string), success("../../v1/jobs")),
    expectStatus: 401,
  },
  {
    // The callback URL is a function URL in AWS: every method and path reaches the function.
    name: "GET on a callback URL",
    request: () =>
      fetch(
        `${stack.callbackBaseUrl.replace(/\/$/, "")}/callbacks/modelslab/${bobJobs[0]}?attempt=0&token=${tokenFor(bobJobs[0] as string)}`,
      ),
    expectStatus: 405,
  },
  {
    name: "callback to a path beside the callback route",
    request: () =>
      fetch(
        `${stack.callbackBaseUrl.replace(/\/$/, "")}/callbacks/modelslab/${bobJobs[0]}/extra?attempt=0&token=${tokenFor(bobJobs[0] as string)}`,
        { method: "POST", headers: JSON_TYPE, body: success(bobJobs[0] as string) },
      ),
    expectStatus: 404,
  },
  {
    name: "callback whose track_id names another job",
    request: () =>
      callback(bobJobs[0] as string, tokenFor(bobJobs[0] as string), success(bobJobs[1] as string)),
    expectStatus: 400,
    expectCode: "TRACK_ID_MISMATCH",
  },
  {
    name: "callback without track_id",
    request: () =>
      callback(bobJobs[0] as string, tokenFor(bobJobs[0] as string), '{"status":"success","output":[]}'),
    expectStatus: 400,
    expectCode: "TRACK_ID_MISMATCH",
  },
  {
    name: "callback with a 10,000-deep body",
    request: () =>
      callback(bobJobs[0] as string, tokenFor(bobJobs[0] as string), nestedJson(10_000, "object")),
    expectStatus: 400,
  },
  {
    name: "callback with __proto__ in the body",
    request: () =>
      callback(
        bobJobs[0] as string,
        tokenFor(bobJobs[0] as string),
        `{"__proto__":{"track_id":"${bobJobs[0]}","polluted":"yes"},"status":"success"}`,
      ),
    expectStatus: 400,
    expectCode: "TRACK_ID_MISMATCH",
  },
  {
    name: "callback with invalid UTF-8",
    request: () =>
      callback(bobJobs[0] as string, tokenFor(bobJobs[0] as string), bytes('{"a":"', [0xff], '"}')),
    expectStatus: 400,
    expectCode: "INVALID_ENCODING",
  },
  {
    name: "callback that is not JSON",
    request: () => callback(bobJobs[0] as string, tokenFor(bobJobs[0] as string), "<html>"),
    expectStatus: 400,
    expectCode: "INVALID_JSON",
  },
  {
    name: "callback over CALLBACK_MAX_BODY_BYTES",
    request: () =>
      callback(bobJobs[0] as string, tokenFor(bobJobs[0] as string), `{"pad":"${"x".repeat(1_100_000)}"}`),
    expectStatus: 413,
    expectCode: "PAYLOAD_TOO_LARGE",
  },
);

// SSRF targets in every URL field. None of these may be connected to; all are refused at submit.
const SSRF_TARGETS = [
  "file:///etc/passwd",
  "gopher://127.0.0.1:6379/_FLUSHALL",
  "ftp://127.0.0.1/pub/x.png",
  "dict://127.0.0.1:11211/stats",
  "javascript:alert(1)",
  "http://user:pass@93.184.215.14/x.png",
  "https://user:pass@93.184.215.14/x.png",
  "http://93.184.215.14/x.png",
  "https://93.184.215.14:6379/x.png",
  "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
  "https://[fd00:ec2::254]/latest/meta-data/",
  "https://100.100.100.200/latest/meta-data/",
  "https://127.0.0.1/",
  "https://127.1/",
  "https://0x7f000001/",
  "https://2130706433/",
  "https://[::1]/",
  "https://[::ffff:127.0.0.1]/",
  "https://[::ffff:a9fe:a9fe]/",
  "https://[64:ff9b::a9fe:a9fe]/",
  "https://0.0.0.0/",
  "https://10.0.0.1/",
  "https://172.16.0.1/",
  "https://192.168.1.1/",
  "https://localhost/",
  // Ambiguous: parsers disagree on the host (refused before any address rule looks at it).
  "https://cdn.example.com\\@169.254.169.254/latest/meta-data/",
  "https://:@169.254.169.254/latest/meta-data/",
  "https://cdn.exa\tmple.com/x.png",
  "https:///169.254.169.254/latest/meta-data/",
  "https://169.254.169.254%2e/latest/meta-data/",
];
const SSRF_FIELDS: Array<[field: string, body: (url: string) => Record<string, unknown>]> = [
  ["webhook", (url) => valid({ webhook: url })],
  ["init_image", (url) => valid({ init_image: url })],
  ["control_image", (url) => valid({ control_image: url })],
  ["mask_image", (url) => valid({ mask_image: url })],
  ["ip_adapter_image", (url) => valid({ ip_adapter_id: "ip-adapter_sd15", ip_adapter_image: url })],
];
for (const target of SSRF_TARGETS) {
  for (const [field, body] of SSRF_FIELDS) {
    add({
      name: `${field} = ${target}`,
      request: () => submit(body(target)),
      expectStatus: 400,
      expectCode: "VALIDATION_FAILED",
      expectPaths: [field],
    });
  }
  add({
    name: `PUT /v1/webhook url = ${target}`,
    request: () => send("PUT", "/v1/webhook", { body: JSON.stringify({ url: target }), headers: JSON_TYPE }),
    expectStatus: 400,
    expectCode: "VALIDATION_FAILED",
    expectPaths: ["url"],
  });
}
add(
  {
    name: "control_image = upload ref that does not exist",
    request: () => submit(valid({ control_image: "upload:00000000-0000-4000-8000-000000000000" })),
    expectStatus: 400,
    expectPaths: ["control_image"],
  },
  {
    name: "control_image = upload ref with traversal",
    request: () => submit(valid({ control_image: "upload:../../tenant-b/secret" })),
    expectStatus: 400,
    expectPaths: ["control_image"],
  },
);

// ---------------------------------------------------------------------------------------------
// Setup, the table, and the after-check

const sqs = createSqsClient();
const queuesIdle = async () => {
  for (const queue of Object.values(stack.topology.queues)) {
    const { Attributes = {} } = await sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queue.url,
        AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
      }),
    );
    if (
      Attributes.ApproximateNumberOfMessages !== "0" ||
      Attributes.ApproximateNumberOfMessagesNotVisible !== "0"
    )
      return false;
  }
  return true;
};
const getJob = async (client: TestClient, id: string) => (await client.request("GET", `/v1/jobs/${id}`)).body;

interface Snapshot {
  items: Record<string, unknown>[];
  objects: Record<string, string[]>;
  prototypes: string[][];
}
const snapshot = async (): Promise<Snapshot> => {
  const objects: Record<string, string[]> = {};
  for (const bucket of Object.values(stack.topology.buckets)) {
    objects[bucket.name] = await listBucket(stack.endpoints.sqs, bucket.name);
  }
  return {
    items: await scanTable(stack.endpoints.dynamodb, process.env.TABLE_NAME as string),
    objects,
    prototypes: [Object.prototype, Array.prototype, Function.prototype, String.prototype].map((p) =>
      Reflect.ownKeys(p).map(String).sort(),
    ),
  };
};
let before: Snapshot;
const knownOrphans: string[] = [];

beforeAll(async () => {
  const started = await startTestStack(["mallory", "bystander"], {
    environment: { NETWORK_POLICY: "aws" },
    // Callbacks never come on their own: bob's jobs stay processing, nothing moves during the table.
    provider: { kind: "simulator", options: { dropCallbackRate: 1 } },
  });
  stack = started.stack;
  [alice, bob] = started.clients as [TestClient, TestClient];
  secret = process.env.CALLBACK_SECRET as string;

  const first = await alice.request("POST", "/v1/jobs", {
    body: valid(),
    headers: { "idempotency-key": USED_KEY },
  });
  expect(first.status).toBe(202);
  victim = first.body.id;
  expect((await alice.request("POST", `/v1/jobs/${victim}/cancel`)).status).toBe(200);
  for (const seed of [1, 2]) {
    const submitted = await bob.request("POST", "/v1/jobs", { body: valid({ seed }) });
    expect(submitted.status).toBe(202);
    bobJobs.push(submitted.body.id);
  }
  const upload = await alice.request("POST", "/v1/uploads", { body: { content_type: "image/png" } });
  expect(upload.status).toBe(201);
  uploadId = upload.body.upload_id;
  const put = await fetch(upload.body.upload_url, {
    method: "PUT",
    headers: upload.body.headers,
    body: Buffer.from(PNG, "base64"),
  });
  expect(put.status).toBe(200);
  const page = await bob.request("GET", "/v1/jobs?limit=1");
  bobCursor = page.body.next_cursor;
  expect(bobCursor).toEqual(expect.any(String));
  await waitFor(
    async () =>
      (await Promise.all(bobJobs.map((id) => getJob(bob, id)))).every((j) => j.status === "processing") &&
      (await queuesIdle()),
    { what: "the setup jobs to settle", timeoutMs: 20_000 },
  );
  before = await snapshot();
}, 60_000);
afterAll(async () => {
  sqs.destroy();
  await stack?.stop();
});

describe("hostile input", () => {
  it("has a case for every kind of hostile input", () => {
    expect(cases.length).toBeGreaterThan(200);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  it("answers a body of as many unknown keys as MAX_BODY_BYTES holds with a bounded 400 that counts them all", async () => {
    // As many short unknown keys as fit the default 5 MB: every one is an issue of its own.
    const limit = 5_000_000;
    const head = JSON.stringify(valid()).slice(0, -1);
    const keys: string[] = [];
    let length = head.length + 1;
    for (let i = 0; ; i++) {
      const entry = `,"k${i}":0`;
      if (length + entry.length > limit) break;
      keys.push(entry);
      length += entry.length;
    }
    const text = `${head}${keys.join("")}}`;
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(limit);

    const response = await submitText(text);
    const answer = await response.text();

    expect(response.status).toBe(400);
    // Lambda refuses a response over 6 MB (a 5xx in AWS); this one stays far below.
    expect(Buffer.byteLength(answer)).toBeLessThan(16 * 1024);
    const { error } = JSON.parse(answer);
    expect(error.code).toBe("VALIDATION_FAILED");
    expect(error.details).toHaveLength(20);
    expect(error.details_total).toBe(keys.length);
    expect(keys.length).toBeGreaterThan(400_000);
  });

  it.each(cases.map((c) => [c.name, c] as const))("%s", async (_, c) => {
    const response = await c.request();
    const text = await response.text();
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    expect({ status: response.status, body }).toMatchObject({ status: c.expectStatus });
    if (c.expectCode) expect(body?.error?.code).toBe(c.expectCode);
    if (c.expectPaths) {
      expect(body?.error?.details?.map((d: { path: string }) => d.path)).toEqual(
        expect.arrayContaining(c.expectPaths),
      );
    }
  });

  it("acknowledges a replayed callback for a terminal job and changes nothing", async () => {
    const job = await getJob(alice, victim);
    expect(job.status).toBe("cancelled");
    const token = tokenFor(victim);
    for (const body of [
      success(victim),
      JSON.stringify({ status: "failed", track_id: victim, message: "x" }),
    ]) {
      const replayed = await callback(victim, token, body);
      expect(replayed.status).toBe(202);
    }
    await waitFor(() => queuesIdle(), { what: "the replayed results to be finalized", timeoutMs: 20_000 });
    expect(await getJob(alice, victim)).toEqual(job);
  });

  // Base64 images are staged before the job and its Idempotency-Key are written; a 409 (or a replay)
  // removes them again, so nothing is left behind.
  it("stores no input image for a 409 on a reused Idempotency-Key", async () => {
    const inputs = stack.topology.buckets.InputsBucket?.name as string;
    const objects = await listBucket(stack.endpoints.sqs, inputs);
    const conflict = await submit(valid({ seed: 3 }), { "idempotency-key": USED_KEY });
    expect(conflict.status).toBe(409);
    const now = await listBucket(stack.endpoints.sqs, inputs);
    knownOrphans.push(...now.filter((key) => !objects.includes(key)));
    expect(now).toEqual(objects);
  });

  it("changed nothing: same table items, no stored objects, no new prototype keys", async () => {
    await waitFor(() => queuesIdle(), { what: "queues to be idle", timeoutMs: 20_000 });
    const after = await snapshot();
    expect(after.prototypes).toEqual(before.prototypes);
    const inputs = stack.topology.buckets.InputsBucket?.name as string;
    // Less the orphan the known issue above leaves on purpose.
    after.objects[inputs] = (after.objects[inputs] ?? []).filter((key) => !knownOrphans.includes(key));
    expect(after.objects).toEqual(before.objects);
    expect(after.items.length).toBe(before.items.length);
    expect(after.items).toEqual(before.items);
    expect({} as Record<string, unknown>).not.toHaveProperty("polluted");
    // And over the API: alice still has exactly her one job.
    const listed = await alice.request("GET", "/v1/jobs?limit=100");
    expect(listed.body.jobs.map((j: { id: string }) => j.id)).toEqual([victim]);
  });
});
