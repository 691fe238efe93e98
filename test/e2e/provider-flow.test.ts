import { createHash } from "node:crypto";
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Simulator } from "../../local/simulator/index.ts";
import type { LocalStack } from "../../local/stack.ts";
import { createS3Client, S3ObjectStore } from "../../shared/adapters/s3/object-store.ts";
import { createSqsClient } from "../../shared/adapters/sqs/queue.ts";
import { callbackToken } from "../../shared/domain/callback-token.ts";
import { isTerminal } from "../../shared/domain/job.ts";
import { startImageServer } from "../support/image-server.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";
import { waitFor } from "../support/wait.ts";

let stack: LocalStack;
let simulator: Simulator;
let client: TestClient;
let images: Awaited<ReturnType<typeof startImageServer>>;

const FAST = {
  MODELSLAB_MAX_CONCURRENCY: "5",
  CHECK_MARGIN_SECONDS: "1",
  POLL_BASE_SECONDS: "1",
  POLL_MAX_SECONDS: "2",
  RETRY_BASE_SECONDS: "1",
  RETRY_MAX_SECONDS: "2",
};

beforeAll(async () => {
  images = await startImageServer();
  const started = await startTestStack(["acme"], {
    environment: FAST,
    reconcileIntervalSeconds: 1,
    provider: { kind: "simulator", options: { concurrencyLimit: 5, completionDelayMs: 100 } },
  });
  stack = started.stack;
  simulator = stack.simulator as Simulator;
  client = started.clients[0] as TestClient;
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await images?.stop();
});
beforeEach(() => {
  simulator.setOptions({
    dropCallbackRate: 0,
    duplicateCallbackRate: 0,
    reorderCallbacks: false,
    earlyCallbackRate: 0,
  });
});

const submit = async (overrides: Record<string, unknown> = {}) => {
  const response = await client.request("POST", "/v1/jobs", {
    body: validJobRequest({ control_image: images.url, width: 128, height: 96, ...overrides }),
  });
  expect(response.status).toBe(202);
  return response.body.id as string;
};
const getJob = async (id: string) => (await client.request("GET", `/v1/jobs/${id}`)).body;
/**
 * Waits until every job is terminal, then gives each as it was when it got there (terminal states have
 * no way out, so a terminal job is not fetched again). Bounded by progress, not by total time: it fails
 * when no job has reached a terminal state for `stallMs`, so a slow machine takes longer but passes,
 * and a stuck pipeline fails instead of hanging. The default outlasts the reconciler's sweep (a minute):
 * a waiting job whose admission was lost is admitted by it.
 */
const waitTerminal = async (ids: string[], stallMs = 90_000): Promise<any[]> => {
  const terminal = new Map<string, any>();
  while (terminal.size < ids.length) {
    const pending = ids.filter((id) => !terminal.has(id));
    await waitFor(
      async () => {
        const jobs: any[] = await Promise.all(pending.map(getJob));
        jobs.forEach((job, i) => {
          if (isTerminal(job.status)) terminal.set(pending[i] as string, job);
        });
        return terminal.size > ids.length - pending.length;
      },
      {
        timeoutMs: stallMs,
        intervalMs: 200,
        what: `any of ${pending.length} jobs to finish (${ids.length - pending.length} of ${ids.length} finished)`,
      },
    );
  }
  return ids.map((id) => terminal.get(id));
};

const sqs = createSqsClient();
const queueDrained = async (logicalId: string) => {
  const queue = stack.topology.queues[logicalId];
  if (!queue) throw new Error(`no queue ${logicalId}`);
  const { Attributes = {} } = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queue.url,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }),
  );
  return (
    Attributes.ApproximateNumberOfMessages === "0" && Attributes.ApproximateNumberOfMessagesNotVisible === "0"
  );
};

