/**
 * The single-table design, shared by the CDK stack (which creates the table) and the adapters
 * (which read and write it), so the two cannot disagree. The local stack creates the table from the
 * synthesized template, so it follows this file too.
 *
 * Items (docs/architecture.md describes each):
 *   job              pk=JOB#<id>                 sk=JOB
 *   notification     pk=JOB#<jobId>              sk=NOTIF#<id>  (beside its job)
 *   tenant           pk=TENANT#<id>              sk=TENANT
 *   api key          pk=APIKEY#<sha256(key)>     sk=APIKEY      -> tenantId, keyId
 *   tenant's api key pk=TENANT#<id>              sk=APIKEY#<keyId> -> name, prefix, keyHash (listing)
 *   idempotency key  pk=IDEMP#<tenant>#<sha256>  sk=IDEMP       -> jobId, requestHash, ttl
 *   capacity gate    pk=CAPACITY#<provider>      sk=CAPACITY    -> holders (capacity-gate.ts)
 *   circuit breaker  pk=BREAKER#<provider>       sk=BREAKER     -> failures, openedAt, probeAt
 *   waiting entry    pk=WAIT#<provider>#<tenant>#<key>  sk=<priority rank>#<enqueuedAt>#<jobId>
 *   waiting lane     pk=LANES#<provider>         sk=<tenant>#<key> -> weight, maxConcurrency, touchedAt
 */
export const TABLE_KEYS = { partitionKey: "pk", sortKey: "sk" } as const;

/** Epoch-seconds attribute DynamoDB TTL deletes on (idempotency keys, finished jobs after retention). */
export const TTL_ATTRIBUTE = "ttl";

/**
 * What a global secondary index copies of each item besides the table and index keys. An index write
 * costs as much as the item it copies, and happens whenever an update touches the index's key or a
 * projected attribute, so the indexes project only what their readers need and fetch the jobs from
 * the table (BatchGetItem) once selected.
 */
export type IndexProjection =
  | { readonly type: "KEYS_ONLY" }
  | { readonly type: "INCLUDE"; readonly nonKeyAttributes: readonly string[] };

export const INDEXES = {
  /**
   * A tenant's jobs by phase, newest first (ULID ids sort by time): partition = `<tenantId>#<status>`
   * for finished jobs and `<tenantId>#active` for unfinished ones (filtered by status after the read),
   * so the index changes only when a job is created and when it finishes. Ids only: a page is read
   * from the table. It serves the unfiltered listing too, by merging the tenant's four partitions
   * (active, succeeded, failed, cancelled) newest first: four small queries per page instead of a
   * second index written for every job.
   */
  byTenantStatus: {
    name: "byTenantStatus",
    partitionKey: "tenantStatus",
    sortKey: "id",
    projection: { type: "KEYS_ONLY" },
  },
  /**
   * Sparse index of the jobs the reconciler must look at, by `wakeAt`: a time at or before the job's
   * own `dueAt` (the next check its state needs). Transitions move `dueAt` freely (a plain attribute)
   * but move `wakeAt` only when the new `dueAt` is earlier, so a job that finishes before its first
   * check costs two index writes in all (enter, leave) instead of two per transition; the reconciler
   * moves `wakeAt` up to `dueAt` when it finds a job listed early. The partition is one of DUE_SHARDS
   * values so no single partition takes every write at scale. Keys only: the selected jobs are read
   * from the table, which decides.
   */
  due: {
    name: "due",
    partitionKey: "dueShard",
    sortKey: "wakeAt",
    projection: { type: "KEYS_ONLY" },
  },
} as const satisfies Record<
  string,
  { name: string; partitionKey: string; sortKey: string; projection: IndexProjection }
>;

/** The CloudFormation / DynamoDB API form of an index's projection (CreateTable, the template). */
export function projectionOf(projection: IndexProjection): {
  ProjectionType: "KEYS_ONLY" | "INCLUDE";
  NonKeyAttributes?: string[];
} {
  return projection.type === "INCLUDE"
    ? { ProjectionType: "INCLUDE", NonKeyAttributes: [...projection.nonKeyAttributes] }
    : { ProjectionType: "KEYS_ONLY" };
}

export const DUE_SHARDS = 4;

export const jobKey = (id: string) => ({ pk: `JOB#${id}`, sk: "JOB" });
export const tenantKey = (id: string) => ({ pk: `TENANT#${id}`, sk: "TENANT" });
export const tenantApiKeyKey = (tenantId: string, keyId: string) => ({
  pk: `TENANT#${tenantId}`,
  sk: `APIKEY#${keyId}`,
});
export const apiKeyKey = (keyHash: string) => ({ pk: `APIKEY#${keyHash}`, sk: "APIKEY" });
export const idempotencyKey = (tenantId: string, keyHash: string) => ({
  pk: `IDEMP#${tenantId}#${keyHash}`,
  sk: "IDEMP",
});

/** Client notifications live beside their job: pk=JOB#<id>, sk=NOTIF#<notification id>. */
export const notificationKey = (jobId: string, id: string) => ({ pk: `JOB#${jobId}`, sk: `NOTIF#${id}` });

/** A provider's waiting lane: one tenant's jobs under one concurrency key (waiting-list.ts). */
export const waitingLanePk = (provider: string, tenant: string, key: string) =>
  `WAIT#${provider}#${tenant}#${key}`;

/** The listing item of a lane, under its provider's `LANES#` partition. */
export const laneListingKey = (provider: string, tenant: string, key: string) => ({
  pk: `LANES#${provider}`,
  sk: `${tenant}#${key}`,
});
