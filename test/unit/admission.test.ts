import { beforeEach, describe, expect, it } from "vitest";
import { newJobId } from "../../shared/domain/ids.ts";
import type { Job } from "../../shared/domain/job.ts";
import type { ProviderBinding } from "../../shared/ports/provider.ts";
import {
  type AdmissionMessage,
  type DispatchMessage,
  queues,
  type ResultMessage,
} from "../../shared/schemas/messages.ts";
import { admit, queuePosition, releaseAndAdmit } from "../../shared/usecases/admission.ts";
import { cancelJob } from "../../shared/usecases/cancel-job.ts";
import { type DispatchDeps, dispatchJob } from "../../shared/usecases/dispatch-job.ts";
import { reconcile } from "../../shared/usecases/reconcile.ts";
import {
  buildJob,
  FakeClock,
  FakeProvider,
  FakeQueue,
  fakeProviders,
  InMemoryCapacityGate,
  InMemoryJobStore,
  InMemoryWaitingList,
} from "../support/fakes.ts";
import { testDispatchSettings, testReconcileSettings } from "../support/settings.ts";

/**
 * Admission with the fakes: jobs that find the gate full wait in the list; each release admits the
 * next by fair share, its message starts it; the gate is never over its limit.
 */
describe("admission", () => {
  let clock: FakeClock;
  let jobs: InMemoryJobStore;
  let gate: InMemoryCapacityGate;
  let waiting: InMemoryWaitingList;
  let provider: FakeProvider;
  let jobsQueue: FakeQueue<DispatchMessage>;
  let admissionsQueue: FakeQueue<AdmissionMessage>;
  let deps: DispatchDeps;
  let binding: ProviderBinding;

  beforeEach(() => {
    clock = new FakeClock();
    jobs = new InMemoryJobStore(clock);
    gate = new InMemoryCapacityGate(2);
    waiting = new InMemoryWaitingList();
    provider = new FakeProvider();
    jobsQueue = new FakeQueue(queues.jobs);
    admissionsQueue = new FakeQueue(queues.admissions);
    deps = {
      jobs,
      providers: fakeProviders({ provider, gate, waiting }),
      jobsQueue,
      admissionsQueue,
      resultsQueue: new FakeQueue<ResultMessage>(queues.results),
      clock,
      settings: testDispatchSettings(),
    };
    const bound = deps.providers.get("modelslab");
    if (!bound) throw new Error("no binding");
    binding = bound;
  });

  const submit = async (overrides: Partial<Job>): Promise<Job> => {
    const job = buildJob(clock, { provider: "modelslab", ...overrides });
    await jobs.create(job);
    clock.advance(1);
    return job;
  };
  const stored = (id: string) => jobs.jobs.get(id) as Job;
  /** Delivers every message admission sent (the admissions queue), as its consumer would. */
  const deliverAdmissions = async () => {
    const sent = admissionsQueue.sent.splice(0);
    for (const { message } of sent) await dispatchJob(deps, message);
  };
  const running = () => [...jobs.jobs.values()].filter((j) => j.status === "processing");

  it("a release admits the next waiting job in the same step: entry gone, slot taken for it, one message", async () => {
    const [a, b, c] = [await submit({}), await submit({}), await submit({})];
    for (const job of [a, b, c]) await dispatchJob(deps, { jobId: job.id });
    expect(running().map((j) => j.id)).toEqual([a.id, b.id]);
    expect(waiting.waitingJobIds()).toEqual([c.id]);
    expect(admissionsQueue.sent).toEqual([]);

    expect(await releaseAndAdmit(deps, binding, a.id)).toBe(1);
    expect(waiting.waitingJobIds()).toEqual([]);
    expect(Object.keys(await gate.holders()).sort()).toEqual([b.id, c.id].sort());
    expect(gate.owners.get(c.id)).toEqual({ tenant: c.tenantId, key: "-" });
    expect(admissionsQueue.sent.map((s) => s.message)).toEqual([{ jobId: c.id, admittedBy: "modelslab" }]);
    await deliverAdmissions();
    expect(stored(c.id).status).toBe("processing");
  });

  it("a quiet tenant behind a 20× larger noisy backlog is admitted within a couple of turnovers, never over the limit", async () => {
    const noisy: Job[] = [];
    for (let i = 0; i < 40; i++) noisy.push(await submit({ tenantId: "noisy" }));
    const quiet = [await submit({ tenantId: "quiet" }), await submit({ tenantId: "quiet" })];
    for (const job of [...noisy, ...quiet]) await dispatchJob(deps, { jobId: job.id });
    expect(running()).toHaveLength(2);

    // Each turnover: every running job finishes (its slot released), the admitted ones start.
    const startedAt = new Map<string, number>();
    for (let turnover = 1; turnover <= 25 && waiting.waitingJobIds().length > 0; turnover++) {
      for (const job of running()) {
        await jobs.transition(job, "cancelled");
        await releaseAndAdmit(deps, binding, job.id);
      }
      await deliverAdmissions();
      for (const job of running()) if (!startedAt.has(job.id)) startedAt.set(job.id, turnover);
    }
    // Its fair share is one slot of two: its first job at the first turnover, its second at the next.
    expect(quiet.map((q) => startedAt.get(q.id))).toEqual([1, 2]);
    expect(gate.peak).toBeLessThanOrEqual(2);
    expect(waiting.waitingJobIds()).toEqual([]);
  });

  it("the sweep admits into free slots no release brought to a waiting job", async () => {
    const [a, b, c] = [await submit({}), await submit({}), await submit({})];
    for (const job of [a, b, c]) await dispatchJob(deps, { jobId: job.id });
    // A release lost its admission (a crash between the two): the slot is free, c still waits.
    await gate.release(a.id);
    expect(await admit(deps, binding)).toBe(1);
    expect(admissionsQueue.sent.map((s) => s.message)).toEqual([{ jobId: c.id, admittedBy: "modelslab" }]);
  });

  it("shows a waiting job's position and estimated start from the measured turnover", async () => {
    const [a, b] = [await submit({}), await submit({})];
    for (const job of [a, b]) await dispatchJob(deps, { jobId: job.id });
    clock.advance(10_000);
    await releaseAndAdmit(deps, binding, a.id); // a slot held 10 s
    const waiters: Job[] = [];
    for (let i = 0; i < 6; i++) waiters.push(await submit({}));
    for (const job of waiters) await dispatchJob(deps, { jobId: job.id });
    // The first took the free slot; the other five wait.
    expect(stored(waiters[0]?.id ?? "").status).toBe("processing");
    const positions = await Promise.all(waiters.slice(1).map((w) => queuePosition(binding, stored(w.id))));
    expect(positions.map((p) => p?.position)).toEqual([1, 2, 3, 4, 5]);
    // 2 slots turning over every 10 s: the 5th starts in 3 turnovers.
    expect(positions.at(-1)).toEqual({ position: 5, etaSeconds: 30 });
    expect(await queuePosition(binding, stored(b.id))).toBeNull();
  });

  it("a cancelled waiting job leaves the waiting list: the next release admits the job behind it", async () => {
    // Ids the API takes (ULIDs).
    const [a, b, c, d] = [
      await submit({ id: newJobId(1) }),
      await submit({ id: newJobId(2) }),
      await submit({ id: newJobId(3) }),
      await submit({ id: newJobId(4) }),
    ];
    for (const job of [a, b, c, d]) await dispatchJob(deps, { jobId: job.id });
    const cancelled = await cancelJob(
      {
        jobs,
        clock,
        leaveWaitingList: async (job) => {
          if (job.waiting) await waiting.remove(job.waiting);
        },
      },
      c.tenantId,
      c.id,
    );
    expect(cancelled.status).toBe("cancelled");
    expect(cancelled.waiting).toBeUndefined();
    expect(waiting.waitingJobIds()).toEqual([d.id]);
    await releaseAndAdmit(deps, binding, a.id);
    expect(admissionsQueue.sent.map((s) => s.message)).toEqual([{ jobId: d.id, admittedBy: "modelslab" }]);
  });

  it("priority orders jobs within one concurrency key", async () => {
    await dispatchJob(deps, { jobId: (await submit({})).id });
    const holder = running()[0] as Job;
    await dispatchJob(deps, { jobId: (await submit({})).id });
    const low = await submit({ priority: "low" });
    const high = await submit({ priority: "high" });
    for (const job of [low, high]) await dispatchJob(deps, { jobId: job.id });
    await releaseAndAdmit(deps, binding, holder.id);
    expect(admissionsQueue.sent.map((s) => s.message.jobId)).toEqual([high.id]);
  });

  describe("a crash in the middle of an admission", () => {
    /** Makes the next call of `object[method]` throw, as a function stopped at that step would. */
    const crashAt = <T extends object>(object: T, method: keyof T & string) => {
      const original = object[method] as (...args: unknown[]) => Promise<unknown>;
      Object.assign(object, {
        [method]: async () => {
          Object.assign(object, { [method]: original });
          throw new Error(`crashed at ${method}`);
        },
      });
    };

    it.each([
      ["the slot's acquire", () => crashAt(gate, "tryAcquire")],
      ["the entry's delete", () => crashAt(waiting, "remove")],
      ["the message's send", () => admissionsQueue.failNext++],
    ])(
      "at %s leaves the job to the reconciler's next ticks, which start it long before its wait bound",
      async (_step, crash) => {
        const [a, b, c] = [await submit({}), await submit({}), await submit({})];
        for (const job of [a, b, c]) await dispatchJob(deps, { jobId: job.id });
        expect(waiting.waitingJobIds()).toEqual([c.id]);

        await jobs.transition(stored(a.id), "cancelled");
        crash();
        expect(await releaseAndAdmit(deps, binding, a.id)).toBe(0); // the admission stopped at that step

        const settings = testReconcileSettings();
        const tick = async () => {
          clock.advance(settings.slotGraceSeconds * 1000);
          await reconcile({ jobs, jobsQueue, admissionsQueue, clock, settings, providers: deps.providers });
          await deliverAdmissions();
        };
        for (let ticks = 0; ticks < 3 && stored(c.id).status === "queued"; ticks++) await tick();

        expect(stored(c.id).status).toBe("processing");
        // Nothing left behind: no entry that a later release would admit a second time, no stray slot.
        expect(waiting.waitingJobIds()).toEqual([]);
        expect(Object.keys(await gate.holders()).sort()).toEqual([b.id, c.id].sort());
        expect(gate.peak).toBeLessThanOrEqual(2);
      },
    );

    it("an admitter that lost the job's entry to a cancel gives the slot it took back, and admits the next", async () => {
      const [a, b, c, d] = [
        await submit({ id: newJobId(1) }),
        await submit({ id: newJobId(2) }),
        await submit({ id: newJobId(3) }),
        await submit({ id: newJobId(4) }),
      ];
      for (const job of [a, b, c, d]) await dispatchJob(deps, { jobId: job.id });
      expect(waiting.waitingJobIds()).toEqual([c.id, d.id]);
      // c is cancelled between the admitter's read of its lane and its delete of c's entry.
      const remove = waiting.remove.bind(waiting);
      let raced = false;
      waiting.remove = async (entry) => {
        if (!raced && entry.sortKey === stored(c.id).waiting?.sortKey) {
          raced = true;
          await cancelJob(
            {
              jobs,
              clock,
              leaveWaitingList: async (job) => void (job.waiting && (await remove(job.waiting))),
            },
            c.tenantId,
            c.id,
          );
        }
        return remove(entry);
      };

      expect(await releaseAndAdmit(deps, binding, a.id)).toBe(1);
      expect(stored(c.id).status).toBe("cancelled");
      expect(admissionsQueue.sent.map((s) => s.message.jobId)).toEqual([d.id]);
      expect(Object.keys(await gate.holders()).sort()).toEqual([b.id, d.id].sort());
    });
  });
});
