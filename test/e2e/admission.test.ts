import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Simulator } from "../../local/simulator/index.ts";
import type { LocalStack } from "../../local/stack.ts";
import { startImageServer } from "../support/image-server.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";
import { waitFor } from "../support/wait.ts";

/**
 * Admission over the local stack: a provider account of two slots, a noisy tenant's backlog twenty
 * times a quiet tenant's. Waiting jobs wait in the waiting list (no re-queue); each release admits
 * the next by fair share, so the quiet tenant's job starts within a few slot turnovers, and the
 * provider is never asked for more than its two slots.
 */
const LIMIT = 2;
const NOISY_JOBS = 20;

let stack: LocalStack;
let simulator: Simulator;
let noisy: TestClient;
let quiet: TestClient;
let images: Awaited<ReturnType<typeof startImageServer>>;

beforeAll(async () => {
  images = await startImageServer();
  const started = await startTestStack(["noisy", "quiet"], {
    environment: {
      MODELSLAB_MAX_CONCURRENCY: String(LIMIT),
      CHECK_MARGIN_SECONDS: "1",
      POLL_BASE_SECONDS: "1",
      POLL_MAX_SECONDS: "2",
      RETRY_BASE_SECONDS: "1",
      RETRY_MAX_SECONDS: "2",
    },
    // The sweep is the safety net only: an hour apart, so admissions here come from releases.
    reconcileIntervalSeconds: 3600,
    provider: { kind: "simulator", options: { concurrencyLimit: LIMIT, completionDelayMs: 700 } },
  });
  stack = started.stack;
  simulator = stack.simulator as Simulator;
  [noisy, quiet] = started.clients as [TestClient, TestClient];
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await images?.stop();
});

const submit = async (client: TestClient) => {
  const response = await client.request("POST", "/v1/jobs", {
    body: validJobRequest({ control_image: images.url, width: 128, height: 96 }),
  });
  expect(response.status).toBe(202);
  return response.body.id as string;
};
const getJob = async (client: TestClient, id: string) => (await client.request("GET", `/v1/jobs/${id}`)).body;

describe("admission under a backlog", () => {
  it("admits a quiet tenant's job within a few turnovers behind a 20× noisy backlog, never over the limit; a waiting job shows its position move", async () => {
    const noisyIds: string[] = [];
    for (let i = 0; i < NOISY_JOBS; i++) noisyIds.push(await submit(noisy));
    const last = noisyIds.at(-1) as string;

    // The last noisy job waits: it shows where it stands.
    const waiting = await waitFor(
      async () => {
        const job = await getJob(noisy, last);
        return job.status === "queued" && job.queue ? job : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: "the last noisy job to show its queue position" },
    );
    expect(waiting.queue.position).toBeGreaterThan(1);
    expect(waiting.queue.position).toBeLessThanOrEqual(NOISY_JOBS);
    const quietId = await submit(quiet);
    const quietSubmitted = Date.now();

    // It moves as slots turn over.
    await waitFor(
      async () => {
        const job = await getJob(noisy, last);
        return job.status !== "queued" || (job.queue && job.queue.position < waiting.queue.position);
      },
      { timeoutMs: 60_000, intervalMs: 100, what: "the last noisy job's position to move" },
    );

    const quietDone = await waitFor(
      async () => {
        const job = await getJob(quiet, quietId);
        return job.status === "succeeded" || job.status === "failed" ? job : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 200, what: "the quiet tenant's job to finish" },
    );
    expect(quietDone.status).toBe("succeeded");
    const quietStart = Date.parse(quietDone.attempts[0].started_at);

    // Noisy jobs started after the quiet one was submitted and before it started: at most a couple of
    // turnovers' worth (fair share gives the quiet tenant the first slot that frees, give or take one
    // admission in flight per slot).
    const noisyJobs = await Promise.all(noisyIds.map((id) => getJob(noisy, id)));
    const startedBetween = noisyJobs.filter((job) => {
      const started = job.attempts[0]?.started_at;
      return started && Date.parse(started) > quietSubmitted && Date.parse(started) < quietStart;
    });
    expect(startedBetween.length).toBeLessThanOrEqual(2 * LIMIT);

    await waitFor(
      async () => {
        const jobs = await Promise.all(noisyIds.map((id) => getJob(noisy, id)));
        return jobs.every((job) => job.status === "succeeded");
      },
      { timeoutMs: 180_000, intervalMs: 500, what: "every noisy job to succeed" },
    );
    const stats = simulator.stats();
    expect(stats.maxRequestedInFlight).toBeLessThanOrEqual(LIMIT);
    expect(stats.maxInFlight).toBe(LIMIT);
  }, 300_000);
});
