import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Simulator } from "../../local/simulator/index.ts";
import type { LocalStack } from "../../local/stack.ts";
import { startImageServer } from "../support/image-server.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";
import { waitFor } from "../support/wait.ts";

/**
 * A cancelled job's generation goes on at the provider (ModelsLab has no cancel), so its capacity
 * slot must too: with an account of one slot, the next job is posted only once the provider is done
 * with the cancelled one, never over the limit (the provider would answer 429).
 */
const GENERATION_MS = 5_000;

let stack: LocalStack;
let simulator: Simulator;
let client: TestClient;
let images: Awaited<ReturnType<typeof startImageServer>>;

beforeAll(async () => {
  images = await startImageServer();
  const started = await startTestStack(["acme"], {
    environment: {
      MODELSLAB_MAX_CONCURRENCY: "1",
      // The reconciler looks at slots of jobs that left processing after one second: a rule that
      // freed a cancelled job's slot would free it long before the provider finished the job.
      SLOT_GRACE_SECONDS: "1",
      CHECK_MARGIN_SECONDS: "1",
      POLL_BASE_SECONDS: "1",
      POLL_MAX_SECONDS: "2",
      RETRY_BASE_SECONDS: "1",
      RETRY_MAX_SECONDS: "2",
    },
    reconcileIntervalSeconds: 1,
    provider: {
      kind: "simulator",
      options: { concurrencyLimit: 1, completionDelayMs: GENERATION_MS, retryAfterSeconds: 1 },
    },
  });
  stack = started.stack;
  simulator = stack.simulator as Simulator;
  client = started.clients[0] as TestClient;
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await images?.stop();
});

const submit = async () => {
  const response = await client.request("POST", "/v1/jobs", {
    body: validJobRequest({ control_image: images.url, width: 128, height: 96 }),
  });
  expect(response.status).toBe(202);
  return response.body.id as string;
};
const getJob = async (id: string) => (await client.request("GET", `/v1/jobs/${id}`)).body;

describe("a capacity slot is held until the provider is done with the job", () => {
  it("keeps a cancelled job's slot while the provider generates it: the next job waits, no 429", async () => {
    const first = await submit();
    await waitFor(() => simulator.stats().acceptedByTrackId[first] === 1, {
      what: "the provider to accept the first job",
    });
    const cancelled = await client.request("POST", `/v1/jobs/${first}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.status).toBe("cancelled");

    const second = await submit();
    const done = await waitFor(
      async () => {
        const job = await getJob(second);
        return job.status === "succeeded" || job.status === "failed" ? job : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: "the second job to finish" },
    );

    const stats = simulator.stats();
    expect(stats.rejected429).toBe(0);
    expect(stats.maxRequestedInFlight).toBe(1);
    expect(stats.acceptedByTrackId[second]).toBe(1);
    // Posted only after the provider finished the cancelled job.
    const [firstGeneration, secondGeneration] = stats.generations;
    expect(secondGeneration?.startMs).toBeGreaterThanOrEqual(
      firstGeneration?.endMs ?? Number.POSITIVE_INFINITY,
    );
    expect(done.status).toBe("succeeded");
    expect(done.attempts).toHaveLength(1);
    // The cancelled job stays cancelled, without outputs, once its late result came in.
    expect(await getJob(first)).toMatchObject({ status: "cancelled", outputs: [] });
  }, 90_000);
});
