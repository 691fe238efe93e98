import { beforeEach, describe, expect, it } from "vitest";
import { ConflictError, StaleWriteError, ValidationError } from "../../shared/domain/errors.ts";
import { newJobId } from "../../shared/domain/ids.ts";
import { InvalidTransitionError, isTerminal, type Job, type JobStatus } from "../../shared/domain/job.ts";
import type { Clock, IdempotencyRecord, JobStore } from "../../shared/ports/index.ts";

/**
 * The JobStore contract: what every job store (DynamoDB against dynalite, the in-memory fake the unit
 * tests rely on) must do, through the port alone. Each implementation's own layout (items, indexes,
 * TTL, request shapes) is tested beside it.
 */

export const CONTRACT_NOW = new Date("2025-01-01T00:00:00.000Z");
const NOW_S = Math.floor(CONTRACT_NOW.getTime() / 1000);

let baseMs = CONTRACT_NOW.getTime() - 3_600_000;

/** A stored-shape job with a fresh id; ids increase with each call, so they sort in creation order. */
export function contractJob(overrides: Partial<Job> = {}): Job {
  baseMs += 1_000;
  return {
    id: newJobId(baseMs),
    tenantId: "tenant-a",
    status: "queued",
    version: 1,
    createdAt: new Date(baseMs).toISOString(),
    updatedAt: new Date(baseMs).toISOString(),
    trackId: null,
    metadata: { order: "42", "with space": "yes" },
    provider: "auto",
    request: {
      model_id: "sd15",
      controlnet_model: "canny",
      controlnet_type: "canny",
      control_image: "https://example.com/a.png",
      prompt: "x",
    } as Job["request"],
    webhook: null,
    deadlineAt: new Date(baseMs + 3_600_000).toISOString(),
    attempts: [],
    outputs: [],
    error: null,
    dueAt: CONTRACT_NOW.getTime() + 60_000,
    ...overrides,
  };
}

/**
 * Runs of one status and interleavings (for DynamoDB: one partition of the status index hits its
 * page Limit while others still hold newer or older jobs).
 */
const MIXED_STATUSES: JobStatus[] = [
  "succeeded",
  "queued",
  "queued",
  "queued",
  "queued",
  "queued",
  "failed",
  "succeeded",
  "cancelled",
  "processing",
  "succeeded",
  "succeeded",
  "succeeded",
  "succeeded",
  "storing",
  "failed",
  "failed",
  "cancelled",
  "queued",
  "succeeded",
  "processing",
  "cancelled",
  "cancelled",
  "failed",
  "queued",
];

/** 25 jobs of tenant-a in every state (some finished through a transition), oldest first, and tenant-b's jobs between them. */
export async function seedMixed(store: JobStore): Promise<Job[]> {
  const jobs: Job[] = [];
  for (const [i, status] of MIXED_STATUSES.entries()) {
    if (i % 6 === 3) await store.create(contractJob({ tenantId: "tenant-b", status }));
    if (i % 5 === 2 && (status === "failed" || status === "cancelled")) {
      // Created unfinished, then finished (for DynamoDB: it moves to its own status partition).
      const job = contractJob();
      await store.create(job);
      jobs.push(await store.transition(job, status));
      continue;
    }
    const job = contractJob({ status, dueAt: isTerminal(status) ? null : CONTRACT_NOW.getTime() });
    await store.create(job);
    jobs.push(job);
  }
  return jobs;
}

/** Every page of a tenant's list, following the cursors, with these page sizes in turn. */
export async function pageThrough(
  store: JobStore,
  tenantId: string,
  limits: number[],
  status?: JobStatus,
): Promise<Job[][]> {
  const pages: Job[][] = [];
  let cursor: string | undefined;
  do {
    const limit = limits[pages.length % limits.length] ?? 1;
    const page = await store.listByTenant(tenantId, {
      limit,
      ...(status && { status }),
      ...(cursor !== undefined && { cursor }),
    });
    expect(page.jobs.length).toBeLessThanOrEqual(limit);
    pages.push(page.jobs);
    cursor = page.nextCursor ?? undefined;
  } while (cursor && pages.length < 50);
  return pages;
}

