/** Port of diffusers' DPMSolverMultistepScheduler (scheduling_dpmsolver_multistep.py). */
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
  randn,
  SchedulerConfigError,
  type StepOptions,
  type StepResult,
  sub,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
  UNSUPPORTED_FLOW_OPTIONS,
  UNSUPPORTED_SIGMA_SCHEDULES,
} from "./common.ts";
import { alphaSigma, dataPrediction, noisePrediction, SolverBase, solverSchedule } from "./solver-common.ts";

export type DpmAlgorithm = "dpmsolver" | "dpmsolver++" | "sde-dpmsolver" | "sde-dpmsolver++";

/**
 * `algorithm_type` values accepted in a config. diffusers has no "dpmsolver+++"; the orchestrator's seed uses
 * it for DPM++ SDE (the "DPM++ 2M SDE" sampler), so it is read as an alias of "sde-dpmsolver++". "deis" maps to
 * "dpmsolver++" as in diffusers.
 */
export const DPM_ALGORITHM_ALIASES: Readonly<Record<string, DpmAlgorithm>> = {
  dpmsolver: "dpmsolver",
  "dpmsolver++": "dpmsolver++",
  "sde-dpmsolver": "sde-dpmsolver",
  "sde-dpmsolver++": "sde-dpmsolver++",
  "dpmsolver+++": "sde-dpmsolver++",
  deis: "dpmsolver++",
};

export function resolveAlgorithm(
  name: string,
  value: unknown,
  allowed: readonly DpmAlgorithm[],
): DpmAlgorithm {
  const alg = typeof value === "string" ? DPM_ALGORITHM_ALIASES[value] : undefined;
  if (alg === undefined || !allowed.includes(alg)) {
    throw new SchedulerConfigError(
      `${name}: algorithm_type ${JSON.stringify(value)} is not supported; choose one of ${[...allowed, "dpmsolver+++"].map((a) => `"${a}"`).join(", ")}`,
    );
  }
  return alg;
}

export function resolveSolverType(name: string, value: unknown): "midpoint" | "heun" {
  if (value === "midpoint" || value === "heun") return value;
  if (value === "logrho" || value === "bh1" || value === "bh2") return "midpoint";
  throw new SchedulerConfigError(
    `${name}: solver_type ${JSON.stringify(value)} is not supported; choose "midpoint" or "heun"`,
  );
}

