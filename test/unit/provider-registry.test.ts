import { readdirSync, readFileSync } from "node:fs";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { beforeEach, describe, expect, it } from "vitest";
import * as z from "zod/mini";
import { FUNCTIONS } from "../../infra/functions.ts";
import { CALLBACK_PATH, callbackUrl, parseCallbackPath } from "../../shared/domain/callback-token.ts";
import { NotFoundError } from "../../shared/domain/errors.ts";
import type { Job } from "../../shared/domain/job.ts";
import { PROVIDER_IDS, type ProviderId } from "../../shared/domain/providers.ts";
import { createCallbackEndpoint } from "../../shared/http/callback.ts";
import type {
  CallbackNormalizer,
  Provider,
  ProviderFetch,
  ProviderResult,
  ProviderSubmission,
} from "../../shared/ports/provider.ts";
import type { ProviderModule } from "../../shared/providers/module.ts";
import {
  AUTO_ROUTE,
  bindProviders,
  callbackNormalizers,
  PROVIDER_REGISTRY,
  PROVIDER_SETTINGS,
  type ProviderRegistry,
  type ProviderSet,
  providersConfig,
  registrySettings,
} from "../../shared/providers/registry.ts";
import { dispatchConfig, finalizeConfig, loadConfig, reconcileConfig } from "../../shared/schemas/config.ts";
import { int } from "../../shared/schemas/config-fields.ts";
import {
  type AdmissionMessage,
  type DispatchMessage,
  queues,
  type ResultMessage,
  resultMessageSchema,
  type WorkerJobMessage,
} from "../../shared/schemas/messages.ts";
import { defineQueue } from "../../shared/schemas/queue.ts";
import { dispatchJob } from "../../shared/usecases/dispatch-job.ts";
import { finalizeResult } from "../../shared/usecases/finalize-result.ts";
import { reconcile } from "../../shared/usecases/reconcile.ts";
import { bundledCode } from "../support/bundle.ts";
import {
  buildJob,
  FakeClock,
  FakeQueue,
  InMemoryCapacityGate,
  InMemoryCircuitBreaker,
  InMemoryJobStore,
  InMemoryWaitingList,
} from "../support/fakes.ts";
import { MINIMAL_ENV, testFinalizeSettings, testReconcileSettings } from "../support/settings.ts";

/**
 * A provider the production registry does not have, added the way a new one is: one module (its
 * settings, capabilities, capacity, breaker key, provider and callback parser) and one registry row.
 * Its answers look like Replicate's: a prediction id, a `get` URL to poll, a webhook body of its own.
 */
const REPLICATE = "replicate-fake" as ProviderId;

class ReplicateFake implements Provider {
  readonly id = REPLICATE;
  readonly capabilities = { fetch: true, callback: true, resubmit: false };
  readonly submitTimeoutSeconds = 30;
  readonly submissions: ProviderSubmission[] = [];
  readonly fetches: ProviderFetch[] = [];
  /** What a poll answers (a prediction still running, unless a test says otherwise). */
  pollAnswer: ProviderResult = {
    kind: "accepted",
    providerId: "p-1",
    etaSeconds: null,
    handle: { get: "https://api.replicate.test/v1/predictions/p-1" },
  };

  constructor(readonly token: string) {}

  async submit(submission: ProviderSubmission): Promise<ProviderResult> {
    this.submissions.push(submission);
    const id = `p-${this.submissions.length}`;
    return {
      kind: "accepted",
      providerId: id,
      etaSeconds: 5,
      handle: { get: `https://api.replicate.test/v1/predictions/${id}` },
    };
  }

  async fetch(request: ProviderFetch): Promise<ProviderResult> {
    this.fetches.push(request);
    return this.pollAnswer;
  }
}

/** Replicate-style webhook body: `{ id, status, output, metadata: { job } }`. */
const normalizeReplicate: CallbackNormalizer = (body) => {
  const b = body as { id?: string; status?: string; output?: string[]; metadata?: { job?: string } };
  const trackId = b.metadata?.job ?? null;
  if (b.status === "succeeded") {
    return {
      trackId,
      result: {
        kind: "done",
        providerId: b.id ?? null,
        outputs: (b.output ?? []).map((url) => ({ kind: "url" as const, url })),
        generationTimeSeconds: null,
        seed: null,
      },
    };
  }
  return { trackId, result: { kind: "indeterminate", reason: `status ${b.status}` } };
};

