/**
 * Every scheduler's constructor defaults equal diffusers' `__init__` signature defaults.
 *
 * Source: huggingface/diffusers commit 58eb52c0803ea9af3abec60841c2a093bdf1f951 (0.40.0.dev0), the
 * `@register_to_config def __init__` of src/diffusers/schedulers/scheduling_<name>.py (Karras VE:
 * src/diffusers/schedulers/deprecated/scheduling_karras_ve.py; ScoreSdeVe: scheduling_sde_ve.py). Python's
 * `None` is `null`, `-float("inf")` is `-Infinity`. Options diffusers has that this port does not implement
 * carry diffusers' default here too, and a non-default value for them is refused (last test).
 */
import { describe, expect, it } from "vitest";
import {
  createScheduler,
  SCHEDULER_NAMES,
  SchedulerConfigError,
  type SchedulerName,
} from "../../../worker/src/schedulers/index.ts";

const VP = { num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: "linear" };
const VP_SD = { num_train_timesteps: 1000, beta_start: 0.00085, beta_end: 0.012, beta_schedule: "linear" };
const SIGMA_SCHEDULES = { use_karras_sigmas: false, use_exponential_sigmas: false, use_beta_sigmas: false };
const FLOW = {
  use_flow_sigmas: false,
  flow_shift: 1.0,
  use_dynamic_shifting: false,
  time_shift_type: "exponential",
};
const THRESHOLDING = { thresholding: false, dynamic_thresholding_ratio: 0.995, sample_max_value: 1.0 };
const K_DIFFUSION = { ...VP_SD, trained_betas: null, ...SIGMA_SCHEDULES, prediction_type: "epsilon" };

const DIFFUSERS_DEFAULTS: Record<SchedulerName, Record<string, unknown>> = {
  // scheduling_ddpm.py
  DDPMScheduler: {
    ...VP,
    trained_betas: null,
    variance_type: "fixed_small",
    clip_sample: true,
    prediction_type: "epsilon",
    ...THRESHOLDING,
    clip_sample_range: 1.0,
    timestep_spacing: "leading",
    steps_offset: 0,
    rescale_betas_zero_snr: false,
  },
  // scheduling_ddim.py
  DDIMScheduler: {
    ...VP,
    trained_betas: null,
    clip_sample: true,
    set_alpha_to_one: true,
    steps_offset: 0,
    prediction_type: "epsilon",
    ...THRESHOLDING,
    clip_sample_range: 1.0,
    timestep_spacing: "leading",
    rescale_betas_zero_snr: false,
  },
  // scheduling_pndm.py
  PNDMScheduler: {
    ...VP,
    trained_betas: null,
    skip_prk_steps: false,
    set_alpha_to_one: false,
    prediction_type: "epsilon",
    timestep_spacing: "leading",
    steps_offset: 0,
  },
  // scheduling_lms_discrete.py
  LMSDiscreteScheduler: {
    ...VP,
    trained_betas: null,
    ...SIGMA_SCHEDULES,
    prediction_type: "epsilon",
    timestep_spacing: "linspace",
    steps_offset: 0,
  },
  // scheduling_euler_discrete.py
  EulerDiscreteScheduler: {
    ...VP,
    trained_betas: null,
    prediction_type: "epsilon",
    interpolation_type: "linear",
    ...SIGMA_SCHEDULES,
    sigma_min: null,
    sigma_max: null,
    timestep_spacing: "linspace",
    timestep_type: "discrete",
    steps_offset: 0,
    rescale_betas_zero_snr: false,
    final_sigmas_type: "zero",
  },
  // scheduling_euler_ancestral_discrete.py
  EulerAncestralDiscreteScheduler: {
    ...VP,
    trained_betas: null,
    prediction_type: "epsilon",
    timestep_spacing: "linspace",
    steps_offset: 0,
    rescale_betas_zero_snr: false,
  },
  // scheduling_dpmsolver_multistep.py
  DPMSolverMultistepScheduler: {
    ...VP,
    trained_betas: null,
    solver_order: 2,
    prediction_type: "epsilon",
    ...THRESHOLDING,
    algorithm_type: "dpmsolver++",
    solver_type: "midpoint",
    lower_order_final: true,
    euler_at_final: false,
    ...SIGMA_SCHEDULES,
    use_lu_lambdas: false,
    ...FLOW,
    final_sigmas_type: "zero",
    lambda_min_clipped: Number.NEGATIVE_INFINITY,
    variance_type: null,
    timestep_spacing: "linspace",
    steps_offset: 0,
    rescale_betas_zero_snr: false,
  },
  // scheduling_heun_discrete.py
  HeunDiscreteScheduler: {
    ...K_DIFFUSION,
    clip_sample: false,
    clip_sample_range: 1.0,
    timestep_spacing: "linspace",
    steps_offset: 0,
  },
  // scheduling_k_dpm_2_discrete.py
  KDPM2DiscreteScheduler: { ...K_DIFFUSION, timestep_spacing: "linspace", steps_offset: 0 },
  // scheduling_dpmsolver_singlestep.py
  DPMSolverSinglestepScheduler: {
    ...VP,
    trained_betas: null,
    solver_order: 2,
    prediction_type: "epsilon",
    ...THRESHOLDING,
    algorithm_type: "dpmsolver++",
    solver_type: "midpoint",
    lower_order_final: false,
    ...SIGMA_SCHEDULES,
    ...FLOW,
    final_sigmas_type: "zero",
    lambda_min_clipped: Number.NEGATIVE_INFINITY,
    variance_type: null,
  },
  // scheduling_k_dpm_2_ancestral_discrete.py
  KDPM2AncestralDiscreteScheduler: { ...K_DIFFUSION, timestep_spacing: "linspace", steps_offset: 0 },
  // scheduling_unipc_multistep.py
  UniPCMultistepScheduler: {
    ...VP,
    trained_betas: null,
    solver_order: 2,
    prediction_type: "epsilon",
    ...THRESHOLDING,
    predict_x0: true,
    solver_type: "bh2",
    lower_order_final: true,
    disable_corrector: [],
    solver_p: null,
    ...SIGMA_SCHEDULES,
    ...FLOW,
    timestep_spacing: "linspace",
    steps_offset: 0,
    final_sigmas_type: "zero",
    rescale_betas_zero_snr: false,
    sigma_min: null,
    sigma_max: null,
    shift_terminal: null,
  },
  // scheduling_ddim_inverse.py
  DDIMInverseScheduler: {
    ...VP,
    trained_betas: null,
    clip_sample: true,
    set_alpha_to_one: true,
    steps_offset: 0,
    prediction_type: "epsilon",
    clip_sample_range: 1.0,
    timestep_spacing: "leading",
    rescale_betas_zero_snr: false,
  },
  // scheduling_deis_multistep.py
  DEISMultistepScheduler: {
    ...VP,
    trained_betas: null,
    solver_order: 2,
    prediction_type: "epsilon",
    ...THRESHOLDING,
    algorithm_type: "deis",
    solver_type: "logrho",
    lower_order_final: true,
    ...SIGMA_SCHEDULES,
    ...FLOW,
    timestep_spacing: "linspace",
    steps_offset: 0,
  },
  // scheduling_ipndm.py
  IPNDMScheduler: { num_train_timesteps: 1000, trained_betas: null },
  // deprecated/scheduling_karras_ve.py
  KarrasVeScheduler: { sigma_min: 0.02, sigma_max: 100, s_noise: 1.007, s_churn: 80, s_min: 0.05, s_max: 50 },
  // scheduling_sde_ve.py
  ScoreSdeVeScheduler: {
    num_train_timesteps: 2000,
    snr: 0.15,
    sigma_min: 0.01,
    sigma_max: 1348.0,
    sampling_eps: 1e-5,
    correct_steps: 1,
  },
  // scheduling_lcm.py
  LCMScheduler: {
    num_train_timesteps: 1000,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "scaled_linear",
    trained_betas: null,
    original_inference_steps: 50,
    clip_sample: false,
    clip_sample_range: 1.0,
    set_alpha_to_one: true,
    steps_offset: 0,
    prediction_type: "epsilon",
    ...THRESHOLDING,
    timestep_spacing: "leading",
    timestep_scaling: 10.0,
    rescale_betas_zero_snr: false,
  },
};

