import { performance } from "node:perf_hooks";

export interface TimedRun {
  /** Latency of each task in milliseconds, in task-index order. */
  latenciesMs: number[];
  /** First start to last finish. */
  wallMs: number;
}

/**
 * Runs `task(0) .. task(count - 1)` with at most `concurrency` in flight, timing each with
 * `performance.now()`. A task that throws stops new tasks from starting; the first error is rethrown
 * once the tasks already in flight have settled.
 */
export async function runPool(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<TimedRun> {
  if (!Number.isInteger(count) || count < 0)
    throw new RangeError(`count must be an integer >= 0, got ${count}`);
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be an integer >= 1, got ${concurrency}`);
  }
  const latenciesMs = new Array<number>(count).fill(0);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < count) {
      const index = next++;
      const started = performance.now();
      try {
        await task(index);
      } catch (error) {
        failure ??= { error };
        return;
      }
      latenciesMs[index] = performance.now() - started;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const wallMs = performance.now() - started;
  if (failure !== undefined) throw failure.error;
  return { latenciesMs, wallMs };
}
