import { describe, expect, it } from "vitest";
import * as z from "zod/mini";
import {
  CONTROLNET_MODELS,
  type ControlNetRequest,
  checkControlNetRules,
  controlNetFields,
  controlNetRequestSchema,
  FLUX_CONTROLNET_MODELS,
  IP_ADAPTER_IDS,
  SCHEDULERS,
} from "../../shared/schemas/controlnet.ts";

type Body = Record<string, unknown>;

const URL_IMAGE = "https://example.com/images/in.png";
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const JPEG = "/9j/4AAQSkZJRgAB";
const WEBP = "UklGRhoAAABXRUJQVlA4TA==";
const NOT_AN_IMAGE = "aGVsbG8gd29ybGQh"; // valid base64 of "hello world!"

const base: Body = {
  model_id: "midjourney",
  controlnet_model: "canny",
  controlnet_type: "canny",
  init_image: URL_IMAGE,
};

const parse = (overrides: Body) => controlNetRequestSchema.safeParse({ ...base, ...overrides });
const issuePaths = (overrides: Body) => {
  const result = parse(overrides);
  return result.success ? [] : result.error.issues.map((issue) => issue.path.join("."));
};

function expectValid(overrides: Body): void {
  const result = parse(overrides);
  expect(result.error?.issues ?? []).toEqual([]);
}

function expectInvalid(overrides: Body, field: string): void {
  const result = parse(overrides);
  expect(result.success).toBe(false);
  expect(result.error?.issues.map((issue) => issue.path.join("."))).toContain(field);
}

const YES_NO = { valid: ["yes", "no"], invalid: ["Yes", "true", true, 1, ""] };

interface FieldCase {
  field: string;
  valid: unknown[];
  invalid: unknown[];
  /** Other fields the values need to satisfy the cross-field rules. */
  context?: Body;
}

