import * as z from "zod/mini";
import { HTTP_URL_PATTERN, httpUrlProblem, normaliseHttpUrl } from "../domain/http-url.ts";
import { MAX_SAMPLES } from "../domain/job.ts";
import { isUploadRef, UPLOAD_REF } from "../domain/uploads.ts";
import { httpUrl } from "./http-url.ts";
import "./mini-locale.ts";

/**
 * The ModelsLab ControlNet request parameters, as listed in the provider's seed
 * (docs/reference/seed-controlnet-api.txt; behaviour in docs/provider-modelslab.md), minus `key`,
 * `webhook` and `track_id`, which the orchestrator owns.
 *
 * No field has a default: the provider applies its own documented defaults (e.g. scheduler
 * UniPCMultistepScheduler) to what is left out, and the orchestrator passes through exactly what the
 * client set. Numbers must be JSON numbers (no numeric strings), except the two comma-separated lists
 * the provider itself takes as strings (`controlnet_conditioning_scale`, `lora_strength`).
 *
 * zod/mini, as config.ts and messages.ts, so the API bundle carries no classic zod: the same checks as
 * classic chains would make (`z.maxLength(n)` for `.max(n)`, `z.superRefine(f)` for `.superRefine(f)`...),
 * so the same parsing, issues and JSON Schema. English messages: `mini-locale.ts`.
 */

/** Every ControlNet model/type name the seed lists, in its order. */
export const CONTROLNET_MODELS = [
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
  "gray",
  "low_quality",
] as const;
export type ControlNetModel = (typeof CONTROLNET_MODELS)[number];

/** The only ControlNet models that apply to a flux model (the seed's FluxDev column). */
export const FLUX_CONTROLNET_MODELS = [
  "canny",
  "tile",
  "depth",
  "blur",
  "pose",
  "gray",
  "low_quality",
] as const satisfies readonly ControlNetModel[];

/** ControlNet models the seed's table marks "No" for both SDXL and SD1.5. */
export const FLUX_ONLY_CONTROLNET_MODELS = [
  "gray",
  "low_quality",
] as const satisfies readonly ControlNetModel[];

export const SCHEDULERS = [
  "DDPMScheduler",
  "DDIMScheduler",
  "PNDMScheduler",
  "LMSDiscreteScheduler",
  "EulerDiscreteScheduler",
  "EulerAncestralDiscreteScheduler",
  "DPMSolverMultistepScheduler",
  "HeunDiscreteScheduler",
  "KDPM2DiscreteScheduler",
  "DPMSolverSinglestepScheduler",
  "KDPM2AncestralDiscreteScheduler",
  "UniPCMultistepScheduler",
  "DDIMInverseScheduler",
  "DEISMultistepScheduler",
  "IPNDMScheduler",
  "KarrasVeScheduler",
  "ScoreSdeVeScheduler",
  "LCMScheduler",
] as const;
export type Scheduler = (typeof SCHEDULERS)[number];

export const IP_ADAPTER_IDS = ["ip-adapter_sdxl", "ip-adapter_sd15", "ip-adapter-plus-face_sd15"] as const;
export const ALGORITHM_TYPES = ["dpmsolver+++", "none"] as const;

export const MAX_PROMPT_CHARS = 2000;
export const MAX_IMAGE_URL_CHARS = 2048;
/** Base64 image data can never exceed what API Gateway lets through (6 MB), far above our body limit. */
export const MAX_IMAGE_DATA_CHARS = 6 * 1024 * 1024;

const MODEL_ID = /^[A-Za-z0-9._-]{1,128}$/;
const DECIMAL = /^(?:\d+(?:\.\d+)?|\.\d+)$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const DATA_URI = /^data:image\/(?:png|jpeg|webp);base64,/;
const HTTP_SCHEME = /^https?:/i;

/** Splits a provider comma-separated list into trimmed entries (empty entries kept, to be reported). */
export function splitList(value: string): string[] {
  return value.split(",").map((entry) => entry.trim());
}
const normaliseList = (value: string): string => splitList(value).join(",");

