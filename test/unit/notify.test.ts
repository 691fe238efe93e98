import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import type { Job } from "../../shared/domain/job.ts";
import type { NotificationRecord } from "../../shared/ports/index.ts";
import { type NotifyMessage, queues } from "../../shared/schemas/messages.ts";
import { newWebhookSecret } from "../../shared/usecases/authenticate.ts";
import { handleNotifyMessage, type NotifyDeps, replayNotification } from "../../shared/usecases/notify.ts";
import { presentJob } from "../../shared/usecases/present-job.ts";
import {
  buildJob,
  FakeClock,
  FakeEventPublisher,
  FakeQueue,
  FakeWebhookSender,
  InMemoryJobStore,
  InMemoryNotificationStore,
  InMemoryWebhookSettings,
} from "../support/fakes.ts";
import { testNotifySettings } from "../support/settings.ts";

const SECRET_A = `whsec_${Buffer.alloc(32, 1).toString("base64")}`;
const SECRET_B = `whsec_${Buffer.alloc(32, 2).toString("base64")}`;
const SCHEDULE = [5, 60, 300];

function setup(options: { now?: Date; schedule?: number[]; fallback?: number | null } = {}) {
  const clock = new FakeClock(options.now);
  const jobs = new InMemoryJobStore(clock);
  const notifications = new InMemoryNotificationStore();
  const tenants = new InMemoryWebhookSettings(clock);
  const notifyQueue = new FakeQueue(queues.notifications);
  const deadLetters = new FakeQueue(queues.notificationsDeadLetters);
  const events = new FakeEventPublisher();
  const sender = new FakeWebhookSender(options.fallback === undefined ? 200 : options.fallback);
  const deps: NotifyDeps = {
    jobs,
    notifications,
    tenants,
    notifyQueue,
    deadLetters,
    events,
    sender,
    clock,
    // Unsigned: a stored output is shown as the job records it.
    presignOutput: async (key) => `s3://outputs/${key}`,
    publishTerminalEvents: true,
    settings: testNotifySettings({ retryScheduleSeconds: options.schedule ?? SCHEDULE, jitter: 0 }),
    random: () => 0.5,
  };
  tenants.tenants.set("tenant-a", {
    url: null,
    secrets: [{ secret: SECRET_A, createdAt: clock.now().toISOString(), retiresAt: null }],
  });
  return { clock, jobs, notifications, tenants, notifyQueue, deadLetters, events, sender, deps };
}

type Env = ReturnType<typeof setup>;

/** A job that reached `succeeded` through the lifecycle store: outbox flag set, due soon. */
function terminalJob(env: Env, overrides: Partial<Job> = {}): Job {
  const job = buildJob(env.clock, {
    status: "succeeded",
    version: 4,
    notifyPending: true,
    dueAt: env.clock.now().getTime() + 60_000,
    outputs: [
      {
        url: "s3://outputs/tenant-a/out-0.png",
        key: "tenant-a/out-0.png",
        content_type: "image/png",
        bytes: 1234,
        sha256: "ab".repeat(32),
        width: 512,
        height: 512,
      },
    ],
    ...overrides,
  });
  env.jobs.jobs.set(job.id, structuredClone(job));
  return job;
}

const jobEvent = (job: Pick<Job, "id" | "status">): NotifyMessage => ({
  kind: "job-event",
  jobId: job.id,
  status: job.status,
});

const deliveries = (queue: FakeQueue<NotifyMessage>) =>
  queue.sent.flatMap((s) => (s.message.kind === "delivery" ? [{ ...s, message: s.message }] : []));

async function onlyRecord(env: Env, jobId: string): Promise<NotificationRecord> {
  const records = await env.notifications.listForJob(jobId);
  expect(records).toHaveLength(1);
  return records[0] as NotificationRecord;
}

