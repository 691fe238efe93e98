/** createScheduler: names, config loading (diffusers snake_case JSON), validation, and an SD 1.5 smoke run. */
import { describe, expect, it } from "vitest";
import { SCHEDULERS } from "../../../shared/schemas/controlnet.ts";
import type { SchedulerFactory } from "../../../worker/src/pipeline/scheduler.ts";
import {
  createScheduler,
  NOT_FOR_SD_UNET,
  SCHEDULER_NAMES,
  SchedulerConfigError,
  STOCHASTIC_SCHEDULERS,
} from "../../../worker/src/schedulers/index.ts";
import { dummyModel, SD15_SCHEDULER_CONFIG, SHAPE, seededNormal } from "./helpers.ts";

/** The API's list of the seed's schedulers: the worker must build exactly these, in the seed's order. */
const SEED_NAMES = SCHEDULERS;

describe("createScheduler", () => {
  it("knows exactly the 18 seed names and satisfies the pipeline's SchedulerFactory contract", () => {
    expect(SCHEDULER_NAMES).toEqual(SEED_NAMES);
    const factory: SchedulerFactory = createScheduler;
    expect(typeof factory).toBe("function");
  });

  it.each(SEED_NAMES)(
    "%s constructs from the SD 1.5 scheduler_config.json and runs 20 steps without NaN",
    (name) => {
      const s = createScheduler(name, JSON.parse(JSON.stringify(SD15_SCHEDULER_CONFIG)));
      s.setTimesteps(20);
      expect(s.timesteps.length).toBeGreaterThanOrEqual(20);
      const n = SHAPE.reduce((a, b) => a * b, 1);
      const g = seededNormal(42);
      let sample: Float32Array = new Float32Array(n).map(() => Math.fround(g() * s.initNoiseSigma));
      const generator = seededNormal(7);
      for (const t of s.timesteps) {
        const input = s.scaleModelInput(sample, t);
        sample = s.step(dummyModel(input, t), t, sample, { generator, shape: SHAPE }).prevSample;
        expect(sample).toHaveLength(n);
      }
      expect(sample.some(Number.isNaN)).toBe(false);
    },
  );

  it("adds noise on a batch with per-element timesteps for every scheduler", () => {
    for (const name of SEED_NAMES) {
      const s = createScheduler(name, SD15_SCHEDULER_CONFIG);
      s.setTimesteps(20);
      const n = SHAPE.reduce((a, b) => a * b, 1);
      const x = new Float32Array(n).fill(0.5);
      const noise = new Float32Array(n).fill(1);
      const ts = [0, 1, 2, 3].map((i) => s.timesteps[i] as number);
      const out = s.addNoise(x, noise, ts, SHAPE);
      expect(out).toHaveLength(n);
      expect(out.every(Number.isFinite)).toBe(true);
    }
  });

  it("ignores unknown keys and null values, rejects invalid ones with a clear error", () => {
    expect(() =>
      createScheduler("EulerDiscreteScheduler", { foo: 1, _class_name: "X", sigma_min: null }),
    ).not.toThrow();
    expect(() => createScheduler("NopeScheduler")).toThrow(SchedulerConfigError);
    expect(() => createScheduler("DDIMScheduler", { beta_schedule: "cubic" })).toThrow(
      /beta_schedule "cubic"/,
    );
    expect(() => createScheduler("DDIMScheduler", { prediction_type: "flow" })).toThrow(/prediction_type/);
    expect(() => createScheduler("DDIMScheduler", { num_train_timesteps: "1000" })).toThrow(
      /num_train_timesteps/,
    );
    expect(() => createScheduler("DDIMScheduler", { num_train_timesteps: 0 })).toThrow(/positive integer/);
    expect(() => createScheduler("EulerDiscreteScheduler", { timestep_spacing: "even" })).toThrow(
      /timestep_spacing/,
    );
    expect(() => createScheduler("DPMSolverMultistepScheduler", { solver_order: 4 })).toThrow(/solver_order/);
    expect(() => createScheduler("DDIMScheduler", { trained_betas: ["a"] })).toThrow(/trained_betas/);
  });

  it("loads use_karras_sigmas and algorithm_type dpmsolver+++ from JSON", () => {
    const s = createScheduler("DPMSolverMultistepScheduler", {
      ...SD15_SCHEDULER_CONFIG,
      _class_name: "DPMSolverMultistepScheduler",
      use_karras_sigmas: true,
      algorithm_type: "dpmsolver+++",
    });
    s.setTimesteps(20);
    expect(new Set(s.timesteps).size).toBe(20);
    expect(() => createScheduler("DPMSolverMultistepScheduler", { algorithm_type: "dpmsolver++++" })).toThrow(
      /algorithm_type/,
    );
  });

  it("trained_betas override the schedule", () => {
    const betas = Array.from({ length: 1000 }, (_, i) => 0.0001 + (0.02 - 0.0001) * (i / 999));
    const a = createScheduler("DDIMScheduler", { trained_betas: betas });
    const b = createScheduler("DDIMScheduler", {});
    a.setTimesteps(10);
    b.setTimesteps(10);
    const x = new Float32Array(16).fill(0.3);
    const t = a.timesteps[0] as number;
    const pa = a.step(x, t, x).prevSample;
    const pb = b.step(x, t, x).prevSample;
    expect(pa[0]).toBeCloseTo(pb[0] as number, 5);
  });

  it("exports the stochastic and not-for-SD lists", () => {
    expect(STOCHASTIC_SCHEDULERS).toContain("EulerAncestralDiscreteScheduler");
    expect(NOT_FOR_SD_UNET).toEqual(["KarrasVeScheduler", "ScoreSdeVeScheduler", "IPNDMScheduler"]);
  });
});
