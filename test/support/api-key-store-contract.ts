import { beforeEach, describe, expect, it } from "vitest";
import { ConflictError, NotFoundError } from "../../shared/domain/errors.ts";
import type { ApiKeyStore } from "../../shared/ports/index.ts";
import { FakeClock } from "./fakes.ts";

/**
 * The ApiKeyStore contract, through the port alone: DynamoTenantStore against dynalite and the
 * in-memory fake the unit tests rely on must both meet it.
 */

export interface ApiKeyStoreFixture {
  store: ApiKeyStore;
  /** Makes a tenant exist (as creating it does), with no keys. */
  addTenant(tenantId: string): Promise<void>;
}

const T0 = new Date("2026-03-01T00:00:00.000Z");
const hash = (n: number) => n.toString(16).padStart(64, "0");
const key = (n: number, name: string | null = null) => ({ keyHash: hash(n), prefix: `cnk_${n}`, name });

/** Runs the contract against a fresh, empty store on `clock` for each test. */
export function apiKeyStoreContract(
  makeStore: (clock: FakeClock) => ApiKeyStoreFixture | Promise<ApiKeyStoreFixture>,
): void {
  let clock: FakeClock;
  let keys: ApiKeyStore;

  beforeEach(async () => {
    clock = new FakeClock(T0);
    const fixture = await makeStore(clock);
    keys = fixture.store;
    await fixture.addTenant("acme");
    await fixture.addTenant("globex");
  });

  describe("API keys", () => {
    it("creates keys and lists them oldest first, by prefix and name only", async () => {
      const first = await keys.createApiKey("acme", key(1, "ci"), 5);
      clock.advance(1000);
      const second = await keys.createApiKey("acme", key(2), 5);
      expect(first).toEqual({
        id: expect.stringMatching(/^key_/),
        name: "ci",
        prefix: "cnk_1",
        createdAt: T0.toISOString(),
      });
      expect(second.id).not.toBe(first.id);
      expect(await keys.listApiKeys("acme", 10)).toEqual([first, second]);
      expect(await keys.listApiKeys("globex", 10)).toEqual([]);
    });

    it("lists at most `limit` keys", async () => {
      for (let n = 1; n <= 3; n++) await keys.createApiKey("acme", key(n), 5);
      expect(await keys.listApiKeys("acme", 2)).toHaveLength(2);
    });

    it("refuses a key past the tenant's limit with API_KEY_LIMIT_REACHED, and takes one again after a revoke", async () => {
      const first = await keys.createApiKey("acme", key(1), 2);
      await keys.createApiKey("acme", key(2), 2);
      const error = await keys.createApiKey("acme", key(3), 2).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConflictError);
      expect(error).toMatchObject({ code: "API_KEY_LIMIT_REACHED" });
      expect(await keys.listApiKeys("acme", 10)).toHaveLength(2);
      // Another tenant's count is its own.
      await keys.createApiKey("globex", key(4), 2);
      await keys.revokeApiKey("acme", first.id);
      await expect(keys.createApiKey("acme", key(3), 2)).resolves.toMatchObject({ prefix: "cnk_3" });
    });

    it("never exceeds the limit under concurrent creations", async () => {
      const results = await Promise.allSettled(
        [1, 2, 3, 4, 5, 6].map((n) => keys.createApiKey("acme", key(n), 3)),
      );
      const created = results.filter((r) => r.status === "fulfilled");
      expect(created.length).toBeGreaterThan(0);
      expect(created.length).toBeLessThanOrEqual(3);
      expect(await keys.listApiKeys("acme", 10)).toHaveLength(created.length);
      for (const r of results) {
        if (r.status === "rejected") {
          expect(["API_KEY_LIMIT_REACHED", "STORE_UNAVAILABLE"]).toContain(
            (r.reason as { code: string }).code,
          );
        }
      }
    });

    it("refuses a key hash already registered (API_KEY_EXISTS), to any tenant", async () => {
      await keys.createApiKey("acme", key(1), 5);
      for (const tenant of ["acme", "globex"]) {
        const error = await keys.createApiKey(tenant, key(1), 5).catch((e: unknown) => e);
        expect(error, tenant).toMatchObject({ code: "API_KEY_EXISTS" });
      }
      expect(await keys.listApiKeys("globex", 10)).toEqual([]);
    });

    it("refuses a key for a tenant that does not exist (TENANT_NOT_FOUND)", async () => {
      const error = await keys.createApiKey("nobody", key(1), 5).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NotFoundError);
      expect(error).toMatchObject({ code: "TENANT_NOT_FOUND" });
    });

    it("revokes a key: no longer listed, and not revocable twice (API_KEY_NOT_FOUND)", async () => {
      const first = await keys.createApiKey("acme", key(1), 5);
      const second = await keys.createApiKey("acme", key(2), 5);
      await keys.revokeApiKey("acme", first.id);
      expect(await keys.listApiKeys("acme", 10)).toEqual([second]);
      const again = await keys.revokeApiKey("acme", first.id).catch((e: unknown) => e);
      expect(again).toBeInstanceOf(NotFoundError);
      expect(again).toMatchObject({ code: "API_KEY_NOT_FOUND" });
    });

    it("never revokes another tenant's key (API_KEY_NOT_FOUND)", async () => {
      const theirs = await keys.createApiKey("globex", key(1), 5);
      await keys.createApiKey("globex", key(2), 5);
      const error = await keys.revokeApiKey("acme", theirs.id).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "API_KEY_NOT_FOUND" });
      expect(await keys.listApiKeys("globex", 10)).toHaveLength(2);
    });

    it("refuses to revoke the tenant's only key (LAST_API_KEY)", async () => {
      const only = await keys.createApiKey("acme", key(1), 5);
      const error = await keys.revokeApiKey("acme", only.id).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConflictError);
      expect(error).toMatchObject({ code: "LAST_API_KEY" });
      expect(await keys.listApiKeys("acme", 10)).toEqual([only]);
    });
  });
}
