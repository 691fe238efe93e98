/**
 * Ports of diffusers' tests/schedulers/test_scheduler_{euler,heun,lms,kdpm2_discrete}.py full loops
 * (no random numbers), plus determinism/statistics checks for the ancestral variants.
 */
import { describe, expect, it } from "vitest";
import {
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
} from "../../../worker/src/schedulers/euler.ts";
import { HeunDiscreteScheduler } from "../../../worker/src/schedulers/heun.ts";
import {
  KDPM2AncestralDiscreteScheduler,
  KDPM2DiscreteScheduler,
} from "../../../worker/src/schedulers/kdpm2.ts";
import { LMSDiscreteScheduler } from "../../../worker/src/schedulers/lms.ts";
import {
  dummyModel,
  dummyNoiseDeter,
  dummySampleDeter,
  meanAbs,
  SHAPE,
  seededNormal,
  sumAbs,
} from "./helpers.ts";

type KScheduler =
  | EulerDiscreteScheduler
  | EulerAncestralDiscreteScheduler
  | HeunDiscreteScheduler
  | LMSDiscreteScheduler
  | KDPM2DiscreteScheduler
  | KDPM2AncestralDiscreteScheduler;

/** get_scheduler_config() of diffusers' test_scheduler_{euler,euler_ancestral,heun,lms,kdpm2_discrete,kdpm2_ancestral}.py (identical), unchanged. */
const config = (extra: Record<string, unknown> = {}) => ({
  num_train_timesteps: 1100,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  ...extra,
});

/** The full_loop of these tests: scale input by init_noise_sigma, scale_model_input, model, step. */
function fullLoop(s: KScheduler, generator?: () => number): Float32Array {
  s.setTimesteps(10);
  let sample: Float32Array = dummySampleDeter().map((v) => Math.fround(v * s.initNoiseSigma));
  for (const t of s.timesteps) {
    sample = s.scaleModelInput(sample, t);
    sample = s.step(dummyModel(sample, t), t, sample, generator ? { generator } : {}).prevSample;
  }
  return sample;
}

const cases: [
  string,
  new (c: Record<string, unknown>) => KScheduler,
  string,
  Record<string, unknown>,
  number,
  number,
  number,
][] = [
  // [test, class, name, config, expected sum, expected mean, mean tolerance]
  ["euler", EulerDiscreteScheduler, "test_full_loop_no_noise", {}, 10.0807, 0.0131, 1e-3],
  [
    "euler",
    EulerDiscreteScheduler,
    "test_full_loop_with_v_prediction",
    { prediction_type: "v_prediction" },
    0.0002,
    2.2676e-6,
    1e-3,
  ],
  [
    "euler",
    EulerDiscreteScheduler,
    "test_full_loop_device_karras_sigmas",
    { use_karras_sigmas: true },
    124.52299499511719,
    0.16213932633399963,
    1e-3,
  ],
  ["heun", HeunDiscreteScheduler, "test_full_loop_no_noise", {}, 0.1233, 0.0002, 1e-3],
  [
    "heun",
    HeunDiscreteScheduler,
    "test_full_loop_with_v_prediction",
    { prediction_type: "v_prediction" },
    4.6934e-7,
    6.1112e-10,
    1e-3,
  ],
  [
    "heun",
    HeunDiscreteScheduler,
    "test_full_loop_device_karras_sigmas",
    { use_karras_sigmas: true },
    0.00015,
    1.9869554535034695e-7,
    1e-2,
  ],
  ["lms", LMSDiscreteScheduler, "test_full_loop_no_noise", {}, 1006.388, 1.31, 1e-3],
  [
    "lms",
    LMSDiscreteScheduler,
    "test_full_loop_with_v_prediction",
    { prediction_type: "v_prediction" },
    0.0017,
    2.2676e-6,
    1e-3,
  ],
  [
    "lms",
    LMSDiscreteScheduler,
    "test_full_loop_device_karras_sigmas",
    { use_karras_sigmas: true },
    3812.9927,
    4.9648,
    1e-3,
  ],
  ["kdpm2", KDPM2DiscreteScheduler, "test_full_loop_no_noise", {}, 20.4125, 0.0266, 1e-3],
  [
    "kdpm2",
    KDPM2DiscreteScheduler,
    "test_full_loop_with_v_prediction",
    { prediction_type: "v_prediction" },
    4.6934e-7,
    6.1112e-10,
    1e-3,
  ],
];

