import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { QueryCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import type { Job } from "../../domain/job.ts";
import { dueTime } from "../../domain/job-change.ts";
import type { StoreClient } from "./client.ts";
import { readJobs, wakeOf } from "./job-items.ts";
import { INDEXES, jobKey, TABLE_KEYS } from "./table-design.ts";

/**
 * The sparse `due` index (INDEXES.due): which jobs the reconciler must look at. When a job is due is
 * the domain's decision (`dueTime`, planned by `planJobChange`); how that time is kept in the index
 * (`wakeAt`, its shard, writes spared when a job's check moves later) is this module's.
 */

const JOB_PK_PREFIX = jobKey("").pk;

/** FNV-1a: stable across processes and releases, so a job always lands on the same due shard. */
export function dueShardOf(id: string, shards: number): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return String((hash >>> 0) % shards);
}

/** The index attributes of a new job item (absent, not NULL, keeps it out of the sparse index). */
export function dueAttributes(job: Job, shards: number): { dueShard: string; wakeAt: number } | null {
  return job.dueAt === null ? null : { dueShard: dueShardOf(job.id, shards), wakeAt: job.dueAt };
}

/** The part of one UpdateItem that keeps the due index in step with a job's new `dueAt`. */
export interface DueWrite {
  set: string[];
  remove: string[];
  names: Record<string, string>;
  values: Record<string, unknown>;
  /** A condition to add to the write's (it holds `wakeAt` where the write leaves it). */
  condition?: string;
  /** The write leaves `wakeAt` where it was: if its condition fails, try with `forceWake`. */
  keptWake: boolean;
}

/**
 * What writing `dueAt` over `job` (as read) does to the index. An index write costs as much as a table
 * write, so: a `dueAt` that does not move leaves the index alone; one that moves later than the
 * `wakeAt` the job was read with leaves `wakeAt` (the job is listed early, and the reconciler moves it
 * up when it finds it: see DueIndex.findDue), guarded in case a reconciler moved `wakeAt` since the
 * read; one that moves earlier, or over a job object the store did not hand out, sets `wakeAt`.
 */
export function dueWrite(job: Job, dueAt: number | null, shards: number, forceWake = false): DueWrite {
  const write: DueWrite = { set: [], remove: [], names: {}, values: {}, keptWake: false };
  const wake = wakeOf(job);
  if (dueAt === null) {
    if (job.dueAt === null && wake === null) return write; // known to be out of the index
    write.names = { "#dueAt": "dueAt", "#dueShard": "dueShard", "#wakeAt": "wakeAt" };
    write.remove.push("#dueAt", "#dueShard", "#wakeAt");
    return write;
  }
  if (dueAt === job.dueAt && !forceWake) return write; // listed no later than its dueAt already
  write.names = { "#dueAt": "dueAt", "#wakeAt": "wakeAt" };
  write.values = { ":dueAt": dueAt };
  write.set.push("#dueAt = :dueAt");
  if (!forceWake && typeof wake === "number" && wake <= dueAt) {
    write.keptWake = true;
    write.condition = "#wakeAt <= :dueAt";
    return write;
  }
  write.names["#dueShard"] = "dueShard";
  write.values[":dueShard"] = dueShardOf(job.id, shards);
  write.set.push("#wakeAt = :dueAt", "#dueShard = :dueShard");
  return write;
}

/** A job the `due` index lists: its id and the index's `wakeAt`. */
interface DueEntry {
  id: string;
  wakeAt: number;
}

export class DueIndex {
  constructor(
    private readonly doc: StoreClient,
    private readonly tableName: string,
    private readonly shards: number,
  ) {}

  /**
   * The `due` index carries only its keys: the selection (which jobs, earliest `wakeAt` first) is made
   * on it, then the selected jobs are read from the table, which decides (the index lags the table,
   * and lists a job early when a transition moved its `dueAt` later; those are moved up here).
   */
  async findDue(now: Date, limit: number): Promise<Job[]> {
    if (limit < 1) return [];
    const nowMs = now.getTime();
    const shards = Array.from({ length: this.shards }, (_, i) => String(i));
    const perShard = await Promise.all(shards.map((shard) => this.dueInShard(shard, nowMs, limit)));
    const selected = perShard
      .flat()
      .sort((a, b) => a.wakeAt - b.wakeAt || (a.id < b.id ? -1 : 1))
      .slice(0, limit);
    const found = await readJobs(
      this.doc,
      this.tableName,
      selected.map((entry) => entry.id),
    );
    const jobs: Job[] = [];
    const early: Job[] = [];
    for (const { id } of selected) {
      const job = found.get(id);
      if (!job) continue;
      const due = dueTime(job);
      if (due !== null && due <= nowMs) jobs.push(job);
      else early.push(job);
    }
    // Listed before its time (a transition moved `dueAt` later and left `wakeAt`): move it up.
    await Promise.all(early.map((job) => this.rewake(job)));
    return jobs;
  }

  /**
   * Sets `wakeAt` to the job's due time (or takes it out of the index when nothing is due), unless the
   * job changed since it was read. Not a state change: the version stays.
   */
  private async rewake(job: Job): Promise<void> {
    const due = dueTime(job);
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: jobKey(job.id),
          UpdateExpression: due !== null ? "SET #wakeAt = :dueAt" : "REMOVE #wakeAt, #dueShard",
          ConditionExpression: "#version = :version",
          ExpressionAttributeNames: {
            "#version": "version",
            "#wakeAt": "wakeAt",
            ...(due === null && { "#dueShard": "dueShard" }),
          },
          ExpressionAttributeValues: { ":version": job.version, ...(due !== null && { ":dueAt": due }) },
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return; // changed meanwhile: its writer set it
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
}
