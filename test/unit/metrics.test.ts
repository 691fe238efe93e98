import middy from "@middy/core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { EmfMetrics } from "../../shared/adapters/metrics/emf-metrics.ts";
import { notificationId } from "../../shared/domain/events.ts";
import type { Job } from "../../shared/domain/job.ts";
import { createLogger } from "../../shared/lambda/logger.ts";
import { createMetrics } from "../../shared/lambda/metrics.ts";
import { METRIC_CATALOG } from "../../shared/ports/metrics.ts";
import { ConfigError, loadConfig, metricsConfig, SHARED_DEFAULTS } from "../../shared/schemas/config.ts";
import { queues } from "../../shared/schemas/messages.ts";
import { dispatchJob } from "../../shared/usecases/dispatch-job.ts";
import { LifecycleJobStore } from "../../shared/usecases/lifecycle.ts";
import { handleNotifyMessage, type NotifyDeps } from "../../shared/usecases/notify.ts";
import { reportGauges } from "../../shared/usecases/report-gauges.ts";
import { RecordingMetrics } from "../support/fake-metrics.ts";
import {
  buildJob,
  FakeClock,
  FakeEventPublisher,
  FakeProvider,
  FakeQueue,
  FakeWebhookSender,
  fakeProviders,
  InMemoryCapacityGate,
  InMemoryCircuitBreaker,
  InMemoryJobStore,
  InMemoryNotificationStore,
  InMemoryWaitingList,
  InMemoryWebhookSettings,
} from "../support/fakes.ts";
import { testDispatchSettings, testNotifySettings } from "../support/settings.ts";

type EmfDocument = {
  _aws: {
    CloudWatchMetrics: {
      Namespace: string;
      Dimensions: string[][];
      Metrics: { Name: string; Unit: string }[];
    }[];
  };
} & Record<string, unknown>;

/** What the EMF adapter prints, as documents: it writes to stdout as Lambda's runtime expects. */
function captureStdout() {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    lines.push(...String(chunk).split("\n").filter(Boolean));
    return true;
  });
  return {
    documents: () =>
      lines.filter((line) => line.includes('"_aws"')).map((line) => JSON.parse(line) as EmfDocument),
    lines,
    restore: () => spy.mockRestore(),
  };
}

const logger = () => {
  const log = createLogger({ POWERTOOLS_LOG_LEVEL: "SILENT" });
  return { log, warn: vi.spyOn(log, "warn") };
};

