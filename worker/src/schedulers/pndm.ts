/**
 * Ports of diffusers' PNDMScheduler (scheduling_pndm.py: Runge–Kutta warm-up + linear multistep, "PLMS")
 * and IPNDMScheduler (scheduling_ipndm.py: improved PNDM from k-diffusion, v-diffusion parameterisation).
 */
import {
  addNoiseVP,
  assertSameLength,
  checkInferenceSteps,
  combo,
  divided,
  f32,
  makeAlphaSchedule,
  mergeConfig,
  npArange,
  npLinspace,
  npRound,
  oneOf,
  perBatch,
  plus,
  type RawConfig,
  SchedulerBase,
  SchedulerConfigError,
  type Shape4,
  type StepOptions,
  type StepResult,
  scaled,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  torchLinspaceF32,
} from "./common.ts";

export const PNDM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: "epsilon",
  timestep_spacing: "leading",
  steps_offset: 0,
};

export class PNDMScheduler extends SchedulerBase {
  readonly name = "PNDMScheduler";
  readonly config: typeof PNDM_DEFAULTS;
  readonly alphasCumprod: Float64Array;
  readonly finalAlphaCumprod: number;
  readonly pndmOrder = 4;
  prkTimesteps: number[] = [];
  plmsTimesteps: number[] = [];
  private readonly predictionType: "epsilon" | "v_prediction";
  private readonly spacing: TimestepSpacing;
  private ets: Float32Array[] = [];
  private counter = 0;
  private curModelOutput: Float32Array | null = null;
  private curSample: Float32Array | null = null;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, PNDM_DEFAULTS, raw);
    this.alphasCumprod = makeAlphaSchedule(this.name, this.config).alphasCumprod;
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : (this.alphasCumprod[0] as number);
    this.predictionType = oneOf(this.name, "prediction_type", this.config.prediction_type, [
      "epsilon",
      "v_prediction",
    ]);
    this.spacing = oneOf(this.name, "timestep_spacing", this.config.timestep_spacing, TIMESTEP_SPACINGS);
  }

  private get ratio(): number {
    return Math.floor(this.config.num_train_timesteps / (this.numInferenceSteps as number));
  }

  setTimesteps(n: number): void {
    const numTrain = this.config.num_train_timesteps;
    checkInferenceSteps(this.name, n, numTrain);
    if (!this.config.skip_prk_steps && n < this.pndmOrder) {
      throw new SchedulerConfigError(
        `${this.name}: \`num_inference_steps\` must be >= ${this.pndmOrder} when skip_prk_steps is false, got ${n}`,
      );
    }
    this.numInferenceSteps = n;
    let ts: number[];
    if (this.spacing === "linspace") {
      ts = [...npLinspace(0, numTrain - 1, n)].map(npRound);
    } else if (this.spacing === "leading") {
      const r = Math.floor(numTrain / n);
      ts = Array.from({ length: n }, (_, i) => i * r + this.config.steps_offset);
    } else {
      ts = [...npArange(numTrain, 0, -numTrain / n)].reverse().map((v) => npRound(v) - 1);
    }
    if (this.config.skip_prk_steps) {
      this.prkTimesteps = [];
      this.plmsTimesteps = [...ts.slice(0, -1), ...ts.slice(-2, -1), ...ts.slice(-1)].reverse();
    } else {
      const half = Math.floor(Math.floor(numTrain / n) / 2);
      const last = ts.slice(-this.pndmOrder);
      const prk: number[] = [];
      for (const t of last) prk.push(t, t + half);
      const rep: number[] = [];
      for (const t of prk.slice(0, -1)) rep.push(t, t);
      this.prkTimesteps = rep.slice(1, -1).reverse();
      this.plmsTimesteps = ts.slice(0, -3).reverse();
    }
    this.timesteps = [...this.prkTimesteps, ...this.plmsTimesteps];
    this.ets = [];
    this.counter = 0;
    this.curModelOutput = null;
    this.curSample = null;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, _opts: StepOptions = {}): StepResult {
    if (this.counter < this.prkTimesteps.length && !this.config.skip_prk_steps) {
      return this.stepPrk(modelOutput, t, sample);
    }
    return this.stepPlms(modelOutput, t, sample);
  }

  /** diffusers' step_prk (Runge–Kutta warm-up; four calls per step). */
  stepPrk(modelOutput: Float32Array, t: number, sample: Float32Array): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(this.ratio / 2);
    const prevT = t - diffToPrev;
    const timestep = this.prkTimesteps[Math.floor(this.counter / 4) * 4] as number;
    let out = modelOutput;
    const phase = this.counter % 4;
    if (phase === 0) {
      this.curModelOutput = combo([[1 / 6, modelOutput]]);
      this.ets.push(modelOutput);
      this.curSample = sample;
    } else if (phase === 1 || phase === 2) {
      const add = combo([[1 / 3, modelOutput]]);
      this.curModelOutput = plus(this.curModelOutput as Float32Array, add);
    } else {
      const add = combo([[1 / 6, modelOutput]]);
      out = plus(this.curModelOutput as Float32Array, add);
      this.curModelOutput = null;
    }
    const curSample = this.curSample ?? sample;
    const prev = this.prevSample(curSample, timestep, prevT, out);
    this.counter += 1;
    return { prevSample: prev };
  }

  /** diffusers' step_plms (linear multistep). */
  stepPlms(modelOutput: Float32Array, t: number, sample: Float32Array): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    if (!this.config.skip_prk_steps && this.ets.length < 3) {
      throw new Error(
        `${this.name}: step_plms needs the Runge–Kutta warm-up first (run the prk timesteps, or set skip_prk_steps)`,
      );
    }
    let prevT = t - this.ratio;
    let timestep = t;
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(modelOutput);
    } else {
      prevT = t;
      timestep = t + this.ratio;
    }
    let out: Float32Array;
    let x = sample;
    const e = this.ets;
    const at = (k: number) => e[e.length - k] as Float32Array;
    if (e.length === 1 && this.counter === 0) {
      out = modelOutput;
      this.curSample = sample;
    } else if (e.length === 1 && this.counter === 1) {
      out = divided(plus(modelOutput, at(1)), 2);
      x = this.curSample as Float32Array;
      this.curSample = null;
    } else {
      out = adamsBashforth(e);
    }
    const prev = this.prevSample(x, timestep, prevT, out);
    this.counter += 1;
    return { prevSample: prev };
  }

  private prevSample(
    sample: Float32Array,
    t: number,
    prevT: number,
    modelOutput: Float32Array,
  ): Float32Array {
    const a = this.alphasCumprod[t] as number;
    if (a === undefined) throw new RangeError(`${this.name}: timestep ${t} is outside the training schedule`);
    const aPrev = prevT >= 0 ? (this.alphasCumprod[prevT] as number) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const bPrev = f32(1 - aPrev);
    let m = modelOutput;
    if (this.predictionType === "v_prediction") {
      const sa = f32(Math.sqrt(a));
      const sb = f32(Math.sqrt(b));
      m = combo([
        [sa, modelOutput],
        [sb, sample],
      ]);
    }
    const sampleCoeff = f32(Math.sqrt(f32(aPrev / a)));
    const denom = f32(f32(a * f32(Math.sqrt(bPrev))) + f32(Math.sqrt(f32(f32(a * b) * aPrev))));
    const diff = f32(aPrev - a);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < out.length; i++) {
      out[i] = f32(f32(sampleCoeff * (sample[i] as number)) - f32(f32(diff * (m[i] as number)) / denom));
    }
    return out;
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

