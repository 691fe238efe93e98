import { DescribeTableCommand, TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  type BatchGetCommandOutput,
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
} from "@aws-sdk/lib-dynamodb";
import fc from "fast-check";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { createDocumentClient } from "../../shared/adapters/dynamo/client.ts";
import { dueShardOf } from "../../shared/adapters/dynamo/due-index.ts";
import { encodeCursor, mergeNewestFirst } from "../../shared/adapters/dynamo/job-listing.ts";
import { DynamoJobStore } from "../../shared/adapters/dynamo/job-store.ts";
import { INDEXES, idempotencyKey, jobKey } from "../../shared/adapters/dynamo/table-design.ts";
import { UnavailableError } from "../../shared/domain/errors.ts";
import { newJobId } from "../../shared/domain/ids.ts";
import { InvalidTransitionError, type Job, type JobStatus } from "../../shared/domain/job.ts";
import type { Clock } from "../../shared/ports/index.ts";
import { useDynamoTables } from "../support/emulators.ts";
import {
  CONTRACT_NOW,
  contractJob,
  jobStoreContract,
  pageThrough,
  seedMixed,
} from "../support/job-store-contract.ts";

const NOW = CONTRACT_NOW;
const NOW_S = Math.floor(NOW.getTime() / 1000);
const clock: Clock = { now: () => NOW };
const buildJob = contractJob;

let doc: DynamoDBDocumentClient;
let table: string;
let store: DynamoJobStore;

const dynamo = useDynamoTables();

beforeEach(async () => {
  doc = dynamo.doc;
  table = await dynamo.newTable("jobs");
  store = new DynamoJobStore(doc, table, { clock });
});

/** The port's contract, shared with the in-memory fake (test/unit/fakes.test.ts). */
describe("DynamoJobStore: the JobStore contract", () => {
  // On the fresh table the file's beforeEach made for this test.
  jobStoreContract((contractClock) => new DynamoJobStore(doc, table, { clock: contractClock }));
});

/* What follows is this adapter's own: the items and indexes it writes, its requests, its failures. */

const rawItem = async (key: Record<string, string>) =>
  (await doc.send(new GetCommand({ TableName: table, Key: key, ConsistentRead: true }))).Item;

const allItems = async () => (await doc.send(new ScanCommand({ TableName: table }))).Items ?? [];

const indexItems = async (index: keyof typeof INDEXES) =>
  (await doc.send(new ScanCommand({ TableName: table, IndexName: INDEXES[index].name }))).Items ?? [];

type Send = (command: unknown) => Promise<unknown>;

/**
 * Intercepts the store's BatchGetItem calls: `around` sees each one with the real `send`, and decides
 * what it answers. Restored by the returned function.
 */
function interceptBatchGet(around: (command: BatchGetCommand, send: Send) => Promise<unknown>): {
  calls: BatchGetCommand[];
  restore: () => void;
} {
  const send = doc.send.bind(doc) as Send;
  const calls: BatchGetCommand[] = [];
  const spy = vi.spyOn(doc, "send").mockImplementation(((command: unknown) => {
    if (!(command instanceof BatchGetCommand)) return send(command);
    calls.push(command);
    return around(command, send);
  }) as never);
  return { calls, restore: () => spy.mockRestore() };
}

describe("create and get", () => {
  it("writes the job with its index attributes and reads it back unchanged", async () => {
    const job = buildJob({
      providerState: {
        phase: "accepted",
        providerId: "p",
        etaSeconds: 12,
        handle: { fetchUrl: "https://p/x" },
        checks: 0,
      },
      webhook: "https://c/hook",
    });
    await expect(store.create(job)).resolves.toEqual({ created: true, job });

    const item = await rawItem(jobKey(job.id));
    expect(item).toMatchObject({
      pk: `JOB#${job.id}`,
      sk: "JOB",
      type: "job",
      tenantId: "tenant-a",
      id: job.id,
      tenantStatus: "tenant-a#active",
      dueShard: dueShardOf(job.id, 4),
      dueAt: job.dueAt,
      wakeAt: job.dueAt,
    });
    expect(item).not.toHaveProperty("ttl");
    expect(await store.get(job.id)).toEqual(job);
  });

  it("keeps a job without dueAt out of the due index: its key attributes absent, not NULL", async () => {
    const job = buildJob({ metadata: {}, dueAt: null });
    await store.create(job);
    const item = await rawItem(jobKey(job.id));
    expect(item).not.toHaveProperty("dueAt");
    expect(item).not.toHaveProperty("dueShard");
    expect(item).not.toHaveProperty("wakeAt");
  });
});