describe("EmfMetrics (Powertools EMF)", () => {
  let out: ReturnType<typeof captureStdout>;
  beforeEach(() => {
    out = captureStdout();
  });
  afterEach(() => out.restore());

  it("writes one document per dimension group, under the catalog's sets plus the stage, in the namespace", () => {
    const { log } = logger();
    const metrics = new EmfMetrics({ namespace: "TestNs", stage: "qa", logger: log });
    metrics.count("Jobs", { provider: "modelslab", outcome: "failed", code: "NO_OUTPUTS" });
    metrics.count("Jobs", { provider: "modelslab", outcome: "failed", code: "NO_OUTPUTS" });
    metrics.count("Jobs", { provider: "modelslab", outcome: "succeeded" });
    metrics.duration("EndToEndTime", 1200.4, { provider: "modelslab" });
    metrics.duration("EndToEndTime", 800, { provider: "modelslab" });
    expect(out.documents()).toEqual([]); // buffered until the flush
    metrics.publishStoredMetrics();

    const docs = out.documents();
    expect(docs).toHaveLength(3);
    for (const doc of docs) {
      expect(doc._aws.CloudWatchMetrics[0]?.Namespace).toBe("TestNs");
      expect(doc.stage).toBe("qa");
      expect(doc).not.toHaveProperty("service");
      for (const set of doc._aws.CloudWatchMetrics[0]?.Dimensions ?? []) expect(set[0]).toBe("stage");
    }
    const [failed, succeeded, e2e] = docs;
    expect(failed).toMatchObject({ outcome: "failed", provider: "modelslab", code: "NO_OUTPUTS", Jobs: 2 });
    expect(failed?._aws.CloudWatchMetrics[0]?.Dimensions).toEqual([
      ["stage", "outcome"],
      ["stage", "provider", "outcome"],
      ["stage", "outcome", "code"],
    ]);
    expect(succeeded).toMatchObject({ outcome: "succeeded", Jobs: 1 });
    expect(succeeded?._aws.CloudWatchMetrics[0]?.Dimensions).toEqual([
      ["stage", "outcome"],
      ["stage", "provider", "outcome"],
    ]);
    expect(e2e).toMatchObject({ EndToEndTime: [1200, 800] });
    expect(e2e?._aws.CloudWatchMetrics[0]?.Metrics).toEqual([{ Name: "EndToEndTime", Unit: "Milliseconds" }]);
    expect(e2e?._aws.CloudWatchMetrics[0]?.Dimensions).toEqual([["stage"], ["stage", "provider"]]);

    metrics.publishStoredMetrics();
    expect(out.documents()).toHaveLength(3); // the buffer was emptied
  });

  it("prints nothing, not even a warning, for an invocation that recorded nothing", () => {
    const { log, warn } = logger();
    const metrics = new EmfMetrics({ namespace: "TestNs", stage: "qa", logger: log });
    metrics.publishStoredMetrics();
    expect(out.lines).toEqual([]);
    expect(warn).not.toHaveBeenCalled();
  });

  it("splits more than 99 values of a metric over documents that each keep their dimensions", () => {
    const { log } = logger();
    const metrics = new EmfMetrics({ namespace: "TestNs", stage: "qa", logger: log });
    for (let i = 0; i < 150; i++) metrics.duration("SlotWait", i, { provider: "modelslab" });
    metrics.publishStoredMetrics();
    const docs = out.documents();
    expect(docs.map((doc) => (doc.SlotWait as number[]).length)).toEqual([99, 51]);
    for (const doc of docs) {
      expect(doc._aws.CloudWatchMetrics[0]?.Dimensions).toEqual([["stage", "provider"]]);
      expect(doc.provider).toBe("modelslab");
    }
  });

  it("reports and drops a metric recorded without the dimensions its catalog entry needs, never throws", () => {
    const { log, warn } = logger();
    const metrics = new EmfMetrics({ namespace: "TestNs", stage: "qa", logger: log });
    expect(() => metrics.count("Jobs", { provider: "modelslab" })).not.toThrow();
    expect(() => metrics.duration("SlotWait", Number.NaN, { provider: "modelslab" })).not.toThrow();
    metrics.publishStoredMetrics();
    expect(out.documents()).toEqual([]);
    expect(warn).toHaveBeenCalledTimes(2);
    expect(warn.mock.calls[0]?.[0]).toBe("metric not recorded");
  });

  it("is flushed by Powertools' middleware after each invocation, also one that threw", async () => {
    const { log } = logger();
    const { metrics, middleware } = createMetrics({ METRICS_NAMESPACE: "TestNs", STAGE: "qa" }, log);
    const handler = middy(async (event: { fail: boolean }) => {
      metrics.count("Notifications", { outcome: "delivered" });
      if (event.fail) throw new Error("boom");
      return "ok";
    }).use(middleware);
    await handler({ fail: false }, {} as never);
    await expect(handler({ fail: true }, {} as never)).rejects.toThrow("boom");
    expect(out.documents().map((doc) => doc.Notifications)).toEqual([1, 1]);
  });
});

