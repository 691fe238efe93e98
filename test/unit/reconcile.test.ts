import { beforeEach, describe, expect, it } from "vitest";
import type { Job } from "../../shared/domain/job.ts";
import type { ProviderResult } from "../../shared/ports/provider.ts";
import {
  type AdmissionMessage,
  type DispatchMessage,
  type FinishedResult,
  queues,
  type ResultMessage,
} from "../../shared/schemas/messages.ts";
import type { ProviderState } from "../../shared/usecases/provider-attempts.ts";
import { type ReconcileDeps, type ReconcileSettings, reconcile } from "../../shared/usecases/reconcile.ts";
import {
  buildJob,
  FakeClock,
  FakeProvider,
  FakeQueue,
  fakeProviders,
  InMemoryCapacityGate,
  InMemoryJobStore,
} from "../support/fakes.ts";
import { testReconcileSettings } from "../support/settings.ts";

const settings: ReconcileSettings = testReconcileSettings();

const FETCH_URL = "https://modelslab.com/api/v6/images/fetch/9001";

const stillProcessing: ProviderResult = {
  kind: "accepted",
  providerId: "9001",
  etaSeconds: 5,
  handle: { fetchUrl: FETCH_URL },
};

describe("reconcile", () => {
  let clock: FakeClock;
  let jobs: InMemoryJobStore;
  let gate: InMemoryCapacityGate;
  let provider: FakeProvider;
  let jobsQueue: FakeQueue<DispatchMessage>;
  let admissionsQueue: FakeQueue<AdmissionMessage>;
  let resultsQueue: FakeQueue<ResultMessage>;
  let deps: ReconcileDeps;

  const stored = (id: string): Job => {
    const job = jobs.jobs.get(id);
    if (!job) throw new Error(`no job ${id}`);
    return job;
  };

  /** A processing job due now (its first check near eta has come), holding a slot. */
  const processingJob = async (state: ProviderState, overrides: Partial<Job> = {}): Promise<Job> => {
    const now = clock.now();
    const job = buildJob(clock, {
      status: "processing",
      version: 3,
      attempts: [
        {
          provider: "modelslab",
          provider_id: state.phase === "accepted" ? state.providerId : null,
          started_at: new Date(now.getTime() - 70_000).toISOString(),
          ended_at: null,
          outcome: "pending",
        },
      ],
      providerState: state,
      dueAt: now.getTime() - 1,
      ...overrides,
    });
    await jobs.create(job);
    await gate.tryAcquire(job.id, now);
    return job;
  };
  /** The attempt whose result a storing job keeps. */
  const finishedAttempt = (): Job["attempts"][number] => ({
    provider: "modelslab",
    provider_id: "9001",
    started_at: clock.now().toISOString(),
    ended_at: clock.now().toISOString(),
    outcome: "succeeded",
  });
  const acceptedState: ProviderState = {
    phase: "accepted",
    providerId: "9001",
    etaSeconds: 10,
    handle: { fetchUrl: FETCH_URL },
    checks: 0,
  };

  beforeEach(() => {
    clock = new FakeClock();
    jobs = new InMemoryJobStore(clock);
    gate = new InMemoryCapacityGate(5);
    provider = new FakeProvider();
    jobsQueue = new FakeQueue(queues.jobs);
    admissionsQueue = new FakeQueue(queues.admissions);
    resultsQueue = new FakeQueue(queues.results);
    deps = {
      jobs,
      jobsQueue,
      admissionsQueue,
      clock,
      settings,
      providers: fakeProviders({ provider, gate }),
      resultsQueue,
    };
  });

  it("re-sends a due queued job and moves its dueAt on", async () => {
    const job = buildJob(clock, { dueAt: clock.now().getTime() - 1 });
    await jobs.create(job);
    const notDue = buildJob(clock, { dueAt: clock.now().getTime() + 1_000 });
    await jobs.create(notDue);

    const report = await reconcile(deps);

    expect(report).toMatchObject({ examined: 1, requeued: 1, errors: 0 });
    expect(jobsQueue.sent).toEqual([{ message: { jobId: job.id } }]);
    expect(stored(job.id).status).toBe("queued");
    expect(stored(job.id).dueAt).toBe(clock.now().getTime() + settings.queuedResendAfterSeconds * 1000);
    expect(stored(notDue.id)).toEqual(notDue);
    expect(provider.fetches).toHaveLength(0);
  });

  it("polls an overdue accepted job with its provider id and handle and queues a finished result", async () => {
    const job = await processingJob(acceptedState);
    provider.scriptFetch({
      kind: "done",
      providerId: null,
      outputs: [{ kind: "url", url: "https://pub-x.r2.dev/a.png" }],
      generationTimeSeconds: null,
      seed: null,
    });

    const report = await reconcile(deps);

    expect(report).toMatchObject({ polled: 1, resolved: 1, errors: 0 });
    expect(provider.fetches).toEqual([{ providerId: "9001", handle: { fetchUrl: FETCH_URL } }]);
    expect(provider.submissions).toHaveLength(0);
    expect(resultsQueue.sent).toHaveLength(1);
    expect(resultsQueue.sent[0]?.message).toEqual({
      jobId: job.id,
      provider: "modelslab",
      attempt: 0,
      source: "reconcile",
      observedAt: clock.now().toISOString(),
      result: {
        kind: "done",
        providerId: "9001",
        outputs: [{ kind: "url", url: "https://pub-x.r2.dev/a.png" }],
        generationTimeSeconds: null,
        seed: null,
      },
    });
    // The job itself is finalize's to move; reconcile only pushes its next look.
    expect(stored(job.id).status).toBe("processing");
    expect(stored(job.id).dueAt).toBeGreaterThan(clock.now().getTime());
  });

  it("records the poll before publishing its result, so finalize never races the reconciler's write", async () => {
    const job = await processingJob(acceptedState);
    provider.scriptFetch({
      kind: "done",
      providerId: "9001",
      outputs: [{ kind: "url", url: "https://pub-x.r2.dev/a.png" }],
      generationTimeSeconds: null,
      seed: null,
    });
    let versionAtSend: number | undefined;
    const send = resultsQueue.send.bind(resultsQueue);
    resultsQueue.send = async (msg, options) => {
      versionAtSend = stored(job.id).version;
      return send(msg, options);
    };

    await reconcile(deps);
    expect(versionAtSend).toBe(job.version + 1);
    expect(stored(job.id).version).toBe(job.version + 1);
  });

  it("queues a non-retryable failure found by polling, but not a retryable one", async () => {
    await processingJob(acceptedState);
    await processingJob(acceptedState);
    const rejected = (retryable: boolean): ProviderResult => ({
      kind: "rejected",
      providerId: "9001",
      retryable,
      reason: retryable ? "Rate limit exceeded" : "Generation failed",
      retryAfterSeconds: null,
      httpStatus: null,
    });
    provider.scriptFetch(rejected(false), rejected(true));

    const report = await reconcile(deps);
    expect(report).toMatchObject({ polled: 2, resolved: 1 });
    expect(resultsQueue.sent).toHaveLength(1);
    expect(resultsQueue.sent[0]?.message).toMatchObject({ result: { kind: "rejected", retryable: false } });
  });

  it("pushes dueAt with growing backoff while the provider is still processing", async () => {
    const job = await processingJob(acceptedState);
    provider.scriptFetch(stillProcessing, stillProcessing);

    await reconcile(deps);
    const first = stored(job.id);
    const firstDelay = (first.dueAt ?? 0) - clock.now().getTime();
    expect(firstDelay).toBeGreaterThanOrEqual(10_000);
    expect(firstDelay).toBeLessThanOrEqual(20_000);
    expect(first.providerState).toMatchObject({ phase: "accepted", providerId: "9001", checks: 1 });
    expect(resultsQueue.sent).toHaveLength(0);

    clock.advance(firstDelay);
    await reconcile(deps);
    const second = stored(job.id);
    const secondDelay = (second.dueAt ?? 0) - clock.now().getTime();
    expect(secondDelay).toBeGreaterThanOrEqual(20_000);
    expect(secondDelay).toBeLessThanOrEqual(40_000);
    expect(second.providerState).toMatchObject({ checks: 2 });
    expect(provider.fetches).toHaveLength(2);
  });

  it("never pushes dueAt past the deadline", async () => {
    const deadline = clock.now().getTime() + 5_000;
    const job = await processingJob(
      { ...acceptedState, checks: 10 },
      { deadlineAt: new Date(deadline).toISOString() },
    );
    provider.scriptFetch(stillProcessing);

    await reconcile(deps);
    expect(stored(job.id).dueAt).toBe(deadline);
  });

  it("fails a processing job past its deadline: attempt timed out, no poll, slot kept while the provider may run it", async () => {
    const job = await processingJob(acceptedState, {
      deadlineAt: new Date(clock.now().getTime() - 1).toISOString(),
    });

    const report = await reconcile(deps);

    expect(report).toMatchObject({ expired: 1, polled: 0 });
    const after = stored(job.id);
    expect(after).toMatchObject({ status: "failed", dueAt: null, error: { code: "DEADLINE_EXCEEDED" } });
    expect(after.attempts[0]).toMatchObject({ outcome: "timed_out", ended_at: clock.now().toISOString() });
    // Marking the job does not stop the provider's generation: the account still counts it.
    expect(Object.keys(await gate.holders())).toEqual([job.id]);
    expect(provider.fetches).toHaveLength(0);
  });

  it.each([
    ["indeterminate", { phase: "indeterminate" } satisfies ProviderState],
    ["submitting", { phase: "submitting" } satisfies ProviderState],
  ])("does not poll a %s job without a provider id, only looks again later", async (_name, state) => {
    const job = await processingJob(state);

    const report = await reconcile(deps);

    expect(report).toMatchObject({ polled: 0, errors: 0 });
    expect(provider.fetches).toHaveLength(0);
    expect(provider.submissions).toHaveLength(0);
    const after = stored(job.id);
    expect(after.status).toBe("processing");
    expect(after.dueAt).toBeGreaterThan(clock.now().getTime());
    expect(after.providerState).toMatchObject({ phase: state.phase, checks: 1 });
    expect(Object.keys(await gate.holders())).toEqual([job.id]);
  });

  it("does not poll an accepted attempt whose provider cannot be polled: its next look is the deadline", async () => {
    deps = {
      ...deps,
      providers: fakeProviders({ provider, gate, fallbackQueue: new FakeQueue(queues.fallback) }),
    };
    const job = await processingJob(
      { phase: "accepted", providerId: null, etaSeconds: null, handle: {}, checks: 0 },
      { attempts: [{ ...finishedAttempt(), provider: "self-hosted", ended_at: null, outcome: "pending" }] },
    );

    const report = await reconcile(deps);

    expect(report).toMatchObject({ polled: 0, requeued: 0, errors: 0 });
    expect(provider.fetches).toHaveLength(0);
    expect(stored(job.id)).toMatchObject({ status: "processing", dueAt: Date.parse(job.deadlineAt) });
  });

  it("hands a job left in storing back to finalize with its kept result", async () => {
    const state = {
      phase: "finished",
      result: {
        kind: "done",
        providerId: "9001",
        outputs: [{ kind: "url", url: "https://pub-x.r2.dev/a.png" }],
        generationTimeSeconds: null,
        seed: null,
      },
    } satisfies ProviderState;
    const job = buildJob(clock, {
      status: "storing",
      version: 5,
      attempts: [finishedAttempt()],
      providerState: state,
      dueAt: clock.now().getTime() - 1,
    });
    await jobs.create(job);

    const report = await reconcile(deps);

    expect(report).toMatchObject({ resumed: 1 });
    expect(stored(job.id)).toMatchObject({
      status: "storing",
      dueAt: clock.now().getTime() + settings.storingRetrySeconds * 1000,
    });
    expect(resultsQueue.sent.map((s) => s.message)).toEqual([
      {
        jobId: job.id,
        provider: "modelslab",
        attempt: 0,
        source: "reconcile",
        observedAt: clock.now().toISOString(),
        result: state.result,
      },
    ]);
  });

  describe("a job in storing", () => {
    const kept: FinishedResult = {
      kind: "done",
      providerId: "9001",
      outputs: [{ kind: "url", url: "https://pub-x.r2.dev/a.png" }],
      generationTimeSeconds: null,
      seed: null,
    };
    const storingJob = async (overrides: Partial<Job> = {}) => {
      const job = buildJob(clock, {
        status: "storing",
        version: 5,
        attempts: [finishedAttempt()],
        providerState: { phase: "finished", result: kept },
        dueAt: clock.now().getTime() - 1,
        ...overrides,
      });
      await jobs.create(job);
      return job;
    };
    const resend = (job: Job) => ({
      jobId: job.id,
      provider: "modelslab",
      attempt: 0,
      source: "reconcile",
      observedAt: clock.now().toISOString(),
      result: kept,
    });

    it("fails it past its deadline, and hands its result to finalize once more to discard what was stored", async () => {
      const job = await storingJob({ deadlineAt: new Date(clock.now().getTime() - 1).toISOString() });

      const report = await reconcile(deps);

      expect(report).toMatchObject({ expired: 1, resumed: 0 });
      expect(stored(job.id)).toMatchObject({
        status: "failed",
        error: { code: "DEADLINE_EXCEEDED" },
        dueAt: null,
      });
      expect(resultsQueue.sent.map((s) => s.message)).toEqual([resend(job)]);
      expect((await reconcile(deps)).examined).toBe(0);
    });

    it("never schedules its next look past the deadline", async () => {
      const job = await storingJob({ deadlineAt: new Date(clock.now().getTime() + 10_000).toISOString() });
      await reconcile(deps);
      expect(stored(job.id)).toMatchObject({ status: "storing", dueAt: clock.now().getTime() + 10_000 });
    });

    it("resumes it a bounded number of times, then fails it (OUTPUT_COPY_FAILED)", async () => {
      const job = await storingJob();
      const retry = { ...settings, storingRetrySeconds: 60, storingMaxResumes: 4 };
      deps = { ...deps, settings: retry };
      for (let look = 0; look < 50 && stored(job.id).status === "storing"; look++) {
        await reconcile(deps);
        clock.advance(61_000);
      }
      const after = stored(job.id);
      expect(after).toMatchObject({ status: "failed", error: { code: "OUTPUT_COPY_FAILED" } });
      expect(Date.parse(after.updatedAt)).toBeLessThan(Date.parse(job.deadlineAt));
      // Four resumes, then the failing look's last hand-over (finalize discards the partial copies).
      expect(resultsQueue.sent).toHaveLength(5);
    });
  });

  describe("slot healing", () => {
    it("releases a slot held past the grace period by a job that is not processing", async () => {
      const start = clock.now();
      const failed = buildJob(clock, { status: "failed", dueAt: null });
      const queued = buildJob(clock, { dueAt: start.getTime() + 3_600_000 });
      await jobs.create(failed);
      await jobs.create(queued);
      await gate.tryAcquire(failed.id, start);
      await gate.tryAcquire(queued.id, start);
      await gate.tryAcquire("01GONE0000000000000000000", start);
      const processing = await processingJob(acceptedState, { dueAt: start.getTime() + 3_600_000 });

      clock.advance(settings.slotGraceSeconds * 1000);
      const report = await reconcile(deps);

      expect(report.slotsHealed).toBe(2);
      // The queued one was admitted on its behalf: its admission message may be lost, so it is sent
      // again and the job keeps its slot for another grace period.
      expect(Object.keys(await gate.holders()).sort()).toEqual([processing.id, queued.id].sort());
      expect(admissionsQueue.sent.map((s) => s.message)).toContainEqual({
        jobId: queued.id,
        admittedBy: "modelslab",
      });

      // Still not started after that: its slot is released and it waits again, here admitted anew at
      // once (nobody else waits and the slot is free): a fresh holder and a fresh message.
      clock.advance(settings.slotGraceSeconds * 1000);
      admissionsQueue.sent.length = 0;
      expect((await reconcile(deps)).slotsHealed).toBe(1);
      expect(await gate.holders()).toMatchObject({ [queued.id]: clock.now().getTime() });
      expect(admissionsQueue.sent.map((s) => s.message)).toEqual([
        { jobId: queued.id, admittedBy: "modelslab" },
      ]);
    });

    it("heals each provider's gate: a slot is kept only by a job processing on that provider", async () => {
      const fleetGate = new InMemoryCapacityGate(8);
      deps = {
        ...deps,
        providers: fakeProviders({
          provider,
          gate,
          fallbackQueue: new FakeQueue(queues.fallback),
          fleetGate,
        }),
      };
      const start = clock.now();
      // Moved to the fleet; its ModelsLab slot's release was lost.
      const moved = await processingJob(
        { phase: "accepted", providerId: null, etaSeconds: null, handle: {}, checks: 0 },
        {
          attempts: [{ ...finishedAttempt(), provider: "self-hosted", ended_at: null, outcome: "pending" }],
          dueAt: start.getTime() + 3_600_000,
        },
      );
      await fleetGate.tryAcquire(moved.id, start);
      const onModelsLab = await processingJob(acceptedState, { dueAt: start.getTime() + 3_600_000 });
      await fleetGate.tryAcquire(onModelsLab.id, start);

      clock.advance(settings.slotGraceSeconds * 1000);
      const report = await reconcile(deps);

      expect(report.slotsHealed).toBe(2);
      expect(Object.keys(await gate.holders())).toEqual([onModelsLab.id]);
      expect(Object.keys(await fleetGate.holders())).toEqual([moved.id]);
    });

    it("releases at once (past the grace) the slot of a job cancelled before the provider had it, or refused by it", async () => {
      const start = clock.now();
      const neverPosted = buildJob(clock, { status: "cancelled", dueAt: null });
      const refused = buildJob(clock, {
        status: "failed",
        dueAt: null,
        attempts: [
          {
            provider: "modelslab",
            provider_id: null,
            started_at: start.toISOString(),
            ended_at: start.toISOString(),
            outcome: "failed",
          },
        ],
        error: { code: "PROVIDER_REJECTED", message: "refused" },
      });
      for (const job of [neverPosted, refused]) {
        await jobs.create(job);
        await gate.tryAcquire(job.id, start);
      }

      clock.advance(settings.slotGraceSeconds * 1000);
      const report = await reconcile(deps);

      expect(report.slotsHealed).toBe(2);
      expect(await gate.holders()).toEqual({});
      expect(provider.fetches).toHaveLength(0);
    });

    describe("a job that left processing while the provider may still run it", () => {
      /** A job the provider accepted as 9001, then cancelled by the client; it keeps its slot. */
      const cancelledWhileAccepted = async (): Promise<Job> => {
        const job = await processingJob(acceptedState);
        const cancelled: Job = {
          ...job,
          status: "cancelled",
          version: job.version + 1,
          dueAt: null,
          attempts: job.attempts.map((a) => ({
            ...a,
            outcome: "cancelled",
            ended_at: clock.now().toISOString(),
          })),
          error: { code: "CANCELLED", message: "Cancelled by the client." },
        };
        jobs.jobs.set(job.id, cancelled);
        return cancelled;
      };

      it("keeps the slot while a fetch says the provider is still generating it", async () => {
        const job = await cancelledWhileAccepted();
        clock.advance(settings.slotGraceSeconds * 1000);
        provider.scriptFetch(stillProcessing);

        const report = await reconcile(deps);

        expect(report.slotsHealed).toBe(0);
        expect(Object.keys(await gate.holders())).toEqual([job.id]);
        expect(provider.fetches).toEqual([{ providerId: "9001", handle: { fetchUrl: FETCH_URL } }]);
        // Only a look: the cancelled job is not moved, and no result goes to finalize.
        expect(stored(job.id)).toEqual(job);
        expect(resultsQueue.sent).toHaveLength(0);
      });

      it("keeps the slot when the fetch itself fails", async () => {
        const job = await cancelledWhileAccepted();
        clock.advance(settings.slotGraceSeconds * 1000);
        provider.fetch = async () => {
          throw new Error("network down");
        };

        const report = await reconcile(deps);

        expect(report).toMatchObject({ slotsHealed: 0, errors: 0 });
        expect(Object.keys(await gate.holders())).toEqual([job.id]);
      });

      it.each([
        [
          "finished it",
          {
            kind: "done",
            providerId: "9001",
            outputs: [{ kind: "url", url: "https://pub-x.r2.dev/a.png" }],
            generationTimeSeconds: null,
            seed: null,
          } satisfies ProviderResult,
        ],
        [
          "failed it",
          {
            kind: "rejected",
            providerId: "9001",
            retryable: false,
            reason: "failed",
            retryAfterSeconds: null,
            httpStatus: null,
          } satisfies ProviderResult,
        ],
      ] as const)("releases the slot when a fetch says the provider %s", async (_name, answer) => {
        await cancelledWhileAccepted();
        clock.advance(settings.slotGraceSeconds * 1000);
        provider.scriptFetch(answer);

        const report = await reconcile(deps);

        expect(report.slotsHealed).toBe(1);
        expect(await gate.holders()).toEqual({});
        expect(resultsQueue.sent).toHaveLength(0);
      });

      it("releases the slot of a timed-out job once the provider's run limit has passed since the post", async () => {
        const job = await processingJob(acceptedState, {
          deadlineAt: new Date(clock.now().getTime() - 1).toISOString(),
        });
        await reconcile(deps); // fails it DEADLINE_EXCEEDED, keeps the slot
        const startedAt = Date.parse(stored(job.id).attempts[0]?.started_at ?? "");
        const limitAt = startedAt + settings.providerRunLimitSeconds * 1000;

        clock.advance(limitAt - 1 - clock.now().getTime());
        expect((await reconcile(deps)).slotsHealed).toBe(0);
        expect(Object.keys(await gate.holders())).toEqual([job.id]);

        clock.advance(1);
        const fetchesBefore = provider.fetches.length;
        expect((await reconcile(deps)).slotsHealed).toBe(1);
        expect(await gate.holders()).toEqual({});
        // Past the run limit no fetch is needed.
        expect(provider.fetches).toHaveLength(fetchesBefore);
      });
    });

    it("keeps a slot inside the grace period, whatever its job's state", async () => {
      const queued = buildJob(clock, { dueAt: clock.now().getTime() + 3_600_000 });
      await jobs.create(queued);
      await gate.tryAcquire(queued.id, clock.now());

      clock.advance(settings.slotGraceSeconds * 1000 - 1);
      const report = await reconcile(deps);

      expect(report.slotsHealed).toBe(0);
      expect(Object.keys(await gate.holders())).toEqual([queued.id]);
    });
  });

  it("counts an error for one job and still handles the others", async () => {
    await processingJob(acceptedState);
    const queued = buildJob(clock, { dueAt: clock.now().getTime() - 1 });
    await jobs.create(queued);
    provider.fetch = async () => {
      throw new Error("network down");
    };

    const report = await reconcile(deps);

    expect(report).toMatchObject({ examined: 2, requeued: 1, errors: 1 });
    expect(jobsQueue.sent).toEqual([{ message: { jobId: queued.id } }]);
  });
});
