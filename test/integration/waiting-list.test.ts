import { type DynamoDBDocumentClient, ScanCommand } from "@aws-sdk/lib-dynamodb";
import { beforeEach, describe, expect, it } from "vitest";
import { DynamoTenantStore } from "../../shared/adapters/dynamo/tenant-store.ts";
import { DynamoWaitingList } from "../../shared/adapters/dynamo/waiting-list.ts";
import { ValidationError } from "../../shared/domain/errors.ts";
import { useDynamoTables } from "../support/emulators.ts";
import { waitingListContract } from "../support/waiting-list-contract.ts";

let doc: DynamoDBDocumentClient;
let table: string;
const dynamo = useDynamoTables();

beforeEach(async () => {
  doc = dynamo.doc;
  table = await dynamo.newTable("waiting");
});

/** The port's contract, shared with the in-memory fake (test/unit/fakes.test.ts). */
describe("DynamoWaitingList: the WaitingList contract", () => {
  waitingListContract((settings) => new DynamoWaitingList(doc, table, "modelslab", settings));
});

describe("DynamoWaitingList: its items", () => {
  it("stores one small item per waiting job in its lane's partition and one listing per lane", async () => {
    const list = new DynamoWaitingList(doc, table, "modelslab", async () => ({
      weight: 2,
      maxConcurrency: null,
    }));
    const now = new Date("2026-01-01T00:00:00.000Z");
    await list.enqueue(
      { jobId: "j1", tenant: "acme", key: "u1", priority: "high", enqueuedAt: now.getTime() },
      now,
    );
    const items = ((await doc.send(new ScanCommand({ TableName: table }))).Items ?? []).sort((a, b) =>
      String(a.pk).localeCompare(String(b.pk)),
    );
    expect(items).toEqual([
      {
        pk: "LANES#modelslab",
        sk: "acme#u1",
        type: "lane",
        tenant: "acme",
        key: "u1",
        weight: 2,
        touchedAt: now.getTime(),
      },
      {
        pk: "WAIT#modelslab#acme#u1",
        sk: `0#${String(now.getTime()).padStart(15, "0")}#j1`,
        type: "waiting",
        jobId: "j1",
        enqueuedAt: now.getTime(),
      },
    ]);
  });

  it("copies the tenant's admission settings, as an operator set them, onto a new lane", async () => {
    const tenants = new DynamoTenantStore(doc, table);
    await tenants.createTenant({ id: "acme", name: "Acme", createdAt: "2026-01-01T00:00:00.000Z" });
    expect(await tenants.admissionSettings("acme")).toEqual({ weight: 1, maxConcurrency: null });
    await tenants.setAdmissionSettings("acme", { weight: 4, maxConcurrency: 3 });
    await expect(
      tenants.setAdmissionSettings("acme", { weight: 0, maxConcurrency: null }),
    ).rejects.toBeInstanceOf(ValidationError);
    const list = new DynamoWaitingList(doc, table, "modelslab", (t) => tenants.admissionSettings(t));
    const now = new Date();
    await list.enqueue(
      { jobId: "j1", tenant: "acme", key: "-", priority: "normal", enqueuedAt: now.getTime() },
      now,
    );
    expect(await list.lanes(10)).toEqual([
      { tenant: "acme", key: "-", weight: 4, maxConcurrency: 3, touchedAt: now.getTime() },
    ]);
  });
});