describe("job metrics, recorded by the lifecycle store from each transition written", () => {
  function setup() {
    const clock = new FakeClock();
    const inner = new InMemoryJobStore(clock);
    const metrics = new RecordingMetrics();
    const store = new LifecycleJobStore(inner, {
      notifications: new FakeQueue(queues.notifications),
      events: new FakeEventPublisher(),
      clock,
      notifyGraceSeconds: 60,
      publish: "terminal",
      metrics,
    });
    const stored = (overrides: Partial<Job> = {}): Job => {
      const job = buildJob(clock, overrides);
      inner.jobs.set(job.id, structuredClone(job));
      return job;
    };
    return { clock, store, metrics, stored };
  }
  const attempt = (
    clock: FakeClock,
    provider: "modelslab" | "self-hosted",
    startedMsAgo: number,
    endedMsAgo?: number,
  ) => ({
    provider,
    provider_id: "p-1",
    started_at: new Date(clock.now().getTime() - startedMsAgo).toISOString(),
    ended_at: endedMsAgo === undefined ? null : new Date(clock.now().getTime() - endedMsAgo).toISOString(),
    outcome: endedMsAgo === undefined ? ("pending" as const) : ("succeeded" as const),
  });

  it("a success: one Jobs on its route, its end-to-end, provider and storing times and its bytes", async () => {
    const env = setup();
    const job = env.stored({
      status: "storing",
      createdAt: new Date(env.clock.now().getTime() - 10_000).toISOString(),
    });
    job.attempts = [attempt(env.clock, "modelslab", 8_000, 3_000)];
    await env.store.update(job, { attempts: job.attempts });
    const current = await env.store.get(job.id);
    const output = { content_type: "image/png", sha256: null, width: 64, height: 64 };
    await env.store.transition(current as Job, "succeeded", {
      outputs: [
        { url: "s3://o/a.png", bytes: 1000, ...output },
        { url: "s3://o/b.png", bytes: 234, ...output },
      ],
    });

    expect(env.metrics.records).toEqual([
      { name: "Jobs", value: 1, dims: { provider: "modelslab", outcome: "succeeded" } },
      { name: "EndToEndTime", value: 10_000, dims: { provider: "modelslab" } },
      { name: "ProviderTime", value: 5_000, dims: { provider: "modelslab" } },
      { name: "StoringTime", value: 3_000, dims: { provider: "modelslab" } },
      { name: "OutputBytes", value: 1_234, dims: { provider: "modelslab" } },
    ]);
  });

  it("a failure counts its error code; a cancel before any attempt has the route `none`", async () => {
    const env = setup();
    const failing = env.stored({
      status: "processing",
      attempts: [attempt(env.clock, "self-hosted", 1_000)],
    });
    await env.store.transition(failing, "failed", { error: { code: "NO_OUTPUTS", message: "none" } });
    const cancelling = env.stored({ status: "queued" });
    await env.store.transition(cancelling, "cancelled", { error: { code: "CANCELLED", message: "bye" } });

    expect(env.metrics.records).toEqual([
      { name: "Jobs", value: 1, dims: { provider: "self-hosted", outcome: "failed", code: "NO_OUTPUTS" } },
      { name: "Jobs", value: 1, dims: { provider: "none", outcome: "cancelled" } },
    ]);
  });

  it("queued → processing: the wait for a slot, from creation or from the end of the attempt that re-queued it", async () => {
    const env = setup();
    const first = env.stored({ createdAt: new Date(env.clock.now().getTime() - 4_000).toISOString() });
    await env.store.transition(first, "processing", { attempts: [attempt(env.clock, "modelslab", 0)] });
    const retried = env.stored({
      createdAt: new Date(env.clock.now().getTime() - 60_000).toISOString(),
      attempts: [{ ...attempt(env.clock, "modelslab", 50_000, 7_000), outcome: "retried" }],
    });
    await env.store.transition(retried, "processing", {
      attempts: [...retried.attempts, attempt(env.clock, "self-hosted", 0)],
    });

    expect(env.metrics.records).toEqual([
      { name: "SlotWait", value: 4_000, dims: { provider: "modelslab" } },
      { name: "SlotWait", value: 7_000, dims: { provider: "self-hosted" } },
    ]);
  });

  it("a transition that was not written (a lost race) records nothing", async () => {
    const env = setup();
    const job = env.stored({ status: "processing" });
    await env.store.transition(job, "failed", { error: { code: "NO_OUTPUTS", message: "x" } });
    await expect(
      env.store.transition(job, "failed", { error: { code: "NO_OUTPUTS", message: "x" } }),
    ).rejects.toThrow();
    expect(env.metrics.of("Jobs")).toHaveLength(1);
  });
});

