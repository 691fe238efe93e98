import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { beforeEach, describe, expect, it } from "vitest";
import { CALLBACK_PATH, callbackToken, callbackUrl } from "../../shared/domain/callback-token.ts";
import { sha256Hex } from "../../shared/domain/hash.ts";
import { newJobId } from "../../shared/domain/ids.ts";
import type { Job } from "../../shared/domain/job.ts";
import { createApi } from "../../shared/http/api.ts";
import { createCallbackEndpoint } from "../../shared/http/callback.ts";
import { errorToHttp } from "../../shared/http/errors.ts";
import type { HttpResponse } from "../../shared/http/responses.ts";
import {
  type ApiOperationId,
  type ApiRoute,
  ROUTES,
  type RouteDeclaration,
} from "../../shared/http/routes.ts";
import type { ApiKeyRecord } from "../../shared/ports/index.ts";
import { queues } from "../../shared/schemas/messages.ts";
import { presentJob } from "../../shared/usecases/present-job.ts";
import { uploadKey } from "../../shared/usecases/stage-inputs.ts";
import {
  buildJob,
  FakeClock,
  FakeQueue,
  InMemoryApiKeys,
  InMemoryJobStore,
  InMemoryNotificationStore,
  InMemoryObjectStore,
  InMemoryWebhookSettings,
} from "../support/fakes.ts";
import { TEST_MODELS } from "../support/settings.ts";

const TENANT = "acme";
const UPLOAD_ID = "0b9d5c3e-2f4a-4c6b-8d7e-1a2b3c4d5e6f";
const API_ROUTES = ROUTES.filter((route): route is ApiRoute => route.servedBy === "Api");

interface Request {
  method: string;
  path: string;
  tenant?: string | null;
  body?: unknown;
  contentType?: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
}

const event = (request: Request): APIGatewayProxyEventV2 =>
  ({
    rawPath: request.path,
    headers: {
      ...(request.body !== undefined && { "content-type": request.contentType ?? "application/json" }),
      ...request.headers,
    },
    queryStringParameters: request.query,
    body: request.body === undefined ? undefined : JSON.stringify(request.body),
    isBase64Encoded: false,
    requestContext: {
      http: { method: request.method, path: request.path },
      ...(request.tenant !== null && { authorizer: { lambda: { tenantId: request.tenant ?? TENANT } } }),
    },
  }) as unknown as APIGatewayProxyEventV2;

const errorCode = (response: HttpResponse): string | undefined =>
  response.statusCode >= 400 ? JSON.parse(response.body as string).error.code : undefined;

/** A route's path with each `{param}` replaced. */
const pathOf = (route: Pick<RouteDeclaration, "path">, params: Record<string, string>) =>
  route.path.replace(/\{([^}]+)\}/g, (_, name: string) => params[name] ?? "missing");

let clock: FakeClock;
let jobs: InMemoryJobStore;
let job: Job;
let call: (request: Request) => Promise<HttpResponse>;
let pauses: number[];
let apiKeys: InMemoryApiKeys;
let existingKey: ApiKeyRecord;
let spareKey: ApiKeyRecord;
let duringPause: () => Promise<void>;

