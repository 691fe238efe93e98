/**
 * Port of diffusers' KarrasVeScheduler (deprecated/scheduling_karras_ve.py): the stochastic sampler of
 * Karras et al. (2022) for variance-exploding score models. Not meaningful for an SD UNet (which predicts
 * epsilon on a variance-preserving schedule); kept for completeness.
 */
import {
  assertSameLength,
  checkInferenceSteps,
  f32,
  type Generator,
  mergeConfig,
  perBatch,
  plusScaled,
  type RawConfig,
  randn,
  SchedulerBase,
  type Shape4,
  type StepOptions,
  type StepResult,
  subDiv,
} from "./common.ts";

export const KARRAS_VE_DEFAULTS = {
  sigma_min: 0.02,
  sigma_max: 100,
  s_noise: 1.007,
  s_churn: 80,
  s_min: 0.05,
  s_max: 50,
};

export class KarrasVeScheduler extends SchedulerBase {
  readonly name = "KarrasVeScheduler";
  readonly config: typeof KARRAS_VE_DEFAULTS;
  /** diffusers' `schedule` (indexed by timestep); note diffusers fills it with sigma_max^2 * (...)^(i/(n-1)). */
  schedule: number[] = [];

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, KARRAS_VE_DEFAULTS, raw);
    this.order = 2;
    this.initNoiseSigma = this.config.sigma_max;
  }

  setTimesteps(n: number): void {
    checkInferenceSteps(this.name, n);
    this.numInferenceSteps = n;
    this.timesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
    const { sigma_min: lo, sigma_max: hi } = this.config;
    this.schedule = Array.from({ length: n }, (_, i) =>
      f32(hi ** 2 * (lo ** 2 / hi ** 2) ** (i / Math.max(n - 1, 1))),
    );
  }

  /** The noise level at timestep `t` (and 0 before the first timestep). */
  sigmaAt(t: number): number {
    return t >= 0 ? (this.schedule[t] as number) : 0;
  }

  /** diffusers' add_noise_to_input: "churn" — raises the noise level to sigma_hat with fresh noise. */
  addNoiseToInput(
    sample: Float32Array,
    sigma: number,
    generator: Generator,
  ): { sampleHat: Float32Array; sigmaHat: number } {
    const { s_min, s_max, s_churn, s_noise } = this.config;
    const gamma =
      s_min <= sigma && sigma <= s_max ? Math.min(s_churn / (this.numInferenceSteps ?? 1), 2 ** 0.5 - 1) : 0;
    const eps = randn(sample.length, generator, this.name);
    const sigmaHat = f32(sigma + gamma * sigma);
    const amp = f32(Math.sqrt(f32(sigmaHat ** 2 - sigma ** 2)));
    const sampleHat = new Float32Array(sample.length);
    for (let i = 0; i < sampleHat.length; i++)
      sampleHat[i] = (sample[i] as number) + f32(amp * f32(s_noise * (eps[i] as number)));
    return { sampleHat, sigmaHat };
  }

  /** diffusers' step(model_output, sigma_hat, sigma_prev, sample_hat): Euler step of the probability-flow ODE. */
  stepFromSigma(
    modelOutput: Float32Array,
    sigmaHat: number,
    sigmaPrev: number,
    sampleHat: Float32Array,
  ): { prevSample: Float32Array; derivative: Float32Array; predOriginalSample: Float32Array } {
    assertSameLength(this.name, modelOutput, sampleHat);
    const x0 = plusScaled(sampleHat, sigmaHat, modelOutput);
    const derivative = subDiv(sampleHat, x0, sigmaHat);
    const dt = f32(sigmaPrev - sigmaHat);
    const prev = plusScaled(sampleHat, dt, derivative);
    return { prevSample: prev, derivative, predOriginalSample: x0 };
  }

  /** diffusers' step_correct: the second-order (Heun) correction. */
  stepCorrect(
    modelOutput: Float32Array,
    sigmaHat: number,
    sigmaPrev: number,
    sampleHat: Float32Array,
    samplePrev: Float32Array,
    derivative: Float32Array,
  ): { prevSample: Float32Array; predOriginalSample: Float32Array } {
    const x0 = plusScaled(samplePrev, sigmaPrev, modelOutput);
    const corr = subDiv(samplePrev, x0, sigmaPrev);
    const dt = f32(sigmaPrev - sigmaHat);
    const prev = new Float32Array(sampleHat.length);
    for (let i = 0; i < prev.length; i++) {
      const d = f32(f32(0.5 * (derivative[i] as number)) + f32(0.5 * (corr[i] as number)));
      prev[i] = (sampleHat[i] as number) + f32(dt * d);
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }

  /**
   * Uniform-interface step: a deterministic Euler step from sigma(t) to sigma(t - 1) (no churn, since the
   * model output was computed at `sample`). Use addNoiseToInput / stepFromSigma / stepCorrect for the full
   * stochastic second-order sampler as diffusers' KarrasVePipeline does.
   */
  step(modelOutput: Float32Array, t: number, sample: Float32Array, _opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    const r = this.stepFromSigma(modelOutput, this.sigmaAt(t), this.sigmaAt(t - 1), sample);
    return { prevSample: r.prevSample, predOriginalSample: r.predOriginalSample };
  }

  /** Not in diffusers (it raises NotImplementedError). Here: the VE forward process `x0 + sigma(t) * noise`. */
  addNoise(
    original: Float32Array,
    noise: Float32Array,
    t: number | readonly number[],
    shape?: Shape4,
  ): Float32Array {
    assertSameLength(this.name, original, noise);
    this.requireTimesteps();
    const { ts, per } = perBatch(original.length, t, shape, this.name);
    const out = new Float32Array(original.length);
    ts.forEach((ti, b) => {
      const s = this.sigmaAt(ti);
      for (let k = b * per; k < (b + 1) * per; k++)
        out[k] = f32((original[k] as number) + f32(s * (noise[k] as number)));
    });
    return out;
  }
}
