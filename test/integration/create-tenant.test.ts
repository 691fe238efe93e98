import { beforeAll, describe, expect, it } from "vitest";
import { DynamoTenantStore } from "../../shared/adapters/dynamo/tenant-store.ts";
import { authenticate, createTenant } from "../../shared/usecases/authenticate.ts";
import { useDynamoTables } from "../support/emulators.ts";

const dynamo = useDynamoTables();
let tenants: DynamoTenantStore;

beforeAll(async () => {
  tenants = new DynamoTenantStore(dynamo.doc, await dynamo.newTable("tenants"));
});

describe("createTenant", () => {
  it("creates a tenant whose API key authenticates and whose webhook secret signs", async () => {
    const created = await createTenant(
      tenants,
      { id: "acme", name: "Acme", createdAt: new Date().toISOString() },
      {
        webhookUrl: "https://hooks.acme.example/controlnet",
      },
    );
    expect(created.apiKey).toMatch(/^cnk_/);
    expect(created.webhookSecret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect((await authenticate(tenants, `Bearer ${created.apiKey}`))?.id).toBe("acme");
    expect(await authenticate(tenants, "Bearer cnk_not-the-key-at-all-0000")).toBeNull();
    const settings = await tenants.getWebhookSettings("acme");
    expect(settings.url).toBe("https://hooks.acme.example/controlnet");
    expect(settings.secrets.map((s) => s.secret)).toEqual([created.webhookSecret]);
  });

  it("refuses a second tenant with the same id", async () => {
    await expect(
      createTenant(tenants, { id: "acme", name: "Again", createdAt: new Date().toISOString() }),
    ).rejects.toMatchObject({ code: "TENANT_EXISTS" });
  });
});
