import { beforeEach, describe, expect, it } from "vitest";
import { ConflictError, ValidationError } from "../../shared/domain/errors.ts";
import { type DispatchMessage, queues } from "../../shared/schemas/messages.ts";
import { cancelJob } from "../../shared/usecases/cancel-job.ts";
import { reconcile } from "../../shared/usecases/reconcile.ts";
import { type SubmitJobDeps, submitJob } from "../../shared/usecases/submit-job.ts";
import { FakeClock, FakeQueue, InMemoryJobStore } from "../support/fakes.ts";
import { validJobRequest } from "../support/requests.ts";
import { testApiSettings, testReconcileSettings } from "../support/settings.ts";

const settings = testApiSettings();

describe("submitJob", () => {
  let clock: FakeClock;
  let jobs: InMemoryJobStore;
  let queue: FakeQueue<DispatchMessage>;
  let deps: SubmitJobDeps;
  beforeEach(() => {
    clock = new FakeClock();
    jobs = new InMemoryJobStore(clock);
    queue = new FakeQueue(queues.jobs);
    deps = { jobs, jobsQueue: queue, clock, settings };
  });

  it("stores a queued job with the client's fields apart from the provider request, then queues it", async () => {
    const { job, replayed } = await submitJob(deps, {
      tenantId: "t1",
      body: validJobRequest({
        webhook: "https://client.example/hook",
        track_id: "order-7",
        metadata: { a: "b" },
      }),
    });
    expect(replayed).toBe(false);
    expect(job).toMatchObject({
      status: "queued",
      version: 1,
      trackId: "order-7",
      webhook: "https://client.example/hook",
      provider: "auto",
    });
    expect(job.request).not.toHaveProperty("webhook");
    expect(job.request).not.toHaveProperty("track_id");
    // The run bound counts from the start; until then the wait bound (a day by default) applies.
    expect(job.runSeconds).toBe(3_600);
    expect(job.waitUntil).toBe(new Date(clock.now().getTime() + 86_400_000).toISOString());
    expect(job.deadlineAt).toBe(new Date(clock.now().getTime() + 90_000_000).toISOString());
    expect(queue.sent).toEqual([{ message: { jobId: job.id } }]);
    expect(jobs.jobs.get(job.id)?.status).toBe("queued");
  });

  it("keeps the wait and run bounds, the concurrency key and the priority the client sets", async () => {
    const { job } = await submitJob(deps, {
      tenantId: "t1",
      body: validJobRequest({
        deadline_seconds: 600,
        max_wait_seconds: 120,
        concurrency_key: "user@42",
        priority: "high",
      }),
    });
    expect(job).toMatchObject({
      runSeconds: 600,
      waitUntil: new Date(clock.now().getTime() + 120_000).toISOString(),
      concurrencyKey: "user@42",
      priority: "high",
    });
  });

  it("refuses a concurrency key outside its pattern, a wait bound past its maximum and an unknown priority", async () => {
    const error = await submitJob(deps, {
      tenantId: "t1",
      body: validJobRequest({ concurrency_key: "a#b", max_wait_seconds: 8 * 86_400, priority: "urgent" }),
    }).catch((e) => e);
    expect(error).toBeInstanceOf(ValidationError);
    const paths = (error as ValidationError).details.map((d) => d.path);
    expect(paths).toEqual(expect.arrayContaining(["concurrency_key", "max_wait_seconds", "priority"]));
    expect(jobs.jobs.size).toBe(0);
  });

  it("rejects an invalid body naming every bad field and writes nothing", async () => {
    const error = await submitJob(deps, {
      tenantId: "t1",
      body: validJobRequest({ width: 5000, scheduler: "Nope", key: "secret" }),
    }).catch((e) => e);
    expect(error).toBeInstanceOf(ValidationError);
    const paths = (error as ValidationError).details.map((d) => d.path);
    expect(paths).toEqual(expect.arrayContaining(["width", "scheduler", "key"]));
    expect(jobs.jobs.size).toBe(0);
    expect(queue.sent).toHaveLength(0);
  });

  describe("Idempotency-Key", () => {
    it("returns the first job for the same key and body (in any key order)", async () => {
      const first = await submitJob(deps, {
        tenantId: "t1",
        body: validJobRequest({ samples: 2 }),
        idempotencyKey: "k-1",
      });
      const reordered = Object.fromEntries(Object.entries(validJobRequest({ samples: 2 })).reverse());
      const second = await submitJob(deps, { tenantId: "t1", body: reordered, idempotencyKey: "k-1" });
      expect(second.replayed).toBe(true);
      expect(second.job.id).toBe(first.job.id);
      expect(jobs.jobs.size).toBe(1);
      expect(queue.sent).toHaveLength(1);
    });

    it("answers 409 for the same key with a different body", async () => {
      await submitJob(deps, { tenantId: "t1", body: validJobRequest(), idempotencyKey: "k-1" });
      const error = await submitJob(deps, {
        tenantId: "t1",
        body: validJobRequest({ prompt: "changed" }),
        idempotencyKey: "k-1",
      }).catch((e) => e);
      expect(error).toBeInstanceOf(ConflictError);
      expect((error as ConflictError).code).toBe("IDEMPOTENCY_KEY_REUSED");
      expect(jobs.jobs.size).toBe(1);
    });

    it("scopes keys to the tenant and expires them after the TTL", async () => {
      const a = await submitJob(deps, { tenantId: "t1", body: validJobRequest(), idempotencyKey: "k-1" });
      const b = await submitJob(deps, { tenantId: "t2", body: validJobRequest(), idempotencyKey: "k-1" });
      expect(b.job.id).not.toBe(a.job.id);
      clock.advance(86_401_000);
      const c = await submitJob(deps, { tenantId: "t1", body: validJobRequest(), idempotencyKey: "k-1" });
      expect(c.replayed).toBe(false);
      expect(c.job.id).not.toBe(a.job.id);
    });

    it("rejects a malformed key", async () => {
      const error = await submitJob(deps, {
        tenantId: "t1",
        body: validJobRequest(),
        idempotencyKey: "has space",
      }).catch((e) => e);
      expect(error).toMatchObject({ code: "INVALID_IDEMPOTENCY_KEY" });
      expect(jobs.jobs.size).toBe(0);
    });
  });

  it("accepts the job when the queue send fails, and the reconciler re-sends it once due", async () => {
    queue.failNext = 1;
    const deferred: string[] = [];
    const { job } = await submitJob(
      { ...deps, onDeferredSend: (id) => deferred.push(id) },
      { tenantId: "t1", body: validJobRequest() },
    );
    expect(deferred).toEqual([job.id]);
    expect(queue.sent).toHaveLength(0);

    const reconcileDeps = {
      jobs,
      jobsQueue: queue,
      admissionsQueue: new FakeQueue(queues.admissions),
      clock,
      settings: testReconcileSettings(),
    };
    expect((await reconcile(reconcileDeps)).requeued).toBe(0); // not due yet
    clock.advance(300_000);
    expect((await reconcile(reconcileDeps)).requeued).toBe(1);
    expect(queue.sent).toEqual([{ message: { jobId: job.id } }]);
    // dueAt moved on: the next run does not send it again straight away.
    expect((await reconcile(reconcileDeps)).requeued).toBe(0);
  });
});

describe("cancelJob", () => {
  it("cancels a queued job and refuses once terminal", async () => {
    const clock = new FakeClock();
    const jobs = new InMemoryJobStore(clock);
    const { job } = await submitJob(
      { jobs, jobsQueue: new FakeQueue(queues.jobs), clock, settings },
      { tenantId: "t1", body: validJobRequest() },
    );
    const cancelled = await cancelJob({ jobs, clock }, "t1", job.id);
    expect(cancelled).toMatchObject({ status: "cancelled", version: 2, dueAt: null });
    await expect(cancelJob({ jobs, clock }, "t1", job.id)).rejects.toMatchObject({
      code: "JOB_ALREADY_TERMINAL",
    });
    await expect(cancelJob({ jobs, clock }, "t2", job.id)).rejects.toMatchObject({ code: "JOB_NOT_FOUND" });
  });
});
