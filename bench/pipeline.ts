/**
 * `npm run bench [-- --jobs N --concurrency N --provider-limit N --provider-delay-ms N --tenants K
 *   --compare-unconstrained --json]`
 *
 * The whole pipeline on the local stack with a zero-latency ModelsLab simulator (jobs complete at
 * once; callbacks, output downloads and client webhooks are real HTTP on loopback):
 *
 *   POST /v1/jobs → jobs queue → dispatch → provider → callback → results queue → finalize (output
 *   copied into S3) → notifications queue → notify → the client's webhook
 *
 * 1. Throughput (jobs per second, first submit to last client notification) and the p50/p99 of
 *    submit→succeeded (the job's terminal `updated_at`) and of callback→client notified (the
 *    provider's callback reaching our API to the signed webhook reaching the client).
 * 2. A floor: for one job of the run, every AWS call that named it (recorded by the meter) is replayed
 *    directly against the same emulators for N fresh ids, at the same concurrency, together with the
 *    same provider calls (submit, output download), one receive + delete per message sent, and the
 *    client webhook POST. The ratio pipeline/floor is the orchestration's own overhead.
 * 3. Cost: every AWS SDK request of the run is counted by `bench/lib/aws-meter.ts` (DynamoDB with its
 *    consumed capacity), every Lambda invocation with its duration at its configured memory, every API
 *    request, EventBridge event and log byte; per job × the list prices in `bench/prices.ts` = the
 *    orchestration plane's cost per million jobs (target ≤ $10). The storage of the images (S3 PUTs
 *    and bytes of the outputs) is reported apart, as is the idle polling of the queues.
 *
 * 4. Admission under the provider's account limit: `--provider-limit N` sets both the simulator's
 *    concurrency limit (more answer 429) and the capacity gate's (MODELSLAB_MAX_CONCURRENCY);
 *    `--provider-delay-ms N` is the simulator's time per image; `--tenants K` splits the jobs between
 *    K tenants, the first (noisy) submitting 20 times as many as each other (quiet) one, all of its
 *    jobs first and the quiet ones right after. Reported: each tenant's submit→terminal p50/p99/max;
 *    the provider's utilisation (busy slot time, from the simulator's record of each generation's
 *    slot, over limit × makespan, first submit to last terminal job); the most generations in flight,
 *    the most requested (in flight plus a refused submit) and the 429s, with VIOLATION when any says
 *    the limit was passed. `--compare-unconstrained` runs the same jobs again (a child process)
 *    without the limit and prints the cost per job of this run over that one's; without it, run the
 *    same command without `--provider-limit` for that figure. The floor is left out under a provider
 *    limit or delay (it posts to the provider directly, at the pool's concurrency).
 *
 * Caveats (printed): durations are measured on this machine with every function sharing one Node.js
 * thread, so they over-state Lambda's; dynalite does not bill global secondary indexes, so their
 * writes are estimated from the table design's projections by `estimateIndexWrites` (1 unit per index
 * item written, only where a write changes the index's key or projected attributes).
 */
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Pool, request } from "undici";
import { type InfraConfig, InfraConfigError, loadInfraConfig } from "../infra/config.ts";
import { parseCallbackPath } from "../shared/domain/callback-token.ts";
import { busySlotMs, type Interval, maxInFlight, tenantJobCounts, utilisation } from "./lib/admission.ts";
import { parseArgs, UsageError } from "./lib/args.ts";
import {
  type AwsCall,
  awsMeter,
  estimateIndexWrites,
  installAwsMeter,
  meterLocalFunctions,
} from "./lib/aws-meter.ts";
import { LogMeter } from "./lib/log-meter.ts";
import { runPool } from "./lib/pool.ts";
import { ms, rate, ratio, table } from "./lib/print.ts";
import { percentile } from "./lib/stats.ts";
import { LAMBDA_PLATFORM_LOG_BYTES_PER_INVOCATION, PRICES } from "./prices.ts";

const TARGET_USD_PER_MILLION = 10;
/**
 * The business metrics' budget, as a share of the plane's own cost in the same run: their EMF lines
 * are log bytes, ingested at the logs' price, one line per invocation that recorded something. Jobs
 * batched ten to an invocation share lines; under a provider limit each job travels alone and carries
 * its lines by itself, so the budget follows the plane's cost rather than a fixed figure. A change that
 * makes them cost more than this share (more documents, more dimensions per job) fails the run.
 */
const METRICS_BUDGET_SHARE = 0.05;
const WARMUP = 20;
/** The simulator's and the gate's limit when `--provider-limit` is not given: never reached by the pool. */
const UNCONSTRAINED_LIMIT = 256;
/** The noisy tenant submits this many times as many jobs as each quiet one. */
const NOISY_RATIO = 20;

interface TenantReport {
  tenant: string;
  role: "only" | "noisy" | "quiet";
  jobs: number;
  /** Submit (the POST) to terminal (the job's `updated_at` when it got there). */
  wait_ms: { p50: number; p99: number; max: number };
}

