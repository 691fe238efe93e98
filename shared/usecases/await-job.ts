import { isTerminal, type Job } from "../domain/job.ts";
import type { Clock, JobStore } from "../ports/index.ts";

export interface AwaitJobDeps {
  jobs: JobStore;
  clock: Clock;
  /** Waits `ms` milliseconds (injectable, so tests advance a fake clock instead of sleeping). */
  sleep: (ms: number) => Promise<void>;
}

/** The first pause between reads of the job, doubled after each read up to the cap. */
export const AWAIT_FIRST_PAUSE_MS = 250;
export const AWAIT_MAX_PAUSE_MS = 2_000;

/**
 * The job once it is terminal, or as last read when `until` comes first: reads of the job (consistent
 * GetItems) with a backoff, so a wait of 20 s costs about a dozen reads; never a pause past `until`.
 */
export async function awaitTerminalJob(deps: AwaitJobDeps, job: Job, until: Date): Promise<Job> {
  let current = job;
  let pause = AWAIT_FIRST_PAUSE_MS;
  while (!isTerminal(current.status)) {
    const left = until.getTime() - deps.clock.now().getTime();
    if (left <= 0) break;
    await deps.sleep(Math.min(pause, left));
    pause = Math.min(pause * 2, AWAIT_MAX_PAUSE_MS);
    current = (await deps.jobs.get(current.id)) ?? current;
  }
  return current;
}
