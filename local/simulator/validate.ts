/**
 * Request validation the way the provider does it: every problem is reported at once as
 * `{ field: ["message", ...] }`, the shape of the real API's validation errors. Numbers may arrive as
 * JSON numbers or numeric strings (the provider coerces both).
 */
import { CONTROLNET_MODELS, SCHEDULERS } from "../../shared/schemas/controlnet.ts";

// The provider's lists are the seed's: the same ones the orchestrator validates against.
export const SIM_CONTROLNET_MODELS: ReadonlySet<string> = new Set(CONTROLNET_MODELS);
export const SIM_SCHEDULERS: ReadonlySet<string> = new Set(SCHEDULERS);

const FLUX_MODELS = new Set(["canny", "tile", "depth", "blur", "pose", "gray", "low_quality"]);

export interface ValidRequest {
  modelId: string;
  controlnetModels: string[];
  controlnetType: string;
  width: number;
  height: number;
  samples: number;
  seed: number | null;
  /** The image generation is conditioned on: control_image, else init_image. */
  image: string;
  base64: boolean;
  upscale: boolean;
  webhook: string | null;
  trackId: string | number | null;
}

export type FieldErrors = Record<string, string[]>;

function num(value: unknown): number | null {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "string" && value.trim() !== "") {
    const n = Number(value);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

const present = (value: unknown) => value !== undefined && value !== null && value !== "";

export function validateRequest(
  body: Record<string, unknown>,
): { ok: true; value: ValidRequest } | { ok: false; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const fail = (field: string, message: string) => {
    const list = errors[field] ?? [];
    list.push(message);
    errors[field] = list;
  };

  const modelId = typeof body.model_id === "string" ? body.model_id.trim() : "";
  if (!present(body.model_id)) fail("model_id", "The model id field is required.");
  else if (modelId === "") fail("model_id", "The model id must be a string.");

  let controlnetModels: string[] = [];
  if (!present(body.controlnet_model)) fail("controlnet_model", "The controlnet model field is required.");
  else if (typeof body.controlnet_model !== "string")
    fail("controlnet_model", "The controlnet model must be a string.");
  else {
    controlnetModels = body.controlnet_model.split(",").map((m) => m.trim());
    for (const model of controlnetModels) {
      if (!SIM_CONTROLNET_MODELS.has(model))
        fail("controlnet_model", `The controlnet model ${JSON.stringify(model)} is not supported.`);
    }
    if (/flux/i.test(modelId)) {
      if (controlnetModels.length > 1)
        fail("controlnet_model", "Multi ControlNet is not supported with flux models.");
      for (const model of controlnetModels) {
        if (!FLUX_MODELS.has(model))
          fail("controlnet_model", `The controlnet model ${model} is not available for flux.`);
      }
    }
  }

  let controlnetType = controlnetModels[0] ?? "";
  if (present(body.controlnet_type)) {
    if (typeof body.controlnet_type !== "string" || !SIM_CONTROLNET_MODELS.has(body.controlnet_type)) {
      fail("controlnet_type", "The selected controlnet type is invalid.");
    } else {
      controlnetType = body.controlnet_type;
    }
  }

  const range = (field: string, min: number, max: number, integer: boolean, fallback: number): number => {
    if (!present(body[field])) return fallback;
    const n = num(body[field]);
    if (n === null || (integer && !Number.isInteger(n))) {
      fail(field, `The ${field.replaceAll("_", " ")} must be ${integer ? "an integer" : "a number"}.`);
      return fallback;
    }
    if (n < min || n > max)
      fail(field, `The ${field.replaceAll("_", " ")} must be between ${min} and ${max}.`);
    return n;
  };
  const width = range("width", 64, 1024, true, 512);
  const height = range("height", 64, 1024, true, 512);
  const samples = range("samples", 1, 4, true, 1);
  range("num_inference_steps", 1, 50, true, 30);
  range("guidance_scale", 1, 20, false, 7.5);
  range("strength", 0, 1, false, 0.7);
  range("clip_skip", 1, 8, true, 1);
  range("ip_adapter_scale", 0, 1, false, 0.6);

  if (
    present(body.scheduler) &&
    (typeof body.scheduler !== "string" || !SIM_SCHEDULERS.has(body.scheduler))
  ) {
    fail("scheduler", "The selected scheduler is invalid.");
  }
  for (const field of ["prompt", "negative_prompt"]) {
    if (present(body[field]) && typeof body[field] !== "string")
      fail(field, `The ${field.replace("_", " ")} must be a string.`);
  }
  for (const field of [
    "auto_hint",
    "guess_mode",
    "tomesd",
    "use_karras_sigmas",
    "safety_checker",
    "enhance_prompt",
    "upscale",
    "base64",
    "temp",
  ]) {
    if (present(body[field]) && body[field] !== "yes" && body[field] !== "no") {
      fail(field, `The ${field.replaceAll("_", " ")} must be yes or no.`);
    }
  }

  let seed: number | null = null;
  if (present(body.seed)) {
    const n = num(body.seed);
    if (n === null || !Number.isSafeInteger(n) || n < 0)
      fail("seed", "The seed must be a non-negative integer or null.");
    else seed = n;
  }

  const image = [body.control_image, body.init_image].find(
    (v): v is string => typeof v === "string" && v.trim() !== "",
  );
  if (image === undefined) fail("init_image", "The init image field is required.");
  for (const field of ["init_image", "control_image", "mask_image"]) {
    if (present(body[field]) && typeof body[field] !== "string")
      fail(field, `The ${field.replace("_", " ")} must be a string.`);
  }
  if (controlnetModels.includes("inpaint") && !present(body.mask_image)) {
    fail("mask_image", "The mask image field is required when controlnet model is inpaint.");
  }

  let webhook: string | null = null;
  if (present(body.webhook)) {
    if (typeof body.webhook !== "string" || !/^https?:\/\//i.test(body.webhook))
      fail("webhook", "The webhook must be a valid URL.");
    else webhook = body.webhook;
  }
  let trackId: string | number | null = null;
  if (present(body.track_id)) {
    if (typeof body.track_id !== "string" && typeof body.track_id !== "number")
      fail("track_id", "The track id must be a string or an integer.");
    else trackId = body.track_id;
  }

  if (Object.keys(errors).length > 0) return { ok: false, errors };
  return {
    ok: true,
    value: {
      modelId,
      controlnetModels,
      controlnetType,
      width,
      height,
      samples,
      seed,
      image: image ?? "",
      base64: body.base64 === "yes",
      upscale: body.upscale === "yes",
      webhook,
      trackId,
    },
  };
}