describe("create with an idempotency key", () => {
  const record = (overrides: Partial<{ keyHash: string; requestHash: string; expiresAt: number }> = {}) => ({
    keyHash: "k".repeat(64),
    requestHash: "r".repeat(64),
    expiresAt: NOW_S + 86_400,
    ...overrides,
  });

  it("writes the key as an item of its own, which TTL deletes once it expires", async () => {
    const first = buildJob();
    await expect(store.create(first, record())).resolves.toEqual({ created: true, job: first });
    expect(await rawItem(idempotencyKey("tenant-a", "k".repeat(64)))).toMatchObject({
      type: "idempotency",
      jobId: first.id,
      requestHash: "r".repeat(64),
      ttl: NOW_S + 86_400,
    });
    // Refused with the same key: neither a second job nor a second key item.
    await store.create(buildJob(), record());
    expect((await allItems()).map((item) => item.type).sort()).toEqual(["idempotency", "job"]);
  });
});

describe("index projections", () => {
  it("keeps only keys in every index", async () => {
    const job = buildJob({ providerState: { phase: "indeterminate" }, webhook: "https://c/hook" });
    await store.create(job);
    const keys = { pk: `JOB#${job.id}`, sk: "JOB" };
    expect(await indexItems("byTenantStatus")).toEqual([
      { ...keys, tenantStatus: "tenant-a#active", id: job.id },
    ]);
    expect(await indexItems("due")).toEqual([
      { ...keys, dueShard: dueShardOf(job.id, 4), wakeAt: job.dueAt },
    ]);
  });

  it("has no byTenant index: the unfiltered listing reads byTenantStatus, one index write less per job", async () => {
    expect(Object.keys(INDEXES).sort()).toEqual(["byTenantStatus", "due"]);
    const { Table } = await doc.send(new DescribeTableCommand({ TableName: table }));
    expect(Table?.GlobalSecondaryIndexes?.map((index) => index.IndexName).sort()).toEqual([
      "byTenantStatus",
      "due",
    ]);
    expect(Table?.AttributeDefinitions?.map((a) => a.AttributeName)).not.toContain("tenantId");
  });
});

