import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Simulator } from "../../local/simulator/index.ts";
import type { LocalStack } from "../../local/stack.ts";
import { startImageServer } from "../support/image-server.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";
import { waitFor } from "../support/wait.ts";

/**
 * The self-hosted route end to end: the worker runs in-process on the CPU with the tiny model, takes
 * jobs from the local fallback queue, writes PNGs into our outputs bucket and reports on the results
 * queue; finalize reads them back, describes them and the job succeeds.
 */
let stack: LocalStack;
let simulator: Simulator;
let client: TestClient;
let images: Awaited<ReturnType<typeof startImageServer>>;

beforeAll(async () => {
  images = await startImageServer();
  const started = await startTestStack(["acme"], {
    environment: {
      CHECK_MARGIN_SECONDS: "1",
      RETRY_BASE_SECONDS: "1",
      RETRY_MAX_SECONDS: "1",
      // Two provider failures open the breaker; it stays open for the rest of the run.
      BREAKER_FAILURE_THRESHOLD: "2",
      BREAKER_WINDOW_SECONDS: "60",
      BREAKER_COOLDOWN_SECONDS: "600",
      MAX_RETRYABLE_FAILURES: "5",
    },
    reconcileIntervalSeconds: 1,
    provider: { kind: "simulator", options: { completionDelayMs: 100 } },
    worker: true,
  });
  stack = started.stack;
  simulator = stack.simulator as Simulator;
  client = started.clients[0] as TestClient;
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await images?.stop();
});

const submit = async (overrides: Record<string, unknown>) => {
  const response = await client.request("POST", "/v1/jobs", {
    body: validJobRequest({ control_image: images.url, width: 128, height: 64, ...overrides }),
  });
  expect(response.status).toBe(202);
  return response.body.id as string;
};
const getJob = async (id: string) => (await client.request("GET", `/v1/jobs/${id}`)).body;
const waitTerminal = (id: string, timeoutMs = 30_000): Promise<any> =>
  waitFor(
    async () => {
      const job = await getJob(id);
      return ["succeeded", "failed", "cancelled"].includes(job.status) ? job : null;
    },
    { timeoutMs, intervalMs: 200, what: `job ${id} to finish` },
  );

const expectStoredPngs = async (job: any, width: number, height: number) => {
  const outputsBucket = Object.values(stack.topology.buckets).find((b) => /output/i.test(b.name))?.name;
  expect(job.outputs.length).toBeGreaterThan(0);
  for (const [index, output] of (job.outputs as any[]).entries()) {
    expect(output.url).toContain(`/${outputsBucket}/${client.tenantId}/${job.id}/${index}.png`);
    expect(output.url).toContain("X-Amz-Signature=");
    expect(output).toMatchObject({ content_type: "image/png", width, height });
    const bytes = Buffer.from(await (await fetch(output.url)).arrayBuffer());
    expect(bytes.subarray(1, 4).toString("latin1")).toBe("PNG");
    expect(bytes.byteLength).toBe(output.bytes);
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(output.sha256);
  }
};

describe("the self-hosted route", () => {
  it("runs a `provider: self-hosted` job on the worker to succeeded, outputs in our bucket", async () => {
    const before = simulator.stats();
    const id = await submit({ provider: "self-hosted" });
    const job = await waitTerminal(id);
    expect(job.error).toBeNull();
    expect(job.status).toBe("succeeded");
    await expectStoredPngs(job, 128, 64);
    expect(job.attempts).toEqual([expect.objectContaining({ route: "self-hosted", outcome: "succeeded" })]);
    // The provider never saw it.
    expect(simulator.stats().acceptedByTrackId[id]).toBeUndefined();
    expect(simulator.stats().submits).toBe(before.submits);
    expect(simulator.stats().submitsByTrackId[id]).toBeUndefined();
  }, 35_000);

  it("sends an `auto` job to the worker once the provider's breaker opens: both routes in its attempts", async () => {
    simulator.setOptions({ errorRate5xx: 1 });
    try {
      const id = await submit({ provider: "auto", width: 128, height: 128 });
      const job = await waitTerminal(id);
      expect(job.error).toBeNull();
      expect(job.status).toBe("succeeded");
      await expectStoredPngs(job, 128, 128);
      const routes = (job.attempts as any[]).map((a) => a.route);
      expect(routes[0]).toBe("modelslab");
      expect(routes.at(-1)).toBe("self-hosted");
      // Two 5xx answers opened the breaker (threshold 2); the next dispatch went to the worker.
      expect(job.attempts.at(-1)).toMatchObject({
        outcome: "succeeded",
        reason: expect.stringContaining("circuit open"),
      });
      expect(job.attempts.slice(0, -1).every((a: any) => a.route === "modelslab")).toBe(true);
      expect(job.attempts.at(-2)).toMatchObject({ outcome: expect.stringMatching(/retried|failed/) });
    } finally {
      simulator.setOptions({ errorRate5xx: 0 });
    }
  }, 35_000);

  it("refuses a self-hosted job asking what the fleet cannot do: 400 naming each parameter", async () => {
    const response = await client.request("POST", "/v1/jobs", {
      body: validJobRequest({
        control_image: images.url,
        provider: "self-hosted",
        upscale: "yes",
        safety_checker: "yes",
        scheduler: "KarrasVeScheduler",
      }),
    });
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("VALIDATION_FAILED");
    expect(response.body.error.details.map((d: { path: string }) => d.path).sort()).toEqual([
      "safety_checker",
      "scheduler",
      "upscale",
    ]);
  });

  it("lists the local catalog's tiny model at GET /v1/models, and refuses a self-hosted job naming another", async () => {
    const models = await client.request("GET", "/v1/models");
    expect(models.status).toBe(200);
    expect(models.body.self_hosted.map((m: { model_id: string }) => m.model_id)).toEqual(["sd15"]);
    const response = await client.request("POST", "/v1/jobs", {
      body: validJobRequest({ control_image: images.url, provider: "self-hosted", model_id: "sdxl-other" }),
    });
    expect(response.status).toBe(400);
    expect(response.body.error.details).toEqual([
      { path: "model_id", message: expect.stringContaining('no model "sdxl-other"') },
    ]);
  });

  it("keeps an `auto` job asking what the fleet cannot do on the provider while its breaker is open", async () => {
    // The previous test left the breaker open (cool-down 600 s): a plain auto job would go to the worker.
    const id = await submit({ provider: "auto", upscale: "yes" });
    const job = await waitTerminal(id);
    expect(job.status).toBe("succeeded");
    expect((job.attempts as any[]).map((a) => a.route)).toEqual(["modelslab"]);
  }, 35_000);
});
