import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Simulator } from "../../local/simulator/index.ts";
import type { LocalStack } from "../../local/stack.ts";
import { SHARED_DEFAULTS } from "../../shared/schemas/config.ts";
import { startImageServer } from "../support/image-server.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";
import { waitFor } from "../support/wait.ts";

/**
 * The business metrics as a developer sees them on `npm start`: the handlers of the local stack print
 * EMF lines on stdout, as in Lambda. This run reads them back and checks them against the jobs it ran.
 */
type EmfDocument = {
  _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] };
} & Record<string, unknown>;

const documents: EmfDocument[] = [];
let restoreStdout: () => void;
let stack: LocalStack;
let simulator: Simulator;
let client: TestClient;
let images: Awaited<ReturnType<typeof startImageServer>>;

beforeAll(async () => {
  // On, as `npm start` has them (the test support turns them off for other tests).
  process.env.POWERTOOLS_METRICS_DISABLED = "false";
  const write = process.stdout.write.bind(process.stdout);
  const spy = vi.spyOn(process.stdout, "write").mockImplementation(((
    chunk: string | Uint8Array,
    ...rest: never[]
  ) => {
    const text = String(chunk);
    const emf = text.split("\n").filter((line) => line.startsWith('{"_aws"'));
    for (const line of emf) documents.push(JSON.parse(line) as EmfDocument);
    return emf.length > 0 ? true : write(chunk, ...rest);
  }) as typeof process.stdout.write);
  restoreStdout = () => spy.mockRestore();
  images = await startImageServer();
  const started = await startTestStack(["metrics"], {
    // Two slots: the last case fills them and leaves jobs waiting.
    environment: { CHECK_MARGIN_SECONDS: "1", MODELSLAB_MAX_CONCURRENCY: "2" },
    provider: { kind: "simulator", options: { completionDelayMs: 50 } },
  });
  stack = started.stack;
  simulator = stack.simulator as Simulator;
  client = started.clients[0] as TestClient;
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await images?.stop();
  restoreStdout?.();
});

const submit = async (overrides: Record<string, unknown> = {}) => {
  const response = await client.request("POST", "/v1/jobs", {
    body: validJobRequest({ control_image: images.url, width: 64, height: 64, ...overrides }),
  });
  expect(response.status).toBe(202);
  return response.body.id as string;
};
const waitStatus = (id: string, statuses: string[]) =>
  waitFor(
    async () => {
      const job = (await client.request("GET", `/v1/jobs/${id}`)).body;
      return statuses.includes(job.status) ? job : null;
    },
    { timeoutMs: 30_000, intervalMs: 100, what: `job ${id} to be ${statuses.join(" or ")}` },
  );

/** Every value of `metric` printed with exactly these dimension values (among others). */
const values = (metric: string, dims: Record<string, string> = {}): number[] =>
  documents
    .filter(
      (doc) =>
        doc._aws.CloudWatchMetrics[0]?.Metrics.some((m) => m.Name === metric) &&
        Object.entries(dims).every(([key, value]) => doc[key] === value),
    )
    .flatMap((doc) => [doc[metric] as number | number[]].flat());
const sum = (metric: string, dims: Record<string, string> = {}) =>
  values(metric, dims).reduce((total, value) => total + value, 0);

