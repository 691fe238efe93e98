import { beforeEach, describe, expect, it } from "vitest";
import { callbackToken } from "../../shared/domain/callback-token.ts";
import { newJobId } from "../../shared/domain/ids.ts";
import type { Job } from "../../shared/domain/job.ts";
import { s3OutputCopier, s3OutputDiscarder } from "../../shared/lambda/wiring.ts";
import { callbackNormalizers } from "../../shared/providers/registry.ts";
import {
  type AdmissionMessage,
  type DispatchMessage,
  type FinishedResult,
  queues,
  type ResultMessage,
  resultMessageSchema,
} from "../../shared/schemas/messages.ts";
import { cancelJob } from "../../shared/usecases/cancel-job.ts";
import { dispatchJob } from "../../shared/usecases/dispatch-job.ts";
import {
  type FinalizeDeps,
  finalizeResult,
  type OutputCopier,
} from "../../shared/usecases/finalize-result.ts";
import type { ProviderState } from "../../shared/usecases/provider-attempts.ts";
import { receiveCallback } from "../../shared/usecases/receive-callback.ts";
import { reconcile } from "../../shared/usecases/reconcile.ts";
import {
  buildJob,
  FakeClock,
  FakeProvider,
  FakeQueue,
  fakeProviders,
  InMemoryCapacityGate,
  InMemoryJobStore,
  InMemoryObjectStore,
} from "../support/fakes.ts";
import { testFinalizeSettings, testReconcileSettings } from "../support/settings.ts";

const settings = testFinalizeSettings();

const done = (
  providerId: string | null = "9001",
  urls = ["https://pub-x.r2.dev/a.png"],
): Extract<FinishedResult, { kind: "done" }> => ({
  kind: "done",
  providerId,
  outputs: urls.map((url) => ({ kind: "url" as const, url })),
  generationTimeSeconds: 3.1,
  seed: 7,
});

const rejected = (
  retryable: boolean,
  reason = "Generation failed at the provider: NSFW",
): FinishedResult => ({
  kind: "rejected",
  providerId: "9001",
  retryable,
  reason,
  retryAfterSeconds: null,
  httpStatus: null,
});

