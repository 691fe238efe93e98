import { ConditionalCheckFailedException, TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { ConflictError, StaleWriteError, UnavailableError, ValidationError } from "../../domain/errors.ts";
import { sha256Hex } from "../../domain/hash.ts";
import { isJobId } from "../../domain/ids.ts";
import {
  assertTransition,
  isTerminal,
  type Job,
  type JobStatus,
  TERMINAL_STATUSES,
} from "../../domain/job.ts";
import {
  type Clock,
  type CreateJobResult,
  type IdempotencyRecord,
  type JobPage,
  type JobPatch,
  type JobStore,
  type ListJobsQuery,
  systemClock,
} from "../../ports/index.ts";
import { type StoreClient, storeClient } from "./client.ts";
import { upgradeStoredJob } from "./stored-job.ts";
import { DUE_SHARDS, INDEXES, idempotencyKey, jobKey, TABLE_KEYS, TTL_ATTRIBUTE } from "./table-design.ts";

export interface DynamoJobStoreOptions {
  /** Partitions of the sparse `due` index; must match what earlier writers used (table-design DUE_SHARDS). */
  dueShards?: number;
  /** Days a terminal job is kept before DynamoDB TTL deletes it. */
  retentionDays?: number;
  clock?: Clock;
}

/** Attributes the table adds to a job that are not part of the `Job` model. */
const STORAGE_ONLY = new Set(["pk", "sk", "type", "tenantStatus", "dueShard", "wakeAt", TTL_ATTRIBUTE]);

/**
 * The `wakeAt` each job object was read with (see INDEXES.due): lets a write that moves `dueAt` later
 * leave the index alone. Jobs built elsewhere are absent, and their writes set `wakeAt` outright.
 */
const wakeSeen = new WeakMap<Job, number | null>();

const PATCH_FIELDS = ["attempts", "outputs", "error", "providerState", "notifyPending"] as const;

const CURSOR_VERSION = 1;
const MAX_CURSOR_LENGTH = 200;
/** BatchGetItem reads at most 100 items per request. */
const BATCH_GET_MAX_KEYS = 100;
/** Requests per chunk of a BatchGetItem before keys DynamoDB keeps leaving unprocessed fail the read. */
const BATCH_GET_ATTEMPTS = 5;
const JOB_PK_PREFIX = jobKey("").pk;

/**
 * Index queries one filtered list page may take (rounds of queries, one per partition, for the
 * unfiltered list) before it answers a short page with a cursor.
 */
const MAX_LIST_QUERIES = 5;

/**
 * The `byTenantStatus` partition of a job: `<tenant>#<status>` once it is finished, `<tenant>#active`
 * before. Unfinished states change several times per job; keeping them in one partition means the
 * index is written twice per job (create, finish) instead of on every transition.
 */
export function tenantStatusOf(tenantId: string, status: JobStatus): string {
  return `${tenantId}#${isTerminal(status) ? status : "active"}`;
}

/** Every `byTenantStatus` partition a tenant's jobs can be in: the unfiltered list merges them. */
const TENANT_PHASES = ["active", ...TERMINAL_STATUSES] as const;

/**
 * What one partition's index query answered, newest first: its ids, and, when it was truncated (a
 * LastEvaluatedKey: it hit its Limit or DynamoDB's 1 MB page), the id it stopped at. Ids below
 * `reached` were not seen.
 */
export interface IndexSlice {
  readonly ids: readonly string[];
  readonly reached?: string | undefined;
}

/**
 * Merges the answers of several partitions into one page of at most `limit` ids, newest first (ULID
 * ids: descending = newest first), each once: during a job's terminal transition the index can list
 * it in both its old and its new partition. `next` is where the following page starts (it lists ids
 * below it), null when every partition is exhausted.
 *
 * A page must skip nothing: a partition that stopped early may hold unseen ids just below the id it
 * stopped at, and the next page starts below this page's last id. So the page goes down no further
 * than the highest id any truncated partition stopped at (`floor`): every id at or above it is known
 * from every partition. A partition that stopped at its Limit (the page size) returned `limit` ids,
 * all at or above its stop, so the newest `limit` of the merge never pass below it and the page stays
 * full; the floor is what keeps a query that stopped short of its Limit (DynamoDB's 1 MB page) from
 * losing ids: its page is shorter, and the next one starts at the floor.
 */
export function mergeNewestFirst(
  slices: readonly IndexSlice[],
  limit: number,
): { ids: string[]; next: string | null } {
  let floor: string | undefined;
  for (const { reached } of slices) {
    if (reached !== undefined && (floor === undefined || reached > floor)) floor = reached;
  }
  const merged = [...new Set(slices.flatMap((slice) => slice.ids))]
    .filter((id) => floor === undefined || id >= floor)
    .sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
  const ids = merged.slice(0, Math.max(1, limit));
  if (merged.length > ids.length) return { ids, next: ids.at(-1) ?? null };
  // All known ids taken: go on below the floor, where truncated partitions have more (none: done).
  return { ids, next: floor ?? null };
}

/**
 * Why a cancelled transaction may succeed if tried again: a concurrent one on the same item, or
 * capacity (provisioned capacity exhausted, or an on-demand partition's burst limit).
 */
const RETRYABLE_CANCEL_REASONS = new Set([
  "TransactionConflict",
  "ThrottlingError",
  "ProvisionedThroughputExceeded",
]);

/** Bounded retries of a transaction that lost to a concurrent one on the same item, or was throttled. */
const TRANSACTION_CONFLICT_ATTEMPTS = 3;

/** FNV-1a: stable across processes and releases, so a job always lands on the same due shard. */
export function dueShardOf(id: string, shards: number): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return String((hash >>> 0) % shards);
}