/** Hands the last delivery message back to the use case once its time has come. */
async function runNextDelivery(env: Env) {
  const next = deliveries(env.notifyQueue).at(-1);
  if (!next) throw new Error("no delivery message queued");
  env.clock.advance(next.message.notBefore - env.clock.now().getTime());
  return handleNotifyMessage(env.deps, next.message);
}

describe("notify: job events (the outbox step)", () => {
  it("records a terminal job's notification, publishes its lifecycle event, clears the outbox and delivers", async () => {
    const env = setup();
    const job = terminalJob(env);

    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("delivered");

    expect(env.events.published).toHaveLength(1);
    expect(env.events.published[0]).toMatchObject({
      type: "job.succeeded",
      detail: { job_id: job.id, tenant_id: "tenant-a", status: "succeeded", version: 4 },
    });

    const record = await onlyRecord(env, job.id);
    expect(record.id).toBe(`msg_${job.id}_succeeded`);
    expect(record).toMatchObject({
      jobId: job.id,
      tenantId: "tenant-a",
      type: "job.succeeded",
      url: "https://client.example/hook",
      state: "delivered",
      createdAt: env.clock.now().toISOString(),
    });
    expect(JSON.parse(record.payload)).toEqual({
      type: "job.succeeded",
      timestamp: job.updatedAt,
      data: JSON.parse(JSON.stringify(presentJob(job))),
    });
    expect(record.attempts).toEqual([
      {
        attempt: 1,
        at: env.clock.now().toISOString(),
        status: 200,
        error: null,
        duration_ms: 12,
      },
    ]);

    const stored = await env.jobs.get(job.id);
    expect(stored?.notifyPending).toBe(false);
    expect(stored?.dueAt).toBeNull();

    expect(env.sender.sent).toHaveLength(1);
    expect(env.sender.sent[0]?.url).toBe("https://client.example/hook");
    expect(env.sender.sent[0]?.body).toBe(record.payload);
    expect(env.notifyQueue.sent).toEqual([]);
    expect(env.deadLetters.sent).toEqual([]);
  });

  it("a duplicate job event creates no second record, makes no second try and publishes nothing more", async () => {
    const env = setup();
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    const first = await onlyRecord(env, job.id);

    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("recorded");

    expect(await onlyRecord(env, job.id)).toEqual(first);
    expect(env.sender.sent).toHaveLength(1);
    // notifyPending was cleared by the first message: the lifecycle event is not published again.
    expect(env.events.published).toHaveLength(1);
  });

  it("publishes the terminal lifecycle event only while the outbox flag is set", async () => {
    const env = setup();
    const job = terminalJob(env, { notifyPending: false, dueAt: null });
    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("delivered");
    expect(env.events.published).toEqual([]);
    expect(await onlyRecord(env, job.id)).toMatchObject({ state: "delivered" });
  });

  it("with lifecycle events off, delivers the webhook and settles the outbox without publishing", async () => {
    const env = setup();
    const job = terminalJob(env);
    const deps = { ...env.deps, publishTerminalEvents: false };
    expect(await handleNotifyMessage(deps, jobEvent(job))).toBe("delivered");
    expect(env.events.published).toEqual([]);
    expect(env.sender.sent).toHaveLength(1);
    expect((await env.jobs.get(job.id))?.notifyPending).toBe(false);
  });

  it("without a job webhook or a tenant URL the record is no_endpoint and nothing is sent", async () => {
    const env = setup();
    const job = terminalJob(env, { webhook: null });

    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("no_endpoint");

    const record = await onlyRecord(env, job.id);
    expect(record).toMatchObject({ state: "no_endpoint", url: null, attempts: [] });
    expect(env.sender.sent).toEqual([]);
    expect(env.notifyQueue.sent).toEqual([]);
    // The outbox step still happened: event published, flag cleared.
    expect(env.events.published).toHaveLength(1);
    expect((await env.jobs.get(job.id))?.notifyPending).toBe(false);
  });

  it("uses the tenant's default URL when the job has no webhook", async () => {
    const env = setup();
    await env.tenants.setWebhookUrl("tenant-a", "https://tenant.example/default");
    const job = terminalJob(env, { webhook: null });

    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("delivered");

    expect(env.sender.sent.map((s) => s.url)).toEqual(["https://tenant.example/default"]);
    expect(await onlyRecord(env, job.id)).toMatchObject({ url: "https://tenant.example/default" });
  });

  it("the job's own webhook wins over the tenant's default", async () => {
    const env = setup();
    await env.tenants.setWebhookUrl("tenant-a", "https://tenant.example/default");
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    expect(env.sender.sent.map((s) => s.url)).toEqual(["https://client.example/hook"]);
  });

  it("ignores an event for a job that does not exist or is in another state", async () => {
    const env = setup();
    expect(
      await handleNotifyMessage(env.deps, { kind: "job-event", jobId: "nope", status: "succeeded" }),
    ).toBe("ignored");
    const job = terminalJob(env);
    expect(await handleNotifyMessage(env.deps, { kind: "job-event", jobId: job.id, status: "failed" })).toBe(
      "ignored",
    );
    expect(env.notifications.records.size).toBe(0);
    expect(env.sender.sent).toEqual([]);
    expect(env.events.published).toEqual([]);
  });
});