/** Runs the contract against the store `makeStore` builds for each test (a fresh, empty one). */
export function jobStoreContract(makeStore: (clock: Clock) => JobStore | Promise<JobStore>): void {
  const clock: Clock = { now: () => CONTRACT_NOW };
  let store: JobStore;

  beforeEach(async () => {
    store = await makeStore(clock);
  });

  const create = async (job: Job) => {
    await store.create(job);
    return job;
  };

  describe("create and get", () => {
    it("reads a job back as it was written", async () => {
      const job = contractJob({
        providerState: {
          phase: "accepted",
          providerId: "p-1",
          etaSeconds: 12,
          handle: { fetchUrl: "https://p/x" },
          checks: 0,
        },
        webhook: "https://c/hook",
        notifyProcessing: true,
      });
      await expect(store.create(job)).resolves.toEqual({ created: true, job });
      expect(await store.get(job.id)).toEqual(job);
    });

    it("round-trips empty lists and maps, nulls and a job without dueAt", async () => {
      const job = contractJob({ metadata: {}, dueAt: null });
      await store.create(job);
      expect(await store.get(job.id)).toEqual(job);
    });

    it("returns null for an unknown job", async () => {
      expect(await store.get(newJobId())).toBeNull();
    });

    it("refuses a second job with the same id (JOB_EXISTS) and keeps the first", async () => {
      const job = await create(contractJob());
      const error = await store.create({ ...job, metadata: {} }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConflictError);
      expect(error).toMatchObject({ code: "JOB_EXISTS" });
      expect((await store.get(job.id))?.metadata).toEqual(job.metadata);
    });

    it("stores a job created finished without dueAt (nothing is due)", async () => {
      const job = contractJob({ status: "cancelled" });
      await expect(store.create(job)).resolves.toEqual({ created: true, job: { ...job, dueAt: null } });
      expect(await store.get(job.id)).toEqual({ ...job, dueAt: null });
      expect(await store.findDue(new Date(CONTRACT_NOW.getTime() + 3_600_000), 10)).toEqual([]);
    });
  });

  describe("create with an idempotency key", () => {
    const record = (overrides: Partial<IdempotencyRecord> = {}): IdempotencyRecord => ({
      keyHash: "k".repeat(64),
      requestHash: "r".repeat(64),
      expiresAt: NOW_S + 86_400,
      ...overrides,
    });

    it("writes the job; the same key again answers the first job and writes nothing", async () => {
      const first = contractJob();
      await expect(store.create(first, record())).resolves.toEqual({ created: true, job: first });
      const second = contractJob();
      await expect(store.create(second, record())).resolves.toEqual({
        created: false,
        existingJobId: first.id,
        sameRequest: true,
      });
      expect(await store.get(second.id)).toBeNull();
    });

    it("reports a different body under the same key", async () => {
      const first = contractJob();
      await store.create(first, record());
      await expect(store.create(contractJob(), record({ requestHash: "other" }))).resolves.toEqual({
        created: false,
        existingJobId: first.id,
        sameRequest: false,
      });
    });

    it("scopes keys per tenant", async () => {
      await store.create(contractJob(), record());
      const other = contractJob({ tenantId: "tenant-b" });
      await expect(store.create(other, record())).resolves.toEqual({ created: true, job: other });
    });

    it("reuses an expired key that has not been deleted yet", async () => {
      await store.create(contractJob(), record({ expiresAt: NOW_S - 1 }));
      const next = contractJob();
      await expect(store.create(next, record({ requestHash: "new" }))).resolves.toEqual({
        created: true,
        job: next,
      });
      await expect(store.create(contractJob(), record({ requestHash: "new" }))).resolves.toEqual({
        created: false,
        existingJobId: next.id,
        sameRequest: true,
      });
    });

    it("writes both or neither: a duplicate job id leaves the key free", async () => {
      const job = await create(contractJob());
      await expect(store.create({ ...job, metadata: {} }, record())).rejects.toBeInstanceOf(ConflictError);
      const next = contractJob();
      await expect(store.create(next, record())).resolves.toEqual({ created: true, job: next });
    });
  });

  describe("listByTenant", () => {
    /** 7 jobs of tenant-a (queued, processing, one failed), oldest first, and one of tenant-b. */
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
        contractJob({ status, dueAt: status === "failed" ? null : CONTRACT_NOW.getTime() }),
      );
      for (const job of jobs) await store.create(job);
      await store.create(contractJob({ tenantId: "tenant-b" }));
      return jobs;
    }

    it("pages newest first, every job once", async () => {
      const jobs = await seed();
      const pages = await pageThrough(store, "tenant-a", [3]);
      expect(pages.flat()).toEqual([...jobs].reverse());
      expect(pages.length).toBeGreaterThanOrEqual(3);
      expect(pages[0]).toEqual([jobs[6], jobs[5], jobs[4]]);
    });

    it("filters by status, across pages", async () => {
      const jobs = await seed();
      const queued = jobs.filter((j) => j.status === "queued").reverse();
      expect((await store.listByTenant("tenant-a", { status: "queued", limit: 10 })).jobs).toEqual(queued);
      expect((await pageThrough(store, "tenant-a", [2], "queued")).flat()).toEqual(queued);
      expect((await store.listByTenant("tenant-a", { status: "succeeded", limit: 10 })).jobs).toEqual([]);
    });

    it.each([[[4]], [[7]], [[4, 7]], [[1]], [[25]]])(
      "lists jobs in every state once, newest first, in full pages (limits %j)",
      async (limits) => {
        const jobs = await seedMixed(store);
        const pages = await pageThrough(store, "tenant-a", limits);
        expect(pages.flat()).toEqual([...jobs].reverse());
        for (const [i, page] of pages.slice(0, -1).entries()) {
          expect(page).toHaveLength(limits[i % limits.length] ?? 0);
        }
      },
    );

    it("shows a tenant nothing of another's, and refuses another tenant's cursor", async () => {
      await seed();
      expect((await store.listByTenant("tenant-c", { limit: 10 })).jobs).toEqual([]);
      const other = await store.listByTenant("tenant-b", { limit: 10 });
      expect(other.jobs.map((j) => j.tenantId)).toEqual(["tenant-b"]);
      for (const status of [undefined, "queued"] as const) {
        const page = await store.listByTenant("tenant-a", { limit: 2, ...(status && { status }) });
        expect(page.nextCursor).not.toBeNull();
        const error = await store
          .listByTenant("tenant-b", { limit: 10, cursor: page.nextCursor ?? "" })
          .catch((e: unknown) => e);
        expect(error).toMatchObject({ code: "INVALID_CURSOR", details: [{ path: "cursor" }] });
      }
    });

    it.each([
      ["not base64url", "%%%"],
      ["not JSON", Buffer.from("{nope").toString("base64url")],
      ["wrong version", Buffer.from(JSON.stringify({ v: 2, id: newJobId() })).toString("base64url")],
      ["not a job id", Buffer.from(JSON.stringify({ v: 1, id: "JOB#x" })).toString("base64url")],
      ["a JSON scalar", Buffer.from("7").toString("base64url")],
      ["a bare job id", newJobId()],
      ["too long", "A".repeat(500)],
      ["empty", ""],
    ])("rejects a malformed cursor (%s) with INVALID_CURSOR", async (_, cursor) => {
      await seed();
      const error = await store.listByTenant("tenant-a", { limit: 5, cursor }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ code: "INVALID_CURSOR", details: [{ path: "cursor" }] });
    });
    // The tenant's own cursor, edited: the owner binding cannot be skipped by leaving the owner out.
    // (JSON.stringify leaves out a field set to undefined.)
    it.each([
      ["its owner removed", { t: undefined }, "does not name the API key"],
      ["its owner null", { t: null }, "does not name the API key"],
      ["its owner as a number", { t: 7 }, "does not name the API key"],
      ["its owner malformed", { t: "NOT-HEX" }, "does not name the API key"],
      ["another tenant's owner", { t: "0123456789abcdef" }, "another API key"],
      ["an extra field", { tenant: "tenant-a" }, "fields a cursor does not have"],
    ])("rejects the tenant's own cursor with %s", async (_, changes, message) => {
      await seed();
      const page = await store.listByTenant("tenant-a", { limit: 2 });
      expect(page.nextCursor).toEqual(expect.any(String));
      const fields = JSON.parse(Buffer.from(page.nextCursor ?? "", "base64url").toString("utf8"));
      const cursor = Buffer.from(JSON.stringify({ ...fields, ...changes })).toString("base64url");
      const error = await store.listByTenant("tenant-a", { limit: 5, cursor }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({
        code: "INVALID_CURSOR",
        details: [{ path: "cursor", message: expect.stringContaining(message) }],
      });
    });
  });

  describe("transition and update", () => {
    const attempt = {
      provider: "modelslab" as const,
      provider_id: "p-1",
      started_at: CONTRACT_NOW.toISOString(),
      ended_at: null,
      outcome: "pending" as const,
    };

    it("moves the job, bumps the version, applies the patch and stamps updatedAt", async () => {
      const job = await create(contractJob());
      const moved = await store.transition(job, "processing", {
        attempts: [attempt],
        dueAt: CONTRACT_NOW.getTime() + 5_000,
        providerState: { phase: "submitting" },
      });
      expect(moved).toEqual({
        ...job,
        status: "processing",
        version: 2,
        updatedAt: CONTRACT_NOW.toISOString(),
        attempts: [attempt],
        dueAt: CONTRACT_NOW.getTime() + 5_000,
        providerState: { phase: "submitting" },
      });
      expect(await store.get(job.id)).toEqual(moved);
      expect((await store.listByTenant("tenant-a", { status: "processing", limit: 5 })).jobs).toEqual([
        moved,
      ]);
      expect((await store.listByTenant("tenant-a", { status: "queued", limit: 5 })).jobs).toEqual([]);
    });

    it("update keeps the status and bumps the version; bookkeeping leaves updatedAt alone", async () => {
      const job = await create(contractJob());
      const later = await store.update(job, { dueAt: CONTRACT_NOW.getTime() + 99_000 });
      expect(later).toEqual({ ...job, version: 2, dueAt: CONTRACT_NOW.getTime() + 99_000 });
      const cleared = await store.update(later, { dueAt: null });
      expect(cleared).toEqual({ ...later, version: 3, dueAt: null });
      const visible = await store.update(cleared, { attempts: [attempt] });
      expect(visible).toEqual({
        ...cleared,
        version: 4,
        attempts: [attempt],
        updatedAt: CONTRACT_NOW.toISOString(),
      });
      expect(await store.get(job.id)).toEqual(visible);
    });

    it("keeps the seed and the NSFW flag a succeeded job was recorded with (null ones too)", async () => {
      const job = await create(contractJob({ status: "storing" }));
      const done = await store.transition(job, "succeeded", {
        seed: 4_000_000_001,
        nsfwContentDetected: true,
      });
      expect(done).toMatchObject({ seed: 4_000_000_001, nsfwContentDetected: true });
      expect(await store.get(job.id)).toEqual(done);
      const silent = await create(contractJob({ status: "storing" }));
      const unknown = await store.transition(silent, "succeeded", { seed: null, nsfwContentDetected: null });
      expect(await store.get(silent.id)).toEqual(unknown);
      expect(unknown).toMatchObject({ seed: null, nsfwContentDetected: null });
    });

    it("clears providerState when the patch names it as undefined", async () => {
      const job = await create(
        contractJob({ status: "processing", providerState: { phase: "indeterminate" } }),
      );
      const next = await store.update(job, { providerState: undefined });
      expect(next).not.toHaveProperty("providerState");
      expect(await store.get(job.id)).toEqual(next);
    });

    it("throws StaleWriteError for a stale copy and changes nothing", async () => {
      const job = await create(contractJob());
      const current = await store.transition(job, "processing");
      await expect(store.transition(job, "processing")).rejects.toBeInstanceOf(StaleWriteError);
      await expect(store.update(job, { dueAt: 1 })).rejects.toBeInstanceOf(StaleWriteError);
      // Right status, wrong version.
      await expect(store.transition({ ...current, version: 1 }, "storing")).rejects.toBeInstanceOf(
        StaleWriteError,
      );
      expect(await store.get(job.id)).toEqual(current);
    });

    it("throws StaleWriteError for a job that does not exist, and creates nothing", async () => {
      const ghost = contractJob();
      await expect(store.transition(ghost, "processing")).rejects.toBeInstanceOf(StaleWriteError);
      await expect(store.update(ghost, { dueAt: 5 })).rejects.toBeInstanceOf(StaleWriteError);
      expect(await store.get(ghost.id)).toBeNull();
    });

    it("refuses a move the state machine does not allow, and changes nothing", async () => {
      const job = await create(contractJob());
      await expect(store.transition(job, "succeeded")).rejects.toBeInstanceOf(InvalidTransitionError);
      await expect(store.transition(job, "queued")).rejects.toBeInstanceOf(InvalidTransitionError);
      expect(await store.get(job.id)).toEqual(job);
    });

    it("a terminal state clears dueAt: the job is no longer due", async () => {
      const job = await create(contractJob({ dueAt: CONTRACT_NOW.getTime() - 1_000 }));
      const processing = await store.transition(job, "processing");
      const failed = await store.transition(processing, "failed", {
        error: { code: "PROVIDER_REJECTED", message: "boom" },
        dueAt: CONTRACT_NOW.getTime() - 500,
      });
      expect(failed).toMatchObject({
        status: "failed",
        version: 3,
        dueAt: null,
        error: { code: "PROVIDER_REJECTED" },
      });
      expect(await store.get(job.id)).toEqual(failed);
      expect(await store.findDue(CONTRACT_NOW, 10)).toEqual([]);
      await expect(store.transition(failed, "cancelled")).rejects.toBeInstanceOf(InvalidTransitionError);
    });

    it("a terminal job with its notification pending stays due until the outbox is settled", async () => {
      const t = CONTRACT_NOW.getTime();
      const job = await create(contractJob());
      const failed = await store.transition(job, "failed", { notifyPending: true, dueAt: t - 1_000 });
      expect(failed).toMatchObject({ status: "failed", notifyPending: true, dueAt: t - 1_000 });
      expect(await store.findDue(CONTRACT_NOW, 10)).toEqual([failed]);
      // The reconciler re-announces it later; the notify step settles it.
      const again = await store.update(failed, { dueAt: t + 60_000 });
      expect(again).toMatchObject({ dueAt: t + 60_000, updatedAt: failed.updatedAt });
      expect(await store.findDue(CONTRACT_NOW, 10)).toEqual([]);
      expect(await store.findDue(new Date(t + 60_000), 10)).toEqual([again]);
      const settled = await store.update(again, { notifyPending: false, dueAt: null });
      expect(settled).toMatchObject({ notifyPending: false, dueAt: null });
      expect(await store.findDue(new Date(t + 3_600_000), 10)).toEqual([]);
    });
  });

  describe("findDue", () => {
    it("returns the due jobs only, earliest first, up to the limit", async () => {
      const t = CONTRACT_NOW.getTime();
      const due = [5, 1, 4, 2, 3, 6].map((n) => contractJob({ dueAt: t - n * 1_000 }));
      const notYet = contractJob({ dueAt: t + 1 });
      const exactlyNow = contractJob({ dueAt: t });
      const noDue = contractJob({ dueAt: null });
      const finished = contractJob({ dueAt: t - 10_000 });
      for (const job of [...due, notYet, exactlyNow, noDue, finished]) await store.create(job);
      await store.transition(finished, "cancelled");

      const expected = [...due].sort((a, b) => (a.dueAt ?? 0) - (b.dueAt ?? 0));
      expect(await store.findDue(CONTRACT_NOW, 50)).toEqual([...expected, exactlyNow]);
      expect(await store.findDue(CONTRACT_NOW, 3)).toEqual(expected.slice(0, 3));
      expect(await store.findDue(CONTRACT_NOW, 0)).toEqual([]);
    });

    it("returns a job whose check moved later only once that time comes", async () => {
      const t = CONTRACT_NOW.getTime();
      const job = await create(contractJob({ dueAt: t - 5_000 }));
      const waiting = await store.transition(job, "processing", { dueAt: t + 30_000 });
      expect(await store.findDue(CONTRACT_NOW, 10)).toEqual([]);
      expect(await store.findDue(new Date(t + 29_999), 10)).toEqual([]);
      expect(await store.findDue(new Date(t + 30_000), 10)).toEqual([waiting]);
      // Moved earlier again: due at the earlier time.
      const sooner = await store.update(waiting, { dueAt: t + 10_000 });
      expect(await store.findDue(new Date(t + 10_000), 10)).toEqual([sooner]);
    });

    it("returns the jobs as stored, in full", async () => {
      const t = CONTRACT_NOW.getTime();
      const running = await create(
        contractJob({ status: "processing", dueAt: t - 2_000, providerState: { phase: "indeterminate" } }),
      );
      expect(await store.findDue(CONTRACT_NOW, 10)).toEqual([running]);
    });
  });
}