export class DynamoJobStore implements JobStore {
  private readonly dueShards: number;
  private readonly retentionSeconds: number;
  private readonly clock: Clock;
  private readonly doc: StoreClient;

  constructor(
    doc: DynamoDBDocumentClient,
    private readonly tableName: string,
    options: DynamoJobStoreOptions = {},
  ) {
    this.doc = storeClient(doc, "job store");
    this.dueShards = options.dueShards ?? DUE_SHARDS;
    this.retentionSeconds = (options.retentionDays ?? 30) * 86_400;
    this.clock = options.clock ?? systemClock;
    if (!Number.isInteger(this.dueShards) || this.dueShards < 1)
      throw new RangeError("dueShards must be >= 1");
  }

  async create(job: Job, idempotency?: IdempotencyRecord): Promise<CreateJobResult> {
    const item = this.toItem(job);
    wakeSeen.set(job, typeof item.wakeAt === "number" ? item.wakeAt : null);
    if (!idempotency) {
      try {
        await this.doc.send(
          new PutCommand({
            TableName: this.tableName,
            Item: item,
            ConditionExpression: "attribute_not_exists(pk)",
          }),
        );
        return { created: true, job };
      } catch (error) {
        if (error instanceof ConditionalCheckFailedException) throw duplicateJob(job.id, error);
        throw error;
      }
    }

    const idemKey = idempotencyKey(job.tenantId, idempotency.keyHash);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.doc.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Put: {
                  TableName: this.tableName,
                  Item: item,
                  ConditionExpression: "attribute_not_exists(pk)",
                },
              },
              {
                Put: {
                  TableName: this.tableName,
                  Item: {
                    ...idemKey,
                    type: "idempotency",
                    tenantId: job.tenantId,
                    jobId: job.id,
                    requestHash: idempotency.requestHash,
                    [TTL_ATTRIBUTE]: idempotency.expiresAt,
                  },
                  // TTL deletion lags expiry by up to days, so an expired record is overwritable here.
                  ConditionExpression: "attribute_not_exists(pk) OR #ttl < :nowSeconds",
                  ExpressionAttributeNames: { "#ttl": TTL_ATTRIBUTE },
                  ExpressionAttributeValues: { ":nowSeconds": this.nowSeconds() },
                },
              },
            ],
          }),
        );
        return { created: true, job };
      } catch (error) {
        if (!(error instanceof TransactionCanceledException)) throw error;
        const [jobReason, idemReason] = (error.CancellationReasons ?? []).map((r) => r.Code);
        if (idemReason === "ConditionalCheckFailed") {
          const existing = await this.readIdempotency(idemKey);
          // The record vanished (TTL) between the write and the read: the key is free, try again.
          if (existing && existing.ttl >= this.nowSeconds()) {
            return {
              created: false,
              existingJobId: existing.jobId,
              sameRequest: existing.requestHash === idempotency.requestHash,
            };
          }
        } else if (jobReason === "ConditionalCheckFailed") {
          throw duplicateJob(job.id, error);
        } else if (![jobReason, idemReason].some((reason) => RETRYABLE_CANCEL_REASONS.has(reason ?? ""))) {
          throw error;
        }
        if (attempt >= TRANSACTION_CONFLICT_ATTEMPTS) {
          throw new UnavailableError("STORE_UNAVAILABLE", "The job could not be created; try again.", {
            cause: error,
          });
        }
        await pause(20 * attempt + Math.random() * 30);
      }
    }
  }

  async get(id: string): Promise<Job | null> {
    const out = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: jobKey(id), ConsistentRead: true }),
    );
    return out.Item ? fromItem(out.Item) : null;
  }

  async listByTenant(tenantId: string, query: ListJobsQuery): Promise<JobPage> {
    const afterId = query.cursor === undefined ? undefined : decodeCursor(query.cursor, tenantId);
    const limit = Math.max(1, Math.floor(query.limit));
    return query.status === undefined
      ? this.listAll(tenantId, afterId, limit)
      : this.listByStatus(tenantId, query.status, afterId, limit);
  }

  /** One `byTenantStatus` partition: the status's own, or `active` shared by the unfinished states. */
  private async listByStatus(
    tenantId: string,
    status: JobStatus,
    afterId: string | undefined,
    limit: number,
  ): Promise<JobPage> {
    const index = INDEXES.byTenantStatus;
    const partition = tenantStatusOf(tenantId, status);
    // Rebuilt from the caller's own tenant, so a cursor can never reach into another tenant's jobs.
    let startKey: Record<string, unknown> | undefined =
      afterId === undefined
        ? undefined
        : { ...jobKey(afterId), [index.partitionKey]: partition, [index.sortKey]: afterId };
    const jobs: Job[] = [];
    // The index holds ids only (KEYS_ONLY): select the page there, read the jobs from the table.
    // Unfinished jobs share one `active` partition, so a filter on one of their states may need
    // more than one query to fill a page (bounded: a short page with a cursor says "go on").
    for (let queries = 0; queries < MAX_LIST_QUERIES; queries++) {
      const out = await this.doc.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: index.name,
          KeyConditionExpression: "#p = :p",
          ExpressionAttributeNames: { "#p": index.partitionKey },
          ExpressionAttributeValues: { ":p": partition },
          ScanIndexForward: false,
          Limit: limit - jobs.length,
          ...(startKey && { ExclusiveStartKey: startKey }),
        }),
      );
      const ids = (out.Items ?? []).map((item) => item[index.sortKey]).filter(isString);
      const found = await this.readJobs(ids);
      for (const id of ids) {
        const job = found.get(id);
        // Gone since the index listed it (TTL), or (index lag) no longer in the status asked for.
        if (!job || job.tenantId !== tenantId || job.status !== status) continue;
        jobs.push(job);
      }
      startKey = out.LastEvaluatedKey;
      if (!startKey || jobs.length >= limit) break;
    }
    const lastId = startKey?.[index.sortKey];
    return { jobs, nextCursor: typeof lastId === "string" ? encodeCursor(lastId, tenantId) : null };
  }

  /**
   * Every job of the tenant, newest first: the tenant's `byTenantStatus` partitions queried side by
   * side and merged by id (see mergeNewestFirst). When jobs listed are gone from the table, further
   * rounds fill the page (bounded: a short page with a cursor says "go on").
   */
  private async listAll(tenantId: string, afterId: string | undefined, limit: number): Promise<JobPage> {
    const jobs: Job[] = [];
    let below = afterId;
    let next: string | null = null;
    for (let rounds = 0; rounds < MAX_LIST_QUERIES; rounds++) {
      const wanted = limit - jobs.length;
      const slices = await Promise.all(
        TENANT_PHASES.map((phase) => this.queryPhase(`${tenantId}#${phase}`, below, wanted)),
      );
      const page = mergeNewestFirst(slices, wanted);
      const found = await this.readJobs(page.ids);
      for (const id of page.ids) {
        const job = found.get(id);
        // Gone since the index listed it (TTL).
        if (!job || job.tenantId !== tenantId) continue;
        jobs.push(job);
      }
      next = page.next;
      if (next === null || jobs.length >= limit) break;
      below = next;
    }
    return { jobs, nextCursor: next === null ? null : encodeCursor(next, tenantId) };
  }

  /**
   * Up to `limit` ids of one `byTenantStatus` partition below `belowId`, newest first. The partition
   * is built from the caller's own tenant and the cursor gives only an id bound, so a cursor can never
   * reach into another tenant's jobs.
   */
  private async queryPhase(
    partition: string,
    belowId: string | undefined,
    limit: number,
  ): Promise<IndexSlice> {
    const index = INDEXES.byTenantStatus;
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: index.name,
        KeyConditionExpression: belowId === undefined ? "#p = :p" : "#p = :p AND #id < :below",
        ExpressionAttributeNames: {
          "#p": index.partitionKey,
          ...(belowId !== undefined && { "#id": index.sortKey }),
        },
        ExpressionAttributeValues: { ":p": partition, ...(belowId !== undefined && { ":below": belowId }) },
        ScanIndexForward: false,
        Limit: limit,
      }),
    );
    const ids = (out.Items ?? []).map((item) => item[index.sortKey]).filter(isString);
    if (!out.LastEvaluatedKey) return { ids };
    const reached = out.LastEvaluatedKey[index.sortKey];
    return { ids, reached: typeof reached === "string" ? reached : ids.at(-1) };
  }

  async transition(job: Job, to: JobStatus, patch: JobPatch = {}): Promise<Job> {
    assertTransition(job.status, to);
    return this.write(job, to, patch);
  }

  /** Same-status update. A terminal job may still be due, but only while its notification is pending. */
  async update(job: Job, patch: JobPatch): Promise<Job> {
    return this.write(job, job.status, patch);
  }

  /**
   * The `due` index carries only its keys: the selection (which jobs, earliest `wakeAt` first) is made
   * on it, then the selected jobs are read from the table, which decides (the index lags the table,
   * and lists a job early when a transition moved its `dueAt` later; those are moved up here).
   */
  async findDue(now: Date, limit: number): Promise<Job[]> {
    if (limit < 1) return [];
    const nowMs = now.getTime();
    const shards = Array.from({ length: this.dueShards }, (_, i) => String(i));
    const perShard = await Promise.all(shards.map((shard) => this.dueInShard(shard, nowMs, limit)));
    const selected = perShard
      .flat()
      .sort((a, b) => a.wakeAt - b.wakeAt || (a.id < b.id ? -1 : 1))
      .slice(0, limit);
    const found = await this.readJobs(selected.map((entry) => entry.id));
    const jobs: Job[] = [];
    const early: Job[] = [];
    for (const { id } of selected) {
      const job = found.get(id);
      if (!job) continue;
      if (isDue(job, nowMs)) jobs.push(job);
      else early.push(job);
    }
    // Listed before its time (a transition moved `dueAt` later and left `wakeAt`): move it up.
    await Promise.all(early.map((job) => this.rewake(job)));
    return jobs;
  }

  /**
   * Sets `wakeAt` to the job's `dueAt` (or takes it out of the index when nothing is due), unless the
   * job changed since it was read. Not a state change: the version stays.
   */
  private async rewake(job: Job): Promise<void> {
    const due = job.dueAt !== null && (!isTerminal(job.status) || job.notifyPending === true);
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: jobKey(job.id),
          UpdateExpression: due ? "SET #wakeAt = :dueAt" : "REMOVE #wakeAt, #dueShard",
          ConditionExpression: "#version = :version",
          ExpressionAttributeNames: {
            "#version": "version",
            "#wakeAt": "wakeAt",
            ...(!due && { "#dueShard": "dueShard" }),
          },
          ExpressionAttributeValues: { ":version": job.version, ...(due && { ":dueAt": job.dueAt }) },
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return; // changed meanwhile: its writer set it
      throw error;
    }
  }

  /** One UpdateItem, guarded by the status and version the caller read: the write is all or nothing. */
  private async write(
    job: Job,
    to: JobStatus,
    patch: JobPatch,
    options: { forceWake?: boolean } = {},
  ): Promise<Job> {
    const names: Record<string, string> = {
      "#status": "status",
      "#version": "version",
    };
    const values: Record<string, unknown> = {
      ":from": job.status,
      ":version": job.version,
      ":to": to,
      ":one": 1,
    };
    const set = ["#status = :to", "#version = #version + :one"];
    // `updated_at` is what a client sees change: states, attempts, outputs, errors — not the
    // orchestrator's own bookkeeping (next check time, provider polling state, notification outbox).
    if (touchesPublicFields(job.status, to, patch)) {
      names["#updatedAt"] = "updatedAt";
      values[":now"] = this.clock.now().toISOString();
      set.push("#updatedAt = :now");
    }
    const remove: string[] = [];

    // The status index moves only when a job finishes (an index write costs as much as a table write).
    const phase = tenantStatusOf(job.tenantId, to);
    if (phase !== tenantStatusOf(job.tenantId, job.status)) {
      names["#tenantStatus"] = "tenantStatus";
      values[":tenantStatus"] = phase;
      set.push("#tenantStatus = :tenantStatus");
    }
    for (const field of PATCH_FIELDS) {
      if (!(field in patch)) continue;
      const value = patch[field];
      names[`#${field}`] = field;
      if (value === undefined) {
        // Only `providerState` is optional on Job: an explicit undefined clears it.
        if (field === "providerState") remove.push(`#${field}`);
        else delete names[`#${field}`];
        continue;
      }
      values[`:${field}`] = value;
      set.push(`#${field} = :${field}`);
    }

    const clearDue = () => {
      names["#dueAt"] = "dueAt";
      names["#dueShard"] = "dueShard";
      names["#wakeAt"] = "wakeAt";
      remove.push("#dueAt", "#dueShard", "#wakeAt");
    };
    if (isTerminal(to) && to !== job.status) {
      // Let TTL collect the job after the retention period.
      names["#ttl"] = TTL_ATTRIBUTE;
      values[":ttl"] = this.nowSeconds() + this.retentionSeconds;
      set.push("#ttl = :ttl");
    }
    let condition = "#status = :from AND #version = :version";
    let keptWake = false;
    if (isTerminal(to) && typeof patch.dueAt !== "number") {
      // Leave the sparse `due` index (unless the caller keeps the job due for its pending notification).
      clearDue();
    } else if (patch.dueAt === null) {
      clearDue();
    } else if (patch.dueAt !== undefined) {
      names["#dueAt"] = "dueAt";
      values[":dueAt"] = patch.dueAt;
      set.push("#dueAt = :dueAt");
      names["#wakeAt"] = "wakeAt";
      const wake = wakeSeen.get(job);
      if (!options.forceWake && typeof wake === "number" && wake <= patch.dueAt) {
        // Listed early already: the reconciler will find it no later than needed. The condition
        // guards against a reconciler having moved `wakeAt` since this job was read.
        keptWake = true;
        condition += " AND #wakeAt <= :dueAt";
      } else {
        names["#dueShard"] = "dueShard";
        values[":dueShard"] = dueShardOf(job.id, this.dueShards);
        set.push("#wakeAt = :dueAt", "#dueShard = :dueShard");
      }
    }

    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: jobKey(job.id),
          UpdateExpression: `SET ${set.join(", ")}${remove.length ? ` REMOVE ${remove.join(", ")}` : ""}`,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: "ALL_NEW",
        }),
      );
      if (!out.Attributes) throw new Error(`UpdateItem on job ${job.id} returned no attributes.`);
      return fromItem(out.Attributes);
    } catch (error) {
      // Perhaps only `wakeAt` moved past the new `dueAt` since the read: write it outright instead.
      if (error instanceof ConditionalCheckFailedException && keptWake) {
        return this.write(job, to, patch, { forceWake: true });
      }
      if (error instanceof ConditionalCheckFailedException) {
        throw new StaleWriteError(`Job ${job.id} is no longer ${job.status} at version ${job.version}.`, {
          cause: error,
        });
      }
      throw error;
    }
  }

  /** Up to `limit` due entries of one shard, oldest first, selected on the index's projection. */
  private async dueInShard(shard: string, nowMs: number, limit: number): Promise<DueEntry[]> {
    const found: DueEntry[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await this.doc.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: INDEXES.due.name,
          KeyConditionExpression: "#shard = :shard AND #wakeAt <= :now",
          ExpressionAttributeNames: { "#shard": INDEXES.due.partitionKey, "#wakeAt": INDEXES.due.sortKey },
          ExpressionAttributeValues: { ":shard": shard, ":now": nowMs },
          ScanIndexForward: true,
          Limit: limit,
          ExclusiveStartKey: startKey,
        }),
      );
      // The index lags the table: a job finished a moment ago may still be listed.
      for (const item of out.Items ?? []) {
        const pk = item[TABLE_KEYS.partitionKey];
        const wakeAt = item[INDEXES.due.sortKey];
        if (typeof pk !== "string" || !pk.startsWith(JOB_PK_PREFIX) || typeof wakeAt !== "number") continue;
        found.push({ id: pk.slice(JOB_PK_PREFIX.length), wakeAt });
      }
      startKey = out.LastEvaluatedKey;
    } while (startKey && found.length < limit);
    return found.slice(0, limit);
  }

  /**
   * Reads jobs by id with strongly consistent BatchGetItem (100 keys a request), retrying the keys
   * DynamoDB leaves unprocessed a bounded number of times. Jobs that do not exist are absent.
   */
  private async readJobs(ids: readonly string[]): Promise<Map<string, Job>> {
    const jobs = new Map<string, Job>();
    const unique = [...new Set(ids)];
    for (let start = 0; start < unique.length; start += BATCH_GET_MAX_KEYS) {
      let keys: Record<string, unknown>[] = unique.slice(start, start + BATCH_GET_MAX_KEYS).map(jobKey);
      for (let attempt = 1; keys.length > 0; attempt++) {
        if (attempt > BATCH_GET_ATTEMPTS) {
          throw new UnavailableError(
            "STORE_UNAVAILABLE",
            `The job store is unavailable (${keys.length} jobs left unread); try again.`,
          );
        }
        if (attempt > 1) await pause(Math.min(25 * 2 ** (attempt - 2), 400) * (0.5 + Math.random()));
        const out = await this.doc.send(
          new BatchGetCommand({
            RequestItems: { [this.tableName]: { Keys: keys, ConsistentRead: true } },
          }),
        );
        for (const item of out.Responses?.[this.tableName] ?? []) {
          const job = fromItem(item);
          jobs.set(job.id, job);
        }
        keys = out.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
      }
    }
    return jobs;
  }

  private async readIdempotency(
    key: Record<string, string>,
  ): Promise<{ jobId: string; requestHash: string; ttl: number } | null> {
    const out = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
    );
    const item = out.Item;
    if (!item || typeof item.jobId !== "string") return null;
    return { jobId: item.jobId, requestHash: String(item.requestHash), ttl: Number(item[TTL_ATTRIBUTE]) };
  }

  private toItem(job: Job): Record<string, unknown> {
    const item: Record<string, unknown> = {
      ...job,
      ...jobKey(job.id),
      type: "job",
      tenantStatus: tenantStatusOf(job.tenantId, job.status),
    };
    // Key attributes of a GSI must be absent (not NULL) for the item to stay out of the sparse index.
    if ((isTerminal(job.status) && !job.notifyPending) || job.dueAt === null) {
      delete item.dueAt;
    } else {
      item.dueShard = dueShardOf(job.id, this.dueShards);
      item.wakeAt = job.dueAt;
    }
    if (isTerminal(job.status)) item[TTL_ATTRIBUTE] = this.nowSeconds() + this.retentionSeconds;
    return item;
  }

  private nowSeconds(): number {
    return Math.floor(this.clock.now().getTime() / 1000);
  }
}