describe("notify: processing notifications", () => {
  it("are recorded and delivered when the job asked for them, without a lifecycle event", async () => {
    const env = setup();
    const job = buildJob(env.clock, { status: "processing", version: 2, notifyProcessing: true });
    env.jobs.jobs.set(job.id, structuredClone(job));

    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("delivered");

    const record = await onlyRecord(env, job.id);
    expect(record).toMatchObject({
      id: `msg_${job.id}_processing`,
      type: "job.processing",
      state: "delivered",
    });
    expect(JSON.parse(record.payload).type).toBe("job.processing");
    // Non-terminal lifecycle events are the lifecycle store's job, not this step's.
    expect(env.events.published).toEqual([]);
    expect((await env.jobs.get(job.id))?.version).toBe(2);
  });

  it("are ignored when the job did not ask for them", async () => {
    const env = setup();
    const job = buildJob(env.clock, { status: "processing", version: 2 });
    env.jobs.jobs.set(job.id, structuredClone(job));
    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("ignored");
    expect(env.notifications.records.size).toBe(0);
    expect(env.sender.sent).toEqual([]);
  });

  it("are ignored once the job has moved past processing", async () => {
    const env = setup();
    const job = buildJob(env.clock, { status: "storing", version: 3, notifyProcessing: true });
    env.jobs.jobs.set(job.id, structuredClone(job));
    expect(
      await handleNotifyMessage(env.deps, { kind: "job-event", jobId: job.id, status: "processing" }),
    ).toBe("ignored");
    expect(env.notifications.records.size).toBe(0);
    expect(env.sender.sent).toEqual([]);
  });

  it("are not sent for other non-terminal states even when the job asked for processing", async () => {
    const env = setup();
    const job = buildJob(env.clock, { status: "queued", notifyProcessing: true });
    env.jobs.jobs.set(job.id, structuredClone(job));
    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("ignored");
    expect(env.notifications.records.size).toBe(0);
  });
});

