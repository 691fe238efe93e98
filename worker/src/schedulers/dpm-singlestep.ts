/** Port of diffusers' DPMSolverSinglestepScheduler (scheduling_dpmsolver_singlestep.py). */
import {
  type AlphaSchedule,
  assertSameLength,
  checkInferenceSteps,
  combo,
  divided,
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
  sub,
  UNSUPPORTED_FLOW_OPTIONS,
  UNSUPPORTED_SIGMA_SCHEDULES,
} from "./common.ts";
import { type DpmAlgorithm, resolveAlgorithm, resolveSolverType } from "./dpm-multistep.ts";
import { alphaSigma, dataPrediction, noisePrediction, SolverBase, solverSchedule } from "./solver-common.ts";

export const DPM_SINGLESTEP_DEFAULTS = {
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
  algorithm_type: "dpmsolver++",
  solver_type: "midpoint",
  lower_order_final: false,
  use_karras_sigmas: false,
  final_sigmas_type: "zero",
  lambda_min_clipped: Number.NEGATIVE_INFINITY,
  variance_type: null as string | null,
};

export class DPMSolverSinglestepScheduler extends SolverBase {
  readonly name = "DPMSolverSinglestepScheduler";
  readonly config: typeof DPM_SINGLESTEP_DEFAULTS;
  readonly algorithm: DpmAlgorithm;
  orderList: number[] = [];
  private readonly alphaSchedule: AlphaSchedule;
  private readonly predictionType: PredictionType;
  private readonly solverType: "midpoint" | "heun";
  private readonly finalSigma: "zero" | "sigma_min";
  private lowerOrderFinal: boolean;
  private modelOutputs: (Float32Array | null)[] = [];
  private anchor: Float32Array | null = null;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, DPM_SINGLESTEP_DEFAULTS, raw, {
      ...UNSUPPORTED_SIGMA_SCHEDULES,
      ...UNSUPPORTED_FLOW_OPTIONS,
    });
    const c = this.config;
    this.alphaSchedule = makeAlphaSchedule(this.name, c);
    this.predictionType = oneOf(this.name, "prediction_type", c.prediction_type, PREDICTION_TYPES);
    this.algorithm = resolveAlgorithm(this.name, c.algorithm_type, [
      "dpmsolver",
      "dpmsolver++",
      "sde-dpmsolver++",
    ]);
    this.solverType = resolveSolverType(this.name, c.solver_type);
    this.finalSigma = oneOf(this.name, "final_sigmas_type", c.final_sigmas_type, ["zero", "sigma_min"]);
    if (![1, 2, 3].includes(c.solver_order)) {
      throw new SchedulerConfigError(`${this.name}: solver_order must be 1, 2 or 3, got ${c.solver_order}`);
    }
    if (this.algorithm === "dpmsolver" && this.finalSigma === "zero") {
      throw new SchedulerConfigError(
        `${this.name}: final_sigmas_type "zero" is not supported for algorithm_type "dpmsolver"; use "sigma_min"`,
      );
    }
    if (this.algorithm === "sde-dpmsolver++" && c.solver_order === 3) {
      throw new SchedulerConfigError(`${this.name}: solver_order 3 is not supported for "sde-dpmsolver++"`);
    }
    this.lowerOrderFinal = c.lower_order_final;
    this.modelOutputs = new Array(c.solver_order).fill(null);
  }

  /** diffusers' get_order_list. */
  getOrderList(steps: number): number[] {
    const order = this.config.solver_order;
    const rep = (pattern: number[], times: number) =>
      Array.from({ length: Math.max(0, times) }, () => pattern).flat();
    let orders: number[];
    if (this.lowerOrderFinal) {
      if (order === 3) {
        if (steps % 3 === 0) orders = [...rep([1, 2, 3], Math.floor(steps / 3) - 1), 1, 2, 1];
        else if (steps % 3 === 1) orders = [...rep([1, 2, 3], Math.floor(steps / 3)), 1];
        else orders = [...rep([1, 2, 3], Math.floor(steps / 3)), 1, 2];
      } else if (order === 2) {
        if (steps % 2 === 0) orders = [...rep([1, 2], steps / 2 - 1), 1, 1];
        else orders = [...rep([1, 2], Math.floor(steps / 2)), 1];
      } else orders = rep([1], steps);
    } else if (order === 3) orders = rep([1, 2, 3], Math.floor(steps / 3));
    else if (order === 2) orders = rep([1, 2], Math.floor(steps / 2));
    else orders = rep([1], steps);
    if (this.finalSigma === "zero" && orders.length > 0) orders[orders.length - 1] = 1;
    return orders;
  }

  setTimesteps(n: number): void {
    checkInferenceSteps(this.name, n, this.config.num_train_timesteps);
    const s = solverSchedule({
      alphaSchedule: this.alphaSchedule,
      spacing: "linspace",
      numTrain: this.config.num_train_timesteps,
      n,
      stepsOffset: 0,
      karras: this.config.use_karras_sigmas,
      finalSigma: this.finalSigma,
      lambdaMinClipped: this.config.lambda_min_clipped,
    });
    this.timesteps = s.timesteps;
    this.sigmas = s.sigmas;
    this.numInferenceSteps = n;
    this.modelOutputs = new Array(this.config.solver_order).fill(null);
    this.anchor = null;
    // diffusers switches lower_order_final on (with a warning) when the steps do not divide evenly
    if (!this.lowerOrderFinal && (n % this.config.solver_order !== 0 || this.finalSigma === "zero")) {
      this.lowerOrderFinal = true;
    }
    this.orderList = this.getOrderList(n);
    this.stepIndex = null;
    this.beginIndex = null;
  }

  private convert(
    modelOutput: Float32Array,
    sample: Float32Array,
    i: number,
    opts: StepOptions,
  ): Float32Array {
    const threshold = {
      enabled: this.config.thresholding,
      ratio: this.config.dynamic_thresholding_ratio,
      maxValue: this.config.sample_max_value,
      shape: opts.shape,
      name: this.name,
    };
    const sigma = this.sigmas[i] as number;
    if (this.algorithm === "dpmsolver") {
      return noisePrediction(this.predictionType, modelOutput, sample, sigma, threshold);
    }
    return dataPrediction(this.predictionType, modelOutput, sample, sigma, threshold);
  }

  private update(sample: Float32Array, i: number, order: number, noise: Float32Array | null): Float32Array {
    const mo = this.modelOutputs;
    const m = (k: number) => mo[mo.length - k] as Float32Array;
    const t = alphaSigma(this.sigmas[i + 1] as number);
    const mid = this.solverType === "midpoint";
    if (order === 1) {
      const s = alphaSigma(this.sigmas[i] as number);
      const h = f32(t.lambda - s.lambda);
      if (this.algorithm === "dpmsolver++") {
        return combo([
          [f32(t.sigma / s.sigma), sample],
          [-f32(t.alpha * f32(f32(Math.exp(-h)) - 1)), m(1)],
        ]);
      }
      if (this.algorithm === "dpmsolver") {
        return combo([
          [f32(t.alpha / s.alpha), sample],
          [-f32(t.sigma * f32(f32(Math.exp(h)) - 1)), m(1)],
        ]);
      }
      const e2 = f32(1 - f32(Math.exp(-2 * h)));
      return combo([
        [f32(f32(t.sigma / s.sigma) * f32(Math.exp(-h))), sample],
        [f32(t.alpha * e2), m(1)],
        [f32(t.sigma * f32(Math.sqrt(e2))), noise as Float32Array],
      ]);
    }
    if (order === 2) {
      const s0 = alphaSigma(this.sigmas[i] as number);
      const s1 = alphaSigma(this.sigmas[i - 1] as number);
      const h = f32(t.lambda - s1.lambda);
      const h0 = f32(s0.lambda - s1.lambda);
      const r0 = f32(h0 / h);
      const D0 = m(2);
      const D1 = combo([[f32(1 / r0), sub(m(1), m(2))]]);
      const emh1 = f32(f32(Math.exp(-h)) - 1);
      const eh1 = f32(f32(Math.exp(h)) - 1);
      if (this.algorithm === "dpmsolver++") {
        return combo([
          [f32(t.sigma / s1.sigma), sample],
          [-f32(t.alpha * emh1), D0],
          mid ? [-f32(0.5 * f32(t.alpha * emh1)), D1] : [f32(t.alpha * f32(f32(emh1 / h) + 1)), D1],
        ]);
      }
      if (this.algorithm === "dpmsolver") {
        return combo([
          [f32(t.alpha / s1.alpha), sample],
          [-f32(t.sigma * eh1), D0],
          mid ? [-f32(0.5 * f32(t.sigma * eh1)), D1] : [-f32(t.sigma * f32(f32(eh1 / h) - 1)), D1],
        ]);
      }
      const e2 = f32(1 - f32(Math.exp(-2 * h)));
      return combo([
        [f32(f32(t.sigma / s1.sigma) * f32(Math.exp(-h))), sample],
        [f32(t.alpha * e2), D0],
        mid ? [f32(0.5 * f32(t.alpha * e2)), D1] : [f32(t.alpha * f32(f32(e2 / f32(-2 * h)) + 1)), D1],
        [f32(t.sigma * f32(Math.sqrt(e2))), noise as Float32Array],
      ]);
    }
    const s0 = alphaSigma(this.sigmas[i] as number);
    const s1 = alphaSigma(this.sigmas[i - 1] as number);
    const s2 = alphaSigma(this.sigmas[i - 2] as number);
    const h = f32(t.lambda - s2.lambda);
    const h0 = f32(s0.lambda - s2.lambda);
    const h1 = f32(s1.lambda - s2.lambda);
    const r0 = f32(h0 / h);
    const r1 = f32(h1 / h);
    const D0 = m(3);
    const D10 = combo([[f32(1 / r1), sub(m(2), m(3))]]);
    const D11 = combo([[f32(1 / r0), sub(m(1), m(3))]]);
    const D1 = divided(
      combo([
        [r0, D10],
        [-r1, D11],
      ]),
      f32(r0 - r1),
    );
    const D2 = divided(combo([[2, sub(D11, D10)]]), f32(r0 - r1));
    const emh1 = f32(f32(Math.exp(-h)) - 1);
    const eh1 = f32(f32(Math.exp(h)) - 1);
    const h2 = f32(h * h);
    if (this.algorithm === "dpmsolver++") {
      return mid
        ? combo([
            [f32(t.sigma / s2.sigma), sample],
            [-f32(t.alpha * emh1), D0],
            [f32(t.alpha * f32(f32(emh1 / h) + 1)), D11],
          ])
        : combo([
            [f32(t.sigma / s2.sigma), sample],
            [-f32(t.alpha * emh1), D0],
            [f32(t.alpha * f32(f32(emh1 / h) + 1)), D1],
            [-f32(t.alpha * f32(f32(f32(emh1 + h) / h2) - 0.5)), D2],
          ]);
    }
    return mid
      ? combo([
          [f32(t.alpha / s2.alpha), sample],
          [-f32(t.sigma * eh1), D0],
          [-f32(t.sigma * f32(f32(eh1 / h) - 1)), D11],
        ])
      : combo([
          [f32(t.alpha / s2.alpha), sample],
          [-f32(t.sigma * eh1), D0],
          [-f32(t.sigma * f32(f32(eh1 / h) - 1)), D1],
          [-f32(t.sigma * f32(f32(f32(eh1 - h) / h2) - 0.5)), D2],
        ]);
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    assertSameLength(this.name, modelOutput, sample);
    const i = this.stepIndexFor(t);
    const converted = this.convert(modelOutput, sample, i, opts);
    this.modelOutputs.shift();
    this.modelOutputs.push(converted);
    const noise =
      this.algorithm === "sde-dpmsolver++"
        ? (opts.varianceNoise ?? randn(sample.length, opts.generator, this.name))
        : null;
    let order = this.orderList[i] ?? 1;
    // img2img may start at a higher order; fall back until enough model outputs exist
    while (this.modelOutputs[this.modelOutputs.length - order] === null) order--;
    if (order === 1) this.anchor = sample;
    const prev = this.update(this.anchor as Float32Array, i, order, noise);
    this.stepIndex = i + 1;
    return { prevSample: prev };
  }
}