interface ProviderReport {
  /** The account limit (null: unconstrained). */
  limit: number | null;
  delay_ms: number;
  /** Busy slot time over limit × makespan (null when unconstrained). */
  utilisation: number | null;
  busy_slot_seconds: number;
  makespan_seconds: number;
  max_in_flight: number;
  /** Jobs in flight when a submit arrived, plus that submit (whole invocation, warm-up included). */
  max_requested_in_flight: number;
  rejected_429: number;
  violation: boolean;
}

interface Report {
  jobs: number;
  concurrency: number;
  jobs_per_second: number;
  submit_to_succeeded_ms: { p50: number; p99: number };
  callback_to_notified_ms: { p50: number; p99: number };
  /** Null under a provider limit or delay (see the header). */
  floor: { jobs_per_second: number; per_job_ms: { p50: number; p99: number } } | null;
  /** Pipeline over floor: floor throughput / pipeline throughput, and p50 latency ratio. */
  ratio: { throughput: number; latency_p50: number } | null;
  provider: ProviderReport;
  tenants: TenantReport[];
  /** With `--compare-unconstrained`: the same jobs without the provider limit, and this run's cost over it. */
  unconstrained_cost_per_million_usd: number | null;
  cost_ratio_vs_unconstrained: number | null;
  per_job: Record<string, number>;
  cost_per_million_usd: number;
  cost_breakdown_per_million_usd: Record<string, number>;
  /** The table's billing mode the cost is priced at (infra `tableBilling`, from `--context`). */
  table_billing: InfraConfig["tableBilling"];
  /** The same run priced with the other billing mode for the table; everything else as above. */
  cost_per_million_usd_other_table_billing: number;
  /** The CDK context the templates were synthesized with (`--context key=value`). */
  context: Record<string, string>;
  storage_cost_per_million_usd: number;
  storage_breakdown_per_million_usd: Record<string, number>;
  idle: { empty_receives_per_second: number };
  target_usd_per_million: number;
  target_met: boolean;
  metrics_budget_usd_per_million: number;
  metrics_within_budget: boolean;
  prices_as_of: string;
  notes: string[];
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2), {
      integers: {
        jobs: 500,
        concurrency: 16,
        "provider-limit": UNCONSTRAINED_LIMIT,
        "provider-delay-ms": 0,
        tenants: 1,
      },
      flags: ["json", "explain", "compare-unconstrained"],
      lists: ["context"],
      zeroAllowed: ["provider-delay-ms"],
    });
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }
  const jobs = args.integers.jobs as number;
  const concurrency = args.integers.concurrency as number;
  const constrained = args.given.has("provider-limit");
  const limit = args.integers["provider-limit"] as number;
  const delayMs = args.integers["provider-delay-ms"] as number;
  const tenantCount = args.integers.tenants as number;
  let counts: number[];
  try {
    counts = tenantJobCounts(jobs, tenantCount, NOISY_RATIO);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    return 2;
  }
  // `--context key=value`: the CDK context the templates are synthesized with (a deployment option to
  // measure, e.g. lifecycleEvents=all or logLevel=WARN); it is validated like `cdk synth` would.
  const context: Record<string, string> = {};
  for (const pair of args.lists.context ?? []) {
    const at = pair.indexOf("=");
    if (at < 1) {
      console.error(`--context needs key=value, got ${pair}`);
      return 2;
    }
    context[pair.slice(0, at)] = pair.slice(at + 1);
  }
  // Validated with what the local stack synthesizes its templates with (its model catalog included).
  const { LOCAL_SELF_HOSTED_MODELS } = await import("../local/template.ts");
  const localDefaults: Record<string, unknown> = { selfHostedModels: LOCAL_SELF_HOSTED_MODELS };
  let infra: InfraConfig;
  try {
    infra = loadInfraConfig((key) => context[key] ?? localDefaults[key], {});
  } catch (error) {
    if (error instanceof InfraConfigError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }

  // The comparison runs first, on its own, so the two runs do not share the machine.
  let unconstrained: number | null = null;
  if (constrained && args.flags.has("compare-unconstrained")) {
    console.error("bench: the unconstrained run first (--compare-unconstrained)");
    unconstrained = await unconstrainedCost(args, context);
  }

  // Logs: the functions log at the level the template sets (INFO) and print their metrics' EMF lines;
  // their bytes are counted (CloudWatch Logs ingestion is part of the cost) and kept off the terminal.
  const realStdout = process.stdout.write.bind(process.stdout);
  const logs = new LogMeter();
  let countingLogs = false;
  const swallow = (chunk: string | Uint8Array): boolean => {
    if (countingLogs) logs.add(chunk);
    return true;
  };
  process.stdout.write = swallow as typeof process.stdout.write;
  const say = (line: string) => realStdout(`${line}\n`);

  installAwsMeter();
  meterLocalFunctions();
  awsMeter.keepInputs = true;
  const { startLocalStack } = await import("../local/stack.ts");
  const { ensureTenant } = await import("../local/dev-tenant.ts");

  const stack = await startLocalStack({
    port: 0,
    dataDir: null,
    // Every minute, as deployed (rate(1 minute)): the sweep is admission's safety net, and its cost
    // (a few requests a minute, none per job) stays out of the per-job figures' way.
    reconcileIntervalSeconds: 60,
    environment: { MODELSLAB_MAX_CONCURRENCY: String(limit) },
    context,
    provider: {
      kind: "simulator",
      options: {
        completionDelayMs: delayMs,
        concurrencyLimit: limit,
        maxStoredJobs: (jobs + WARMUP) * 2 + 100,
      },
    },
  });
  const simulator = stack.simulator;
  if (!simulator) throw new Error("no simulator");
  const closers: Array<() => Promise<void>> = [];
  try {
    const tenantNames =
      tenantCount === 1 ? ["bench"] : counts.map((_, i) => (i === 0 ? "bench-noisy" : `bench-quiet-${i}`));
    const tenants: Array<{ apiKey: string }> = [];
    for (const name of tenantNames) tenants.push(await ensureTenant(process.env.TABLE_NAME as string, name));

    // The client's webhook endpoint: arrival time of each job's terminal notification.
    const notifiedAt = new Map<string, number>();
    const succeededAt = new Map<string, number>();
    let receiverHits = 0;
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        receiverHits++;
        const now = Date.now();
        try {
          const event = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
            type?: string;
            data?: { id?: string; status?: string; updated_at?: string };
          };
          const id = event.data?.id;
          if (id && event.type?.startsWith("job.") && !notifiedAt.has(id)) {
            notifiedAt.set(id, now);
            if (event.data?.updated_at) succeededAt.set(id, Date.parse(event.data.updated_at));
          }
        } catch {
          // the floor's bodies are not JSON events
        }
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", () => done()));
    closers.push(
      () =>
        new Promise<void>((done) => {
          server.closeAllConnections();
          server.close(() => done());
        }),
    );
    const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;

    const callbackAt = new Map<string, number>();
    const apiFunctions = new Set(stack.topology.routes.map((r) => r.functionId));
    // A callback reaches the callback function through an API route or its function URL: the path tells.
    awsMeter.onInvoke = (_functionId, event) => {
      const path = (event as { rawPath?: unknown }).rawPath;
      const id = typeof path === "string" ? parseCallbackPath(path)?.jobId : undefined;
      if (id && !callbackAt.has(id)) callbackAt.set(id, Date.now());
    };

    const http = new Pool(stack.url, { connections: concurrency, keepAliveTimeout: 60_000 });
    closers.push(() => http.close());
    const headersOf = (tenant: number) => ({
      authorization: `Bearer ${tenants[tenant]?.apiKey}`,
      "content-type": "application/json",
    });
    const controlImage = `${new URL(simulator.url).origin}/samples/control.png`;
    const submittedAt = new Map<string, number>();
    const body = JSON.stringify({
      model_id: "sd15",
      controlnet_model: "canny",
      controlnet_type: "canny",
      prompt: "a lighthouse at dusk",
      control_image: controlImage,
      width: 64,
      height: 64,
      webhook: hookUrl,
    });
    const submit = async (tenant = 0): Promise<string> => {
      const started = Date.now();
      const answer = await http.request({
        method: "POST",
        path: "/v1/jobs",
        headers: headersOf(tenant),
        body,
      });
      const text = await answer.body.text();
      if (answer.statusCode !== 202) throw new Error(`POST /v1/jobs answered ${answer.statusCode}: ${text}`);
      const id = (JSON.parse(text) as { id: string }).id;
      submittedAt.set(id, started);
      return id;
    };
    /** Each tenant's jobs in turn (the noisy one's first), then waits for every notification. */
    const runJobs = async (
      perTenant: readonly number[],
    ): Promise<{ ids: string[]; byTenant: string[][]; wallMs: number }> => {
      const ids: string[] = [];
      const byTenant: string[][] = perTenant.map(() => []);
      const started = Date.now();
      for (const [tenant, count] of perTenant.entries()) {
        await runPool(count, concurrency, async () => {
          const id = await submit(tenant);
          ids.push(id);
          byTenant[tenant]?.push(id);
        });
      }
      const count = ids.length;
      // Under a limit the provider alone needs count × delay / limit; waiting for capacity adds to it.
      // A second per job for the pipeline itself: on a loaded 2-core machine (every function shares
      // this one process) a job's own Lambda work can take that long; this only guards against a hang.
      const deadline = Date.now() + 120_000 + count * 1_000 + (3 * count * delayMs) / limit;
      while (ids.some((id) => !notifiedAt.has(id))) {
        if (Date.now() > deadline) throw new Error("jobs did not finish in time");
        await new Promise((done) => setTimeout(done, 20));
      }
      const last = Math.max(...ids.map((id) => notifiedAt.get(id) ?? 0));
      return { ids, byTenant, wallMs: last - started };
    };

    say(`bench: ${jobs} jobs at concurrency ${concurrency} through the whole pipeline (warm-up ${WARMUP})`);
    say(
      `provider: ${constrained ? `limit ${limit}` : "unconstrained"}, ${delayMs} ms per image; tenants: ${counts
        .map((n, i) => `${tenantNames[i]} ${n}`)
        .join(", ")}`,
    );
    await runJobs([WARMUP]);
    await new Promise((done) => setTimeout(done, 1_500));
    awsMeter.reset();
    logs.reset();
    countingLogs = true;
    const measuredFrom = Date.now();
    const simBefore = simulator.stats();
    const run = await runJobs(counts);
    const simAfter = simulator.stats();
    // Let the last deletes and late writes land inside the window.
    await new Promise((done) => setTimeout(done, 1_500));
    countingLogs = false;
    const windowSeconds = (Date.now() - measuredFrom) / 1000;
    const calls = [...awsMeter.calls];
    const lambdas = [...awsMeter.lambdas];

    const e2e = run.ids
      .map((id) => (succeededAt.get(id) ?? 0) - (submittedAt.get(id) ?? 0))
      .sort((a, b) => a - b);
    const notify = run.ids
      .filter((id) => callbackAt.has(id))
      .map((id) => (notifiedAt.get(id) ?? 0) - (callbackAt.get(id) ?? 0))
      .sort((a, b) => a - b);
    const jobsPerSecond = (jobs * 1000) / run.wallMs;

    // ---- admission: the provider's slots over the run, and each tenant's wait ----
    const generations: Interval[] = simAfter.generations.slice(simBefore.generations.length);
    const firstSubmit = Math.min(...run.ids.map((id) => submittedAt.get(id) ?? Number.POSITIVE_INFINITY));
    const lastTerminal = Math.max(...run.ids.map((id) => succeededAt.get(id) ?? 0));
    const busyMs = busySlotMs(generations, firstSubmit, lastTerminal);
    const peak = maxInFlight(generations);
    const rejected429 = simAfter.rejected429 - simBefore.rejected429;
    const provider: ProviderReport = {
      limit: constrained ? limit : null,
      delay_ms: delayMs,
      utilisation: constrained ? utilisation(generations, limit, firstSubmit, lastTerminal) : null,
      busy_slot_seconds: busyMs / 1000,
      makespan_seconds: (lastTerminal - firstSubmit) / 1000,
      max_in_flight: peak,
      max_requested_in_flight: simAfter.maxRequestedInFlight,
      rejected_429: rejected429,
      violation: peak > limit || simAfter.maxRequestedInFlight > limit || rejected429 > 0,
    };
    const tenantReports: TenantReport[] = run.byTenant.map((ids, i) => {
      const waits = ids
        .map((id) => (succeededAt.get(id) ?? 0) - (submittedAt.get(id) ?? 0))
        .sort((a, b) => a - b);
      return {
        tenant: tenantNames[i] as string,
        role: tenantCount === 1 ? "only" : i === 0 ? "noisy" : "quiet",
        jobs: ids.length,
        wait_ms: {
          p50: percentile(waits, 0.5),
          p99: percentile(waits, 0.99),
          max: waits.at(-1) ?? Number.NaN,
        },
      };
    });

    // ---- the floor: one job's AWS calls, replayed directly, plus the same provider and webhook HTTP ----
    // It posts to the provider at the pool's concurrency: meaningless (and refused) under a limit or delay.
    const withFloor = !constrained && delayMs === 0;
    for (const poller of stack.pollers) poller.pause(true);
    await new Promise((done) => setTimeout(done, 1_200));
    const sample = run.ids[Math.floor(run.ids.length / 2)] as string;
    const script = calls.filter((c) => c.input !== undefined && JSON.stringify(c.input).includes(sample));
    const providerKey = process.env.MODELSLAB_API_KEY as string;
    awsMeter.enabled = false;
    const floorOne = async (index: number): Promise<void> => {
      const fresh = `${sample.slice(0, 16)}${String(index).padStart(10, "0")}`;
      for (const call of script) {
        const input = renamed(call.input, sample, fresh) as Record<string, unknown>;
        const Command = (call.command as { constructor: new (input: unknown) => unknown }).constructor;
        const client = call.client as { send(command: unknown): Promise<unknown> };
        await client.send(new Command(input)).catch(() => undefined);
        if (call.operation === "SendMessage" && typeof input.QueueUrl === "string") {
          await floorReceive(client, call, input.QueueUrl);
        }
        if (call.operation === "PutObject" || call.operation === "CreateMultipartUpload") {
          // The output download that fed this upload, from the provider.
          const out = await request(`${new URL(simulator.url).origin}/samples/control.png`);
          await out.body.arrayBuffer();
        }
      }
      // The provider submit (the simulator answers at once; its callback goes to the client hook here).
      const submitted = await request(`${simulator.url}/v5/controlnet`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          key: providerKey,
          model_id: "sd15",
          controlnet_model: "canny",
          controlnet_type: "canny",
          prompt: "floor",
          init_image: controlImage,
          control_image: controlImage,
          width: 64,
          height: 64,
          webhook: `${hookUrl}-floor`,
          track_id: fresh,
        }),
      });
      await submitted.body.text();
      const hook = await request(`${hookUrl}-floor`, { method: "POST", body: "{}" });
      await hook.body.dump();
    };
    if (withFloor) await runPool(WARMUP, concurrency, floorOne);
    const floor = withFloor
      ? await runPool(jobs, concurrency, floorOne)
      : { latenciesMs: [], wallMs: Number.NaN };
    awsMeter.enabled = true;
    const floorSorted = [...floor.latenciesMs].sort((a, b) => a - b);
    const floorPerSecond = (jobs * 1000) / floor.wallMs;

    // ---- cost ----
    const perJob = (n: number) => n / jobs;
    const by = (service: string, filter: (c: AwsCall) => boolean = () => true) =>
      calls.filter((c) => c.service === service && filter(c));
    const dynamo = by("DynamoDB");
    const rcu = dynamo.reduce((s, c) => s + c.rcu, 0);
    const tableWcu = dynamo.reduce((s, c) => s + c.wcu, 0);
    const gsiWcu = dynamo.reduce((s, c) => s + estimateIndexWrites(c), 0);
    const estimatedDynamo = dynamo.filter((c) => c.estimated).length;
    const sqsAll = by("SQS");
    const emptyReceives = sqsAll.filter((c) => c.operation === "ReceiveMessage" && c.received === 0).length;
    const sqsRequests = sqsAll.length - emptyReceives;
    const s3 = by("S3");
    const s3Writes = s3.filter((c) =>
      /^(PutObject|CreateMultipartUpload|UploadPart|CompleteMultipartUpload|CopyObject)$/.test(c.operation),
    );
    const s3Reads = s3.length - s3Writes.length;
    const s3Bytes = s3Writes.reduce((s, c) => s + c.bytes, 0);
    const events = by("EventBridge").reduce((s, c) => s + c.entries, 0);
    const perFunction = new Map<string, { count: number; gbSeconds: number; ms: number }>();
    for (const l of lambdas) {
      const entry = perFunction.get(l.functionId) ?? { count: 0, gbSeconds: 0, ms: 0 };
      entry.count++;
      entry.ms += l.ms;
      entry.gbSeconds += (Math.ceil(l.ms) / 1000) * (l.memoryMb / 1024);
      perFunction.set(l.functionId, entry);
    }
    const invocations = lambdas.length;
    const gbSeconds = [...perFunction.values()].reduce((s, f) => s + f.gbSeconds, 0);
    const apiRequests = lambdas.filter(
      (l) => apiFunctions.has(l.functionId) && !/Authorizer/i.test(l.functionId),
    ).length;
    const logGb =
      (logs.bytes - logs.metricBytes + invocations * LAMBDA_PLATFORM_LOG_BYTES_PER_INVOCATION) / 1024 ** 3;
    const metricGb = logs.metricBytes / 1024 ** 3;
    const metricsCost = perJob(metricGb) * 1_000_000 * PRICES.cloudWatchLogs.perGbIngested;

    if (args.flags.has("explain")) explainDynamoWrites(dynamo, jobs);

    const M = 1_000_000;
    const tableCost = dynamoCost(perJob(rcu), perJob(tableWcu + gsiWcu), infra);
    const breakdown: Record<string, number> = {
      api_gateway: perJob(apiRequests) * PRICES.apiGateway.httpApiPerMillionRequests,
      lambda_requests: perJob(invocations) * PRICES.lambda.perMillionRequests,
      lambda_compute: perJob(gbSeconds) * M * PRICES.lambda.perGbSecondArm,
      sqs: perJob(sqsRequests) * PRICES.sqs.perMillionRequests,
      dynamodb_reads: tableCost.reads,
      dynamodb_writes: tableCost.writes,
      eventbridge: perJob(events) * PRICES.eventBridge.perMillionEvents,
      cloudwatch_logs: perJob(logGb) * M * PRICES.cloudWatchLogs.perGbIngested,
      cloudwatch_metrics_emf: metricsCost,
    };
    const cost = Object.values(breakdown).reduce((s, v) => s + v, 0);
    // The same units under the other billing mode, for comparison.
    const otherBilling = infra.tableBilling === "provisioned" ? "on-demand" : "provisioned";
    const other = dynamoCost(perJob(rcu), perJob(tableWcu + gsiWcu), {
      ...infra,
      tableBilling: otherBilling,
    });
    const dynamoHere = tableCost.reads + tableCost.writes;
    const costOtherBilling = cost - dynamoHere + other.reads + other.writes;
    const storage: Record<string, number> = {
      s3_output_writes: perJob(s3Writes.length) * 1000 * PRICES.s3.perThousandWrites,
      s3_other_requests: perJob(s3Reads) * 1000 * PRICES.s3.perThousandReads,
      s3_output_bytes_one_month: (perJob(s3Bytes) * M * PRICES.s3.perGbMonth) / 1024 ** 3,
    };
    const storageCost = Object.values(storage).reduce((s, v) => s + v, 0);

    const round = (n: number, digits = 3) => Math.round(n * 10 ** digits) / 10 ** digits;
    const perJobFigures: Record<string, number> = {
      api_requests: round(perJob(apiRequests)),
      lambda_invocations: round(perJob(invocations)),
      lambda_gb_seconds: round(perJob(gbSeconds), 5),
      sqs_requests: round(perJob(sqsRequests)),
      dynamodb_requests: round(perJob(dynamo.length)),
      dynamodb_read_units: round(perJob(rcu)),
      dynamodb_write_units_table: round(perJob(tableWcu)),
      dynamodb_write_units_indexes_estimated: round(perJob(gsiWcu)),
      eventbridge_events: round(perJob(events)),
      s3_requests: round(perJob(s3.length)),
      s3_output_bytes: round(perJob(s3Bytes), 0),
      log_bytes: round(perJob(logs.bytes + invocations * LAMBDA_PLATFORM_LOG_BYTES_PER_INVOCATION), 0),
      metric_log_bytes: round(perJob(logs.metricBytes), 0),
      metric_documents: round(perJob(logs.metricDocuments), 2),
    };
    for (const [id, f] of perFunction) perJobFigures[`lambda_ms_${id}`] = round(f.ms / f.count, 1);

    const notes = [
      `durations measured in one Node.js process on this machine (all functions share one thread); billed as arm64 at each function's configured memory`,
      `DynamoDB: ${dynamo.length - estimatedDynamo} of ${dynamo.length} calls reported consumed capacity (dynalite); ${estimatedDynamo} estimated from item sizes; index writes estimated (dynalite does not bill GSIs)`,
      `SQS: ${emptyReceives} empty long polls in ${windowSeconds.toFixed(1)} s left out of the per-job figure (idle polling: a fixed cost of the event source mappings, not of jobs)`,
      `API Gateway: requests to the HTTP API's routes (${[...apiFunctions].join(", ")}); ${
        stack.topology.functionUrls.length > 0
          ? `function URLs (${stack.topology.functionUrls.map((u) => u.functionId).join(", ")}) cost only their invocations`
          : "no function URLs"
      }`,
      `logs: application logs at the template's level plus ${LAMBDA_PLATFORM_LOG_BYTES_PER_INVOCATION} B of START/END/REPORT per invocation; cloudwatch_metrics_emf: the business metrics' EMF lines (log bytes at the logs' price; each distinct metric and dimensions is also billed $${PRICES.cloudWatchMetrics.perMetricMonth} a month, whatever the volume)`,
      withFloor
        ? `floor: ${script.length} AWS calls that named one job, replayed per job + one receive/delete per message + provider submit, output download and client webhook POST`
        : "floor: left out (it posts to the provider directly at the pool's concurrency, which a limit or delay would refuse or slow)",
      "wait: submit (POST) to the job's terminal updated_at; utilisation: the simulator's slot-holding generations, clipped to first submit..last terminal, over limit × that time",
    ];
    const report: Report = {
      jobs,
      concurrency,
      jobs_per_second: round(jobsPerSecond, 1),
      submit_to_succeeded_ms: { p50: round(percentile(e2e, 0.5), 1), p99: round(percentile(e2e, 0.99), 1) },
      callback_to_notified_ms: {
        p50: round(percentile(notify, 0.5), 1),
        p99: round(percentile(notify, 0.99), 1),
      },
      floor: withFloor
        ? {
            jobs_per_second: round(floorPerSecond, 1),
            per_job_ms: {
              p50: round(percentile(floorSorted, 0.5), 1),
              p99: round(percentile(floorSorted, 0.99), 1),
            },
          }
        : null,
      ratio: withFloor
        ? {
            throughput: round(floorPerSecond / jobsPerSecond, 2),
            latency_p50: round(percentile(e2e, 0.5) / percentile(floorSorted, 0.5), 2),
          }
        : null,
      provider: {
        ...provider,
        utilisation: provider.utilisation === null ? null : round(provider.utilisation, 3),
        busy_slot_seconds: round(provider.busy_slot_seconds, 1),
        makespan_seconds: round(provider.makespan_seconds, 1),
      },
      tenants: tenantReports,
      unconstrained_cost_per_million_usd: unconstrained === null ? null : round(unconstrained, 2),
      cost_ratio_vs_unconstrained: unconstrained === null ? null : round(cost / unconstrained, 2),
      per_job: perJobFigures,
      cost_per_million_usd: round(cost * 1, 2),
      cost_breakdown_per_million_usd: Object.fromEntries(
        Object.entries(breakdown).map(([k, v]) => [k, round(v, 3)]),
      ),
      storage_cost_per_million_usd: round(storageCost, 2),
      storage_breakdown_per_million_usd: Object.fromEntries(
        Object.entries(storage).map(([k, v]) => [k, round(v, 3)]),
      ),
      idle: { empty_receives_per_second: round(emptyReceives / windowSeconds, 1) },
      target_usd_per_million: TARGET_USD_PER_MILLION,
      table_billing: infra.tableBilling,
      cost_per_million_usd_other_table_billing: round(costOtherBilling),
      context,
      target_met: cost <= TARGET_USD_PER_MILLION,
      metrics_budget_usd_per_million: round(cost * METRICS_BUDGET_SHARE, 3),
      metrics_within_budget: metricsCost <= cost * METRICS_BUDGET_SHARE,
      prices_as_of: PRICES.asOf,
      notes,
    };

    say("");
    say(
      table([
        ["", "jobs/s", "p50", "p99"],
        [
          "pipeline submit→succeeded",
          rate(jobsPerSecond),
          ms(report.submit_to_succeeded_ms.p50),
          ms(report.submit_to_succeeded_ms.p99),
        ],
        [
          "pipeline callback→notified",
          "",
          ms(report.callback_to_notified_ms.p50),
          ms(report.callback_to_notified_ms.p99),
        ],
        ...(report.floor
          ? [
              [
                "floor (same calls, direct)",
                rate(floorPerSecond),
                ms(report.floor.per_job_ms.p50),
                ms(report.floor.per_job_ms.p99),
              ],
            ]
          : []),
      ]),
    );
    if (report.ratio) {
      say(
        `ratio pipeline/floor: throughput ${ratio(report.ratio.throughput)}, p50 ${ratio(report.ratio.latency_p50)}`,
      );
    }
    say("");
    say("wait per tenant (submit→terminal):");
    say(
      table([
        ["", "jobs", "p50", "p99", "max"],
        ...report.tenants.map((t) => [
          `  ${t.tenant} (${t.role})`,
          String(t.jobs),
          ms(t.wait_ms.p50),
          ms(t.wait_ms.p99),
          ms(t.wait_ms.max),
        ]),
      ]),
    );
    const p = report.provider;
    say(
      `provider: ${p.limit === null ? "unconstrained" : `limit ${p.limit}`}, ${p.delay_ms} ms per image; ` +
        `utilisation ${p.utilisation === null ? "n/a" : `${(p.utilisation * 100).toFixed(1)} %`} ` +
        `(busy ${p.busy_slot_seconds} slot-s over ${p.makespan_seconds} s); max in flight ${p.max_in_flight}, ` +
        `max requested ${p.max_requested_in_flight}, 429s ${p.rejected_429}${p.violation ? "  VIOLATION: the account limit was passed" : ""}`,
    );
    say("");
    say("per job:");
    say(table(Object.entries(perJobFigures).map(([k, v]) => [`  ${k}`, String(v)])));
    say("");
    say(
      `orchestration plane: $${report.cost_per_million_usd} per million jobs (target ≤ $${TARGET_USD_PER_MILLION}: ${report.target_met ? "MET" : "NOT MET"})`,
    );
    say(table(Object.entries(report.cost_breakdown_per_million_usd).map(([k, v]) => [`  ${k}`, `$${v}`])));
    say(
      report.cost_ratio_vs_unconstrained === null
        ? constrained
          ? "  cost per job over an unconstrained run: pass --compare-unconstrained (or run without --provider-limit)"
          : "  (unconstrained provider)"
        : `  cost per job over the same run unconstrained ($${report.unconstrained_cost_per_million_usd} per million): ${ratio(report.cost_ratio_vs_unconstrained)}`,
    );
    say(
      `  the same with tableBilling=${otherBilling}: $${report.cost_per_million_usd_other_table_billing} per million jobs (DynamoDB $${round(other.reads + other.writes)} instead of $${round(dynamoHere)}; provisioned: at the ${infra.tableTargetUtilization} % autoscaling target, idle capacity billed apart)`,
    );
    if (Object.keys(context).length > 0) {
      say(
        `  context: ${Object.entries(context)
          .map(([k, v]) => `${k}=${v}`)
          .join(" ")}`,
      );
    }
    say(`storage of the images (apart): $${report.storage_cost_per_million_usd} per million jobs`);
    say(table(Object.entries(report.storage_breakdown_per_million_usd).map(([k, v]) => [`  ${k}`, `$${v}`])));
    say(`prices: ${PRICES.asOf} (bench/prices.ts); provider and GPU costs not included`);
    for (const note of notes) say(`note: ${note}`);
    say(
      `business metrics: $${round(metricsCost, 3)} per million jobs (${perJobFigures.metric_log_bytes} B, ${perJobFigures.metric_documents} EMF lines per job, ${round((100 * metricsCost) / cost, 1)} % of the plane; budget ≤ ${100 * METRICS_BUDGET_SHARE} % = $${report.metrics_budget_usd_per_million}: ${report.metrics_within_budget ? "MET" : "NOT MET"})`,
    );
    if (receiverHits === 0) throw new Error("no notification reached the client");
    if (!report.metrics_within_budget) {
      throw new Error(
        `the business metrics cost $${round(metricsCost, 3)} per million jobs, over their budget of ${100 * METRICS_BUDGET_SHARE} % of the plane ($${report.metrics_budget_usd_per_million})`,
      );
    }
    if (args.flags.has("json")) say(JSON.stringify(report));
    return 0;
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await stack.stop();
  }
}