describe("notify: deliveries and retries", () => {
  it("a 5xx leaves the record pending and queues try 2 after the first wait of the schedule", async () => {
    const env = setup();
    env.sender.answer(503);
    const job = terminalJob(env);

    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("retrying");

    const record = await onlyRecord(env, job.id);
    expect(record.state).toBe("pending");
    expect(record.attempts).toMatchObject([{ attempt: 1, status: 503, error: null }]);
    expect(deliveries(env.notifyQueue)).toEqual([
      {
        message: {
          kind: "delivery",
          jobId: job.id,
          notificationId: record.id,
          attempt: 2,
          roundStart: 1,
          notBefore: env.clock.now().getTime() + 5_000,
        },
        options: { delaySeconds: 5 },
      },
    ]);
    expect(env.deadLetters.sent).toEqual([]);
  });

  it("a try with no answer (status null) is retried like a 5xx", async () => {
    const env = setup();
    env.sender.answer(null);
    const job = terminalJob(env);
    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("retrying");
    expect((await onlyRecord(env, job.id)).attempts).toMatchObject([{ status: null, error: "no answer" }]);
  });

  it("the waits follow the schedule and the notification fails into the DLQ when it is used up", async () => {
    const env = setup({ fallback: 500 });
    const job = terminalJob(env);

    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("retrying");
    expect(await runNextDelivery(env)).toBe("retrying");
    expect(await runNextDelivery(env)).toBe("retrying");
    // One try, then one more after each of the schedule's waits.
    expect(await runNextDelivery(env)).toBe("failed");

    expect(env.sender.sent).toHaveLength(SCHEDULE.length + 1);
    const queued = deliveries(env.notifyQueue);
    expect(queued.map((q) => q.message.attempt)).toEqual([2, 3, 4]);
    expect(queued.map((q) => q.options?.delaySeconds)).toEqual(SCHEDULE);

    const record = await onlyRecord(env, job.id);
    expect(record.state).toBe("failed");
    expect(record.attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4]);
    expect(env.deadLetters.sent).toEqual([
      { message: { kind: "notification-exhausted", jobId: job.id, notificationId: record.id } },
    ]);
  });

  it("succeeds on a later try and stops there", async () => {
    const env = setup();
    env.sender.answer(500, 502, 204);
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    await runNextDelivery(env);
    expect(await runNextDelivery(env)).toBe("delivered");
    const record = await onlyRecord(env, job.id);
    expect(record.state).toBe("delivered");
    expect(record.attempts.map((a) => a.status)).toEqual([500, 502, 204]);
    expect(deliveries(env.notifyQueue)).toHaveLength(2);
  });

  it("jitter spreads each wait by at most ± the configured fraction", async () => {
    const env = setup();
    env.deps.settings = testNotifySettings({ retryScheduleSeconds: [100], jitter: 0.2 });
    env.deps.random = () => 1; // the top of the range: +20 %
    env.sender.answer(500);
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    const [next] = deliveries(env.notifyQueue);
    expect(next?.message.notBefore).toBe(env.clock.now().getTime() + 120_000);
    expect(next?.options?.delaySeconds).toBe(120);
  });

  it("a 410 marks the notification gone: no retry and no DLQ", async () => {
    const env = setup();
    env.sender.answer(410);
    const job = terminalJob(env);

    expect(await handleNotifyMessage(env.deps, jobEvent(job))).toBe("gone");

    expect((await onlyRecord(env, job.id)).state).toBe("gone");
    expect(env.notifyQueue.sent).toEqual([]);
    expect(env.deadLetters.sent).toEqual([]);
  });

  it("waits longer than SQS's 15 minutes hop through the queue (delay 900) without a try", async () => {
    const env = setup();
    const job = terminalJob(env);
    const message: NotifyMessage = {
      kind: "delivery",
      jobId: job.id,
      notificationId: `msg_${job.id}_succeeded`,
      attempt: 3,
      roundStart: 1,
      notBefore: env.clock.now().getTime() + 2 * 3_600_000,
    };

    expect(await handleNotifyMessage(env.deps, message)).toBe("waiting");

    expect(env.notifyQueue.sent).toEqual([{ message, options: { delaySeconds: 900 } }]);
    expect(env.sender.sent).toEqual([]);
  });

  it("a wait under 15 minutes is re-sent with the remaining delay", async () => {
    const env = setup();
    const job = terminalJob(env);
    const message: NotifyMessage = {
      kind: "delivery",
      jobId: job.id,
      notificationId: `msg_${job.id}_succeeded`,
      attempt: 2,
      roundStart: 1,
      notBefore: env.clock.now().getTime() + 61_500,
    };
    expect(await handleNotifyMessage(env.deps, message)).toBe("waiting");
    expect(env.notifyQueue.sent[0]?.options).toEqual({ delaySeconds: 62 });
  });

  it("a duplicate delivery message for a try already recorded is ignored", async () => {
    const env = setup();
    env.sender.answer(500, 500);
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    const [retry] = deliveries(env.notifyQueue);
    if (!retry) throw new Error("no retry queued");
    env.clock.advance(5_000);

    expect(await handleNotifyMessage(env.deps, retry.message)).toBe("retrying");
    expect(await handleNotifyMessage(env.deps, retry.message)).toBe("ignored");

    expect(env.sender.sent).toHaveLength(2);
    expect((await onlyRecord(env, job.id)).attempts.map((a) => a.attempt)).toEqual([1, 2]);
    expect(deliveries(env.notifyQueue)).toHaveLength(2);
  });

  it("two copies of one delivery message racing record the try once (the store's guard)", async () => {
    const env = setup();
    env.sender.answer(500);
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    const [retry] = deliveries(env.notifyQueue);
    if (!retry) throw new Error("no retry queued");
    env.clock.advance(5_000);

    const outcomes = await Promise.all([
      handleNotifyMessage(env.deps, retry.message),
      handleNotifyMessage(env.deps, retry.message),
    ]);

    expect(outcomes.sort()).toEqual(["delivered", "ignored"]);
    expect((await onlyRecord(env, job.id)).attempts.map((a) => a.attempt)).toEqual([1, 2]);
  });

  it("a delivery message for a settled or unknown notification is ignored", async () => {
    const env = setup();
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    const base = { kind: "delivery", jobId: job.id, attempt: 2, roundStart: 1 } as const;
    const now = env.clock.now().getTime();
    expect(
      await handleNotifyMessage(env.deps, {
        ...base,
        notificationId: `msg_${job.id}_succeeded`,
        notBefore: now,
      }),
    ).toBe("ignored");
    expect(
      await handleNotifyMessage(env.deps, { ...base, notificationId: "msg_other", notBefore: now }),
    ).toBe("ignored");
    expect(env.sender.sent).toHaveLength(1);
  });
});

