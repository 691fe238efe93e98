/**
 * The queue consumers and the schedule of the local stack, in a process of their own: the SQS pollers
 * (Lambda's event source mappings) and the scheduled functions, invoking the same handler modules as
 * `startLocalStack` does in-process. The chaos run (`bench/chaos.ts`) starts the stack with
 * `queueConsumers: "none"`, then runs this file as a child process that it SIGKILLs and restarts at
 * random points, as Lambda's execution environments can vanish mid-invocation.
 *
 * Input: the environment the stack computed (inherited: AWS endpoints, the functions' variables) and
 * LOCAL_POLLERS_CONFIG, the path of a JSON file `{ topology, reconcileIntervalSeconds }` (the
 * parent's LocalTopology). On SIGTERM it stops cleanly; on SIGKILL whatever was in flight is simply
 * gone, and SQS redelivers it after the visibility timeout.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createSqsClient } from "../shared/adapters/sqs/queue.ts";
import { LocalFunction } from "./lambda-runtime.ts";
import { Scheduler } from "./scheduler.ts";
import { SqsPoller } from "./sqs-poller.ts";
import type { LocalTopology } from "./template.ts";

export interface PollersProcessConfig {
  topology: LocalTopology;
  reconcileIntervalSeconds: number;
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const configPath = process.env.LOCAL_POLLERS_CONFIG;
if (!configPath) throw new Error("LOCAL_POLLERS_CONFIG must name the JSON file with the topology");
const config = JSON.parse(readFileSync(configPath, "utf8")) as PollersProcessConfig;
const { topology } = config;
const verbose = Boolean(process.env.DEBUG_LOCAL_STACK);
const log = (line: string) => {
  if (verbose) console.error(`[pollers ${process.pid}] ${line}`);
};

const functions: Record<string, LocalFunction> = {};
const fn = (id: string): LocalFunction => {
  const spec = topology.functions[id];
  if (!spec) throw new Error(`The topology names no function ${id}`);
  functions[id] ??= new LocalFunction(spec, ROOT);
  return functions[id];
};

const sqs = createSqsClient();
const pollers = topology.eventSourceMappings.map((mapping) => {
  const queue = topology.queues[mapping.queueLogicalId];
  if (!queue) throw new Error(`The topology names no queue ${mapping.queueLogicalId}`);
  return new SqsPoller(
    sqs,
    {
      queueUrl: queue.url,
      queueArn: queue.arn,
      function: fn(mapping.functionId),
      batchSize: mapping.batchSize,
      maxBatchingWindowSeconds: mapping.maxBatchingWindowSeconds,
      reportBatchItemFailures: mapping.reportBatchItemFailures,
      maxConcurrency: mapping.maxConcurrency ?? 2,
    },
    (error) => log(`poller ${mapping.functionId}: ${String(error)}`),
  );
});
const scheduler = new Scheduler(
  topology.schedules.map((s) => fn(s.functionId)),
  config.reconcileIntervalSeconds,
  (error) => log(`schedule: ${String(error)}`),
);
// Load every handler before polling, as Lambda runs a function's init before its first event: a
// restart then costs one cold start per function up front, not in the middle of a batch.
const initStarted = Date.now();
await Promise.all(
  Object.values(functions).map((f) =>
    import(pathToFileURL(resolve(ROOT, f.spec.entry)).href).catch((error: unknown) =>
      log(`init of ${f.spec.logicalId} failed: ${String(error)}`),
    ),
  ),
);
for (const poller of pollers) poller.start();
scheduler.start();
process.send?.({ ready: true, pid: process.pid, initMs: Date.now() - initStarted });
log(`${pollers.length} pollers, ${topology.schedules.length} schedules; init ${Date.now() - initStarted} ms`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  void Promise.all([...pollers.map((p) => p.stop()), scheduler.stop()]).finally(() => {
    sqs.destroy();
    process.exit(0);
  });
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
// The parent went away (its IPC channel closed): do not outlive it.
process.on("disconnect", stop);