describe("listByTenant", () => {
  async function seed(): Promise<Job[]> {
    const statuses: JobStatus[] = [
      "queued",
      "processing",
      "queued",
      "failed",
      "queued",
      "processing",
      "queued",
    ];
    const jobs = statuses.map((status) =>
      buildJob({ status, dueAt: status === "failed" ? null : NOW.getTime() }),
    );
    for (const job of jobs) await store.create(job);
    await store.create(buildJob({ tenantId: "tenant-b" }));
    return jobs;
  }

  it("reads the page from the table in index order, consistently, with one BatchGetItem", async () => {
    const jobs = await seed();
    const { calls, restore } = interceptBatchGet((command, send) => send(command));
    try {
      const page = await store.listByTenant("tenant-a", { limit: 4 });
      expect(page.jobs).toEqual([jobs[6], jobs[5], jobs[4], jobs[3]]);
    } finally {
      restore();
    }
    expect(calls).toHaveLength(1);
    expect(calls[0]?.input.RequestItems?.[table]).toMatchObject({ ConsistentRead: true });
    expect(calls[0]?.input.RequestItems?.[table]?.Keys).toHaveLength(4);
  });

  it("drops a job that vanished between the index query and the read, and keeps paging", async () => {
    const jobs = await seed();
    const gone = jobs[5];
    const { restore } = interceptBatchGet(async (command, send) => {
      await send(new DeleteCommand({ TableName: table, Key: jobKey(gone?.id ?? "") }));
      return send(command);
    });
    try {
      const page = await store.listByTenant("tenant-a", { limit: 3 });
      // The page is filled from further down the index; the cursor follows the index.
      expect(page.jobs.map((j) => j.id)).toEqual([jobs[6]?.id, jobs[4]?.id, jobs[3]?.id]);
      const next = await store.listByTenant("tenant-a", { limit: 3, cursor: page.nextCursor ?? "" });
      expect(next.jobs.map((j) => j.id)).toEqual([jobs[2]?.id, jobs[1]?.id, jobs[0]?.id]);
    } finally {
      restore();
    }
  });

  it("leaves out a job whose status changed since the status index listed it", async () => {
    const jobs = await seed();
    const moved = jobs[6] as Job;
    let once = true;
    const { restore } = interceptBatchGet(async (command, send) => {
      if (once) {
        once = false;
        const item = (await rawItem(jobKey(moved.id))) ?? {};
        await send(new PutCommand({ TableName: table, Item: { ...item, status: "processing" } }));
      }
      return send(command);
    });
    try {
      const page = await store.listByTenant("tenant-a", { status: "queued", limit: 10 });
      expect(page.jobs.map((j) => j.id)).toEqual([jobs[4]?.id, jobs[2]?.id, jobs[0]?.id]);
    } finally {
      restore();
    }
  });

  it("retries the keys BatchGetItem leaves unprocessed, and gives up after a bounded number", async () => {
    const jobs = await seed();
    // First answer: only the first key read, the rest unprocessed.
    let first = true;
    const partial = interceptBatchGet(async (command, send) => {
      const request = command.input.RequestItems?.[table];
      const keys = request?.Keys ?? [];
      if (!first || keys.length < 2) return send(command);
      first = false;
      const out = (await send(
        new BatchGetCommand({ RequestItems: { [table]: { ...request, Keys: keys.slice(0, 1) } } }),
      )) as BatchGetCommandOutput;
      return { ...out, UnprocessedKeys: { [table]: { ...request, Keys: keys.slice(1) } } };
    });
    try {
      const page = await store.listByTenant("tenant-a", { limit: 5 });
      expect(page.jobs).toEqual([jobs[6], jobs[5], jobs[4], jobs[3], jobs[2]]);
      expect(partial.calls).toHaveLength(2);
      expect(partial.calls[1]?.input.RequestItems?.[table]?.Keys).toHaveLength(4);
    } finally {
      partial.restore();
    }

    const never = interceptBatchGet(async (command) => ({
      Responses: { [table]: [] },
      UnprocessedKeys: { [table]: command.input.RequestItems?.[table] },
      $metadata: {},
    }));
    try {
      const error = await store.listByTenant("tenant-a", { limit: 2 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });
      expect(never.calls).toHaveLength(5);
    } finally {
      never.restore();
    }
  });

  it("reads a page of more than 100 jobs in chunks of 100", async () => {
    const jobs = Array.from({ length: 105 }, () => buildJob({ tenantId: "tenant-big" }));
    for (const job of jobs) await store.create(job);
    const { calls, restore } = interceptBatchGet((command, send) => send(command));
    try {
      const page = await store.listByTenant("tenant-big", { limit: 105 });
      expect(page.jobs.map((j) => j.id)).toEqual(jobs.map((j) => j.id).reverse());
    } finally {
      restore();
    }
    expect(calls.map((c) => c.input.RequestItems?.[table]?.Keys?.length)).toEqual([100, 5]);
  });

  it("accepts its own cursor format", async () => {
    const jobs = await seed();
    const page = await store.listByTenant("tenant-a", {
      limit: 10,
      cursor: encodeCursor(jobs[3]?.id ?? "", "tenant-a"),
    });
    expect(page.jobs.map((j) => j.id)).toEqual([jobs[2]?.id, jobs[1]?.id, jobs[0]?.id]);
  });
});

