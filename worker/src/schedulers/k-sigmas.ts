/** Sigma-schedule plumbing shared by the k-diffusion style ports (Euler, Euler a, Heun, LMS, KDPM2, KDPM2 a). */
import {
  type AlphaSchedule,
  addNoiseVE,
  checkInferenceSteps,
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
import { simdDivide, simdEulerEpsilon } from "./simd.ts";

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

/** `sample / sqrt(sigma^2 + 1)` in float32, into `out` when given (it may be `sample` itself). */
export function kScale(sample: Float32Array, sigma: number, out?: Float32Array): Float32Array {
  const d = f32(Math.sqrt(f32(f32(sigma * sigma) + 1)));
  const n = sample.length;
  const res = out ?? new Float32Array(n);
  if (res.length !== n) throw new RangeError(`scaleModelInput: out has ${res.length} elements, not ${n}`);
  if (simdDivide(sample, d, res)) return res;
  // A Float32Array store rounds to float32, as f32() would.
  for (let i = 0; i < n; i++) res[i] = (sample[i] as number) / d;
  return res;
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

/**
 * The k-diffusion Euler update in one pass: `x0` from the model output at noise level `sigma` (as
 * kPredictX0), then `prev = base + ((sample - x0) / denom) * dt`, plus `noise * noiseScale` when `noise` is
 * given; every operation rounded to float32 as the separate tensor ops would be. Returns `prev` and `x0`
 * (`x0` is `modelOutput` itself for prediction_type "sample", as in kPredictX0; it may be left out when not
 * `keepX0`).
 */
export function kEulerUpdate(
  prediction: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
  denom: number,
  dt: number,
  base: Float32Array,
  noise: Float32Array | null = null,
  noiseScale = 0,
  keepX0 = true,
): { prev: Float32Array; x0: Float32Array | undefined } {
  if (prediction === "epsilon") {
    const fast = simdEulerEpsilon(modelOutput, sample, sigma, denom, dt, base, noise, noiseScale, keepX0);
    if (fast) return fast;
  }
  const n = sample.length;
  const prev = new Float32Array(n);
  if (prediction === "epsilon") {
    // The common case, fused: x0 and prev in the same pass.
    const x0 = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const s = sample[i] as number;
      const x = f32(s - f32(sigma * (modelOutput[i] as number)));
      x0[i] = x;
      const d = f32(f32(s - x) / denom);
      const v = f32((base[i] as number) + f32(d * dt));
      prev[i] = noise ? v + f32((noise[i] as number) * noiseScale) : v;
    }
    return { prev, x0 };
  }
  const x0 = kPredictX0(prediction, modelOutput, sample, sigma);
  for (let i = 0; i < n; i++) {
    const d = f32(f32((sample[i] as number) - (x0[i] as number)) / denom);
    const v = f32((base[i] as number) + f32(d * dt));
    prev[i] = noise ? v + f32((noise[i] as number) * noiseScale) : v;
  }
  return { prev, x0 };
}

/** Base for schedulers that hold `sigmas` aligned with `timesteps` (plus one trailing sigma). */
export abstract class KSchedulerBase extends SchedulerBase {
  sigmas: number[] = [];
  protected abstract readonly alphaSchedule: AlphaSchedule;

  /** Computes `timesteps`, `sigmas` and `initNoiseSigma` for `n` steps and resets the step state. */
  protected abstract setSchedule(n: number): void;

  setTimesteps(n: number): void {
    checkInferenceSteps(this.name, n);
    this.numInferenceSteps = n;
    this.setSchedule(n);
  }

  /** The model input at `t`: the sample over sqrt(sigma^2 + 1). KDPM2 overrides it (interpolated sigmas). */
  override scaleModelInput(sample: Float32Array, t: number, out?: Float32Array): Float32Array {
    const i = this.initStepIndex(t);
    return kScale(sample, this.sigmas[i] as number, out);
  }

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