describe("notify: Standard Webhooks signing", () => {
  it("sends webhook-id, webhook-timestamp and a signature that verifies", async () => {
    const env = setup({ now: new Date() });
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));

    const [sent] = env.sender.sent;
    if (!sent) throw new Error("nothing sent");
    expect(sent.headers["webhook-id"]).toBe(`msg_${job.id}_succeeded`);
    expect(sent.headers["webhook-timestamp"]).toBe(String(Math.floor(env.clock.now().getTime() / 1000)));
    expect(sent.headers["content-type"]).toBe("application/json");
    expect(sent.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/=]+$/);
    expect(new Webhook(SECRET_A).verify(sent.body, sent.headers)).toMatchObject({
      type: "job.succeeded",
      data: { id: job.id, status: "succeeded" },
    });
    expect(() => new Webhook(SECRET_B).verify(sent.body, sent.headers)).toThrow();
    expect(() => new Webhook(SECRET_A).verify(`${sent.body} `, sent.headers)).toThrow();
  });

  it("during a rotation both secrets sign: two signatures, each verifies on its own", async () => {
    const env = setup({ now: new Date() });
    const now = env.clock.now();
    await env.tenants.addWebhookSecret("tenant-a", SECRET_B, now, new Date(now.getTime() + 86_400_000));
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));

    const [sent] = env.sender.sent;
    if (!sent) throw new Error("nothing sent");
    const signatures = (sent.headers["webhook-signature"] ?? "").split(" ");
    expect(signatures).toHaveLength(2);
    for (const secret of [SECRET_A, SECRET_B]) {
      expect(() => new Webhook(secret).verify(sent.body, sent.headers)).not.toThrow();
    }
    // Each signature belongs to exactly one of the secrets.
    const verifies = (secret: string, signature: string) => {
      try {
        new Webhook(secret).verify(sent.body, { ...sent.headers, "webhook-signature": signature });
        return true;
      } catch {
        return false;
      }
    };
    expect(signatures.map((s) => [verifies(SECRET_B, s), verifies(SECRET_A, s)])).toEqual([
      [true, false],
      [false, true],
    ]);
  });

  it("concurrent rotations each keep their secret: all of them sign the next delivery", async () => {
    const env = setup({ now: new Date() });
    const now = env.clock.now();
    const rotated = Array.from({ length: 10 }, () => newWebhookSecret());
    await Promise.all(
      rotated.map((secret) =>
        env.tenants.addWebhookSecret("tenant-a", secret, now, new Date(now.getTime() + 86_400_000)),
      ),
    );
    await handleNotifyMessage(env.deps, jobEvent(terminalJob(env)));
    const [sent] = env.sender.sent;
    if (!sent) throw new Error("nothing sent");
    expect(sent.headers["webhook-signature"]?.split(" ")).toHaveLength(11);
    for (const secret of [SECRET_A, ...rotated]) {
      expect(() => new Webhook(secret).verify(sent.body, sent.headers)).not.toThrow();
    }
  });

  it("a retired secret no longer signs", async () => {
    const env = setup({ now: new Date() });
    const now = env.clock.now();
    await env.tenants.addWebhookSecret("tenant-a", SECRET_B, now, new Date(now.getTime() + 1_000));
    env.clock.advance(2_000);
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    const [sent] = env.sender.sent;
    if (!sent) throw new Error("nothing sent");
    expect(sent.headers["webhook-signature"]?.split(" ")).toHaveLength(1);
    expect(() => new Webhook(SECRET_B).verify(sent.body, sent.headers)).not.toThrow();
    expect(() => new Webhook(SECRET_A).verify(sent.body, sent.headers)).toThrow();
  });

  it("every try of one notification carries the same webhook-id and payload", async () => {
    const env = setup();
    env.sender.answer(500, 200);
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    await runNextDelivery(env);
    const [first, second] = env.sender.sent;
    expect(first?.headers["webhook-id"]).toBe(second?.headers["webhook-id"]);
    expect(first?.body).toBe(second?.body);
    expect(first?.headers["webhook-timestamp"]).not.toBe(second?.headers["webhook-timestamp"]);
  });
});