describe("business metrics on the local stack", () => {
  it("prints EMF lines whose job counts match the jobs run: N succeeded, M failed with their code, one cancelled", async () => {
    const succeeded = await Promise.all([submit(), submit(), submit()]);
    for (const id of succeeded) await waitStatus(id, ["succeeded"]);

    simulator.setOptions({ failJobRate: 1 });
    const failed = await Promise.all([submit(), submit()]);
    const failures = await Promise.all(failed.map((id) => waitStatus(id, ["failed"])));
    simulator.setOptions({ failJobRate: 0 });
    const codes = new Set(failures.map((job) => job.error.code as string));
    expect(codes.size).toBe(1);
    const [code] = [...codes] as [string];

    // Pinned to the self-hosted fleet, which no worker serves here: it waits until it is cancelled.
    const waiting = await submit({ provider: "self-hosted" });
    await waitStatus(waiting, ["processing"]);
    expect((await client.request("POST", `/v1/jobs/${waiting}/cancel`)).status).toBe(200);
    await waitStatus(waiting, ["cancelled"]);

    // A function's lines are printed when its invocation ends, just after the write a GET sees.
    await waitFor(
      () => sum("Jobs", { outcome: "cancelled" }) === 1 && sum("Jobs", { outcome: "failed" }) === 2,
      {
        what: "the metrics of the last invocations",
      },
    );
    expect(sum("Jobs", { outcome: "succeeded" })).toBe(3);
    expect(sum("Jobs", { outcome: "succeeded", provider: "modelslab" })).toBe(3);
    expect(sum("Jobs", { outcome: "failed", provider: "modelslab", code })).toBe(2);
    expect(sum("Jobs", { outcome: "cancelled", provider: "self-hosted" })).toBe(1);
    expect(sum("Jobs")).toBe(6);

    expect(values("EndToEndTime", { provider: "modelslab" })).toHaveLength(3);
    expect(values("ProviderTime", { provider: "modelslab" })).toHaveLength(3);
    expect(values("StoringTime", { provider: "modelslab" })).toHaveLength(3);
    const bytes = values("OutputBytes", { provider: "modelslab" });
    expect(bytes).toHaveLength(3);
    for (const value of bytes) expect(value).toBeGreaterThan(0);
    // One slot wait per attempt started: five on ModelsLab, one on the fleet.
    expect(values("SlotWait", { provider: "modelslab" }).length).toBeGreaterThanOrEqual(5);
    expect(values("SlotWait", { provider: "self-hosted" })).toHaveLength(1);
    expect(values("ProviderSubmitLatency", { provider: "modelslab" }).length).toBeGreaterThanOrEqual(5);

    for (const doc of documents) {
      const [directive] = doc._aws.CloudWatchMetrics;
      expect(directive?.Namespace).toBe(SHARED_DEFAULTS.METRICS_NAMESPACE);
      expect(doc.stage).toBe("dev");
      for (const set of directive?.Dimensions ?? []) expect(set[0]).toBe("stage");
    }
  });

  it("the reconciler's tick samples each provider's slots and breaker", async () => {
    const before = documents.length;
    await stack.runSchedules();
    await waitFor(() => documents.slice(before).some((doc) => "SlotsInUse" in doc), {
      what: "the reconciler's gauges",
    });
    const tick = documents.slice(before);
    const gauge = (name: string, provider: string) =>
      tick.find((doc) => doc.provider === provider && name in doc)?.[name];
    expect(gauge("SlotsInUse", "modelslab")).toBe(0);
    expect(gauge("SlotLimit", "modelslab")).toBe(2);
    expect(gauge("SlotUtilisation", "modelslab")).toBe(0);
    expect(gauge("BreakerOpen", "modelslab")).toBe(0);
    expect(gauge("SlotsInUse", "self-hosted")).toBeTypeOf("number");
  });

  it("while jobs wait for a full provider, the tick samples them, the oldest one's age and full slots", async () => {
    simulator.setOptions({ completionDelayMs: 3_000 });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await submit({ provider: "modelslab" }));
    // Two run (the two slots); two wait, each shown its place in the queue.
    await waitFor(
      async () => {
        const jobs = await Promise.all(
          ids.map(async (id) => (await client.request("GET", `/v1/jobs/${id}`)).body),
        );
        return jobs.filter((job) => job.queue).length === 2;
      },
      { what: "two jobs waiting for a slot" },
    );
    const before = documents.length;
    await stack.runSchedules();
    await waitFor(
      () => documents.slice(before).some((doc) => "WaitingJobs" in doc && doc.provider === "modelslab"),
      {
        what: "the reconciler's waiting gauges",
      },
    );
    const tick = documents.slice(before);
    const gauge = (name: string) => tick.find((doc) => doc.provider === "modelslab" && name in doc)?.[name];
    expect(gauge("WaitingJobs")).toBe(2);
    expect(gauge("OldestWaitingAge")).toBeGreaterThanOrEqual(0);
    expect(gauge("SlotsInUse")).toBe(2);
    expect(gauge("SlotUtilisation")).toBe(100);
    simulator.setOptions({ completionDelayMs: 50 });
    for (const id of ids) await waitStatus(id, ["succeeded"]);
  });
});
