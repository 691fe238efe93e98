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
  /** Timestep entries per step (2 for Heun, KDPM2); 1 when absent. */
  readonly order?: number;
  /**
   * The model input for `sample` at `t`. With `out` (same length), the result is written there and `out`
   * returned, so a caller can keep one buffer across steps (the pipeline copies it there otherwise).
   */
  scaleModelInput(sample: Float32Array, t: number, out?: Float32Array): Float32Array;
  step(
    modelOutput: Float32Array,
    t: number,
    sample: Float32Array,
    opts?: {
      generator?: () => number;
      shape?: readonly [number, number, number, number];
      /** false: predOriginalSample is not needed (a scheduler may skip it). */
      predOriginalSample?: boolean;
    },
  ): StepResult;
  addNoise(original: Float32Array, noise: Float32Array, t: number): Float32Array;
  /**
   * The index of the first timestep the run starts at (img2img), where the scheduler keeps one: then
   * addNoise and the first step use it rather than looking the timestep up (diffusers' set_begin_index).
   */
  setBeginIndex?(index: number): void;
}

export type SchedulerFactory = (name: string, config?: Record<string, unknown>) => Scheduler;

/** createScheduler from worker/src/schedulers/ (the diffusers scheduler ports). */
export async function loadSchedulerFactory(): Promise<SchedulerFactory> {
  const { createScheduler } = await import("../schedulers/index.ts");
  return (name, config) => createScheduler(name, config);
}
