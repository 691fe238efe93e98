import { describe, expect, it, vi } from "vitest";
import { queues } from "../../shared/schemas/messages.ts";
import { LifecycleJobStore } from "../../shared/usecases/lifecycle.ts";
import { buildJob, FakeClock, FakeEventPublisher, FakeQueue, InMemoryJobStore } from "../support/fakes.ts";

const GRACE_SECONDS = 120;

function setup(publish: "terminal" | "all" = "all") {
  const clock = new FakeClock();
  const inner = new InMemoryJobStore(clock);
  const notifications = new FakeQueue(queues.notifications);
  const events = new FakeEventPublisher();
  const log = vi.fn<(message: string, data: Record<string, unknown>) => void>();
  const store = new LifecycleJobStore(inner, {
    notifications,
    events,
    clock,
    notifyGraceSeconds: GRACE_SECONDS,
    publish,
    log,
  });
  return { clock, inner, notifications, events, log, store };
}

type Env = ReturnType<typeof setup>;

async function stored(env: Env, overrides: Parameters<typeof buildJob>[1] = {}) {
  const job = buildJob(env.clock, overrides);
  env.inner.jobs.set(job.id, structuredClone(job));
  return job;
}

describe("LifecycleJobStore: terminal transitions", () => {
  it.each(["succeeded", "failed", "cancelled"] as const)(
    "to %s sets the outbox flag and its due time in the same write and sends one job-event",
    async (to) => {
      const env = setup();
      const from = to === "succeeded" ? "storing" : "processing";
      const job = await stored(env, { status: from, version: 3 });
      const innerTransition = vi.spyOn(env.inner, "transition");
      const innerUpdate = vi.spyOn(env.inner, "update");
      env.clock.advance(10_000);

      const next = await env.store.transition(job, to, {
        error: to === "failed" ? { code: "PROVIDER_REJECTED", message: "boom" } : null,
      });

      const dueAt = env.clock.now().getTime() + GRACE_SECONDS * 1000;
      expect(innerTransition).toHaveBeenCalledTimes(1);
      expect(innerTransition.mock.calls[0]?.[2]).toMatchObject({ notifyPending: true, dueAt });
      expect(innerUpdate).not.toHaveBeenCalled();
      expect(next).toMatchObject({ status: to, version: 4, notifyPending: true, dueAt });
      expect(await env.inner.get(job.id)).toMatchObject({
        status: to,
        version: 4,
        notifyPending: true,
        dueAt,
      });

      expect(env.notifications.sent).toEqual([{ message: { kind: "job-event", jobId: job.id, status: to } }]);
      // The notify step publishes terminal events from the outbox; the store does not.
      expect(env.events.published).toEqual([]);
    },
  );

  it("keeps the caller's patch next to the outbox fields", async () => {
    const env = setup();
    const job = await stored(env, { status: "processing", version: 2 });
    const next = await env.store.transition(job, "failed", {
      error: { code: "DEADLINE_EXCEEDED", message: "too slow" },
    });
    expect(next.error).toEqual({ code: "DEADLINE_EXCEEDED", message: "too slow" });
    expect(next.notifyPending).toBe(true);
  });

  it("a job-event that cannot be sent is logged and left to the reconciler (the flag is already set)", async () => {
    const env = setup();
    const job = await stored(env, { status: "processing", version: 2 });
    env.notifications.failNext = 1;

    const next = await env.store.transition(job, "cancelled");

    expect(next.status).toBe("cancelled");
    expect(env.notifications.sent).toEqual([]);
    expect(env.log).toHaveBeenCalledWith(
      "notify message not sent; the reconciler will retry",
      expect.objectContaining({ jobId: job.id }),
    );
    // The reconciler finds it: terminal, notifyPending, due after the grace period.
    env.clock.advance(GRACE_SECONDS * 1000);
    expect((await env.store.findDue(env.clock.now(), 10)).map((j) => j.id)).toEqual([job.id]);
  });

  it("a stale transition throws and announces nothing", async () => {
    const env = setup();
    const job = await stored(env, { status: "processing", version: 2 });
    await env.store.transition(job, "storing");
    env.events.published.length = 0;
    await expect(env.store.transition(job, "failed")).rejects.toThrow(/changed/);
    expect(env.events.published).toEqual([]);
    expect(env.notifications.sent).toEqual([]);
  });
});

