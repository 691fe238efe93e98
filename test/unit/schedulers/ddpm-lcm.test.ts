/**
 * DDPM (diffusers test_scheduler_ddpm.py: the variance checks, which draw no random numbers) and LCM
 * (test_scheduler_lcm.py: test_full_loop_onestep, whose single step adds no noise). The multi-step loops of
 * both draw noise, so they are checked for determinism and statistics instead of diffusers' numbers.
 */
import { describe, expect, it } from "vitest";
import { DDPMScheduler } from "../../../worker/src/schedulers/ddpm.ts";
import { LCMScheduler } from "../../../worker/src/schedulers/lcm.ts";
import { dummyModel, dummySampleDeter, meanAbs, SHAPE, seededNormal, sumAbs } from "./helpers.ts";

/** get_scheduler_config() of diffusers' test_scheduler_ddpm.py, unchanged. */
const ddpmConfig = (extra: Record<string, unknown> = {}) => ({
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  variance_type: "fixed_small",
  clip_sample: true,
  ...extra,
});

describe("DDPMScheduler (diffusers test_scheduler_ddpm.py)", () => {
  it("test_variance", () => {
    const s = new DDPMScheduler(ddpmConfig());
    expect(Math.abs(s.getVariance(0) - 0)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(487) - 0.00979)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(999) - 0.02)).toBeLessThan(1e-5);
  });

  it("leading spacing with steps_offset, and num_inference_steps > num_train_timesteps throws", () => {
    const s = new DDPMScheduler(ddpmConfig({ steps_offset: 1 }));
    s.setTimesteps(5);
    expect(s.timesteps).toEqual([801, 601, 401, 201, 1]);
    expect(() => s.setTimesteps(1001)).toThrow(/num_train_timesteps/);
  });

  it("full loop: seeded generator is reproducible, last step adds no noise, output finite", () => {
    const run = (seed: number, extra: Record<string, unknown> = {}) => {
      const s = new DDPMScheduler(ddpmConfig(extra));
      s.setTimesteps(10);
      let sample = dummySampleDeter();
      const generator = seededNormal(seed);
      for (const t of s.timesteps) {
        sample = s.step(dummyModel(sample, t), t, sample, { generator, shape: SHAPE }).prevSample;
      }
      return sample;
    };
    expect(run(0)).toEqual(run(0));
    expect(run(0)).not.toEqual(run(1));
    for (const extra of [
      { prediction_type: "v_prediction" },
      { thresholding: true },
      { variance_type: "fixed_small_log" },
    ]) {
      expect(run(0, extra).every(Number.isFinite)).toBe(true);
    }
    // t = 0 draws no noise: no generator needed
    const s = new DDPMScheduler(ddpmConfig());
    s.setTimesteps(1000);
    const x = dummySampleDeter();
    expect(() => s.step(dummyModel(x, 0), 0, x)).not.toThrow();
  });

  it("added noise has the fixed_small standard deviation", () => {
    const s = new DDPMScheduler(ddpmConfig({ clip_sample: false }));
    s.setTimesteps(10);
    const n = 20000;
    const t = s.timesteps[1] as number;
    const zero = new Float32Array(n);
    const out = s.step(zero, t, zero, { generator: seededNormal(9) }).prevSample;
    let v = 0;
    for (const o of out) v += o * o;
    expect(Math.sqrt(v / n) / Math.sqrt(s.getVariance(t))).toBeGreaterThan(0.97);
    expect(Math.sqrt(v / n) / Math.sqrt(s.getVariance(t))).toBeLessThan(1.03);
  });
});

describe("LCMScheduler (diffusers test_scheduler_lcm.py)", () => {
  /** get_scheduler_config() of diffusers' test_scheduler_lcm.py, unchanged. */
  const config = (extra: Record<string, unknown> = {}) => ({
    num_train_timesteps: 1000,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: "scaled_linear",
    prediction_type: "epsilon",
    ...extra,
  });

  const fullLoop = (n: number, generator?: () => number) => {
    const s = new LCMScheduler(config());
    s.setTimesteps(n);
    let sample = dummySampleDeter();
    for (const t of s.timesteps)
      sample = s.step(dummyModel(sample, t), t, sample, generator ? { generator } : {}).prevSample;
    return sample;
  };

  it("test_full_loop_onestep", () => {
    const sample = fullLoop(1);
    expect(Math.abs(sumAbs(sample) - 18.7097)).toBeLessThan(1e-2);
    expect(Math.abs(meanAbs(sample) - 0.0244)).toBeLessThan(1e-3);
  });

  it("timesteps follow the original 50-step LCM grid", () => {
    const s = new LCMScheduler(config());
    s.setTimesteps(4);
    expect(s.timesteps).toEqual([999, 759, 499, 259]);
    s.setTimesteps(1);
    expect(s.timesteps).toEqual([999]);
    expect(() => s.setTimesteps(51)).toThrow(/original_inference_steps/);
  });

  it("multi-step: reproducible with a seeded generator, requires one, finite", () => {
    expect(fullLoop(10, seededNormal(0))).toEqual(fullLoop(10, seededNormal(0)));
    expect(fullLoop(10, seededNormal(0)).every(Number.isFinite)).toBe(true);
    expect(() => fullLoop(10)).toThrow(/generator/);
  });
});
