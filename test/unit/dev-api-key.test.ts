import { describe, expect, it } from "vitest";
import { devApiKeyFrom } from "../../local/dev-tenant.ts";
import { sha256Hex } from "../../shared/domain/hash.ts";
import { apiKeyProblem, authenticate, newApiKey } from "../../shared/usecases/authenticate.ts";

describe("the API key rule and DEV_API_KEY (npm start)", () => {
  it("refuses a DEV_API_KEY shorter than the key rule, saying why", () => {
    expect(() => devApiKeyFrom({ DEV_API_KEY: "short-key" })).toThrow(
      /DEV_API_KEY is refused: an API key must be 16 to 256 characters long \(this one has 9\)/,
    );
  });

  it("refuses a DEV_API_KEY with characters the Authorization header cannot carry", () => {
    expect(() => devApiKeyFrom({ DEV_API_KEY: "a key with spaces in it" })).toThrow(/visible ASCII/);
  });

  it("takes a key that meets the rule, and no key (a random one) when unset or empty", () => {
    expect(devApiKeyFrom({ DEV_API_KEY: "dev-key-0123456789" })).toBe("dev-key-0123456789");
    expect(devApiKeyFrom({})).toBeUndefined();
    expect(devApiKeyFrom({ DEV_API_KEY: "" })).toBeUndefined();
  });

  it("accepts exactly the keys the authorizer resolves", async () => {
    const lookups: string[] = [];
    const tenants = {
      findByApiKeyHash: async (hash: string) => {
        lookups.push(hash);
        return { id: "t", name: "t", createdAt: "2026-01-01T00:00:00.000Z" };
      },
      createTenant: async () => {},
      addApiKey: async () => {},
    };
    for (const key of [
      "x".repeat(15),
      "x".repeat(16),
      "x".repeat(256),
      "x".repeat(257),
      "tab\there-0123456",
      newApiKey(),
    ]) {
      const resolved = (await authenticate(tenants, `Bearer ${key}`)) !== null;
      expect(resolved, key).toBe(apiKeyProblem(key) === null);
    }
    expect(lookups).toContain(sha256Hex("x".repeat(16)));
  });
});
