/**
 * Port of diffusers' ScoreSdeVeScheduler (scheduling_sde_ve.py): predictor–corrector sampling of the
 * variance-exploding SDE. The model output is a score (gradient of the log density), not epsilon, and the
 * timesteps are continuous in (0, 1], so it cannot drive an SD UNet meaningfully.
 */
import {
  assertSameLength,
  checkInferenceSteps,
  f32,
  mergeConfig,
  npLinspace,
  perBatch,
  plusScaled,
  type RawConfig,
  randn,
  SchedulerBase,
  type Shape4,
  type StepOptions,
  type StepResult,
  torchLinspaceF32,
} from "./common.ts";

export const SCORE_SDE_VE_DEFAULTS = {
  num_train_timesteps: 2000,
  snr: 0.15,
  sigma_min: 0.01,
  sigma_max: 1348.0,
  sampling_eps: 1e-5,
  correct_steps: 1,
};

export class ScoreSdeVeScheduler extends SchedulerBase {
  readonly name = "ScoreSdeVeScheduler";
  readonly config: typeof SCORE_SDE_VE_DEFAULTS;
  discreteSigmas: number[] = [];
  sigmas: number[] = [];

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, SCORE_SDE_VE_DEFAULTS, raw);
    this.initNoiseSigma = this.config.sigma_max;
    this.setTimesteps(this.config.num_train_timesteps);
    this.numInferenceSteps = null;
  }

  /** set_timesteps + set_sigmas: continuous timesteps linspace(1, eps, n) and the geometric sigma ladder. */
  setTimesteps(n: number, samplingEps = this.config.sampling_eps): void {
    checkInferenceSteps(this.name, n);
    this.numInferenceSteps = n;
    this.timesteps = [...torchLinspaceF32(1, samplingEps, n)];
    const { sigma_min: lo, sigma_max: hi } = this.config;
    this.discreteSigmas = [...npLinspace(Math.log(lo), Math.log(hi), n)].map((v) => f32(Math.exp(f32(v))));
    this.sigmas = this.timesteps.map((t) => f32(lo * (hi / lo) ** t));
  }

  private discreteIndex(t: number): number {
    return Math.trunc(f32(t * (this.timesteps.length - 1)));
  }

  /** diffusers' step_pred: reverse-SDE predictor step (draws noise; needs `{ generator }`). */
  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const idx = this.discreteIndex(t);
    const sigma = this.discreteSigmas[idx] as number;
    const adjacent = idx === 0 ? 0 : (this.discreteSigmas[idx - 1] as number);
    const diffusion = f32(Math.sqrt(f32(f32(sigma * sigma) - f32(adjacent * adjacent))));
    const d2 = f32(diffusion * diffusion);
    const noise = opts.varianceNoise ?? randn(sample.length, opts.generator, this.name);
    const mean = plusScaled(sample, d2, modelOutput);
    const prev = plusScaled(mean, diffusion, noise);
    return { prevSample: prev, predOriginalSample: mean };
  }

  /** diffusers' step_correct: Langevin corrector step (draws noise). */
  stepCorrect(modelOutput: Float32Array, sample: Float32Array, opts: StepOptions = {}): StepResult {
    assertSameLength(this.name, modelOutput, sample);
    const noise = opts.varianceNoise ?? randn(sample.length, opts.generator, this.name);
    const batch = opts.shape ? opts.shape[0] : 1;
    const per = sample.length / batch;
    const norm = (x: Float32Array) => {
      let total = 0;
      for (let b = 0; b < batch; b++) {
        let s = 0;
        for (let k = b * per; k < (b + 1) * per; k++) s += (x[k] as number) ** 2;
        total += Math.sqrt(s);
      }
      return total / batch;
    };
    const stepSize = f32((this.config.snr * norm(noise)) / norm(modelOutput)) ** 2 * 2;
    const mean = plusScaled(sample, stepSize, modelOutput);
    const amp = f32(Math.sqrt(stepSize * 2));
    const prev = plusScaled(mean, amp, noise);
    return { prevSample: prev, predOriginalSample: mean };
  }

  /**
   * `x0 + sigma * noise`. diffusers indexes `discrete_sigmas` with integer timesteps; here `t` is a value of
   * `timesteps` (continuous, as `step` takes) mapped to the same discrete index `step` uses.
   */
  addNoise(
    original: Float32Array,
    noise: Float32Array,
    t: number | readonly number[],
    shape?: Shape4,
  ): Float32Array {
    assertSameLength(this.name, original, noise);
    const { ts, per } = perBatch(original.length, t, shape, this.name);
    const out = new Float32Array(original.length);
    ts.forEach((ti, b) => {
      const s = this.discreteSigmas[this.discreteIndex(ti)] as number;
      for (let k = b * per; k < (b + 1) * per; k++)
        out[k] = f32(f32((noise[k] as number) * s) + (original[k] as number));
    });
    return out;
  }
}
