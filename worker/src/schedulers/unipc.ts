/** Port of diffusers' UniPCMultistepScheduler (scheduling_unipc_multistep.py): UniP predictor + UniC corrector. */
import {
  type AlphaSchedule,
  assertSameLength,
  checkInferenceSteps,
  combo,
  f32,
  makeAlphaSchedule,
  mergeConfig,
  oneOf,
  PREDICTION_TYPES,
  type PredictionType,
  type RawConfig,
  SchedulerConfigError,
  type StepOptions,
  type StepResult,
  solveLinear,
  sub,
  subDiv,
  subScaled,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  UNSUPPORTED_FLOW_OPTIONS,
  UNSUPPORTED_SIGMA_SCHEDULES,
} from "./common.ts";
import { alphaSigma, dataPrediction, noisePrediction, SolverBase, solverSchedule } from "./solver-common.ts";

export const UNIPC_DEFAULTS = {
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
  predict_x0: true,
  solver_type: "bh2",
  lower_order_final: true,
  disable_corrector: [] as number[],
  use_karras_sigmas: false,
  timestep_spacing: "linspace",
  steps_offset: 0,
  final_sigmas_type: "zero",
  rescale_betas_zero_snr: false,
};

export class UniPCMultistepScheduler extends SolverBase {
  readonly name = "UniPCMultistepScheduler";
  readonly config: typeof UNIPC_DEFAULTS;
  private readonly alphaSchedule: AlphaSchedule;
  private readonly predictionType: PredictionType;
  private readonly solverType: "bh1" | "bh2";
  private readonly spacing: TimestepSpacing;
  private readonly finalSigma: "zero" | "sigma_min";
  private modelOutputs: (Float32Array | null)[] = [];
  private lowerOrderNums = 0;
  private lastSample: Float32Array | null = null;
  private thisOrder = 1;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, UNIPC_DEFAULTS, raw, {
      solver_p: null,
      ...UNSUPPORTED_SIGMA_SCHEDULES,
      ...UNSUPPORTED_FLOW_OPTIONS,
      sigma_min: null,
      sigma_max: null,
      shift_terminal: null,
    });
    const c = this.config;
    this.alphaSchedule = makeAlphaSchedule(this.name, c, { zeroSnrTerminal: true });
    this.predictionType = oneOf(this.name, "prediction_type", c.prediction_type, PREDICTION_TYPES);
    if (c.solver_type === "bh1" || c.solver_type === "bh2") this.solverType = c.solver_type;
    else if (["midpoint", "heun", "logrho"].includes(c.solver_type)) this.solverType = "bh2";
    else {
      throw new SchedulerConfigError(
        `${this.name}: solver_type ${JSON.stringify(c.solver_type)} is not supported; choose "bh1" or "bh2"`,
      );
    }
    this.spacing = oneOf(this.name, "timestep_spacing", c.timestep_spacing, TIMESTEP_SPACINGS);
    this.finalSigma = oneOf(this.name, "final_sigmas_type", c.final_sigmas_type, ["zero", "sigma_min"]);
    if (!Number.isInteger(c.solver_order) || c.solver_order < 1) {
      throw new SchedulerConfigError(`${this.name}: solver_order must be a positive integer`);
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
      finalSigma: this.finalSigma,
    });
    this.timesteps = s.timesteps;
    this.sigmas = s.sigmas;
    this.numInferenceSteps = s.timesteps.length;
    this.modelOutputs = new Array(this.config.solver_order).fill(null);
    this.lowerOrderNums = 0;
    this.lastSample = null;
    this.stepIndex = null;
    this.beginIndex = null;
  }

  /** R (powers of rks) and b (phi-function coefficients) of the UniPC linear systems. */
  private coefficients(rks: number[], h: number, order: number) {
    const hh = this.config.predict_x0 ? -h : h;
    const hPhi1 = f32(Math.expm1(hh));
    let hPhiK = f32(f32(hPhi1 / hh) - 1);
    let factorial = 1;
    const Bh = this.solverType === "bh1" ? hh : f32(Math.expm1(hh));
    const R: number[][] = [];
    const b: number[] = [];
    for (let k = 1; k <= order; k++) {
      R.push(rks.map((r) => f32(r ** (k - 1))));
      b.push(f32(f32(hPhiK * factorial) / Bh));
      factorial *= k + 1;
      hPhiK = f32(f32(hPhiK / hh) - 1 / factorial);
    }
    return { R, b, hPhi1, Bh };
  }

  private predictor(sample: Float32Array, i: number, order: number): Float32Array {
    const mo = this.modelOutputs;
    const m0 = mo[mo.length - 1] as Float32Array;
    const t = alphaSigma(this.sigmas[i + 1] as number);
    const s0 = alphaSigma(this.sigmas[i] as number);
    const h = f32(t.lambda - s0.lambda);
    const rks: number[] = [];
    const D1s: Float32Array[] = [];
    for (let k = 1; k < order; k++) {
      const si = alphaSigma(this.sigmas[i - k] as number);
      const mi = mo[mo.length - (k + 1)] as Float32Array;
      const rk = f32(f32(si.lambda - s0.lambda) / h);
      rks.push(rk);
      D1s.push(subDiv(mi, m0, rk));
    }
    rks.push(1);
    const { R, b, hPhi1, Bh } = this.coefficients(rks, h, order);
    let rhos: number[] = [];
    if (D1s.length > 0) {
      rhos =
        order === 2
          ? [0.5]
          : solveLinear(
              R.slice(0, -1).map((row) => row.slice(0, -1)),
              b.slice(0, -1),
            ).map(f32);
    }
    const px0 = this.config.predict_x0;
    const base = px0
      ? combo([
          [f32(t.sigma / s0.sigma), sample],
          [-f32(f32(t.alpha * hPhi1)), m0],
        ])
      : combo([
          [f32(t.alpha / s0.alpha), sample],
          [-f32(f32(t.sigma * hPhi1)), m0],
        ]);
    if (D1s.length === 0) return base;
    const predRes = combo(D1s.map((d, k) => [rhos[k] as number, d] as const));
    const coeff = f32((px0 ? t.alpha : t.sigma) * Bh);
    return subScaled(base, coeff, predRes);
  }

  private corrector(
    modelT: Float32Array,
    lastSample: Float32Array,
    thisSample: Float32Array,
    i: number,
    order: number,
  ) {
    const mo = this.modelOutputs;
    const m0 = mo[mo.length - 1] as Float32Array;
    const t = alphaSigma(this.sigmas[i] as number);
    const s0 = alphaSigma(this.sigmas[i - 1] as number);
    const h = f32(t.lambda - s0.lambda);
    const rks: number[] = [];
    const D1s: Float32Array[] = [];
    for (let k = 1; k < order; k++) {
      const si = alphaSigma(this.sigmas[i - (k + 1)] as number);
      const mi = mo[mo.length - (k + 1)] as Float32Array;
      const rk = f32(f32(si.lambda - s0.lambda) / h);
      rks.push(rk);
      D1s.push(subDiv(mi, m0, rk));
    }
    rks.push(1);
    const { R, b, hPhi1, Bh } = this.coefficients(rks, h, order);
    const rhos = order === 1 ? [0.5] : solveLinear(R, b).map(f32);
    const px0 = this.config.predict_x0;
    const base = px0
      ? combo([
          [f32(t.sigma / s0.sigma), lastSample],
          [-f32(t.alpha * hPhi1), m0],
        ])
      : combo([
          [f32(t.alpha / s0.alpha), lastSample],
          [-f32(t.sigma * hPhi1), m0],
        ]);
    void thisSample;
    const corrRes = D1s.length > 0 ? combo(D1s.map((d, k) => [rhos[k] as number, d] as const)) : null;
    const D1t = sub(modelT, m0);
    const last = rhos[rhos.length - 1] as number;
    const coeff = f32((px0 ? t.alpha : t.sigma) * Bh);
    const out = new Float32Array(base.length);
    for (let k = 0; k < out.length; k++) {
      const inner = f32((corrRes ? (corrRes[k] as number) : 0) + f32(last * (D1t[k] as number)));
      out[k] = (base[k] as number) - f32(coeff * inner);
    }
    return out;
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.stepIndexFor(t);
    const c = this.config;
    const useCorrector = i > 0 && !c.disable_corrector.includes(i - 1) && this.lastSample !== null;
    const threshold = {
      enabled: c.thresholding,
      ratio: c.dynamic_thresholding_ratio,
      maxValue: c.sample_max_value,
      shape: opts.shape,
      name: this.name,
    };
    const sigma = this.sigmas[i] as number;
    const converted = c.predict_x0
      ? dataPrediction(this.predictionType, modelOutput, sample, sigma, threshold)
      : noisePrediction(this.predictionType, modelOutput, sample, sigma, threshold);
    let x = sample;
    if (useCorrector)
      x = this.corrector(converted, this.lastSample as Float32Array, sample, i, this.thisOrder);
    this.modelOutputs.shift();
    this.modelOutputs.push(converted);
    const order = c.lower_order_final ? Math.min(c.solver_order, this.timesteps.length - i) : c.solver_order;
    this.thisOrder = Math.min(order, this.lowerOrderNums + 1);
    this.lastSample = x;
    const prev = this.predictor(x, i, this.thisOrder);
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample: prev };
  }
}
