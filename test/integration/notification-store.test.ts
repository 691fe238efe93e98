/** DynamoNotificationStore and the tenant store's webhook settings against dynalite, on the table exactly as table-design.ts describes it. */
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { beforeEach, describe, expect, it } from "vitest";
import { DynamoNotificationStore } from "../../shared/adapters/dynamo/notification-store.ts";
import { jobKey, notificationKey } from "../../shared/adapters/dynamo/table-design.ts";
import { DynamoTenantStore } from "../../shared/adapters/dynamo/tenant-store.ts";
import { NotFoundError } from "../../shared/domain/errors.ts";
import { useDynamoTables } from "../support/emulators.ts";
import { FakeClock } from "../support/fakes.ts";
import {
  deliveryAttempt,
  JOB_A,
  JOB_B,
  notificationRecord,
  notificationStoreContract,
} from "../support/notification-store-contract.ts";

let doc: DynamoDBDocumentClient;
let table: string;

const dynamo = useDynamoTables();

beforeEach(async () => {
  doc = dynamo.doc;
  table = await dynamo.newTable("notifications");
});

/** The port's contract, shared with the in-memory fake (test/unit/fakes.test.ts). */
describe("DynamoNotificationStore: the NotificationStore contract", () => {
  notificationStoreContract(() => new DynamoNotificationStore(doc, table));
});

describe("DynamoNotificationStore items", () => {
  let store: DynamoNotificationStore;
  beforeEach(() => {
    store = new DynamoNotificationStore(doc, table);
  });

  const rawItem = async (jobId: string, id: string) =>
    (await doc.send(new GetCommand({ TableName: table, Key: notificationKey(jobId, id) }))).Item;

  it("stores a long payload deflated (fewer write units per try), a short one as it is", async () => {
    const url = `https://outputs.s3.amazonaws.com/o/${JOB_A}/0.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIA%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=${"ab12".repeat(16)}`;
    const payload = JSON.stringify({
      type: "job.succeeded",
      data: { id: JOB_A, outputs: [url, url, url] },
      é: "ü",
    });
    const long = notificationRecord({ payload });
    await store.createIfAbsent(long);
    const raw = await rawItem(JOB_A, long.id);
    expect(raw).not.toHaveProperty("payload");
    expect((raw?.payloadZ as Uint8Array | undefined)?.byteLength ?? Number.POSITIVE_INFINITY).toBeLessThan(
      Buffer.byteLength(payload) / 2,
    );
    await store.recordAttempt(long, deliveryAttempt(1), "pending");
    expect((await rawItem(JOB_A, long.id))?.payloadZ).toEqual(raw?.payloadZ);

    const short = notificationRecord({ id: `msg_${JOB_B}_failed`, jobId: JOB_B, payload: "{}" });
    await store.createIfAbsent(short);
    expect((await rawItem(JOB_B, short.id))?.payload).toBe("{}");
  });

  it("stores the record beside its job with a retention TTL", async () => {
    const stored = new DynamoNotificationStore(doc, table, 7);
    await stored.createIfAbsent(notificationRecord());
    expect(await rawItem(JOB_A, notificationRecord().id)).toMatchObject({
      pk: `JOB#${JOB_A}`,
      sk: `NOTIF#msg_${JOB_A}_succeeded`,
      ttl: Date.parse("2026-01-01T00:00:00.000Z") / 1000 + 7 * 86_400,
    });
  });

  it("lists a job's notifications without the job's own item, which shares their partition", async () => {
    await doc.send(
      new PutCommand({ TableName: table, Item: { ...jobKey(JOB_A), id: JOB_A, status: "succeeded" } }),
    );
    const succeeded = notificationRecord();
    await store.createIfAbsent(succeeded);
    expect(await store.listForJob(JOB_A)).toEqual([succeeded]);
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
