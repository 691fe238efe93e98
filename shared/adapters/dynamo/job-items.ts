import { BatchGetCommand } from "@aws-sdk/lib-dynamodb";
import { UnavailableError } from "../../domain/errors.ts";
import type { Job } from "../../domain/job.ts";
import type { StoreClient } from "./client.ts";
import { upgradeStoredJob } from "./stored-job.ts";
import { jobKey, TTL_ATTRIBUTE } from "./table-design.ts";

/** Job items: how a job is read back from its item, and the batched read the listing and due index share. */

/** Attributes the table adds to a job that are not part of the `Job` model. */
const STORAGE_ONLY = new Set(["pk", "sk", "type", "tenantStatus", "dueShard", "wakeAt", TTL_ATTRIBUTE]);

/** BatchGetItem reads at most 100 items per request. */
const BATCH_GET_MAX_KEYS = 100;
/** Requests per chunk of a BatchGetItem before keys DynamoDB keeps leaving unprocessed fail the read. */
const BATCH_GET_ATTEMPTS = 5;

/**
 * The `wakeAt` each job object was read or written with (see INDEXES.due): lets a write that moves
 * `dueAt` later leave the index alone. Jobs built elsewhere are absent (undefined: unknown).
 */
const wakeSeen = new WeakMap<Job, number | null>();

export const rememberWake = (job: Job, wakeAt: number | null): void => {
  wakeSeen.set(job, wakeAt);
};

/** The `wakeAt` the job object was read with: a number, null (not in the due index) or undefined (unknown). */
export const wakeOf = (job: Job): number | null | undefined => wakeSeen.get(job);

/** The job an item holds; the `wakeAt` it was read with is remembered for the due index's write policy. */
export function fromItem(item: Record<string, unknown>): Job {
  const job: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(item)) {
    if (!STORAGE_ONLY.has(key)) job[key] = value;
  }
  job.dueAt = typeof item.dueAt === "number" ? item.dueAt : null;
  // The job store is the only writer of job items, so the shape is one it wrote (now or before).
  const read = upgradeStoredJob(job as unknown as Job);
  rememberWake(read, typeof item.wakeAt === "number" ? item.wakeAt : null);
  return read;
}

/**
 * Reads jobs by id with strongly consistent BatchGetItem (100 keys a request), retrying the keys
 * DynamoDB leaves unprocessed a bounded number of times. Jobs that do not exist are absent.
 */
export async function readJobs(
  doc: StoreClient,
  tableName: string,
  ids: readonly string[],
): Promise<Map<string, Job>> {
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
      const out = await doc.send(
        new BatchGetCommand({
          RequestItems: { [tableName]: { Keys: keys, ConsistentRead: true } },
        }),
      );
      for (const item of out.Responses?.[tableName] ?? []) {
        const job = fromItem(item);
        jobs.set(job.id, job);
      }
      keys = out.UnprocessedKeys?.[tableName]?.Keys ?? [];
    }
  }
  return jobs;
}

export const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