describe("listByTenant without a status: the tenant's partitions merged", () => {
  it("queries the caller's four partitions of byTenantStatus, below the cursor's id", async () => {
    const jobs = await seedMixed(store);
    const send = doc.send.bind(doc) as Send;
    const queries: QueryCommand[] = [];
    const spy = vi.spyOn(doc, "send").mockImplementation(((command: unknown) => {
      if (command instanceof QueryCommand) queries.push(command);
      return send(command);
    }) as never);
    let page: Awaited<ReturnType<typeof store.listByTenant>>;
    try {
      const first = await store.listByTenant("tenant-a", { limit: 4 });
      expect(queries).toHaveLength(4);
      page = await store.listByTenant("tenant-a", { limit: 4, cursor: first.nextCursor ?? "" });
    } finally {
      spy.mockRestore();
    }
    expect(page.jobs).toEqual(jobs.slice(17, 21).reverse());
    expect(queries.map((q) => q.input.IndexName)).toEqual(Array(8).fill(INDEXES.byTenantStatus.name));
    expect(queries.map((q) => q.input.ExpressionAttributeValues?.[":p"]).sort()).toEqual(
      ["active", "active", "cancelled", "cancelled", "failed", "failed", "succeeded", "succeeded"].map(
        (phase) => `tenant-a#${phase}`,
      ),
    );
    for (const query of queries.slice(4)) {
      expect(query.input).toMatchObject({
        KeyConditionExpression: "#p = :p AND #id < :below",
        ExpressionAttributeValues: { ":below": jobs[21]?.id },
        ScanIndexForward: false,
        Limit: 4,
      });
      expect(query.input.ExclusiveStartKey).toBeUndefined();
    }
  });

  it("lists a job the index shows in two partitions (a finish not yet propagated) once", async () => {
    const jobs = await seedMixed(store);
    const finishing = jobs[24] as Job; // queued, in tenant-a#active
    // Index lag as the index can show it: the job's id listed under its new partition too.
    await doc.send(
      new PutCommand({
        TableName: table,
        Item: { pk: `JOB#${finishing.id}`, sk: "LAG", tenantStatus: "tenant-a#succeeded", id: finishing.id },
      }),
    );
    expect(
      (await indexItems("byTenantStatus"))
        .filter((item) => item.id === finishing.id)
        .map((i) => i.tenantStatus),
    ).toHaveLength(2);
    for (const limits of [[1], [4], [25], [30]]) {
      const pages = await pageThrough(store, "tenant-a", limits);
      expect(pages.flat()).toEqual([...jobs].reverse());
      expect(pages[0]).toHaveLength(Math.min(limits[0] ?? 0, 25));
    }
  });

  it("skips nothing when a partition's query stops before its Limit (the 1 MB page size)", async () => {
    const jobs = await seedMixed(store);
    const send = doc.send.bind(doc) as Send;
    // Every query of the active and succeeded partitions answers one id and a LastEvaluatedKey.
    const spy = vi.spyOn(doc, "send").mockImplementation(((command: unknown) => {
      const partition = command instanceof QueryCommand && command.input.ExpressionAttributeValues?.[":p"];
      if (partition === "tenant-a#active" || partition === "tenant-a#succeeded") {
        return send(new QueryCommand({ ...(command as QueryCommand).input, Limit: 1 }));
      }
      return send(command);
    }) as never);
    try {
      for (const limits of [[3], [7], [25]]) {
        expect((await pageThrough(store, "tenant-a", limits)).flat()).toEqual([...jobs].reverse());
      }
    } finally {
      spy.mockRestore();
    }
  });

  it("fills the page from further down when jobs vanished after the index listed them", async () => {
    const jobs = await seedMixed(store);
    const gone = [jobs[23], jobs[22], jobs[21]].map((j) => j?.id ?? "");
    let once = true;
    const { calls, restore } = interceptBatchGet(async (command, send) => {
      if (once) {
        once = false;
        for (const id of gone) await send(new DeleteCommand({ TableName: table, Key: jobKey(id) }));
      }
      return send(command);
    });
    try {
      const page = await store.listByTenant("tenant-a", { limit: 4 });
      expect(page.jobs.map((j) => j.id)).toEqual([jobs[24], jobs[20], jobs[19], jobs[18]].map((j) => j?.id));
      expect(calls).toHaveLength(2);
      const all = (await pageThrough(store, "tenant-a", [5])).flat();
      expect(all).toEqual([jobs[24], ...jobs.slice(0, 21).reverse()]);
    } finally {
      restore();
    }
  });
});

