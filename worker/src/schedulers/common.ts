/**
 * Shared math for the diffusers scheduler ports.
 *
 * Precision model: diffusers keeps `betas`, `alphas_cumprod` and the sample tensors in torch float32 and
 * builds some schedules (sigmas, timesteps) in numpy float64. Schedule arrays here are `Float64Array`s that
 * hold values rounded to float32 (`Math.fround`) wherever diffusers holds them in float32, and tensors are
 * `Float32Array`s, so the ports reproduce diffusers' numbers closely rather than "better" ones.
 */

export const f32 = Math.fround;

/** A batch shape in NCHW order. */
export type Shape4 = readonly [number, number, number, number];

/** Standard-normal random source (e.g. a seeded PRNG with Box–Muller). */
export type Generator = () => number;

export interface StepOptions {
  /** Source of standard normals for schedulers whose step draws noise. */
  generator?: Generator;
  /** Noise to use instead of drawing from `generator` (diffusers' `variance_noise`). */
  varianceNoise?: Float32Array;
  /** DDIM / DDIM-inverse `eta` (weight of the noise added by the step), default 0. */
  eta?: number;
  /** DDIM `use_clipped_model_output`. */
  useClippedModelOutput?: boolean;
  /** NCHW shape of `sample`; needed where the step works per batch element (thresholding, learned variance). */
  shape?: Shape4;
  /** false: the caller does not read `predOriginalSample`, so a step may leave it out (saves a tensor). */
  predOriginalSample?: boolean;
}

export interface StepResult {
  prevSample: Float32Array;
  predOriginalSample?: Float32Array;
}

export class SchedulerConfigError extends Error {
  override name = "SchedulerConfigError";
}

// ---------------------------------------------------------------------------------------------------------
// Config handling
// ---------------------------------------------------------------------------------------------------------

export type RawConfig = Readonly<Record<string, unknown>>;

/**
 * Merges a diffusers-style snake_case config over defaults. Keys the scheduler does not know (including
 * `_class_name` / `_diffusers_version` and keys of other schedulers) are ignored, as diffusers does.
 * A `null` value means "use the default" (diffusers' `None`), except for keys whose default is `null`.
 *
 * `unsupported` lists options diffusers' class accepts but this port does not implement, with diffusers'
 * default: they appear in the merged config (so it has diffusers' full key set) and any other value is
 * refused, since ignoring it would silently compute something other than what diffusers computes.
 */
export function mergeConfig<
  T extends Record<string, unknown>,
  U extends Record<string, unknown> = Record<never, never>,
>(schedulerName: string, defaults: T, raw: RawConfig | undefined, unsupported?: U): T & U {
  const all: Record<string, unknown> = { ...defaults, ...unsupported };
  const out: Record<string, unknown> = { ...all };
  if (raw === undefined || raw === null) return out as T & U;
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new SchedulerConfigError(`${schedulerName}: config must be an object`);
  }
  for (const [key, value] of Object.entries(raw)) {
    if (!(key in all) || value === undefined) continue;
    const def = all[key];
    if (value === null) {
      out[key] = def;
      continue;
    }
    if (unsupported !== undefined && Object.hasOwn(unsupported, key) && value !== def) {
      throw new SchedulerConfigError(
        `${schedulerName}: config key "${key}" = ${JSON.stringify(value)} is not supported by this port (only diffusers' default ${JSON.stringify(def)})`,
      );
    }
    if (def !== null && def !== undefined && !Array.isArray(def) && typeof def !== typeof value) {
      // allow ints given for floats and vice versa (both numbers in JS); everything else is a type error
      throw new SchedulerConfigError(
        `${schedulerName}: config key "${key}" must be a ${typeof def}, got ${JSON.stringify(value)}`,
      );
    }
    out[key] = value;
  }
  return out as T & U;
}

/** diffusers' alternative sigma schedules (need scipy for beta); this port implements only Karras'. */
export const UNSUPPORTED_SIGMA_SCHEDULES = {
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
} as const;

/** diffusers' flow-matching options of the DPM-Solver family (for flow models, not SD's VP UNet). */
export const UNSUPPORTED_FLOW_OPTIONS = {
  use_flow_sigmas: false,
  flow_shift: 1.0,
  use_dynamic_shifting: false,
  time_shift_type: "exponential",
} as const;

