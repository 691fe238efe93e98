/**
 * Ports of diffusers' tests/schedulers/test_scheduler_{dpm_multi,dpm_single,deis,unipc}.py full loops, with
 * each file's `get_scheduler_config()` unchanged (huggingface/diffusers 58eb52c0, 0.40.0.dev0) and its
 * expected numbers: `dummyModel` / `dummySampleDeter` reproduce diffusers' SchedulerCommonTest fixtures.
 */
import { describe, expect, it } from "vitest";
import { DEISMultistepScheduler } from "../../../worker/src/schedulers/deis.ts";
import { DPMSolverMultistepScheduler } from "../../../worker/src/schedulers/dpm-multistep.ts";
import { DPMSolverSinglestepScheduler } from "../../../worker/src/schedulers/dpm-singlestep.ts";
import { createScheduler, type Scheduler } from "../../../worker/src/schedulers/index.ts";
import { UniPCMultistepScheduler } from "../../../worker/src/schedulers/unipc.ts";
import {
  dummyModel,
  dummyNoiseDeter,
  dummySampleDeter,
  meanAbs,
  SHAPE,
  seededNormal,
  sumAbs,
} from "./helpers.ts";

const base = { num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: "linear" };

function fullLoop(s: Scheduler, n = 10, from = 0, generator?: () => number): Float32Array {
  s.setTimesteps(n);
  let sample = dummySampleDeter();
  for (const t of s.timesteps.slice(from)) {
    sample = s.step(dummyModel(sample, t), t, sample, {
      shape: SHAPE,
      ...(generator ? { generator } : {}),
    }).prevSample;
  }
  return sample;
}

function withNoise(s: Scheduler, tStart = 8): Float32Array {
  s.setTimesteps(10);
  const timesteps = s.timesteps.slice(tStart * s.order);
  let sample = s.addNoise(dummySampleDeter(), dummyNoiseDeter(), [timesteps[0] as number]);
  for (const t of timesteps) sample = s.step(dummyModel(sample, t), t, sample).prevSample;
  return sample;
}

/** test_scheduler_dpm_multi.py get_scheduler_config() */
const dpmMulti = (extra: Record<string, unknown> = {}) =>
  new DPMSolverMultistepScheduler({
    ...base,
    solver_order: 2,
    prediction_type: "epsilon",
    thresholding: false,
    sample_max_value: 1.0,
    algorithm_type: "dpmsolver++",
    solver_type: "midpoint",
    lower_order_final: false,
    euler_at_final: false,
    lambda_min_clipped: Number.NEGATIVE_INFINITY,
    variance_type: null,
    final_sigmas_type: "sigma_min",
    ...extra,
  });