const replicateSettings = z.object({
  REPLICATE_FAKE_TOKEN: z.string().check(z.minLength(1)),
  REPLICATE_FAKE_MAX_JOBS: int(1, 100, 2),
});
let built: ReplicateFake[] = [];
const replicateModule = {
  id: REPLICATE,
  capabilities: { fetch: true, callback: true, resubmit: false },
  config: replicateSettings,
  capacity: (settings) => settings.REPLICATE_FAKE_MAX_JOBS,
  breakerKey: REPLICATE,
  create: (settings) => {
    const provider = new ReplicateFake(settings.REPLICATE_FAKE_TOKEN);
    built.push(provider);
    return provider;
  },
  normalizeCallback: (body) => normalizeReplicate(body),
} satisfies ProviderModule<typeof replicateSettings>;

/** The registry of a deployment with the new provider, `auto` jobs going to it first. */
const registry: ProviderRegistry = { ...PROVIDER_REGISTRY, [REPLICATE]: replicateModule };

const settings = testFinalizeSettings({ checkMarginSeconds: 15, maxRetryableFailures: 2 });

/**
 * The results queue of that deployment: its schema takes the new provider's id, as the production
 * one takes every id of PROVIDER_IDS once the provider's id is added there.
 */
const resultsQueueOf = defineQueue(
  "results",
  z.object({ ...resultMessageSchema.shape, provider: z.enum([...PROVIDER_IDS, REPLICATE]) }),
);