export const IPNDM_DEFAULTS = {
  num_train_timesteps: 1000,
  trained_betas: null as unknown,
};

/**
 * iPNDM. Its timesteps are continuous in (0, 1] and it treats the model as a v-diffusion model
 * (`betas`/`alphas` are sin/cos of the angle), so it cannot drive an SD UNet meaningfully.
 */
export class IPNDMScheduler extends SchedulerBase {
  readonly name = "IPNDMScheduler";
  readonly config: typeof IPNDM_DEFAULTS;
  betas: number[] = [];
  alphas: number[] = [];
  readonly pndmOrder = 4;
  private ets: Float32Array[] = [];

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, IPNDM_DEFAULTS, raw);
    this.setTimesteps(this.config.num_train_timesteps);
    this.numInferenceSteps = null;
  }

  setTimesteps(n: number): void {
    checkInferenceSteps(this.name, n);
    this.numInferenceSteps = n;
    const steps = [...torchLinspaceF32(1, 0, n + 1).slice(0, -1), 0];
    if (this.config.trained_betas !== null) {
      const tb = this.config.trained_betas;
      if (!Array.isArray(tb) || tb.length !== n + 1) {
        throw new SchedulerConfigError(
          `${this.name}: trained_betas must be an array of num_inference_steps + 1 numbers`,
        );
      }
      this.betas = tb.map((b) => f32(Number(b)));
    } else {
      this.betas = steps.map((s) => {
        const v = f32(Math.sin(f32(f32(s * f32(Math.PI)) / 2)));
        return f32(v * v);
      });
    }
    this.alphas = this.betas.map((b) => f32(Math.sqrt(f32(1 - f32(b * b)))));
    this.timesteps = this.betas
      .map((b, i) => f32(f32(f32(Math.atan2(b, this.alphas[i] as number)) / f32(Math.PI)) * 2))
      .slice(0, -1);
    this.ets = [];
    this.stepIndex = null;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, _opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.initStepIndex(t);
    const beta = this.betas[i] as number;
    const alpha = this.alphas[i] as number;
    const ets = combo([
      [beta, sample],
      [alpha, modelOutput],
    ]);
    this.ets.push(ets);
    const m = this.ets.length === 1 ? ets : adamsBashforth(this.ets);
    const nextAlpha = this.alphas[i + 1] as number;
    const nextSigma = this.betas[i + 1] as number;
    const div = Math.max(alpha, 1e-8);
    const prev = new Float32Array(sample.length);
    for (let k = 0; k < prev.length; k++) {
      const pred = f32(f32((sample[k] as number) - f32(beta * (m[k] as number))) / div);
      prev[k] = f32(f32(nextAlpha * pred) + f32((m[k] as number) * nextSigma));
    }
    this.stepIndex = i + 1;
    return { prevSample: prev };
  }

  /**
   * Not in diffusers (IPNDMScheduler has no add_noise). Uses the scheduler's own v-diffusion
   * parameterisation: `alpha_t * x0 + sigma_t * noise` at the index of `t` in `timesteps`.
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
      const idx = this.timesteps.indexOf(ti);
      if (idx < 0) throw new RangeError(`${this.name}: timestep ${ti} is not in the scheduler's timesteps`);
      const a = this.alphas[idx] as number;
      const s = this.betas[idx] as number;
      for (let k = b * per; k < (b + 1) * per; k++) {
        out[k] = f32(f32(a * (original[k] as number)) + f32(s * (noise[k] as number)));
      }
    });
    return out;
  }
}

/**
 * The linear multistep (Adams–Bashforth) combination of the newest 2, 3 or 4 model outputs (more:
 * the newest 4), as diffusers' PNDM (PLMS steps) and IPNDM both write it.
 */
function adamsBashforth(ets: readonly Float32Array[]): Float32Array {
  const at = (k: number) => ets[ets.length - k] as Float32Array;
  if (ets.length === 2) {
    return divided(
      combo([
        [3, at(1)],
        [-1, at(2)],
      ]),
      2,
    );
  }
  if (ets.length === 3) {
    return divided(
      combo([
        [23, at(1)],
        [-16, at(2)],
        [5, at(3)],
      ]),
      12,
    );
  }
  return scaled(
    combo([
      [55, at(1)],
      [-59, at(2)],
      [37, at(3)],
      [-9, at(4)],
    ]),
    f32(1 / 24),
  );
}
