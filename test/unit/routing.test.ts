import { beforeEach, describe, expect, it } from "vitest";
import type { Job } from "../../shared/domain/job.ts";
import type { ProviderResult } from "../../shared/ports/provider.ts";
import {
  type AdmissionMessage,
  type DispatchMessage,
  queues,
  type WorkerJobMessage,
} from "../../shared/schemas/messages.ts";
import { workerJobMessageSchema } from "../../shared/schemas/worker-job.ts";
import { type DispatchDeps, type DispatchSettings, dispatchJob } from "../../shared/usecases/dispatch-job.ts";
import { finalizeResult } from "../../shared/usecases/finalize-result.ts";
import { reconcile } from "../../shared/usecases/reconcile.ts";
import {
  buildJob,
  FakeClock,
  FakeProvider,
  FakeQueue,
  fakeProviders,
  InMemoryCapacityGate,
  InMemoryCircuitBreaker,
  InMemoryJobStore,
  InMemoryWaitingList,
} from "../support/fakes.ts";
import { testDispatchSettings, testFinalizeSettings, testReconcileSettings } from "../support/settings.ts";

const settings: DispatchSettings = testDispatchSettings({ maxRetryableFailures: 2 });

const accepted: ProviderResult = {
  kind: "accepted",
  providerId: "9001",
  etaSeconds: 10,
  handle: { fetchUrl: null },
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
  let waiting: InMemoryWaitingList;
  let fleetGate: InMemoryCapacityGate;
  let provider: FakeProvider;
  let breaker: InMemoryCircuitBreaker;
  let jobsQueue: FakeQueue<DispatchMessage>;
  let admissionsQueue: FakeQueue<AdmissionMessage>;
  let fallbackQueue: FakeQueue<WorkerJobMessage>;
  let deps: DispatchDeps;

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
    waiting = new InMemoryWaitingList();
    fleetGate = new InMemoryCapacityGate(8);
    provider = new FakeProvider();
    breaker = new InMemoryCircuitBreaker({ failureThreshold: 3, windowSeconds: 60, coolDownSeconds: 30 });
    jobsQueue = new FakeQueue(queues.jobs);
    admissionsQueue = new FakeQueue(queues.admissions);
    fallbackQueue = new FakeQueue(queues.fallback);
    deps = {
      jobs,
      providers: fakeProviders({ provider, gate, breaker, fallbackQueue, fleetGate, waiting }),
      jobsQueue,
      admissionsQueue,
      resultsQueue: new FakeQueue(queues.results),
      clock,
      settings,
    };
  });

  it("sends a self-hosted job straight to the worker queue: processing, one self-hosted attempt, no provider call, a fleet slot", async () => {
    const job = await store({ provider: "self-hosted" });
    expect(await dispatchJob(deps, { jobId: job.id })).toBe("accepted");

    expect(provider.submissions).toHaveLength(0);
    expect(await gate.holders()).toEqual({});
    expect(Object.keys(await fleetGate.holders())).toEqual([job.id]);
    const after = stored(job.id);
    expect(after.status).toBe("processing");
    expect(after.attempts).toEqual([
      expect.objectContaining({ provider: "self-hosted", outcome: "pending", provider_id: null }),
    ]);
    expect(after.providerState).toMatchObject({ phase: "accepted", providerId: null });
    // Nothing to poll: the next look is the deadline.
    expect(after.dueAt).toBe(Date.parse(job.deadlineAt));
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
    expect(await dispatchJob(deps, { jobId: job.id })).toBe("accepted");
    const message = workerJobMessageSchema.parse(fallbackQueue.sent[0]?.message);
    expect(message.request.control_image).toBe("https://cdn.example.com/@169.254.169.254/edges.png");
  });

  it("still fails a self-hosted job when no fallback queue is configured", async () => {
    const job = await store({ provider: "self-hosted" });
    const withoutFallback = { ...deps, providers: fakeProviders({ provider, gate, breaker }) };
    expect(await dispatchJob(withoutFallback, { jobId: job.id })).toBe("failed");
    expect(stored(job.id).error?.code).toBe("SELF_HOSTED_UNAVAILABLE");
  });

  it("makes a self-hosted job wait while the fleet holds as many jobs as it can", async () => {
    fleetGate.limit = 1;
    const first = await store({ provider: "self-hosted" });
    const second = await store({ provider: "self-hosted" });
    expect(await dispatchJob(deps, { jobId: first.id })).toBe("accepted");
    expect(await dispatchJob(deps, { jobId: second.id })).toBe("waiting");
    expect(stored(second.id)).toMatchObject({ status: "queued", waiting: { provider: "self-hosted" } });
    expect(fallbackQueue.sent.map((s) => s.message.jobId)).toEqual([first.id]);
    // It waits in the fleet's list, with no message: the fleet's next release admits it.
    expect(jobsQueue.sent).toEqual([]);
  });

  it("sends auto jobs to the fallback while the breaker is open; modelslab jobs still go to the provider", async () => {
    breaker.open(clock.now());
    const auto = await store({ provider: "auto" });
    const pinned = await store({ provider: "modelslab" });
    provider.scriptSubmit(accepted);

    expect(await dispatchJob(deps, { jobId: auto.id })).toBe("fallback");
    expect(await dispatchJob(deps, { jobId: pinned.id })).toBe("accepted");
    expect(stored(auto.id).attempts).toEqual([
      expect.objectContaining({ provider: "self-hosted", reason: "modelslab circuit open" }),
    ]);
    expect(stored(pinned.id).attempts).toEqual([expect.objectContaining({ provider: "modelslab" })]);
    expect(provider.submissions.map((s) => s.jobId)).toEqual([pinned.id]);
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
    expect(stored(probe.id).attempts.at(-1)?.provider).toBe("modelslab");
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
    expect(Object.keys(await fleetGate.holders())).toEqual([job.id]);
    expect(provider.submissions).toHaveLength(0);
  });

  it("an auto job the fallback has no room for waits instead (the breaker is open)", async () => {
    breaker.open(clock.now());
    fleetGate.limit = 0;
    const job = await store({ provider: "auto" });
    expect(await dispatchJob(deps, { jobId: job.id })).toBe("waiting");
    expect(stored(job.id)).toMatchObject({
      status: "queued",
      attempts: [],
      waiting: { provider: "self-hosted" },
    });
    expect(fallbackQueue.sent).toHaveLength(0);
    expect(await gate.holders()).toEqual({});
  });

  it("a failed probe opens the breaker again", async () => {
    breaker.open(clock.now());
    clock.advance(31_000);
    const job = await store({ provider: "auto" });
    provider.scriptSubmit({ kind: "indeterminate", reason: "timeout" });
    expect(await dispatchJob(deps, { jobId: job.id })).toBe("indeterminate");
    expect(await breaker.state(clock.now())).toBe("open");
  });

  it("routes an auto job to the fallback when its estimated start is past its wait bound", async () => {
    // One slot, held; a slot turns over in 10 minutes: the next start is about 10 minutes away.
    gate.limit = 1;
    gate.avgHoldMs = 600_000;
    await gate.tryAcquire("running", clock.now());
    const inMinutes = (minutes: number) => new Date(clock.now().getTime() + minutes * 60_000).toISOString();
    const late = await store({ provider: "auto", waitUntil: inMinutes(2) });
    const early = await store({ provider: "auto", waitUntil: inMinutes(60) });
    const pinned = await store({ provider: "modelslab", waitUntil: inMinutes(2) });
    expect(await dispatchJob(deps, { jobId: late.id })).toBe("fallback");
    expect(stored(late.id).attempts[0]?.reason).toContain("capacity");
    expect(stored(late.id).waiting).toBeUndefined();
    expect(await dispatchJob(deps, { jobId: early.id })).toBe("waiting");
    expect(await dispatchJob(deps, { jobId: pinned.id })).toBe("waiting");
    expect(waiting.waitingJobIds()).toEqual([early.id, pinned.id]);
  });

  it("at the sweep: a waiting auto job whose estimated start has moved past its wait bound goes to the fallback", async () => {
    gate.limit = 1;
    gate.avgHoldMs = 600_000; // a slot turns over in 10 minutes
    await gate.tryAcquire("running", clock.now());
    const job = await store({
      provider: "auto",
      waitUntil: new Date(clock.now().getTime() + 3_600_000).toISOString(),
    });
    expect(await dispatchJob(deps, { jobId: job.id })).toBe("waiting");
    // On time for now; the reconciler looks again half-way to its wait bound.
    expect(stored(job.id).dueAt).toBe(clock.now().getTime() + 1_800_000);

    // The provider slowed down: a slot now turns over in an hour.
    gate.avgHoldMs = 3_600_000;
    clock.advance(1_800_000);
    // The slot is busy with a job that started a moment ago (nothing for the reconciler to heal).
    gate.slots.set("running", clock.now().getTime());
    const reconciled = await reconcile({
      jobs,
      jobsQueue,
      admissionsQueue,
      clock,
      settings: testReconcileSettings(),
      providers: deps.providers,
    });
    expect(reconciled.requeued).toBe(1);
    const resent = jobsQueue.sent.at(-1)?.message;
    expect(resent).toEqual({ jobId: job.id });
    expect(await dispatchJob(deps, resent as DispatchMessage)).toBe("fallback");
    expect(stored(job.id).attempts).toEqual([
      expect.objectContaining({
        provider: "self-hosted",
        reason: "no modelslab capacity before the wait bound",
      }),
    ]);
    expect(waiting.waitingJobIds()).toEqual([]);
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
    expect(routed.attempts.map((a) => [a.provider, a.outcome])).toEqual([
      ["modelslab", "retried"],
      ["modelslab", "retried"],
      ["modelslab", "failed"],
      ["self-hosted", "pending"],
    ]);
    expect(await gate.holders()).toEqual({});
    expect(Object.keys(await fleetGate.holders())).toEqual([auto.id]);
    expect(stored(pinned.id)).toMatchObject({ status: "failed", error: { code: "PROVIDER_UNAVAILABLE" } });
    expect(fallbackQueue.sent.map((s) => s.message.jobId)).toEqual([auto.id]);
    expect(fallbackQueue.sent[0]?.message.attempt).toBe(3);
  });

  it("an auto job whose provider attempts keep failing fails as before when the fallback has no room", async () => {
    const auto = await store({ provider: "auto" });
    breaker.settings.failureThreshold = 100;
    fleetGate.limit = 0;
    for (let round = 0; round < 3; round++) {
      provider.scriptSubmit(unavailable);
      await dispatchJob(deps, { jobId: auto.id });
    }
    expect(stored(auto.id)).toMatchObject({ status: "failed", error: { code: "PROVIDER_UNAVAILABLE" } });
    expect(stored(auto.id).attempts.map((a) => a.provider)).toEqual(["modelslab", "modelslab", "modelslab"]);
    expect(fallbackQueue.sent).toHaveLength(0);
    expect(await gate.holders()).toEqual({});
  });

  describe("an auto job setting a parameter the fleet cannot honour never goes to the fleet", () => {
    const storeUnsupported = (overrides: Partial<Job> = {}) =>
      store({
        provider: "auto",
        request: { ...buildJob(clock).request, lora_model: "contrast-fix", upscale: "yes" } as Job["request"],
        ...overrides,
      });

    it("breaker open: it goes to the provider, as a modelslab job does", async () => {
      breaker.open(clock.now());
      const job = await storeUnsupported();
      provider.scriptSubmit(accepted);
      expect(await dispatchJob(deps, { jobId: job.id })).toBe("accepted");
      expect(stored(job.id).attempts).toEqual([expect.objectContaining({ provider: "modelslab" })]);
      expect(fallbackQueue.sent).toHaveLength(0);
      expect(await fleetGate.holders()).toEqual({});
    });

    it("breaker open, neutral values (upscale no, safety_checker no): it still goes to the fleet", async () => {
      breaker.open(clock.now());
      const job = await store({
        provider: "auto",
        request: { ...buildJob(clock).request, upscale: "no", safety_checker: "no" } as Job["request"],
      });
      expect(await dispatchJob(deps, { jobId: job.id })).toBe("fallback");
      expect(fallbackQueue.sent.map((s) => s.message.jobId)).toEqual([job.id]);
    });

    it.each([
      ["a model_id the fleet's catalog lacks", { model_id: "flux-dev" }],
      [
        "auto_hint with an annotator whose weights the model lacks",
        { controlnet_model: "depth", controlnet_type: "depth", auto_hint: "yes" },
      ],
      ["a ControlNet the model lacks", { controlnet_model: "mlsd", controlnet_type: "mlsd" }],
    ])("breaker open, %s: it goes to the provider, never to the fleet", async (_, params) => {
      breaker.open(clock.now());
      const job = await store({
        provider: "auto",
        request: { ...buildJob(clock).request, ...params } as Job["request"],
      });
      provider.scriptSubmit(accepted);
      expect(await dispatchJob(deps, { jobId: job.id })).toBe("accepted");
      expect(stored(job.id).attempts).toEqual([expect.objectContaining({ provider: "modelslab" })]);
      expect(fallbackQueue.sent).toHaveLength(0);
    });

    it("no capacity before its wait bound: it waits for the provider", async () => {
      gate.limit = 1;
      gate.avgHoldMs = 600_000;
      await gate.tryAcquire("running", clock.now());
      const job = await storeUnsupported({
        waitUntil: new Date(clock.now().getTime() + 120_000).toISOString(),
      });
      expect(await dispatchJob(deps, { jobId: job.id })).toBe("waiting");
      expect(stored(job.id)).toMatchObject({ status: "queued", attempts: [] });
      expect(fallbackQueue.sent).toHaveLength(0);
    });

    it("retryable failures exhausted: it fails as a modelslab job does", async () => {
      breaker.settings.failureThreshold = 100;
      const job = await storeUnsupported();
      for (let round = 0; round < 3; round++) {
        provider.scriptSubmit(unavailable);
        await dispatchJob(deps, { jobId: job.id });
      }
      expect(stored(job.id)).toMatchObject({ status: "failed", error: { code: "PROVIDER_UNAVAILABLE" } });
      expect(stored(job.id).attempts.map((a) => a.provider)).toEqual(["modelslab", "modelslab", "modelslab"]);
      expect(fallbackQueue.sent).toHaveLength(0);
      expect(await fleetGate.holders()).toEqual({});
    });
  });

  it("finalize: a worker result completes the self-hosted attempt; a stale provider result for it is ignored, and vice versa", async () => {
    const job = await store({ provider: "self-hosted" });
    await dispatchJob(deps, { jobId: job.id });
    const finalizeDeps = { ...deps, settings: testFinalizeSettings(settings) };
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
        provider: "modelslab",
        attempt: 0,
        source: "callback",
        observedAt,
        result: done("9001"),
      }),
    ).toBe("ignored");
    expect(
      await finalizeResult(finalizeDeps, {
        jobId: job.id,
        provider: "self-hosted",
        attempt: 0,
        source: "worker",
        observedAt,
        result: done(null),
      }),
    ).toBe("succeeded");
    expect(stored(job.id).attempts).toEqual([
      expect.objectContaining({ provider: "self-hosted", outcome: "succeeded" }),
    ]);
    // The attempt's fleet slot went back when it ended.
    expect(await fleetGate.holders()).toEqual({});

    const pinned = await store({ provider: "modelslab" });
    provider.scriptSubmit(accepted);
    await dispatchJob(deps, { jobId: pinned.id });
    expect(
      await finalizeResult(finalizeDeps, {
        jobId: pinned.id,
        provider: "self-hosted",
        attempt: 0,
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
    expect(stored(job.id)).toMatchObject({ status: "processing", providerState: { phase: "submitting" } });
    // The attempt keeps its fleet slot: it is still to be sent.
    expect(Object.keys(await fleetGate.holders())).toEqual([job.id]);

    clock.advance((settings.queuedResendAfterSeconds + 1) * 1000);
    const report = await reconcile({
      jobs,
      jobsQueue,
      admissionsQueue,
      resultsQueue: new FakeQueue(queues.results),
      providers: deps.providers,
      dispatch: settings,
      clock,
      settings: testReconcileSettings(),
    });
    expect(report.requeued).toBe(1);
    expect(fallbackQueue.sent.map((s) => s.message.jobId)).toEqual([job.id]);
    expect(stored(job.id).providerState).toMatchObject({ phase: "accepted" });
    expect(stored(job.id).attempts).toHaveLength(1);
  });
});
