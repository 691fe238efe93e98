import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { DynamoTenantStore } from "../shared/adapters/dynamo/tenant-store.ts";
import { ConflictError } from "../shared/domain/errors.ts";
import { sha256Hex } from "../shared/domain/hash.ts";
import { newApiKey } from "../shared/usecases/authenticate.ts";

export const DEV_TENANT_ID = "dev";

/**
 * Makes sure the local dev tenant exists and that `apiKey` (DEV_API_KEY, or a fresh random key)
 * opens it. Idempotent across restarts: dynalite keeps its data between `npm start`s.
 */
export async function ensureTenant(
  tableName: string,
  tenantId: string = DEV_TENANT_ID,
  apiKey: string = newApiKey(),
): Promise<{ tenantId: string; apiKey: string }> {
  const doc = createDocumentClient();
  try {
    const tenants = new DynamoTenantStore(doc, tableName);
    try {
      await tenants.createTenant({ id: tenantId, name: tenantId, createdAt: new Date().toISOString() });
    } catch (error) {
      // dynalite keeps its data between runs: the tenant may exist already.
      if (!(error instanceof ConflictError && error.code === "TENANT_EXISTS")) throw error;
    }
    await tenants.addApiKey(tenantId, sha256Hex(apiKey));
    return { tenantId, apiKey };
  } finally {
    doc.destroy();
  }
}
