import { beforeEach, describe, expect, it } from "vitest";
import { newJobId } from "../../shared/domain/ids.ts";
import type { Job } from "../../shared/domain/job.ts";
import type { ProviderBinding } from "../../shared/ports/provider.ts";
import { type DispatchMessage, queues, type ResultMessage } from "../../shared/schemas/messages.ts";
import { admit, queuePosition, releaseAndAdmit } from "../../shared/usecases/admission.ts";
import { cancelJob } from "../../shared/usecases/cancel-job.ts";
import { type DispatchDeps, dispatchJob } from "../../shared/usecases/dispatch-job.ts";
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
import { testDispatchSettings } from "../support/settings.ts";

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
  let deps: DispatchDeps;
  let binding: ProviderBinding;

  beforeEach(() => {
    clock = new FakeClock();
    jobs = new InMemoryJobStore(clock);
    gate = new InMemoryCapacityGate(2);
    waiting = new InMemoryWaitingList();
    provider = new FakeProvider();
    jobsQueue = new FakeQueue(queues.jobs);
    deps = {
      jobs,
      providers: fakeProviders({ provider, gate, waiting }),
      jobsQueue,
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
  /** Delivers every message admission sent (the jobs queue), as the dispatch consumer would. */
  const deliverAdmissions = async () => {
    const sent = jobsQueue.sent.splice(0);
    for (const { message } of sent) await dispatchJob(deps, message);
  };
  const running = () => [...jobs.jobs.values()].filter((j) => j.status === "processing");

  it("a release admits the next waiting job in the same step: entry gone, slot taken for it, one message", async () => {
    const [a, b, c] = [await submit({}), await submit({}), await submit({})];
    for (const job of [a, b, c]) await dispatchJob(deps, { jobId: job.id });
    expect(running().map((j) => j.id)).toEqual([a.id, b.id]);
    expect(waiting.waitingJobIds()).toEqual([c.id]);
    expect(jobsQueue.sent).toEqual([]);

    expect(await releaseAndAdmit(deps, binding, a.id)).toBe(1);
    expect(waiting.waitingJobIds()).toEqual([]);
    expect(Object.keys(await gate.holders()).sort()).toEqual([b.id, c.id].sort());
    expect(gate.owners.get(c.id)).toEqual({ tenant: c.tenantId, key: "-" });
    expect(jobsQueue.sent.map((s) => s.message)).toEqual([{ jobId: c.id, admittedBy: "modelslab" }]);
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
    expect(jobsQueue.sent.map((s) => s.message)).toEqual([{ jobId: c.id, admittedBy: "modelslab" }]);
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
    expect(jobsQueue.sent.map((s) => s.message)).toEqual([{ jobId: d.id, admittedBy: "modelslab" }]);
  });

  it("priority orders jobs within one concurrency key", async () => {
    await dispatchJob(deps, { jobId: (await submit({})).id });
    const holder = running()[0] as Job;
    await dispatchJob(deps, { jobId: (await submit({})).id });
    const low = await submit({ priority: "low" });
    const high = await submit({ priority: "high" });
    for (const job of [low, high]) await dispatchJob(deps, { jobId: job.id });
    await releaseAndAdmit(deps, binding, holder.id);
    expect(jobsQueue.sent.map((s) => s.message.jobId)).toEqual([high.id]);
  });
});
