/** Sigma-schedule plumbing shared by the k-diffusion style ports (Euler, Euler a, Heun, LMS, KDPM2, KDPM2 a). */
import {
  type AlphaSchedule,
  addNoiseVE,
  f32,
  indexForTimestep,
  karrasSigmas,
  kTimesteps,
  npInterpIndex,
  type PredictionType,
  perBatch,
  SchedulerBase,
  type Shape4,
  sigmasFromAlphasCumprod,
  sigmaToT,
  type TimestepSpacing,
} from "./common.ts";

export interface KScheduleInput {
  alphasCumprod: Float64Array;
  spacing: TimestepSpacing;
  numTrain: number;
  n: number;
  stepsOffset: number;
  /** Euler/Heun/KDPM2 build linspace timesteps as float32; LMS keeps float64 until the end. */
  float32Timesteps: boolean;
  karras: boolean;
  sigmaMin?: number | null;
  sigmaMax?: number | null;
}

export interface KSchedule {
  /** Timesteps (float64, before diffusers' final cast to float32). */
  timesteps: number[];
  /** Sigmas for the timesteps (float64, before the float32 cast), without the final appended sigma. */
  sigmas: number[];
  /** log of the training sigmas (float32). */
  logSigmas: Float64Array;
  trainSigmas: Float64Array;
}

export function kSchedule(input: KScheduleInput): KSchedule {
  const trainSigmas = sigmasFromAlphasCumprod(input.alphasCumprod);
  const logSigmas = trainSigmas.map((s) => f32(Math.log(s)));
  let timesteps = kTimesteps(
    input.spacing,
    input.numTrain,
    input.n,
    input.stepsOffset,
    input.float32Timesteps,
  );
  let sigmas = timesteps.map((t) => npInterpIndex(t, trainSigmas));
  if (input.karras) {
    sigmas = [...karrasSigmas(sigmas, input.n, input.sigmaMin, input.sigmaMax)];
    timesteps = sigmas.map((s) => sigmaToT(s, logSigmas));
  }
  return { timesteps, sigmas, logSigmas, trainSigmas };
}

/** `max(sigmas)` (linspace/trailing) or `sqrt(max^2 + 1)` (leading), as diffusers' init_noise_sigma. */
export function kInitNoiseSigma(sigmas: ArrayLike<number>, spacing: TimestepSpacing): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < sigmas.length; i++) max = Math.max(max, sigmas[i] as number);
  if (spacing === "linspace" || spacing === "trailing") return max;
  return f32(Math.sqrt(f32(f32(max * max) + 1)));
}

/** `sample / sqrt(sigma^2 + 1)` in float32. */
export function kScale(sample: Float32Array, sigma: number): Float32Array {
  const d = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
  return sample.map((v) => f32(v / d));
}

/** x0 from the model output at noise level `sigma` (epsilon / v_prediction / sample). */
export function kPredictX0(
  prediction: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
): Float32Array {
  if (prediction === "sample") return modelOutput;
  const out = new Float32Array(sample.length);
  if (prediction === "epsilon") {
    for (let i = 0; i < out.length; i++)
      out[i] = f32((sample[i] as number) - f32(sigma * (modelOutput[i] as number)));
    return out;
  }
  const s2p1 = f32(f32(sigma * sigma) + 1);
  const c = f32(-sigma / f32(Math.sqrt(s2p1)));
  for (let i = 0; i < out.length; i++) {
    out[i] = f32(f32((modelOutput[i] as number) * c) + f32((sample[i] as number) / s2p1));
  }
  return out;
}

/** Base for schedulers that hold `sigmas` aligned with `timesteps` (plus one trailing sigma). */
export abstract class KSchedulerBase extends SchedulerBase {
  sigmas: number[] = [];
  protected abstract readonly alphaSchedule: AlphaSchedule;

  /** Index of `sigmas` that add_noise uses for timestep `t` (diffusers' add_noise step_indices). */
  protected noiseIndex(t: number): number {
    if (this.beginIndex === null) return indexForTimestep(this.timesteps, t);
    if (this.stepIndex !== null) return this.stepIndex;
    return this.beginIndex;
  }

  addNoise(
    original: Float32Array,
    noise: Float32Array,
    t: number | readonly number[],
    shape?: Shape4,
  ): Float32Array {
    const { ts } = perBatch(original.length, t, shape, this.name);
    return addNoiseVE(
      this.sigmas,
      ts.map((ti) => this.noiseIndex(ti)),
      original,
      noise,
      this.name,
    );
  }
}
