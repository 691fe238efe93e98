import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalStack } from "../../local/stack.ts";
import { ROUTES } from "../../shared/http/routes.ts";
import { client, startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";

let stack: LocalStack;
let alice: TestClient;
let bob: TestClient;

beforeAll(async () => {
  // The API alone: no queue consumers, so submitted jobs stay queued while the tests look at them
  // (with dispatch running, a job could move on between two requests of a test).
  const started = await startTestStack(["alice", "bob"], {
    environment: { MAX_BODY_BYTES: "65536" },
    queueConsumers: "none",
  });
  stack = started.stack;
  [alice, bob] = started.clients as [TestClient, TestClient];
});
afterAll(async () => {
  await stack?.stop();
});

const countJobs = async (client: TestClient) => {
  let count = 0;
  let cursor: string | null = null;
  do {
    const page = await client.request("GET", `/v1/jobs?limit=100${cursor ? `&cursor=${cursor}` : ""}`);
    count += page.body.jobs.length;
    cursor = page.body.next_cursor;
  } while (cursor);
  return count;
};

describe("jobs API on the local stack", () => {
  it("submits a job (202), reads it back and shows it in the list", async () => {
    const submitted = await alice.request("POST", "/v1/jobs", {
      body: validJobRequest({
        track_id: "order-1",
        metadata: { customer: "42" },
        webhook: "http://127.0.0.1:9/hook",
      }),
    });
    expect(submitted.status).toBe(202);
    expect(submitted.headers.get("location")).toBe(`/v1/jobs/${submitted.body.id}`);
    expect(submitted.body).toMatchObject({
      status: "queued",
      track_id: "order-1",
      metadata: { customer: "42" },
      provider: "auto",
      request: { model_id: "sd15", controlnet_model: "canny" },
      attempts: [],
      outputs: [],
      error: null,
    });
    expect(submitted.body.request).not.toHaveProperty("webhook");

    const read = await alice.request("GET", `/v1/jobs/${submitted.body.id}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(submitted.body);
  });

  it("answers Prefer: wait with 202 and Preference-Applied when the job cannot finish in the wait", async () => {
    // No queue consumers here: the job stays queued for the whole wait.
    const started = Date.now();
    const submitted = await alice.request("POST", "/v1/jobs", {
      body: validJobRequest(),
      headers: { prefer: "respond-async, wait=1" },
    });
    expect(submitted.status).toBe(202);
    expect(submitted.headers.get("preference-applied")).toBe("wait=1");
    expect(submitted.body.status).toBe("queued");
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
  });

  it("lists a tenant's jobs newest first across pages, and filters by status", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await bob.request("POST", "/v1/jobs", { body: validJobRequest({ seed: i }) });
      ids.push(r.body.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = await bob.request(
        "GET",
        `/v1/jobs?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
      );
      expect(page.status).toBe(200);
      seen.push(...page.body.jobs.map((j: { id: string }) => j.id));
      cursor = page.body.next_cursor;
      pages++;
    } while (cursor && pages < 10);
    expect(seen).toEqual([...ids].reverse());

    await bob.request("POST", `/v1/jobs/${ids[1]}/cancel`);
    const cancelled = await bob.request("GET", "/v1/jobs?status=cancelled");
    expect(cancelled.body.jobs.map((j: { id: string }) => j.id)).toEqual([ids[1]]);
    const queued = await bob.request("GET", "/v1/jobs?status=queued&limit=100");
    expect(queued.body.jobs.map((j: { id: string }) => j.id)).not.toContain(ids[1]);
  });

  it("cancels a job, then answers 409 once it is terminal", async () => {
    const { body: job } = await alice.request("POST", "/v1/jobs", { body: validJobRequest() });
    const cancelled = await alice.request("POST", `/v1/jobs/${job.id}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.status).toBe("cancelled");
    const again = await alice.request("POST", `/v1/jobs/${job.id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("JOB_ALREADY_TERMINAL");
  });

  it("replays an Idempotency-Key with the same body and refuses a changed body with 409", async () => {
    const headers = { "idempotency-key": "order-77-attempt" };
    const first = await alice.request("POST", "/v1/jobs", { body: validJobRequest({ seed: 7 }), headers });
    const replay = await alice.request("POST", "/v1/jobs", { body: validJobRequest({ seed: 7 }), headers });
    expect(replay.status).toBe(202);
    expect(replay.body.id).toBe(first.body.id);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    const before = await countJobs(alice);
    const changed = await alice.request("POST", "/v1/jobs", { body: validJobRequest({ seed: 8 }), headers });
    expect(changed.status).toBe(409);
    expect(changed.body.error.code).toBe("IDEMPOTENCY_KEY_REUSED");
    expect(await countJobs(alice)).toBe(before);
  });

  it("never shows one tenant's job to another (404, not 403)", async () => {
    const { body: job } = await alice.request("POST", "/v1/jobs", { body: validJobRequest() });
    expect((await bob.request("GET", `/v1/jobs/${job.id}`)).status).toBe(404);
    const cancel = await bob.request("POST", `/v1/jobs/${job.id}/cancel`);
    expect(cancel.status).toBe(404);
    expect(cancel.body.error.code).toBe("JOB_NOT_FOUND");
    expect((await alice.request("GET", `/v1/jobs/${job.id}`)).body.status).toBe("queued");
  });

  it("answers 401 without a valid key", async () => {
    const noKey = await fetch(`${stack.url}/v1/jobs`);
    expect(noKey.status).toBe(401);
    const wrongKey: Response = await fetch(`${stack.url}/v1/jobs`, {
      headers: { authorization: "Bearer cnk_this-key-does-not-exist" },
    });
    expect(wrongKey.status).toBe(401);
    expect(((await wrongKey.json()) as { error: { code: string } }).error.code).toBe("UNAUTHORIZED");
  });

  it("creates, lists and revokes API keys: a new key opens the tenant, a revoked one no longer does", async () => {
    const created = await alice.request("POST", "/v1/api-keys", { body: { name: "ci" } });
    expect(created.status).toBe(201);
    const fresh = client(stack.url, alice.tenantId, created.body.key);
    const seen = await fresh.request("GET", "/v1/api-keys");
    expect(seen.status).toBe(200);
    expect(seen.body.api_keys).toContainEqual({
      id: created.body.id,
      name: "ci",
      prefix: created.body.key.slice(0, 8),
      created_at: created.body.created_at,
    });
    expect(JSON.stringify(seen.body)).not.toContain(created.body.key);
    // Another tenant sees none of them and cannot revoke them.
    const bobs = await bob.request("GET", "/v1/api-keys");
    expect(bobs.body.api_keys.map((k: { id: string }) => k.id)).not.toContain(created.body.id);
    expect((await bob.request("DELETE", `/v1/api-keys/${created.body.id}`)).status).toBe(404);

    // A key revoked before the gateway cached its verdict is refused at once.
    const unused = await alice.request("POST", "/v1/api-keys");
    expect((await alice.request("DELETE", `/v1/api-keys/${unused.body.id}`)).status).toBe(204);
    const refused = await client(stack.url, alice.tenantId, unused.body.key).request("GET", "/v1/jobs");
    expect(refused.status).toBe(401);
    // The key in use may revoke itself; the gateway's cached verdict (the authorizer's TTL, as in AWS)
    // still lets it through until that entry expires.
    expect((await fresh.request("DELETE", `/v1/api-keys/${created.body.id}`)).status).toBe(204);
    expect((await fresh.request("GET", "/v1/jobs?limit=1")).status).toBe(200);
    const listed = await alice.request("GET", "/v1/api-keys");
    expect(listed.body.api_keys.map((k: { id: string }) => k.id)).not.toContain(created.body.id);
  });

  it("rejects bad input with 4xx naming what is wrong, and writes nothing", async () => {
    const before = await countJobs(alice);
    const invalid = await alice.request("POST", "/v1/jobs", {
      body: validJobRequest({ width: 4096, samples: 9, controlnet_model: "canny,bogus", key: "sk-123" }),
    });
    expect(invalid.status).toBe(400);
    expect(invalid.body.error.code).toBe("VALIDATION_FAILED");
    expect(invalid.body.error.details.map((d: { path: string }) => d.path)).toEqual(
      expect.arrayContaining(["width", "samples", "controlnet_model", "key"]),
    );

    const flux = await alice.request("POST", "/v1/jobs", {
      body: validJobRequest({ model_id: "fluxdev", controlnet_model: "canny,depth" }),
    });
    expect(flux.status).toBe(400);
    expect(flux.body.error.details.map((d: { path: string }) => d.path)).toContain("controlnet_model");

    const notJson = await alice.request("POST", "/v1/jobs", {
      rawBody: "{oops",
      headers: { "content-type": "application/json" },
    });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toBe("INVALID_JSON");

    const tooLarge = await alice.request("POST", "/v1/jobs", {
      body: validJobRequest({ prompt: "x".repeat(70_000) }),
    });
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body.error.code).toBe("PAYLOAD_TOO_LARGE");

    const wrongType = await alice.request("POST", "/v1/jobs", {
      rawBody: JSON.stringify(validJobRequest()),
      headers: { "content-type": "text/plain" },
    });
    expect(wrongType.status).toBe(415);
    expect(wrongType.body.error.code).toBe("UNSUPPORTED_MEDIA_TYPE");

    const badQuery = await alice.request("GET", "/v1/jobs?status=done&limit=0");
    expect(badQuery.status).toBe(400);
    expect(badQuery.body.error.details.map((d: { path: string }) => d.path).sort()).toEqual([
      "limit",
      "status",
    ]);

    const badCursor = await alice.request("GET", "/v1/jobs?cursor=not-a-cursor");
    expect(badCursor.status).toBe(400);
    expect(badCursor.body.error.code).toBe("INVALID_CURSOR");

    expect(await countJobs(alice)).toBe(before);
  });

  it("refuses the tenant's own cursor with its owner removed (400 INVALID_CURSOR)", async () => {
    for (const seed of [1, 2]) {
      expect((await alice.request("POST", "/v1/jobs", { body: validJobRequest({ seed }) })).status).toBe(202);
    }
    const page = await alice.request("GET", "/v1/jobs?limit=1");
    const cursor: string = page.body.next_cursor;
    const { t, ...ownerless } = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    expect(t).toEqual(expect.any(String));
    const stripped = Buffer.from(JSON.stringify(ownerless)).toString("base64url");

    expect((await alice.request("GET", `/v1/jobs?limit=1&cursor=${cursor}`)).status).toBe(200);
    const refused = await alice.request("GET", `/v1/jobs?limit=1&cursor=${stripped}`);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: "INVALID_CURSOR", details: [{ path: "cursor" }] });
  });

  it("answers 404 for unknown routes and 405 for a wrong method", async () => {
    const unknown = await alice.request("GET", "/v1/nothing-here");
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("ROUTE_NOT_FOUND");
    const wrongMethod = await alice.request("DELETE", "/v1/jobs");
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("allow")).toContain("POST");
    expect((await alice.request("GET", "/v1/jobs/not-a-job-id")).status).toBe(404);
  });

  it("serves the OpenAPI document of every route, without an API key", async () => {
    const response = await fetch(`${stack.url}/v1/openapi.json`);
    expect(response.status).toBe(200);
    const doc = (await response.json()) as any;
    expect(Object.keys(doc.paths).sort()).toEqual([...new Set(ROUTES.map((route) => route.path))].sort());
    const request = doc.paths["/v1/jobs"].post.requestBody.content["application/json"].schema;
    expect(request.properties.width).toMatchObject({ minimum: 64, maximum: 1024 });
    expect(request.properties).not.toHaveProperty("key");
  });
});