/** A job the `due` index lists: its id and the index's `wakeAt`. */
interface DueEntry {
  id: string;
  wakeAt: number;
}

/** What `findDue` returns: due by `nowMs`, and not terminal unless its notification is pending. */
function isDue(job: Job, nowMs: number): boolean {
  return job.dueAt !== null && job.dueAt <= nowMs && (!isTerminal(job.status) || job.notifyPending === true);
}

const isString = (value: unknown): value is string => typeof value === "string";

export const touchesPublicFields = (from: JobStatus, to: JobStatus, patch: JobPatch): boolean =>
  from !== to || "attempts" in patch || "outputs" in patch || "error" in patch;

function fromItem(item: Record<string, unknown>): Job {
  const job: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(item)) {
    if (!STORAGE_ONLY.has(key)) job[key] = value;
  }
  job.dueAt = typeof item.dueAt === "number" ? item.dueAt : null;
  // This store is the only writer of job items, so the shape is the one `toItem` wrote (now or before).
  const read = upgradeStoredJob(job as unknown as Job);
  wakeSeen.set(read, typeof item.wakeAt === "number" ? item.wakeAt : null);
  return read;
}

function duplicateJob(id: string, cause: unknown): ConflictError {
  const error = new ConflictError("JOB_EXISTS", `A job with id ${id} already exists.`);
  error.cause = cause;
  return error;
}