const fieldCases: FieldCase[] = [
  {
    field: "model_id",
    valid: ["sdxl", "realistic-vision_v5.1", "a".repeat(128)],
    invalid: ["", "a".repeat(129), "bad id", "x/y", 1, null],
  },
  {
    field: "controlnet_model",
    valid: ["canny", "canny,depth", " canny , depth ,openpose "],
    invalid: ["", "canny,", "canny,,depth", "canny,canny", "cany", "Canny", "canny;depth", 5],
  },
  {
    field: "controlnet_type",
    context: { controlnet_model: "canny,depth" },
    valid: ["canny", "depth"],
    invalid: ["foo", "", "Canny", 1],
  },
  { field: "auto_hint", ...YES_NO },
  { field: "guess_mode", ...YES_NO },
  { field: "prompt", valid: ["a cat in a hat", "", "x".repeat(2000)], invalid: ["x".repeat(2001), 42, null] },
  {
    field: "negative_prompt",
    valid: ["blurry", "", "x".repeat(2000)],
    invalid: ["x".repeat(2001), ["blurry"]],
  },
  ...(["init_image", "control_image", "mask_image"] as const).flatMap((field): FieldCase[] => [
    {
      field,
      valid: [URL_IMAGE, "http://cdn.example.com/a.jpg?x=1", `https://e.com/${"a".repeat(2000)}`],
      invalid: [],
    },
    {
      field,
      context: { base64: "yes" },
      valid: [
        PNG,
        JPEG,
        WEBP,
        `data:image/png;base64,${PNG}`,
        `data:image/jpeg;base64,${JPEG}`,
        `data:image/webp;base64,${WEBP}`,
      ],
      invalid: [
        "",
        "https://",
        "ftp://example.com/a.png",
        `https://e.com/${"a".repeat(2048)}`,
        "not an image",
        NOT_AN_IMAGE,
        `${PNG}\n`,
        PNG.slice(0, -1),
        `data:image/gif;base64,${PNG}`,
        `data:image/png,${PNG}`,
        1,
      ],
    },
  ]),
  { field: "width", valid: [64, 512, 1024], invalid: [63, 1025, 512.5, "512", null] },
  { field: "height", valid: [64, 768, 1024], invalid: [0, 2048, 100.1, "768"] },
  { field: "samples", valid: [1, 4], invalid: [0, 5, 1.5, "2"] },
  { field: "scheduler", valid: ["UniPCMultistepScheduler", "LCMScheduler"], invalid: ["unipc", "", 3] },
  { field: "tomesd", ...YES_NO },
  { field: "use_karras_sigmas", ...YES_NO },
  { field: "algorithm_type", valid: ["none"], invalid: ["dpmsolver++", "", 1] },
  {
    field: "algorithm_type",
    context: { scheduler: "DPMSolverMultistepScheduler" },
    valid: ["dpmsolver+++", "none"],
    invalid: ["DPMSolver+++"],
  },
  { field: "vae", valid: ["sd-vae-ft-mse", "vae_v1.0"], invalid: ["", "bad vae", "a".repeat(129), 1] },
  {
    field: "lora_strength",
    context: { lora_model: "contrast-fix,yae-miko-genshin" },
    valid: [0.1, 0.5, 1, "0.7", "0.5,0.8", " 0.5 , .8 "],
    invalid: [0, 0.05, 1.1, "0.05", "1.5", "abc", "0.5,", "1e-1", "-0.5", true],
  },
  {
    field: "lora_model",
    valid: ["contrast-fix", "contrast-fix,yae-miko-genshin", "a, b"],
    invalid: ["", "a,,b", "a,a", "bad id", "x".repeat(1025), 3],
  },
  { field: "num_inference_steps", valid: [1, 21, 30, 31, 50], invalid: [0, 51, 30.5, "30"] },
  { field: "safety_checker", ...YES_NO },
  {
    field: "ip_adapter_id",
    context: { ip_adapter_image: URL_IMAGE },
    valid: [...IP_ADAPTER_IDS],
    invalid: ["ip-adapter", "", "ip-adapter_SDXL"],
  },
  {
    field: "ip_adapter_scale",
    context: { ip_adapter_id: "ip-adapter_sdxl", ip_adapter_image: URL_IMAGE },
    valid: [0, 0.6, 1],
    invalid: [-0.1, 1.1, "0.5"],
  },
  {
    field: "ip_adapter_image",
    context: { ip_adapter_id: "ip-adapter_sd15", base64: "yes" },
    valid: [URL_IMAGE],
    invalid: [
      "",
      PNG,
      `data:image/png;base64,${PNG}`,
      "ftp://e.com/a.png",
      `https://e.com/${"a".repeat(2048)}`,
    ],
  },
  { field: "enhance_prompt", ...YES_NO },
  {
    field: "controlnet_conditioning_scale",
    context: { controlnet_model: "canny,depth" },
    valid: [0.1, 1, 5, "0.5,1.5", "0.1, 5"],
    invalid: [0, 0.05, 5.1, "6,1", "a,b", "1,", "", null],
  },
  { field: "strength", valid: [0, 0.35, 1], invalid: [-0.1, 1.01, "0.5"] },
  { field: "guidance_scale", valid: [1, 7.5, 20], invalid: [0.9, 20.1, "7"] },
  { field: "seed", valid: [null, 0, 12345, 2 ** 32], invalid: [-1, 1.5, "42", 2 ** 53] },
  { field: "upscale", ...YES_NO },
  { field: "clip_skip", valid: [1, 2, 8], invalid: [0, 9, 2.5, "2"] },
  { field: "base64", ...YES_NO },
  { field: "temp", ...YES_NO },
];