/**
 * `--compare-unconstrained`: the same jobs, tenants and delay without `--provider-limit`, in a child
 * process (a fresh stack and fresh function configuration); its cost per million jobs.
 */
async function unconstrainedCost(
  args: ReturnType<typeof parseArgs>,
  context: Record<string, string>,
): Promise<number> {
  const script = process.argv[1];
  if (!script) throw new Error("cannot find this script to run it again");
  const childArgs = [
    ...["jobs", "concurrency", "provider-delay-ms", "tenants"].flatMap((name) => [
      `--${name}`,
      String(args.integers[name]),
    ]),
    ...Object.entries(context).flatMap(([k, v]) => ["--context", `${k}=${v}`]),
    "--json",
  ];
  const child = spawn(process.execPath, [...process.execArgv, script, ...childArgs], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    // Only the last line matters (the JSON report); keep the tail bounded.
    out = (out + chunk).slice(-1_000_000);
  });
  const code = await new Promise<number | null>((done) => child.on("close", done));
  if (code !== 0) throw new Error(`the unconstrained run exited with ${code}`);
  const last = out.trim().split("\n").at(-1) ?? "";
  const parsed = JSON.parse(last) as { cost_per_million_usd?: unknown };
  if (typeof parsed.cost_per_million_usd !== "number")
    throw new Error("the unconstrained run reported no cost");
  return parsed.cost_per_million_usd;
}