describe("dispatch and notify metrics", () => {
  it("times each provider submission and counts a routing to the fallback", async () => {
    const clock = new FakeClock();
    const jobs = new InMemoryJobStore(clock);
    const metrics = new RecordingMetrics();
    const provider = new FakeProvider({ kind: "accepted", providerId: "1", etaSeconds: 1, handle: {} });
    const breaker = new InMemoryCircuitBreaker();
    const deps = {
      jobs,
      providers: fakeProviders({
        provider,
        gate: new InMemoryCapacityGate(5),
        breaker,
        fallbackQueue: new FakeQueue(queues.fallback),
      }),
      jobsQueue: new FakeQueue(queues.jobs),
      admissionsQueue: new FakeQueue(queues.admissions),
      resultsQueue: new FakeQueue(queues.results),
      clock,
      settings: testDispatchSettings(),
      metrics,
    };
    const direct = buildJob(clock);
    await jobs.create(direct);
    provider.submit = async () => {
      clock.advance(250);
      return { kind: "accepted", providerId: "1", etaSeconds: 1, handle: {} };
    };
    expect(await dispatchJob(deps, { jobId: direct.id })).toBe("accepted");

    breaker.open(clock.now());
    const rerouted = buildJob(clock);
    await jobs.create(rerouted);
    expect(await dispatchJob(deps, { jobId: rerouted.id })).toBe("fallback");

    expect(metrics.of("ProviderSubmitLatency")).toEqual([
      { name: "ProviderSubmitLatency", value: 250, dims: { provider: "modelslab" } },
      { name: "ProviderSubmitLatency", value: 0, dims: { provider: "self-hosted" } },
    ]);
    expect(metrics.of("FallbackRoutings")).toEqual([
      { name: "FallbackRoutings", value: 1, dims: { provider: "self-hosted" } },
    ]);
  });

  it("counts each webhook try's outcome: retried, then dead-lettered when every try failed; delivered", async () => {
    const clock = new FakeClock();
    const jobs = new InMemoryJobStore(clock);
    const metrics = new RecordingMetrics();
    const sender = new FakeWebhookSender(200).answer(500, 500);
    const tenants = new InMemoryWebhookSettings(clock);
    tenants.tenants.set("tenant-a", { url: null, secrets: [] });
    const deps: NotifyDeps = {
      jobs,
      notifications: new InMemoryNotificationStore(),
      tenants,
      notifyQueue: new FakeQueue(queues.notifications),
      deadLetters: new FakeQueue(queues.notificationsDeadLetters),
      events: new FakeEventPublisher(),
      publishTerminalEvents: false,
      sender,
      clock,
      presignOutput: async (key) => `s3://outputs/${key}`,
      settings: testNotifySettings({ retryScheduleSeconds: [1], jitter: 0 }),
      metrics,
    };
    const failing = buildJob(clock, {
      status: "failed",
      notifyPending: true,
      webhook: "https://a.example/hook",
    });
    await jobs.create(failing);
    await handleNotifyMessage(deps, { kind: "job-event", jobId: failing.id, status: "failed" });
    clock.advance(2_000);
    await handleNotifyMessage(deps, {
      kind: "delivery",
      jobId: failing.id,
      notificationId: notificationId(failing.id, "failed"),
      attempt: 2,
      roundStart: 1,
      notBefore: clock.now().getTime(),
    });
    const ok = buildJob(clock, {
      status: "cancelled",
      notifyPending: true,
      webhook: "https://b.example/hook",
    });
    await jobs.create(ok);
    await handleNotifyMessage(deps, { kind: "job-event", jobId: ok.id, status: "cancelled" });

    expect(metrics.of("Notifications").map((record) => record.dims.outcome)).toEqual([
      "retried",
      "dead_lettered",
      "delivered",
    ]);
  });
});

