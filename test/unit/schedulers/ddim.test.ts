/**
 * Ports of diffusers' tests/schedulers/test_scheduler_ddim.py and test_scheduler_ddim_inverse.py
 * (the checks that draw no random numbers).
 */
import { describe, expect, it } from "vitest";
import { DDIMInverseScheduler, DDIMScheduler } from "../../../worker/src/schedulers/ddim.ts";
import { dummyModel, dummyNoiseDeter, dummySampleDeter, meanAbs, sumAbs } from "./helpers.ts";

/** get_scheduler_config() of diffusers' test_scheduler_ddim.py and test_scheduler_ddim_inverse.py (identical), unchanged. */
const config = (extra: Record<string, unknown> = {}) => ({
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  clip_sample: true,
  ...extra,
});

function fullLoop(s: DDIMScheduler | DDIMInverseScheduler): Float32Array {
  s.setTimesteps(10);
  let sample = dummySampleDeter();
  for (const t of s.timesteps) sample = s.step(dummyModel(sample, t), t, sample, { eta: 0 }).prevSample;
  return sample;
}

describe("DDIMScheduler (diffusers test_scheduler_ddim.py)", () => {
  it("test_steps_offset: timesteps with steps_offset=1", () => {
    const s = new DDIMScheduler(config({ steps_offset: 1 }));
    s.setTimesteps(5);
    expect(s.timesteps).toEqual([801, 601, 401, 201, 1]);
  });

  it("test_variance", () => {
    const s = new DDIMScheduler(config());
    expect(Math.abs(s.getVariance(0, 0) - 0)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(420, 400) - 0.14771)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(980, 960) - 0.3246)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(487, 486) - 0.00979)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(999, 998) - 0.02)).toBeLessThan(1e-5);
  });

  it.each([
    ["test_full_loop_no_noise", {}, 172.0067, 0.223967],
    ["test_full_loop_with_v_prediction", { prediction_type: "v_prediction" }, 52.5302, 0.0684],
    ["test_full_loop_with_set_alpha_to_one", { set_alpha_to_one: true, beta_start: 0.01 }, 149.8295, 0.1951],
    [
      "test_full_loop_with_no_set_alpha_to_one",
      { set_alpha_to_one: false, beta_start: 0.01 },
      149.0784,
      0.1941,
    ],
  ] as const)("%s", (_name, extra, sum, mean) => {
    const sample = fullLoop(new DDIMScheduler(config(extra)));
    expect(Math.abs(sumAbs(sample) - sum)).toBeLessThan(1e-2);
    expect(Math.abs(meanAbs(sample) - mean)).toBeLessThan(1e-3);
  });

  it("test_full_loop_with_noise", () => {
    const s = new DDIMScheduler(config());
    s.setTimesteps(10);
    const timesteps = s.timesteps.slice(8 * s.order);
    let sample = s.addNoise(dummySampleDeter(), dummyNoiseDeter(), [timesteps[0] as number]);
    for (const t of timesteps) sample = s.step(dummyModel(sample, t), t, sample).prevSample;
    expect(Math.abs(sumAbs(sample) - 354.5418)).toBeLessThan(1e-2);
    expect(Math.abs(meanAbs(sample) - 0.4616)).toBeLessThan(1e-3);
  });

  it("test_num_inference_steps_zero_raises", () => {
    expect(() => new DDIMScheduler(config()).setTimesteps(0)).toThrow(/num_inference_steps/);
  });

  it("timestep_spacing trailing / linspace and thresholding run without NaN", () => {
    for (const extra of [
      { timestep_spacing: "trailing" },
      { timestep_spacing: "linspace" },
      { rescale_betas_zero_snr: true, timestep_spacing: "trailing", prediction_type: "v_prediction" },
      { thresholding: true, sample_max_value: 2.0, prediction_type: "v_prediction" },
    ]) {
      const s = new DDIMScheduler(config(extra));
      s.setTimesteps(10);
      expect(s.timesteps).toHaveLength(10);
      let sample = dummySampleDeter();
      for (const t of s.timesteps) {
        sample = s.step(dummyModel(sample, t), t, sample, { shape: [4, 3, 8, 8] }).prevSample;
      }
      expect(sample.every(Number.isFinite)).toBe(true);
    }
    const trailing = new DDIMScheduler(config({ timestep_spacing: "trailing" }));
    trailing.setTimesteps(5);
    expect(trailing.timesteps).toEqual([999, 799, 599, 399, 199]);
  });

  it("eta > 0 uses the injected generator and is reproducible", () => {
    const run = () => {
      const s = new DDIMScheduler(config());
      s.setTimesteps(10);
      let sample = dummySampleDeter();
      let k = 0;
      const generator = () => ((k++ % 7) - 3) / 3;
      for (const t of s.timesteps)
        sample = s.step(dummyModel(sample, t), t, sample, { eta: 1, generator }).prevSample;
      return sample;
    };
    expect(run()).toEqual(run());
    expect(() => {
      const s = new DDIMScheduler(config());
      s.setTimesteps(10);
      const x = dummySampleDeter();
      s.step(x, s.timesteps[0] as number, x, { eta: 0.5 });
    }).toThrow(/generator/);
  });
});

describe("DDIMInverseScheduler (diffusers test_scheduler_ddim_inverse.py)", () => {
  it("test_steps_offset: ascending timesteps with steps_offset=1", () => {
    const s = new DDIMInverseScheduler(config({ steps_offset: 1 }));
    s.setTimesteps(5);
    expect(s.timesteps).toEqual([1, 201, 401, 601, 801]);
  });

  it.each([
    ["test_full_loop_no_noise", {}, 671.6816, 0.8746],
    ["test_full_loop_with_v_prediction", { prediction_type: "v_prediction" }, 1394.2185, 1.8154],
    ["test_full_loop_with_set_alpha_to_one", { set_alpha_to_one: true, beta_start: 0.01 }, 539.9622, 0.7031],
    [
      "test_full_loop_with_no_set_alpha_to_one",
      { set_alpha_to_one: false, beta_start: 0.01 },
      542.6722,
      0.7066,
    ],
  ] as const)("%s", (_name, extra, sum, mean) => {
    const sample = fullLoop(new DDIMInverseScheduler(config(extra)));
    expect(Math.abs(sumAbs(sample) - sum)).toBeLessThan(1e-2);
    expect(Math.abs(meanAbs(sample) - mean)).toBeLessThan(1e-3);
  });

  it("trailing spacing is ascending", () => {
    const s = new DDIMInverseScheduler(config({ timestep_spacing: "trailing" }));
    s.setTimesteps(5);
    expect(s.timesteps).toEqual([199, 399, 599, 799, 999]);
  });
});
