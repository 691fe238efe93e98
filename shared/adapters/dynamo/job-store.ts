import { ConditionalCheckFailedException, TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { ConflictError, StaleWriteError, UnavailableError } from "../../domain/errors.ts";
import type { Job, JobStatus } from "../../domain/job.ts";
import {
  DEFAULT_RETENTION_DAYS,
  type JobChange,
  type JobRules,
  planJobChange,
  planNewJob,
} from "../../domain/job-change.ts";
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
import { DueIndex, dueAttributes, dueWrite } from "./due-index.ts";
import { fromItem, pause, rememberWake } from "./job-items.ts";
import { JobListing, tenantStatusOf } from "./job-listing.ts";
import { DUE_SHARDS, idempotencyKey, jobKey, TTL_ATTRIBUTE } from "./table-design.ts";

export interface DynamoJobStoreOptions {
  /** Partitions of the sparse `due` index; must match what earlier writers used (table-design DUE_SHARDS). */
  dueShards?: number;
  /** Days a terminal job is kept before DynamoDB TTL deletes it. */
  retentionDays?: number;
  clock?: Clock;
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

/**
 * Jobs in the single table. What a change makes of a job is `planJobChange`'s (domain/job-change.ts);
 * this store writes the planned job (its changed fields) in one UpdateItem conditional on the status
 * and version read, and lays it out for the indexes: listing (job-listing.ts), due (due-index.ts).
 */
export class DynamoJobStore implements JobStore {
  private readonly dueShards: number;
  private readonly rules: JobRules;
  private readonly clock: Clock;
  private readonly doc: StoreClient;
  private readonly listing: JobListing;
  private readonly due: DueIndex;

  constructor(
    doc: DynamoDBDocumentClient,
    private readonly tableName: string,
    options: DynamoJobStoreOptions = {},
  ) {
    this.doc = storeClient(doc, "job store");
    this.dueShards = options.dueShards ?? DUE_SHARDS;
    this.rules = { retentionSeconds: (options.retentionDays ?? DEFAULT_RETENTION_DAYS) * 86_400 };
    this.clock = options.clock ?? systemClock;
    if (!Number.isInteger(this.dueShards) || this.dueShards < 1)
      throw new RangeError("dueShards must be >= 1");
    this.listing = new JobListing(this.doc, tableName);
    this.due = new DueIndex(this.doc, tableName, this.dueShards);
  }

  async create(job: Job, idempotency?: IdempotencyRecord): Promise<CreateJobResult> {
    const { stored, item } = this.newItem(job);
    if (!idempotency) {
      try {
        await this.doc.send(
          new PutCommand({
            TableName: this.tableName,
            Item: item,
            ConditionExpression: "attribute_not_exists(pk)",
          }),
        );
        return { created: true, job: stored };
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
        return { created: true, job: stored };
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

  listByTenant(tenantId: string, query: ListJobsQuery): Promise<JobPage> {
    return this.listing.listByTenant(tenantId, query);
  }

  findDue(now: Date, limit: number): Promise<Job[]> {
    return this.due.findDue(now, limit);
  }

  async transition(job: Job, to: JobStatus, patch: JobPatch = {}): Promise<Job> {
    return this.write(job, { to, patch });
  }

  async update(job: Job, patch: JobPatch): Promise<Job> {
    return this.write(job, { patch });
  }

  /**
   * One UpdateItem of the fields the plan changed, guarded by the status and version the caller read:
   * the write is all or nothing. An invalid transition throws before anything is sent.
   */
  private async write(job: Job, change: JobChange, forceWake = false): Promise<Job> {
    const plan = planJobChange(job, change, this.clock.now(), this.rules);
    const next = plan.job;
    const names: Record<string, string> = { "#status": "status", "#version": "version" };
    const values: Record<string, unknown> = {
      ":from": job.status,
      ":version": job.version,
      ":to": next.status,
      ":next": next.version,
    };
    const set = ["#status = :to", "#version = :next"];
    const remove: string[] = [];
    for (const field of plan.changed) {
      if (field === "status" || field === "version" || field === "dueAt") continue;
      names[`#${field}`] = field;
      if (next[field] === undefined) remove.push(`#${field}`);
      else {
        values[`:${field}`] = next[field];
        set.push(`#${field} = :${field}`);
      }
    }
    // The status index moves only when a job finishes (an index write costs as much as a table write).
    const phase = tenantStatusOf(next.tenantId, next.status);
    if (phase !== tenantStatusOf(job.tenantId, job.status)) {
      names["#tenantStatus"] = "tenantStatus";
      values[":tenantStatus"] = phase;
      set.push("#tenantStatus = :tenantStatus");
    }
    if (plan.expiresAt !== undefined) {
      // Let TTL collect the job after the retention period.
      names["#ttl"] = TTL_ATTRIBUTE;
      values[":ttl"] = plan.expiresAt;
      set.push("#ttl = :ttl");
    }
    const due = dueWrite(job, next.dueAt, this.dueShards, forceWake);
    Object.assign(names, due.names);
    Object.assign(values, due.values);
    set.push(...due.set);
    remove.push(...due.remove);
    const condition = `#status = :from AND #version = :version${due.condition ? ` AND ${due.condition}` : ""}`;

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
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      // Perhaps only `wakeAt` moved past the new `dueAt` since the read: write it outright instead.
      if (due.keptWake) return this.write(job, change, true);
      throw new StaleWriteError(`Job ${job.id} is no longer ${job.status} at version ${job.version}.`, {
        cause: error,
      });
    }
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

  /** A new job as planned, and its item: laid out for the indexes, with its expiry when it is finished. */
  private newItem(job: Job): { stored: Job; item: Record<string, unknown> } {
    const plan = planNewJob(job, this.clock.now(), this.rules);
    const due = dueAttributes(plan.job, this.dueShards);
    // The next write may start from the caller's object or from the one handed back: both know their wakeAt.
    for (const copy of [job, plan.job]) rememberWake(copy, due?.wakeAt ?? null);
    const { dueAt, ...fields } = plan.job;
    const item = {
      ...fields,
      ...jobKey(job.id),
      type: "job",
      tenantStatus: tenantStatusOf(job.tenantId, job.status),
      // Key attributes of a GSI must be absent (not NULL) for the item to stay out of the sparse index.
      ...(due && { dueAt, ...due }),
      ...(plan.expiresAt !== undefined && { [TTL_ATTRIBUTE]: plan.expiresAt }),
    };
    return { stored: plan.job, item };
  }

  private nowSeconds(): number {
    return Math.floor(this.clock.now().getTime() / 1000);
  }
}

function duplicateJob(id: string, cause: unknown): ConflictError {
  const error = new ConflictError("JOB_EXISTS", `A job with id ${id} already exists.`);
  error.cause = cause;
  return error;
}