describe("jobs on the ModelsLab simulator", () => {
  it("answers Prefer: wait with the finished job (200) when the provider finishes within the wait", async () => {
    const response = await client.request("POST", "/v1/jobs", {
      body: validJobRequest({ control_image: images.url, width: 128, height: 96 }),
      headers: { prefer: "wait=20" },
    });
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(response.headers.get("preference-applied")).toBe("wait=20");
    expect(response.headers.get("location")).toBe(`/v1/jobs/${response.body.id}`);
    expect(response.body.status).toBe("succeeded");
    expect(response.body.outputs.length).toBeGreaterThan(0);
    // Presented as GET presents it.
    expect(await getJob(response.body.id)).toMatchObject({
      status: "succeeded",
      outputs: response.body.outputs.map(() => expect.anything()),
    });
  });

  it("runs a submitted job to succeeded with its outputs", async () => {
    const id = await submit({ samples: 2, seed: 4242, deadline_seconds: 900, notify_processing: false });
    const [job] = await waitTerminal([id]);
    expect(job.status).toBe("succeeded");
    expect(job.outputs).toHaveLength(2);
    // The seed the provider echoed (meta.seed), and the orchestrator's own fields echoed back.
    expect(job).toMatchObject({ seed: 4242, deadline_seconds: 900, notify_processing: false, webhook: null });
    const outputsBucket = Object.values(stack.topology.buckets).find((b) => /output/i.test(b.name))?.name;
    for (const output of job.outputs) {
      // Our own storage, presigned — never the provider's URL.
      expect(output.url).toContain(`/${outputsBucket}/${client.tenantId}/${id}/`);
      expect(output.url).toContain("X-Amz-Signature=");
      expect(output).toMatchObject({ content_type: "image/png", width: 128, height: 96 });
      const bytes = Buffer.from(await (await fetch(output.url)).arrayBuffer());
      expect(bytes.byteLength).toBe(output.bytes);
      expect(createHash("sha256").update(bytes).digest("hex")).toBe(output.sha256);
    }
    expect(job.attempts).toEqual([
      expect.objectContaining({ route: "modelslab", outcome: "succeeded", provider_id: expect.any(String) }),
    ]);
    expect(simulator.stats().acceptedByTrackId[id]).toBe(1);
  });

  it("finishes every job through the reconciler when every callback is lost", async () => {
    simulator.setOptions({ dropCallbackRate: 1 });
    const before = simulator.stats();
    const ids = await Promise.all(Array.from({ length: 4 }, () => submit()));
    const jobs = await waitTerminal(ids);
    expect(jobs.map((j) => j.status)).toEqual(ids.map(() => "succeeded"));
    // Fetch answers carry the provider's NSFW flag and the seed it drew for a request without one.
    for (const job of jobs)
      expect(job).toMatchObject({ nsfw_content_detected: false, seed: expect.any(Number) });
    const after = simulator.stats();
    expect(after.callbacksDropped - before.callbacksDropped).toBeGreaterThanOrEqual(4);
    expect(after.fetches).toBeGreaterThan(before.fetches);
  });

  /** The job with each output URL reduced to the object it names (no presigning query). */
  const unsigned = (job: { outputs: Array<{ url: string }> }) => ({
    ...job,
    outputs: job.outputs.map((o) => ({ ...o, url: o.url.split("?")[0] })),
  });

  it("ignores duplicated, reordered and early callbacks: nothing changes after terminal, nothing is sent twice", async () => {
    simulator.setOptions({ duplicateCallbackRate: 1, reorderCallbacks: true, earlyCallbackRate: 0.5 });
    const ids = await Promise.all(Array.from({ length: 6 }, () => submit()));
    const terminal = await waitTerminal(ids);
    expect(terminal.map((j) => j.status)).toEqual(ids.map(() => "succeeded"));
    // Let every extra callback arrive and be finalized, then compare.
    await waitFor(() => queueDrained("ResultsQueue"), { what: "results queue to drain" });
    const later = await Promise.all(ids.map(getJob));
    // Output URLs are presigned on every read (their date and signature move); compare what they name.
    expect(later.map(unsigned)).toEqual(terminal.map(unsigned));
    for (const id of ids) expect(simulator.stats().acceptedByTrackId[id]).toBe(1);
  });

  it("refuses forged callbacks and changes nothing", async () => {
    simulator.setOptions({ dropCallbackRate: 1 });
    const [victim, other] = await Promise.all([submit(), submit()]);
    await waitFor(async () => (await getJob(victim)).status === "processing" && true, { what: "processing" });
    const before = await getJob(victim);
    const secret = process.env.CALLBACK_SECRET as string;
    const success = (trackId: string) => ({
      status: "success",
      id: 999_999,
      output: ["http://127.0.0.1:1/forged.png"],
      track_id: trackId,
    });
    const post = (jobId: string, token: string | null, body: unknown) =>
      fetch(
        `${stack.callbackBaseUrl.replace(/\/$/, "")}/callbacks/modelslab/${jobId}?attempt=0${token === null ? "" : `&token=${encodeURIComponent(token)}`}`,
        {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        },
      );
    expect((await post(victim, null, success(victim))).status).toBe(401);
    expect((await post(victim, "not-the-token", success(victim))).status).toBe(401);
    expect((await post(victim, callbackToken(secret, "modelslab", other, 0), success(victim))).status).toBe(
      401,
    );
    const mismatch = await post(victim, callbackToken(secret, "modelslab", victim, 0), success(other));
    expect(mismatch.status).toBe(400);
    expect(((await mismatch.json()) as any).error.code).toBe("TRACK_ID_MISMATCH");
    const notJson = await fetch(
      `${stack.callbackBaseUrl.replace(/\/$/, "")}/callbacks/modelslab/${victim}?attempt=0&token=${callbackToken(secret, "modelslab", victim, 0)}`,
      {
        method: "POST",
        body: "<html>",
      },
    );
    expect(notJson.status).toBe(400);
    const after = await getJob(victim);
    expect(after.outputs).toEqual(before.outputs);
    expect(after.outputs.some((o: { url: string }) => o.url.includes("forged"))).toBe(false);
    await waitTerminal([victim, other]);
  });

  it("leaves nothing in the outputs bucket for a job cancelled while its outputs are copied", async () => {
    // Slow output downloads keep the job in storing long enough to cancel it there.
    simulator.setOptions({ outputSlowRate: 1, outputDelayMs: 1_500 });
    try {
      const id = await submit({ samples: 2 });
      await waitFor(async () => (await getJob(id)).status === "storing", {
        intervalMs: 20,
        what: "the job to be storing",
      });
      const cancel = await client.request("POST", `/v1/jobs/${id}/cancel`);
      expect(cancel.body).toMatchObject({ status: "cancelled" });
      // Finalize finishes its copies, finds the job cancelled and discards them before it lets go.
      await waitFor(() => queueDrained("ResultsQueue"), { what: "finalize to let go of the result" });
      const bucket = Object.values(stack.topology.buckets).find((b) => /output/i.test(b.name))?.name;
      const outputs = new S3ObjectStore(createS3Client(), bucket ?? "");
      expect(await outputs.list(`${client.tenantId}/${id}/`, 100)).toEqual([]);
      expect(await getJob(id)).toMatchObject({ status: "cancelled", outputs: [] });
    } finally {
      simulator.setOptions({ outputSlowRate: 0 });
    }
  });

  // Behaviour under a burst, not its speed (`npm run bench` measures throughput): the wait is bounded
  // by progress (`waitTerminal`), the test only by a limit far above what a loaded 2-core machine takes.
  it("keeps a burst of 200 jobs within the provider limit of 5, with no 429 and all finished", async () => {
    const before = simulator.stats();
    const ids: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (ids.length < 200) {
          ids.push("");
          ids[ids.length - 1] = await submit();
        }
      }),
    );
    expect(new Set(ids).size).toBe(200);
    const jobs = await waitTerminal(ids);
    expect(jobs.filter((j) => j.status !== "succeeded")).toEqual([]);
    // One attempt each, on the provider, that succeeded.
    expect(jobs.filter((j) => j.attempts.length !== 1 || j.attempts[0].outcome !== "succeeded")).toEqual([]);
    const after = simulator.stats();
    // Never a submit sent while the account was full (maxInFlight alone cannot pass the limit).
    expect(after.maxRequestedInFlight).toBeLessThanOrEqual(5);
    expect(after.rejected429 - before.rejected429).toBe(0);
    // Each job posted to the provider once, and accepted once: no duplicate posts.
    for (const id of ids) {
      expect(after.submitsByTrackId[id]).toBe(1);
      expect(after.acceptedByTrackId[id]).toBe(1);
    }
    expect(after.accepted - before.accepted).toBe(200);
  }, 600_000);
});