describe("a provider added as one module and one registry row", () => {
  let clock: FakeClock;
  let jobs: InMemoryJobStore;
  let jobsQueue: FakeQueue<DispatchMessage>;
  let admissionsQueue: FakeQueue<AdmissionMessage>;
  let resultsQueue: FakeQueue<ResultMessage>;
  let fallbackQueue: FakeQueue<WorkerJobMessage>;
  let gates: Map<string, InMemoryCapacityGate>;
  let breakers: Map<string, InMemoryCircuitBreaker>;
  let providers: ProviderSet;
  let replicate: ReplicateFake;

  const stored = (id: string): Job => jobs.jobs.get(id) as Job;
  const store = async (overrides: Partial<Job>): Promise<Job> => {
    const job = buildJob(clock, overrides);
    await jobs.create(job);
    return job;
  };
  const deps = () => ({ jobs, providers, jobsQueue, admissionsQueue, resultsQueue, clock, settings });
  const finalizeAll = async (): Promise<string[]> => {
    const outcomes: string[] = [];
    for (const sent of resultsQueue.sent.splice(0)) outcomes.push(await finalizeResult(deps(), sent.message));
    return outcomes;
  };

  beforeEach(() => {
    clock = new FakeClock();
    jobs = new InMemoryJobStore(clock);
    jobsQueue = new FakeQueue(queues.jobs);
    admissionsQueue = new FakeQueue(queues.admissions);
    resultsQueue = new FakeQueue(resultsQueueOf);
    fallbackQueue = new FakeQueue(queues.fallback);
    gates = new Map();
    breakers = new Map();
    built = [];
    const env = {
      MODELSLAB_API_KEY: "ml-key",
      FALLBACK_QUEUE_URL: "https://sqs.example.com/000000000000/fallback",
      SELF_HOSTED_MODELS: MINIMAL_ENV.SELF_HOSTED_MODELS,
      REPLICATE_FAKE_TOKEN: "r8-token",
    };
    providers = bindProviders(
      loadConfig(registrySettings(registry), env),
      {
        queue: <M>() => fallbackQueue as unknown as FakeQueue<M>,
        secret: async (config, valueName) => String(config[valueName]),
        log: () => undefined,
      },
      {
        gate: (key, limit) => {
          const gate = new InMemoryCapacityGate(limit);
          gates.set(key, gate);
          return gate;
        },
        waiting: () => new InMemoryWaitingList(),
        breaker: (key) => {
          const breaker = new InMemoryCircuitBreaker();
          breakers.set(key, breaker);
          return breaker;
        },
      },
      registry,
      { primary: REPLICATE, fallback: "self-hosted" },
    );
    replicate = built[0] as ReplicateFake;
  });

  it("builds it from its own settings, with its own gate (its capacity) and breaker", () => {
    expect(built).toHaveLength(1);
    expect(replicate.token).toBe("r8-token");
    expect(providers.get(REPLICATE)?.provider).toBe(replicate);
    expect(gates.get(REPLICATE)?.limit).toBe(2);
    expect([...breakers.keys()].sort()).toEqual(["modelslab", REPLICATE].sort());
    expect(providers.all().map((b) => b.provider.id)).toEqual(["modelslab", "self-hosted", REPLICATE]);
  });

  it("runs a job on it: dispatch → its callback through the endpoint → finalize", async () => {
    const job = await store({ provider: REPLICATE });

    expect(await dispatchJob(deps(), { jobId: job.id })).toBe("accepted");
    const submission = replicate.submissions[0];
    expect(submission).toMatchObject({ jobId: job.id, tenantId: job.tenantId, attempt: 0 });
    expect(submission?.callbackUrl).toBe(
      callbackUrl(settings.callbackBaseUrl, settings.callbackSecret, REPLICATE, job.id, 0),
    );
    expect(stored(job.id)).toMatchObject({
      status: "processing",
      attempts: [{ provider: REPLICATE, provider_id: "p-1", outcome: "pending" }],
      providerState: { phase: "accepted", handle: { get: "https://api.replicate.test/v1/predictions/p-1" } },
    });
    expect(Object.keys(await (gates.get(REPLICATE) as InMemoryCapacityGate).holders())).toEqual([job.id]);
    expect(await (gates.get("modelslab") as InMemoryCapacityGate).holders()).toEqual({});

    // The provider posts to the URL it was given; the callback endpoint takes it by the path.
    const endpoint = createCallbackEndpoint({
      resultsQueue,
      clock,
      callbackSecret: settings.callbackSecret,
      normalizers: callbackNormalizers(() => undefined, registry),
      maxBodyBytes: 65_536,
    });
    const url = new URL(submission?.callbackUrl ?? "");
    const response = await endpoint(
      post(url, {
        id: "p-1",
        status: "succeeded",
        output: ["https://replicate.delivery/out-0.png"],
        metadata: { job: job.id },
      }),
    );
    expect(response.statusCode).toBe(202);
    expect(resultsQueue.sent.map((s) => s.message)).toEqual([
      expect.objectContaining({ jobId: job.id, provider: REPLICATE, attempt: 0, source: "callback" }),
    ]);

    expect(await finalizeAll()).toEqual(["succeeded"]);
    expect(stored(job.id)).toMatchObject({
      status: "succeeded",
      attempts: [{ provider: REPLICATE, outcome: "succeeded" }],
      outputs: [{ url: "https://replicate.delivery/out-0.png" }],
    });
    expect(await (gates.get(REPLICATE) as InMemoryCapacityGate).holders()).toEqual({});
  });

  it("polls it with the handle it gave when the callback is lost", async () => {
    const job = await store({ provider: REPLICATE });
    await dispatchJob(deps(), { jobId: job.id });
    replicate.pollAnswer = {
      kind: "done",
      providerId: "p-1",
      outputs: [{ kind: "url", url: "https://replicate.delivery/late.png" }],
      generationTimeSeconds: null,
      seed: null,
    };
    clock.advance((5 + settings.checkMarginSeconds) * 1000);
    const reconcileDeps = {
      jobs,
      jobsQueue,
      admissionsQueue,
      resultsQueue,
      providers,
      dispatch: settings,
      clock,
      settings: testReconcileSettings(),
    };
    expect(await reconcile(reconcileDeps)).toMatchObject({ polled: 1, resolved: 1 });
    expect(replicate.fetches).toEqual([
      { providerId: "p-1", handle: { get: "https://api.replicate.test/v1/predictions/p-1" } },
    ]);
    expect(await finalizeAll()).toEqual(["succeeded"]);
    expect(stored(job.id).outputs.map((o) => o.url)).toEqual(["https://replicate.delivery/late.png"]);
  });

  it("routes `auto` jobs to it first and to the fallback while its breaker is open", async () => {
    const first = await store({ provider: "auto" });
    expect(await dispatchJob(deps(), { jobId: first.id })).toBe("accepted");
    expect(stored(first.id).attempts.map((a) => a.provider)).toEqual([REPLICATE]);

    breakers.get(REPLICATE)?.open(clock.now());
    const second = await store({ provider: "auto" });
    expect(await dispatchJob(deps(), { jobId: second.id })).toBe("fallback");
    expect(stored(second.id).attempts).toEqual([
      expect.objectContaining({ provider: "self-hosted", reason: `${REPLICATE} circuit open` }),
    ]);
    expect(fallbackQueue.sent.map((s) => s.message.jobId)).toEqual([second.id]);
  });

  it("ignores its late result once the job moved on to another provider's attempt", async () => {
    const job = await store({ provider: "auto" });
    await dispatchJob(deps(), { jobId: job.id });
    // Its attempt gave up retryably too often: the job went to the fallback.
    for (let round = 0; round < 2; round++) {
      const current = stored(job.id);
      const retry = await finalizeResult(deps(), {
        jobId: job.id,
        provider: REPLICATE,
        attempt: current.attempts.length - 1,
        source: "callback",
        observedAt: clock.now().toISOString(),
        result: {
          kind: "rejected",
          providerId: null,
          retryable: true,
          reason: "busy",
          retryAfterSeconds: null,
          httpStatus: 503,
        },
      });
      if (retry === "retrying") await dispatchJob(deps(), { jobId: job.id });
    }
    await finalizeResult(deps(), {
      jobId: job.id,
      provider: REPLICATE,
      attempt: stored(job.id).attempts.length - 1,
      source: "callback",
      observedAt: clock.now().toISOString(),
      result: {
        kind: "rejected",
        providerId: null,
        retryable: true,
        reason: "busy",
        retryAfterSeconds: null,
        httpStatus: 503,
      },
    });
    const moved = stored(job.id);
    expect(moved.attempts.map((a) => a.provider)).toEqual([REPLICATE, REPLICATE, REPLICATE, "self-hosted"]);
    const late = await finalizeResult(deps(), {
      jobId: job.id,
      provider: REPLICATE,
      attempt: 2,
      source: "callback",
      observedAt: clock.now().toISOString(),
      result: {
        kind: "done",
        providerId: null,
        outputs: [{ kind: "url", url: "https://replicate.delivery/late.png" }],
        generationTimeSeconds: null,
        seed: null,
      },
    });
    expect(late).toBe("ignored");
    expect(stored(job.id)).toEqual(moved);
  });
});