export function oneOf<T extends string>(
  schedulerName: string,
  key: string,
  value: unknown,
  allowed: readonly T[],
): T {
  if (typeof value === "string" && (allowed as readonly string[]).includes(value)) return value as T;
  throw new SchedulerConfigError(
    `${schedulerName}: ${key} ${JSON.stringify(value)} is not supported; choose one of ${allowed.map((a) => `"${a}"`).join(", ")}`,
  );
}

export function positiveInt(schedulerName: string, key: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw new SchedulerConfigError(
      `${schedulerName}: ${key} must be a positive integer, got ${String(value)}`,
    );
  }
  return value;
}

export function finiteNumber(schedulerName: string, key: string, value: unknown): number {
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new SchedulerConfigError(`${schedulerName}: ${key} must be a number, got ${String(value)}`);
  }
  return value;
}

export function checkInferenceSteps(schedulerName: string, n: number, max?: number): void {
  if (!Number.isInteger(n) || n <= 0) {
    throw new SchedulerConfigError(
      `${schedulerName}: num_inference_steps must be a positive integer, got ${n}`,
    );
  }
  if (max !== undefined && n > max) {
    throw new SchedulerConfigError(
      `${schedulerName}: num_inference_steps (${n}) cannot be larger than num_train_timesteps (${max})`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// numpy / torch helpers
// ---------------------------------------------------------------------------------------------------------

/** torch.linspace(start, end, steps, dtype=float32) on CPU (computed in float32, symmetric halves). */
export function torchLinspaceF32(start: number, end: number, steps: number): Float64Array {
  const out = new Float64Array(steps);
  if (steps === 1) {
    out[0] = f32(start);
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1)));
  }
  return out;
}

/** numpy.linspace(start, stop, num, endpoint) in float64. */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): Float64Array {
  const out = new Float64Array(num);
  const div = endpoint ? num - 1 : num;
  const step = div > 0 ? (stop - start) / div : 0;
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/** numpy.arange(start, stop, step) in float64. */
export function npArange(start: number, stop: number, step: number): Float64Array {
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = start + i * step;
  return out;
}

/** numpy's round (half to even). */
export function npRound(x: number): number {
  const r = Math.round(x);
  if (Math.abs(x % 1) === 0.5) return 2 * Math.round(x / 2);
  return r;
}

/** numpy.interp(x, arange(len(fp)), fp). */
export function npInterpIndex(x: number, fp: ArrayLike<number>): number {
  const n = fp.length;
  if (x <= 0) return fp[0] as number;
  if (x >= n - 1) return fp[n - 1] as number;
  const j = Math.floor(x);
  const a = fp[j] as number;
  const b = fp[j + 1] as number;
  const slope = b - a;
  return slope * (x - j) + a;
}

// ---------------------------------------------------------------------------------------------------------
// Beta schedules
// ---------------------------------------------------------------------------------------------------------

export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export const BETA_SCHEDULES: readonly BetaSchedule[] = ["linear", "scaled_linear", "squaredcos_cap_v2"];

/** diffusers' betas_for_alpha_bar (cosine), computed in float64 and stored as float32. */
export function betasForAlphaBar(n: number, maxBeta = 0.999): Float64Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t1 = i / n;
    const t2 = (i + 1) / n;
    out[i] = f32(Math.min(1 - alphaBar(t2) / alphaBar(t1), maxBeta));
  }
  return out;
}

export interface BetaConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: string;
  trained_betas: unknown;
}

/** The `betas` tensor of a diffusers scheduler (float32 values). */
export function makeBetas(name: string, cfg: BetaConfig): Float64Array {
  const n = positiveInt(name, "num_train_timesteps", cfg.num_train_timesteps);
  if (cfg.trained_betas !== null && cfg.trained_betas !== undefined) {
    if (!Array.isArray(cfg.trained_betas) || !cfg.trained_betas.every((b) => typeof b === "number")) {
      throw new SchedulerConfigError(`${name}: trained_betas must be an array of numbers`);
    }
    return Float64Array.from(cfg.trained_betas as number[], (b) => f32(b));
  }
  const schedule = oneOf(name, "beta_schedule", cfg.beta_schedule, BETA_SCHEDULES);
  const start = finiteNumber(name, "beta_start", cfg.beta_start);
  const end = finiteNumber(name, "beta_end", cfg.beta_end);
  switch (schedule) {
    case "linear":
      return torchLinspaceF32(start, end, n);
    case "scaled_linear": {
      const lin = torchLinspaceF32(start ** 0.5, end ** 0.5, n);
      return lin.map((v) => f32(v * v));
    }
    case "squaredcos_cap_v2":
      return betasForAlphaBar(n);
  }
}

