/** Port of diffusers' DDPMScheduler (scheduling_ddpm.py). */
import {
  addNoiseVP,
  assertSameLength,
  batchOf,
  checkInferenceSteps,
  clamp,
  f32,
  makeAlphaSchedule,
  mergeConfig,
  oneOf,
  PREDICTION_TYPES,
  type PredictionType,
  predictX0VP,
  type RawConfig,
  randn,
  SchedulerBase,
  type Shape4,
  type StepOptions,
  type StepResult,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  thresholdSample,
} from "./common.ts";

const VARIANCE_TYPES = [
  "fixed_small",
  "fixed_small_log",
  "fixed_large",
  "fixed_large_log",
  "learned",
  "learned_range",
] as const;
type VarianceType = (typeof VARIANCE_TYPES)[number];

export const DDPM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  variance_type: "fixed_small",
  clip_sample: true,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: "leading",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

export class DDPMScheduler extends SchedulerBase {
  readonly name = "DDPMScheduler";
  readonly config: typeof DDPM_DEFAULTS;
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  readonly alphasCumprod: Float64Array;
  private readonly predictionType: PredictionType;
  private readonly varianceType: VarianceType;
  private readonly spacing: TimestepSpacing;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, DDPM_DEFAULTS, raw);
    const s = makeAlphaSchedule(this.name, this.config);
    this.betas = s.betas;
    this.alphas = s.alphas;
    this.alphasCumprod = s.alphasCumprod;
    this.predictionType = oneOf(this.name, "prediction_type", this.config.prediction_type, PREDICTION_TYPES);
    this.varianceType = oneOf(this.name, "variance_type", this.config.variance_type, VARIANCE_TYPES);
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
    this.stepIndex = null;
  }

  /** diffusers' previous_timestep. */
  previousTimestep(t: number): number {
    if (this.numInferenceSteps !== null) {
      const idx = this.timesteps.indexOf(t);
      if (idx < 0) throw new RangeError(`${this.name}: timestep ${t} is not in the scheduler's timesteps`);
      return idx === this.timesteps.length - 1 ? -1 : (this.timesteps[idx + 1] as number);
    }
    return t - Math.floor(this.config.num_train_timesteps / this.config.num_train_timesteps);
  }

  /** diffusers' _get_variance(t) for the non-learned variance types. */
  getVariance(t: number, varianceType: VarianceType = this.varianceType, predictedVariance?: number): number {
    const prevT = this.previousTimestep(t);
    const alphaProdT = this.alphasCumprod[t] as number;
    const alphaProdTPrev = prevT >= 0 ? (this.alphasCumprod[prevT] as number) : 1;
    const currentBetaT = f32(1 - f32(alphaProdT / alphaProdTPrev));
    let variance = f32(f32(f32(1 - alphaProdTPrev) / f32(1 - alphaProdT)) * currentBetaT);
    variance = Math.max(variance, 1e-20);
    switch (varianceType) {
      case "fixed_small":
        return variance;
      case "fixed_small_log":
        return f32(Math.exp(0.5 * Math.log(variance)));
      case "fixed_large":
        return currentBetaT;
      case "fixed_large_log":
        return f32(Math.log(currentBetaT));
      case "learned":
        return predictedVariance ?? 0;
      case "learned_range": {
        const frac = ((predictedVariance ?? 0) + 1) / 2;
        return f32(frac * Math.log(currentBetaT) + (1 - frac) * Math.log(variance));
      }
    }
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    const shape: Shape4 | undefined = opts.shape;
    let predictedVariance: Float32Array | undefined;
    let eps = modelOutput;
    const learned = this.varianceType === "learned" || this.varianceType === "learned_range";
    if (learned && modelOutput.length === sample.length * 2) {
      if (!shape) throw new RangeError(`${this.name}: learned variance needs opts.shape to split the output`);
      const [nb] = shape;
      const per = sample.length / nb;
      eps = new Float32Array(sample.length);
      predictedVariance = new Float32Array(sample.length);
      for (let b = 0; b < nb; b++) {
        eps.set(modelOutput.subarray(2 * b * per, 2 * b * per + per), b * per);
        predictedVariance.set(modelOutput.subarray(2 * b * per + per, 2 * (b + 1) * per), b * per);
      }
    }
    assertSameLength(this.name, eps, sample);
    const prevT = this.previousTimestep(t);
    const alphaProdT = this.alphasCumprod[t] as number;
    const alphaProdTPrev = prevT >= 0 ? (this.alphasCumprod[prevT] as number) : 1;
    const betaProdT = f32(1 - alphaProdT);
    const betaProdTPrev = f32(1 - alphaProdTPrev);
    const currentAlphaT = f32(alphaProdT / alphaProdTPrev);
    const currentBetaT = f32(1 - currentAlphaT);

    let { x0 } = predictX0VP(this.predictionType, eps, sample, alphaProdT);
    if (this.config.thresholding) {
      x0 = thresholdSample(
        x0,
        this.config.dynamic_thresholding_ratio,
        this.config.sample_max_value,
        batchOf(x0.length, shape, this.name),
      );
    } else if (this.config.clip_sample) {
      x0 = clamp(x0, -this.config.clip_sample_range, this.config.clip_sample_range);
    }
    const c0 = f32(f32(f32(Math.sqrt(alphaProdTPrev)) * currentBetaT) / betaProdT);
    const ct = f32(f32(f32(Math.sqrt(currentAlphaT)) * betaProdTPrev) / betaProdT);
    const prev = new Float32Array(sample.length);
    for (let i = 0; i < prev.length; i++) {
      prev[i] = f32(f32(c0 * (x0[i] as number)) + f32(ct * (sample[i] as number)));
    }
    if (t > 0) {
      const noise = opts.varianceNoise ?? randn(prev.length, opts.generator, this.name);
      assertSameLength(this.name, noise, prev);
      const vt = this.varianceType;
      const fixedStd =
        vt === "fixed_small_log"
          ? this.getVariance(t, "fixed_small_log")
          : vt === "fixed_large_log"
            ? Math.sqrt(Math.exp(this.getVariance(t, "fixed_large_log")))
            : Math.sqrt(this.getVariance(t, vt === "learned" || vt === "learned_range" ? "fixed_small" : vt));
      for (let i = 0; i < prev.length; i++) {
        let std = fixedStd;
        if (vt === "learned_range" && predictedVariance) {
          std = Math.exp(0.5 * this.getVariance(t, "learned_range", predictedVariance[i] as number));
        } else if (vt === "learned" && predictedVariance) {
          std = Math.sqrt(predictedVariance[i] as number);
        }
        prev[i] = f32((prev[i] as number) + f32(f32(std) * (noise[i] as number)));
      }
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