describe("reportGauges (the reconciler's tick)", () => {
  const enqueue = (waiting: InMemoryWaitingList, jobId: string, tenant: string, enqueuedAt: number) =>
    waiting.enqueue({ jobId, tenant, key: "-", priority: "normal", enqueuedAt }, new Date(enqueuedAt));

  it("samples each provider's slots, limit, utilisation, breaker and waiting list", async () => {
    const clock = new FakeClock();
    const metrics = new RecordingMetrics();
    const gate = new InMemoryCapacityGate(4);
    const breaker = new InMemoryCircuitBreaker();
    const waiting = new InMemoryWaitingList();
    await gate.tryAcquire("a", clock.now());
    await gate.tryAcquire("b", clock.now());
    breaker.open(clock.now());
    const now = clock.now().getTime();
    await enqueue(waiting, "w1", "tenant-a", now - 90_000);
    await enqueue(waiting, "w2", "tenant-a", now - 30_000);
    await enqueue(waiting, "w3", "tenant-b", now - 10_000);
    const providers = fakeProviders({
      provider: new FakeProvider(),
      gate,
      breaker,
      waiting,
      fallbackQueue: new FakeQueue(queues.fallback),
      fleetGate: new InMemoryCapacityGate(10),
    });
    await reportGauges({ providers, metrics, clock, perTenant: false });

    const by = (provider: string) =>
      Object.fromEntries(
        metrics.records.filter((r) => r.dims.provider === provider).map((r) => [r.name, r.value]),
      );
    expect(by("modelslab")).toEqual({
      SlotsInUse: 2,
      SlotLimit: 4,
      SlotUtilisation: 50,
      BreakerOpen: 1,
      WaitingJobs: 3,
      OldestWaitingAge: 90,
    });
    expect(by("self-hosted")).toEqual({
      SlotsInUse: 0,
      SlotLimit: 10,
      SlotUtilisation: 0,
      WaitingJobs: 0,
      OldestWaitingAge: 0,
    });
    expect(metrics.of("WaitingJobsByTenant")).toEqual([]);
  });

  it("samples waiting jobs per tenant only when asked", async () => {
    const clock = new FakeClock();
    const metrics = new RecordingMetrics();
    const waiting = new InMemoryWaitingList();
    const now = clock.now().getTime();
    await enqueue(waiting, "w1", "tenant-a", now);
    await enqueue(waiting, "w2", "tenant-a", now);
    await enqueue(waiting, "w3", "tenant-b", now);
    const providers = fakeProviders({
      provider: new FakeProvider(),
      gate: new InMemoryCapacityGate(1),
      waiting,
    });
    await reportGauges({ providers, metrics, clock, perTenant: true });
    expect(metrics.of("WaitingJobsByTenant")).toEqual([
      { name: "WaitingJobsByTenant", value: 2, dims: { tenant: "tenant-a" } },
      { name: "WaitingJobsByTenant", value: 1, dims: { tenant: "tenant-b" } },
    ]);
  });

  it("a provider whose gate cannot be read is reported and skipped; the others are still sampled", async () => {
    const clock = new FakeClock();
    const metrics = new RecordingMetrics();
    const gate = new InMemoryCapacityGate(4);
    gate.snapshot = async () => {
      throw new Error("throttled");
    };
    const log = vi.fn();
    const providers = fakeProviders({
      provider: new FakeProvider(),
      gate,
      fallbackQueue: new FakeQueue(queues.fallback),
    });
    await reportGauges({ providers, metrics, clock, perTenant: false, log });
    expect(log).toHaveBeenCalledWith("gauges of a provider not sampled", {
      provider: "modelslab",
      error: "Error: throttled",
    });
    expect(metrics.records.every((r) => r.dims.provider === "self-hosted")).toBe(true);
    expect(metrics.of("SlotsInUse")).toHaveLength(1);
  });
});

describe("metrics configuration", () => {
  it("has one namespace default, the stage, and per-tenant gauges off unless asked; a bad value is refused", () => {
    expect(loadConfig(metricsConfig, {})).toEqual({
      METRICS_NAMESPACE: SHARED_DEFAULTS.METRICS_NAMESPACE,
      STAGE: "local",
      METRICS_TENANT_GAUGES: false,
    });
    expect(loadConfig(metricsConfig, { METRICS_TENANT_GAUGES: "true", STAGE: "prod" })).toMatchObject({
      STAGE: "prod",
      METRICS_TENANT_GAUGES: true,
    });
    expect(() => loadConfig(metricsConfig, { METRICS_TENANT_GAUGES: "yes" })).toThrow(ConfigError);
    expect(() => loadConfig(metricsConfig, { METRICS_NAMESPACE: "" })).toThrow(ConfigError);
  });
});

describe("the metric catalog", () => {
  it("keeps every metric's dimensions to the few CloudWatch bills for (stage plus at most two)", () => {
    for (const [name, spec] of Object.entries(METRIC_CATALOG)) {
      for (const set of spec.dimensionSets) expect(set.length, name).toBeLessThanOrEqual(2);
    }
  });
});
