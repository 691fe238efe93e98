/**
 * Creates a tenant in a deployed (or local) stack and prints its API key and webhook signing secret —
 * the only time either is shown.
 *
 *   npm run tenant:create -- --table <TableName> --id acme [--name "Acme Inc."] [--webhook https://…]
 *     [--weight 1..100] [--max-concurrency 1..10000]
 *
 * `--weight` and `--max-concurrency` are the tenant's admission settings: its share of a provider's
 * slots against other waiting tenants, and a cap on its jobs running at once (docs/architecture.md,
 * Admission).
 *
 * Uses the standard AWS credential chain and region (AWS_PROFILE, AWS_REGION, ...). The table name is
 * in the stateful stack's resources (logical id JobsTable).
 */
import { parseArgs } from "node:util";
import { createDocumentClient } from "../shared/adapters/dynamo/client.ts";
import { DynamoTenantStore } from "../shared/adapters/dynamo/tenant-store.ts";
import { checkAdmissionSettings, DEFAULT_ADMISSION } from "../shared/domain/admission.ts";
import { ValidationError } from "../shared/domain/errors.ts";
import { createTenant } from "../shared/usecases/authenticate.ts";

const { values } = parseArgs({
  options: {
    table: { type: "string" },
    id: { type: "string" },
    name: { type: "string" },
    webhook: { type: "string" },
    weight: { type: "string" },
    "max-concurrency": { type: "string" },
  },
});
if (!values.table || !values.id || !/^[a-z0-9][a-z0-9-]{1,62}$/.test(values.id)) {
  console.error(
    "usage: npm run tenant:create -- --table <TableName> --id <lower-case-id> [--name <name>] [--webhook <url>] [--weight <1..100>] [--max-concurrency <1..10000>]",
  );
  process.exit(2);
}
const admission = {
  weight: values.weight === undefined ? DEFAULT_ADMISSION.weight : Number(values.weight),
  maxConcurrency:
    values["max-concurrency"] === undefined
      ? DEFAULT_ADMISSION.maxConcurrency
      : Number(values["max-concurrency"]),
};
try {
  checkAdmissionSettings(admission);
} catch (error) {
  console.error(
    error instanceof ValidationError ? `${error.message} ${JSON.stringify(error.details)}` : error,
  );
  process.exit(2);
}
const doc = createDocumentClient();
try {
  const tenants = new DynamoTenantStore(doc, values.table);
  const { apiKey, webhookSecret } = await createTenant(
    tenants,
    { id: values.id, name: values.name ?? values.id, createdAt: new Date().toISOString() },
    { webhookUrl: values.webhook ?? null },
  );
  if (values.weight !== undefined || values["max-concurrency"] !== undefined) {
    await tenants.setAdmissionSettings(values.id, admission);
  }
  console.log(
    JSON.stringify({ tenant_id: values.id, api_key: apiKey, webhook_secret: webhookSecret }, null, 2),
  );
  console.error(
    "Store both now: they are not shown again (rotate the secret with POST /v1/webhook/secret/rotate).",
  );
} finally {
  doc.destroy();
}