export const DPM_MULTISTEP_DEFAULTS = {
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
  lower_order_final: true,
  euler_at_final: false,
  use_karras_sigmas: false,
  final_sigmas_type: "zero",
  lambda_min_clipped: Number.NEGATIVE_INFINITY,
  variance_type: null as string | null,
  timestep_spacing: "linspace",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

export class DPMSolverMultistepScheduler extends SolverBase {
  readonly name = "DPMSolverMultistepScheduler";
  readonly config: typeof DPM_MULTISTEP_DEFAULTS;
  readonly algorithm: DpmAlgorithm;
  private readonly alphaSchedule: AlphaSchedule;
  private readonly predictionType: PredictionType;
  private readonly solverType: "midpoint" | "heun";
  private readonly spacing: TimestepSpacing;
  private readonly finalSigma: "zero" | "sigma_min";
  private modelOutputs: (Float32Array | null)[] = [];
  private lowerOrderNums = 0;

  constructor(raw?: RawConfig) {
    super();
    this.config = mergeConfig(this.name, DPM_MULTISTEP_DEFAULTS, raw, {
      ...UNSUPPORTED_SIGMA_SCHEDULES,
      use_lu_lambdas: false,
      ...UNSUPPORTED_FLOW_OPTIONS,
    });
    const c = this.config;
    this.alphaSchedule = makeAlphaSchedule(this.name, c, { zeroSnrTerminal: true });
    this.predictionType = oneOf(this.name, "prediction_type", c.prediction_type, PREDICTION_TYPES);
    this.algorithm = resolveAlgorithm(this.name, c.algorithm_type, [
      "dpmsolver",
      "dpmsolver++",
      "sde-dpmsolver",
      "sde-dpmsolver++",
    ]);
    this.solverType = resolveSolverType(this.name, c.solver_type);
    this.spacing = oneOf(this.name, "timestep_spacing", c.timestep_spacing, TIMESTEP_SPACINGS);
    this.finalSigma = oneOf(this.name, "final_sigmas_type", c.final_sigmas_type, ["zero", "sigma_min"]);
    if (![1, 2, 3].includes(c.solver_order)) {
      throw new SchedulerConfigError(`${this.name}: solver_order must be 1, 2 or 3, got ${c.solver_order}`);
    }
    if (c.variance_type !== null && c.variance_type !== "learned" && c.variance_type !== "learned_range") {
      throw new SchedulerConfigError(
        `${this.name}: variance_type must be null, "learned" or "learned_range"`,
      );
    }
    if (
      (this.algorithm === "dpmsolver" || this.algorithm === "sde-dpmsolver") &&
      this.finalSigma === "zero"
    ) {
      throw new SchedulerConfigError(
        `${this.name}: final_sigmas_type "zero" is not supported for algorithm_type "${this.algorithm}"; use "sigma_min"`,
      );
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
      lambdaMinClipped: this.config.lambda_min_clipped,
    });
    this.timesteps = s.timesteps;
    this.sigmas = s.sigmas;
    this.numInferenceSteps = s.timesteps.length;
    this.modelOutputs = new Array(this.config.solver_order).fill(null);
    this.lowerOrderNums = 0;
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
    if (this.algorithm === "dpmsolver++" || this.algorithm === "sde-dpmsolver++") {
      return dataPrediction(this.predictionType, modelOutput, sample, sigma, threshold);
    }
    return noisePrediction(this.predictionType, modelOutput, sample, sigma, threshold);
  }

  private firstOrder(
    m: Float32Array,
    sample: Float32Array,
    i: number,
    noise: Float32Array | null,
  ): Float32Array {
    const t = alphaSigma(this.sigmas[i + 1] as number);
    const s = alphaSigma(this.sigmas[i] as number);
    const h = f32(t.lambda - s.lambda);
    const emh = f32(Math.exp(-h));
    const eh = f32(Math.exp(h));
    switch (this.algorithm) {
      case "dpmsolver++":
        return combo([
          [f32(t.sigma / s.sigma), sample],
          [-f32(t.alpha * f32(emh - 1)), m],
        ]);
      case "dpmsolver":
        return combo([
          [f32(t.alpha / s.alpha), sample],
          [-f32(t.sigma * f32(eh - 1)), m],
        ]);
      case "sde-dpmsolver++": {
        const e2 = f32(Math.exp(-2 * h));
        return combo([
          [f32(f32(t.sigma / s.sigma) * emh), sample],
          [f32(t.alpha * f32(1 - e2)), m],
          [f32(t.sigma * f32(Math.sqrt(f32(1 - e2)))), noise as Float32Array],
        ]);
      }
      case "sde-dpmsolver":
        return combo([
          [f32(t.alpha / s.alpha), sample],
          [-f32(2 * f32(t.sigma * f32(eh - 1))), m],
          [f32(t.sigma * f32(Math.sqrt(f32(f32(Math.exp(2 * h)) - 1)))), noise as Float32Array],
        ]);
    }
  }

  private secondOrder(sample: Float32Array, i: number, noise: Float32Array | null): Float32Array {
    const t = alphaSigma(this.sigmas[i + 1] as number);
    const s0 = alphaSigma(this.sigmas[i] as number);
    const s1 = alphaSigma(this.sigmas[i - 1] as number);
    const mo = this.modelOutputs;
    const m0 = mo[mo.length - 1] as Float32Array;
    const m1 = mo[mo.length - 2] as Float32Array;
    const h = f32(t.lambda - s0.lambda);
    const h0 = f32(s0.lambda - s1.lambda);
    const r0 = f32(h0 / h);
    const D0 = m0;
    const D1 = combo([[f32(1 / r0), sub(m0, m1)]]);
    const emh1 = f32(f32(Math.exp(-h)) - 1);
    const eh1 = f32(f32(Math.exp(h)) - 1);
    const e2 = f32(1 - f32(Math.exp(-2 * h)));
    const mid = this.solverType === "midpoint";
    switch (this.algorithm) {
      case "dpmsolver++":
        return combo([
          [f32(t.sigma / s0.sigma), sample],
          [-f32(t.alpha * emh1), D0],
          mid ? [-f32(0.5 * f32(t.alpha * emh1)), D1] : [f32(t.alpha * f32(f32(emh1 / h) + 1)), D1],
        ]);
      case "dpmsolver":
        return combo([
          [f32(t.alpha / s0.alpha), sample],
          [-f32(t.sigma * eh1), D0],
          mid ? [-f32(0.5 * f32(t.sigma * eh1)), D1] : [-f32(t.sigma * f32(f32(eh1 / h) - 1)), D1],
        ]);
      case "sde-dpmsolver++":
        return combo([
          [f32(f32(t.sigma / s0.sigma) * f32(Math.exp(-h))), sample],
          [f32(t.alpha * e2), D0],
          mid ? [f32(0.5 * f32(t.alpha * e2)), D1] : [f32(t.alpha * f32(f32(e2 / f32(-2 * h)) + 1)), D1],
          [f32(t.sigma * f32(Math.sqrt(e2))), noise as Float32Array],
        ]);
      case "sde-dpmsolver": {
        const amp = f32(t.sigma * f32(Math.sqrt(f32(f32(Math.exp(2 * h)) - 1))));
        return combo([
          [f32(t.alpha / s0.alpha), sample],
          [-f32(2 * f32(t.sigma * eh1)), D0],
          mid ? [-f32(t.sigma * eh1), D1] : [-f32(2 * f32(t.sigma * f32(f32(eh1 / h) - 1))), D1],
          [amp, noise as Float32Array],
        ]);
      }
    }
  }

  private thirdOrder(sample: Float32Array, i: number, noise: Float32Array | null): Float32Array {
    const t = alphaSigma(this.sigmas[i + 1] as number);
    const s0 = alphaSigma(this.sigmas[i] as number);
    const s1 = alphaSigma(this.sigmas[i - 1] as number);
    const s2 = alphaSigma(this.sigmas[i - 2] as number);
    const mo = this.modelOutputs;
    const m0 = mo[mo.length - 1] as Float32Array;
    const m1 = mo[mo.length - 2] as Float32Array;
    const m2 = mo[mo.length - 3] as Float32Array;
    const h = f32(t.lambda - s0.lambda);
    const h0 = f32(s0.lambda - s1.lambda);
    const h1 = f32(s1.lambda - s2.lambda);
    const r0 = f32(h0 / h);
    const r1 = f32(h1 / h);
    const D0 = m0;
    const D10 = combo([[f32(1 / r0), sub(m0, m1)]]);
    const D11 = combo([[f32(1 / r1), sub(m1, m2)]]);
    const D1 = combo([
      [1, D10],
      [f32(r0 / f32(r0 + r1)), sub(D10, D11)],
    ]);
    const D2 = combo([[f32(1 / f32(r0 + r1)), sub(D10, D11)]]);
    const emh1 = f32(f32(Math.exp(-h)) - 1);
    const eh1 = f32(f32(Math.exp(h)) - 1);
    const h2 = f32(h * h);
    switch (this.algorithm) {
      case "dpmsolver++":
        return combo([
          [f32(t.sigma / s0.sigma), sample],
          [-f32(t.alpha * emh1), D0],
          [f32(t.alpha * f32(f32(emh1 / h) + 1)), D1],
          [-f32(t.alpha * f32(f32(f32(emh1 + h) / h2) - 0.5)), D2],
        ]);
      case "dpmsolver":
        return combo([
          [f32(t.alpha / s0.alpha), sample],
          [-f32(t.sigma * eh1), D0],
          [-f32(t.sigma * f32(f32(eh1 / h) - 1)), D1],
          [-f32(t.sigma * f32(f32(f32(eh1 - h) / h2) - 0.5)), D2],
        ]);
      case "sde-dpmsolver++": {
        const e2 = f32(1 - f32(Math.exp(-2 * h)));
        return combo([
          [f32(f32(t.sigma / s0.sigma) * f32(Math.exp(-h))), sample],
          [f32(t.alpha * e2), D0],
          [f32(t.alpha * f32(f32(e2 / f32(-2 * h)) + 1)), D1],
          [f32(t.alpha * f32(f32(f32(e2 - f32(2 * h)) / f32(f32(2 * h) * f32(2 * h))) - 0.5)), D2],
          [f32(t.sigma * f32(Math.sqrt(e2))), noise as Float32Array],
        ]);
      }
      case "sde-dpmsolver":
        throw new Error(`${this.name}: solver_order 3 is not supported for algorithm_type "sde-dpmsolver"`);
    }
  }

  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts: StepOptions = {}): StepResult {
    this.requireTimesteps();
    let mo = modelOutput;
    const learned = this.config.variance_type === "learned" || this.config.variance_type === "learned_range";
    if (learned && this.predictionType === "epsilon" && modelOutput.length === 2 * sample.length) {
      if (!opts.shape)
        throw new RangeError(`${this.name}: learned variance needs opts.shape to split the output`);
      const per = sample.length / opts.shape[0];
      mo = new Float32Array(sample.length);
      for (let b = 0; b < opts.shape[0]; b++)
        mo.set(modelOutput.subarray(2 * b * per, 2 * b * per + per), b * per);
    }
    assertSameLength(this.name, mo, sample);
    const i = this.stepIndexFor(t);
    const nT = this.timesteps.length;
    const c = this.config;
    const lowerOrderFinal =
      i === nT - 1 && (c.euler_at_final || (c.lower_order_final && nT < 15) || this.finalSigma === "zero");
    const lowerOrderSecond = i === nT - 2 && c.lower_order_final && nT < 15;
    const converted = this.convert(mo, sample, i, opts);
    this.modelOutputs.shift();
    this.modelOutputs.push(converted);
    const sde = this.algorithm === "sde-dpmsolver" || this.algorithm === "sde-dpmsolver++";
    const noise = sde ? (opts.varianceNoise ?? randn(sample.length, opts.generator, this.name)) : null;
    let prev: Float32Array;
    if (c.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      prev = this.firstOrder(converted, sample, i, noise);
    } else if (c.solver_order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      prev = this.secondOrder(sample, i, noise);
    } else {
      prev = this.thirdOrder(sample, i, noise);
    }
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++;
    this.stepIndex = i + 1;
    return { prevSample: prev };
  }
}
