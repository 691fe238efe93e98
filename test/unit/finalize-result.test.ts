import { beforeEach, describe, expect, it } from "vitest";
import { normalizeCallback } from "../../shared/adapters/modelslab/normalize.ts";
import { callbackToken } from "../../shared/domain/callback-token.ts";
import type { Job } from "../../shared/domain/job.ts";
import {
  type DispatchMessage,
  type FinishedResult,
  queues,
  type ResultMessage,
} from "../../shared/schemas/messages.ts";
import type { DispatchSettings } from "../../shared/usecases/dispatch-job.ts";
import { dispatchJob } from "../../shared/usecases/dispatch-job.ts";
import { type FinalizeDeps, finalizeResult } from "../../shared/usecases/finalize-result.ts";
import type { ProviderState } from "../../shared/usecases/provider-attempts.ts";
import { receiveCallback } from "../../shared/usecases/receive-callback.ts";
import { reconcile } from "../../shared/usecases/reconcile.ts";
import {
  buildJob,
  FakeClock,
  FakeProvider,
  FakeQueue,
  InMemoryCapacityGate,
  InMemoryJobStore,
} from "../support/fakes.ts";

const settings: DispatchSettings & { storingTimeoutSeconds: number } = {
  callbackBaseUrl: "https://api.example.com",
  callbackSecret: "callback-secret",
  checkMarginSeconds: 60,
  deferBaseSeconds: 2,
  deferMaxSeconds: 60,
  retryBaseSeconds: 5,
  retryMaxSeconds: 120,
  maxRetryableFailures: 3,
  submitTimeoutSeconds: 90,
  queuedResendAfterSeconds: 300,
  storingTimeoutSeconds: 120,
};

const done = (
  providerId: string | null = "9001",
  urls = ["https://pub-x.r2.dev/a.png"],
): Extract<FinishedResult, { kind: "done" }> => ({
  kind: "done",
  providerId,
  outputs: urls.map((url) => ({ kind: "url" as const, url })),
  generationTimeSeconds: 3.1,
  seed: 7,
});

const rejected = (
  retryable: boolean,
  reason = "Generation failed at the provider: NSFW",
): FinishedResult => ({
  kind: "rejected",
  providerId: "9001",
  retryable,
  reason,
  retryAfterSeconds: null,
  httpStatus: null,
});

