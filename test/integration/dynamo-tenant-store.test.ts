import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { GetCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { createDocumentClient } from "../../shared/adapters/dynamo/client.ts";
import { apiKeyKey, tenantKey } from "../../shared/adapters/dynamo/table-design.ts";
import { DynamoTenantStore } from "../../shared/adapters/dynamo/tenant-store.ts";
import { ConflictError, NotFoundError, UnavailableError } from "../../shared/domain/errors.ts";
import { apiKeyStoreContract } from "../support/api-key-store-contract.ts";
import { useDynamoTables } from "../support/emulators.ts";
import { webhookSettingsContract } from "../support/webhook-settings-contract.ts";

const HASH_A = "a".repeat(64);
const HASH_B = "b".repeat(64);
const acme = { id: "acme", name: "Acme Corp", createdAt: "2025-01-01T00:00:00.000Z" };
let doc: DynamoDBDocumentClient;
let table: string;
let store: DynamoTenantStore;

const dynamo = useDynamoTables();

beforeEach(async () => {
  doc = dynamo.doc;
  table = await dynamo.newTable("tenants");
  store = new DynamoTenantStore(doc, table, { clock: { now: () => new Date("2025-02-02T00:00:00.000Z") } });
});

describe("DynamoTenantStore", () => {
  it("finds a tenant by the hash of one of its API keys", async () => {
    await store.createTenant(acme);
    await store.addApiKey("acme", HASH_A);
    await store.addApiKey("acme", HASH_B);
    expect(await store.findByApiKeyHash(HASH_A)).toEqual(acme);
    expect(await store.findByApiKeyHash(HASH_B)).toEqual(acme);
    const item = (await doc.send(new GetCommand({ TableName: table, Key: apiKeyKey(HASH_A) }))).Item;
    expect(item).toEqual({
      ...apiKeyKey(HASH_A),
      type: "apiKey",
      tenantId: "acme",
      keyId: expect.stringMatching(/^key_/),
      createdAt: "2025-02-02T00:00:00.000Z",
    });
  });

  it("returns null for an unknown key", async () => {
    await store.createTenant(acme);
    expect(await store.findByApiKeyHash("f".repeat(64))).toBeNull();
  });

  it("refuses a second tenant with the same id and keeps the first", async () => {
    await store.createTenant(acme);
    await expect(store.createTenant({ ...acme, name: "Impostor" })).rejects.toBeInstanceOf(ConflictError);
    await store.addApiKey("acme", HASH_A);
    expect((await store.findByApiKeyHash(HASH_A))?.name).toBe("Acme Corp");
  });

  it("adding the same key to the same tenant twice is harmless", async () => {
    await store.createTenant(acme);
    await store.addApiKey("acme", HASH_A);
    await expect(store.addApiKey("acme", HASH_A)).resolves.toBeUndefined();
  });

  it("refuses a key already owned by another tenant", async () => {
    await store.createTenant(acme);
    await store.createTenant({ ...acme, id: "globex", name: "Globex" });
    await store.addApiKey("acme", HASH_A);
    const error = await store.addApiKey("globex", HASH_A).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect(error).toMatchObject({ code: "API_KEY_EXISTS" });
    expect((await store.findByApiKeyHash(HASH_A))?.id).toBe("acme");
  });

  it("refuses a key for a tenant that does not exist, writing nothing", async () => {
    const error = await store.addApiKey("nobody", HASH_A).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({ code: "TENANT_NOT_FOUND" });
    expect(
      (await doc.send(new GetCommand({ TableName: table, Key: apiKeyKey(HASH_A) }))).Item,
    ).toBeUndefined();
  });

  it("gives up on a rotation that loses every race, without storing its secret", async () => {
    await store.createTenant(acme);
    const now = new Date("2025-02-02T00:00:00.000Z");
    await store.addWebhookSecret("acme", "whsec_first", now, now);
    // Another writer bumps the version between each read and write of the rotation.
    const send = doc.send.bind(doc);
    const spy = vi.spyOn(doc, "send").mockImplementation(async (command: unknown) => {
      if (command instanceof UpdateCommand) {
        await send(
          new UpdateCommand({
            TableName: table,
            Key: tenantKey("acme"),
            UpdateExpression: "ADD webhookSecretsVersion :one",
            ExpressionAttributeValues: { ":one": 1 },
          }),
        );
      }
      return send(command as GetCommand);
    });
    try {
      const error = await store.addWebhookSecret("acme", "whsec_never", now, now).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });
      expect(spy.mock.calls.filter(([c]) => c instanceof UpdateCommand)).toHaveLength(10);
    } finally {
      spy.mockRestore();
    }
    expect((await store.getWebhookSettings("acme")).secrets.map((s) => s.secret)).toEqual(["whsec_first"]);
  });

  it("wraps an unreachable table in STORE_UNAVAILABLE", async () => {
    const closed = createDocumentClient({
      endpoint: "http://127.0.0.1:9",
      region: "us-east-1",
      credentials: { accessKeyId: "x", secretAccessKey: "x" },
      maxAttempts: 1,
    });
    try {
      const error = await new DynamoTenantStore(closed, table)
        .findByApiKeyHash(HASH_A)
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });
    } finally {
      closed.destroy();
    }
  });
});

