/** Port of diffusers' LMSDiscreteScheduler (scheduling_lms_discrete.py): linear multistep on sigmas. */
import {
  type AlphaSchedule,
  assertSameLength,
  f32,
  integrate,
  makeAlphaSchedule,
  mergeConfig,
  oneOf,
  PREDICTION_TYPES,
  type PredictionType,
  type RawConfig,
  type StepOptions,
  type StepResult,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  UNSUPPORTED_SIGMA_SCHEDULES,
} from "./common.ts";
import { KSchedulerBase, kInitNoiseSigma, kPredictX0, kSchedule } from "./k-sigmas.ts";

export const LMS_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  use_karras_sigmas: false,
  prediction_type: "epsilon",
  timestep_spacing: "linspace",
  steps_offset: 0,
};

export interface LmsStepOptions extends StepOptions {
  /** Multistep order (diffusers' `order` argument of step), default 4. */
  order?: number;
}

export class LMSDiscreteScheduler extends KSchedulerBase {
  readonly name = "LMSDiscreteScheduler";
  readonly config: typeof LMS_DEFAULTS;
  protected readonly alphaSchedule: AlphaSchedule;
  private readonly predictionType: PredictionType;
  private readonly spacing: TimestepSpacing;
  private derivatives: Float32Array[] = [];

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, LMS_DEFAULTS, raw, UNSUPPORTED_SIGMA_SCHEDULES);
    this.alphaSchedule = makeAlphaSchedule(this.name, this.config);
    this.predictionType = oneOf(this.name, "prediction_type", this.config.prediction_type, PREDICTION_TYPES);
    this.spacing = oneOf(this.name, "timestep_spacing", this.config.timestep_spacing, TIMESTEP_SPACINGS);
    this.setSchedule(this.config.num_train_timesteps);
    this.numInferenceSteps = null;
  }

  protected setSchedule(n: number): void {
    const ks = kSchedule({
      alphasCumprod: this.alphaSchedule.alphasCumprod,
      spacing: this.spacing,
      numTrain: this.config.num_train_timesteps,
      n,
      stepsOffset: this.config.steps_offset,
      float32Timesteps: false,
      karras: this.config.use_karras_sigmas,
    });
    this.sigmas = [...ks.sigmas.map(f32), 0];
    this.timesteps = ks.timesteps.map(f32);
    this.initNoiseSigma = kInitNoiseSigma(this.sigmas, this.spacing);
    this.derivatives = [];
    this.stepIndex = null;
    this.beginIndex = null;
  }

  /** diffusers' get_lms_coefficient: integral of the Lagrange basis polynomial over [sigma_t, sigma_t+1]. */
  lmsCoefficient(order: number, t: number, currentOrder: number): number {
    const s = this.sigmas;
    const basis = (tau: number) => {
      let prod = 1;
      for (let k = 0; k < order; k++) {
        if (currentOrder === k) continue;
        prod *= (tau - (s[t - k] as number)) / ((s[t - currentOrder] as number) - (s[t - k] as number));
      }
      return prod;
    };
    return integrate(basis, s[t] as number, s[t + 1] as number);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: LmsStepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.initStepIndex(t);
    const sigma = this.sigmas[i] as number;
    const x0 = kPredictX0(this.predictionType, modelOutput, sample, sigma);
    const derivative = new Float32Array(sample.length);
    for (let k = 0; k < derivative.length; k++) {
      derivative[k] = f32(f32((sample[k] as number) - (x0[k] as number)) / sigma);
    }
    const maxOrder = opts.order ?? 4;
    this.derivatives.push(derivative);
    if (this.derivatives.length > maxOrder) this.derivatives.shift();
    const order = Math.min(i + 1, maxOrder);
    const coeffs = Array.from({ length: order }, (_, c) => this.lmsCoefficient(order, i, c));
    const recent = [...this.derivatives].reverse();
    const prev = lmsCombine(sample, coeffs, recent);
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}

/**
 * `sample + sum_c coeffs[c] * recent[c]`, the sum accumulated from 0 in float32 as diffusers' Python `sum`
 * of tensors does; one pass, unrolled for the usual orders.
 */
function lmsCombine(
  sample: Float32Array,
  coeffs: readonly number[],
  recent: readonly Float32Array[],
): Float32Array {
  const n = sample.length;
  const prev = new Float32Array(n);
  const order = coeffs.length;
  if (order <= 4 && recent.length >= order) {
    const [c0 = 0, c1 = 0, c2 = 0, c3 = 0] = coeffs;
    const [r0, r1, r2, r3] = recent as [Float32Array, Float32Array, Float32Array, Float32Array];
    for (let k = 0; k < n; k++) {
      let acc = f32(0 + f32(c0 * (r0[k] as number)));
      if (order > 1) acc = f32(acc + f32(c1 * (r1[k] as number)));
      if (order > 2) acc = f32(acc + f32(c2 * (r2[k] as number)));
      if (order > 3) acc = f32(acc + f32(c3 * (r3[k] as number)));
      prev[k] = (sample[k] as number) + acc;
    }
    return prev;
  }
  for (let k = 0; k < n; k++) {
    let acc = 0;
    for (let c = 0; c < order; c++)
      acc = f32(acc + f32((coeffs[c] as number) * ((recent[c] as Float32Array)[k] as number)));
    prev[k] = (sample[k] as number) + acc;
  }
  return prev;
}
