/**
 * The self-hosted model catalog: the models a deployment's GPU fleet has, declared once (CDK context
 * `selfHostedModels`, infra/config.ts) and handed to the API, the provider functions and the worker as
 * the `SELF_HOSTED_MODELS` variable (validated by shared/schemas/model-catalog.ts). A job's `model_id`
 * names one entry; the fleet never runs a job on another model. Pure data and functions: what each
 * model can do, for the capability check (fleet-capabilities.ts) and `GET /v1/models`.
 */

/** Model families the worker's pipeline runs (SD 1.x, SD 2.x, SDXL). */
export const MODEL_KINDS = ["sd15", "sd2", "sdxl"] as const;
export type ModelKind = (typeof MODEL_KINDS)[number];

/**
 * The ControlNets an SD 1.x/2.x/SDXL model can have: the seed's controlnet_model names bar the
 * flux-only `gray` and `low_quality`. Its own list, so that the provider functions' configuration does
 * not bundle the request schema (shared/schemas/controlnet.ts); test/unit/fleet-capabilities.test.ts
 * holds it to that schema's lists.
 */
export const SD_CONTROLNETS = [
  "canny",
  "depth",
  "hed",
  "mlsd",
  "normal",
  "openpose",
  "scribble",
  "segmentation",
  "inpaint",
  "softedge",
  "lineart",
  "shuffle",
  "tile",
  "face_detector",
  "qrcode",
  "blur",
  "pose",
] as const;

/**
 * The `auto_hint` annotators that need weights (an ONNX model each); the others (canny, tile, blur,
 * gray, low_quality, shuffle, qrcode, inpaint) run without any. `pose` uses openpose's weights and
 * `scribble` HED's (controlnet_aux's HED with scribble=True). The worker's MODEL_ANNOTATORS is the same
 * list plus `pose` and `scribble` (test/worker/model-catalog.test.ts).
 */
export const WEIGHTED_ANNOTATORS = [
  "depth",
  "hed",
  "mlsd",
  "normal",
  "openpose",
  "segmentation",
  "softedge",
  "lineart",
  "face_detector",
] as const;
export type WeightedAnnotator = (typeof WEIGHTED_ANNOTATORS)[number];

/** Annotators that run another annotator's network. */
const WEIGHTS_OF: Readonly<Record<string, WeightedAnnotator>> = { pose: "openpose", scribble: "hed" };

/** The annotator whose weights `auto_hint` needs for the ControlNet `name`; null when it needs none. */
export function annotatorWeightsFor(name: string): WeightedAnnotator | null {
  const key = WEIGHTS_OF[name] ?? name;
  return (WEIGHTED_ANNOTATORS as readonly string[]).includes(key) ? (key as WeightedAnnotator) : null;
}

export interface SelfHostedModel {
  /** The `model_id` a job names. */
  id: string;
  kind: ModelKind;
  /** The ControlNets it has, by the seed's `controlnet_model` names. */
  controlnets: readonly string[];
  /** The weighted `auto_hint` annotators it has weights for. */
  annotators: readonly WeightedAnnotator[];
  /** An upscaler ONNX model (image → image × scale); `upscale: "yes"` is refused without one. */
  upscaler?: { scale: 2 | 4 };
  /** A safety checker ONNX model (diffusers' StableDiffusionSafetyChecker); `safety_checker: "yes"` is refused without one. */
  safetyChecker?: boolean;
  /** Where the worker syncs the model folder from (the Lambdas get the catalog without it). */
  s3Uri?: string;
}

export type ModelCatalog = readonly SelfHostedModel[];

export function findModel(catalog: ModelCatalog, id: unknown): SelfHostedModel | undefined {
  return typeof id === "string" ? catalog.find((model) => model.id === id) : undefined;
}

/** The catalog without the S3 locations: what the Lambdas need (and what fits their environment). */
export const withoutLocations = (catalog: ModelCatalog): SelfHostedModel[] =>
  catalog.map(({ s3Uri: _location, ...model }) => model);

/**
 * The seed's schedulers whose diffusers class takes `use_karras_sigmas` (each `__init__`'s argument;
 * the worker's ports honour it in the same classes: worker/src/schedulers/). The others (DDPM, DDIM,
 * PNDM, Euler ancestral, LCM) have no Karras schedule.
 */
export const KARRAS_SCHEDULERS: readonly string[] = [
  "LMSDiscreteScheduler",
  "EulerDiscreteScheduler",
  "DPMSolverMultistepScheduler",
  "HeunDiscreteScheduler",
  "KDPM2DiscreteScheduler",
  "DPMSolverSinglestepScheduler",
  "KDPM2AncestralDiscreteScheduler",
  "UniPCMultistepScheduler",
  "DEISMultistepScheduler",
];

/**
 * The seed's `algorithm_type` values → diffusers' DPMSolverMultistepScheduler `algorithm_type`.
 * `"dpmsolver+++"` is the seed's name for DPM++ SDE (A1111's "DPM++ 2M SDE"), diffusers'
 * `"sde-dpmsolver++"`; `"none"` leaves the model's own (diffusers' default `"dpmsolver++"`). Every value
 * maps to one the worker's port runs; a value without an entry here is refused by name.
 */
export const ALGORITHM_TYPE_MAP: Readonly<Record<string, string | null>> = {
  "dpmsolver+++": "sde-dpmsolver++",
  none: null,
};

/** The scheduler the provider (and so the fleet) uses when a request names none. */
export const DEFAULT_SCHEDULER = "UniPCMultistepScheduler";

/** The resolution each kind was trained at (what `GET /v1/models` suggests). */
export const NATIVE_SIZE: Readonly<Record<ModelKind, number>> = { sd15: 512, sd2: 768, sdxl: 1024 };

/** The upscale factor the provider applies (`upscale: "yes"`: 512×512 becomes 1024×1024). */
export const PROVIDER_UPSCALE_FACTOR = 2;