const configOf = (name: SchedulerName, raw?: Record<string, unknown>): Record<string, unknown> =>
  (createScheduler(name, raw) as unknown as { config: Record<string, unknown> }).config;

describe("scheduler defaults equal diffusers' __init__ defaults", () => {
  it("the table covers all 18 schedulers", () => {
    expect(Object.keys(DIFFUSERS_DEFAULTS).sort()).toEqual([...SCHEDULER_NAMES].sort());
    expect(SCHEDULER_NAMES).toHaveLength(18);
  });

  it.each(SCHEDULER_NAMES)("%s: every parameter and its default", (name) => {
    expect(configOf(name)).toEqual(DIFFUSERS_DEFAULTS[name]);
  });

  const UNSUPPORTED: [SchedulerName, string, unknown][] = [
    ["LMSDiscreteScheduler", "use_exponential_sigmas", true],
    ["EulerDiscreteScheduler", "use_beta_sigmas", true],
    ["HeunDiscreteScheduler", "use_exponential_sigmas", true],
    ["KDPM2DiscreteScheduler", "use_beta_sigmas", true],
    ["KDPM2AncestralDiscreteScheduler", "use_exponential_sigmas", true],
    ["DPMSolverMultistepScheduler", "use_lu_lambdas", true],
    ["DPMSolverMultistepScheduler", "use_flow_sigmas", true],
    ["DPMSolverSinglestepScheduler", "flow_shift", 3.0],
    ["DPMSolverSinglestepScheduler", "use_dynamic_shifting", true],
    ["DEISMultistepScheduler", "use_beta_sigmas", true],
    ["DEISMultistepScheduler", "time_shift_type", "linear"],
    ["UniPCMultistepScheduler", "solver_p", "DPMSolverMultistepScheduler"],
    ["UniPCMultistepScheduler", "sigma_min", 0.002],
    ["UniPCMultistepScheduler", "shift_terminal", 0.1],
  ];
  it.each(UNSUPPORTED)(
    "%s refuses %s = %j (not implemented), accepts its diffusers default",
    (name, key, value) => {
      expect(() => createScheduler(name, { [key]: value })).toThrow(SchedulerConfigError);
      expect(() => createScheduler(name, { [key]: value })).toThrow(new RegExp(key));
      const def = DIFFUSERS_DEFAULTS[name][key];
      expect(configOf(name, { [key]: def })[key]).toEqual(def);
      expect(configOf(name, { [key]: null })[key]).toEqual(def);
    },
  );
});
