/**
 * Ports of diffusers' KDPM2DiscreteScheduler (scheduling_k_dpm_2_discrete.py) and
 * KDPM2AncestralDiscreteScheduler (scheduling_k_dpm_2_ancestral_discrete.py): DPM-Solver-2 from
 * k-diffusion, two model calls per step (the second at the log-midpoint sigma).
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
  type StepOptions,
  type StepResult,
  sigmaToT,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  UNSUPPORTED_SIGMA_SCHEDULES,
} from "./common.ts";
import { interleave } from "./heun.ts";
import { KSchedulerBase, kEulerUpdate, kInitNoiseSigma, kScale, kSchedule } from "./k-sigmas.ts";

export const KDPM2_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  use_karras_sigmas: false,
  prediction_type: "epsilon",
  timestep_spacing: "linspace",
  steps_offset: 0,
};

/** torch `a.log().lerp(b.log(), 0.5).exp()` in float32. */
function logMidpoint(a: number, b: number): number {
  const la = f32(Math.log(a));
  const lb = f32(Math.log(b));
  // torch.lerp with weight >= 0.5: end - (end - self) * (1 - weight)
  const l =
    la === Number.NEGATIVE_INFINITY || lb === Number.NEGATIVE_INFINITY
      ? Number.NEGATIVE_INFINITY
      : f32(lb - f32(f32(lb - la) * 0.5));
  return f32(Math.exp(l));
}

abstract class KDPM2Base extends KSchedulerBase {
  abstract readonly config: typeof KDPM2_DEFAULTS;
  protected readonly alphaSchedule: AlphaSchedule;
  protected readonly predictionType: PredictionType;
  protected readonly spacing: TimestepSpacing;
  sigmasInterpol: number[] = [];
  protected firstSample: Float32Array | null = null;

  constructor(name: string, raw: RawConfig | undefined, cfg: typeof KDPM2_DEFAULTS) {
    super();
    this.order = 2;
    this.alphaSchedule = makeAlphaSchedule(name, cfg);
    this.predictionType = oneOf(name, "prediction_type", cfg.prediction_type, PREDICTION_TYPES);
    this.spacing = oneOf(name, "timestep_spacing", cfg.timestep_spacing, TIMESTEP_SPACINGS);
    void raw;
  }

  protected schedule(n: number) {
    return kSchedule({
      alphasCumprod: this.alphaSchedule.alphasCumprod,
      spacing: this.spacing,
      numTrain: this.config.num_train_timesteps,
      n,
      stepsOffset: this.config.steps_offset,
      float32Timesteps: true,
      karras: this.config.use_karras_sigmas,
    });
  }

  /** True when the next `step` is the first half of a DPM-Solver-2 step. */
  get stateInFirstOrder(): boolean {
    return this.firstSample === null;
  }
}

export class KDPM2DiscreteScheduler extends KDPM2Base {
  readonly name = "KDPM2DiscreteScheduler";
  readonly config: typeof KDPM2_DEFAULTS;

  constructor(raw?: RawConfig) {
    const cfg = mergeConfig("KDPM2DiscreteScheduler", KDPM2_DEFAULTS, raw, UNSUPPORTED_SIGMA_SCHEDULES);
    super("KDPM2DiscreteScheduler", raw, cfg);
    this.config = cfg;
    this.setSchedule(cfg.num_train_timesteps);
    this.numInferenceSteps = null;
  }