describe("DPMSolverMultistepScheduler (diffusers test_scheduler_dpm_multi.py)", () => {
  it.each([
    ["test_full_loop_no_noise", {}, 0.3301],
    [
      "test_full_loop_no_noise_thres",
      {
        thresholding: true,
        dynamic_thresholding_ratio: 0.87,
        sample_max_value: 0.5,
      },
      1.1364,
    ],
    ["test_full_loop_with_v_prediction", { prediction_type: "v_prediction" }, 0.2251],
    [
      "test_full_loop_with_karras_and_v_prediction",
      { prediction_type: "v_prediction", use_karras_sigmas: true },
      0.2096,
    ],
  ] as const)("%s", (_name, extra, mean) => {
    expect(Math.abs(meanAbs(fullLoop(dpmMulti(extra))) - mean)).toBeLessThan(1e-3);
  });

  it("test_switch: configs round-trip through single-step, UniPC and DEIS names", () => {
    const cfg = dpmMulti().config;
    for (const name of [
      "DPMSolverSinglestepScheduler",
      "UniPCMultistepScheduler",
      "DEISMultistepScheduler",
    ]) {
      expect(() => createScheduler(name, cfg)).not.toThrow();
    }
    expect(
      Math.abs(meanAbs(fullLoop(createScheduler("DPMSolverMultistepScheduler", cfg))) - 0.3301),
    ).toBeLessThan(1e-3);
  });

  it("test_solver_order_and_type: every algorithm/solver/order/prediction runs without NaN", () => {
    for (const algorithm_type of ["dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++"]) {
      for (const solver_type of ["midpoint", "heun"]) {
        for (const solver_order of [1, 2, 3]) {
          if (algorithm_type === "sde-dpmsolver" && solver_order === 3) continue;
          for (const prediction_type of ["epsilon", "sample"]) {
            const s = dpmMulti({
              algorithm_type,
              solver_type,
              solver_order,
              prediction_type,
            });
            const out = fullLoop(s, 10, 0, seededNormal(0));
            expect(out.some(Number.isNaN)).toBe(false);
          }
        }
      }
    }
  });

  it('algorithm_type "dpmsolver+++" is an alias of "sde-dpmsolver++" (seeded: identical results)', () => {
    const a = dpmMulti({ algorithm_type: "dpmsolver+++" });
    const b = dpmMulti({ algorithm_type: "sde-dpmsolver++" });
    expect(a.algorithm).toBe("sde-dpmsolver++");
    expect(fullLoop(a, 10, 0, seededNormal(5))).toEqual(fullLoop(b, 10, 0, seededNormal(5)));
    expect(() => fullLoop(dpmMulti({ algorithm_type: "sde-dpmsolver++" }))).toThrow(/generator/);
  });

  it("rejects what diffusers rejects", () => {
    expect(() => dpmMulti({ algorithm_type: "dpmsolver", final_sigmas_type: "zero" })).toThrow(
      /final_sigmas_type/,
    );
    expect(() => dpmMulti({ algorithm_type: "nope" })).toThrow(/algorithm_type/);
    expect(() => dpmMulti({ solver_type: "nope" })).toThrow(/solver_type/);
    expect(() => dpmMulti({ timestep_spacing: "nope" })).toThrow(/timestep_spacing/);
  });

  it("timestep spacings and lambda_min_clipped", () => {
    for (const timestep_spacing of ["linspace", "leading", "trailing"]) {
      const s = dpmMulti({ timestep_spacing, steps_offset: 1 });
      expect(fullLoop(s).every(Number.isFinite)).toBe(true);
      expect(s.timesteps).toHaveLength(10);
    }
    const clipped = dpmMulti({ lambda_min_clipped: -4 });
    clipped.setTimesteps(10);
    expect(clipped.timesteps[0]).toBeLessThan(999);
  });
});

describe("DPMSolverSinglestepScheduler (diffusers test_scheduler_dpm_single.py)", () => {
  /** test_scheduler_dpm_single.py get_scheduler_config() (lower_order_final: diffusers' default, false) */
  const single = (extra: Record<string, unknown> = {}) =>
    new DPMSolverSinglestepScheduler({
      ...base,
      solver_order: 2,
      prediction_type: "epsilon",
      thresholding: false,
      sample_max_value: 1.0,
      algorithm_type: "dpmsolver++",
      solver_type: "midpoint",
      lambda_min_clipped: Number.NEGATIVE_INFINITY,
      variance_type: null,
      final_sigmas_type: "sigma_min",
      ...extra,
    });

  it.each([
    ["test_full_loop_no_noise", {}, 0.2791],
    ["test_full_loop_with_karras", { use_karras_sigmas: true }, 0.2248],
    ["test_full_loop_with_v_prediction", { prediction_type: "v_prediction" }, 0.1453],
    [
      "test_full_loop_with_karras_and_v_prediction",
      { prediction_type: "v_prediction", use_karras_sigmas: true },
      0.0649,
    ],
  ] as const)("%s", (_name, extra, mean) => {
    expect(Math.abs(meanAbs(fullLoop(single(extra))) - mean)).toBeLessThan(1e-3);
  });

  it("test_full_uneven_loop (start at timesteps[3] of 50)", () => {
    expect(Math.abs(meanAbs(fullLoop(single(), 50, 3)) - 0.2574)).toBeLessThan(1e-3);
  });

  it("test_full_loop_with_noise (t_start 5)", () => {
    const out = withNoise(single(), 5);
    expect(Math.abs(sumAbs(out) - 269.2187)).toBeLessThan(1e-2);
    expect(Math.abs(meanAbs(out) - 0.3505)).toBeLessThan(1e-3);
  });

  it("order list follows diffusers' get_order_list", () => {
    const s = new DPMSolverSinglestepScheduler({ ...base, solver_order: 3 });
    expect(s.getOrderList(9)).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 1]);
    expect(new DPMSolverSinglestepScheduler(base).getOrderList(10)).toEqual([1, 2, 1, 2, 1, 2, 1, 2, 1, 1]);
    // lower_order_final defaults to false: with a sigma_min ending and an even step count no order is lowered
    const evenSigmaMin = single();
    evenSigmaMin.setTimesteps(10);
    expect(evenSigmaMin.orderList).toEqual([1, 2, 1, 2, 1, 2, 1, 2, 1, 2]);
    // an uneven count switches it on, as diffusers does
    const uneven = single();
    uneven.setTimesteps(9);
    expect(uneven.orderList).toEqual([1, 2, 1, 2, 1, 2, 1, 2, 1]);
  });

  it("test_solver_order_and_type runs without NaN", () => {
    for (const algorithm_type of ["dpmsolver", "dpmsolver++"]) {
      for (const solver_type of ["midpoint", "heun"]) {
        for (const solver_order of [1, 2, 3]) {
          for (const prediction_type of ["epsilon", "sample"]) {
            const out = fullLoop(single({ algorithm_type, solver_type, solver_order, prediction_type }));
            expect(out.some(Number.isNaN)).toBe(false);
          }
        }
      }
    }
    const sde = fullLoop(
      single({ algorithm_type: "dpmsolver+++", final_sigmas_type: "zero" }),
      10,
      0,
      seededNormal(1),
    );
    expect(sde.every(Number.isFinite)).toBe(true);
  });
});

