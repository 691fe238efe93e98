import { beforeEach, describe, expect, it } from "vitest";
import { NotFoundError } from "../../shared/domain/errors.ts";
import type { WebhookSettingsStore } from "../../shared/ports/index.ts";
import { FakeClock } from "./fakes.ts";

/**
 * The WebhookSettingsStore contract, through the port alone: DynamoTenantStore against dynalite and
 * the in-memory fake the unit tests rely on must both meet it.
 */

export interface WebhookSettingsFixture {
  store: WebhookSettingsStore;
  /** Makes a tenant exist (as creating it does), with no URL and no secrets. */
  addTenant(tenantId: string): Promise<void>;
}

const T0 = new Date("2026-03-01T00:00:00.000Z");
const DAY = 86_400_000;

/** Runs the contract against a fresh, empty store on `clock` for each test. */
export function webhookSettingsContract(
  makeStore: (clock: FakeClock) => WebhookSettingsFixture | Promise<WebhookSettingsFixture>,
): void {
  let clock: FakeClock;
  let tenants: WebhookSettingsStore;

  beforeEach(async () => {
    clock = new FakeClock(T0);
    const fixture = await makeStore(clock);
    tenants = fixture.store;
    await fixture.addTenant("acme");
  });

  describe("the default URL", () => {
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
  });

  describe("an unknown tenant", () => {
    it("is TENANT_NOT_FOUND for every operation, and nothing is created for it", async () => {
      const calls = [
        () => tenants.getWebhookSettings("ghost"),
        () => tenants.setWebhookUrl("ghost", "https://x.example/"),
        () => tenants.addWebhookSecret("ghost", "whsec_x", T0, T0),
        () => tenants.getWebhookSettings("ghost"),
      ];
      for (const call of calls) {
        const error = await call().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(NotFoundError);
        expect(error).toMatchObject({ code: "TENANT_NOT_FOUND" });
      }
    });
  });

  describe("secret rotation", () => {
    it("keeps the previous secrets until their retire time, then drops them", async () => {
      await tenants.setWebhookUrl("acme", "https://acme.example/hooks");
      await tenants.addWebhookSecret("acme", "whsec_one", T0, new Date(T0.getTime() + DAY));
      expect((await tenants.getWebhookSettings("acme")).secrets).toEqual([
        { secret: "whsec_one", createdAt: T0.toISOString(), retiresAt: null },
      ]);

      clock.advance(10 * DAY);
      const t1 = clock.now();
      const retire1 = new Date(t1.getTime() + DAY);
      await tenants.addWebhookSecret("acme", "whsec_two", t1, retire1);

      expect(await tenants.getWebhookSettings("acme")).toEqual({
        url: "https://acme.example/hooks",
        secrets: [
          { secret: "whsec_two", createdAt: t1.toISOString(), retiresAt: null },
          { secret: "whsec_one", createdAt: T0.toISOString(), retiresAt: retire1.toISOString() },
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

    it("keeps an earlier retire time, and does not bring a retired secret back", async () => {
      await tenants.addWebhookSecret("acme", "whsec_one", T0, T0);
      const t1 = new Date(T0.getTime() + DAY);
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
          createdAt: T0.toISOString(),
          retiresAt: new Date(t1.getTime() + DAY).toISOString(),
        },
      ]);

      clock.advance(2 * DAY);
      const t3 = clock.now();
      await tenants.addWebhookSecret("acme", "whsec_four", t3, new Date(t3.getTime() + DAY));
      expect((await tenants.getWebhookSettings("acme")).secrets.map((s) => s.secret)).toEqual([
        "whsec_four",
        "whsec_three",
        "whsec_two",
      ]);
    });

    it("keeps every secret of concurrent rotations: all of them are in force afterwards", async () => {
      const now = clock.now();
      const retire = new Date(now.getTime() + DAY);
      await tenants.addWebhookSecret("acme", "whsec_first", now, now);
      const rotated = Array.from({ length: 10 }, (_, i) => `whsec_rotated_${i}`);
      await Promise.all(rotated.map((secret) => tenants.addWebhookSecret("acme", secret, now, retire)));
      const { secrets } = await tenants.getWebhookSettings("acme");
      expect(secrets.map((s) => s.secret).sort()).toEqual([...rotated, "whsec_first"].sort());
      // Exactly one is the newest; every other (the one before them included) signs until its retire time.
      expect(secrets.filter((s) => s.retiresAt === null)).toHaveLength(1);
      expect(secrets.filter((s) => s.retiresAt !== null).map((s) => s.retiresAt)).toEqual(
        Array(10).fill(retire.toISOString()),
      );
    });
  });
}
