/**
 * DynamoNotificationStore and the tenant store's webhook settings against dynalite, on the table
 * exactly as table-design.ts describes it.
 */
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { beforeEach, describe, expect, it } from "vitest";
import { DynamoNotificationStore } from "../../shared/adapters/dynamo/notification-store.ts";
import { jobKey, notificationKey } from "../../shared/adapters/dynamo/table-design.ts";
import { DynamoTenantStore } from "../../shared/adapters/dynamo/tenant-store.ts";
import { NotFoundError, StaleWriteError } from "../../shared/domain/errors.ts";
import type { DeliveryAttempt, NotificationRecord } from "../../shared/ports/index.ts";
import { useDynamoTables } from "../support/emulators.ts";
import { FakeClock } from "../support/fakes.ts";

let doc: DynamoDBDocumentClient;
let table: string;

const dynamo = useDynamoTables();

beforeEach(async () => {
  doc = dynamo.doc;
  table = await dynamo.newTable("notifications");
});

const JOB_A = "01JOBA00000000000000000000";
const JOB_B = "01JOBB00000000000000000000";

const record = (overrides: Partial<NotificationRecord> = {}): NotificationRecord => ({
  id: `msg_${JOB_A}_succeeded`,
  jobId: JOB_A,
  tenantId: "acme",
  type: "job.succeeded",
  createdAt: "2026-01-01T00:00:00.000Z",
  payload: JSON.stringify({
    type: "job.succeeded",
    timestamp: "2026-01-01T00:00:00.000Z",
    data: { id: JOB_A },
  }),
  url: "https://client.example/hook",
  state: "pending",
  attempts: [],
  ...overrides,
});

const attempt = (n: number, status: number | null = 500): DeliveryAttempt => ({
  attempt: n,
  at: `2026-01-01T00:0${n}:00.000Z`,
  status,
  error: status === null ? "timeout" : null,
  duration_ms: 10 * n,
});