describe("k-diffusion schedulers: diffusers full-loop parity", () => {
  it.each(cases)("%s %s %s", (_f, Ctor, _name, extra, sum, mean, meanTol) => {
    const sample = fullLoop(new Ctor(config(extra)));
    expect(Math.abs(sumAbs(sample) - sum)).toBeLessThan(1e-2);
    expect(Math.abs(meanAbs(sample) - mean)).toBeLessThan(meanTol);
  });

  it("kdpm2 test_full_loop_with_noise (add_noise at timesteps[t_start * order])", () => {
    const s = new KDPM2DiscreteScheduler(config());
    s.setTimesteps(10);
    let sample: Float32Array = dummySampleDeter().map((v) => Math.fround(v * s.initNoiseSigma));
    const timesteps = s.timesteps.slice((10 - 2) * s.order);
    sample = s.addNoise(sample, dummyNoiseDeter(), [timesteps[0] as number]);
    for (const t of timesteps) {
      sample = s.scaleModelInput(sample, t);
      sample = s.step(dummyModel(sample, t), t, sample).prevSample;
    }
    expect(Math.abs(sumAbs(sample) - 70408.4062)).toBeLessThan(1e-2);
    expect(Math.abs(meanAbs(sample) - 91.6776)).toBeLessThan(1e-3);
  });

  it("Heun/KDPM2 interleave timesteps (order 2) and Euler's init_noise_sigma follows the spacing", () => {
    const heun = new HeunDiscreteScheduler(config());
    heun.setTimesteps(10);
    expect(heun.order).toBe(2);
    expect(heun.timesteps).toHaveLength(19);
    expect(heun.timesteps[1]).toBe(heun.timesteps[2]);
    const kd = new KDPM2DiscreteScheduler(config());
    kd.setTimesteps(10);
    expect(kd.timesteps).toHaveLength(19);
    const lead = new EulerDiscreteScheduler(config({ timestep_spacing: "leading", steps_offset: 1 }));
    lead.setTimesteps(10);
    expect(lead.timesteps[0]).toBe(991);
    const max = Math.max(...lead.sigmas);
    expect(lead.initNoiseSigma).toBeCloseTo(Math.sqrt(max * max + 1), 3);
    const trailing = new EulerDiscreteScheduler(config({ timestep_spacing: "trailing" }));
    trailing.setTimesteps(10);
    expect(trailing.timesteps[0]).toBe(1099);
  });

  it("add_noise broadcasts per batch element", () => {
    const s = new EulerDiscreteScheduler(config());
    s.setTimesteps(10);
    const x = dummySampleDeter();
    const noise = dummyNoiseDeter();
    const ts = [s.timesteps[0], s.timesteps[3], s.timesteps[5], s.timesteps[9]] as number[];
    const noisy = s.addNoise(x, noise, ts, SHAPE);
    const per = x.length / 4;
    for (let b = 0; b < 4; b++) {
      const sigma = s.sigmas[[0, 3, 5, 9][b] as number] as number;
      const k = b * per + 7;
      expect(noisy[k]).toBeCloseTo((x[k] as number) + sigma * (noise[k] as number), 3);
    }
    expect(() => s.addNoise(x, noise, [1, 2, 3], SHAPE)).toThrow(/batch/);
  });
});

describe("ancestral samplers (random steps): determinism, shape, statistics", () => {
  for (const Ctor of [EulerAncestralDiscreteScheduler, KDPM2AncestralDiscreteScheduler]) {
    it(`${Ctor.name}: same seed → same sample, different seed → different, finite and bounded`, () => {
      const a = fullLoop(new Ctor(config()), seededNormal(1));
      const b = fullLoop(new Ctor(config()), seededNormal(1));
      const c = fullLoop(new Ctor(config()), seededNormal(2));
      expect(a).toEqual(b);
      expect(a).not.toEqual(c);
      expect(a).toHaveLength(4 * 3 * 8 * 8);
      expect(a.every(Number.isFinite)).toBe(true);
    });
    it(`${Ctor.name}: requires a generator`, () => {
      expect(() => fullLoop(new Ctor(config()))).toThrow(/generator/);
    });
  }

  it("Euler ancestral with a zero model output follows sigma_up noise only (variance check)", () => {
    const s = new EulerAncestralDiscreteScheduler(config());
    s.setTimesteps(10);
    // with x0 = sample (model output 0), one step gives x + noise * sigma_up with sigma_down/sigma scaling
    const n = 20000;
    const x = new Float32Array(n);
    const t = s.timesteps[0] as number;
    const out = s.step(new Float32Array(n), t, x, { generator: seededNormal(3) }).prevSample;
    const s0 = s.sigmas[0] as number;
    const s1 = s.sigmas[1] as number;
    const up = Math.sqrt((s1 ** 2 * (s0 ** 2 - s1 ** 2)) / s0 ** 2);
    let m = 0;
    let v = 0;
    for (const o of out) m += o / n;
    for (const o of out) v += (o - m) ** 2 / n;
    expect(Math.abs(m)).toBeLessThan(0.05 * up);
    expect(Math.sqrt(v) / up).toBeGreaterThan(0.97);
    expect(Math.sqrt(v) / up).toBeLessThan(1.03);
  });
});
