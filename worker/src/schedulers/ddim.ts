/** Ports of diffusers' DDIMScheduler (scheduling_ddim.py) and DDIMInverseScheduler (scheduling_ddim_inverse.py). */
import {
  addNoiseVP,
  assertSameLength,
  batchOf,
  checkInferenceSteps,
  clamp,
  f32,
  makeAlphaSchedule,
  mergeConfig,
  npArange,
  npRound,
  oneOf,
  PREDICTION_TYPES,
  type PredictionType,
  predictX0VP,
  type RawConfig,
  randn,
  SchedulerBase,
  SchedulerConfigError,
  type Shape4,
  type StepOptions,
  type StepResult,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  thresholdSample,
} from "./common.ts";

export const DDIM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: "leading",
  rescale_betas_zero_snr: false,
};

export class DDIMScheduler extends SchedulerBase {
  readonly name = "DDIMScheduler";
  readonly config: typeof DDIM_DEFAULTS;
  readonly alphasCumprod: Float64Array;
  readonly finalAlphaCumprod: number;
  private readonly predictionType: PredictionType;
  private readonly spacing: TimestepSpacing;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, DDIM_DEFAULTS, raw);
    this.alphasCumprod = makeAlphaSchedule(this.name, this.config).alphasCumprod;
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : (this.alphasCumprod[0] as number);
    this.predictionType = oneOf(this.name, "prediction_type", this.config.prediction_type, PREDICTION_TYPES);
    this.spacing = oneOf(this.name, "timestep_spacing", this.config.timestep_spacing, TIMESTEP_SPACINGS);
    const n = this.config.num_train_timesteps;
    this.timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
  }

  setTimesteps(n: number): void {
    checkInferenceSteps(this.name, n, this.config.num_train_timesteps);
    this.numInferenceSteps = n;
    this.timesteps = spacedTimesteps(
      this.spacing,
      this.config.num_train_timesteps,
      n,
      this.config.steps_offset,
    );
  }

  /** diffusers' _get_variance(timestep, prev_timestep). */
  getVariance(t: number, prevT: number): number {
    const a = this.alphasCumprod[t] as number;
    const aPrev = prevT >= 0 ? (this.alphasCumprod[prevT] as number) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const bPrev = f32(1 - aPrev);
    return f32(f32(bPrev / b) * f32(1 - f32(a / aPrev)));
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const eta = opts.eta ?? 0;
    const prevT = t - Math.floor(this.config.num_train_timesteps / (this.numInferenceSteps as number));
    const a = this.alphasCumprod[t] as number;
    if (a === undefined) throw new RangeError(`${this.name}: timestep ${t} is outside the training schedule`);
    const aPrev = prevT >= 0 ? (this.alphasCumprod[prevT] as number) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    let { x0, eps } = predictX0VP(this.predictionType, modelOutput, sample, a);
    if (this.config.thresholding) {
      x0 = thresholdSample(
        x0,
        this.config.dynamic_thresholding_ratio,
        this.config.sample_max_value,
        batchOf(x0.length, opts.shape, this.name),
      );
    } else if (this.config.clip_sample) {
      x0 = clamp(x0, -this.config.clip_sample_range, this.config.clip_sample_range);
    }
    const variance = this.getVariance(t, prevT);
    const std = f32(eta * f32(Math.sqrt(variance)));
    const sa = f32(Math.sqrt(a));
    const sb = f32(Math.sqrt(b));
    if (opts.useClippedModelOutput) {
      const clipped = new Float32Array(eps.length);
      for (let i = 0; i < clipped.length; i++)
        clipped[i] = f32((sample[i] as number) - f32(sa * (x0[i] as number))) / sb;
      eps = clipped;
    }
    const dirCoeff = f32(Math.sqrt(f32(f32(1 - aPrev) - f32(std * std))));
    const x0Coeff = f32(Math.sqrt(aPrev));
    const prev = new Float32Array(sample.length);
    for (let i = 0; i < prev.length; i++) {
      prev[i] = f32(f32(x0Coeff * (x0[i] as number)) + f32(dirCoeff * (eps[i] as number)));
    }
    if (eta > 0) {
      const noise = opts.varianceNoise ?? randn(prev.length, opts.generator, this.name);
      assertSameLength(this.name, noise, prev);
      for (let i = 0; i < prev.length; i++)
        prev[i] = f32((prev[i] as number) + f32(std * (noise[i] as number)));
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }

  addNoise(
    original: Float32Array,
    noise: Float32Array,
    t: number | readonly number[],
    shape?: Shape4,
  ): Float32Array {
    return addNoiseVP(this.alphasCumprod, original, noise, t, shape, this.name);
  }
}