describe("DynamoNotificationStore", () => {
  let store: DynamoNotificationStore;
  beforeEach(() => {
    store = new DynamoNotificationStore(doc, table);
  });

  it("stores a long payload deflated (fewer write units per try) and reads it back exactly", async () => {
    const url = `https://outputs.s3.amazonaws.com/o/${JOB_A}/0.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIA%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=${"ab12".repeat(16)}`;
    const payload = JSON.stringify({
      type: "job.succeeded",
      data: { id: JOB_A, outputs: [url, url, url] },
      é: "ü",
    });
    const long = record({ payload });
    await store.createIfAbsent(long);
    const raw = (await doc.send(new GetCommand({ TableName: table, Key: notificationKey(JOB_A, long.id) })))
      .Item;
    expect(raw).not.toHaveProperty("payload");
    expect((raw?.payloadZ as Uint8Array | undefined)?.byteLength ?? Number.POSITIVE_INFINITY).toBeLessThan(
      Buffer.byteLength(payload) / 2,
    );
    expect(await store.get(JOB_A, long.id)).toEqual(long);
    const tried = await store.recordAttempt(long, attempt(1), "pending");
    expect(tried.payload).toBe(payload);
    // A short payload stays as it is.
    const short = record({ id: `msg_${JOB_B}_failed`, jobId: JOB_B, payload: "{}" });
    await store.createIfAbsent(short);
    const rawShort = (
      await doc.send(new GetCommand({ TableName: table, Key: notificationKey(JOB_B, short.id) }))
    ).Item;
    expect(rawShort?.payload).toBe("{}");
  });

  it("creates a record once: a second create returns the stored one unchanged", async () => {
    const first = record();
    expect(await store.createIfAbsent(first)).toEqual({ record: first, created: true });

    const second = await store.createIfAbsent(
      record({ payload: '{"other":true}', url: null, state: "no_endpoint" }),
    );

    expect(second).toEqual({ record: first, created: false });
    expect(await store.get(JOB_A, first.id)).toEqual(first);
  });

  it("stores the record beside its job with a retention TTL", async () => {
    const stored = new DynamoNotificationStore(doc, table, 7);
    await stored.createIfAbsent(record());
    const item = (
      await doc.send(new GetCommand({ TableName: table, Key: notificationKey(JOB_A, record().id) }))
    ).Item;
    expect(item).toMatchObject({
      pk: `JOB#${JOB_A}`,
      sk: `NOTIF#msg_${JOB_A}_succeeded`,
      ttl: Date.parse("2026-01-01T00:00:00.000Z") / 1000 + 7 * 86_400,
    });
  });

  it("get answers null for an unknown record", async () => {
    expect(await store.get(JOB_A, "msg_nope")).toBeNull();
  });

  it("recordAttempt appends the try and sets the state, guarded on the tries seen", async () => {
    const created = (await store.createIfAbsent(record())).record;

    const afterFirst = await store.recordAttempt(created, attempt(1), "pending");
    expect(afterFirst).toEqual({ ...created, attempts: [attempt(1)], state: "pending" });

    // A duplicate of try 1 still holding the record as it was before: refused.
    await expect(store.recordAttempt(created, attempt(1), "pending")).rejects.toBeInstanceOf(StaleWriteError);

    const afterSecond = await store.recordAttempt(afterFirst, attempt(2, 200), "delivered");
    expect(afterSecond.attempts).toEqual([attempt(1), attempt(2, 200)]);
    expect(afterSecond.state).toBe("delivered");
    expect(await store.get(JOB_A, created.id)).toEqual(afterSecond);

    await expect(store.recordAttempt(afterFirst, attempt(2), "failed")).rejects.toBeInstanceOf(
      StaleWriteError,
    );
    expect((await store.get(JOB_A, created.id))?.state).toBe("delivered");
  });

  it("two racing writes of the same try: exactly one wins", async () => {
    const created = (await store.createIfAbsent(record())).record;
    const results = await Promise.allSettled([
      store.recordAttempt(created, attempt(1, 200), "delivered"),
      store.recordAttempt(created, attempt(1, 500), "pending"),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const rejected = results.find((r) => r.status === "rejected");
    expect(rejected?.status === "rejected" && rejected.reason).toBeInstanceOf(StaleWriteError);
    expect((await store.get(JOB_A, created.id))?.attempts).toHaveLength(1);
  });

  it("recordAttempt on a record that does not exist is a stale write", async () => {
    await expect(store.recordAttempt(record(), attempt(1), "pending")).rejects.toBeInstanceOf(
      StaleWriteError,
    );
  });

  it("lists a job's notifications only (not its job item, not other jobs')", async () => {
    await doc.send(
      new PutCommand({ TableName: table, Item: { ...jobKey(JOB_A), id: JOB_A, status: "succeeded" } }),
    );
    const succeeded = record();
    const processing = record({ id: `msg_${JOB_A}_processing`, type: "job.processing" });
    const other = record({ id: `msg_${JOB_B}_failed`, jobId: JOB_B, type: "job.failed" });
    for (const r of [succeeded, processing, other]) await store.createIfAbsent(r);

    const listed = await store.listForJob(JOB_A);
    expect(listed.map((r) => r.id).sort()).toEqual([processing.id, succeeded.id].sort());
    expect(listed.find((r) => r.id === succeeded.id)).toEqual(succeeded);
    expect(await store.listForJob(JOB_B)).toEqual([other]);
    expect(await store.listForJob("01JOBC00000000000000000000")).toEqual([]);
  });

  it("reopen puts a settled record back to pending and keeps its tries, guarded the same way", async () => {
    const created = (await store.createIfAbsent(record())).record;
    const failed = await store.recordAttempt(created, attempt(1), "failed");

    const reopened = await store.reopen(failed);
    // The replay is a new round of tries, starting after the ones already made.
    expect(reopened).toEqual({ ...failed, state: "pending", roundStart: failed.attempts.length + 1 });
    expect(await store.get(JOB_A, created.id)).toEqual(reopened);

    // Another try landed meanwhile: a reopen from the older view is refused.
    const delivered = await store.recordAttempt(reopened, attempt(2, 200), "delivered");
    await expect(store.reopen(failed)).rejects.toBeInstanceOf(StaleWriteError);
    expect(await store.get(JOB_A, created.id)).toEqual(delivered);
  });
});

describe("DynamoTenantStore webhook settings", () => {
  const t0 = new Date("2026-03-01T00:00:00.000Z");
  const DAY = 86_400_000;
  let clock: FakeClock;
  let tenants: DynamoTenantStore;

  beforeEach(async () => {
    clock = new FakeClock(t0);
    tenants = new DynamoTenantStore(doc, table, { clock });
    await tenants.createTenant({ id: "acme", name: "Acme", createdAt: t0.toISOString() });
  });

  it("a new tenant has no URL and no secrets", async () => {
    expect(await tenants.getWebhookSettings("acme")).toEqual({ url: null, secrets: [] });
  });

  it("sets, replaces and removes the default URL", async () => {
    await tenants.setWebhookUrl("acme", "https://acme.example/hooks");
    expect((await tenants.getWebhookSettings("acme")).url).toBe("https://acme.example/hooks");
    await tenants.setWebhookUrl("acme", "https://acme.example/v2");
    expect((await tenants.getWebhookSettings("acme")).url).toBe("https://acme.example/v2");
    await tenants.setWebhookUrl("acme", null);
    expect((await tenants.getWebhookSettings("acme")).url).toBeNull();
  });

  it("unknown tenants are not found and nothing is created for them", async () => {
    await expect(tenants.getWebhookSettings("ghost")).rejects.toBeInstanceOf(NotFoundError);
    await expect(tenants.setWebhookUrl("ghost", "https://x.example/")).rejects.toBeInstanceOf(NotFoundError);
    await expect(tenants.addWebhookSecret("ghost", "whsec_x", t0, t0)).rejects.toBeInstanceOf(NotFoundError);
    await expect(tenants.getWebhookSettings("ghost")).rejects.toBeInstanceOf(NotFoundError);
  });

  it("a rotation keeps the previous secrets until their retire time, then drops them", async () => {
    await tenants.setWebhookUrl("acme", "https://acme.example/hooks");
    await tenants.addWebhookSecret("acme", "whsec_one", t0, new Date(t0.getTime() + DAY));
    expect((await tenants.getWebhookSettings("acme")).secrets).toEqual([
      { secret: "whsec_one", createdAt: t0.toISOString(), retiresAt: null },
    ]);

    clock.advance(10 * DAY);
    const t1 = clock.now();
    const retire1 = new Date(t1.getTime() + DAY);
    await tenants.addWebhookSecret("acme", "whsec_two", t1, retire1);

    expect(await tenants.getWebhookSettings("acme")).toEqual({
      url: "https://acme.example/hooks",
      secrets: [
        { secret: "whsec_two", createdAt: t1.toISOString(), retiresAt: null },
        { secret: "whsec_one", createdAt: t0.toISOString(), retiresAt: retire1.toISOString() },
      ],
    });

    clock.advance(DAY - 1);
    expect((await tenants.getWebhookSettings("acme")).secrets.map((s) => s.secret)).toEqual([
      "whsec_two",
      "whsec_one",
    ]);

    clock.advance(1);
    expect((await tenants.getWebhookSettings("acme")).secrets).toEqual([
      { secret: "whsec_two", createdAt: t1.toISOString(), retiresAt: null },
    ]);
  });

  it("a retired secret is not carried into the next rotation, and an earlier retire time is kept", async () => {
    await tenants.addWebhookSecret("acme", "whsec_one", t0, t0);
    const t1 = new Date(t0.getTime() + DAY);
    clock.advance(DAY);
    await tenants.addWebhookSecret("acme", "whsec_two", t1, new Date(t1.getTime() + DAY));

    // whsec_one retires at t1 + 1 day; rotating again soon after with a later retire time keeps that.
    clock.advance(60_000);
    const t2 = clock.now();
    await tenants.addWebhookSecret("acme", "whsec_three", t2, new Date(t2.getTime() + 7 * DAY));
    expect((await tenants.getWebhookSettings("acme")).secrets).toEqual([
      { secret: "whsec_three", createdAt: t2.toISOString(), retiresAt: null },
      {
        secret: "whsec_two",
        createdAt: t1.toISOString(),
        retiresAt: new Date(t2.getTime() + 7 * DAY).toISOString(),
      },
      {
        secret: "whsec_one",
        createdAt: t0.toISOString(),
        retiresAt: new Date(t1.getTime() + DAY).toISOString(),
      },
    ]);

    // Once whsec_one has retired, the next rotation no longer stores it at all.
    clock.advance(2 * DAY);
    const t3 = clock.now();
    await tenants.addWebhookSecret("acme", "whsec_four", t3, new Date(t3.getTime() + DAY));
    const raw = (
      await doc.send(new GetCommand({ TableName: table, Key: { pk: "TENANT#acme", sk: "TENANT" } }))
    ).Item;
    expect(((raw?.webhookSecrets ?? []) as { secret: string }[]).map((s) => s.secret)).toEqual([
      "whsec_four",
      "whsec_three",
      "whsec_two",
    ]);
  });
});