describe("LifecycleJobStore: non-terminal transitions", () => {
  it("publishes the lifecycle event of the new state and sends no notify message", async () => {
    const env = setup();
    const job = await stored(env, { status: "queued", version: 1 });

    const next = await env.store.transition(job, "processing");

    expect(env.events.published).toHaveLength(1);
    expect(env.events.published[0]).toEqual({
      type: "job.processing",
      detail: expect.objectContaining({
        job_id: job.id,
        tenant_id: "tenant-a",
        status: "processing",
        version: 2,
        occurred_at: next.updatedAt,
      }),
    });
    expect(env.notifications.sent).toEqual([]);
    expect(next.notifyPending).toBeUndefined();
    expect(next.dueAt).toBe(job.dueAt);
  });

  it("processing also sends a job-event when the job asked for processing notifications", async () => {
    const env = setup();
    const job = await stored(env, { status: "queued", version: 1, notifyProcessing: true });

    await env.store.transition(job, "processing");

    expect(env.events.published.map((e) => e.type)).toEqual(["job.processing"]);
    expect(env.notifications.sent).toEqual([
      { message: { kind: "job-event", jobId: job.id, status: "processing" } },
    ]);
  });

  it("other non-terminal states send no message even when the job asked for processing", async () => {
    const env = setup();
    const job = await stored(env, { status: "processing", version: 2, notifyProcessing: true });

    const storing = await env.store.transition(job, "storing");
    expect(env.events.published.map((e) => e.type)).toEqual(["job.storing"]);
    expect(storing.status).toBe("storing");

    const other = await stored(env, { status: "processing", version: 2, notifyProcessing: true });
    await env.store.transition(other, "queued");
    expect(env.events.published.map((e) => e.type)).toEqual(["job.storing", "job.queued"]);
    expect(env.notifications.sent).toEqual([]);
  });

  it("a publish failure is logged and does not fail the transition", async () => {
    const env = setup();
    const job = await stored(env, { status: "queued", version: 1, notifyProcessing: true });
    env.events.failNext = 1;

    const next = await env.store.transition(job, "processing");

    expect(next).toMatchObject({ status: "processing", version: 2 });
    expect((await env.inner.get(job.id))?.status).toBe("processing");
    expect(env.log).toHaveBeenCalledWith("lifecycle event not published", {
      jobId: job.id,
      type: "job.processing",
      error: expect.stringContaining("event bus unavailable"),
    });
    // The notify message still goes out.
    expect(env.notifications.sent).toHaveLength(1);
  });

  it("a publish failure without a logger is swallowed too", async () => {
    const clock = new FakeClock();
    const inner = new InMemoryJobStore(clock);
    const events = new FakeEventPublisher();
    events.failNext = 1;
    const store = new LifecycleJobStore(inner, {
      notifications: new FakeQueue(queues.notifications),
      events,
      clock,
      notifyGraceSeconds: 60,
      publish: "all",
    });
    const job = buildJob(clock);
    inner.jobs.set(job.id, structuredClone(job));
    await expect(store.transition(job, "processing")).resolves.toMatchObject({ status: "processing" });
  });
});

describe("LifecycleJobStore: publish terminal only (the default deployment)", () => {
  it.each(["terminal", "none"] as const)(
    "with publish=%s, create and non-terminal transitions publish nothing; terminal ones still notify",
    async (publish) => {
      const clock = new FakeClock();
      const inner = new InMemoryJobStore(clock);
      const events = new FakeEventPublisher();
      const notifications = new FakeQueue(queues.notifications);
      const store = new LifecycleJobStore(inner, {
        notifications,
        events,
        clock,
        notifyGraceSeconds: 60,
        publish,
      });
      const job = buildJob(clock);
      expect((await store.create(job)).created).toBe(true);
      const processing = await store.transition(job, "processing");
      expect(events.published).toEqual([]);
      await store.transition(processing, "failed");
      // The terminal event is published by the notify step from the outbox, not here.
      expect(events.published).toEqual([]);
      expect(notifications.sent).toEqual([
        { message: { kind: "job-event", jobId: processing.id, status: "failed" } },
      ]);
    },
  );
});

describe("LifecycleJobStore: create and pass-through", () => {
  it("create publishes job.queued", async () => {
    const env = setup();
    const job = buildJob(env.clock);

    const result = await env.store.create(job);

    expect(result.created).toBe(true);
    expect(env.events.published).toEqual([
      {
        type: "job.queued",
        detail: expect.objectContaining({ job_id: job.id, status: "queued", version: 1 }),
      },
    ]);
    expect(env.notifications.sent).toEqual([]);
  });

  it("a create answered from an idempotency key publishes nothing", async () => {
    const env = setup();
    const idem = { keyHash: "k".repeat(64), requestHash: "r".repeat(64), expiresAt: 4_000_000_000 };
    await env.store.create(buildJob(env.clock), idem);
    const again = await env.store.create(buildJob(env.clock), idem);
    expect(again.created).toBe(false);
    expect(env.events.published).toHaveLength(1);
  });

  it("a create whose publish fails still creates the job", async () => {
    const env = setup();
    env.events.failNext = 1;
    const job = buildJob(env.clock);
    await expect(env.store.create(job)).resolves.toMatchObject({ created: true });
    expect(await env.store.get(job.id)).not.toBeNull();
    expect(env.log).toHaveBeenCalledWith("lifecycle event not published", expect.any(Object));
  });

  it("update is a plain write: no event, no message", async () => {
    const env = setup();
    const job = await stored(env, { status: "processing", version: 2 });
    const next = await env.store.update(job, { dueAt: 42 });
    expect(next.dueAt).toBe(42);
    expect(env.events.published).toEqual([]);
    expect(env.notifications.sent).toEqual([]);
  });
});
