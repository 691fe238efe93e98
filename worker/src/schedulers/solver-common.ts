/** Schedule and bookkeeping shared by the exponential-integrator solvers (DPM-Solver(++), DEIS, UniPC). */
import {
  type AlphaSchedule,
  assertSameLength,
  batchOf,
  f32,
  indexForTimestep,
  karrasSigmas,
  npInterpIndex,
  npRound,
  type PredictionType,
  perBatch,
  SchedulerBase,
  type Shape4,
  sigmasFromAlphasCumprod,
  sigmaToT,
  solverTimesteps,
  type TimestepSpacing,
  thresholdSample,
} from "./common.ts";

export interface SolverScheduleInput {
  alphaSchedule: AlphaSchedule;
  spacing: TimestepSpacing;
  numTrain: number;
  n: number;
  stepsOffset: number;
  karras: boolean;
  finalSigma: "zero" | "sigma_min";
  lambdaMinClipped?: number;
}

/** Timesteps (int) and sigmas (float32, one more than timesteps) of diffusers' set_timesteps. */
export function solverSchedule(input: SolverScheduleInput): { timesteps: number[]; sigmas: number[] } {
  const ac = input.alphaSchedule.alphasCumprod;
  let last = input.numTrain;
  if (input.lambdaMinClipped !== undefined && input.lambdaMinClipped > Number.NEGATIVE_INFINITY) {
    // clipped_idx = searchsorted(flip(lambda_t), lambda_min_clipped)
    const lambdas = [...ac].map((a) =>
      f32(f32(Math.log(f32(Math.sqrt(a)))) - f32(Math.log(f32(Math.sqrt(f32(1 - a)))))),
    );
    const flipped = lambdas.reverse();
    let idx = 0;
    while (idx < flipped.length && (flipped[idx] as number) < input.lambdaMinClipped) idx++;
    last = input.numTrain - idx;
  }
  let timesteps = solverTimesteps(input.spacing, input.numTrain, input.n, input.stepsOffset, last);
  const trainSigmas = sigmasFromAlphasCumprod(ac);
  let sigmas: number[];
  if (input.karras) {
    const logSigmas = trainSigmas.map((s) => f32(Math.log(s)));
    sigmas = [...karrasSigmas([...trainSigmas].reverse(), input.n)];
    timesteps = sigmas.map((s) => npRound(sigmaToT(s, logSigmas)));
  } else {
    sigmas = timesteps.map((t) => npInterpIndex(t, trainSigmas));
  }
  const a0 = ac[0] as number;
  const sigmaLast = input.finalSigma === "sigma_min" ? f32(Math.sqrt(f32(f32(1 - a0) / a0))) : 0;
  return { timesteps, sigmas: [...sigmas, sigmaLast].map(f32) };
}

/** diffusers' _sigma_to_alpha_sigma_t: alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t (float32). */
export function alphaSigma(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  const s = f32(sigma * alpha);
  const lambda = f32(f32(Math.log(alpha)) - f32(Math.log(s)));
  return { alpha, sigma: s, lambda };
}

/** x0 (data) prediction from the model output at noise level `sigma`. */
export function dataPrediction(
  prediction: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
  threshold: { enabled: boolean; ratio: number; maxValue: number; shape?: Shape4; name: string },
): Float32Array {
  const { alpha, sigma: s } = alphaSigma(sigma);
  const n = modelOutput.length;
  let x0: Float32Array;
  if (prediction === "sample") {
    x0 = modelOutput;
  } else if (prediction === "epsilon") {
    x0 = new Float32Array(n);
    for (let i = 0; i < n; i++)
      x0[i] = f32((sample[i] as number) - f32(s * (modelOutput[i] as number))) / alpha;
  } else {
    x0 = new Float32Array(n);
    for (let i = 0; i < n; i++)
      x0[i] = f32(alpha * (sample[i] as number)) - f32(s * (modelOutput[i] as number));
  }
  if (threshold.enabled) {
    x0 = thresholdSample(
      x0,
      threshold.ratio,
      threshold.maxValue,
      batchOf(x0.length, threshold.shape, threshold.name),
    );
  }
  return x0;
}

/** epsilon (noise) prediction from the model output at noise level `sigma`. */
export function noisePrediction(
  prediction: PredictionType,
  modelOutput: Float32Array,
  sample: Float32Array,
  sigma: number,
  threshold: { enabled: boolean; ratio: number; maxValue: number; shape?: Shape4; name: string },
): Float32Array {
  const { alpha, sigma: s } = alphaSigma(sigma);
  const n = modelOutput.length;
  let eps: Float32Array;
  if (prediction === "epsilon") eps = modelOutput;
  else if (prediction === "sample") {
    eps = new Float32Array(n);
    for (let i = 0; i < n; i++)
      eps[i] = f32((sample[i] as number) - f32(alpha * (modelOutput[i] as number))) / s;
  } else {
    eps = new Float32Array(n);
    for (let i = 0; i < n; i++)
      eps[i] = f32(alpha * (modelOutput[i] as number)) + f32(s * (sample[i] as number));
  }
  if (threshold.enabled) {
    let x0: Float32Array = new Float32Array(n);
    for (let i = 0; i < n; i++) x0[i] = f32((sample[i] as number) - f32(s * (eps[i] as number))) / alpha;
    x0 = thresholdSample(
      x0,
      threshold.ratio,
      threshold.maxValue,
      batchOf(x0.length, threshold.shape, threshold.name),
    );
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = f32((sample[i] as number) - f32(alpha * (x0[i] as number))) / s;
    eps = out;
  }
  return eps;
}

/** Base with sigmas, step-index handling and sigma-based add_noise (`alpha_t * x0 + sigma_t * noise`). */
export abstract class SolverBase extends SchedulerBase {
  sigmas: number[] = [];

  protected stepIndexFor(t: number): number {
    if (this.stepIndex === null) {
      this.stepIndex = this.beginIndex === null ? indexForTimestep(this.timesteps, t, true) : this.beginIndex;
    }
    return this.stepIndex;
  }

  addNoise(
    original: Float32Array,
    noise: Float32Array,
    t: number | readonly number[],
    shape?: Shape4,
  ): Float32Array {
    assertSameLength(this.name, original, noise);
    const { ts, per } = perBatch(original.length, t, shape, this.name);
    const idx = ts.map((ti) => {
      if (this.beginIndex === null) return indexForTimestep(this.timesteps, ti, true);
      return this.stepIndex ?? this.beginIndex;
    });
    const out = new Float32Array(original.length);
    idx.forEach((i, b) => {
      const { alpha, sigma } = alphaSigma(this.sigmas[i] as number);
      for (let k = b * per; k < (b + 1) * per; k++) {
        out[k] = f32(f32(alpha * (original[k] as number)) + f32(sigma * (noise[k] as number)));
      }
    });
    return out;
  }
}