describe("controlNetFields", () => {
  it("covers every seed parameter except key, webhook and track_id", () => {
    const fields = Object.keys(controlNetFields);
    expect(fields).toHaveLength(34);
    expect(fields).not.toContain("key");
    expect(fields).not.toContain("webhook");
    expect(fields).not.toContain("track_id");
    expect(new Set(fieldCases.map((c) => c.field))).toEqual(new Set(fields));
  });

  it("exports the seed's enumerations", () => {
    expect(CONTROLNET_MODELS).toHaveLength(19);
    expect(SCHEDULERS).toHaveLength(18);
    expect(IP_ADAPTER_IDS).toHaveLength(3);
    expect(FLUX_CONTROLNET_MODELS).toEqual(["canny", "tile", "depth", "blur", "pose", "gray", "low_quality"]);
  });

  it("accepts the base request and requires model_id, controlnet_model and controlnet_type", () => {
    expectValid({});
    for (const field of ["model_id", "controlnet_model", "controlnet_type"]) {
      expectInvalid({ [field]: undefined }, field);
    }
  });

  it("gives no defaults: what the client left out stays out", () => {
    const result = parse({});
    expect(result.data).toEqual(base);
  });

  it("rejects the orchestrator-owned and unknown fields in a strict object", () => {
    const strict = z.strictObject(controlNetFields);
    for (const field of ["key", "webhook", "track_id", "unknown_field"]) {
      const result = strict.safeParse({ ...base, [field]: "x" });
      expect(result.success).toBe(false);
      expect(result.error?.issues[0]?.code).toBe("unrecognized_keys");
    }
    expect(parse({ key: "secret" }).success).toBe(false);
  });

  it("composes with other fields and checkControlNetRules", () => {
    const composed = z
      .strictObject({ ...controlNetFields, deadline_seconds: z.optional(z.int().check(z.positive())) })
      .check(z.superRefine(checkControlNetRules));
    expect(composed.safeParse({ ...base, deadline_seconds: 60 }).success).toBe(true);
    const bad = composed.safeParse({ ...base, controlnet_type: "depth" });
    expect(bad.error?.issues.map((i) => i.path.join("."))).toEqual(["controlnet_type"]);
  });

  it("normalises comma-separated lists to trimmed entries", () => {
    const result = parse({
      controlnet_model: " canny , depth",
      controlnet_conditioning_scale: "0.5, 1",
      lora_model: "a , b",
      lora_strength: "0.5 ,0.6",
    });
    const data: ControlNetRequest | undefined = result.data;
    expect(data?.controlnet_model).toBe("canny,depth");
    expect(data?.controlnet_conditioning_scale).toBe("0.5,1");
    expect(data?.lora_model).toBe("a,b");
    expect(data?.lora_strength).toBe("0.5,0.6");
  });

  for (const { field, valid, invalid, context = {} } of fieldCases) {
    const suffix = Object.keys(context).length > 0 ? ` (with ${Object.keys(context).join(", ")})` : "";
    describe(`${field}${suffix}`, () => {
      it.each(valid.map((value) => [value]))(`accepts %j`, (value) => {
        expectValid({ ...context, [field]: value });
      });
      if (invalid.length > 0) {
        it.each(invalid.map((value) => [value]))(`rejects %j`, (value) => {
          expectInvalid({ ...context, [field]: value }, field);
        });
      }
    });
  }
});