describe("notify: replay", () => {
  it("reopens a delivered notification and sends try tries+1 as the start of a new round", async () => {
    const env = setup();
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    const delivered = await onlyRecord(env, job.id);
    expect(delivered.state).toBe("delivered");

    const reopened = await replayNotification(env.deps, delivered);

    expect(reopened).toMatchObject({ state: "pending", attempts: delivered.attempts });
    expect(env.notifyQueue.sent).toEqual([
      {
        message: {
          kind: "delivery",
          jobId: job.id,
          notificationId: delivered.id,
          attempt: 2,
          roundStart: 2,
          notBefore: env.clock.now().getTime(),
        },
      },
    ]);

    expect(await runNextDelivery(env)).toBe("delivered");
    const record = await onlyRecord(env, job.id);
    expect(record.state).toBe("delivered");
    expect(record.attempts.map((a) => a.attempt)).toEqual([1, 2]);
    expect(env.sender.sent.map((s) => s.headers["webhook-id"])).toEqual([delivered.id, delivered.id]);
    expect(env.sender.sent[1]?.body).toBe(delivered.payload);
  });

  it("a replay of a failed notification gets a whole new round of retries", async () => {
    const env = setup({ schedule: [5], fallback: 500 });
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    expect(await runNextDelivery(env)).toBe("failed");
    const failed = await onlyRecord(env, job.id);
    expect(failed.attempts).toHaveLength(2);

    await replayNotification(env.deps, failed);
    expect(deliveries(env.notifyQueue).at(-1)?.message).toMatchObject({ attempt: 3, roundStart: 3 });

    expect(await runNextDelivery(env)).toBe("retrying");
    expect(deliveries(env.notifyQueue).at(-1)?.message).toMatchObject({ attempt: 4, roundStart: 3 });
    expect(await runNextDelivery(env)).toBe("failed");
    expect((await onlyRecord(env, job.id)).attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4]);
    expect(env.deadLetters.sent).toHaveLength(2);
  });

  it("a replay of a gone notification is delivered to the endpoint again", async () => {
    const env = setup();
    env.sender.answer(410, 200);
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    await replayNotification(env.deps, await onlyRecord(env, job.id));
    expect(await runNextDelivery(env)).toBe("delivered");
  });

  it("a replay of a notification still pending does not reopen it", async () => {
    const env = setup();
    env.sender.answer(500);
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    const pending = await onlyRecord(env, job.id);
    const reopened = await replayNotification(env.deps, pending);
    expect(reopened).toEqual(pending);
    expect(deliveries(env.notifyQueue).at(-1)?.message).toMatchObject({ attempt: 2, roundStart: 2 });
  });
});