beforeEach(async () => {
  pauses = [];
  duringPause = async () => {};
  clock = new FakeClock();
  jobs = new InMemoryJobStore(clock);
  job = buildJob(clock, { id: newJobId(clock.now().getTime()), tenantId: TENANT });
  await jobs.create(job);
  const notifications = new InMemoryNotificationStore();
  await notifications.createIfAbsent({
    id: `msg_${job.id}_succeeded`,
    jobId: job.id,
    tenantId: TENANT,
    type: "job.succeeded",
    createdAt: clock.now().toISOString(),
    payload: "{}",
    url: "https://hooks.example.com/x",
    state: "delivered",
    attempts: [],
  });
  apiKeys = new InMemoryApiKeys(clock).addTenant(TENANT);
  // The tenant's key in use, as creating the tenant registered it; revoking it leaves the new ones.
  existingKey = await apiKeys.createApiKey(
    TENANT,
    { keyHash: "e".repeat(64), prefix: "cnk_exis", name: null },
    3,
  );
  spareKey = await apiKeys.createApiKey(
    TENANT,
    { keyHash: "f".repeat(64), prefix: "cnk_spar", name: "spare" },
    3,
  );
  const inputs = new InMemoryObjectStore("inputs");
  await inputs.put(uploadKey(TENANT, UPLOAD_ID), Buffer.from("png"), { contentType: "image/png" });
  const api = createApi({
    jobs,
    jobsQueue: new FakeQueue(queues.jobs),
    clock,
    settings: {
      maxBodyBytes: 65_536,
      uploadUrlExpirySeconds: 900,
      defaultDeadlineSeconds: 3600,
      defaultMaxWaitSeconds: 86_400,
      queuedResendAfterSeconds: 60,
      idempotencyTtlSeconds: 86_400,
      maxPreferWaitSeconds: 20,
      maxApiKeysPerTenant: 3,
    },
    // A `Prefer: wait` pause moves the fake clock instead of sleeping, and lets the test act meanwhile.
    sleep: async (ms) => {
      pauses.push(ms);
      clock.advance(ms);
      await duringPause();
    },
    present: async (j) => presentJob(j),
    inputs: {
      inputs,
      inputsBucket: "inputs",
      policy: { mode: "aws" },
      resolve: async () => ["93.184.216.34"],
    },
    notifications,
    notifyQueue: new FakeQueue(queues.notifications),
    tenants: new InMemoryWebhookSettings(clock).addTenant(TENANT),
    apiKeys,
    models: TEST_MODELS,
  });
  // As the API function's middy chain does (shared/lambda/http-errors.ts).
  call = (request) => api(event(request)).catch(errorToHttp);
});

/** One request per API operation that its handler answers with success; the record makes one mandatory for each. */
const SUCCESSFUL: Record<
  ApiOperationId,
  (job: Job) => Omit<Request, "method" | "path"> & { params?: Record<string, string> }
> = {
  submitJob: () => ({
    body: {
      model_id: "sd15",
      controlnet_model: "canny",
      controlnet_type: "canny",
      control_image: `upload:${UPLOAD_ID}`,
    },
    headers: { "idempotency-key": "k-1" },
  }),
  listJobs: () => ({ query: { limit: "5" } }),
  getJob: (j) => ({ params: { id: j.id } }),
  cancelJob: (j) => ({ params: { id: j.id } }),
  listJobNotifications: (j) => ({ params: { id: j.id } }),
  replayJobNotifications: (j) => ({ params: { id: j.id } }),
  createUpload: () => ({ body: { content_type: "image/png" } }),
  getWebhookSettings: () => ({}),
  setWebhookUrl: () => ({ body: { url: null } }),
  rotateWebhookSecret: () => ({}),
  createApiKey: () => ({ body: { name: "ci" } }),
  listApiKeys: () => ({}),
  revokeApiKey: () => ({ params: { id: spareKey.id } }),
  getOpenApiDocument: () => ({ tenant: null }),
  listModels: () => ({}),
};

