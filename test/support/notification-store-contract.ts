import { beforeEach, describe, expect, it } from "vitest";
import { StaleWriteError } from "../../shared/domain/errors.ts";
import type { DeliveryAttempt, NotificationRecord, NotificationStore } from "../../shared/ports/index.ts";

/**
 * The NotificationStore contract, through the port alone: DynamoNotificationStore against dynalite
 * and the in-memory fake the unit tests rely on must both meet it.
 */

export const JOB_A = "01JOBA00000000000000000000";
export const JOB_B = "01JOBB00000000000000000000";

export const notificationRecord = (overrides: Partial<NotificationRecord> = {}): NotificationRecord => ({
  id: `msg_${JOB_A}_succeeded`,
  jobId: JOB_A,
  tenantId: "acme",
  type: "job.succeeded",
  createdAt: "2026-01-01T00:00:00.000Z",
  payload: JSON.stringify({
    type: "job.succeeded",
    timestamp: "2026-01-01T00:00:00.000Z",
    data: { id: JOB_A },
  }),
  url: "https://client.example/hook",
  state: "pending",
  attempts: [],
  ...overrides,
});

export const deliveryAttempt = (n: number, status: number | null = 500): DeliveryAttempt => ({
  attempt: n,
  at: `2026-01-01T00:0${n}:00.000Z`,
  status,
  error: status === null ? "timeout" : null,
  duration_ms: 10 * n,
});

/** Runs the contract against the store `makeStore` builds for each test (a fresh, empty one). */
export function notificationStoreContract(
  makeStore: () => NotificationStore | Promise<NotificationStore>,
): void {
  let store: NotificationStore;
  const record = notificationRecord;
  const attempt = deliveryAttempt;

  beforeEach(async () => {
    store = await makeStore();
  });

  describe("createIfAbsent and get", () => {
    it("creates a record once: a second create returns the stored one unchanged", async () => {
      const first = record();
      expect(await store.createIfAbsent(first)).toEqual({ record: first, created: true });
      const second = await store.createIfAbsent(
        record({ payload: '{"other":true}', url: null, state: "no_endpoint" }),
      );
      expect(second).toEqual({ record: first, created: false });
      expect(await store.get(JOB_A, first.id)).toEqual(first);
    });

    it("keeps the payload exactly, long or short, and a record without an endpoint", async () => {
      const url = `https://outputs.s3.amazonaws.com/o/${JOB_A}/0.png?X-Amz-Signature=${"ab12".repeat(16)}`;
      const long = record({ payload: JSON.stringify({ data: { outputs: [url, url, url] }, é: "ü" }) });
      const short = record({ id: `msg_${JOB_B}_failed`, jobId: JOB_B, payload: "{}", url: null });
      for (const r of [long, short]) await store.createIfAbsent(r);
      expect(await store.get(JOB_A, long.id)).toEqual(long);
      expect(await store.get(JOB_B, short.id)).toEqual(short);
      expect((await store.recordAttempt(long, attempt(1), "pending")).payload).toBe(long.payload);
    });

    it("get answers null for an unknown record", async () => {
      expect(await store.get(JOB_A, "msg_nope")).toBeNull();
      await store.createIfAbsent(record());
      expect(await store.get(JOB_B, record().id)).toBeNull();
    });
  });

  describe("recordAttempt and reopen", () => {
    it("recordAttempt appends the try and sets the state, guarded on the tries seen", async () => {
      const created = (await store.createIfAbsent(record())).record;

      const afterFirst = await store.recordAttempt(created, attempt(1), "pending");
      expect(afterFirst).toEqual({ ...created, attempts: [attempt(1)], state: "pending" });

      // A duplicate of try 1 still holding the record as it was before: refused.
      await expect(store.recordAttempt(created, attempt(1), "pending")).rejects.toBeInstanceOf(
        StaleWriteError,
      );

      const afterSecond = await store.recordAttempt(afterFirst, attempt(2, 200), "delivered");
      expect(afterSecond.attempts).toEqual([attempt(1), attempt(2, 200)]);
      expect(afterSecond.state).toBe("delivered");
      expect(await store.get(JOB_A, created.id)).toEqual(afterSecond);

      await expect(store.recordAttempt(afterFirst, attempt(2), "failed")).rejects.toBeInstanceOf(
        StaleWriteError,
      );
      expect((await store.get(JOB_A, created.id))?.state).toBe("delivered");
    });

    it("two racing writes of the same try: exactly one wins", async () => {
      const created = (await store.createIfAbsent(record())).record;
      const results = await Promise.allSettled([
        store.recordAttempt(created, attempt(1, 200), "delivered"),
        store.recordAttempt(created, attempt(1, 500), "pending"),
      ]);
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const rejected = results.find((r) => r.status === "rejected");
      expect(rejected?.status === "rejected" && rejected.reason).toBeInstanceOf(StaleWriteError);
      expect((await store.get(JOB_A, created.id))?.attempts).toHaveLength(1);
    });

    it("recordAttempt and reopen on a record that does not exist are stale writes, and create nothing", async () => {
      await expect(store.recordAttempt(record(), attempt(1), "pending")).rejects.toBeInstanceOf(
        StaleWriteError,
      );
      await expect(store.reopen(record())).rejects.toBeInstanceOf(StaleWriteError);
      expect(await store.get(JOB_A, record().id)).toBeNull();
    });

    it("reopen puts a settled record back to pending and keeps its tries, guarded the same way", async () => {
      const created = (await store.createIfAbsent(record())).record;
      const failed = await store.recordAttempt(created, attempt(1), "failed");

      const reopened = await store.reopen(failed);
      // The replay is a new round of tries, starting after the ones already made.
      expect(reopened).toEqual({ ...failed, state: "pending", roundStart: failed.attempts.length + 1 });
      expect(await store.get(JOB_A, created.id)).toEqual(reopened);

      // Another try landed meanwhile: a reopen from the older view is refused.
      const delivered = await store.recordAttempt(reopened, attempt(2, 200), "delivered");
      await expect(store.reopen(failed)).rejects.toBeInstanceOf(StaleWriteError);
      expect(await store.get(JOB_A, created.id)).toEqual(delivered);
    });
  });

  describe("listForJob", () => {
    it("lists a job's notifications only, by id", async () => {
      const succeeded = record();
      const processing = record({ id: `msg_${JOB_A}_processing`, type: "job.processing" });
      const other = record({ id: `msg_${JOB_B}_failed`, jobId: JOB_B, type: "job.failed" });
      for (const r of [succeeded, processing, other]) await store.createIfAbsent(r);

      expect(await store.listForJob(JOB_A)).toEqual([processing, succeeded]);
      expect(await store.listForJob(JOB_B)).toEqual([other]);
      expect(await store.listForJob("01JOBC00000000000000000000")).toEqual([]);
    });

    it("lists each record as it now is", async () => {
      const created = (await store.createIfAbsent(record())).record;
      const tried = await store.recordAttempt(created, attempt(1, 410), "gone");
      expect(await store.listForJob(JOB_A)).toEqual([tried]);
    });
  });
}