describe("mergeNewestFirst", () => {
  const ID_COUNT = 60;
  const idOf = (n: number) => `01J${String(n).padStart(4, "0")}`;

  /**
   * One partition's Query as DynamoDB answers it: ids below `below`, newest first, at most `limit`;
   * a LastEvaluatedKey when it stopped at its Limit (even with nothing after) or earlier (`cut`: the
   * 1 MB page size, which KEYS_ONLY pages never reach in practice).
   */
  function query(partition: readonly string[], below: string | undefined, limit: number, cut: number) {
    const available = partition.filter((id) => below === undefined || id < below);
    const ids = available.slice(0, Math.max(1, Math.min(limit, cut)));
    const truncated = ids.length > 0 && (ids.length === limit || ids.length < available.length);
    return truncated ? { ids, reached: ids.at(-1) } : { ids };
  }

  const scenario = fc.record({
    // Each id's partition; some ids (index lag) are listed in a second one too.
    placement: fc.array(
      fc.record({ home: fc.nat({ max: 3 }), also: fc.option(fc.nat({ max: 3 }), { freq: 5 }) }),
      { maxLength: ID_COUNT },
    ),
    limits: fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 4 }),
    cuts: fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 8 }),
    early: fc.boolean(),
  });

  it("pages through every id exactly once, newest first, whatever the partitions and limits", () => {
    fc.assert(
      fc.property(scenario, ({ placement, limits, cuts, early }) => {
        const partitions: string[][] = [[], [], [], []];
        placement.forEach(({ home, also }, n) => {
          partitions[home]?.push(idOf(n));
          if (also !== null && also !== home) partitions[also]?.push(idOf(n));
        });
        for (const partition of partitions) partition.reverse(); // newest first, as the index answers
        const seen: string[] = [];
        let below: string | undefined;
        let calls = 0;
        for (let page = 0; page <= ID_COUNT + 1; page++) {
          const limit = limits[page % limits.length] ?? 1;
          const slices = partitions.map((partition) =>
            query(partition, below, limit, early ? (cuts[calls++ % cuts.length] ?? limit) : limit),
          );
          const { ids, next } = mergeNewestFirst(slices, limit);
          expect(ids.length).toBeLessThanOrEqual(limit);
          // Without early stops (DynamoDB with KEYS_ONLY pages) every page that says "go on" is full.
          if (!early && next !== null) expect(ids).toHaveLength(limit);
          if (next !== null) expect(next <= (ids.at(-1) ?? next)).toBe(true);
          seen.push(...ids);
          if (next === null) break;
          expect(below === undefined || next < below).toBe(true);
          below = next;
        }
        const expected = placement.map((_, n) => idOf(n)).reverse();
        expect(seen).toEqual(expected);
      }),
      { numRuns: 500 },
    );
  });

  it("stops at the highest point a truncated partition reached", () => {
    // Partition 0 stopped at C (Limit 2); partition 1 is complete: its B and A are left for the next page.
    const page = mergeNewestFirst([{ ids: ["E", "C"], reached: "C" }, { ids: ["D", "B", "A"] }], 5);
    expect(page).toEqual({ ids: ["E", "D", "C"], next: "C" });
    expect(mergeNewestFirst([{ ids: ["E", "C"], reached: "C" }, { ids: ["D", "B", "A"] }], 2)).toEqual({
      ids: ["E", "D"],
      next: "D",
    });
    expect(mergeNewestFirst([{ ids: ["B"] }, { ids: ["C", "B", "A"] }, { ids: [] }], 3)).toEqual({
      ids: ["C", "B", "A"],
      next: null,
    });
  });
});

