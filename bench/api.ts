/**
 * `npm run bench:api [-- --jobs N --concurrency N --json]`
 *
 * 1. Starts the local stack (in memory, random port) and PAUSES every SQS poller, so nothing
 *    dispatches the jobs: only the API path (gateway -> authorizer (cached) -> API function ->
 *    DynamoDB PutItem -> SQS SendMessage -> 202) is measured.
 * 2. Submits N jobs with POST /v1/jobs over HTTP with the dev tenant's key, at the given concurrency,
 *    after an uncounted warm-up.
 * 3. The floor: the same number of bare DynamoDB PutItem (a copy of a real job row under a fresh id,
 *    same condition) + SQS SendMessage (the same message body, the same queue) pairs against the
 *    same emulators at the same concurrency, after its own warm-up.
 * 4. Prints both, and the overhead ratios (aim: <= 1.5). Exit 0 unless something errored (any
 *    non-202 answer is an error); with --json the last line is one JSON object with every figure.
 */
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { Pool } from "undici";
import { parseArgs, UsageError } from "./lib/args.ts";
import { runPool } from "./lib/pool.ts";
import { ms, rate, ratio, summaryTable } from "./lib/print.ts";
import { type LatencySummary, summarize } from "./lib/stats.ts";

// Before anything loads a handler module: Powertools reads its level when the logger is built.
process.env.POWERTOOLS_LOG_LEVEL = "SILENT";

const AIM = 1.5;
const WARMUP = 50;

