/**
 * Scheduler factory: `createScheduler(name, config?)` with diffusers' class names and snake_case config keys,
 * so a model folder's `scheduler/scheduler_config.json` loads as it is. See README.md in this folder.
 */
import {
  type RawConfig,
  SchedulerConfigError,
  type Shape4,
  type StepOptions,
  type StepResult,
} from "./common.ts";
import { DDIMInverseScheduler, DDIMScheduler } from "./ddim.ts";
import { DDPMScheduler } from "./ddpm.ts";
import { DEISMultistepScheduler } from "./deis.ts";
import { DPMSolverMultistepScheduler } from "./dpm-multistep.ts";
import { DPMSolverSinglestepScheduler } from "./dpm-singlestep.ts";
import { EulerAncestralDiscreteScheduler, EulerDiscreteScheduler } from "./euler.ts";
import { HeunDiscreteScheduler } from "./heun.ts";
import { KarrasVeScheduler } from "./karras-ve.ts";
import { KDPM2AncestralDiscreteScheduler, KDPM2DiscreteScheduler } from "./kdpm2.ts";
import { LCMScheduler } from "./lcm.ts";
import { LMSDiscreteScheduler } from "./lms.ts";
import { IPNDMScheduler, PNDMScheduler } from "./pndm.ts";
import { ScoreSdeVeScheduler } from "./score-sde-ve.ts";
import { UniPCMultistepScheduler } from "./unipc.ts";

export type { Generator, Shape4, StepOptions, StepResult } from "./common.ts";
export { SchedulerConfigError } from "./common.ts";
export {
  DDIMInverseScheduler,
  DDIMScheduler,
  DDPMScheduler,
  DEISMultistepScheduler,
  DPMSolverMultistepScheduler,
  DPMSolverSinglestepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  HeunDiscreteScheduler,
  IPNDMScheduler,
  KarrasVeScheduler,
  KDPM2AncestralDiscreteScheduler,
  KDPM2DiscreteScheduler,
  LCMScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
  ScoreSdeVeScheduler,
  UniPCMultistepScheduler,
};

/** The interface every scheduler implements (flat Float32Array tensors in NCHW order). */
export interface Scheduler {
  readonly name: string;
  /** Descending for denoising schedulers (ascending for DDIMInverseScheduler). */
  readonly timesteps: number[];
  readonly initNoiseSigma: number;
  /** Model evaluations per entry of `timesteps` bookkeeping (2 for Heun, KDPM2, KDPM2 a, KarrasVe). */
  readonly order: number;
  setTimesteps(n: number): void;
  /** The model input for `sample` at `t`; with `out` (same length), written there and `out` returned. */
  scaleModelInput(sample: Float32Array, t: number, out?: Float32Array): Float32Array;
  step(modelOutput: Float32Array, t: number, sample: Float32Array, opts?: StepOptions): StepResult;
  addNoise(
    original: Float32Array,
    noise: Float32Array,
    t: number | readonly number[],
    shape?: Shape4,
  ): Float32Array;
}

const CONSTRUCTORS = {
  DDPMScheduler,
  DDIMScheduler,
  PNDMScheduler,
  LMSDiscreteScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  DPMSolverMultistepScheduler,
  HeunDiscreteScheduler,
  KDPM2DiscreteScheduler,
  DPMSolverSinglestepScheduler,
  KDPM2AncestralDiscreteScheduler,
  UniPCMultistepScheduler,
  DDIMInverseScheduler,
  DEISMultistepScheduler,
  IPNDMScheduler,
  KarrasVeScheduler,
  ScoreSdeVeScheduler,
  LCMScheduler,
} as const satisfies Record<string, new (config?: RawConfig) => Scheduler>;

export type SchedulerName = keyof typeof CONSTRUCTORS;

/** The 18 scheduler class names of the seed, in its order. */
export const SCHEDULER_NAMES = Object.keys(CONSTRUCTORS) as SchedulerName[];

/** Schedulers whose `step` draws noise and therefore needs `{ generator }` (or `varianceNoise`). */
export const STOCHASTIC_SCHEDULERS: readonly SchedulerName[] = [
  "DDPMScheduler",
  "EulerAncestralDiscreteScheduler",
  "KDPM2AncestralDiscreteScheduler",
  "ScoreSdeVeScheduler",
  "LCMScheduler",
];

/** Schedulers that cannot drive an SD (epsilon / v, VP-schedule) UNet meaningfully; see README.md. */
export const NOT_FOR_SD_UNET: readonly SchedulerName[] = [
  "KarrasVeScheduler",
  "ScoreSdeVeScheduler",
  "IPNDMScheduler",
];

/**
 * Schedulers the worker refuses to generate with: those of NOT_FOR_SD_UNET, and DDIMInverseScheduler,
 * which runs towards noise (inversion), so a generation with it "succeeds" with meaningless output.
 */
export const NOT_FOR_GENERATION: readonly SchedulerName[] = [...NOT_FOR_SD_UNET, "DDIMInverseScheduler"];

export function isSchedulerName(name: string): name is SchedulerName {
  return Object.hasOwn(CONSTRUCTORS, name);
}

/**
 * Builds a scheduler by diffusers class name. `config` uses diffusers' snake_case keys; unknown keys
 * (including `_class_name` and `_diffusers_version`) are ignored, invalid values throw SchedulerConfigError.
 */
export function createScheduler(name: string, config?: Readonly<Record<string, unknown>>): Scheduler {
  if (!isSchedulerName(name)) {
    throw new SchedulerConfigError(
      `unknown scheduler "${name}"; expected one of ${SCHEDULER_NAMES.join(", ")}`,
    );
  }
  return new CONSTRUCTORS[name](config);
}