describe("transition and update", () => {
  it("moves the status index only when the job finishes (unfinished states share one partition)", async () => {
    const job = buildJob();
    await store.create(job);
    const processing = await store.transition(job, "processing", { dueAt: NOW.getTime() + 5_000 });
    expect(await rawItem(jobKey(job.id))).toMatchObject({ tenantStatus: "tenant-a#active", version: 2 });
    await store.transition(processing, "cancelled");
    expect(await rawItem(jobKey(job.id))).toMatchObject({ tenantStatus: "tenant-a#cancelled", version: 3 });
  });

  it("reads items written before attempts named their provider and providers kept a handle", async () => {
    const attempt = (route: string, outcome: string) => ({
      route,
      provider_id: null,
      started_at: NOW.toISOString(),
      ended_at: null,
      outcome,
    });
    const legacy = async (attempts: unknown[], providerState: Record<string, unknown>) => {
      const job = buildJob();
      await store.create(job);
      const item = (await rawItem(jobKey(job.id))) ?? {};
      await doc.send(
        new PutCommand({
          TableName: table,
          Item: { ...item, status: "processing", attempts, providerState },
        }),
      );
      return (await store.get(job.id)) as Job;
    };

    const unsent = await legacy([attempt("modelslab", "failed"), attempt("self-hosted", "pending")], {
      phase: "self-hosted",
      sent: false,
    });
    expect(unsent.attempts.map((a) => [a.provider, a.outcome])).toEqual([
      ["modelslab", "failed"],
      ["self-hosted", "pending"],
    ]);
    expect(unsent.attempts[0]).not.toHaveProperty("route");
    expect(unsent.providerState).toEqual({ phase: "submitting" });

    const sent = await legacy([attempt("self-hosted", "pending")], { phase: "self-hosted", sent: true });
    expect(sent.providerState).toEqual({
      phase: "accepted",
      providerId: null,
      etaSeconds: null,
      handle: {},
      checks: 0,
    });

    const fetchUrl = "https://modelslab.com/api/v6/images/fetch/9001";
    const accepted = await legacy([attempt("modelslab", "pending")], {
      phase: "accepted",
      providerId: "9001",
      etaSeconds: 10,
      fetchUrl,
      checks: 2,
    });
    expect(accepted.providerState).toEqual({
      phase: "accepted",
      providerId: "9001",
      etaSeconds: 10,
      handle: { fetchUrl },
      checks: 2,
    });
  });

  it("moves wakeAt only when dueAt moves earlier than it; a later dueAt leaves the due index alone", async () => {
    const t = NOW.getTime();
    const job = buildJob({ dueAt: t + 10_000 });
    await store.create(job);
    const later = await store.transition(job, "processing", { dueAt: t + 60_000 });
    expect(await rawItem(jobKey(job.id))).toMatchObject({ dueAt: t + 60_000, wakeAt: t + 10_000 });
    const earlier = await store.update(later, { dueAt: t + 5_000 });
    expect(await rawItem(jobKey(job.id))).toMatchObject({ dueAt: t + 5_000, wakeAt: t + 5_000 });
    // A job object the store did not hand out (its wakeAt unknown) sets wakeAt outright.
    await store.update({ ...earlier }, { dueAt: t + 90_000 });
    expect(await rawItem(jobKey(job.id))).toMatchObject({ dueAt: t + 90_000, wakeAt: t + 90_000 });
  });

  it("sets wakeAt outright when a reconciler moved it past the new dueAt since the job was read", async () => {
    const t = NOW.getTime();
    const job = buildJob({ dueAt: t - 1_000 });
    await store.create(job);
    const read = (await store.get(job.id)) as Job;
    const moved = await store.update(read, { dueAt: t + 60_000 }); // wakeAt stays at t - 1000
    const stale = (await store.get(job.id)) as Job; // read while wakeAt is t - 1000
    expect(await store.findDue(NOW, 10)).toEqual([]); // listed early: wakeAt moved up to t + 60000
    expect(await rawItem(jobKey(job.id))).toMatchObject({ wakeAt: t + 60_000, version: moved.version });
    await store.update(stale, { dueAt: t + 20_000 });
    expect(await rawItem(jobKey(job.id))).toMatchObject({ dueAt: t + 20_000, wakeAt: t + 20_000 });
  });

  it("rejects an invalid transition before writing anything", async () => {
    const job = buildJob();
    await store.create(job);
    const send = vi.spyOn(doc, "send");
    try {
      await expect(store.transition(job, "succeeded")).rejects.toBeInstanceOf(InvalidTransitionError);
      expect(send).not.toHaveBeenCalled();
    } finally {
      send.mockRestore();
    }
    expect(await store.get(job.id)).toEqual(job);
  });

  it("a terminal state clears dueAt/dueShard/wakeAt and sets ttl from the retention period", async () => {
    const job = buildJob();
    await store.create(job);
    const processing = await store.transition(job, "processing");
    const failed = await store.transition(processing, "failed", {
      error: { code: "PROVIDER_REJECTED", message: "boom" },
    });
    expect(failed).toMatchObject({
      status: "failed",
      version: 3,
      dueAt: null,
      error: { code: "PROVIDER_REJECTED", message: "boom" },
    });
    const item = await rawItem(jobKey(job.id));
    expect(item).not.toHaveProperty("dueAt");
    expect(item).not.toHaveProperty("dueShard");
    expect(item).not.toHaveProperty("wakeAt");
    expect(item?.tenantStatus).toBe("tenant-a#failed");
    expect(item?.ttl).toBe(NOW_S + 30 * 86_400);

    const shortStore = new DynamoJobStore(doc, table, { clock, retentionDays: 1 });
    const other = buildJob();
    await shortStore.create(other);
    await shortStore.transition(other, "cancelled");
    expect((await rawItem(jobKey(other.id)))?.ttl).toBe(NOW_S + 86_400);
  });

  it("a terminal job created as such is stored out of the due index and with ttl", async () => {
    const job = buildJob({ status: "cancelled" });
    await store.create(job);
    const item = await rawItem(jobKey(job.id));
    expect(item).not.toHaveProperty("dueAt");
    expect(item).not.toHaveProperty("wakeAt");
    expect(item?.ttl).toBe(NOW_S + 30 * 86_400);
  });
});

