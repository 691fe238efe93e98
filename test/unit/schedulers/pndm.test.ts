/** Ports of diffusers' tests/schedulers/test_scheduler_pndm.py and test_scheduler_ipndm.py (no random numbers). */
import { describe, expect, it } from "vitest";
import { IPNDMScheduler, PNDMScheduler } from "../../../worker/src/schedulers/pndm.ts";
import { dummyModel, dummySampleDeter, meanAbs, sumAbs } from "./helpers.ts";

/** get_scheduler_config() of diffusers' test_scheduler_pndm.py, unchanged. */
const config = (extra: Record<string, unknown> = {}) => ({
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  ...extra,
});

function fullLoop(extra: Record<string, unknown>): Float32Array {
  const s = new PNDMScheduler(config(extra));
  s.setTimesteps(10);
  let sample = dummySampleDeter();
  for (const t of s.prkTimesteps) sample = s.stepPrk(dummyModel(sample, t), t, sample).prevSample;
  for (const t of s.plmsTimesteps) sample = s.stepPlms(dummyModel(sample, t), t, sample).prevSample;
  return sample;
}

describe("PNDMScheduler (diffusers test_scheduler_pndm.py)", () => {
  it("test_steps_offset", () => {
    const s = new PNDMScheduler(config({ steps_offset: 1 }));
    s.setTimesteps(10);
    expect(s.timesteps).toEqual([
      901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1,
    ]);
  });

  it.each([
    ["test_full_loop_no_noise", {}, 198.1318, 0.258],
    ["test_full_loop_with_v_prediction", { prediction_type: "v_prediction" }, 67.3986, 0.0878],
    ["test_full_loop_with_set_alpha_to_one", { set_alpha_to_one: true, beta_start: 0.01 }, 230.0399, 0.2995],
    [
      "test_full_loop_with_no_set_alpha_to_one",
      { set_alpha_to_one: false, beta_start: 0.01 },
      186.9482,
      0.2434,
    ],
  ] as const)("%s", (_name, extra, sum, mean) => {
    const sample = fullLoop(extra);
    expect(Math.abs(sumAbs(sample) - sum)).toBeLessThan(1e-2);
    expect(Math.abs(meanAbs(sample) - mean)).toBeLessThan(1e-3);
  });

  it("step() dispatches prk then plms, giving the same result as the explicit loop", () => {
    const s = new PNDMScheduler(config());
    s.setTimesteps(10);
    let sample = dummySampleDeter();
    for (const t of s.timesteps) sample = s.step(dummyModel(sample, t), t, sample).prevSample;
    expect(Math.abs(sumAbs(sample) - 198.1318)).toBeLessThan(1e-2);
  });

  it("test_pndm_low_inference_steps_prk_validation / test_inference_plms_no_past_residuals", () => {
    const s = new PNDMScheduler(config({ skip_prk_steps: false }));
    for (const n of [1, 2, 3]) expect(() => s.setTimesteps(n)).toThrow(/must be >= 4/);
    expect(() => s.setTimesteps(4)).not.toThrow();
    const skip = new PNDMScheduler(config({ skip_prk_steps: true }));
    for (const n of [1, 2, 3, 4]) expect(() => skip.setTimesteps(n)).not.toThrow();
    const fresh = new PNDMScheduler(config());
    fresh.setTimesteps(50);
    const x = dummySampleDeter();
    expect(() => fresh.stepPlms(x, 1, x)).toThrow(/Runge/);
  });

  it("skip_prk_steps (the SD 1.5 setting) repeats the second timestep for the PLMS warm-up", () => {
    const s = new PNDMScheduler(config({ skip_prk_steps: true, steps_offset: 1 }));
    s.setTimesteps(5);
    expect(s.timesteps).toEqual([801, 601, 601, 401, 201, 1]);
    let sample = dummySampleDeter();
    for (const t of s.timesteps) sample = s.step(dummyModel(sample, t), t, sample).prevSample;
    expect(sample.every(Number.isFinite)).toBe(true);
  });
});

describe("IPNDMScheduler (diffusers test_scheduler_ipndm.py)", () => {
  /** get_scheduler_config() of diffusers' test_scheduler_ipndm.py, unchanged. */
  const ipndmConfig = { num_train_timesteps: 1000 };

  it("test_full_loop_no_noise (two passes over the timesteps, step index reset between)", () => {
    const s = new IPNDMScheduler(ipndmConfig);
    s.setTimesteps(10);
    let sample = dummySampleDeter();
    for (const t of s.timesteps) sample = s.step(dummyModel(sample, t), t, sample).prevSample;
    s.resetStepIndex();
    for (const t of s.timesteps) sample = s.step(dummyModel(sample, t), t, sample).prevSample;
    expect(Math.abs(meanAbs(sample) - 2540529)).toBeLessThan(10);
  });

  it("timesteps are continuous in (0, 1]", () => {
    const s = new IPNDMScheduler(ipndmConfig);
    s.setTimesteps(10);
    expect(s.timesteps).toHaveLength(10);
    expect(s.timesteps[0]).toBeCloseTo(1, 5);
    expect(s.timesteps.every((t) => t > 0 && t <= 1)).toBe(true);
  });
});