describe("checkControlNetRules", () => {
  const messagesFor = (overrides: Body) => {
    const result = parse(overrides);
    return result.success ? [] : result.error.issues.map((issue) => issue.message);
  };

  it("controlnet_type must be one of the controlnet_model entries", () => {
    expectValid({ controlnet_model: "canny,depth", controlnet_type: "depth" });
    expect(issuePaths({ controlnet_model: "canny", controlnet_type: "depth" })).toEqual(["controlnet_type"]);
    expect(messagesFor({ controlnet_type: "depth" })[0]).toMatch(/^controlnet_type: .*controlnet_model/);
  });

  it("flux models take only the flux ControlNet models", () => {
    for (const model of FLUX_CONTROLNET_MODELS) {
      expectValid({ model_id: "fluxdev", controlnet_model: model, controlnet_type: model });
    }
    expectValid({ model_id: "My-FLUX-Model", controlnet_model: "gray", controlnet_type: "gray" });
    for (const model of ["openpose", "inpaint", "mlsd", "scribble", "face_detector"]) {
      expectInvalid(
        { model_id: "fluxdev", controlnet_model: model, controlnet_type: model, mask_image: URL_IMAGE },
        "controlnet_model",
      );
    }
  });

  it("flux models reject multi-ControlNet", () => {
    expect(issuePaths({ model_id: "FluxDev", controlnet_model: "canny,depth" })).toEqual([
      "controlnet_model",
    ]);
    expect(messagesFor({ model_id: "flux", controlnet_model: "canny,depth" })[0]).toMatch(
      /^controlnet_model: multi-ControlNet/,
    );
  });

  it("gray and low_quality are not available for SD1.5/SDXL models", () => {
    for (const model of ["gray", "low_quality"]) {
      expectInvalid(
        { model_id: "sdxl", controlnet_model: model, controlnet_type: model },
        "controlnet_model",
      );
      expectInvalid({ model_id: "sdxl", controlnet_model: `canny,${model}` }, "controlnet_model");
    }
    expectValid({ model_id: "sdxl", controlnet_model: "canny,depth,openpose,scribble,face_detector" });
  });

  it("requires init_image or control_image", () => {
    expect(issuePaths({ init_image: undefined })).toEqual(["init_image"]);
    expectValid({ init_image: undefined, control_image: URL_IMAGE });
    expectValid({ control_image: URL_IMAGE });
  });

  it("inpaint requires mask_image; a mask without inpaint is allowed", () => {
    expect(issuePaths({ controlnet_model: "inpaint", controlnet_type: "inpaint" })).toEqual(["mask_image"]);
    expect(issuePaths({ controlnet_model: "canny,inpaint" })).toEqual(["mask_image"]);
    expectValid({ controlnet_model: "inpaint", controlnet_type: "inpaint", mask_image: URL_IMAGE });
    expectValid({ mask_image: URL_IMAGE });
  });

  it('algorithm_type "dpmsolver+++" only with DPMSolverMultistepScheduler', () => {
    expectValid({ algorithm_type: "dpmsolver+++", scheduler: "DPMSolverMultistepScheduler" });
    expectValid({ algorithm_type: "none", scheduler: "EulerDiscreteScheduler" });
    expect(issuePaths({ algorithm_type: "dpmsolver+++" })).toEqual(["algorithm_type"]);
    expect(issuePaths({ algorithm_type: "dpmsolver+++", scheduler: "UniPCMultistepScheduler" })).toEqual([
      "algorithm_type",
    ]);
  });

  it("a list of controlnet_conditioning_scale values has one per controlnet_model entry", () => {
    expectValid({ controlnet_model: "canny,depth", controlnet_conditioning_scale: 0.8 });
    expectValid({ controlnet_model: "canny,depth", controlnet_conditioning_scale: "0.8,1.2" });
    expectValid({ controlnet_conditioning_scale: "0.8" });
    expect(issuePaths({ controlnet_model: "canny,depth", controlnet_conditioning_scale: "0.8" })).toEqual([
      "controlnet_conditioning_scale",
    ]);
    expect(issuePaths({ controlnet_conditioning_scale: "0.8,1" })).toEqual(["controlnet_conditioning_scale"]);
  });

  it("ip_adapter_scale and ip_adapter_image require ip_adapter_id, which requires ip_adapter_image", () => {
    expectValid({ ip_adapter_id: "ip-adapter_sdxl", ip_adapter_image: URL_IMAGE, ip_adapter_scale: 0.6 });
    expect(issuePaths({ ip_adapter_scale: 0.6 })).toEqual(["ip_adapter_scale"]);
    expect(issuePaths({ ip_adapter_image: URL_IMAGE })).toEqual(["ip_adapter_image"]);
    expect(issuePaths({ ip_adapter_id: "ip-adapter_sd15" })).toEqual(["ip_adapter_image"]);
  });

  it("lora_strength requires lora_model, with one value or one per LoRA", () => {
    expectValid({ lora_model: "a,b,c", lora_strength: 0.7 });
    expectValid({ lora_model: "a,b,c", lora_strength: "0.7" });
    expectValid({ lora_model: "a,b", lora_strength: "0.7,0.4" });
    expect(issuePaths({ lora_strength: 0.7 })).toEqual(["lora_strength"]);
    expect(issuePaths({ lora_model: "a,b,c", lora_strength: "0.7,0.4" })).toEqual(["lora_strength"]);
  });

  it('base64 image data requires base64: "yes"', () => {
    for (const field of ["init_image", "control_image", "mask_image"]) {
      expect(issuePaths({ [field]: PNG })).toEqual([field]);
      expect(issuePaths({ [field]: `data:image/png;base64,${PNG}`, base64: "no" })).toEqual([field]);
      expectValid({ [field]: PNG, base64: "yes" });
    }
    expectValid({ base64: "yes" });
  });

  it("strength is allowed with or without init_image", () => {
    expectValid({ strength: 0.5 });
    expectValid({ init_image: undefined, control_image: URL_IMAGE, strength: 0.5 });
  });

  it("is skipped while a field has its own issue, so only that issue is reported", () => {
    expect(issuePaths({ init_image: "hello" })).toEqual(["init_image"]);
    expect(issuePaths({ width: 5000, controlnet_type: "depth" })).toEqual(["width"]);
    expect(issuePaths({ unknown_field: 1, controlnet_type: "depth" })).toEqual(["", "controlnet_type"]);
  });

  it("reports every broken rule at once", () => {
    expect(
      issuePaths({
        model_id: "fluxdev",
        controlnet_model: "canny,openpose",
        init_image: undefined,
        ip_adapter_scale: 1,
      }),
    ).toEqual(["controlnet_model", "controlnet_model", "init_image", "ip_adapter_scale"]);
  });
});

describe("numbers DynamoDB can store", () => {
  // Found by the fuzz test: 5e-324 passed the range check and made the job write fail with a 500.
  it.each(["strength", "guidance_scale", "ip_adapter_scale", "controlnet_conditioning_scale"])(
    "refuses a denormal %s",
    (field) => {
      const result = z.strictObject(controlNetFields).safeParse({
        model_id: "sd15",
        controlnet_model: "canny",
        controlnet_type: "canny",
        [field]: 5e-324,
      });
      expect(result.success).toBe(false);
      expect(result.error?.issues.some((issue) => issue.path[0] === field)).toBe(true);
    },
  );
});