describe("findDue", () => {
  it("merges the due shards earliest first, and limits before reading the table", async () => {
    const t = NOW.getTime();
    const due = [5, 1, 4, 2, 3, 6].map((n) => buildJob({ dueAt: t - n * 1_000 }));
    for (const job of due) await store.create(job);
    expect(new Set(due.map((j) => dueShardOf(j.id, 4))).size).toBeGreaterThan(1);
    const expected = [...due].sort((a, b) => (a.dueAt ?? 0) - (b.dueAt ?? 0)).map((j) => j.id);
    const { calls, restore } = interceptBatchGet((command, send) => send(command));
    try {
      expect((await store.findDue(NOW, 3)).map((j) => j.id)).toEqual(expected.slice(0, 3));
    } finally {
      restore();
    }
    expect(calls[0]?.input.RequestItems?.[table]?.Keys).toEqual(expected.slice(0, 3).map(jobKey));
  });

  it("moves up a job listed early and does not return it; a finished one leaves the index", async () => {
    const t = NOW.getTime();
    const early = buildJob({ dueAt: t - 5_000 });
    const finished = buildJob({ dueAt: t - 4_000 });
    for (const job of [early, finished]) await store.create(job);
    const waiting = await store.transition(early, "processing", { dueAt: t + 30_000 });
    // A terminal job still listed (as after a crash between writes): the table says nothing is due.
    const item = (await rawItem(jobKey(finished.id))) ?? {};
    await doc.send(
      new PutCommand({ TableName: table, Item: { ...item, status: "failed", dueAt: undefined } }),
    );

    expect(await store.findDue(NOW, 10)).toEqual([]);
    expect(await rawItem(jobKey(early.id))).toMatchObject({ wakeAt: t + 30_000, version: waiting.version });
    expect(await rawItem(jobKey(finished.id))).not.toHaveProperty("wakeAt");
    expect(await indexItems("due")).toEqual([expect.objectContaining({ wakeAt: t + 30_000 })]);
    expect((await store.findDue(new Date(t + 30_000), 10)).map((j) => j.id)).toEqual([early.id]);
  });

  it("skips an index entry whose job is terminal in the table (index lag)", async () => {
    const job = buildJob({ dueAt: NOW.getTime() - 1 });
    await store.create(job);
    // Simulate a lagging index: a terminal item that still carries its due attributes.
    await doc.send(
      new PutCommand({
        TableName: table,
        Item: { ...(await rawItem(jobKey(job.id))), status: "failed", tenantStatus: "tenant-a#failed" },
      }),
    );
    expect(await store.findDue(NOW, 10)).toEqual([]);
  });

  it("a finished job leaves the due index; one whose notification is pending stays in it", async () => {
    const t = NOW.getTime();
    const notifying = buildJob({ dueAt: t - 1_000 });
    const done = buildJob({ dueAt: t - 3_000 });
    for (const job of [notifying, done]) await store.create(job);
    await store.transition(notifying, "failed", { notifyPending: true, dueAt: t - 1_000 });
    await store.transition(done, "failed");
    expect(await indexItems("due")).toEqual([expect.objectContaining({ pk: `JOB#${notifying.id}` })]);
  });

  it("checks the selected jobs again against the table: one finished meanwhile is left out", async () => {
    const t = NOW.getTime();
    const jobs = [3, 2, 1].map((n) => buildJob({ dueAt: t - n * 1_000 }));
    for (const job of jobs) await store.create(job);
    const [first, second, third] = jobs as [Job, Job, Job];
    const { calls, restore } = interceptBatchGet(async (command, send) => {
      const item = (await rawItem(jobKey(second.id))) ?? {};
      // The table moved on after the index was read (a lagging index, or a race with a worker).
      const { dueAt: _dueAt, dueShard: _dueShard, ...rest } = item;
      await send(new PutCommand({ TableName: table, Item: { ...rest, status: "cancelled" } }));
      return send(command);
    });
    try {
      const found = await store.findDue(NOW, 10);
      expect(found.map((j) => j.id)).toEqual([first.id, third.id]);
    } finally {
      restore();
    }
    expect(calls).toHaveLength(1);
    expect(calls[0]?.input.RequestItems?.[table]).toMatchObject({ ConsistentRead: true });
    // Oldest first, limited before the read: only the selected jobs are read.
    const { calls: limited, restore: restoreLimited } = interceptBatchGet((command, send) => send(command));
    try {
      expect((await store.findDue(NOW, 1)).map((j) => j.id)).toEqual([first.id]);
    } finally {
      restoreLimited();
    }
    expect(limited[0]?.input.RequestItems?.[table]?.Keys).toEqual([jobKey(first.id)]);
  });

  it("does not read the table when nothing is due", async () => {
    await store.create(buildJob({ dueAt: NOW.getTime() + 1_000 }));
    const { calls, restore } = interceptBatchGet((command, send) => send(command));
    try {
      expect(await store.findDue(NOW, 10)).toEqual([]);
    } finally {
      restore();
    }
    expect(calls).toHaveLength(0);
  });
});

