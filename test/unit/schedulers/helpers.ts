/** Ports of diffusers' SchedulerCommonTest fixtures (tests/schedulers/test_schedulers.py). */
import { createRandom } from "../../../worker/src/pipeline/random.ts";
import type { Shape4 } from "../../../worker/src/schedulers/common.ts";

export const SHAPE: Shape4 = [4, 3, 8, 8];
const [B, C, H, W] = SHAPE;
const N = B * C * H * W;

/** `torch.arange(N).reshape(C, H, W, B) / N` permuted to (B, C, H, W); `flip` reverses the arange first. */
function deter(flip: boolean): Float32Array {
  const out = new Float32Array(N);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) {
          const k = ((c * H + h) * W + w) * B + b;
          out[((b * C + c) * H + h) * W + w] = (flip ? N - 1 - k : k) / N;
        }
  return out;
}

export const dummySampleDeter = (): Float32Array => deter(false);
export const dummyNoiseDeter = (): Float32Array => deter(true);

/** `model(sample, t) = sample * t / (t + 1)` with t cast to the sample's dtype (float32). */
export function dummyModel(sample: Float32Array, t: number): Float32Array {
  const tf = Math.fround(t);
  const d = Math.fround(tf + 1);
  return sample.map((v) => Math.fround(Math.fround(v * tf) / d));
}

export function sumAbs(x: Float32Array): number {
  let s = 0;
  for (const v of x) s += Math.abs(v);
  return s;
}

export function meanAbs(x: Float32Array): number {
  return sumAbs(x) / x.length;
}

/** Seeded standard normals: the worker's own generator (`createRandom`), one draw per call. */
export function seededNormal(seed: number): () => number {
  return createRandom(seed).gaussian;
}

/** A typical Stable Diffusion 1.5 `scheduler/scheduler_config.json`. */
export const SD15_SCHEDULER_CONFIG = {
  _class_name: "PNDMScheduler",
  _diffusers_version: "0.6.0",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
} as const;