describe("the API's router, built from the route table", () => {
  it.each(API_ROUTES.map((route) => [route.operationId, route] as const))(
    "reaches %s through its method and path, answering a declared success and its headers",
    async (_, route) => {
      const { params = {}, ...request } = SUCCESSFUL[route.operationId](job);
      const response = await call({ method: route.method, path: pathOf(route, params), ...request });
      const declared = route.responses as RouteDeclaration["responses"];
      const answer = declared[response.statusCode];
      expect(answer, `${response.statusCode} ${response.body}`).toBeDefined();
      for (const [name, header] of Object.entries(answer?.headers ?? {})) {
        if (header.required) expect(response.headers, name).toHaveProperty(name.toLowerCase());
      }
    },
  );

  it("answers every API-key route 401 UNAUTHORIZED without a tenant, and serves the open ones", async () => {
    for (const route of API_ROUTES) {
      const { params = {}, ...request } = SUCCESSFUL[route.operationId](job);
      const response = await call({
        method: route.method,
        path: pathOf(route, params),
        ...request,
        tenant: null,
      });
      if (route.auth === "apiKey") {
        expect(errorCode(response), route.operationId).toBe("UNAUTHORIZED");
        expect(route.errors as readonly string[]).toContain("UNAUTHORIZED");
      } else {
        expect(response.statusCode, route.operationId).toBeLessThan(400);
      }
    }
  });

  it("refuses bad input only with codes the route declares", async () => {
    for (const route of API_ROUTES) {
      const { params = {}, ...request } = SUCCESSFUL[route.operationId](job);
      const declared = route.errors as readonly string[];
      const answers: HttpResponse[] = [];
      if (route.path.includes("{id}")) {
        answers.push(await call({ method: route.method, path: pathOf(route, { id: "01NOSUCHJOB" }) }));
      }
      if (request.body !== undefined) {
        const path = pathOf(route, params);
        answers.push(await call({ method: route.method, path, body: "x", contentType: "text/plain" }));
        answers.push(await call({ method: route.method, path, body: { unknown: 1 } }));
      }
      for (const response of answers) {
        expect(response.statusCode, `${route.operationId}: ${response.body}`).toBeGreaterThanOrEqual(400);
        expect(declared, route.operationId).toContain(errorCode(response));
      }
    }
  });

  it("answers 404 ROUTE_NOT_FOUND off the table and 405 METHOD_NOT_ALLOWED with the table's methods", async () => {
    const unknown = await call({ method: "GET", path: "/v1/nothing-here" });
    expect(unknown.statusCode).toBe(404);
    expect(errorCode(unknown)).toBe("ROUTE_NOT_FOUND");
    // The callback route is not the API function's: it serves it as an unknown path.
    expect(errorCode(await call({ method: "POST", path: pathOf(ROUTES.at(-1) as Route, {}) }))).toBe(
      "ROUTE_NOT_FOUND",
    );

    for (const path of new Set(API_ROUTES.map((route) => route.path))) {
      const methods = API_ROUTES.filter((route) => route.path === path).map((route) => route.method);
      // No route takes PATCH (DELETE is a route's own method now: /v1/api-keys/{id}).
      expect(methods).not.toContain("PATCH");
      const wrong = await call({ method: "PATCH", path: pathOf({ path }, { id: job.id }) });
      expect(wrong.statusCode, path).toBe(405);
      expect(errorCode(wrong)).toBe("METHOD_NOT_ALLOWED");
      expect(wrong.headers?.allow, path).toBe(methods.join(", "));
    }
  });
});

type Route = (typeof ROUTES)[number];

describe("the callback endpoint, built from the table's callback route", () => {
  const route = ROUTES.find((r) => r.servedBy === "Callback") as Route;
  const queue = new FakeQueue(queues.results);
  const endpoint = createCallbackEndpoint({
    resultsQueue: queue,
    clock: new FakeClock(),
    callbackSecret: "secret",
    maxBodyBytes: 1024,
    normalizers: new Map([
      [
        "modelslab",
        () => ({
          trackId: "J1",
          result: { kind: "accepted", providerId: "1", etaSeconds: null, handle: { fetchUrl: null } },
        }),
      ],
    ]),
  });
  const callback = (method: string, path: string, query?: Record<string, string>) =>
    endpoint(event({ method, path, tenant: null, body: { track_id: "J1" }, query })).catch(errorToHttp);

  it("serves the URLs dispatch mints, at the table's method and path", async () => {
    expect(route).toMatchObject({ method: "POST", path: CALLBACK_PATH, auth: "none" });
    const url = new URL(callbackUrl("https://cb.example.com/", "secret", "modelslab", "J1", 0));
    const token = url.searchParams.get("token") ?? "";
    expect(token).toBe(callbackToken("secret", "modelslab", "J1", 0));
    const response = await callback(route.method, url.pathname, { attempt: "0", token });
    expect(response.statusCode, response.body as string).toBe(202);
    expect(JSON.parse(response.body as string)).toEqual({ received: true, outcome: "acknowledged" });
    expect(errorCode(await callback(route.method, url.pathname, { attempt: "0", token: "forged" }))).toBe(
      "UNAUTHORIZED",
    );
    // A provider without callbacks (or none at all) has no callback URL.
    const fleet = url.pathname.replace("/modelslab/", "/self-hosted/");
    expect(errorCode(await callback(route.method, fleet, { attempt: "0", token }))).toBe("ROUTE_NOT_FOUND");
  });

  it("answers 405 with Allow: POST for another method, 404 for another path", async () => {
    const wrong = await callback("GET", pathOf(route, { provider: "modelslab", jobId: "J1" }));
    expect(wrong.statusCode).toBe(405);
    expect(wrong.headers?.allow).toBe("POST");
    for (const path of ["/callbacks/modelslab", "/callbacks/modelslab/J1/extra", "/v1/jobs"]) {
      expect(errorCode(await callback("POST", path)), path).toBe("ROUTE_NOT_FOUND");
    }
  });
});

