/** Port of diffusers' HeunDiscreteScheduler (scheduling_heun_discrete.py): two model calls per step. */
import {
  type AlphaSchedule,
  assertSameLength,
  clamp,
  f32,
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

export const HEUN_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  prediction_type: "epsilon",
  use_karras_sigmas: false,
  clip_sample: false,
  clip_sample_range: 1.0,
  timestep_spacing: "linspace",
  steps_offset: 0,
};

/** Repeats every entry except the first (and, for sigmas, the last) twice — diffusers' repeat_interleave layout. */
export function interleave(values: readonly number[], keepLast: boolean): number[] {
  const out = [values[0] as number];
  const end = keepLast ? values.length - 1 : values.length;
  for (let i = 1; i < end; i++) out.push(values[i] as number, values[i] as number);
  if (keepLast && values.length > 1) out.push(values[values.length - 1] as number);
  return out;
}

export class HeunDiscreteScheduler extends KSchedulerBase {
  readonly name = "HeunDiscreteScheduler";
  readonly config: typeof HEUN_DEFAULTS;
  protected readonly alphaSchedule: AlphaSchedule;
  private readonly predictionType: PredictionType;
  private readonly spacing: TimestepSpacing;
  private prevDerivative: Float32Array | null = null;
  private dt: number | null = null;
  private firstSample: Float32Array | null = null;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, HEUN_DEFAULTS, raw, UNSUPPORTED_SIGMA_SCHEDULES);
    this.order = 2;
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
      float32Timesteps: true,
      karras: this.config.use_karras_sigmas,
    });
    this.sigmas = interleave([...ks.sigmas.map(f32), 0], true);
    this.timesteps = interleave(ks.timesteps.map(f32), false);
    this.initNoiseSigma = kInitNoiseSigma(this.sigmas, this.spacing);
    this.prevDerivative = null;
    this.dt = null;
    this.firstSample = null;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  /** True when the next `step` is the first (Euler) half of a Heun step. */
  get stateInFirstOrder(): boolean {
    return this.dt === null;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, _opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.initStepIndex(t);
    const first = this.stateInFirstOrder;
    const sigma = (first ? this.sigmas[i] : this.sigmas[i - 1]) as number;
    const sigmaNext = (first ? this.sigmas[i + 1] : this.sigmas[i]) as number;
    const sigmaHat = sigma;
    const sigmaInput = first ? sigmaHat : sigmaNext;
    let x0 = kPredictX0(this.predictionType, modelOutput, sample, sigmaInput);
    if (this.config.clip_sample)
      x0 = clamp(x0, -this.config.clip_sample_range, this.config.clip_sample_range);
    const n = sample.length;
    const prev = new Float32Array(n);
    if (first) {
      const dt = f32(sigmaNext - sigmaHat);
      const derivative = new Float32Array(n);
      for (let k = 0; k < n; k++) {
        const s = sample[k] as number;
        const d = f32(f32(s - (x0[k] as number)) / sigmaHat);
        derivative[k] = d;
        prev[k] = s + f32(d * dt);
      }
      this.prevDerivative = derivative;
      this.dt = dt;
      this.firstSample = sample;
    } else {
      const pd = this.prevDerivative as Float32Array;
      const dt = this.dt as number;
      const base = this.firstSample as Float32Array;
      for (let k = 0; k < n; k++) {
        const d2 = f32(f32((sample[k] as number) - (x0[k] as number)) / sigmaNext);
        const d = f32(f32((pd[k] as number) + d2) / 2);
        prev[k] = f32((base[k] as number) + f32(d * dt));
      }
      this.prevDerivative = null;
      this.dt = null;
      this.firstSample = null;
    }
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