describe("notify: output links are signed for each try", () => {
  const EXPIRY_SECONDS = 3600;

  /** A presigner that writes when it signed, so a test can tell whether a URL is still valid. */
  function signingEnv(options: { now?: Date; schedule?: number[]; fallback?: number | null } = {}) {
    const env = setup(options);
    env.deps.presignOutput = async (key) =>
      `https://outputs.example/${key}?signed=${env.clock.now().getTime()}&expires=${EXPIRY_SECONDS}`;
    return env;
  }

  const validAt = (body: string | undefined, now: number): boolean => {
    const { data } = JSON.parse(body ?? "{}") as { data: { outputs: { url: string }[] } };
    expect(data.outputs).toHaveLength(1);
    const url = new URL(data.outputs[0]?.url ?? "");
    const signed = Number(url.searchParams.get("signed"));
    return signed <= now && now < signed + Number(url.searchParams.get("expires")) * 1000;
  };

  it("a try after the first try's URLs expired carries URLs valid at that try, under the same webhook-id", async () => {
    const env = signingEnv({ schedule: [2 * EXPIRY_SECONDS] });
    env.sender.answer(500, 200);
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    const firstTryAt = env.clock.now().getTime();
    expect(await runNextDelivery(env)).toBe("delivered");
    const retryAt = env.clock.now().getTime();
    expect(retryAt - firstTryAt).toBeGreaterThan(EXPIRY_SECONDS * 1000);

    const [first, retry] = env.sender.sent;
    expect(validAt(first?.body, firstTryAt)).toBe(true);
    expect(validAt(first?.body, retryAt)).toBe(false);
    expect(validAt(retry?.body, retryAt)).toBe(true);
    expect(retry?.headers["webhook-id"]).toBe(first?.headers["webhook-id"]);
    // The event itself is unchanged: only the links are renewed.
    const event = (body: string | undefined) => {
      const parsed = JSON.parse(body ?? "{}");
      parsed.data.outputs[0].url = "";
      return parsed;
    };
    expect(event(retry?.body)).toEqual(event(first?.body));
  });

  it("a replay a day later carries URLs valid then, and its signature covers the body sent", async () => {
    // A day ago, so that the replay is sent now (the verifier checks the timestamp against the real clock).
    const env = signingEnv({ now: new Date(Date.now() - 24 * 3600 * 1000) });
    const job = terminalJob(env);
    await handleNotifyMessage(env.deps, jobEvent(job));
    env.clock.advance(24 * 3600 * 1000);
    await replayNotification(env.deps, await onlyRecord(env, job.id));
    expect(await runNextDelivery(env)).toBe("delivered");

    const [first, replay] = env.sender.sent;
    const now = env.clock.now().getTime();
    expect(validAt(first?.body, now)).toBe(false);
    expect(validAt(replay?.body, now)).toBe(true);
    expect(replay?.headers["webhook-id"]).toBe(first?.headers["webhook-id"]);
    expect(new Webhook(SECRET_A).verify(replay?.body ?? "", replay?.headers ?? {})).toMatchObject({
      data: { id: job.id },
    });
  });
});