/** The ApiKeyStore port's contract, shared with the in-memory fake (test/unit/fakes.test.ts). */
describe("DynamoTenantStore: the ApiKeyStore contract", () => {
  apiKeyStoreContract((clock) => {
    const tenants = new DynamoTenantStore(doc, table, { clock });
    return {
      store: tenants,
      addTenant: (id) => tenants.createTenant({ id, name: id, createdAt: clock.now().toISOString() }),
    };
  });
});

describe("DynamoTenantStore API keys", () => {
  it("a revoked key no longer resolves to its tenant; the others still do", async () => {
    await store.createTenant(acme);
    const first = await store.createApiKey("acme", { keyHash: HASH_A, prefix: "cnk_a", name: null }, 5);
    await store.createApiKey("acme", { keyHash: HASH_B, prefix: "cnk_b", name: null }, 5);
    await store.revokeApiKey("acme", first.id);
    expect(await store.findByApiKeyHash(HASH_A)).toBeNull();
    expect(await store.findByApiKeyHash(HASH_B)).toEqual(acme);
  });

  it("lists the keys operator tools add, counted towards the limit, and adds the same key once", async () => {
    await store.createTenant(acme);
    await store.addApiKey("acme", HASH_A, "cnk_a");
    await store.addApiKey("acme", HASH_A, "cnk_a");
    expect(await store.listApiKeys("acme", 10)).toEqual([
      {
        id: expect.stringMatching(/^key_/),
        name: null,
        prefix: "cnk_a",
        createdAt: "2025-02-02T00:00:00.000Z",
      },
    ]);
    const error = await store
      .createApiKey("acme", { keyHash: HASH_B, prefix: "cnk_b", name: null }, 1)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "API_KEY_LIMIT_REACHED" });
  });
});

/** The WebhookSettingsStore port's contract, shared with the in-memory fake (test/unit/fakes.test.ts). */
describe("DynamoTenantStore: the WebhookSettingsStore contract", () => {
  webhookSettingsContract((clock) => {
    const tenants = new DynamoTenantStore(doc, table, { clock });
    return {
      store: tenants,
      addTenant: (id) => tenants.createTenant({ id, name: id, createdAt: clock.now().toISOString() }),
    };
  });
});

describe("DynamoTenantStore webhook secrets", () => {
  it("stores no secret past its retire time: the next rotation drops it from the item", async () => {
    const t0 = new Date("2026-03-01T00:00:00.000Z");
    const day = 86_400_000;
    let now = t0;
    const tenants = new DynamoTenantStore(doc, table, { clock: { now: () => now } });
    await tenants.createTenant(acme);
    await tenants.addWebhookSecret("acme", "whsec_one", t0, t0);
    await tenants.addWebhookSecret("acme", "whsec_two", t0, new Date(t0.getTime() + day));
    now = new Date(t0.getTime() + 2 * day);
    await tenants.addWebhookSecret("acme", "whsec_three", now, new Date(now.getTime() + day));
    const raw = (await doc.send(new GetCommand({ TableName: table, Key: tenantKey("acme") }))).Item;
    // whsec_one retired a day ago; whsec_two signs for one more day.
    expect(((raw?.webhookSecrets ?? []) as { secret: string }[]).map((s) => s.secret)).toEqual([
      "whsec_three",
      "whsec_two",
    ]);
  });
});
