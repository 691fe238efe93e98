import { beforeEach, describe, expect, it } from "vitest";
import type { Job } from "../../shared/domain/job.ts";
import type { ProviderResult } from "../../shared/ports/provider.ts";
import { type DispatchMessage, queues, type WorkerJobMessage } from "../../shared/schemas/messages.ts";
import { workerJobMessageSchema } from "../../shared/schemas/worker-job.ts";
import { type DispatchDeps, type DispatchSettings, dispatchJob } from "../../shared/usecases/dispatch-job.ts";
import { finalizeResult } from "../../shared/usecases/finalize-result.ts";
import { reconcile } from "../../shared/usecases/reconcile.ts";
import {
  buildJob,
  FakeClock,
  FakeProvider,
  FakeQueue,
  InMemoryCapacityGate,
  InMemoryCircuitBreaker,
  InMemoryJobStore,
} from "../support/fakes.ts";

const settings: DispatchSettings = {
  callbackBaseUrl: "https://api.example.com/",
  callbackSecret: "callback-secret",
  checkMarginSeconds: 60,
  deferBaseSeconds: 2,
  deferMaxSeconds: 60,
  retryBaseSeconds: 5,
  retryMaxSeconds: 120,
  maxRetryableFailures: 2,
  submitTimeoutSeconds: 90,
  queuedResendAfterSeconds: 300,
  expectedRunSeconds: 120,
};

const accepted: ProviderResult = {
  kind: "accepted",
  providerId: "9001",
  etaSeconds: 10,
  fetchUrl: null,
  futureLinks: [],
};
const unavailable: ProviderResult = {
  kind: "rejected",
  providerId: null,
  retryable: true,
  reason: "503 Service Unavailable",
  retryAfterSeconds: null,
  httpStatus: 503,
};