describe("finalizeResult", () => {
  let clock: FakeClock;
  let jobs: InMemoryJobStore;
  let gate: InMemoryCapacityGate;
  let jobsQueue: FakeQueue<DispatchMessage>;
  let deps: FinalizeDeps;

  const stored = (id: string): Job => {
    const job = jobs.jobs.get(id);
    if (!job) throw new Error(`no job ${id}`);
    return job;
  };

  /** A job the provider accepted as `9001`, holding a capacity slot. */
  const processingJob = async (overrides: Partial<Job> = {}): Promise<Job> => {
    const start = clock.now();
    const state: ProviderState = {
      phase: "accepted",
      providerId: "9001",
      etaSeconds: 10,
      fetchUrl: "https://modelslab.com/api/v6/images/fetch/9001",
      checks: 0,
    };
    const job = buildJob(clock, {
      status: "processing",
      version: 3,
      attempts: [
        {
          route: "modelslab",
          provider_id: "9001",
          started_at: start.toISOString(),
          ended_at: null,
          outcome: "pending",
        },
      ],
      providerState: state as unknown as Record<string, unknown>,
      dueAt: start.getTime() + 70_000,
      ...overrides,
    });
    await jobs.create(job);
    await gate.tryAcquire(job.id, start);
    return job;
  };

  const message = (job: Job, result: FinishedResult): ResultMessage => ({
    jobId: job.id,
    source: "callback",
    observedAt: clock.now().toISOString(),
    result,
  });

  beforeEach(() => {
    clock = new FakeClock();
    jobs = new InMemoryJobStore(clock);
    gate = new InMemoryCapacityGate(5);
    jobsQueue = new FakeQueue(queues.jobs);
    deps = { jobs, gate, jobsQueue, clock, settings };
  });

  it("takes a done result through storing to succeeded, records the outputs and frees the slot", async () => {
    const job = await processingJob();
    clock.advance(5_000);
    const storingSeen: Job[] = [];
    const transition = jobs.transition.bind(jobs);
    jobs.transition = async (j, to, patch) => {
      const written = await transition(j, to, patch);
      if (to === "storing") storingSeen.push(written);
      return written;
    };

    const urls = ["https://pub-x.r2.dev/a.png", "https://pub-x.r2.dev/b.png"];
    expect(await finalizeResult(deps, message(job, done("9001", urls)))).toBe("succeeded");

    expect(storingSeen).toHaveLength(1);
    expect(storingSeen[0]?.dueAt).toBe(clock.now().getTime() + settings.storingTimeoutSeconds * 1000);
    const after = stored(job.id);
    expect(after.status).toBe("succeeded");
    expect(after.dueAt).toBeNull();
    expect(after.providerState).toBeUndefined();
    expect(after.outputs.map((o) => o.url)).toEqual(urls);
    expect(after.attempts).toEqual([
      expect.objectContaining({ outcome: "succeeded", ended_at: clock.now().toISOString() }),
    ]);
    expect(await gate.holders()).toEqual({});
    expect(jobsQueue.sent).toHaveLength(0);
  });

  it("still applies the result when another writer bumped the job between read and write", async () => {
    const job = await processingJob();
    const get = jobs.get.bind(jobs);
    let raced = false;
    jobs.get = async (id) => {
      const read = await get(id);
      const current = jobs.jobs.get(id);
      if (!raced && current) {
        raced = true; // the reconciler pushes dueAt after a poll
        jobs.jobs.set(id, { ...current, dueAt: (current.dueAt ?? 0) + 20_000, version: current.version + 1 });
      }
      return read;
    };

    expect(await finalizeResult(deps, message(job, done()))).toBe("succeeded");
    expect(stored(job.id).status).toBe("succeeded");
    expect(await gate.holders()).toEqual({});
  });

  it("changes nothing on a duplicate result", async () => {
    const job = await processingJob();
    await finalizeResult(deps, message(job, done()));
    const first = structuredClone(stored(job.id));

    expect(await finalizeResult(deps, message(job, done()))).toBe("ignored");
    expect(stored(job.id)).toEqual(first);
  });

  it.each(["failed", "cancelled", "succeeded"] as const)("changes nothing for a %s job", async (status) => {
    const job = buildJob(clock, { status, version: 4, dueAt: null });
    await jobs.create(job);
    expect(await finalizeResult(deps, message(job, done()))).toBe("ignored");
    expect(stored(job.id)).toEqual(job);
  });

  it("ignores a result for an unknown job or a job that is not processing yet", async () => {
    expect(
      await finalizeResult(deps, {
        ...message(buildJob(clock), done()),
        jobId: "01NOPE00000000000000000000",
      }),
    ).toBe("ignored");
    const queued = buildJob(clock);
    await jobs.create(queued);
    expect(await finalizeResult(deps, message(queued, done()))).toBe("ignored");
    expect(stored(queued.id)).toEqual(queued);
  });

  it("ignores a result whose provider id is not the current attempt's", async () => {
    const job = await processingJob();
    expect(await finalizeResult(deps, message(job, done("1234")))).toBe("ignored");
    expect(stored(job.id)).toEqual(job);
    expect(Object.keys(await gate.holders())).toEqual([job.id]);
  });

  it("accepts a result without a provider id, or for an attempt whose id is not known yet", async () => {
    const a = await processingJob();
    expect(await finalizeResult(deps, message(a, done(null)))).toBe("succeeded");

    const b = await processingJob({
      attempts: [
        {
          route: "modelslab",
          provider_id: null,
          started_at: clock.now().toISOString(),
          ended_at: null,
          outcome: "pending",
        },
      ],
      providerState: { phase: "indeterminate" },
    });
    expect(await finalizeResult(deps, message(b, done("555")))).toBe("succeeded");
  });

  it("fails the job with the provider's reason on a non-retryable failure", async () => {
    const job = await processingJob();
    expect(await finalizeResult(deps, message(job, rejected(false)))).toBe("failed");
    const after = stored(job.id);
    expect(after).toMatchObject({
      status: "failed",
      dueAt: null,
      error: { code: "PROVIDER_REJECTED", message: "Generation failed at the provider: NSFW" },
    });
    expect(after.attempts[0]).toMatchObject({ outcome: "failed" });
    expect(await gate.holders()).toEqual({});
  });

  it("re-queues the job with a delayed dispatch message on a retryable failure", async () => {
    const job = await processingJob();
    expect(await finalizeResult(deps, message(job, rejected(true, "Server busy")))).toBe("retrying");
    const after = stored(job.id);
    expect(after.status).toBe("queued");
    expect(after.attempts[0]).toMatchObject({ outcome: "retried", reason: "Server busy" });
    expect(await gate.holders()).toEqual({});
    expect(jobsQueue.sent).toHaveLength(1);
    expect(jobsQueue.sent[0]?.message).toEqual({ jobId: job.id });
    const delay = jobsQueue.sent[0]?.options?.delaySeconds ?? 0;
    expect(delay).toBeGreaterThanOrEqual(1);
    expect(delay).toBeLessThanOrEqual(settings.retryBaseSeconds);
  });

  it("fails a done result without outputs (NO_OUTPUTS)", async () => {
    const job = await processingJob();
    expect(await finalizeResult(deps, message(job, done("9001", [])))).toBe("failed");
    expect(stored(job.id)).toMatchObject({ status: "failed", error: { code: "NO_OUTPUTS" } });
    expect(await gate.holders()).toEqual({});
  });

  it("resumes a job left in storing (a crashed finalize) from its kept result", async () => {
    const state: ProviderState = { phase: "finished", providerId: "9001", result: done("9001") };
    const job = buildJob(clock, {
      status: "storing",
      version: 5,
      attempts: [
        {
          route: "modelslab",
          provider_id: "9001",
          started_at: clock.now().toISOString(),
          ended_at: clock.now().toISOString(),
          outcome: "succeeded",
        },
      ],
      providerState: state as unknown as Record<string, unknown>,
    });
    await jobs.create(job);
    // Any redelivered result for it finishes the job from the stored result.
    expect(await finalizeResult(deps, message(job, done("9001", ["https://other.example/x.png"])))).toBe(
      "succeeded",
    );
    const after = stored(job.id);
    expect(after.status).toBe("succeeded");
    expect(after.outputs.map((o) => o.url)).toEqual(["https://pub-x.r2.dev/a.png"]);
  });

  it("records base64 outputs as data URLs", async () => {
    const job = await processingJob();
    await finalizeResult(
      deps,
      message(job, { ...done(), outputs: [{ kind: "base64", data: "iVBORw0KGgo=" }] }),
    );
    expect(stored(job.id).outputs.map((o) => o.url)).toEqual(["data:image/png;base64,iVBORw0KGgo="]);
  });

  describe("the whole flow through the fakes", () => {
    let provider: FakeProvider;
    let resultsQueue: FakeQueue<ResultMessage>;
    const finalizeAll = async () => {
      const outcomes: string[] = [];
      for (const sent of resultsQueue.sent.splice(0)) {
        outcomes.push(await finalizeResult(deps, sent.message));
      }
      return outcomes;
    };
    beforeEach(() => {
      provider = new FakeProvider();
      resultsQueue = new FakeQueue(queues.results);
    });

    it.each(["accepted", "indeterminate"] as const)(
      "dispatch (%s) → callback → finalize succeeds once, however often the callback comes",
      async (answer) => {
        const job = buildJob(clock);
        await jobs.create(job);
        provider.scriptSubmit(
          answer === "accepted"
            ? { kind: "accepted", providerId: "9001", etaSeconds: 5, fetchUrl: null, futureLinks: [] }
            : { kind: "indeterminate", reason: "timeout" },
        );
        const dispatchDeps = { ...deps, provider, resultsQueue };
        expect(await dispatchJob(dispatchDeps, { jobId: job.id })).toBe(answer);

        const callback = {
          jobId: job.id,
          token: new URL(provider.submissions[0]?.webhook ?? "").searchParams.get("token") ?? undefined,
          readBody: () => ({
            status: "success",
            id: 9001,
            output: ["https://pub-x.r2.dev/out.png"],
            track_id: job.id,
          }),
        };
        expect(callback.token).toBe(callbackToken(settings.callbackSecret, job.id));
        const callbackDeps = {
          resultsQueue,
          clock,
          callbackSecret: settings.callbackSecret,
          normalize: (body: unknown) => normalizeCallback(body),
        };
        await receiveCallback(callbackDeps, callback);
        await receiveCallback(callbackDeps, callback);

        expect(await finalizeAll()).toEqual(["succeeded", "ignored"]);
        expect(stored(job.id)).toMatchObject({ status: "succeeded", dueAt: null });
        expect(stored(job.id).attempts).toEqual([
          expect.objectContaining({
            outcome: "succeeded",
            provider_id: answer === "accepted" ? "9001" : null,
          }),
        ]);
        expect(await gate.holders()).toEqual({});
        expect(provider.submissions).toHaveLength(1);
      },
    );

    it("dispatch → lost callback → reconcile polls → finalize succeeds", async () => {
      const job = buildJob(clock);
      await jobs.create(job);
      provider.scriptSubmit({
        kind: "accepted",
        providerId: "9001",
        etaSeconds: 5,
        fetchUrl: "https://modelslab.com/api/v6/images/fetch/9001",
        futureLinks: [],
      });
      provider.scriptFetch({
        kind: "done",
        providerId: "9001",
        outputs: [{ kind: "url", url: "https://pub-x.r2.dev/out.png" }],
        generationTimeSeconds: 4,
        seed: 1,
      });
      await dispatchJob({ ...deps, provider, resultsQueue }, { jobId: job.id });

      const reconcileDeps = {
        jobs,
        jobsQueue,
        clock,
        provider,
        resultsQueue,
        gate,
        settings: {
          queuedResendAfterSeconds: 300,
          batchSize: 10,
          pollBaseSeconds: 10,
          pollMaxSeconds: 300,
          slotGraceSeconds: 600,
        },
      };
      expect((await reconcile(reconcileDeps)).examined).toBe(0);
      clock.advance((5 + settings.checkMarginSeconds) * 1000);
      expect(await reconcile(reconcileDeps)).toMatchObject({ examined: 1, polled: 1, resolved: 1 });

      expect(await finalizeAll()).toEqual(["succeeded"]);
      expect(stored(job.id).outputs.map((o) => o.url)).toEqual(["https://pub-x.r2.dev/out.png"]);
      expect(await gate.holders()).toEqual({});
      expect((await reconcile(reconcileDeps)).examined).toBe(0);
    });
  });
});
