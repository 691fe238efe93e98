/**
 * The scheduler contract the pipeline codes against (implemented in worker/src/schedulers/).
 */
export interface StepResult {
  prevSample: Float32Array;
}

export interface Scheduler {
  setTimesteps(n: number): void;
  readonly timesteps: number[];
  readonly initNoiseSigma: number;
  scaleModelInput(sample: Float32Array, t: number): Float32Array;
  step(
    modelOutput: Float32Array,
    t: number,
    sample: Float32Array,
    opts?: { generator?: () => number; shape?: readonly [number, number, number, number] },
  ): StepResult;
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array;
}

export type SchedulerFactory = (name: string, config?: Record<string, unknown>) => Scheduler;

/** Loads createScheduler from worker/src/schedulers/ (written separately). */
export async function loadSchedulerFactory(): Promise<SchedulerFactory> {
  // A computed specifier: the schedulers are written in parallel and may not exist yet at type-check time.
  const specifier = "../schedulers/index.ts";
  const mod = (await import(specifier)) as { createScheduler: SchedulerFactory };
  return mod.createScheduler;
}
