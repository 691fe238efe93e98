import { beforeEach, describe, expect, it } from "vitest";
import { verifyCallbackToken } from "../../shared/domain/callback-token.ts";
import type { Job } from "../../shared/domain/job.ts";
import type { ProviderResult } from "../../shared/ports/provider.ts";
import {
  type AdmissionMessage,
  type DispatchMessage,
  queues,
  type ResultMessage,
} from "../../shared/schemas/messages.ts";
import { type DispatchDeps, type DispatchSettings, dispatchJob } from "../../shared/usecases/dispatch-job.ts";
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

const settings: DispatchSettings = testDispatchSettings({ checkMarginSeconds: 60, maxRetryableFailures: 2 });

const accepted = (
  overrides: Partial<Extract<ProviderResult, { kind: "accepted" }>> = {},
): ProviderResult => ({
  kind: "accepted",
  providerId: "9001",
  etaSeconds: 12.5,
  handle: { fetchUrl: "https://modelslab.com/api/v6/images/fetch/9001" },
  ...overrides,
});

const rejected = (
  overrides: Partial<Extract<ProviderResult, { kind: "rejected" }>> = {},
): ProviderResult => ({
  kind: "rejected",
  providerId: null,
  retryable: true,
  reason: "Rate limit exceeded",
  retryAfterSeconds: 30,
  httpStatus: 429,
  ...overrides,
});

