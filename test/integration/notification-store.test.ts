/** DynamoNotificationStore against dynalite, on the table exactly as table-design.ts describes it. */
import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { beforeEach, describe, expect, it } from "vitest";
import { DynamoNotificationStore } from "../../shared/adapters/dynamo/notification-store.ts";
import { jobKey, notificationKey } from "../../shared/adapters/dynamo/table-design.ts";
import { useDynamoTables } from "../support/emulators.ts";
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
