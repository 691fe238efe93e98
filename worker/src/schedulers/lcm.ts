/** Port of diffusers' LCMScheduler (scheduling_lcm.py): latent consistency model multistep sampling. */
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
  SchedulerConfigError,
  type Shape4,
  type StepOptions,
  type StepResult,
  thresholdSample,
} from "./common.ts";

export const LCM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  trained_betas: null as unknown,
  original_inference_steps: 50,
  clip_sample: false,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  timestep_spacing: "leading",
  timestep_scaling: 10.0,
  rescale_betas_zero_snr: false,
};

/** LCM: every step but the last re-noises the consistency prediction, so multi-step runs need `{ generator }`. */
export class LCMScheduler extends SchedulerBase {
  readonly name = "LCMScheduler";
  readonly config: typeof LCM_DEFAULTS;
  readonly alphasCumprod: Float64Array;
  readonly finalAlphaCumprod: number;
  private readonly predictionType: PredictionType;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, LCM_DEFAULTS, raw);
    this.alphasCumprod = makeAlphaSchedule(this.name, this.config).alphasCumprod;
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : (this.alphasCumprod[0] as number);
    this.predictionType = oneOf(this.name, "prediction_type", this.config.prediction_type, PREDICTION_TYPES);
    oneOf(this.name, "timestep_spacing", this.config.timestep_spacing, ["linspace", "leading", "trailing"]);
    const n = this.config.num_train_timesteps;
    this.timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
  }

  setTimesteps(n: number, opts: { originalInferenceSteps?: number; strength?: number } = {}): void {
    const numTrain = this.config.num_train_timesteps;
    checkInferenceSteps(this.name, n, numTrain);
    const original = opts.originalInferenceSteps ?? this.config.original_inference_steps;
    const strength = opts.strength ?? 1;
    if (original > numTrain) {
      throw new SchedulerConfigError(
        `${this.name}: original_inference_steps (${original}) cannot be larger than num_train_timesteps (${numTrain})`,
      );
    }
    if (n > original) {
      throw new SchedulerConfigError(
        `${this.name}: num_inference_steps (${n}) cannot exceed original_inference_steps (${original})`,
      );
    }
    const k = Math.floor(numTrain / original);
    const origin: number[] = [];
    for (let i = 1; i <= Math.floor(original * strength); i++) origin.push(i * k - 1);
    if (Math.floor(origin.length / n) < 1) {
      throw new SchedulerConfigError(
        `${this.name}: num_inference_steps (${n}) is too large for original_inference_steps * strength (${origin.length})`,
      );
    }
    origin.reverse();
    this.timesteps = Array.from(
      { length: n },
      (_, i) => origin[Math.floor(i * (origin.length / n))] as number,
    );
    this.numInferenceSteps = n;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  /** diffusers' get_scalings_for_boundary_condition_discrete (sigma_data = 0.5). */
  boundaryScalings(t: number): { cSkip: number; cOut: number } {
    const st = f32(t * this.config.timestep_scaling);
    const st2 = f32(st * st);
    const cSkip = f32(0.25 / f32(st2 + 0.25));
    const cOut = f32(st / f32(Math.sqrt(f32(st2 + 0.25))));
    return { cSkip, cOut };
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.initStepIndex(t);
    const prevT = i + 1 < this.timesteps.length ? (this.timesteps[i + 1] as number) : t;
    const a = this.alphasCumprod[t] as number;
    const aPrev = prevT >= 0 ? (this.alphasCumprod[prevT] as number) : this.finalAlphaCumprod;
    const { cSkip, cOut } = this.boundaryScalings(t);
    let { x0 } = predictX0VP(this.predictionType, modelOutput, sample, a);
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
    const n = sample.length;
    const denoised = new Float32Array(n);
    for (let k = 0; k < n; k++)
      denoised[k] = f32(cOut * (x0[k] as number)) + f32(cSkip * (sample[k] as number));
    let prev = denoised;
    if (i !== (this.numInferenceSteps as number) - 1) {
      const noise = opts.varianceNoise ?? randn(sample.length, opts.generator, this.name);
      const sa = f32(Math.sqrt(aPrev));
      const sb = f32(Math.sqrt(f32(1 - aPrev)));
      prev = new Float32Array(n);
      for (let k = 0; k < n; k++)
        prev[k] = f32(sa * (denoised[k] as number)) + f32(sb * (noise[k] as number));
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: denoised };
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