interface Report {
  jobs: number;
  concurrency: number;
  warmup: number;
  pollersPaused: boolean;
  stack: LatencySummary;
  floor: LatencySummary;
  /** stack p50 / floor p50. */
  latencyRatio: number;
  /** floor throughput / stack throughput. */
  throughputRatio: number;
  aim: number;
  aimMet: boolean;
  jobRowBytes: number;
  messageBytes: number;
  queuedMessagesAfterApi: number | null;
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2), { integers: { jobs: 2000, concurrency: 32 }, flags: ["json"] });
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }
  const jobs = args.integers.jobs as number;
  const concurrency = args.integers.concurrency as number;
  const json = args.flags.has("json");
  const say = (line: string) => console.log(line);

  // Imported after the environment is set (the stack's modules build clients at import time).
  const { startLocalStack } = await import("../local/stack.ts");
  const { ensureTenant } = await import("../local/dev-tenant.ts");
  const { createDocumentClient } = await import("../shared/adapters/dynamo/client.ts");
  const { createSqsClient, SqsQueue } = await import("../shared/adapters/sqs/queue.ts");
  const { queues } = await import("../shared/schemas/messages.ts");
  const { jobKey } = await import("../shared/adapters/dynamo/table-design.ts");
  const { newJobId } = await import("../shared/domain/ids.ts");
  const { validJobRequest } = await import("../test/support/requests.ts");

  say(`bench:api: ${jobs} jobs at concurrency ${concurrency} (warm-up ${WARMUP}, not counted)`);
  const stack = await startLocalStack({ port: 0, dataDir: null, reconcileIntervalSeconds: 86_400 });
  const doc = createDocumentClient();
  const sqs = createSqsClient();
  const closers: Array<() => Promise<void>> = [];
  try {
    // Nothing may dispatch the jobs while the API is measured: pause every poller, then let any long
    // poll that was already in flight (WaitTimeSeconds 1) come back empty before the first request.
    for (const poller of stack.pollers) poller.pause(true);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    say(
      `stack up at ${stack.url}; ${stack.pollers.length} SQS pollers paused (the jobs are queued, never ` +
        "dispatched: this measures the API path alone); reconcile schedule off",
    );

    const tableName = required("TABLE_NAME");
    const queueUrl = required("JOBS_QUEUE_URL");
    const { apiKey } = await ensureTenant(tableName, "bench");

    // ---- the API, over HTTP, as a client would: undici, one keep-alive connection per worker ----
    // (undici's `request`, not `fetch`: the client shares this process's one thread with the stack,
    // and fetch's WHATWG streams cost about as much CPU per request as the gateway itself.)
    const body = JSON.stringify(validJobRequest());
    const headers = { authorization: `Bearer ${apiKey}`, "content-type": "application/json" };
    const http = new Pool(stack.url, { connections: concurrency, keepAliveTimeout: 60_000 });
    closers.push(() => http.close());
    let firstJobId: string | undefined;
    const submit = async (): Promise<void> => {
      const response = await http.request({ method: "POST", path: "/v1/jobs", headers, body });
      const text = await response.body.text();
      if (response.statusCode !== 202) {
        throw new Error(`POST /v1/jobs answered ${response.statusCode}: ${text.slice(0, 500)}`);
      }
      firstJobId ??= (JSON.parse(text) as { id?: string }).id;
    };
    await runPool(WARMUP, concurrency, submit);
    const api = await runPool(jobs, concurrency, submit);
    const stackSummary = summarize(api.latenciesMs, api.wallMs);

    const attributes = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["ApproximateNumberOfMessages"] }),
    );
    const queued = Number(attributes.Attributes?.ApproximateNumberOfMessages ?? Number.NaN);
    const queuedMessagesAfterApi = Number.isFinite(queued) ? queued : null;

    // ---- the floor: bare PutItem + SendMessage pairs, same emulators, same concurrency ----
    if (!firstJobId) throw new Error("the API's 202 answer carried no job id");
    const row = (await doc.send(new GetCommand({ TableName: tableName, Key: jobKey(firstJobId) }))).Item;
    if (!row) throw new Error(`job row ${firstJobId} not found`);
    const jobRowBytes = Buffer.byteLength(JSON.stringify(row));
    const messageBytes = Buffer.byteLength(JSON.stringify({ jobId: firstJobId }));
    // The API's own queue adapter (its schema check, one SendMessage, the same body) on a client of the same config.
    const queue = new SqsQueue(sqs, queueUrl, queues.jobs);
    const pair = async (): Promise<void> => {
      const id = newJobId();
      await doc.send(
        new PutCommand({
          TableName: tableName,
          Item: { ...row, ...jobKey(id), id },
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      );
      await queue.send({ jobId: id });
    };
    await runPool(WARMUP, concurrency, pair);
    const floorRun = await runPool(jobs, concurrency, pair);
    const floorSummary = summarize(floorRun.latenciesMs, floorRun.wallMs);

    const latencyRatio = stackSummary.p50Ms / floorSummary.p50Ms;
    const throughputRatio = floorSummary.perSecond / stackSummary.perSecond;
    const aimMet = latencyRatio <= AIM && throughputRatio <= AIM;

    say("");
    say(
      summaryTable([
        { label: "API (POST /v1/jobs)", summary: stackSummary },
        { label: "floor (PutItem+SendMessage)", summary: floorSummary },
      ]),
    );
    say("");
    say(`job row ${jobRowBytes} B (JSON), message ${messageBytes} B`);
    if (queuedMessagesAfterApi !== null) {
      say(
        `messages waiting in the jobs queue after the API run: ${queuedMessagesAfterApi} (none dispatched)`,
      );
    }
    say(
      `ratio: p50 ${ratio(latencyRatio)} (${ms(stackSummary.p50Ms)} / ${ms(floorSummary.p50Ms)}), ` +
        `throughput ${ratio(throughputRatio)} (${rate(floorSummary.perSecond)} / ${rate(stackSummary.perSecond)})`,
    );
    say(`aim <= ${AIM}x on both: ${aimMet ? "MET" : "NOT MET"}`);

    const report: Report = {
      jobs,
      concurrency,
      warmup: WARMUP,
      pollersPaused: true,
      stack: stackSummary,
      floor: floorSummary,
      latencyRatio,
      throughputRatio,
      aim: AIM,
      aimMet,
      jobRowBytes,
      messageBytes,
      queuedMessagesAfterApi,
    };
    if (json) say(JSON.stringify(report));
    return 0;
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    doc.destroy();
    sqs.destroy();
    await stack.stop();
  }
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: the local stack should have set it`);
  return value;
}

main().then(
  (code) => finish(code),
  (error: unknown) => {
    console.error("bench:api failed:", error);
    finish(1);
  },
);

/** Exits with `code` even if some handle (a keep-alive socket, a timer) outlives the stack. */
function finish(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2_000).unref();
}