async function floorReceive(
  client: { send(command: unknown): Promise<unknown> },
  call: AwsCall,
  queueUrl: string,
): Promise<void> {
  const { ReceiveMessageCommand, DeleteMessageBatchCommand } = await import("@aws-sdk/client-sqs");
  void call;
  const got = (await client
    .send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: 0 }))
    .catch(() => ({}))) as { Messages?: { ReceiptHandle?: string }[] };
  const message = got.Messages?.[0];
  if (message?.ReceiptHandle) {
    await client
      .send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: [{ Id: "0", ReceiptHandle: message.ReceiptHandle }],
        }),
      )
      .catch(() => undefined);
  }
}

/** A deep copy with every string's `from` replaced by `to` (Dates, bytes and numbers kept as they are). */
function renamed(value: unknown, from: string, to: string): unknown {
  if (typeof value === "string") return value.replaceAll(from, to);
  if (Array.isArray(value)) return value.map((v) => renamed(v, from, to));
  if (value instanceof Date || value instanceof Uint8Array || value === null) return value;
  if (value instanceof Set) return new Set([...value].map((v) => renamed(v, from, to)));
  if (typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k.replaceAll(from, to), renamed(v, from, to)]),
    );
  }
  return value;
}

main().then(
  (code) => finish(code),
  (error: unknown) => {
    console.error("bench failed:", error);
    finish(1);
  },
);