/*
 * JSON Schema for what the checks below enforce in code, so the OpenAPI document shows the rule
 * (`z.meta` is merged into toJSONSchema's output; parsing ignores it). Each pattern accepts at least
 * what the server accepts: test/unit/openapi.test.ts holds them to the server's verdicts.
 */
/** A comma-separated list of `entry`, spaces around entries allowed (they are trimmed). */
const listPattern = (entry: string) => `^\\s*${entry}\\s*(?:,\\s*${entry}\\s*)*$`;

const isControlNetModel = (value: string): value is ControlNetModel =>
  (CONTROLNET_MODELS as readonly string[]).includes(value);

function isHttpUrl(value: string): boolean {
  if (!/^https?:\/\//i.test(value)) return false;
  try {
    const url = new URL(value);
    return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
  } catch {
    return false;
  }
}

/** True when the base64 text decodes to something starting like a PNG, JPEG or WebP file. */
function looksLikeImage(base64: string): boolean {
  let head: string;
  try {
    head = atob(base64.slice(0, 16));
  } catch {
    return false;
  }
  return (
    head.startsWith("\x89PNG\r\n\x1a\n") ||
    head.startsWith("\xff\xd8\xff") ||
    (head.startsWith("RIFF") && head.slice(8, 12) === "WEBP")
  );
}

const yesNo = z.enum(["yes", "no"]);
const int = (min: number, max: number) => z.int().check(z.gte(min), z.lte(max));
const modelId = z.string().check(z.regex(MODEL_ID, "must be 1 to 128 characters of A-Z a-z 0-9 . _ -"));

/**
 * A comma-separated list of distinct, non-empty entries, each checked by `check` (message or null);
 * `entryPattern` is the JSON Schema form of an entry `check` accepts.
 */
function commaList(maxChars: number, entryPattern: string, check: (entry: string) => string | null) {
  return z.string().check(
    z.maxLength(maxChars),
    z.meta({ pattern: listPattern(entryPattern) }),
    z.overwrite(normaliseList),
    z.superRefine((value: string, ctx) => {
      const seen = new Set<string>();
      for (const entry of value.split(",")) {
        const problem =
          entry === ""
            ? "empty entry in comma-separated list"
            : seen.has(entry)
              ? `duplicate entry "${entry}"`
              : check(entry);
        if (problem !== null) ctx.addIssue({ code: "custom", message: problem });
        seen.add(entry);
      }
    }),
  );
}

/** One number, or a comma-separated list of numbers (the provider's own string form), each in range. */
function numberOrList(min: number, max: number) {
  const list = z.string().check(
    z.maxLength(256),
    z.meta({
      pattern: listPattern(DECIMAL.source.slice(1, -1)),
      description: `Comma-separated numbers, each from ${min} to ${max}.`,
    }),
    z.overwrite(normaliseList),
    z.superRefine((value: string, ctx) => {
      for (const entry of value.split(",")) {
        const n = Number(entry);
        if (!DECIMAL.test(entry) || n < min || n > max) {
          ctx.addIssue({
            code: "custom",
            message: `each value must be a number from ${min} to ${max}, got "${entry}"`,
          });
        }
      }
    }),
  );
  return z.union([storableNumber(min, max), list], {
    error: `must be a number from ${min} to ${max} or a comma-separated list of such numbers`,
  });
}

/**
 * A fractional parameter in [min, max]. Sub-microscopic values such as 5e-324 are refused: they mean
 * nothing to the provider and DynamoDB cannot store numbers below 1e-130.
 */
function storableNumber(min: number, max: number) {
  return z.number().check(
    z.gte(min),
    z.lte(max),
    z.refine((value: number) => value === 0 || Math.abs(value) >= 1e-6, {
      message: "must be 0 or at least 0.000001",
    }),
    z.meta({ not: { exclusiveMinimum: -1e-6, exclusiveMaximum: 1e-6, not: { const: 0 } } }),
  );
}

/**
 * An image the provider can use: an http(s) URL it can fetch, or base64 image data (a
 * `data:image/png|jpeg|webp;base64,` URI or raw base64 of a PNG, JPEG or WebP file). Base64 data is only
 * valid with `base64: "yes"`, which checkControlNetRules enforces.
 */
const imageRef = z.string().check(
  z.superRefine((value: string, ctx) => {
    const fail = (message: string) => ctx.addIssue({ code: "custom", message });
    if (value.startsWith("upload:")) {
      if (!isUploadRef(value))
        fail("an upload reference is upload:<upload_id> as POST /v1/uploads returned it");
      return;
    }
    if (HTTP_SCHEME.test(value)) {
      const problem = httpUrlProblem(value, MAX_IMAGE_URL_CHARS);
      if (problem !== null) fail(problem);
      return;
    }
    if (value.length > MAX_IMAGE_DATA_CHARS)
      return fail(`base64 image data must be at most ${MAX_IMAGE_DATA_CHARS} characters`);
    const data = value.replace(DATA_URI, "");
    if (data.startsWith("data:"))
      return fail("data URI must be data:image/png, image/jpeg or image/webp with ;base64,");
    if (data.length % 4 !== 0 || !BASE64.test(data))
      return fail("must be an http(s) URL or valid base64 image data");
    if (!looksLikeImage(data)) fail("base64 data must be a PNG, JPEG or WebP image");
  }),
  // A URL goes on as the parser read it (see http-url.ts); base64 data and upload refs as they are.
  z.overwrite((value: string) => (HTTP_SCHEME.test(value) ? normaliseHttpUrl(value) : value)),
  z.meta({
    description:
      'An http(s) URL, an upload reference (upload:<upload_id> from POST /v1/uploads), or, with base64: "yes", base64 data of a PNG, JPEG or WebP image (raw or as a data:image/png|jpeg|webp;base64, URI).',
    anyOf: [
      { type: "string", pattern: HTTP_URL_PATTERN, maxLength: MAX_IMAGE_URL_CHARS },
      { type: "string", pattern: UPLOAD_REF.source },
      { type: "string", pattern: `${DATA_URI.source}[A-Za-z0-9+/]+={0,2}$`, maxLength: MAX_IMAGE_DATA_CHARS },
      { type: "string", pattern: BASE64.source, maxLength: MAX_IMAGE_DATA_CHARS },
    ],
  }),
);

/** The seed describes ip_adapter_image as a URL only, and `base64` as covering the other three images. */
const imageUrl = httpUrl(MAX_IMAGE_URL_CHARS);

export const controlNetFields = {
  /** Public or trained model. Containing "flux" selects the Flux rules (see checkControlNetRules). */
  model_id: modelId,
  /** One model, or comma-separated for multi-ControlNet ("canny,depth"); normalised to no spaces. */
  controlnet_model: commaList(512, `(?:${CONTROLNET_MODELS.join("|")})`, (entry) =>
    isControlNetModel(entry) ? null : `unknown ControlNet model "${entry}"`,
  ),
  controlnet_type: z.enum(CONTROLNET_MODELS),
  auto_hint: z.optional(yesNo),
  guess_mode: z.optional(yesNo),
  prompt: z.optional(z.string().check(z.maxLength(MAX_PROMPT_CHARS))),
  negative_prompt: z.optional(z.string().check(z.maxLength(MAX_PROMPT_CHARS))),
  init_image: z.optional(imageRef),
  control_image: z.optional(imageRef),
  mask_image: z.optional(imageRef),
  width: z.optional(int(64, 1024)),
  height: z.optional(int(64, 1024)),
  samples: z.optional(int(1, MAX_SAMPLES)),
  scheduler: z.optional(z.enum(SCHEDULERS)),
  tomesd: z.optional(yesNo),
  use_karras_sigmas: z.optional(yesNo),
  algorithm_type: z.optional(z.enum(ALGORITHM_TYPES)),
  vae: z.optional(modelId),
  /** One strength for all LoRAs, or comma-separated, one per lora_model entry; each 0.1..1. */
  lora_strength: z.optional(numberOrList(0.1, 1)),
  lora_model: z.optional(
    commaList(1024, MODEL_ID.source.slice(1, -1), (entry) =>
      MODEL_ID.test(entry) ? null : `invalid LoRA model id "${entry}"`,
    ),
  ),
  /**
   * The seed's enum (21, 31) lists plan presets, and the provider's own examples send 30, so an enum
   * would reject documented requests; accept any integer 1..50 and let the provider clamp to the plan.
   */
  num_inference_steps: z.optional(int(1, 50)),
  safety_checker: z.optional(yesNo),
  ip_adapter_id: z.optional(z.enum(IP_ADAPTER_IDS)),
  ip_adapter_scale: z.optional(storableNumber(0, 1)),
  ip_adapter_image: z.optional(imageUrl),
  enhance_prompt: z.optional(yesNo),
  /**
   * One scale for every ControlNet, or a comma-separated list with one value per controlnet_model
   * entry (multi-ControlNet; the provider echoes it as a string in meta); each 0.1..5.
   */
  controlnet_conditioning_scale: z.optional(numberOrList(0.1, 5)),
  /** Only meaningful with init_image; allowed without it (harmless). */
  strength: z.optional(storableNumber(0, 1)),
  guidance_scale: z.optional(storableNumber(1, 20)),
  /** null asks the provider for a random seed (echoed back in meta.seed). */
  seed: z.optional(z.nullable(z.int().check(z.gte(0)))),
  upscale: z.optional(yesNo),
  clip_skip: z.optional(int(1, 8)),
  base64: z.optional(yesNo),
  temp: z.optional(yesNo),
};

const controlNetObject = z.strictObject(controlNetFields);
export type ControlNetRequest = z.output<typeof controlNetObject>;
export type ControlNetRequestInput = z.input<typeof controlNetObject>;

/**
 * Cross-field rules, for `.check(z.superRefine(checkControlNetRules))` on any object built from
 * controlNetFields. Skipped while any field has an issue of its own (an unknown key does not count).
 */
export function checkControlNetRules(
  value: ControlNetRequest,
  ctx: z.core.$RefinementCtx<ControlNetRequest>,
): void {
  // The rules assume every field is individually valid; a field's own issue is the one worth reporting.
  if (ctx.issues.some((issue) => issue.path !== undefined && issue.path.length > 0)) return;
  const fail = (field: keyof ControlNetRequest, message: string) =>
    ctx.addIssue({ code: "custom", path: [field], message: `${field}: ${message}` });
  const models = splitList(value.controlnet_model);

  // The provider conditions on controlnet_type, which must be one of the loaded models.
  if (!models.includes(value.controlnet_type)) {
    fail(
      "controlnet_type",
      `"${value.controlnet_type}" must be one of the controlnet_model entries (${models.join(", ")})`,
    );
  }

  // Seed's table: flux models take a subset of models and no multi-ControlNet; gray/low_quality are flux-only.
  if (/flux/i.test(value.model_id)) {
    if (models.length > 1) fail("controlnet_model", "multi-ControlNet is not supported with flux models");
    const unsupported = models.filter((m) => !(FLUX_CONTROLNET_MODELS as readonly string[]).includes(m));
    if (unsupported.length > 0) {
      fail(
        "controlnet_model",
        `${unsupported.join(", ")} not available with flux models (only ${FLUX_CONTROLNET_MODELS.join(", ")})`,
      );
    }
  } else {
    const fluxOnly = models.filter((m) => (FLUX_ONLY_CONTROLNET_MODELS as readonly string[]).includes(m));
    if (fluxOnly.length > 0)
      fail("controlnet_model", `${fluxOnly.join(", ")} only available with flux models`);
  }

  // ControlNet needs an image to condition on.
  if (value.init_image === undefined && value.control_image === undefined) {
    fail("init_image", "init_image or control_image is required");
  }

  // Inpainting fills the masked area, so it needs a mask. A mask without inpaint is allowed: the
  // provider ignores it, and rejecting it would break clients that always send one.
  if (models.includes("inpaint") && value.mask_image === undefined) {
    fail("mask_image", "mask_image is required when controlnet_model includes inpaint");
  }

  // The seed documents algorithm_type as a setting of DPMSolverMultistepScheduler only.
  if (value.algorithm_type === "dpmsolver+++" && value.scheduler !== "DPMSolverMultistepScheduler") {
    fail("algorithm_type", '"dpmsolver+++" requires scheduler DPMSolverMultistepScheduler');
  }

  // A list of scales pairs up with the models; a single number applies to all of them.
  const scale = value.controlnet_conditioning_scale;
  if (typeof scale === "string" && splitList(scale).length !== models.length) {
    fail("controlnet_conditioning_scale", `needs one value per controlnet_model entry (${models.length})`);
  }

  // IP adapter settings mean nothing without an adapter, and an adapter needs its image.
  if (value.ip_adapter_id === undefined) {
    if (value.ip_adapter_scale !== undefined) fail("ip_adapter_scale", "requires ip_adapter_id");
    if (value.ip_adapter_image !== undefined) fail("ip_adapter_image", "requires ip_adapter_id");
  } else if (value.ip_adapter_image === undefined) {
    fail("ip_adapter_image", "is required with ip_adapter_id");
  }

  // LoRA strengths pair up with the LoRA models, as the seed describes; one value applies to all.
  if (value.lora_strength !== undefined) {
    if (value.lora_model === undefined) fail("lora_strength", "requires lora_model");
    else if (typeof value.lora_strength === "string") {
      const strengths = splitList(value.lora_strength).length;
      const loras = splitList(value.lora_model).length;
      if (strengths > 1 && strengths !== loras)
        fail("lora_strength", `needs one value, or one per lora_model entry (${loras})`);
    }
  }

  // The provider reads images as base64 only when base64 is "yes"; otherwise it tries to fetch them as URLs.
  if (value.base64 !== "yes") {
    for (const field of ["init_image", "control_image", "mask_image"] as const) {
      const image = value[field];
      if (image !== undefined && !isHttpUrl(image) && !isUploadRef(image)) {
        fail(field, 'base64 image data requires base64: "yes"');
      }
    }
  }
}

/**
 * What JSON Schema can say of checkControlNetRules (an image to condition on; parameters that need
 * another), and the rest in words: merged into a request schema's JSON Schema with `z.meta`.
 */
export const CONTROLNET_RULES_JSON_SCHEMA = {
  // In an allOf: beside `properties`, a bare anyOf makes code generators (openapi-typescript) type
  // the whole body as `unknown`.
  allOf: [{ anyOf: [{ required: ["init_image"] }, { required: ["control_image"] }] }],
  dependentRequired: {
    ip_adapter_scale: ["ip_adapter_id"],
    ip_adapter_image: ["ip_adapter_id"],
    ip_adapter_id: ["ip_adapter_image"],
    lora_strength: ["lora_model"],
  },
};

/** checkControlNetRules in words, for the OpenAPI document. */
export const CONTROLNET_RULES: readonly string[] = [
  "controlnet_type is one of the controlnet_model entries.",
  `A model_id containing "flux" takes one controlnet_model, one of ${FLUX_CONTROLNET_MODELS.join(", ")}; ${FLUX_ONLY_CONTROLNET_MODELS.join(" and ")} need such a model.`,
  "init_image or control_image is required.",
  "controlnet_model including inpaint requires mask_image.",
  'algorithm_type "dpmsolver+++" requires scheduler DPMSolverMultistepScheduler.',
  "A controlnet_conditioning_scale list has one value per controlnet_model entry.",
  "ip_adapter_scale and ip_adapter_image require ip_adapter_id, which requires ip_adapter_image.",
  "lora_strength requires lora_model; a list of strengths has one value per lora_model entry.",
  'Base64 image data (init_image, control_image, mask_image) requires base64: "yes".',
];

export const controlNetRequestSchema = controlNetObject.check(z.superRefine(checkControlNetRules));
