/**
 * Ports of diffusers' EulerDiscreteScheduler (scheduling_euler_discrete.py) and
 * EulerAncestralDiscreteScheduler (scheduling_euler_ancestral_discrete.py).
 */
import {
  type AlphaSchedule,
  assertSameLength,
  f32,
  makeAlphaSchedule,
  mergeConfig,
  oneOf,
  PREDICTION_TYPES,
  type PredictionType,
  type RawConfig,
  randn,
  SchedulerConfigError,
  type StepOptions,
  type StepResult,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  UNSUPPORTED_SIGMA_SCHEDULES,
} from "./common.ts";
import { KSchedulerBase, kEulerUpdate, kInitNoiseSigma, kSchedule } from "./k-sigmas.ts";

export const EULER_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  prediction_type: "epsilon",
  interpolation_type: "linear",
  use_karras_sigmas: false,
  sigma_min: null as number | null,
  sigma_max: null as number | null,
  timestep_spacing: "linspace",
  timestep_type: "discrete",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  final_sigmas_type: "zero",
};

export interface EulerStepOptions extends StepOptions {
  s_churn?: number;
  s_tmin?: number;
  s_tmax?: number;
  s_noise?: number;
}

export class EulerDiscreteScheduler extends KSchedulerBase {
  readonly name = "EulerDiscreteScheduler";
  readonly config: typeof EULER_DEFAULTS;
  protected readonly alphaSchedule: AlphaSchedule;
  private readonly predictionType: PredictionType;
  private readonly spacing: TimestepSpacing;
  private readonly finalSigmas: "zero" | "sigma_min";
  private readonly continuous: boolean;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, EULER_DEFAULTS, raw, UNSUPPORTED_SIGMA_SCHEDULES);
    this.alphaSchedule = makeAlphaSchedule(this.name, this.config, { zeroSnrTerminal: true });
    this.predictionType = oneOf(this.name, "prediction_type", this.config.prediction_type, PREDICTION_TYPES);
    this.spacing = oneOf(this.name, "timestep_spacing", this.config.timestep_spacing, TIMESTEP_SPACINGS);
    this.finalSigmas = oneOf(this.name, "final_sigmas_type", this.config.final_sigmas_type, [
      "zero",
      "sigma_min",
    ]);
    const timestepType = oneOf(this.name, "timestep_type", this.config.timestep_type, [
      "discrete",
      "continuous",
    ]);
    this.continuous = timestepType === "continuous" && this.predictionType === "v_prediction";
    const interp = oneOf(this.name, "interpolation_type", this.config.interpolation_type, [
      "linear",
      "log_linear",
    ]);
    if (interp === "log_linear") {
      throw new SchedulerConfigError(
        `${this.name}: interpolation_type "log_linear" is not supported by this port`,
      );
    }
    // Before setTimesteps: the full training schedule.
    this.setSchedule(this.config.num_train_timesteps, "linspace");
    this.numInferenceSteps = null;
  }

  protected setSchedule(n: number, spacing: TimestepSpacing = this.spacing): void {
    const ks = kSchedule({
      alphasCumprod: this.alphaSchedule.alphasCumprod,
      spacing,
      numTrain: this.config.num_train_timesteps,
      n,
      stepsOffset: this.config.steps_offset,
      float32Timesteps: true,
      karras: this.config.use_karras_sigmas,
      sigmaMin: this.config.sigma_min,
      sigmaMax: this.config.sigma_max,
    });
    const sigmas = ks.sigmas.map(f32);
    this.timesteps = this.continuous
      ? sigmas.map((s) => f32(0.25 * f32(Math.log(s))))
      : ks.timesteps.map(f32);
    const a0 = this.alphaSchedule.alphasCumprod[0] as number;
    const last = this.finalSigmas === "sigma_min" ? f32(Math.sqrt(f32(f32(1 - a0) / a0))) : 0;
    this.sigmas = [...sigmas, last];
    this.initNoiseSigma = kInitNoiseSigma(this.sigmas, this.spacing);
    this.stepIndex = null;
    this.beginIndex = null;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: EulerStepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.initStepIndex(t);
    const sigma = this.sigmas[i] as number;
    const sChurn = opts.s_churn ?? 0;
    const sTmin = opts.s_tmin ?? 0;
    const sTmax = opts.s_tmax ?? Number.POSITIVE_INFINITY;
    const gamma =
      sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1) : 0;
    const sigmaHat = f32(sigma * (gamma + 1));
    let x = sample;
    if (gamma > 0) {
      const noise = opts.varianceNoise ?? randn(sample.length, opts.generator, this.name);
      const sNoise = opts.s_noise ?? 1;
      const amp = f32(Math.sqrt(f32(f32(sigmaHat * sigmaHat) - f32(sigma * sigma))));
      x = new Float32Array(sample.length);
      for (let k = 0; k < x.length; k++)
        x[k] = (sample[k] as number) + f32(f32((noise[k] as number) * sNoise) * amp);
    }
    const dt = f32((this.sigmas[i + 1] as number) - sigmaHat);
    const keep = opts.predOriginalSample !== false;
    const { prev, x0 } = kEulerUpdate(
      this.predictionType,
      modelOutput,
      x,
      sigmaHat,
      sigmaHat,
      dt,
      x,
      null,
      0,
      keep,
    );
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}

