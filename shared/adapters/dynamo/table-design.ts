/**
 * The single-table design, shared by the CDK stack (which creates the table) and the adapters
 * (which read and write it), so the two cannot disagree. The local stack creates the table from the
 * synthesized template, so it follows this file too.
 *
 * Items:
 *   job              pk=JOB#<id>                 sk=JOB
 *   tenant           pk=TENANT#<id>              sk=TENANT
 *   api key          pk=APIKEY#<sha256(key)>     sk=APIKEY      -> tenantId
 *   idempotency key  pk=IDEMP#<tenant>#<sha256>  sk=IDEMP       -> jobId, requestHash, ttl
 */
export const TABLE_KEYS = { partitionKey: "pk", sortKey: "sk" } as const;

/** Epoch-seconds attribute DynamoDB TTL deletes on (idempotency keys, finished jobs after retention). */
export const TTL_ATTRIBUTE = "ttl";

export const INDEXES = {
  /** A tenant's jobs, newest first (ULID ids sort by time). */
  byTenant: { name: "byTenant", partitionKey: "tenantId", sortKey: "id" },
  /** A tenant's jobs in one status, newest first. partition = `<tenantId>#<status>`. */
  byTenantStatus: { name: "byTenantStatus", partitionKey: "tenantStatus", sortKey: "id" },
  /**
   * Sparse index of non-terminal jobs by the time the reconciler should look at them. The partition
   * is one of DUE_SHARDS values so no single partition takes every write at scale.
   */
  due: { name: "due", partitionKey: "dueShard", sortKey: "dueAt" },
} as const;

export const DUE_SHARDS = 4;

export const jobKey = (id: string) => ({ pk: `JOB#${id}`, sk: "JOB" });
export const tenantKey = (id: string) => ({ pk: `TENANT#${id}`, sk: "TENANT" });
export const apiKeyKey = (keyHash: string) => ({ pk: `APIKEY#${keyHash}`, sk: "APIKEY" });
export const idempotencyKey = (tenantId: string, keyHash: string) => ({
  pk: `IDEMP#${tenantId}#${keyHash}`,
  sk: "IDEMP",
});

/** Client notifications live beside their job: pk=JOB#<id>, sk=NOTIF#<notification id>. */
export const notificationKey = (jobId: string, id: string) => ({ pk: `JOB#${jobId}`, sk: `NOTIF#${id}` });
