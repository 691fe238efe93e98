import { QueryCommand } from "@aws-sdk/lib-dynamodb";
import * as z from "zod/mini";
import { ValidationError } from "../../domain/errors.ts";
import { sha256Hex } from "../../domain/hash.ts";
import { isJobId } from "../../domain/ids.ts";
import { isTerminal, type Job, type JobStatus, TERMINAL_STATUSES } from "../../domain/job.ts";
import type { JobPage, ListJobsQuery } from "../../ports/index.ts";
import type { StoreClient } from "./client.ts";
import { readJobs } from "./job-items.ts";
import { INDEXES, jobKey } from "./table-design.ts";

/**
 * A tenant's jobs, newest first, a page at a time: selected on the `byTenantStatus` index (ids only),
 * read from the table. The cursor is opaque to clients and bound to the tenant it was issued to.
 */

const CURSOR_VERSION = 1;
const MAX_CURSOR_LENGTH = 200;

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

export class JobListing {
  constructor(
    private readonly doc: StoreClient,
    private readonly tableName: string,
  ) {}

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
      const found = await readJobs(this.doc, this.tableName, ids);
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
      const found = await readJobs(this.doc, this.tableName, page.ids);
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
}

const isString = (value: unknown): value is string => typeof value === "string";

/** A short digest of the tenant a cursor was issued to: another API key's cursor is refused, not reinterpreted. */
const cursorOwner = (tenantId: string): string => sha256Hex(`cursor:${tenantId}`).slice(0, 16);

/**
 * A decoded cursor: exactly these fields, the owner included. A cursor without its owner, or with
 * any other field, is not one this store issued, so it is refused rather than read leniently.
 */
const cursorSchema = z.strictObject({
  v: z.literal(CURSOR_VERSION),
  id: z.string().check(z.refine(isJobId)),
  t: z.string().check(z.regex(/^[0-9a-f]{16}$/)),
});
type CursorField = keyof z.infer<typeof cursorSchema>;
const CURSOR_FIELD_PROBLEMS: Record<CursorField, string> = {
  v: "unknown cursor version",
  id: "does not name a job",
  t: "does not name the API key it was issued to",
};

/** The cursor that continues a tenant's list after job `id`; only that tenant's key can use it. */
export function encodeCursor(id: string, tenantId: string): string {
  const cursor: z.infer<typeof cursorSchema> = { v: CURSOR_VERSION, id, t: cursorOwner(tenantId) };
  return Buffer.from(JSON.stringify(cursor), "utf8").toString("base64url");
}

/** Returns the id of the last job of the previous page, or throws INVALID_CURSOR. */
export function decodeCursor(cursor: string, tenantId: string): string {
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
  const result = cursorSchema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue?.path[0];
    throw invalid(
      issue?.code === "unrecognized_keys"
        ? "has fields a cursor does not have"
        : typeof field === "string" && Object.hasOwn(CURSOR_FIELD_PROBLEMS, field)
          ? CURSOR_FIELD_PROBLEMS[field as CursorField]
          : "not a cursor object",
    );
  }
  if (result.data.t !== cursorOwner(tenantId)) throw invalid("was issued to another API key");
  return result.data.id;
}