function finish(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2_000).unref();
}

/** `--explain`: DynamoDB write units per job, by call shape (operation + the attributes it writes). */
function explainDynamoWrites(dynamo: AwsCall[], jobs: number): void {
  const shapes = new Map<string, { calls: number; table: number; index: number }>();
  for (const call of dynamo) {
    if (call.wcu === 0 && estimateIndexWrites(call) === 0) continue;
    const shape = `${call.operation} ${writeShape(call.input)}`;
    const entry = shapes.get(shape) ?? { calls: 0, table: 0, index: 0 };
    entry.calls++;
    entry.table += call.wcu;
    entry.index += estimateIndexWrites(call);
    shapes.set(shape, entry);
  }
  process.stderr.write("DynamoDB writes per job by shape (calls, table WCU, index WCU est.):\n");
  const rows = [...shapes].sort((a, b) => b[1].table + b[1].index - (a[1].table + a[1].index));
  for (const [shape, e] of rows) {
    const f = (n: number) => (n / jobs).toFixed(2).padStart(6);
    process.stderr.write(`  ${f(e.calls)} ${f(e.table)} ${f(e.index)}  ${shape.slice(0, 200)}\n`);
  }
}

function writeShape(input: unknown): string {
  const text = (part: Record<string, unknown>): string => {
    const names = (part.ExpressionAttributeNames as Record<string, string> | undefined) ?? {};
    const expr = String(part.UpdateExpression ?? "").replace(/#\w+/g, (t) => names[t] ?? t);
    const key = part.Key as Record<string, unknown> | undefined;
    const item = part.Item as Record<string, unknown> | undefined;
    const sk = String(key?.sk ?? item?.sk ?? "").replace(/[0-9A-Z]{20,}/g, "…");
    return `[${sk}] ${expr || Object.keys(item ?? {}).join(",")}`;
  };
  const record = (input ?? {}) as Record<string, unknown>;
  if (Array.isArray(record.TransactItems)) {
    return (record.TransactItems as Record<string, Record<string, unknown>>[])
      .map((t) =>
        Object.entries(t)
          .map(([k, v]) => `${k}${text(v)}`)
          .join(""),
      )
      .join(" + ");
  }
  return text(record);
}

/**
 * DynamoDB per million jobs for the read and write units one job consumed (strongly consistent reads:
 * one unit each). On demand: per unit. Provisioned: a WCU (RCU) carries 3,600 write (read) units an
 * hour at 100 %; autoscaling keeps it at the target utilization, so each unit costs 1/target more.
 */
function dynamoCost(
  readUnitsPerJob: number,
  writeUnitsPerJob: number,
  infra: Pick<InfraConfig, "tableBilling" | "tableTargetUtilization">,
): { reads: number; writes: number } {
  const M = 1_000_000;
  if (infra.tableBilling === "on-demand") {
    return {
      reads: readUnitsPerJob * PRICES.dynamodb.perMillionReadUnits,
      writes: writeUnitsPerJob * PRICES.dynamodb.perMillionWriteUnits,
    };
  }
  const unitHours = M / (3600 * (infra.tableTargetUtilization / 100));
  return {
    reads: readUnitsPerJob * unitHours * PRICES.dynamodb.perRcuHour,
    writes: writeUnitsPerJob * unitHours * PRICES.dynamodb.perWcuHour,
  };
}