describe("dispatchJob", () => {
  let clock: FakeClock;
  let jobs: InMemoryJobStore;
  let gate: InMemoryCapacityGate;
  let waiting: InMemoryWaitingList;
  let provider: FakeProvider;
  let jobsQueue: FakeQueue<DispatchMessage>;
  let admissionsQueue: FakeQueue<AdmissionMessage>;
  let resultsQueue: FakeQueue<ResultMessage>;
  let deps: DispatchDeps;

  const store = async (overrides: Partial<Job> = {}): Promise<Job> => {
    const job = buildJob(clock, overrides);
    await jobs.create(job);
    return job;
  };
  const stored = (id: string): Job => {
    const job = jobs.jobs.get(id);
    if (!job) throw new Error(`no job ${id}`);
    return job;
  };
  const message = (job: Job, extra: Partial<DispatchMessage> = {}): DispatchMessage => ({
    jobId: job.id,
    ...extra,
  });

  beforeEach(() => {
    clock = new FakeClock();
    jobs = new InMemoryJobStore(clock);
    gate = new InMemoryCapacityGate(5);
    waiting = new InMemoryWaitingList();
    provider = new FakeProvider();
    jobsQueue = new FakeQueue(queues.jobs);
    admissionsQueue = new FakeQueue(queues.admissions);
    resultsQueue = new FakeQueue(queues.results);
    deps = {
      jobs,
      providers: fakeProviders({ provider, gate, waiting }),
      jobsQueue,
      admissionsQueue,
      resultsQueue,
      clock,
      settings,
    };
  });

  it("takes a slot, moves the job to processing and posts it once with our callback URL and the job id", async () => {
    const job = await store();
    provider.scriptSubmit(accepted());

    expect(await dispatchJob(deps, message(job))).toBe("accepted");

    expect(await gate.holders()).toEqual({ [job.id]: clock.now().getTime() });
    expect(provider.submissions).toHaveLength(1);
    const submission = provider.submissions[0];
    expect(submission).toMatchObject({ jobId: job.id, tenantId: job.tenantId, attempt: 0 });
    expect(submission?.params).toEqual(job.request);
    expect(submission?.params).not.toHaveProperty("webhook");
    expect(submission?.params).not.toHaveProperty("track_id");
    const url = new URL(submission?.callbackUrl ?? "");
    expect(`${url.origin}${url.pathname}`).toBe(`https://api.example.com/callbacks/modelslab/${job.id}`);
    expect(url.searchParams.get("attempt")).toBe("0");
    const token = url.searchParams.get("token") ?? "";
    expect(verifyCallbackToken(settings.callbackSecret, "modelslab", job.id, 0, token)).toBe(true);
    expect(submission?.callbackUrl).not.toContain(job.webhook ?? "client.example");

    const after = stored(job.id);
    expect(after.status).toBe("processing");
    expect(after.attempts).toEqual([
      {
        provider: "modelslab",
        provider_id: "9001",
        started_at: clock.now().toISOString(),
        ended_at: null,
        outcome: "pending",
      },
    ]);
    expect(after.providerState).toMatchObject({
      phase: "accepted",
      providerId: "9001",
      etaSeconds: 12.5,
      handle: { fetchUrl: "https://modelslab.com/api/v6/images/fetch/9001" },
    });
    expect(after.dueAt).toBe(clock.now().getTime() + (12.5 + 60) * 1000);
    expect(resultsQueue.sent).toHaveLength(0);
  });

  // A URL is posted as the WHATWG parser reads it: the reading whose host the address rules checked.
  // Submit refuses ambiguous URLs now; a job stored before that can still hold one.
  it.each([
    ["without presigning", false],
    ["with presigning", true],
  ])("posts image URLs as their normalised href (%s)", async (_, presign) => {
    if (presign) deps.presignInput = async (bucket, key) => `https://${bucket}.s3.example/${key}?sig=1`;
    const job = await store({
      request: {
        ...buildJob(clock).request,
        control_image: "https://cdn.example.com\\@169.254.169.254/edges.png",
        init_image: "HTTPS://Images.Example.com:443/in/caf\u00e9.png",
      } as Job["request"],
    });
    provider.scriptSubmit(accepted());

    expect(await dispatchJob(deps, message(job))).toBe("accepted");

    expect(provider.submissions[0]?.params).toMatchObject({
      control_image: "https://cdn.example.com/@169.254.169.254/edges.png",
      init_image: "https://images.example.com/in/caf%C3%A9.png",
      prompt: job.request.prompt,
    });
  });

  it("never schedules the first check past the deadline, however long the eta", async () => {
    const deadline = clock.now().getTime() + 3_600_000;
    const job = await store({ deadlineAt: new Date(deadline).toISOString() });
    provider.scriptSubmit(accepted({ etaSeconds: 7_200 }));

    expect(await dispatchJob(deps, message(job))).toBe("accepted");
    expect(stored(job.id).dueAt).toBe(deadline);
  });

  it("while the POST is in flight, keeps a later check time the job already has, else looks after the submit timeout", async () => {
    const due = (job: { id: string }) => {
      let seen: number | null = null;
      provider.submit = async (submission) => {
        provider.submissions.push(submission);
        seen = stored(job.id).dueAt;
        return { kind: "indeterminate", reason: "timeout" };
      };
      return () => seen;
    };
    const afterTimeout =
      clock.now().getTime() + (provider.submitTimeoutSeconds + settings.checkMarginSeconds) * 1000;
    const later = await store({ dueAt: afterTimeout + 120_000 });
    const seenLater = due(later);
    expect(await dispatchJob(deps, message(later))).toBe("indeterminate");
    expect(seenLater()).toBe(afterTimeout + 120_000);

    const sooner = await store({ dueAt: clock.now().getTime() + 1_000 });
    const seenSooner = due(sooner);
    expect(await dispatchJob(deps, message(sooner))).toBe("indeterminate");
    expect(seenSooner()).toBe(afterTimeout);
  });

  it("never schedules the look after an unknown outcome past the deadline", async () => {
    const deadline = clock.now().getTime() + 30_000;
    const job = await store({ deadlineAt: new Date(deadline).toISOString() });
    let dueWhileSubmitting: number | null = null;
    provider.submit = async (submission) => {
      provider.submissions.push(submission);
      dueWhileSubmitting = stored(job.id).dueAt;
      return { kind: "indeterminate", reason: "timeout" };
    };

    expect(await dispatchJob(deps, message(job))).toBe("indeterminate");
    expect(dueWhileSubmitting).toBe(deadline);
    expect(stored(job.id).dueAt).toBe(deadline);
  });

  it("does nothing on a second delivery of the same message", async () => {
    const job = await store();
    provider.scriptSubmit(accepted());
    await dispatchJob(deps, message(job));
    const version = stored(job.id).version;

    expect(await dispatchJob(deps, message(job))).toBe("ignored");
    expect(provider.submissions).toHaveLength(1);
    expect(stored(job.id).version).toBe(version);
    expect(Object.keys(await gate.holders())).toEqual([job.id]);
  });

  it("ignores a message for an unknown job", async () => {
    expect(await dispatchJob(deps, { jobId: "01UNKNOWN00000000000000000" })).toBe("ignored");
    expect(provider.submissions).toHaveLength(0);
  });

  describe("without provider capacity", () => {
    beforeEach(() => {
      gate.limit = 1;
    });

    it("puts the job in its lane of the waiting list, sends no message, and moves its look to its wait bound", async () => {
      await gate.tryAcquire("other-job", clock.now());
      const waitUntil = new Date(clock.now().getTime() + 7_200_000).toISOString();
      const job = await store({ dueAt: clock.now().getTime() + 1_000, waitUntil, concurrencyKey: "user-7" });

      expect(await dispatchJob(deps, message(job))).toBe("waiting");

      expect(provider.submissions).toHaveLength(0);
      expect(jobsQueue.sent).toHaveLength(0);
      expect(waiting.waitingJobIds()).toEqual([job.id]);
      const after = stored(job.id);
      expect(after.status).toBe("queued");
      expect(after.waiting).toMatchObject({ provider: "modelslab", tenant: job.tenantId, key: "user-7" });
      expect(after.dueAt).toBe(Date.parse(waitUntil));
      expect(Object.keys(await gate.holders())).toEqual(["other-job"]);
    });

    it("a re-sent message for a waiting job changes nothing: it keeps its one place", async () => {
      await gate.tryAcquire("other-job", clock.now());
      const job = await store();
      await dispatchJob(deps, message(job));
      const version = stored(job.id).version;

      expect(await dispatchJob(deps, message(job))).toBe("waiting");
      expect(waiting.waitingJobIds()).toEqual([job.id]);
      expect(stored(job.id).version).toBe(version);
    });

    it("fails a waiting job past its wait bound WAIT_BOUND_EXCEEDED and takes it off the list", async () => {
      await gate.tryAcquire("other-job", clock.now());
      const waitUntil = new Date(clock.now().getTime() + 60_000).toISOString();
      const job = await store({ waitUntil, runSeconds: 600 });
      await dispatchJob(deps, message(job));
      clock.advance(60_000);

      expect(await dispatchJob(deps, message(job))).toBe("failed");
      expect(stored(job.id)).toMatchObject({ status: "failed", error: { code: "WAIT_BOUND_EXCEEDED" } });
      expect(stored(job.id).waiting).toBeUndefined();
      expect(waiting.waitingJobIds()).toEqual([]);
    });

    it("starts an admitted job on the slot taken for it, its run bound counted from the start", async () => {
      const job = await store({
        runSeconds: 600,
        waitUntil: new Date(clock.now().getTime() + 86_400_000).toISOString(),
      });
      await gate.tryAcquire("other-job", clock.now());
      await dispatchJob(deps, message(job));
      clock.advance(30_000);
      // The release admits it: its entry leaves the list, the slot is taken on its behalf.
      await gate.release("other-job");
      const { admit } = await import("../../shared/usecases/admission.ts");
      const binding = deps.providers.get("modelslab");
      if (!binding) throw new Error("no binding");
      expect(await admit(deps, binding)).toBe(1);
      expect(admissionsQueue.sent.map((s) => s.message)).toEqual([
        { jobId: job.id, admittedBy: "modelslab" },
      ]);
      expect(Object.keys(await gate.holders())).toEqual([job.id]);
      gate.limit = 0; // the gate is not asked again

      provider.scriptSubmit(accepted());
      expect(await dispatchJob(deps, { jobId: job.id, admittedBy: "modelslab" })).toBe("accepted");
      const after = stored(job.id);
      expect(after.status).toBe("processing");
      expect(after.waiting).toBeUndefined();
      expect(after.deadlineAt).toBe(new Date(clock.now().getTime() + 600_000).toISOString());
    });

    it("an admission for a job cancelled meanwhile gives the slot to the next waiting job", async () => {
      await gate.tryAcquire("other-job", clock.now());
      const first = await store();
      const second = await store();
      await dispatchJob(deps, message(first));
      await dispatchJob(deps, message(second));
      const binding = deps.providers.get("modelslab");
      if (!binding) throw new Error("no binding");
      const { releaseAndAdmit } = await import("../../shared/usecases/admission.ts");
      await releaseAndAdmit(deps, binding, "other-job");
      expect(Object.keys(await gate.holders())).toEqual([first.id]);
      await jobs.transition(stored(first.id), "cancelled");

      expect(await dispatchJob(deps, { jobId: first.id, admittedBy: "modelslab" })).toBe("ignored");
      expect(Object.keys(await gate.holders())).toEqual([second.id]);
      expect(admissionsQueue.sent.map((s) => s.message).at(-1)).toEqual({
        jobId: second.id,
        admittedBy: "modelslab",
      });
    });
  });

  it("fails a self-hosted job at once: no GPU workers are configured", async () => {
    const job = await store({ provider: "self-hosted" });
    expect(await dispatchJob(deps, message(job))).toBe("failed");
    expect(stored(job.id)).toMatchObject({
      status: "failed",
      dueAt: null,
      error: { code: "SELF_HOSTED_UNAVAILABLE" },
    });
    expect(provider.submissions).toHaveLength(0);
    expect(await gate.holders()).toEqual({});
  });

  it("fails a job past its deadline without calling the provider", async () => {
    const job = await store();
    clock.advance(3_600_000);
    expect(await dispatchJob(deps, message(job))).toBe("failed");
    expect(stored(job.id)).toMatchObject({ status: "failed", error: { code: "DEADLINE_EXCEEDED" } });
    expect(provider.submissions).toHaveLength(0);
    expect(await gate.holders()).toEqual({});
  });

  it("puts an immediate result on the results queue (source dispatch)", async () => {
    const job = await store();
    provider.scriptSubmit({
      kind: "done",
      providerId: "77",
      outputs: [{ kind: "url", url: "https://pub-x.r2.dev/a.png" }],
      generationTimeSeconds: 1.2,
      seed: 42,
    });

    expect(await dispatchJob(deps, message(job))).toBe("done");
    expect(resultsQueue.sent).toEqual([
      {
        message: {
          jobId: job.id,
          provider: "modelslab",
          attempt: 0,
          source: "dispatch",
          observedAt: clock.now().toISOString(),
          result: {
            kind: "done",
            providerId: "77",
            outputs: [{ kind: "url", url: "https://pub-x.r2.dev/a.png" }],
            generationTimeSeconds: 1.2,
            seed: 42,
          },
        },
      },
    ]);
    expect(stored(job.id).status).toBe("processing");
  });

  it("records the provider id of an immediate result first, so a lost result send can be recovered by polling", async () => {
    const job = await store();
    provider.scriptSubmit({
      kind: "done",
      providerId: "77",
      outputs: [{ kind: "url", url: "https://pub-x.r2.dev/a.png" }],
      generationTimeSeconds: null,
      seed: null,
    });
    resultsQueue.failNext = 1;

    await expect(dispatchJob(deps, message(job))).rejects.toThrow("queue unavailable");
    const after = stored(job.id);
    expect(after.status).toBe("processing");
    expect(after.attempts[0]?.provider_id).toBe("77");
    expect(after.providerState).toMatchObject({ phase: "accepted", providerId: "77" });
    expect(after.dueAt).toBeLessThanOrEqual(clock.now().getTime() + settings.checkMarginSeconds * 1000);
    // The redelivered message posts nothing again.
    expect(await dispatchJob(deps, message(job))).toBe("ignored");
    expect(provider.submissions).toHaveLength(1);
  });

  describe("retryable rejection", () => {
    it("re-queues the job with the provider's retry_after and releases the slot", async () => {
      const job = await store();
      provider.scriptSubmit(rejected({ retryAfterSeconds: 30 }));

      expect(await dispatchJob(deps, message(job))).toBe("retrying");

      const after = stored(job.id);
      expect(after.status).toBe("queued");
      expect(after.attempts).toHaveLength(1);
      expect(after.attempts[0]).toMatchObject({
        outcome: "retried",
        ended_at: clock.now().toISOString(),
        reason: "Rate limit exceeded",
      });
      expect(after.providerState).toBeUndefined();
      expect(after.dueAt).toBe(clock.now().getTime() + (30 + settings.queuedResendAfterSeconds) * 1000);
      expect(await gate.holders()).toEqual({});
      expect(jobsQueue.sent).toEqual([{ message: { jobId: job.id }, options: { delaySeconds: 30 } }]);
    });

    it("fails PROVIDER_UNAVAILABLE once maxRetryableFailures retries are used up", async () => {
      const job = await store();
      provider.scriptSubmit(
        rejected({ retryAfterSeconds: null }),
        rejected({ retryAfterSeconds: null }),
        rejected({ retryAfterSeconds: null, reason: "Service unavailable" }),
      );
      const outcomes: string[] = [];
      for (let i = 0; i < 3; i++) {
        outcomes.push(await dispatchJob(deps, message(job)));
        clock.advance(1_000);
      }

      expect(outcomes).toEqual(["retrying", "retrying", "failed"]);
      expect(provider.submissions).toHaveLength(3);
      const after = stored(job.id);
      expect(after.status).toBe("failed");
      expect(after.error?.code).toBe("PROVIDER_UNAVAILABLE");
      expect(after.error?.message).toContain("Service unavailable");
      expect(after.attempts.map((a) => a.outcome)).toEqual(["retried", "retried", "failed"]);
      expect(await gate.holders()).toEqual({});
      // Without retry_after the delay is the bounded backoff.
      for (const sent of jobsQueue.sent) {
        expect(sent.options?.delaySeconds).toBeGreaterThanOrEqual(1);
        expect(sent.options?.delaySeconds).toBeLessThanOrEqual(settings.retryMaxSeconds);
      }
    });

    it("fails instead of retrying when the delay would pass the deadline", async () => {
      const job = await store({ deadlineAt: new Date(clock.now().getTime() + 20_000).toISOString() });
      provider.scriptSubmit(rejected({ retryAfterSeconds: 30 }));
      expect(await dispatchJob(deps, message(job))).toBe("failed");
      expect(stored(job.id).error?.code).toBe("PROVIDER_UNAVAILABLE");
      expect(jobsQueue.sent).toHaveLength(0);
    });
  });

  it("fails PROVIDER_REJECTED with the provider's reason on a non-retryable rejection", async () => {
    const job = await store();
    provider.scriptSubmit(
      rejected({
        retryable: false,
        reason: "Invalid controlnet_model",
        retryAfterSeconds: null,
        httpStatus: 400,
      }),
    );

    expect(await dispatchJob(deps, message(job))).toBe("failed");
    const after = stored(job.id);
    expect(after).toMatchObject({
      status: "failed",
      dueAt: null,
      error: { code: "PROVIDER_REJECTED", message: "Invalid controlnet_model" },
    });
    expect(after.attempts[0]).toMatchObject({ outcome: "failed", reason: "Invalid controlnet_model" });
    expect(await gate.holders()).toEqual({});
    expect(jobsQueue.sent).toHaveLength(0);
  });

  it("keeps an indeterminate job processing, never re-posts it and keeps its slot", async () => {
    const job = await store();
    provider.scriptSubmit({ kind: "indeterminate", reason: "socket hang up" });

    expect(await dispatchJob(deps, message(job))).toBe("indeterminate");
    const after = stored(job.id);
    expect(after.status).toBe("processing");
    expect(after.providerState).toMatchObject({ phase: "indeterminate" });
    expect(after.attempts[0]).toMatchObject({ outcome: "pending", provider_id: null });
    expect(after.dueAt).toBe(clock.now().getTime() + settings.checkMarginSeconds * 1000);

    expect(await dispatchJob(deps, message(job))).toBe("ignored");
    expect(provider.submissions).toHaveLength(1);
    expect(Object.keys(await gate.holders())).toEqual([job.id]);
  });

  describe("a stale write race", () => {
    /** A store whose job changes (another writer) between dispatch's read and its transition. */
    const raceAfterGet = (change: (job: Job) => Partial<Job>) => {
      const original = jobs.get.bind(jobs);
      let raced = false;
      jobs.get = async (id) => {
        const read = await original(id);
        const current = jobs.jobs.get(id);
        if (!raced && current) {
          raced = true;
          jobs.jobs.set(id, { ...current, ...change(current), version: current.version + 1 });
        }
        return read;
      };
    };

    it("posts nothing and gives the slot back when the job was cancelled meanwhile", async () => {
      const job = await store();
      raceAfterGet(() => ({ status: "cancelled", dueAt: null }));

      expect(await dispatchJob(deps, message(job))).toBe("ignored");
      expect(provider.submissions).toHaveLength(0);
      expect(stored(job.id).status).toBe("cancelled");
      expect(await gate.holders()).toEqual({});
    });

    it("posts nothing when the reconciler re-sent the still-queued job meanwhile (its message takes over)", async () => {
      const job = await store();
      raceAfterGet((current) => ({ dueAt: (current.dueAt ?? 0) + 300_000 }));

      expect(await dispatchJob(deps, message(job))).toBe("ignored");
      expect(provider.submissions).toHaveLength(0);
      expect(stored(job.id).status).toBe("queued");
      expect(await gate.holders()).toEqual({});
    });

    const attemptOn = (provider: "modelslab" | "self-hosted"): Job["attempts"][number] => ({
      provider,
      provider_id: null,
      started_at: clock.now().toISOString(),
      ended_at: null,
      outcome: "pending",
    });

    it("posts nothing and leaves the slot to the dispatcher that took the job", async () => {
      const job = await store();
      raceAfterGet(() => ({ status: "processing", attempts: [attemptOn("modelslab")] }));

      expect(await dispatchJob(deps, message(job))).toBe("ignored");
      expect(provider.submissions).toHaveLength(0);
      expect(Object.keys(await gate.holders())).toEqual([job.id]);
    });

    it("posts nothing and gives the slot back when the job went to another provider meanwhile", async () => {
      const job = await store();
      raceAfterGet(() => ({ status: "processing", attempts: [attemptOn("self-hosted")] }));

      expect(await dispatchJob(deps, message(job))).toBe("ignored");
      expect(provider.submissions).toHaveLength(0);
      expect(await gate.holders()).toEqual({});
    });
  });

  it("records acceptance only while the attempt is still the one submitted (an early callback may finish first)", async () => {
    const job = await store();
    // The provider answers "accepted" but the job was already finished by the callback meanwhile.
    provider.submit = async (submission) => {
      provider.submissions.push(submission);
      const current = jobs.jobs.get(job.id);
      if (current) jobs.jobs.set(job.id, { ...current, status: "storing", version: current.version + 1 });
      return accepted();
    };
    expect(await dispatchJob(deps, message(job))).toBe("accepted");
    const after = stored(job.id);
    expect(after.status).toBe("storing");
    expect(after.attempts[0]?.provider_id).toBeNull();
  });
});