describe("errors", () => {
  it("wraps a network failure in UnavailableError STORE_UNAVAILABLE", async () => {
    const closed = createDocumentClient({
      endpoint: "http://127.0.0.1:9",
      region: "us-east-1",
      credentials: { accessKeyId: "x", secretAccessKey: "x" },
      maxAttempts: 1,
    });
    try {
      const error = await new DynamoJobStore(closed, table).get(newJobId()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });
    } finally {
      closed.destroy();
    }
  });

  it("wraps throttling in UnavailableError and lets a request bug through", async () => {
    const fake = createDocumentClient({
      region: "us-east-1",
      credentials: { accessKeyId: "x", secretAccessKey: "x" },
    });
    const send = vi.spyOn(fake, "send");
    send.mockRejectedValueOnce(
      Object.assign(new Error("slow down"), { name: "ProvisionedThroughputExceededException" }),
    );
    send.mockRejectedValueOnce(
      Object.assign(new Error("bad"), { name: "ValidationException", $metadata: { httpStatusCode: 400 } }),
    );
    const s = new DynamoJobStore(fake, table);
    await expect(s.get(newJobId())).rejects.toMatchObject({ code: "STORE_UNAVAILABLE" });
    await expect(s.get(newJobId())).rejects.toMatchObject({ name: "ValidationException" });
    fake.destroy();
  });
});

describe("a throttled create", () => {
  const throttled = () =>
    new TransactionCanceledException({
      message: "Transaction cancelled",
      $metadata: { httpStatusCode: 400 },
      CancellationReasons: [{ Code: "ThrottlingError" }, { Code: "None" }],
    });
  const idempotency = () => ({
    keyHash: newJobId().toLowerCase().padEnd(64, "0"),
    requestHash: "r".repeat(64),
    expiresAt: NOW_S + 86_400,
  });

  it("is tried again, and writes the job once capacity is back", async () => {
    const send = vi.spyOn(doc, "send");
    send.mockRejectedValueOnce(throttled());
    try {
      const job = buildJob({ tenantId: "tenant-throttled" });
      await expect(store.create(job, idempotency())).resolves.toMatchObject({ created: true });
      expect(send).toHaveBeenCalledTimes(2);
      expect((await store.get(job.id))?.id).toBe(job.id);
    } finally {
      send.mockRestore();
    }
  });

  it("answers STORE_UNAVAILABLE (503), not an internal error, while it stays throttled", async () => {
    const send = vi.spyOn(doc, "send");
    send.mockImplementation(async () => {
      throw throttled();
    });
    try {
      const job = buildJob({ tenantId: "tenant-throttled" });
      const error = await store.create(job, idempotency()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error).toMatchObject({ code: "STORE_UNAVAILABLE" });
    } finally {
      send.mockRestore();
    }
  });
});