export const DDIM_INVERSE_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon",
  clip_sample_range: 1.0,
  timestep_spacing: "leading",
  rescale_betas_zero_snr: false,
};

/**
 * DDIM inversion: runs the DDIM ODE from the image towards noise. `timesteps` are ascending; `step` maps
 * the sample at the previous (lower) timestep to the one at `t`.
 */
export class DDIMInverseScheduler extends SchedulerBase {
  readonly name = "DDIMInverseScheduler";
  readonly config: typeof DDIM_INVERSE_DEFAULTS;
  readonly alphasCumprod: Float64Array;
  readonly initialAlphaCumprod: number;
  private readonly predictionType: PredictionType;
  private readonly spacing: TimestepSpacing;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, DDIM_INVERSE_DEFAULTS, raw);
    this.alphasCumprod = makeAlphaSchedule(this.name, this.config).alphasCumprod;
    this.initialAlphaCumprod = this.config.set_alpha_to_one ? 1 : (this.alphasCumprod[0] as number);
    this.predictionType = oneOf(this.name, "prediction_type", this.config.prediction_type, PREDICTION_TYPES);
    this.spacing = oneOf(this.name, "timestep_spacing", this.config.timestep_spacing, TIMESTEP_SPACINGS);
    if (this.spacing === "linspace") {
      throw new SchedulerConfigError(
        `${this.name}: timestep_spacing "linspace" is not supported; choose "leading" or "trailing"`,
      );
    }
    this.timesteps = Array.from({ length: this.config.num_train_timesteps }, (_, i) => i);
  }

  setTimesteps(n: number): void {
    const numTrain = this.config.num_train_timesteps;
    checkInferenceSteps(this.name, n, numTrain);
    this.numInferenceSteps = n;
    if (this.spacing === "leading") {
      const ratio = Math.floor(numTrain / n);
      this.timesteps = Array.from({ length: n }, (_, i) => i * ratio + this.config.steps_offset);
    } else {
      const ratio = numTrain / n;
      this.timesteps = [...npArange(numTrain, 0, -ratio)].reverse().map((v) => npRound(v) - 1);
    }
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, _opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const numTrain = this.config.num_train_timesteps;
    const prevT = t;
    const cur = Math.min(t - Math.floor(numTrain / (this.numInferenceSteps as number)), numTrain - 1);
    const a = cur >= 0 ? (this.alphasCumprod[cur] as number) : this.initialAlphaCumprod;
    const aPrev = this.alphasCumprod[prevT] as number;
    if (aPrev === undefined)
      throw new RangeError(`${this.name}: timestep ${t} is outside the training schedule`);
    const pred = predictX0VP(this.predictionType, modelOutput, sample, a);
    const eps = pred.eps;
    let x0 = pred.x0;
    if (this.config.clip_sample) {
      x0 = clamp(x0, -this.config.clip_sample_range, this.config.clip_sample_range);
    }
    const dirCoeff = f32(Math.sqrt(f32(1 - aPrev)));
    const x0Coeff = f32(Math.sqrt(aPrev));
    const prev = new Float32Array(sample.length);
    for (let i = 0; i < prev.length; i++) {
      prev[i] = f32(f32(x0Coeff * (x0[i] as number)) + f32(dirCoeff * (eps[i] as number)));
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }

  addNoise(
    original: Float32Array,
    noise: Float32Array,
    t: number | readonly number[],
    shape?: Shape4,
  ): Float32Array {
    return addNoiseVP(this.alphasCumprod, original, noise, t, shape, this.name);
  }
}