/** torch.cumprod(1 - betas) for float32 on CPU (accumulates in double, stores float32). */
export function alphasCumprodFrom(betas: Float64Array): Float64Array {
  const out = new Float64Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= f32(1 - (betas[i] as number));
    out[i] = f32(acc);
  }
  return out;
}

/** diffusers' rescale_zero_terminal_snr (https://arxiv.org/abs/2305.08891, Algorithm 1). */
export function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const ac = alphasCumprodFrom(betas);
  const sqrtAc = ac.map((v) => f32(Math.sqrt(v)));
  const a0 = sqrtAc[0] as number;
  const aT = sqrtAc[sqrtAc.length - 1] as number;
  const scale = f32(a0 / f32(a0 - aT));
  const bar = sqrtAc.map((v) => {
    const s = f32(f32(v - aT) * scale);
    return f32(s * s);
  });
  const out = new Float64Array(betas.length);
  for (let i = 0; i < bar.length; i++) {
    const alpha = i === 0 ? (bar[0] as number) : f32((bar[i] as number) / (bar[i - 1] as number));
    out[i] = f32(1 - alpha);
  }
  return out;
}

export interface AlphaSchedule {
  betas: Float64Array;
  alphas: Float64Array;
  alphasCumprod: Float64Array;
}

export function makeAlphaSchedule(
  name: string,
  cfg: BetaConfig & { rescale_betas_zero_snr?: unknown },
  opts: { zeroSnrTerminal?: boolean } = {},
): AlphaSchedule {
  let betas = makeBetas(name, cfg);
  if (cfg.rescale_betas_zero_snr === true) betas = rescaleZeroTerminalSnr(betas);
  const alphas = betas.map((b) => f32(1 - b));
  const alphasCumprod = alphasCumprodFrom(betas);
  if (cfg.rescale_betas_zero_snr === true && opts.zeroSnrTerminal) {
    // "Close to 0 without being 0 so first sigma is not inf" (diffusers sets 2**-24)
    alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
  }
  return { betas, alphas, alphasCumprod };
}

/** ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5 in float32, as diffusers' sigma schedules. */
export function sigmasFromAlphasCumprod(alphasCumprod: Float64Array): Float64Array {
  return alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

// ---------------------------------------------------------------------------------------------------------
// Timestep spacing
// ---------------------------------------------------------------------------------------------------------

export type TimestepSpacing = "linspace" | "leading" | "trailing";
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ["linspace", "leading", "trailing"];

/**
 * Integer timesteps, descending, as the DDPM/DDIM/LCM family computes them
 * (leading: `arange(n) * (N // n)` + offset; trailing: `round(arange(N, 0, -N/n)) - 1`;
 * linspace: `round(linspace(0, N-1, n))`).
 */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  numTrain: number,
  n: number,
  stepsOffset: number,
): number[] {
  return descendingTimesteps(spacing, numTrain, n, stepsOffset, npRound);
}

/**
 * Float timesteps, descending, as the k-diffusion family (Euler, Heun, LMS, KDPM2) computes them: as
 * `spacedTimesteps` but linspace values are not rounded (`float32` rounds like
 * `np.linspace(..., dtype=np.float32)`).
 */
export function kTimesteps(
  spacing: TimestepSpacing,
  numTrain: number,
  n: number,
  stepsOffset: number,
  float32: boolean,
): number[] {
  return descendingTimesteps(spacing, numTrain, n, stepsOffset, float32 ? f32 : (v) => v);
}

/** The spacings both families share; they differ only in what a linspace value becomes (`linspaceValue`). */
function descendingTimesteps(
  spacing: TimestepSpacing,
  numTrain: number,
  n: number,
  stepsOffset: number,
  linspaceValue: (v: number) => number,
): number[] {
  const out: number[] = [];
  if (spacing === "linspace") {
    const lin = npLinspace(0, numTrain - 1, n);
    for (let i = n - 1; i >= 0; i--) out.push(linspaceValue(lin[i] as number));
  } else if (spacing === "leading") {
    const ratio = Math.floor(numTrain / n);
    for (let i = n - 1; i >= 0; i--) out.push(i * ratio + stepsOffset);
  } else {
    const ratio = numTrain / n;
    for (const v of npArange(numTrain, 0, -ratio)) out.push(npRound(v) - 1);
  }
  return out;
}

