/**
 * KarrasVeScheduler and ScoreSdeVeScheduler: variance-exploding samplers for score models (not for an SD
 * UNet). diffusers' tests for them draw random numbers, so these check the schedule, determinism and shape.
 */
import { describe, expect, it } from "vitest";
import { KarrasVeScheduler } from "../../../worker/src/schedulers/karras-ve.ts";
import { ScoreSdeVeScheduler } from "../../../worker/src/schedulers/score-sde-ve.ts";
import { dummySampleDeter, SHAPE, seededNormal } from "./helpers.ts";

describe("KarrasVeScheduler", () => {
  it("schedule runs from sigma_max^2 down to sigma_min^2 as in diffusers", () => {
    const s = new KarrasVeScheduler();
    s.setTimesteps(10);
    expect(s.timesteps).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    expect(s.schedule[0]).toBeCloseTo(100 ** 2, 1);
    expect(s.schedule[9]).toBeCloseTo(0.02 ** 2, 6);
    expect(s.initNoiseSigma).toBe(100);
  });

  it("pipeline loop (churn + step + correction) is reproducible with a seeded generator", () => {
    const run = (seed: number) => {
      const s = new KarrasVeScheduler();
      s.setTimesteps(8);
      const g = seededNormal(seed);
      let sample: Float32Array = dummySampleDeter().map((v) => Math.fround(v * s.initNoiseSigma));
      const model = (x: Float32Array, sigma: number) => x.map((v) => -v / (sigma * sigma + 1));
      for (const t of s.timesteps) {
        const sigma = s.sigmaAt(t);
        const sigmaPrev = s.sigmaAt(t - 1);
        const { sampleHat, sigmaHat } = s.addNoiseToInput(sample, sigma, g);
        const out = s.stepFromSigma(model(sampleHat, sigmaHat), sigmaHat, sigmaPrev, sampleHat);
        sample =
          sigmaPrev !== 0
            ? s.stepCorrect(
                model(out.prevSample, sigmaPrev),
                sigmaHat,
                sigmaPrev,
                sampleHat,
                out.prevSample,
                out.derivative,
              ).prevSample
            : out.prevSample;
      }
      return sample;
    };
    expect(run(1)).toEqual(run(1));
    expect(run(1)).not.toEqual(run(2));
    expect(run(1).every(Number.isFinite)).toBe(true);
  });

  it("uniform step is a deterministic Euler step", () => {
    const s = new KarrasVeScheduler();
    s.setTimesteps(4);
    const x = dummySampleDeter();
    const a = s.step(x, 3, x).prevSample;
    expect(a).toHaveLength(x.length);
    expect(a.every(Number.isFinite)).toBe(true);
  });
});

describe("ScoreSdeVeScheduler", () => {
  /** tests/schedulers/test_scheduler_score_sde_ve.py get_scheduler_config() (diffusers 58eb52c0) */
  const diffusersTestConfig = {
    num_train_timesteps: 2000,
    snr: 0.15,
    sigma_min: 0.01,
    sigma_max: 1348,
    sampling_eps: 1e-5,
  };

  it("continuous timesteps and geometric sigmas", () => {
    const s = new ScoreSdeVeScheduler(diffusersTestConfig);
    s.setTimesteps(10);
    expect(s.timesteps[0]).toBe(1);
    expect(s.timesteps[9]).toBeCloseTo(1e-5, 8);
    expect(s.discreteSigmas[0]).toBeCloseTo(0.01, 6);
    expect(s.discreteSigmas[9]).toBeCloseTo(1348, 1);
    expect(s.initNoiseSigma).toBe(1348);
  });

  it("predictor + corrector loop is reproducible with a seeded generator", () => {
    const run = (seed: number) => {
      const s = new ScoreSdeVeScheduler(diffusersTestConfig);
      s.setTimesteps(10);
      const g = seededNormal(seed);
      let sample: Float32Array = dummySampleDeter().map((v) => Math.fround(v * s.initNoiseSigma));
      const score = (x: Float32Array, sigma: number) => x.map((v) => -v / (sigma * sigma));
      for (const [i, t] of s.timesteps.entries()) {
        const sigma = s.sigmas[i] as number;
        sample = s.stepCorrect(score(sample, sigma), sample, { generator: g, shape: SHAPE }).prevSample;
        sample = s.step(score(sample, sigma), t, sample, { generator: g }).prevSample;
      }
      return sample;
    };
    expect(run(3)).toEqual(run(3));
    expect(run(3)).not.toEqual(run(4));
    expect(run(3).every(Number.isFinite)).toBe(true);
  });

  it("add_noise scales the noise by the discrete sigma of the timestep", () => {
    const s = new ScoreSdeVeScheduler(diffusersTestConfig);
    s.setTimesteps(10);
    const x = new Float32Array(8);
    const noise = new Float32Array(8).fill(1);
    const out = s.addNoise(x, noise, s.timesteps[0] as number);
    expect(out[0]).toBeCloseTo(1348, 1);
  });
});
