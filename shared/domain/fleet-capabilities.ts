/**
 * What the self-hosted fleet (worker/) cannot honour of a ControlNet request, given the deployment's
 * model catalog (model-catalog.ts). The worker runs the model a job names (never another) with the
 * ControlNets, annotators, upscaler and safety checker its catalog entry declares, img2img and
 * inpainting, Karras sigmas where diffusers' scheduler has them and the seed's DPM-Solver algorithm
 * types; it has no LoRA, custom VAE, IP-Adapter, prompt enhancer nor token merging. A request that
 * asks for something it lacks would come back `succeeded` without it, so the fleet refuses it instead
 * (self-hosted jobs: 400 at submit) or never takes it (auto jobs wait for the provider). The self-hosted
 * provider declares it as its capability (shared/providers/self-hosted.ts); the worker checks again.
 */
import {
  ALGORITHM_TYPE_MAP,
  annotatorWeightsFor,
  DEFAULT_SCHEDULER,
  findModel,
  KARRAS_SCHEDULERS,
  type ModelCatalog,
} from "./model-catalog.ts";

export interface UnsupportedParam {
  /** The request parameter, as the client named it. */
  param: string;
  reason: string;
}

/**
 * Schedulers of the seed that cannot drive an SD (epsilon / v, VP-schedule) UNet: KarrasVe and
 * ScoreSdeVe are variance-exploding samplers, IPNDM assumes another parameterisation, and DDIMInverse
 * maps an image to noise instead of generating one. The worker's NOT_FOR_SD_UNET is the same list
 * (test/worker/fleet-refusals.test.ts holds them equal).
 */
export const FLEET_REFUSED_SCHEDULERS: readonly string[] = [
  "KarrasVeScheduler",
  "ScoreSdeVeScheduler",
  "IPNDMScheduler",
  "DDIMInverseScheduler",
];

/** yes/no switches whose "yes" asks for something the fleet lacks whatever the model ("no", or unset, is what it does). */
const SWITCHES: Readonly<Record<string, string>> = {
  enhance_prompt: "the fleet has no prompt enhancer",
  tomesd: "the fleet has no token merging",
};

/** Parameters the fleet cannot honour with any value. */
const ANY_VALUE: Readonly<Record<string, string>> = {
  lora_model: "the fleet loads no LoRA",
  lora_strength: "the fleet loads no LoRA",
  vae: "the fleet has only its model's own VAE",
  ip_adapter_id: "the fleet has no IP-Adapter",
  ip_adapter_scale: "the fleet has no IP-Adapter",
  ip_adapter_image: "the fleet has no IP-Adapter",
};

const list = (items: readonly string[]) => (items.length === 0 ? "none" : items.join(", "));

/** Each ControlNet name of a request's comma-separated `controlnet_model`. */
const controlNets = (value: unknown): string[] =>
  typeof value === "string"
    ? value
        .split(",")
        .map((entry) => entry.trim())
        .filter(Boolean)
    : [];

/**
 * Each parameter of `request` the fleet cannot honour with `catalog`, in a stable order; empty when it
 * can run it exactly as asked.
 */
