/** Port of diffusers' DEISMultistepScheduler (scheduling_deis_multistep.py). */
import {
  type AlphaSchedule,
  assertSameLength,
  checkInferenceSteps,
  combo,
  f32,
  fromOther,
  makeAlphaSchedule,
  mergeConfig,
  oneOf,
  PREDICTION_TYPES,
  type PredictionType,
  type RawConfig,
  SchedulerConfigError,
  type StepOptions,
  type StepResult,
  scaled,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  UNSUPPORTED_FLOW_OPTIONS,
  UNSUPPORTED_SIGMA_SCHEDULES,
} from "./common.ts";
import { alphaSigma, dataPrediction, SolverBase, solverSchedule } from "./solver-common.ts";

export const DEIS_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as unknown,
  solver_order: 2,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  algorithm_type: "deis",
  solver_type: "logrho",
  lower_order_final: true,
  use_karras_sigmas: false,
  timestep_spacing: "linspace",
  steps_offset: 0,
};

export class DEISMultistepScheduler extends SolverBase {
  readonly name = "DEISMultistepScheduler";
  readonly config: typeof DEIS_DEFAULTS;
  private readonly alphaSchedule: AlphaSchedule;
  private readonly predictionType: PredictionType;
  private readonly spacing: TimestepSpacing;
  private modelOutputs: (Float32Array | null)[] = [];
  private lowerOrderNums = 0;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, DEIS_DEFAULTS, raw, {
      ...UNSUPPORTED_SIGMA_SCHEDULES,
      ...UNSUPPORTED_FLOW_OPTIONS,
    });
    const c = this.config;
    this.alphaSchedule = makeAlphaSchedule(this.name, c);
    this.predictionType = oneOf(this.name, "prediction_type", c.prediction_type, PREDICTION_TYPES);
    // diffusers maps the DPM-Solver algorithm/solver names onto DEIS's own ones
    const alg = c.algorithm_type;
    if (!["deis", "dpmsolver", "dpmsolver++", "dpmsolver+++", "sde-dpmsolver++"].includes(alg)) {
      throw new SchedulerConfigError(
        `${this.name}: algorithm_type ${JSON.stringify(alg)} is not supported; use "deis"`,
      );
    }
    if (!["logrho", "midpoint", "heun", "bh1", "bh2"].includes(c.solver_type)) {
      throw new SchedulerConfigError(
        `${this.name}: solver_type ${JSON.stringify(c.solver_type)} is not supported; use "logrho"`,
      );
    }
    this.spacing = oneOf(this.name, "timestep_spacing", c.timestep_spacing, TIMESTEP_SPACINGS);
    if (![1, 2, 3].includes(c.solver_order)) {
      throw new SchedulerConfigError(`${this.name}: solver_order must be 1, 2 or 3, got ${c.solver_order}`);
    }
    this.modelOutputs = new Array(c.solver_order).fill(null);
  }

  setTimesteps(n: number): void {
    checkInferenceSteps(this.name, n, this.config.num_train_timesteps);
    const s = solverSchedule({
      alphaSchedule: this.alphaSchedule,
      spacing: this.spacing,
      numTrain: this.config.num_train_timesteps,
      n,
      stepsOffset: this.config.steps_offset,
      karras: this.config.use_karras_sigmas,
      finalSigma: "sigma_min",
    });
    this.timesteps = s.timesteps;
    this.sigmas = s.sigmas;
    this.numInferenceSteps = s.timesteps.length;
    this.modelOutputs = new Array(this.config.solver_order).fill(null);
    this.lowerOrderNums = 0;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.stepIndexFor(t);
    const nT = this.timesteps.length;
    const c = this.config;
    const lowerOrderFinal = i === nT - 1 && c.lower_order_final && nT < 15;
    const lowerOrderSecond = i === nT - 2 && c.lower_order_final && nT < 15;
    // convert_model_output: x0 prediction, then back to epsilon (DEIS integrates in the noise space)
    const cur = alphaSigma(this.sigmas[i] as number);
    const x0 = dataPrediction(this.predictionType, modelOutput, sample, this.sigmas[i] as number, {
      enabled: c.thresholding,
      ratio: c.dynamic_thresholding_ratio,
      maxValue: c.sample_max_value,
      shape: opts.shape,
      name: this.name,
    });
    const eps = fromOther(sample, x0, cur.alpha, cur.sigma);
    this.modelOutputs.shift();
    this.modelOutputs.push(eps);
    const mo = this.modelOutputs;
    const m = (k: number) => mo[mo.length - k] as Float32Array;
    const at = alphaSigma(this.sigmas[i + 1] as number);
    let prev: Float32Array;
    if (c.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      const h = f32(at.lambda - cur.lambda);
      prev = combo([
        [f32(at.alpha / cur.alpha), sample],
        [-f32(at.sigma * f32(f32(Math.exp(h)) - 1)), eps],
      ]);
    } else if (c.solver_order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      const s1 = alphaSigma(this.sigmas[i - 1] as number);
      const rt = f32(at.sigma / at.alpha);
      const r0 = f32(cur.sigma / cur.alpha);
      const r1 = f32(s1.sigma / s1.alpha);
      const ind = (tt: number, b: number, cc: number) =>
        (tt * (-Math.log(cc) + Math.log(tt) - 1)) / (Math.log(b) - Math.log(cc));
      const coef1 = f32(ind(rt, r0, r1) - ind(r0, r0, r1));
      const coef2 = f32(ind(rt, r1, r0) - ind(r0, r1, r0));
      const inner = combo([
        [f32(1 / cur.alpha), sample],
        [coef1, m(1)],
        [coef2, m(2)],
      ]);
      prev = scaled(inner, at.alpha);
    } else {
      const s1 = alphaSigma(this.sigmas[i - 1] as number);
      const s2 = alphaSigma(this.sigmas[i - 2] as number);
      const rt = f32(at.sigma / at.alpha);
      const r0 = f32(cur.sigma / cur.alpha);
      const r1 = f32(s1.sigma / s1.alpha);
      const r2 = f32(s2.sigma / s2.alpha);
      const L = Math.log;
      const ind = (tt: number, b: number, cc: number, d: number) =>
        (tt * (L(cc) * (L(d) - L(tt) + 1) - L(d) * L(tt) + L(d) + L(tt) ** 2 - 2 * L(tt) + 2)) /
        ((L(b) - L(cc)) * (L(b) - L(d)));
      const coef1 = f32(ind(rt, r0, r1, r2) - ind(r0, r0, r1, r2));
      const coef2 = f32(ind(rt, r1, r2, r0) - ind(r0, r1, r2, r0));
      const coef3 = f32(ind(rt, r2, r0, r1) - ind(r0, r2, r0, r1));
      const inner = combo([
        [f32(1 / cur.alpha), sample],
        [coef1, m(1)],
        [coef2, m(2)],
        [coef3, m(3)],
      ]);
      prev = scaled(inner, at.alpha);
    }
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample: prev };
  }
}
