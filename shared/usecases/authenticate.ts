import { randomBytes } from "node:crypto";
import { sha256Hex } from "../domain/hash.ts";
import type { Tenant, TenantStore, WebhookSettingsStore } from "../ports/index.ts";

/**
 * What an API key may be: 16 to 256 visible ASCII characters. The authorizer resolves nothing else, so
 * a key outside this rule can be stored but never opens anything.
 */
export const API_KEY_RULE = { minLength: 16, maxLength: 256, characters: /^[\x21-\x7E]*$/ } as const;

const BEARER = new RegExp(`^Bearer ([\\x21-\\x7E]{${API_KEY_RULE.minLength},${API_KEY_RULE.maxLength}})$`);

/** Why `key` can never authenticate (it breaks API_KEY_RULE), or null when it can. */
export function apiKeyProblem(key: string): string | null {
  if (key.length < API_KEY_RULE.minLength || key.length > API_KEY_RULE.maxLength) {
    return `an API key must be ${API_KEY_RULE.minLength} to ${API_KEY_RULE.maxLength} characters long (this one has ${key.length})`;
  }
  if (!API_KEY_RULE.characters.test(key)) {
    return "an API key may hold only visible ASCII characters (no spaces or control characters)";
  }
  return null;
}

/** Resolves `Authorization: Bearer <key>` to a tenant. Keys are looked up by hash only. */
export async function authenticate(
  tenants: TenantStore,
  authorization: string | undefined,
): Promise<Tenant | null> {
  const match = authorization ? BEARER.exec(authorization.trim()) : null;
  if (!match?.[1]) return null;
  return tenants.findByApiKeyHash(sha256Hex(match[1]));
}

/** How many of a key's first characters identify it in listings (`cnk_` and four more of a new key). */
export const API_KEY_PREFIX_CHARS = 8;
export const apiKeyPrefix = (key: string): string => key.slice(0, API_KEY_PREFIX_CHARS);

/** A new API key: shown once to its owner, stored only as its sha256. */
export const newApiKey = (): string => `cnk_${randomBytes(24).toString("base64url")}`;

/** A new Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes. */
export const newWebhookSecret = (): string => `whsec_${randomBytes(32).toString("base64")}`;

/**
 * Creates a tenant with its first API key and webhook signing secret. Both are returned once: the key
 * is stored only as a hash, the secret only where the notifier can sign with it.
 */
export async function createTenant(
  tenants: TenantStore & WebhookSettingsStore,
  tenant: Tenant,
  options: { apiKey?: string; webhookSecret?: string; webhookUrl?: string | null; now?: Date } = {},
): Promise<{ tenant: Tenant; apiKey: string; webhookSecret: string }> {
  const apiKey = options.apiKey ?? newApiKey();
  const webhookSecret = options.webhookSecret ?? newWebhookSecret();
  const now = options.now ?? new Date();
  await tenants.createTenant(tenant);
  await tenants.addApiKey(tenant.id, sha256Hex(apiKey), apiKeyPrefix(apiKey));
  await tenants.addWebhookSecret(tenant.id, webhookSecret, now, now);
  if (options.webhookUrl) await tenants.setWebhookUrl(tenant.id, options.webhookUrl);
  return { tenant, apiKey, webhookSecret };
}