/** A short digest of the tenant a cursor was issued to: another API key's cursor is refused, not reinterpreted. */
const cursorOwner = (tenantId: string): string => sha256Hex(`cursor:${tenantId}`).slice(0, 16);

export function encodeCursor(id: string, tenantId?: string): string {
  const owner = tenantId === undefined ? {} : { t: cursorOwner(tenantId) };
  return Buffer.from(JSON.stringify({ v: CURSOR_VERSION, id, ...owner }), "utf8").toString("base64url");
}

/** Returns the id of the last job of the previous page, or throws INVALID_CURSOR. */
export function decodeCursor(cursor: string, tenantId?: string): string {
  const invalid = (message: string) =>
    new ValidationError(
      "The cursor is not valid; use the nextCursor of a previous page.",
      [{ path: "cursor", message }],
      "INVALID_CURSOR",
    );
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw invalid("not a base64url string of the expected length");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalid("not valid JSON");
  }
  if (typeof parsed !== "object" || parsed === null) throw invalid("not an object");
  const { v, id, t } = parsed as { v?: unknown; id?: unknown; t?: unknown };
  if (v !== CURSOR_VERSION) throw invalid("unknown cursor version");
  if (typeof id !== "string" || !isJobId(id)) throw invalid("does not name a job");
  if (t !== undefined && (tenantId === undefined || t !== cursorOwner(tenantId))) {
    throw invalid("was issued to another API key");
  }
  return id;
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