describe("finalizeResult", () => {
  let clock: FakeClock;
  let jobs: InMemoryJobStore;
  let gate: InMemoryCapacityGate;
  let jobsQueue: FakeQueue<DispatchMessage>;
  let admissionsQueue: FakeQueue<AdmissionMessage>;
  let resultsQueue: FakeQueue<ResultMessage>;
  let provider: FakeProvider;
  let deps: FinalizeDeps;

  const stored = (id: string): Job => {
    const job = jobs.jobs.get(id);
    if (!job) throw new Error(`no job ${id}`);
    return job;
  };

  /** A job the provider accepted as `9001`, holding a capacity slot. */
  const processingJob = async (overrides: Partial<Job> = {}): Promise<Job> => {
    const start = clock.now();
    const state: ProviderState = {
      phase: "accepted",
      providerId: "9001",
      etaSeconds: 10,
      handle: { fetchUrl: "https://modelslab.com/api/v6/images/fetch/9001" },
      checks: 0,
    };
    const job = buildJob(clock, {
      status: "processing",
      version: 3,
      attempts: [
        {
          provider: "modelslab",
          provider_id: "9001",
          started_at: start.toISOString(),
          ended_at: null,
          outcome: "pending",
        },
      ],
      providerState: state,
      dueAt: start.getTime() + 70_000,
      ...overrides,
    });
    await jobs.create(job);
    await gate.tryAcquire(job.id, start);
    return job;
  };

  /** The result of the job's current ModelsLab attempt (its first, unless the job has more). */
  const message = (job: Job, result: FinishedResult): ResultMessage => ({
    jobId: job.id,
    provider: "modelslab",
    attempt: Math.max(0, job.attempts.length - 1),
    source: "callback",
    observedAt: clock.now().toISOString(),
    result,
  });

  beforeEach(() => {
    clock = new FakeClock();
    jobs = new InMemoryJobStore(clock);
    gate = new InMemoryCapacityGate(5);
    jobsQueue = new FakeQueue(queues.jobs);
    admissionsQueue = new FakeQueue(queues.admissions);
    resultsQueue = new FakeQueue(queues.results);
    provider = new FakeProvider();
    deps = {
      jobs,
      providers: fakeProviders({ provider, gate }),
      jobsQueue,
      admissionsQueue,
      resultsQueue,
      clock,
      settings,
    };
  });

  it("takes a done result through storing to succeeded, records the outputs and frees the slot", async () => {
    const job = await processingJob({ request: { ...buildJob(clock).request, samples: 2 } });
    clock.advance(5_000);
    const storingSeen: Job[] = [];
    const transition = jobs.transition.bind(jobs);
    jobs.transition = async (j, to, patch) => {
      const written = await transition(j, to, patch);
      if (to === "storing") storingSeen.push(written);
      return written;
    };

    const urls = ["https://pub-x.r2.dev/a.png", "https://pub-x.r2.dev/b.png"];
    expect(await finalizeResult(deps, message(job, done("9001", urls)))).toBe("succeeded");

    expect(storingSeen).toHaveLength(1);
    expect(storingSeen[0]?.dueAt).toBe(clock.now().getTime() + settings.storingTimeoutSeconds * 1000);
    const after = stored(job.id);
    expect(after.status).toBe("succeeded");
    expect(after.dueAt).toBeNull();
    expect(after.providerState).toBeUndefined();
    expect(after.outputs.map((o) => o.url)).toEqual(urls);
    expect(after.attempts).toEqual([
      expect.objectContaining({ outcome: "succeeded", ended_at: clock.now().toISOString() }),
    ]);
    expect(await gate.holders()).toEqual({});
    expect(jobsQueue.sent).toHaveLength(0);
  });

  it("records the seed the provider used and its NSFW flag on the succeeded job", async () => {
    const flagged = await processingJob();
    expect(
      await finalizeResult(deps, message(flagged, { ...done(), seed: 123456, nsfwContentDetected: true })),
    ).toBe("succeeded");
    expect(stored(flagged.id)).toMatchObject({
      status: "succeeded",
      seed: 123456,
      nsfwContentDetected: true,
    });

    // A provider that reports neither (a callback): the seed is null and so is the flag.
    const silent = await processingJob();
    expect(await finalizeResult(deps, message(silent, { ...done(), seed: null }))).toBe("succeeded");
    expect(stored(silent.id)).toMatchObject({ status: "succeeded", seed: null, nsfwContentDetected: null });
  });

  it("still applies the result when another writer bumped the job between read and write", async () => {
    const job = await processingJob();
    const get = jobs.get.bind(jobs);
    let raced = false;
    jobs.get = async (id) => {
      const read = await get(id);
      const current = jobs.jobs.get(id);
      if (!raced && current) {
        raced = true; // the reconciler pushes dueAt after a poll
        jobs.jobs.set(id, { ...current, dueAt: (current.dueAt ?? 0) + 20_000, version: current.version + 1 });
      }
      return read;
    };

    expect(await finalizeResult(deps, message(job, done()))).toBe("succeeded");
    expect(stored(job.id).status).toBe("succeeded");
    expect(await gate.holders()).toEqual({});
  });

  it("changes nothing on a duplicate result", async () => {
    const job = await processingJob();
    await finalizeResult(deps, message(job, done()));
    const first = structuredClone(stored(job.id));

    expect(await finalizeResult(deps, message(job, done()))).toBe("ignored");
    expect(stored(job.id)).toEqual(first);
  });

  it.each(["failed", "cancelled", "succeeded"] as const)("changes nothing for a %s job", async (status) => {
    const job = buildJob(clock, { status, version: 4, dueAt: null });
    await jobs.create(job);
    expect(await finalizeResult(deps, message(job, done()))).toBe("ignored");
    expect(stored(job.id)).toEqual(job);
  });

  describe("the slot of a job cancelled while the provider runs it", () => {
    it("is kept by the cancel and released by the attempt's late result, whose outputs are not stored", async () => {
      const job = await processingJob({ id: newJobId() }); // the API takes real job ids only
      const copied: string[] = [];
      deps.copyOutput = async (_job, output) => {
        copied.push(output.kind === "url" ? output.url : "inline");
        throw new Error("a cancelled job's outputs must not be copied");
      };
      await cancelJob({ jobs, clock }, job.tenantId, job.id);
      expect(Object.keys(await gate.holders())).toEqual([job.id]);

      expect(await finalizeResult(deps, message(job, done()))).toBe("ignored");

      expect(await gate.holders()).toEqual({});
      expect(copied).toEqual([]);
      expect(stored(job.id)).toMatchObject({ status: "cancelled", outputs: [] });
    });

    it("is kept when the late result names another attempt's provider id", async () => {
      const job = await processingJob({ id: newJobId() }); // the API takes real job ids only
      await cancelJob({ jobs, clock }, job.tenantId, job.id);

      expect(await finalizeResult(deps, message(job, done("1234")))).toBe("ignored");

      expect(Object.keys(await gate.holders())).toEqual([job.id]);
    });
  });

  it("ignores a result for an unknown job or a job that is not processing yet", async () => {
    expect(
      await finalizeResult(deps, {
        ...message(buildJob(clock), done()),
        jobId: "01NOPE00000000000000000000",
      }),
    ).toBe("ignored");
    const queued = buildJob(clock);
    await jobs.create(queued);
    expect(await finalizeResult(deps, message(queued, done()))).toBe("ignored");
    expect(stored(queued.id)).toEqual(queued);
  });

  it("ignores a result whose provider id is not the current attempt's", async () => {
    const job = await processingJob();
    expect(await finalizeResult(deps, message(job, done("1234")))).toBe("ignored");
    expect(stored(job.id)).toEqual(job);
    expect(Object.keys(await gate.holders())).toEqual([job.id]);
  });

  it("ignores a result that names an earlier attempt, or another provider, even without a provider id", async () => {
    const earlier = {
      provider: "modelslab" as const,
      provider_id: null,
      started_at: clock.now().toISOString(),
      ended_at: clock.now().toISOString(),
      outcome: "retried" as const,
    };
    const job = await processingJob({
      attempts: [earlier, { ...earlier, provider_id: "9001", ended_at: null, outcome: "pending" }],
    });
    // The first attempt's late result: same provider, no id to tell it apart, but attempt 0.
    expect(await finalizeResult(deps, { ...message(job, done(null)), attempt: 0 })).toBe("ignored");
    // The current attempt's index under another provider's name.
    expect(await finalizeResult(deps, { ...message(job, done(null)), provider: "self-hosted" })).toBe(
      "ignored",
    );
    expect(await finalizeResult(deps, { ...message(job, done(null)), attempt: 2 })).toBe("ignored");
    expect(stored(job.id)).toEqual(job);
    expect(await finalizeResult(deps, message(job, done(null)))).toBe("succeeded");
  });

  it("accepts a result without a provider id, or for an attempt whose id is not known yet", async () => {
    const a = await processingJob();
    expect(await finalizeResult(deps, message(a, done(null)))).toBe("succeeded");

    const b = await processingJob({
      attempts: [
        {
          provider: "modelslab",
          provider_id: null,
          started_at: clock.now().toISOString(),
          ended_at: null,
          outcome: "pending",
        },
      ],
      providerState: { phase: "indeterminate" },
    });
    expect(await finalizeResult(deps, message(b, done("555")))).toBe("succeeded");
  });

  it("fails the job with the provider's reason on a non-retryable failure", async () => {
    const job = await processingJob();
    expect(await finalizeResult(deps, message(job, rejected(false)))).toBe("failed");
    const after = stored(job.id);
    expect(after).toMatchObject({
      status: "failed",
      dueAt: null,
      error: { code: "PROVIDER_REJECTED", message: "Generation failed at the provider: NSFW" },
    });
    expect(after.attempts[0]).toMatchObject({ outcome: "failed" });
    expect(await gate.holders()).toEqual({});
  });

  it("fails the job with the code a rejection names (the GPU worker's NON_FINITE_OUTPUT) instead of PROVIDER_REJECTED", async () => {
    const job = await processingJob();
    const result = { ...rejected(false, "the VAE decoder gave NaN"), code: "NON_FINITE_OUTPUT" as const };
    expect(await finalizeResult(deps, message(job, result))).toBe("failed");
    expect(stored(job.id).error).toEqual({ code: "NON_FINITE_OUTPUT", message: "the VAE decoder gave NaN" });
    // The results queue's schema carries the code, and only a code a provider may name.
    const onQueue = resultMessageSchema.parse(message(job, result));
    expect(onQueue.result).toMatchObject({ code: "NON_FINITE_OUTPUT" });
    expect(() =>
      resultMessageSchema.parse(message(job, { ...result, code: "CANCELLED" } as never)),
    ).toThrow();
  });

  it("re-queues the job with a delayed dispatch message on a retryable failure", async () => {
    const job = await processingJob();
    expect(await finalizeResult(deps, message(job, rejected(true, "Server busy")))).toBe("retrying");
    const after = stored(job.id);
    expect(after.status).toBe("queued");
    expect(after.attempts[0]).toMatchObject({ outcome: "retried", reason: "Server busy" });
    expect(await gate.holders()).toEqual({});
    expect(jobsQueue.sent).toHaveLength(1);
    expect(jobsQueue.sent[0]?.message).toEqual({ jobId: job.id });
    const delay = jobsQueue.sent[0]?.options?.delaySeconds ?? 0;
    expect(delay).toBeGreaterThanOrEqual(1);
    expect(delay).toBeLessThanOrEqual(settings.retryBaseSeconds);
  });

  it("fails a done result without outputs (NO_OUTPUTS)", async () => {
    const job = await processingJob();
    expect(await finalizeResult(deps, message(job, done("9001", [])))).toBe("failed");
    expect(stored(job.id)).toMatchObject({ status: "failed", error: { code: "NO_OUTPUTS" } });
    expect(await gate.holders()).toEqual({});
  });

  it("resumes a job left in storing (a crashed finalize) from its kept result", async () => {
    const state: ProviderState = { phase: "finished", result: done("9001") };
    const job = buildJob(clock, {
      status: "storing",
      version: 5,
      attempts: [
        {
          provider: "modelslab",
          provider_id: "9001",
          started_at: clock.now().toISOString(),
          ended_at: clock.now().toISOString(),
          outcome: "succeeded",
        },
      ],
      providerState: state,
    });
    await jobs.create(job);
    // Any redelivered result for it finishes the job from the stored result.
    expect(await finalizeResult(deps, message(job, done("9001", ["https://other.example/x.png"])))).toBe(
      "succeeded",
    );
    const after = stored(job.id);
    expect(after.status).toBe("succeeded");
    expect(after.outputs.map((o) => o.url)).toEqual(["https://pub-x.r2.dev/a.png"]);
  });

  it("records base64 outputs as data URLs", async () => {
    const job = await processingJob();
    await finalizeResult(
      deps,
      message(job, { ...done(), outputs: [{ kind: "base64", data: "iVBORw0KGgo=" }] }),
    );
    expect(stored(job.id).outputs.map((o) => o.url)).toEqual(["data:image/png;base64,iVBORw0KGgo="]);
  });

  describe("outputs bounded by what the job asked for", () => {
    /** A copier that counts what it is asked to download. */
    const counting = () => {
      const calls: number[] = [];
      const copier: OutputCopier = async (_job, output, index) => {
        calls.push(index);
        return {
          url: output.kind === "url" ? output.url : "data:",
          content_type: "image/png",
          bytes: 1,
          sha256: "0".repeat(64),
          width: 1,
          height: 1,
        };
      };
      return { calls, copier };
    };
    /** Every job write, as the JSON it would put in the store. */
    const recordWrites = () => {
      const sizes: number[] = [];
      const statuses: string[] = [];
      const transition = jobs.transition.bind(jobs);
      const update = jobs.update.bind(jobs);
      jobs.transition = async (j, to, patch) => {
        const written = await transition(j, to, patch);
        sizes.push(JSON.stringify(written).length);
        statuses.push(to);
        return written;
      };
      jobs.update = async (j, patch) => {
        const written = await update(j, patch);
        sizes.push(JSON.stringify(written).length);
        return written;
      };
      return { sizes, statuses };
    };
    const urls = (count: number) =>
      Array.from({ length: count }, (_, i) => `https://pub-x.r2.dev/generations/output-${i}.png`);

    it("refuses 100 outputs for a samples: 1 job before downloading or storing any", async () => {
      const job = await processingJob();
      const { calls, copier } = counting();
      const writes = recordWrites();

      expect(
        await finalizeResult({ ...deps, copyOutput: copier }, message(job, done("9001", urls(100)))),
      ).toBe("failed");

      expect(calls).toEqual([]);
      expect(writes.statuses).toEqual(["failed"]);
      const after = stored(job.id);
      expect(after).toMatchObject({ status: "failed", outputs: [], error: { code: "PROVIDER_REJECTED" } });
      expect(after.error?.message).toContain("100 outputs");
      expect(after.attempts[0]).toMatchObject({ outcome: "failed" });
      expect(await gate.holders()).toEqual({});
    });

    it("keeps every job write small when a result names 15,000 URLs", async () => {
      const job = await processingJob();
      const { calls, copier } = counting();
      const writes = recordWrites();
      const huge = done("9001", urls(15_000));
      expect(JSON.stringify(huge).length).toBeGreaterThan(400 * 1024);
      // The results queue refuses such a message; finalize refuses it too, should one come another way.
      expect(resultMessageSchema.safeParse(message(job, huge)).success).toBe(false);

      expect(await finalizeResult({ ...deps, copyOutput: copier }, message(job, huge))).toBe("failed");

      expect(calls).toEqual([]);
      expect(Math.max(...writes.sizes)).toBeLessThan(8 * 1024);
    });

    it("stores up to the samples asked for (fewer is the provider filtering some)", async () => {
      const job = await processingJob({ request: { ...buildJob(clock).request, samples: 3 } });
      const { calls, copier } = counting();
      expect(await finalizeResult({ ...deps, copyOutput: copier }, message(job, done("9001", urls(2))))).toBe(
        "succeeded",
      );
      expect(calls.sort()).toEqual([0, 1]);
    });

    it("refuses a kept result over the bound when resuming a job already in storing", async () => {
      const state: ProviderState = { phase: "finished", result: done("9001", urls(50)) };
      const job = buildJob(clock, { status: "storing", version: 5, providerState: state });
      await jobs.create(job);
      const { calls, copier } = counting();
      expect(await finalizeResult({ ...deps, copyOutput: copier }, message(job, done()))).toBe("failed");
      expect(calls).toEqual([]);
      expect(stored(job.id)).toMatchObject({ status: "failed", error: { code: "PROVIDER_REJECTED" } });
    });

    it("fails a job still storing at its deadline without downloading anything", async () => {
      const job = await processingJob({ deadlineAt: new Date(clock.now().getTime() + 60_000).toISOString() });
      const { calls, copier } = counting();
      const writes = recordWrites();
      clock.advance(60_000);

      expect(await finalizeResult({ ...deps, copyOutput: copier }, message(job, done()))).toBe("failed");

      expect(calls).toEqual([]);
      expect(stored(job.id)).toMatchObject({ status: "failed", error: { code: "DEADLINE_EXCEEDED" } });
      expect(writes.statuses).toEqual(["storing", "failed"]);
    });

    it("never schedules the storing check past the deadline", async () => {
      const job = await processingJob({ deadlineAt: new Date(clock.now().getTime() + 30_000).toISOString() });
      const seen: Job[] = [];
      const transition = jobs.transition.bind(jobs);
      jobs.transition = async (j, to, patch) => {
        const written = await transition(j, to, patch);
        seen.push(written);
        return written;
      };
      await finalizeResult(deps, message(job, done()));
      expect(seen[0]).toMatchObject({ status: "storing", dueAt: Date.parse(job.deadlineAt) });
    });
  });

  describe("outputs of a job that did not succeed", () => {
    // A 1×1 PNG: copied for real (base64, no network) into the in-memory bucket.
    const PNG =
      "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    const pngs = (count: number): FinishedResult => ({
      ...done(),
      outputs: Array.from({ length: count }, () => ({ kind: "base64" as const, data: PNG })),
    });
    let store: InMemoryObjectStore;
    let copy: OutputCopier;

    beforeEach(() => {
      store = new InMemoryObjectStore("outputs");
      copy = s3OutputCopier(store, "outputs", {
        mode: "aws",
        allowedHosts: [],
        maxBytes: 1024 * 1024,
        timeoutMs: 1_000,
        retryForMs: 0,
      });
      deps = {
        ...deps,
        copyOutput: copy,
        discardOutputs: s3OutputDiscarder(store, { info: () => undefined }),
      };
    });

    const twoSamples = () => processingJob({ request: { ...buildJob(clock).request, samples: 2 } });

    it("copies for real into the bucket when nothing interferes", async () => {
      const job = await twoSamples();
      expect(await finalizeResult(deps, message(job, pngs(2)))).toBe("succeeded");
      expect([...store.objects.keys()].sort()).toEqual([
        `${job.tenantId}/${job.id}/0.png`,
        `${job.tenantId}/${job.id}/1.png`,
      ]);
    });

    it("leaves no object behind when the client cancels while finalize copies", async () => {
      // The API takes real job ids only.
      const job = await processingJob({
        id: newJobId(),
        request: { ...buildJob(clock).request, samples: 2 },
      });
      let cancelled = false;
      deps.copyOutput = async (j, output, index) => {
        const copied = await copy(j, output, index);
        if (!cancelled) {
          cancelled = true;
          await cancelJob({ jobs, clock }, j.tenantId, j.id);
        }
        return copied;
      };

      await finalizeResult(deps, message(job, pngs(2)));

      expect(stored(job.id)).toMatchObject({ status: "cancelled", outputs: [] });
      expect([...store.objects.keys()]).toEqual([]);
    });

    it("still records the copies when only the job's bookkeeping moved meanwhile", async () => {
      const job = await twoSamples();
      let bumped = false;
      deps.copyOutput = async (j, output, index) => {
        const copied = await copy(j, output, index);
        const current = jobs.jobs.get(j.id);
        if (!bumped && current) {
          bumped = true; // the reconciler pushes the storing job's dueAt
          await jobs.update(current, { dueAt: (current.dueAt ?? 0) + 60_000 });
        }
        return copied;
      };
      expect(await finalizeResult(deps, message(job, pngs(2)))).toBe("succeeded");
      expect(stored(job.id).outputs).toHaveLength(2);
      expect(store.objects.size).toBe(2);
    });

    it("discards what an earlier, interrupted finalize stored once the job is cancelled or failed", async () => {
      for (const status of ["cancelled", "failed"] as const) {
        const job = buildJob(clock, { status, version: 7, dueAt: null });
        await jobs.create(job);
        const other = buildJob(clock, { status: "succeeded", dueAt: null });
        const ours = `${job.tenantId}/${job.id}/0.png`;
        const theirs = `${other.tenantId}/${other.id}/0.png`;
        await store.put(ours, Buffer.from("x"), { contentType: "image/png" });
        await store.put(theirs, Buffer.from("y"), { contentType: "image/png" });

        expect(await finalizeResult(deps, message(job, done()))).toBe("ignored");

        expect(store.objects.has(ours), status).toBe(false);
        expect(store.objects.has(theirs), status).toBe(true);
        expect(stored(job.id)).toEqual(job);
      }
    });

    it("never discards the outputs of a job that succeeded", async () => {
      const job = await twoSamples();
      await finalizeResult(deps, message(job, pngs(2)));
      expect(await finalizeResult(deps, message(job, pngs(2)))).toBe("ignored");
      expect(store.objects.size).toBe(2);
    });

    it("leaves no object behind when one output is refused and the others were copied", async () => {
      const job = await twoSamples();
      const result: FinishedResult = {
        ...done(),
        outputs: [
          { kind: "base64", data: PNG },
          { kind: "base64", data: Buffer.from("not an image at all").toString("base64") },
        ],
      };
      // The refusal comes first; the good copy finishes after it.
      let refused = () => {};
      const refusal = new Promise<void>((resolve) => {
        refused = resolve;
      });
      let goodCopy: Promise<unknown> = Promise.resolve();
      deps.copyOutput = (j, output, index) => {
        if (index === 1) return copy(j, output, index).finally(refused);
        const copied = refusal.then(() => copy(j, output, index));
        goodCopy = copied.catch(() => undefined);
        return copied;
      };
      expect(await finalizeResult(deps, message(job, result))).toBe("failed");
      await goodCopy;
      expect(stored(job.id)).toMatchObject({ status: "failed", error: { code: "OUTPUT_NOT_AN_IMAGE" } });
      expect([...store.objects.keys()]).toEqual([]);
    });

    it("leaves no object behind when a job in storing is failed at its deadline", async () => {
      const job = await twoSamples();
      await store.put(`${job.tenantId}/${job.id}/0.png`, Buffer.from("x"), { contentType: "image/png" });
      clock.advance(3_600_000);
      expect(await finalizeResult(deps, message(job, pngs(2)))).toBe("failed");
      expect([...store.objects.keys()]).toEqual([]);
    });
  });

  describe("the whole flow through the fakes", () => {
    const finalizeAll = async () => {
      const outcomes: string[] = [];
      for (const sent of resultsQueue.sent.splice(0)) {
        outcomes.push(await finalizeResult(deps, sent.message));
      }
      return outcomes;
    };
    it.each(["accepted", "indeterminate"] as const)(
      "dispatch (%s) → callback → finalize succeeds once, however often the callback comes",
      async (answer) => {
        const job = buildJob(clock);
        await jobs.create(job);
        provider.scriptSubmit(
          answer === "accepted"
            ? { kind: "accepted", providerId: "9001", etaSeconds: 5, handle: { fetchUrl: null } }
            : { kind: "indeterminate", reason: "timeout" },
        );
        expect(await dispatchJob(deps, { jobId: job.id })).toBe(answer);

        const url = new URL(provider.submissions[0]?.callbackUrl ?? "");
        const callback = {
          provider: "modelslab",
          jobId: job.id,
          attempt: url.searchParams.get("attempt") ?? undefined,
          token: url.searchParams.get("token") ?? undefined,
          readBody: () => ({
            status: "success",
            id: 9001,
            output: ["https://pub-x.r2.dev/out.png"],
            track_id: job.id,
          }),
        };
        expect(callback.token).toBe(callbackToken(settings.callbackSecret, "modelslab", job.id, 0));
        const callbackDeps = {
          resultsQueue,
          clock,
          callbackSecret: settings.callbackSecret,
          normalizers: callbackNormalizers(() => undefined),
        };
        await receiveCallback(callbackDeps, callback);
        await receiveCallback(callbackDeps, callback);

        expect(await finalizeAll()).toEqual(["succeeded", "ignored"]);
        expect(stored(job.id)).toMatchObject({ status: "succeeded", dueAt: null });
        expect(stored(job.id).attempts).toEqual([
          expect.objectContaining({
            outcome: "succeeded",
            provider_id: answer === "accepted" ? "9001" : null,
          }),
        ]);
        expect(await gate.holders()).toEqual({});
        expect(provider.submissions).toHaveLength(1);
      },
    );

    it("dispatch → lost callback → reconcile polls → finalize succeeds", async () => {
      const job = buildJob(clock);
      await jobs.create(job);
      provider.scriptSubmit({
        kind: "accepted",
        providerId: "9001",
        etaSeconds: 5,
        handle: { fetchUrl: "https://modelslab.com/api/v6/images/fetch/9001" },
      });
      provider.scriptFetch({
        kind: "done",
        providerId: "9001",
        outputs: [{ kind: "url", url: "https://pub-x.r2.dev/out.png" }],
        generationTimeSeconds: 4,
        seed: 1,
      });
      await dispatchJob(deps, { jobId: job.id });

      const reconcileDeps = {
        jobs,
        jobsQueue,
        admissionsQueue,
        clock,
        providers: deps.providers,
        resultsQueue,
        settings: testReconcileSettings(),
      };
      expect((await reconcile(reconcileDeps)).examined).toBe(0);
      clock.advance((5 + settings.checkMarginSeconds) * 1000);
      expect(await reconcile(reconcileDeps)).toMatchObject({ examined: 1, polled: 1, resolved: 1 });

      expect(await finalizeAll()).toEqual(["succeeded"]);
      expect(stored(job.id).outputs.map((o) => o.url)).toEqual(["https://pub-x.r2.dev/out.png"]);
      expect(await gate.holders()).toEqual({});
      expect((await reconcile(reconcileDeps)).examined).toBe(0);
    });
  });
});