/** Timesteps of the multistep solvers (DPM-Solver, DEIS, UniPC): `n + 1` points with the last dropped. */
export function solverTimesteps(
  spacing: TimestepSpacing,
  numTrain: number,
  n: number,
  stepsOffset: number,
  lastTimestep = numTrain,
): number[] {
  const out: number[] = [];
  if (spacing === "linspace") {
    const lin = npLinspace(0, lastTimestep - 1, n + 1);
    for (let i = n; i >= 1; i--) out.push(npRound(lin[i] as number));
  } else if (spacing === "leading") {
    const ratio = Math.floor(lastTimestep / (n + 1));
    for (let i = n; i >= 1; i--) out.push(i * ratio + stepsOffset);
  } else {
    const ratio = numTrain / n;
    for (const v of npArange(lastTimestep, 0, -ratio)) out.push(npRound(v) - 1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Sigma schedules
// ---------------------------------------------------------------------------------------------------------

/** diffusers' _convert_to_karras (rho = 7), in float64. `inSigmas` is descending. */
export function karrasSigmas(
  inSigmas: ArrayLike<number>,
  n: number,
  sigmaMin?: number | null,
  sigmaMax?: number | null,
): Float64Array {
  const sMin = sigmaMin ?? (inSigmas[inSigmas.length - 1] as number);
  const sMax = sigmaMax ?? (inSigmas[0] as number);
  const rho = 7;
  const ramp = npLinspace(0, 1, n);
  const minInv = sMin ** (1 / rho);
  const maxInv = sMax ** (1 / rho);
  return ramp.map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** diffusers' _sigma_to_t: interpolates a (fractional) timestep for `sigma` from the training log-sigmas. */
export function sigmaToT(sigma: number, logSigmas: ArrayLike<number>): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  const m = logSigmas.length;
  // low_idx = cumsum(dists >= 0).argmax() clipped to m - 2: the last index where log_sigma >= log_sigmas[i]
  // (log_sigmas ascending); argmax of a cumsum is the first index reaching the maximum.
  let count = 0;
  let maxCount = 0;
  let lowIdx = 0;
  for (let i = 0; i < m; i++) {
    if (logSigma - (logSigmas[i] as number) >= 0) count++;
    if (count > maxCount) {
      maxCount = count;
      lowIdx = i;
    }
  }
  lowIdx = Math.min(lowIdx, m - 2);
  const highIdx = lowIdx + 1;
  const low = logSigmas[lowIdx] as number;
  const high = logSigmas[highIdx] as number;
  let w = (low - logSigma) / (low - high);
  w = Math.min(Math.max(w, 0), 1);
  return (1 - w) * lowIdx + w * highIdx;
}

/** First index of `t` in `schedule`, or the second when it occurs more than once (diffusers' index_for_timestep). */
export function indexForTimestep(schedule: readonly number[], t: number, fallbackLast = false): number {
  const hits: number[] = [];
  for (let i = 0; i < schedule.length && hits.length < 2; i++) if (schedule[i] === t) hits.push(i);
  if (hits.length === 0) {
    if (fallbackLast) return schedule.length - 1;
    throw new RangeError(`timestep ${t} is not in the scheduler's timesteps`);
  }
  return hits.length > 1 ? (hits[1] as number) : (hits[0] as number);
}

// ---------------------------------------------------------------------------------------------------------
// Tensor helpers (flat Float32Array, NCHW)
// ---------------------------------------------------------------------------------------------------------

export function assertSameLength(name: string, ...arrays: Float32Array[]): void {
  const n = arrays[0]?.length ?? 0;
  for (const a of arrays) {
    if (a.length !== n) throw new RangeError(`${name}: tensors differ in length (${a.length} vs ${n})`);
  }
}

export function randn(n: number, generator: Generator | undefined, name: string): Float32Array {
  if (!generator) throw new Error(`${name}: this step draws noise; pass { generator } (standard normals)`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = generator();
  return out;
}

export function clamp(x: Float32Array, lo: number, hi: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i] as number;
    out[i] = v < lo ? lo : Math.min(v, hi);
  }
  return out;
}

/**
 * `sum_k c_k * x_k` elementwise, rounding like a chain of float32 tensor ops (each product, then each
 * partial sum from the left). One pass, unrolled for up to five terms.
 */
export function combo(terms: readonly (readonly [number, Float32Array])[]): Float32Array {
  const cs = terms.map(([c]) => f32(c));
  const xs = terms.map(([, x]) => x);
  const n = (xs[0] as Float32Array).length;
  const out = new Float32Array(n);
  const [c0 = 0, c1 = 0, c2 = 0, c3 = 0, c4 = 0] = cs;
  const [x0, x1, x2, x3, x4] = xs as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
  // A Float32Array store rounds to float32, as the last f32() of the chain would.
  switch (terms.length) {
    case 1:
      for (let i = 0; i < n; i++) out[i] = c0 * (x0[i] as number);
      return out;
    case 2:
      for (let i = 0; i < n; i++) out[i] = f32(c0 * (x0[i] as number)) + f32(c1 * (x1[i] as number));
      return out;
    case 3:
      for (let i = 0; i < n; i++) {
        const a = f32(f32(c0 * (x0[i] as number)) + f32(c1 * (x1[i] as number)));
        out[i] = a + f32(c2 * (x2[i] as number));
      }
      return out;
    case 4:
      for (let i = 0; i < n; i++) {
        const a = f32(f32(c0 * (x0[i] as number)) + f32(c1 * (x1[i] as number)));
        const b = f32(a + f32(c2 * (x2[i] as number)));
        out[i] = b + f32(c3 * (x3[i] as number));
      }
      return out;
    case 5:
      for (let i = 0; i < n; i++) {
        const a = f32(f32(c0 * (x0[i] as number)) + f32(c1 * (x1[i] as number)));
        const b = f32(a + f32(c2 * (x2[i] as number)));
        const c = f32(b + f32(c3 * (x3[i] as number)));
        out[i] = c + f32(c4 * (x4[i] as number));
      }
      return out;
  }
  for (let i = 0; i < n; i++) {
    let acc = f32(c0 * (x0[i] as number));
    for (let k = 1; k < xs.length; k++)
      acc = f32(acc + f32((cs[k] as number) * ((xs[k] as Float32Array)[i] as number)));
    out[i] = acc;
  }
  return out;
}

/** `a - b` in float32. */
export function sub(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) - (b[i] as number);
  return out;
}

/** `c * x` in float32. */
export function scaled(x: Float32Array, c: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = c * (x[i] as number);
  return out;
}

/** `(sample - alpha * x) / sigma` in float32 (each op rounded): epsilon from x0, or x0 from epsilon. */
export function fromOther(sample: Float32Array, x: Float32Array, alpha: number, sigma: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++)
    out[i] = f32((sample[i] as number) - f32(alpha * (x[i] as number))) / sigma;
  return out;
}

