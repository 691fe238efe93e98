import { randomBytes } from "node:crypto";
import { sha256Hex } from "../domain/hash.ts";
import type { Tenant, TenantStore } from "../ports/index.ts";

const BEARER = /^Bearer ([\x21-\x7E]{16,256})$/;

/** Resolves `Authorization: Bearer <key>` to a tenant. Keys are looked up by hash only. */
export async function authenticate(
  tenants: TenantStore,
  authorization: string | undefined,
): Promise<Tenant | null> {
  const match = authorization ? BEARER.exec(authorization.trim()) : null;
  if (!match?.[1]) return null;
  return tenants.findByApiKeyHash(sha256Hex(match[1]));
}

/** A new API key: shown once to its owner, stored only as its sha256. */
export const newApiKey = (): string => `cnk_${randomBytes(24).toString("base64url")}`;

export async function createTenant(
  tenants: TenantStore,
  tenant: Tenant,
  apiKey: string = newApiKey(),
): Promise<{ tenant: Tenant; apiKey: string }> {
  await tenants.createTenant(tenant);
  await tenants.addApiKey(tenant.id, sha256Hex(apiKey));
  return { tenant, apiKey };
}
