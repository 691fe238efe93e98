import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { DynamoTenantStore } from "../shared/adapters/dynamo/tenant-store.ts";
import { ConflictError } from "../shared/domain/errors.ts";
import { sha256Hex } from "../shared/domain/hash.ts";
import { apiKeyPrefix, apiKeyProblem, newApiKey, newWebhookSecret } from "../shared/usecases/authenticate.ts";

export const DEV_TENANT_ID = "dev";

/**
 * The dev API key `npm start` opens the local tenant with: DEV_API_KEY, or undefined (a fresh random
 * key) when it is unset or empty. A DEV_API_KEY the authorizer would never resolve is refused here,
 * before anything starts, instead of being printed as the dev key and then answered 401.
 */
export function devApiKeyFrom(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const key = env.DEV_API_KEY || undefined;
  if (key === undefined) return undefined;
  const problem = apiKeyProblem(key);
  if (problem) {
    throw new Error(
      `DEV_API_KEY is refused: ${problem}. Set a key that meets the rule, or unset DEV_API_KEY for a random one.`,
    );
  }
  return key;
}

/**
 * Makes sure a local tenant exists, that `apiKey` (DEV_API_KEY, or a fresh random key) opens it and
 * that it has a webhook signing secret (`webhookSecret`, e.g. DEV_WEBHOOK_SECRET, or a random one).
 * Idempotent across restarts: dynalite keeps its data between `npm start`s.
 */
export async function ensureTenant(
  tableName: string,
  tenantId: string = DEV_TENANT_ID,
  apiKey: string = newApiKey(),
  webhookSecret?: string,
): Promise<{ tenantId: string; apiKey: string; webhookSecret: string }> {
  const doc = createDocumentClient();
  try {
    const tenants = new DynamoTenantStore(doc, tableName);
    try {
      await tenants.createTenant({ id: tenantId, name: tenantId, createdAt: new Date().toISOString() });
    } catch (error) {
      // dynalite keeps its data between runs: the tenant may exist already.
      if (!(error instanceof ConflictError && error.code === "TENANT_EXISTS")) throw error;
    }
    await tenants.addApiKey(tenantId, sha256Hex(apiKey), apiKeyPrefix(apiKey));
    const { secrets } = await tenants.getWebhookSettings(tenantId);
    const current = secrets.find((s) => s.retiresAt === null)?.secret;
    if (current && (webhookSecret === undefined || webhookSecret === current)) {
      return { tenantId, apiKey, webhookSecret: current };
    }
    const secret = webhookSecret ?? newWebhookSecret();
    const now = new Date();
    // A changed DEV_WEBHOOK_SECRET replaces the old one at once: nobody else relies on it locally.
    await tenants.addWebhookSecret(tenantId, secret, now, now);
    return { tenantId, apiKey, webhookSecret: secret };
  } finally {
    doc.destroy();
  }
}