describe("DEISMultistepScheduler (diffusers test_scheduler_deis.py)", () => {
  /** test_scheduler_deis.py get_scheduler_config() */
  const deis = (extra: Record<string, unknown> = {}) =>
    new DEISMultistepScheduler({ ...base, solver_order: 2, ...extra });
  it.each([
    ["test_full_loop_no_noise", {}, 0.23916],
    ["test_full_loop_with_v_prediction", { prediction_type: "v_prediction" }, 0.091],
  ] as const)("%s", (_name, extra, mean) => {
    expect(Math.abs(meanAbs(fullLoop(deis(extra))) - mean)).toBeLessThan(1e-3);
  });

  it("test_full_loop_with_noise", () => {
    const out = withNoise(deis());
    expect(Math.abs(sumAbs(out) - 315.3016)).toBeLessThan(1e-2);
    expect(Math.abs(meanAbs(out) - 0.41054)).toBeLessThan(1e-3);
  });

  it("test_solver_order_and_type runs without NaN", () => {
    for (const solver_order of [1, 2, 3]) {
      for (const prediction_type of ["epsilon", "sample"]) {
        expect(fullLoop(deis({ solver_order, prediction_type })).some(Number.isNaN)).toBe(false);
      }
    }
  });
});

describe("UniPCMultistepScheduler (diffusers test_scheduler_unipc.py)", () => {
  /** test_scheduler_unipc.py get_scheduler_config() */
  const unipc = (extra: Record<string, unknown> = {}) =>
    new UniPCMultistepScheduler({
      ...base,
      solver_order: 2,
      solver_type: "bh2",
      final_sigmas_type: "sigma_min",
      ...extra,
    });
  it.each([
    ["test_full_loop_no_noise", {}, 0.2464],
    ["test_full_loop_with_karras", { use_karras_sigmas: true }, 0.2925],
    ["test_full_loop_with_v_prediction", { prediction_type: "v_prediction" }, 0.1014],
    [
      "test_full_loop_with_karras_and_v_prediction",
      { prediction_type: "v_prediction", use_karras_sigmas: true },
      0.1966,
    ],
  ] as const)("%s", (_name, extra, mean) => {
    expect(Math.abs(meanAbs(fullLoop(unipc(extra))) - mean)).toBeLessThan(1e-3);
  });

  it("test_full_loop_with_noise", () => {
    const out = withNoise(unipc());
    expect(Math.abs(sumAbs(out) - 315.5757)).toBeLessThan(1e-2);
    expect(Math.abs(meanAbs(out) - 0.4109)).toBeLessThan(1e-3);
  });

  it("test_solver_order_and_type runs without NaN", () => {
    for (const solver_type of ["bh1", "bh2"]) {
      for (const solver_order of [1, 2, 3]) {
        for (const prediction_type of ["epsilon", "sample"]) {
          expect(fullLoop(unipc({ solver_type, solver_order, prediction_type })).some(Number.isNaN)).toBe(
            false,
          );
        }
      }
    }
  });
});