export function unsupportedOnFleet(
  request: Readonly<Record<string, unknown>>,
  catalog: ModelCatalog,
): UnsupportedParam[] {
  const found: UnsupportedParam[] = [];
  const model = findModel(catalog, request.model_id);
  if (!model) {
    found.push({
      param: "model_id",
      reason: `the fleet has no model "${String(request.model_id)}" (it has ${list(catalog.map((m) => m.id))})`,
    });
  } else {
    const names = controlNets(request.controlnet_model);
    const missing = names.filter((name) => !model.controlnets.includes(name));
    if (missing.length > 0) {
      found.push({
        param: "controlnet_model",
        reason: `model ${model.id} has no ${missing.join(", ")} ControlNet (it has ${list(model.controlnets)})`,
      });
    }
    if (request.auto_hint === "yes") {
      const weightless = names
        .map(annotatorWeightsFor)
        .filter((key): key is NonNullable<typeof key> => key !== null && !model.annotators.includes(key));
      if (weightless.length > 0) {
        found.push({
          param: "auto_hint",
          reason: `model ${model.id} has no weights for the ${[...new Set(weightless)].join(", ")} annotator (it has ${list(model.annotators)})`,
        });
      }
    }
    if (request.upscale === "yes" && !model.upscaler) {
      found.push({ param: "upscale", reason: `model ${model.id} has no upscaler model` });
    }
    if (request.safety_checker === "yes" && !model.safetyChecker) {
      found.push({ param: "safety_checker", reason: `model ${model.id} has no safety checker model` });
    }
  }
  const scheduler = typeof request.scheduler === "string" ? request.scheduler : DEFAULT_SCHEDULER;
  if (FLEET_REFUSED_SCHEDULERS.includes(scheduler)) {
    found.push({ param: "scheduler", reason: `${scheduler} cannot drive the fleet's SD UNet` });
  }
  if (request.use_karras_sigmas === "yes" && !KARRAS_SCHEDULERS.includes(scheduler)) {
    found.push({ param: "use_karras_sigmas", reason: `${scheduler} has no Karras sigmas` });
  }
  const algorithm = request.algorithm_type;
  if (algorithm !== undefined && algorithm !== "none") {
    if (!(typeof algorithm === "string" && Object.hasOwn(ALGORITHM_TYPE_MAP, algorithm))) {
      found.push({ param: "algorithm_type", reason: `the fleet's DPM-Solver has no ${String(algorithm)}` });
    } else if (scheduler !== "DPMSolverMultistepScheduler") {
      found.push({ param: "algorithm_type", reason: `${scheduler} takes no algorithm_type` });
    }
  }
  for (const [param, reason] of Object.entries(SWITCHES)) {
    if (request[param] === "yes") found.push({ param, reason });
  }
  for (const [param, reason] of Object.entries(ANY_VALUE)) {
    if (request[param] !== undefined) found.push({ param, reason });
  }
  found.push(...unsupportedSizeOnFleet(request));
  return found;
}

/**
 * The pixel multiple the fleet's width and height must be. A traced UNet upsamples by a fixed factor 2
 * per level (three times for SD, twice for SDXL) from a latent 1/8 of the image, so its skip
 * connections line up only at multiples of 64 pixels; other sizes fail inside the graph
 * (docs/onnx-layouts.md). The worker refuses them too (worker/src/pipeline/layouts.ts).
 */
export const FLEET_SIZE_MULTIPLE = 64;

/** width and height the fleet cannot take (not multiples of FLEET_SIZE_MULTIPLE), each named; unset is 512. */
export function unsupportedSizeOnFleet(request: Readonly<Record<string, unknown>>): UnsupportedParam[] {
  const found: UnsupportedParam[] = [];
  for (const param of ["width", "height"] as const) {
    const value = request[param];
    if (typeof value === "number" && value % FLEET_SIZE_MULTIPLE !== 0) {
      found.push({
        param,
        reason: `${param} ${value} is not a multiple of ${FLEET_SIZE_MULTIPLE}: the fleet's traced UNets take only multiples of ${FLEET_SIZE_MULTIPLE} pixels`,
      });
    }
  }
  return found;
}

/** One sentence naming every refused parameter, for a failure message. */
export function describeUnsupported(found: readonly UnsupportedParam[]): string {
  return `The self-hosted fleet cannot honour: ${found.map((f) => `${f.param} (${f.reason})`).join("; ")}.`;
}

/** What the fleet refuses, in one sentence built from the tables above (the API's description of `provider`). */
export const FLEET_REFUSALS_SUMMARY = `a model_id not in GET /v1/models, or a ControlNet, auto_hint annotator, upscale or safety_checker its model lacks; ${Object.keys(ANY_VALUE).join(", ")} set at all; ${Object.keys(
  SWITCHES,
).join(
  ", ",
)} "yes"; use_karras_sigmas "yes" with a scheduler without Karras sigmas; the schedulers ${FLEET_REFUSED_SCHEDULERS.join(", ")}; width or height not a multiple of ${FLEET_SIZE_MULTIPLE}`;