/** `a + b` in float32. */
export function plus(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) + (b[i] as number);
  return out;
}

/** `x / d` in float32. */
export function divided(x: Float32Array, d: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = (x[i] as number) / d;
  return out;
}

/** `a - c * b` in float32 (each op rounded). */
export function subScaled(a: Float32Array, c: number, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) - f32(c * (b[i] as number));
  return out;
}

/** `a + c * b` in float32 (the product rounded, then the sum; `c` as given). */
export function plusScaled(a: Float32Array, c: number, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) + f32(c * (b[i] as number));
  return out;
}

/** `(a - b) / d` in float32 (each op rounded). */
export function subDiv(a: Float32Array, b: Float32Array, d: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f32((a[i] as number) - (b[i] as number)) / d;
  return out;
}

/** Batch size of a flat tensor: from `shape` when given, else 1. */
export function batchOf(length: number, shape: Shape4 | undefined, name: string): number {
  if (!shape) return 1;
  const [n, c, h, w] = shape;
  if (n * c * h * w !== length) {
    throw new RangeError(`${name}: shape [${shape.join(", ")}] does not match ${length} elements`);
  }
  return n;
}

/** torch.quantile(x, q) with linear interpolation, on a copy. */
export function quantile(values: Float32Array, q: number): number {
  const sorted = Float64Array.from(values).sort();
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  const frac = pos - lo;
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return f32(a + frac * (b - a));
}