export const EULER_ANCESTRAL_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  prediction_type: "epsilon",
  timestep_spacing: "linspace",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

/** Euler ancestral: Euler step to sigma_down plus fresh noise of sigma_up (needs `{ generator }`). */
export class EulerAncestralDiscreteScheduler extends KSchedulerBase {
  readonly name = "EulerAncestralDiscreteScheduler";
  readonly config: typeof EULER_ANCESTRAL_DEFAULTS;
  protected readonly alphaSchedule: AlphaSchedule;
  private readonly predictionType: PredictionType;
  private readonly spacing: TimestepSpacing;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, EULER_ANCESTRAL_DEFAULTS, raw);
    this.alphaSchedule = makeAlphaSchedule(this.name, this.config, { zeroSnrTerminal: true });
    this.predictionType = oneOf(this.name, "prediction_type", this.config.prediction_type, PREDICTION_TYPES);
    this.spacing = oneOf(this.name, "timestep_spacing", this.config.timestep_spacing, TIMESTEP_SPACINGS);
    this.setSchedule(this.config.num_train_timesteps, "linspace");
    this.numInferenceSteps = null;
  }

  protected setSchedule(n: number, spacing: TimestepSpacing = this.spacing): void {
    const ks = kSchedule({
      alphasCumprod: this.alphaSchedule.alphasCumprod,
      spacing,
      numTrain: this.config.num_train_timesteps,
      n,
      stepsOffset: this.config.steps_offset,
      float32Timesteps: true,
      karras: false,
    });
    this.timesteps = ks.timesteps.map(f32);
    this.sigmas = [...ks.sigmas.map(f32), 0];
    this.initNoiseSigma = kInitNoiseSigma(this.sigmas, this.spacing);
    this.stepIndex = null;
    this.beginIndex = null;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.initStepIndex(t);
    const sigma = this.sigmas[i] as number;
    const sigmaTo = this.sigmas[i + 1] as number;
    const from2 = f32(sigma * sigma);
    const to2 = f32(sigmaTo * sigmaTo);
    const sigmaUp = f32(Math.sqrt(f32(f32(to2 * f32(from2 - to2)) / from2)));
    const sigmaDown = f32(Math.sqrt(f32(to2 - f32(sigmaUp * sigmaUp))));
    const dt = f32(sigmaDown - sigma);
    const noise = opts.varianceNoise ?? randn(sample.length, opts.generator, this.name);
    assertSameLength(this.name, noise, sample);
    const { prev, x0 } = kEulerUpdate(
      this.predictionType,
      modelOutput,
      sample,
      sigma,
      sigma,
      dt,
      sample,
      noise,
      sigmaUp,
      opts.predOriginalSample !== false,
    );
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
