/**
 * What the self-hosted fleet (worker/) cannot honour of a ControlNet request. The worker runs the SD
 * UNet with ControlNets, img2img and inpainting; it has no LoRA, custom VAE, IP-Adapter, upscaler,
 * NSFW filter, prompt enhancer, token merging, Karras sigmas nor DPM-Solver++ (3M) variant. A request
 * that sets any of these to something other than the provider's neutral value would come back
 * `succeeded` without it, so the fleet refuses it instead (self-hosted jobs) or never takes it (auto
 * jobs). Declared as the self-hosted provider module's capability (shared/providers/self-hosted.ts).
 */

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

/** yes/no switches whose "yes" asks for something the fleet lacks ("no", or unset, is what it does). */
const SWITCHES: Readonly<Record<string, string>> = {
  use_karras_sigmas: "the fleet's schedulers have no Karras sigmas",
  upscale: "the fleet has no upscaler model",
  safety_checker: "the fleet has no NSFW checker model",
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

/** Each parameter of `request` the fleet cannot honour, in a stable order; empty when it can run it. */
export function unsupportedOnFleet(request: Readonly<Record<string, unknown>>): UnsupportedParam[] {
  const found: UnsupportedParam[] = [];
  const scheduler = request.scheduler;
  if (typeof scheduler === "string" && FLEET_REFUSED_SCHEDULERS.includes(scheduler)) {
    found.push({ param: "scheduler", reason: `${scheduler} cannot drive the fleet's SD UNet` });
  }
  if (request.algorithm_type !== undefined && request.algorithm_type !== "none") {
    found.push({
      param: "algorithm_type",
      reason: `the fleet's DPMSolverMultistepScheduler has no ${String(request.algorithm_type)}`,
    });
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
export const FLEET_REFUSALS_SUMMARY = `${Object.keys(ANY_VALUE).join(", ")} set at all; ${Object.keys(
  SWITCHES,
).join(
  ", ",
)} "yes"; algorithm_type other than "none"; the schedulers ${FLEET_REFUSED_SCHEDULERS.join(", ")}; width or height not a multiple of ${FLEET_SIZE_MULTIPLE}`;