describe("POST /v1/jobs with Prefer: wait (RFC 7240)", () => {
  const submit = (prefer?: string, idempotencyKey?: string) =>
    call({
      method: "POST",
      path: "/v1/jobs",
      body: {
        model_id: "sd15",
        controlnet_model: "canny",
        controlnet_type: "canny",
        control_image: `upload:${UPLOAD_ID}`,
      },
      headers: {
        ...(prefer !== undefined && { prefer }),
        ...(idempotencyKey !== undefined && { "idempotency-key": idempotencyKey }),
      },
    });
  /** Finishes the submitted job (cancelled) once `afterMs` of the wait have passed. */
  const finishAfter = (afterMs: number) => {
    const start = clock.now().getTime();
    duringPause = async () => {
      if (clock.now().getTime() - start < afterMs) return;
      for (const stored of jobs.jobs.values()) {
        if (stored.id !== job.id && stored.status === "queued") {
          await jobs.transition(stored, "cancelled", { error: { code: "CANCELLED", message: "test" } });
        }
      }
    };
  };

  it("answers 200 with the finished job when it ends within the wait, polling with backoff", async () => {
    finishAfter(1_500);
    const response = await submit("respond-async, wait=10");
    expect(response.statusCode, response.body as string).toBe(200);
    expect(JSON.parse(response.body as string).status).toBe("cancelled");
    expect(response.headers?.["preference-applied"]).toBe("wait=10");
    expect(response.headers?.location).toMatch(/^\/v1\/jobs\//);
    expect(pauses).toEqual([250, 500, 1000]);
  });

  it("answers 202 with Preference-Applied when the wait runs out, never pausing past it", async () => {
    const response = await submit("wait=3");
    expect(response.statusCode).toBe(202);
    expect(JSON.parse(response.body as string).status).toBe("queued");
    expect(response.headers?.["preference-applied"]).toBe("wait=3");
    expect(pauses).toEqual([250, 500, 1000, 1250]);
    expect(pauses.reduce((a, b) => a + b, 0)).toBe(3_000);
  });

  it("waits at most MAX_PREFER_WAIT_SECONDS, and says so", async () => {
    const response = await submit('WAIT="600"');
    expect(response.statusCode).toBe(202);
    expect(response.headers?.["preference-applied"]).toBe("wait=20");
    expect(pauses.reduce((a, b) => a + b, 0)).toBe(20_000);
    expect(Math.max(...pauses)).toBe(2_000);
  });

  it("ignores other preferences and a wait that is not seconds: 202 at once, nothing applied", async () => {
    for (const prefer of ["respond-async", "wait=soon", "wait=-1", "wait=1.5", "wait", "handling=lenient"]) {
      const response = await submit(prefer);
      expect(response.statusCode, prefer).toBe(202);
      expect(response.headers?.["preference-applied"], prefer).toBeUndefined();
    }
    expect(pauses).toEqual([]);
  });

  it("waits on an idempotent replay the same way", async () => {
    const first = await submit(undefined, "wait-replay");
    expect(first.statusCode).toBe(202);
    finishAfter(0);
    const replay = await submit("wait=5", "wait-replay");
    expect(replay.statusCode).toBe(200);
    expect(replay.headers?.["idempotent-replayed"]).toBe("true");
    expect(replay.headers?.["preference-applied"]).toBe("wait=5");
    expect(JSON.parse(replay.body as string).id).toBe(JSON.parse(first.body as string).id);
  });
});

describe("API keys over the API", () => {
  it("creates a key shown once, lists it by prefix only, and revokes it", async () => {
    const created = await call({ method: "POST", path: "/v1/api-keys", body: { name: "ci" } });
    expect(created.statusCode, created.body as string).toBe(201);
    const body = JSON.parse(created.body as string);
    expect(body).toEqual({
      id: expect.stringMatching(/^key_/),
      name: "ci",
      prefix: body.key.slice(0, 8),
      created_at: clock.now().toISOString(),
      key: expect.stringMatching(/^cnk_[A-Za-z0-9_-]{32}$/),
    });
    // Stored by hash only: the fake keeps what the store is given.
    const stored = apiKeys.tenants.get(TENANT)?.find((k) => k.id === body.id);
    expect(stored?.keyHash).toBe(sha256Hex(body.key));
    expect(JSON.stringify([...apiKeys.tenants.values()])).not.toContain(body.key);

    const listed = await call({ method: "GET", path: "/v1/api-keys" });
    expect(listed.statusCode).toBe(200);
    expect(JSON.parse(listed.body as string).api_keys).toEqual([
      { id: existingKey.id, name: null, prefix: "cnk_exis", created_at: existingKey.createdAt },
      { id: spareKey.id, name: "spare", prefix: "cnk_spar", created_at: spareKey.createdAt },
      { id: body.id, name: "ci", prefix: body.prefix, created_at: body.created_at },
    ]);
    expect(listed.body).not.toContain(body.key);

    const revoked = await call({ method: "DELETE", path: `/v1/api-keys/${body.id}` });
    expect(revoked.statusCode).toBe(204);
    const again = await call({ method: "DELETE", path: `/v1/api-keys/${body.id}` });
    expect(again.statusCode).toBe(404);
    expect(errorCode(again)).toBe("API_KEY_NOT_FOUND");
  });

  it("creates an unnamed key from a bare POST, and refuses an unknown or too long field", async () => {
    const bare = await call({ method: "POST", path: "/v1/api-keys" });
    expect(bare.statusCode).toBe(201);
    expect(JSON.parse(bare.body as string).name).toBeNull();
    for (const body of [{ label: "x" }, { name: "" }, { name: "n".repeat(101) }]) {
      const refused = await call({ method: "POST", path: "/v1/api-keys", body });
      expect(refused.statusCode, JSON.stringify(body)).toBe(400);
      expect(errorCode(refused)).toBe("VALIDATION_FAILED");
    }
  });

  it("refuses a key past MAX_API_KEYS_PER_TENANT (409 API_KEY_LIMIT_REACHED)", async () => {
    // Two keys already, a bound of three.
    expect((await call({ method: "POST", path: "/v1/api-keys" })).statusCode).toBe(201);
    const refused = await call({ method: "POST", path: "/v1/api-keys" });
    expect(refused.statusCode).toBe(409);
    expect(errorCode(refused)).toBe("API_KEY_LIMIT_REACHED");
  });

  it("revokes the key in use, but refuses revoking the tenant's last key (409 LAST_API_KEY)", async () => {
    expect((await call({ method: "DELETE", path: `/v1/api-keys/${spareKey.id}` })).statusCode).toBe(204);
    const refused = await call({ method: "DELETE", path: `/v1/api-keys/${existingKey.id}` });
    expect(refused.statusCode).toBe(409);
    expect(errorCode(refused)).toBe("LAST_API_KEY");
  });
});

describe("POST /v1/jobs: what the pinned provider cannot honour", () => {
  const submit = (extra: Record<string, unknown>) =>
    call({
      method: "POST",
      path: "/v1/jobs",
      body: {
        model_id: "sd15",
        controlnet_model: "canny",
        controlnet_type: "canny",
        control_image: `upload:${UPLOAD_ID}`,
        ...extra,
      },
    });
  const queuedJobs = () => [...jobs.jobs.values()].filter((stored) => stored.id !== job.id);

  it("refuses a self-hosted job with 400 VALIDATION_FAILED naming each parameter; writes nothing", async () => {
    const response = await submit({
      provider: "self-hosted",
      scheduler: "KarrasVeScheduler",
      lora_model: "contrast-fix",
      upscale: "yes",
      safety_checker: "yes",
    });
    expect(response.statusCode).toBe(400);
    const error = JSON.parse(response.body as string).error;
    expect(error.code).toBe("VALIDATION_FAILED");
    expect(error.details.map((d: { path: string }) => d.path)).toEqual([
      "upscale",
      "safety_checker",
      "scheduler",
      "lora_model",
    ]);
    expect(queuedJobs()).toEqual([]);
  });

  it("refuses a self-hosted job whose width or height is not a multiple of 64 with 400 naming them; modelslab takes it", async () => {
    const response = await submit({ provider: "self-hosted", width: 500, height: 200 });
    expect(response.statusCode).toBe(400);
    const error = JSON.parse(response.body as string).error;
    expect(error.code).toBe("VALIDATION_FAILED");
    expect(error.details).toEqual([
      { path: "width", message: expect.stringContaining("width 500 is not a multiple of 64") },
      { path: "height", message: expect.stringContaining("height 200 is not a multiple of 64") },
    ]);
    expect(queuedJobs()).toEqual([]);
    expect((await submit({ provider: "modelslab", width: 500, height: 200 })).statusCode).toBe(202);
    expect((await submit({ provider: "self-hosted", width: 576, height: 320 })).statusCode).toBe(202);
    expect(queuedJobs()).toHaveLength(2);
  });

  it("accepts the same parameters at their neutral values on self-hosted, and as they are on auto and modelslab", async () => {
    expect(
      (await submit({ provider: "self-hosted", upscale: "no", safety_checker: "no", tomesd: "no" }))
        .statusCode,
    ).toBe(202);
    for (const provider of ["auto", "modelslab"]) {
      expect((await submit({ provider, lora_model: "contrast-fix", upscale: "yes" })).statusCode).toBe(202);
    }
    expect(queuedJobs()).toHaveLength(3);
  });
});

describe("the self-hosted model catalog at the API", () => {
  const submit = (extra: Record<string, unknown>) =>
    call({
      method: "POST",
      path: "/v1/jobs",
      body: {
        model_id: "sd15",
        controlnet_model: "canny",
        controlnet_type: "canny",
        control_image: `upload:${UPLOAD_ID}`,
        provider: "self-hosted",
        ...extra,
      },
    });
  const details = async (extra: Record<string, unknown>) => {
    const response = await submit(extra);
    expect(response.statusCode).toBe(400);
    return JSON.parse(response.body as string).error.details as { path: string; message: string }[];
  };

  it("refuses a self-hosted job naming a model the catalog lacks, a ControlNet or annotator weights its model lacks", async () => {
    expect(await details({ model_id: "flux-dev" })).toEqual([
      { path: "model_id", message: expect.stringContaining('no model "flux-dev" (it has sd15)') },
    ]);
    expect((await details({ controlnet_model: "canny,mlsd" })).map((d) => d.path)).toEqual([
      "controlnet_model",
    ]);
    expect(
      (await details({ controlnet_model: "depth", controlnet_type: "depth", auto_hint: "yes" })).map(
        (d) => d.path,
      ),
    ).toEqual(["auto_hint"]);
    // A model_id the catalog lacks is the provider's to run on auto or modelslab.
    expect((await submit({ model_id: "flux-dev", provider: "auto" })).statusCode).toBe(202);
  });

  it("GET /v1/models lists each self-hosted model and what it can do, and says ModelsLab takes its own ids", async () => {
    const response = await call({ method: "GET", path: "/v1/models" });
    expect(response.statusCode).toBe(200);
    const body = JSON.parse(response.body as string);
    expect(body.self_hosted).toEqual([
      expect.objectContaining({
        model_id: "sd15",
        kind: "sd15",
        controlnets: TEST_MODELS[0]?.controlnets,
        // No annotator weights: depth's and scribble's (HED's) auto_hint do not run; the weightless ones do.
        auto_hint: ["canny", "inpaint", "tile", "shuffle", "qrcode", "blur"],
        annotator_weights: [],
        sizes: { min: 64, max: 1024, multiple_of: 64, native: 512 },
        upscale: null,
        safety_checker: false,
        algorithm_types: ["dpmsolver+++", "none"],
      }),
    ]);
    expect(body.self_hosted[0].schedulers).not.toContain("KarrasVeScheduler");
    expect(body.self_hosted[0].karras_sigmas).toContain("EulerDiscreteScheduler");
    expect(body.self_hosted[0].karras_sigmas).not.toContain("DDIMScheduler");
    expect(body.providers.modelslab.model_ids).toBe("any");
  });
});