/** diffusers' _threshold_sample (dynamic thresholding, Imagen), per batch element. */
export function thresholdSample(
  sample: Float32Array,
  ratio: number,
  maxValue: number,
  batch: number,
): Float32Array {
  const out = new Float32Array(sample.length);
  const per = sample.length / batch;
  for (let b = 0; b < batch; b++) {
    const part = sample.subarray(b * per, (b + 1) * per);
    let s = quantile(
      part.map((v) => Math.abs(v)),
      ratio,
    );
    s = Math.min(Math.max(s, 1), maxValue);
    for (let i = 0; i < per; i++) {
      const v = part[i] as number;
      out[b * per + i] = (v < -s ? -s : Math.min(v, s)) / s;
    }
  }
  return out;
}

/** Per-element scalars for a timestep given as one value or one per batch element. */
export function perBatch(
  length: number,
  t: number | readonly number[],
  shape: Shape4 | undefined,
  name: string,
): { ts: number[]; per: number } {
  const ts = typeof t === "number" ? [t] : [...t];
  if (ts.length === 0) throw new RangeError(`${name}: no timesteps given`);
  if (shape) batchOf(length, shape, name);
  if (shape && ts.length !== 1 && ts.length !== shape[0]) {
    throw new RangeError(`${name}: ${ts.length} timesteps for a batch of ${shape[0]}`);
  }
  if (length % ts.length !== 0) {
    throw new RangeError(`${name}: ${length} elements cannot be split over ${ts.length} timesteps`);
  }
  return { ts, per: length / ts.length };
}

/** `a * x + b * y` per batch element, with per-batch coefficients. */
export function combinePerBatch(
  x: Float32Array,
  y: Float32Array,
  coeffs: readonly (readonly [number, number])[],
): Float32Array {
  const out = new Float32Array(x.length);
  const per = x.length / coeffs.length;
  for (let b = 0; b < coeffs.length; b++) {
    const [a, c] = coeffs[b] as readonly [number, number];
    for (let i = b * per; i < (b + 1) * per; i++) {
      out[i] = f32(f32(a * (x[i] as number)) + f32(c * (y[i] as number)));
    }
  }
  return out;
}

/** Gauss–Legendre (10 points) integral on [a, b]; exact for the polynomials of the LMS coefficients. */
export function integrate(fn: (x: number) => number, a: number, b: number): number {
  const nodes = [
    [-0.9739065285171717, 0.0666713443086881],
    [-0.8650633666889845, 0.1494513491505806],
    [-0.6794095682990244, 0.219086362515982],
    [-0.4333953941292472, 0.2692667193099963],
    [-0.1488743389816312, 0.2955242247147529],
    [0.1488743389816312, 0.2955242247147529],
    [0.4333953941292472, 0.2692667193099963],
    [0.6794095682990244, 0.219086362515982],
    [0.8650633666889845, 0.1494513491505806],
    [0.9739065285171717, 0.0666713443086881],
  ] as const;
  const half = (b - a) / 2;
  const mid = (a + b) / 2;
  let sum = 0;
  for (const [x, w] of nodes) sum += w * fn(mid + half * x);
  return sum * half;
}

/** Solves a small dense linear system (Gaussian elimination with partial pivoting). */
export function solveLinear(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i] as number]);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) {
      if (Math.abs((m[r] as number[])[col] as number) > Math.abs((m[piv] as number[])[col] as number))
        piv = r;
    }
    [m[col], m[piv]] = [m[piv] as number[], m[col] as number[]];
    const pr = m[col] as number[];
    for (let r = col + 1; r < n; r++) {
      const row = m[r] as number[];
      const f = (row[col] as number) / (pr[col] as number);
      for (let c = col; c <= n; c++) row[c] = (row[c] as number) - f * (pr[c] as number);
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    const row = m[r] as number[];
    let s = row[n] as number;
    for (let c = r + 1; c < n; c++) s -= (row[c] as number) * (x[c] as number);
    x[r] = s / (row[r] as number);
  }
  return x;
}