  protected setSchedule(n: number): void {
    const ks = this.schedule(n);
    const sig = [...ks.sigmas.map(f32), 0];
    const interp = sig.map((s, i) => logMidpoint(s, sig[(i - 1 + sig.length) % sig.length] as number));
    this.sigmas = interleave(sig, true);
    this.sigmasInterpol = interleave(interp, true);
    const ts = ks.timesteps.map(f32);
    const tInterp = interp.map((s) => f32(sigmaToT(s, ks.logSigmas)));
    const timesteps = [ts[0] as number];
    for (let i = 1; i < ts.length; i++) timesteps.push(tInterp[i] as number, ts[i] as number);
    this.timesteps = timesteps;
    this.initNoiseSigma = kInitNoiseSigma(this.sigmas, this.spacing);
    this.firstSample = null;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  override scaleModelInput(sample: Float32Array, t: number, out?: Float32Array): Float32Array {
    const i = this.initStepIndex(t);
    const sigma = (this.stateInFirstOrder ? this.sigmas[i] : this.sigmasInterpol[i]) as number;
    return kScale(sample, sigma, out);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.initStepIndex(t);
    const first = this.stateInFirstOrder;
    const sigma = (first ? this.sigmas[i] : this.sigmas[i - 1]) as number;
    const sigmaInterpol = (first ? this.sigmasInterpol[i + 1] : this.sigmasInterpol[i]) as number;
    const sigmaNext = (first ? this.sigmas[i + 1] : this.sigmas[i]) as number;
    const sigmaHat = sigma;
    let base = sample;
    let dt: number;
    const denom = first ? sigmaHat : sigmaInterpol;
    if (first) {
      dt = f32(sigmaInterpol - sigmaHat);
    } else {
      dt = f32(sigmaNext - sigmaHat);
      base = this.firstSample as Float32Array;
    }
    const keep = opts.predOriginalSample !== false;
    const { prev, x0 } = kEulerUpdate(
      this.predictionType,
      modelOutput,
      sample,
      denom,
      denom,
      dt,
      base,
      null,
      0,
      keep,
    );
    this.firstSample = first ? sample : null;
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}

/** KDPM2 ancestral: the second half steps to sigma_down and adds fresh noise of sigma_up (needs `{ generator }`). */
export class KDPM2AncestralDiscreteScheduler extends KDPM2Base {
  readonly name = "KDPM2AncestralDiscreteScheduler";
  readonly config: typeof KDPM2_DEFAULTS;
  sigmasUp: number[] = [];
  sigmasDown: number[] = [];

  constructor(raw?: RawConfig) {
    const cfg = mergeConfig(
      "KDPM2AncestralDiscreteScheduler",
      KDPM2_DEFAULTS,
      raw,
      UNSUPPORTED_SIGMA_SCHEDULES,
    );
    super("KDPM2AncestralDiscreteScheduler", raw, cfg);
    this.config = cfg;
    this.setSchedule(cfg.num_train_timesteps);
    this.numInferenceSteps = null;
  }

  protected setSchedule(n: number): void {
    const ks = this.schedule(n);
    const sig = [...ks.sigmas.map(f32), 0];
    const m = sig.length;
    const next = sig.map((_, i) => (i === m - 1 ? 0 : (sig[i + 1] as number)));
    const up = sig.map((s, i) => {
      const s2 = f32(s * s);
      const n2 = f32((next[i] as number) * (next[i] as number));
      return f32(Math.sqrt(f32(f32(n2 * f32(s2 - n2)) / s2)));
    });
    const down = sig.map((_, i) => {
      if (i === m - 1) return 0;
      const n2 = f32((next[i] as number) * (next[i] as number));
      return f32(Math.sqrt(f32(n2 - f32((up[i] as number) * (up[i] as number)))));
    });
    const interp = sig.map((s, i) => (i >= m - 2 ? 0 : logMidpoint(s, down[i] as number)));
    this.sigmas = interleave(sig, true);
    this.sigmasInterpol = interleave(interp, true);
    this.sigmasUp = interleave(
      up.map((v) => (Number.isNaN(v) ? 0 : v)),
      true,
    );
    this.sigmasDown = interleave(down, true);
    const ts = ks.timesteps.map(f32);
    const tInterp = interp.map((s) => f32(sigmaToT(s, ks.logSigmas)));
    const timesteps = [ts[0] as number];
    for (let i = 1; i < ts.length; i++) timesteps.push(tInterp[i - 1] as number, ts[i] as number);
    this.timesteps = timesteps;
    this.initNoiseSigma = kInitNoiseSigma(this.sigmas, this.spacing);
    this.firstSample = null;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  override scaleModelInput(sample: Float32Array, t: number, out?: Float32Array): Float32Array {
    const i = this.initStepIndex(t);
    const sigma = (this.stateInFirstOrder ? this.sigmas[i] : this.sigmasInterpol[i - 1]) as number;
    return kScale(sample, sigma, out);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.initStepIndex(t);
    const first = this.stateInFirstOrder;
    const at = (arr: number[], k: number) => arr[(k + arr.length) % arr.length] as number;
    const sigma = first ? at(this.sigmas, i) : at(this.sigmas, i - 1);
    const sigmaInterpol = first ? at(this.sigmasInterpol, i) : at(this.sigmasInterpol, i - 1);
    const sigmaUp = first ? at(this.sigmasUp, i) : at(this.sigmasUp, i - 1);
    const sigmaDown = at(this.sigmasDown, i - 1);
    const sigmaHat = sigma;
    const noise = first ? null : (opts.varianceNoise ?? randn(sample.length, opts.generator, this.name));
    const denom = first ? sigmaHat : sigmaInterpol;
    let base = sample;
    let dt: number;
    if (first) {
      dt = f32(sigmaInterpol - sigmaHat);
    } else {
      dt = f32(sigmaDown - sigmaHat);
      base = this.firstSample as Float32Array;
    }
    const { prev, x0 } = kEulerUpdate(
      this.predictionType,
      modelOutput,
      sample,
      denom,
      denom,
      dt,
      base,
      noise,
      sigmaUp,
      opts.predOriginalSample !== false,
    );
    this.firstSample = first ? sample : null;
    this.stepIndex = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