describe("the production registry", () => {
  it("has exactly one row per provider id, each with its settings composed into the functions' configuration", () => {
    expect(Object.keys(PROVIDER_REGISTRY).sort()).toEqual([...PROVIDER_IDS].sort());
    expect(Object.keys(PROVIDER_SETTINGS).sort()).toEqual([...PROVIDER_IDS].sort());
    for (const id of PROVIDER_IDS) {
      const module: ProviderModule = PROVIDER_REGISTRY[id];
      expect(module.id).toBe(id);
      // The settings config.ts composes are the module's own.
      expect(module.config).toBe(PROVIDER_SETTINGS[id]);
      const variables = Object.keys(module.config.shape);
      expect(variables.length).toBeGreaterThan(0);
      for (const schema of [providersConfig, dispatchConfig, finalizeConfig, reconcileConfig]) {
        expect(Object.keys(schema.shape)).toEqual(expect.arrayContaining(variables));
      }
    }
    // No two modules claim one variable.
    const all = PROVIDER_IDS.flatMap((id) => Object.keys(PROVIDER_SETTINGS[id].shape));
    expect(new Set(all).size).toBe(all.length);
  });

  it("gives every row a capacity from its settings, and routes `auto` between rows", () => {
    const config = loadConfig(providersConfig, {
      FALLBACK_QUEUE_URL: "https://sqs.example.com/000000000000/fallback",
      SELF_HOSTED_MODELS: MINIMAL_ENV.SELF_HOSTED_MODELS,
      MODELSLAB_MAX_CONCURRENCY: "7",
      SELF_HOSTED_MAX_JOBS: "12",
    });
    expect(PROVIDER_REGISTRY.modelslab.capacity(config)).toBe(7);
    expect(PROVIDER_REGISTRY["self-hosted"].capacity(config)).toBe(12);
    // ModelsLab's submit deadline is its own setting, and so is the first look at a submission in doubt.
    const built = PROVIDER_REGISTRY.modelslab.create(
      loadConfig(providersConfig, {
        FALLBACK_QUEUE_URL: "https://sqs.example.com/000000000000/fallback",
        SELF_HOSTED_MODELS: MINIMAL_ENV.SELF_HOSTED_MODELS,
        MODELSLAB_SUBMIT_TIMEOUT_SECONDS: "45",
      }),
      { queue: () => new FakeQueue(queues.fallback) as never, secret: async () => "k", log: () => undefined },
    );
    expect(built.submitTimeoutSeconds).toBe(45);
    expect(PROVIDER_IDS).toContain(AUTO_ROUTE.primary);
    expect(PROVIDER_IDS).toContain(AUTO_ROUTE.fallback);
  });

  it("routes a callback path for every row that takes callbacks, and refuses one for any other", async () => {
    const normalizers = callbackNormalizers(() => undefined);
    const routes = FUNCTIONS.flatMap((fn) => fn.routes ?? []).map((route) => route.routeKey);
    expect(routes).toContain(`POST ${CALLBACK_PATH}`);
    const endpoint = createCallbackEndpoint({
      resultsQueue: new FakeQueue(queues.results),
      clock: new FakeClock(),
      callbackSecret: "s",
      normalizers,
      maxBodyBytes: 1024,
    });
    for (const id of PROVIDER_IDS) {
      const module: ProviderModule = PROVIDER_REGISTRY[id];
      expect(module.normalizeCallback !== undefined).toBe(module.capabilities.callback);
      const url = new URL(callbackUrl("https://hooks.example.com", "s", id, "01JOB", 0));
      expect(parseCallbackPath(url.pathname)).toEqual({ provider: id, jobId: "01JOB" });
      if (module.capabilities.callback) {
        expect(normalizers.has(id)).toBe(true);
      } else {
        expect(normalizers.has(id)).toBe(false);
        await expect(endpoint(post(url, {}))).rejects.toBeInstanceOf(NotFoundError);
      }
    }
  });

  it("keeps provider clients out of functions that only parse the providers' settings", async () => {
    // Strings only the ModelsLab client and normaliser, and the queue declarations, hold.
    const client = "ModelsLab API key must not be empty";
    const normaliser = "without an id to fetch it by";
    for (const name of ["authorizer", "api", "notify"]) {
      const code = await bundledCode(`functions/${name}.ts`);
      expect(code.includes(client), `${name} bundles the ModelsLab client`).toBe(false);
      expect(code.includes(normaliser), `${name} bundles the ModelsLab normaliser`).toBe(false);
    }
    // The authorizer sends nothing: no queue declarations either.
    expect((await bundledCode("functions/authorizer.ts")).includes('"notifications-dlq"')).toBe(false);
    // The callback function does bundle the normaliser (it parses ModelsLab's callbacks).
    expect((await bundledCode("functions/callback.ts")).includes(normaliser)).toBe(true);
  });

  it("keeps provider ids out of the use cases, ports and HTTP layer (they decide by capabilities)", () => {
    const literals = PROVIDER_IDS.map((id) => `"${id}"`);
    for (const dir of ["shared/usecases", "shared/ports", "shared/http"]) {
      for (const file of readdirSync(dir).filter((name) => name.endsWith(".ts"))) {
        const source = readFileSync(`${dir}/${file}`, "utf8");
        for (const literal of literals) {
          expect(source.includes(literal), `${dir}/${file} names ${literal}`).toBe(false);
        }
      }
    }
  });
});

/** A provider's POST to a callback URL, as the function URL hands it to the endpoint. */
function post(url: URL, body: unknown): APIGatewayProxyEventV2 {
  return {
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    queryStringParameters: Object.fromEntries(url.searchParams),
    headers: { "content-type": "application/json" },
    requestContext: { http: { method: "POST" } },
    body: JSON.stringify(body),
    isBase64Encoded: false,
  } as unknown as APIGatewayProxyEventV2;
}