describe("routing to the self-hosted fallback", () => {
  let clock: FakeClock;
  let jobs: InMemoryJobStore;
  let gate: InMemoryCapacityGate;
  let provider: FakeProvider;
  let breaker: InMemoryCircuitBreaker;
  let jobsQueue: FakeQueue<DispatchMessage>;
  let fallbackQueue: FakeQueue<WorkerJobMessage>;
  let deps: DispatchDeps & { fallbackQueue: FakeQueue<WorkerJobMessage> };

  const store = async (overrides: Partial<Job> = {}): Promise<Job> => {
    const job = buildJob(clock, overrides);
    await jobs.create(job);
    return job;
  };
  const stored = (id: string) => jobs.jobs.get(id) as Job;

  beforeEach(() => {
    clock = new FakeClock();
    jobs = new InMemoryJobStore(clock);
    gate = new InMemoryCapacityGate(5);
    provider = new FakeProvider();
    breaker = new InMemoryCircuitBreaker({ failureThreshold: 3, windowSeconds: 60, coolDownSeconds: 30 });
    jobsQueue = new FakeQueue(queues.jobs);
    fallbackQueue = new FakeQueue(queues.fallback);
    deps = {
      jobs,
      gate,
      provider,
      breaker,
      jobsQueue,
      resultsQueue: new FakeQueue(queues.results),
      fallbackQueue,
      clock,
      settings,
    };
  });

  it("sends a self-hosted job straight to the worker queue: processing, one self-hosted attempt, no provider call, no slot", async () => {
    const job = await store({ provider: "self-hosted" });
    expect(await dispatchJob(deps, { jobId: job.id })).toBe("fallback");

    expect(provider.submissions).toHaveLength(0);
    expect(await gate.holders()).toEqual({});
    const after = stored(job.id);
    expect(after.status).toBe("processing");
    expect(after.attempts).toEqual([
      expect.objectContaining({ route: "self-hosted", outcome: "pending", provider_id: null }),
    ]);
    expect(after.providerState).toMatchObject({ phase: "self-hosted", sent: true });
    expect(fallbackQueue.sent).toHaveLength(1);
    const message = workerJobMessageSchema.parse(fallbackQueue.sent[0]?.message);
    expect(message).toMatchObject({
      jobId: job.id,
      tenantId: job.tenantId,
      attempt: 0,
      outputsPrefix: `${job.tenantId}/${job.id}`,
    });
    // A duplicate dispatch message changes nothing.
    expect(await dispatchJob(deps, { jobId: job.id })).toBe("ignored");
    expect(fallbackQueue.sent).toHaveLength(1);
  });

  it("sends the worker image URLs as their normalised href, the host the address rules checked", async () => {
    const job = await store({
      provider: "self-hosted",
      request: {
        ...buildJob(clock).request,
        control_image: "https://cdn.example.com\\@169.254.169.254/edges.png",
      } as Job["request"],
    });
    expect(await dispatchJob(deps, { jobId: job.id })).toBe("fallback");
    const message = workerJobMessageSchema.parse(fallbackQueue.sent[0]?.message);
    expect(message.request.control_image).toBe("https://cdn.example.com/@169.254.169.254/edges.png");
  });

  it("still fails a self-hosted job when no fallback queue is configured", async () => {
    const job = await store({ provider: "self-hosted" });
    const { fallbackQueue: _none, ...withoutFallback } = deps;
    expect(await dispatchJob(withoutFallback, { jobId: job.id })).toBe("failed");
    expect(stored(job.id).error?.code).toBe("SELF_HOSTED_UNAVAILABLE");
  });

  it("sends auto jobs to the fallback while the breaker is open; modelslab jobs still go to the provider", async () => {
    breaker.open(clock.now());
    const auto = await store({ provider: "auto" });
    const pinned = await store({ provider: "modelslab" });
    provider.scriptSubmit(accepted);

    expect(await dispatchJob(deps, { jobId: auto.id })).toBe("fallback");
    expect(await dispatchJob(deps, { jobId: pinned.id })).toBe("accepted");
    expect(stored(auto.id).attempts).toEqual([
      expect.objectContaining({ route: "self-hosted", reason: "provider circuit open" }),
    ]);
    expect(stored(pinned.id).attempts).toEqual([expect.objectContaining({ route: "modelslab" })]);
    expect(provider.submissions.map((s) => s.trackId)).toEqual([pinned.id]);
  });

  it("opens the breaker after N retryable failures; half-open lets exactly one probe through; its success closes it", async () => {
    for (let i = 0; i < 3; i++) {
      const job = await store({ provider: "auto" });
      provider.scriptSubmit(unavailable);
      expect(await dispatchJob(deps, { jobId: job.id })).toBe("retrying");
    }
    expect(await breaker.state(clock.now())).toBe("open");

    clock.advance(31_000);
    expect(await breaker.state(clock.now())).toBe("half-open");
    const probe = await store({ provider: "auto" });
    const other = await store({ provider: "auto" });
    provider.scriptSubmit(accepted);
    expect(await dispatchJob(deps, { jobId: probe.id })).toBe("accepted");
    // The probe's success closed it: auto jobs go to the provider again.
    expect(await breaker.state(clock.now())).toBe("closed");
    expect(stored(probe.id).attempts.at(-1)?.route).toBe("modelslab");
    provider.scriptSubmit(accepted);
    expect(await dispatchJob(deps, { jobId: other.id })).toBe("accepted");
  });

  it("half-open: a second dispatcher does not get the probe and goes to the fallback, giving its slot back", async () => {
    breaker.open(clock.now());
    clock.advance(31_000);
    expect(await breaker.claimProbe(clock.now())).toBe(true); // someone else holds the probe
    const job = await store({ provider: "auto" });
    expect(await dispatchJob(deps, { jobId: job.id })).toBe("fallback");
    expect(await gate.holders()).toEqual({});
    expect(provider.submissions).toHaveLength(0);
  });

  it("a failed probe opens the breaker again", async () => {
    breaker.open(clock.now());
    clock.advance(31_000);
    const job = await store({ provider: "auto" });
    provider.scriptSubmit({ kind: "indeterminate", reason: "timeout" });
    expect(await dispatchJob(deps, { jobId: job.id })).toBe("indeterminate");
    expect(await breaker.state(clock.now())).toBe("open");
  });

  it("routes an auto job to the fallback when waiting for capacity would pass deadline − expected run time", async () => {
    gate.limit = 0;
    // 120.5 s left, 120 s expected run: any wait (at least 1 s) comes too late.
    const late = await store({
      provider: "auto",
      deadlineAt: new Date(clock.now().getTime() + 120_500).toISOString(),
    });
    const early = await store({ provider: "auto" });
    const pinned = await store({
      provider: "modelslab",
      deadlineAt: new Date(clock.now().getTime() + 121_000).toISOString(),
    });
    expect(await dispatchJob(deps, { jobId: late.id })).toBe("fallback");
    expect(stored(late.id).attempts[0]?.reason).toContain("capacity");
    expect(await dispatchJob(deps, { jobId: early.id })).toBe("deferred");
    expect(await dispatchJob(deps, { jobId: pinned.id })).toBe("deferred");
  });

  it("after MAX_RETRYABLE_FAILURES an auto job goes to the fallback instead of failing; a modelslab job fails", async () => {
    const auto = await store({ provider: "auto" });
    const pinned = await store({ provider: "modelslab" });
    breaker.settings.failureThreshold = 100; // keep the breaker out of this
    for (const job of [auto, pinned]) {
      for (let round = 0; round < 3; round++) {
        provider.scriptSubmit(unavailable);
        await dispatchJob(deps, { jobId: job.id });
      }
    }
    const routed = stored(auto.id);
    expect(routed.status).toBe("processing");
    expect(routed.attempts.map((a) => [a.route, a.outcome])).toEqual([
      ["modelslab", "retried"],
      ["modelslab", "retried"],
      ["modelslab", "failed"],
      ["self-hosted", "pending"],
    ]);
    expect(await gate.holders()).toEqual({});
    expect(stored(pinned.id)).toMatchObject({ status: "failed", error: { code: "PROVIDER_UNAVAILABLE" } });
    expect(fallbackQueue.sent.map((s) => s.message.jobId)).toEqual([auto.id]);
    expect(fallbackQueue.sent[0]?.message.attempt).toBe(3);
  });

  it("finalize: a worker result completes the self-hosted attempt; a stale provider result for it is ignored, and vice versa", async () => {
    const job = await store({ provider: "self-hosted" });
    await dispatchJob(deps, { jobId: job.id });
    const finalizeDeps = { ...deps, settings: { ...settings, storingTimeoutSeconds: 60 } };
    const done = (providerId: string | null) => ({
      kind: "done" as const,
      providerId,
      outputs: [{ kind: "url" as const, url: `s3://outputs/${job.tenantId}/${job.id}/0.png` }],
      generationTimeSeconds: 1,
      seed: 1,
    });
    const observedAt = clock.now().toISOString();
    expect(
      await finalizeResult(finalizeDeps, {
        jobId: job.id,
        source: "callback",
        observedAt,
        result: done("9001"),
      }),
    ).toBe("ignored");
    expect(
      await finalizeResult(finalizeDeps, { jobId: job.id, source: "worker", observedAt, result: done(null) }),
    ).toBe("succeeded");
    expect(stored(job.id).attempts).toEqual([
      expect.objectContaining({ route: "self-hosted", outcome: "succeeded" }),
    ]);

    const pinned = await store({ provider: "modelslab" });
    provider.scriptSubmit(accepted);
    await dispatchJob(deps, { jobId: pinned.id });
    expect(
      await finalizeResult(finalizeDeps, {
        jobId: pinned.id,
        source: "worker",
        observedAt,
        result: done(null),
      }),
    ).toBe("ignored");
  });

  it("a worker message whose send was lost is sent again by the reconciler", async () => {
    const job = await store({ provider: "self-hosted" });
    fallbackQueue.failNext = 1;
    await expect(dispatchJob(deps, { jobId: job.id })).rejects.toThrow("queue unavailable");
    expect(stored(job.id)).toMatchObject({ status: "processing", providerState: { sent: false } });

    clock.advance((settings.queuedResendAfterSeconds + 1) * 1000);
    const report = await reconcile({
      jobs,
      jobsQueue,
      clock,
      fallbackQueue,
      settings: {
        queuedResendAfterSeconds: 300,
        batchSize: 10,
        pollBaseSeconds: 10,
        pollMaxSeconds: 60,
        slotGraceSeconds: 60,
      },
    });
    expect(report.requeued).toBe(1);
    expect(fallbackQueue.sent.map((s) => s.message.jobId)).toEqual([job.id]);
    expect(stored(job.id).providerState).toMatchObject({ phase: "self-hosted", sent: true });
  });
});