/** Abstract base with the pieces every port shares. */
export abstract class SchedulerBase {
  abstract readonly name: string;
  timesteps: number[] = [];
  initNoiseSigma = 1;
  /** diffusers' `order`: model evaluations per entry of `timesteps` (2 for Heun/KDPM2 and KarrasVe). */
  order = 1;
  numInferenceSteps: number | null = null;
  protected stepIndex: number | null = null;
  protected beginIndex: number | null = null;

  /** diffusers' set_begin_index (img2img: the index of the first timestep the loop will use). */
  setBeginIndex(index = 0): void {
    this.beginIndex = index;
  }

  /** Forgets the step counter so the next `step` locates its timestep again (diffusers' `_step_index = None`). */
  resetStepIndex(): void {
    this.stepIndex = null;
  }

  get currentStepIndex(): number | null {
    return this.stepIndex;
  }

  protected requireTimesteps(): void {
    if (this.numInferenceSteps === null) {
      throw new Error(`${this.name}: call setTimesteps(n) before step()`);
    }
  }

  protected initStepIndex(t: number): number {
    if (this.stepIndex === null) {
      this.stepIndex = this.beginIndex === null ? indexForTimestep(this.timesteps, t) : this.beginIndex;
    }
    return this.stepIndex;
  }

  /** The identity here; with `out`, the sample is copied there (the contract: `out` receives the result). */
  scaleModelInput(sample: Float32Array, _t: number, out?: Float32Array): Float32Array {
    if (!out || out === sample) return sample;
    if (out.length !== sample.length) {
      throw new RangeError(
        `${this.name}: scaleModelInput out has ${out.length} elements, not ${sample.length}`,
      );
    }
    out.set(sample);
    return out;
  }
}

/** add_noise of the alphas_cumprod schedulers: `sqrt(a_t) * x0 + sqrt(1 - a_t) * noise`, `t` per batch element. */
export function addNoiseVP(
  alphasCumprod: Float64Array,
  original: Float32Array,
  noise: Float32Array,
  t: number | readonly number[],
  shape: Shape4 | undefined,
  name: string,
): Float32Array {
  assertSameLength(name, original, noise);
  const { ts } = perBatch(original.length, t, shape, name);
  const coeffs = ts.map((ti) => {
    if (!Number.isInteger(ti) || ti < 0 || ti >= alphasCumprod.length) {
      throw new RangeError(`${name}: timestep ${ti} is outside 0..${alphasCumprod.length - 1}`);
    }
    const a = alphasCumprod[ti] as number;
    return [f32(Math.sqrt(a)), f32(Math.sqrt(f32(1 - a)))] as const;
  });
  return combinePerBatch(original, noise, coeffs);
}

/** add_noise of the sigma schedulers (Euler, Heun, LMS, KDPM2): `x0 + sigma * noise`. */
export function addNoiseVE(
  sigmas: ArrayLike<number>,
  indices: readonly number[],
  original: Float32Array,
  noise: Float32Array,
  name: string,
): Float32Array {
  assertSameLength(name, original, noise);
  return combinePerBatch(
    original,
    noise,
    indices.map((i) => [1, sigmas[i] as number] as const),
  );
}

/** x0 prediction of the alphas_cumprod schedulers (epsilon / sample / v_prediction). */
export function predictX0VP(
  prediction: "epsilon" | "sample" | "v_prediction",
  modelOutput: Float32Array,
  sample: Float32Array,
  alphaProdT: number,
): { x0: Float32Array; eps: Float32Array } {
  const betaProdT = f32(1 - alphaProdT);
  const sa = f32(Math.sqrt(alphaProdT));
  const sb = f32(Math.sqrt(betaProdT));
  const n = sample.length;
  const x0 = new Float32Array(n);
  const eps = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const m = modelOutput[i] as number;
    const s = sample[i] as number;
    if (prediction === "epsilon") {
      x0[i] = f32(f32(s - f32(sb * m)) / sa);
      eps[i] = m;
    } else if (prediction === "sample") {
      x0[i] = m;
      eps[i] = f32(f32(s - f32(sa * m)) / sb);
    } else {
      x0[i] = f32(f32(sa * s) - f32(sb * m));
      eps[i] = f32(f32(sa * m) + f32(sb * s));
    }
  }
  return { x0, eps };
}

export type PredictionType = "epsilon" | "sample" | "v_prediction";
export const PREDICTION_TYPES: readonly PredictionType[] = ["epsilon", "sample", "v_prediction"];
