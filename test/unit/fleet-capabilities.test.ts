import { describe, expect, it } from "vitest";
import {
  FLEET_REFUSALS_SUMMARY,
  unsupportedOnFleet,
  unsupportedSizeOnFleet,
} from "../../shared/domain/fleet-capabilities.ts";
import { PROVIDER_REGISTRY, PROVIDER_UNSUPPORTED } from "../../shared/providers/registry.ts";

const base = { model_id: "sd15", controlnet_model: "canny", controlnet_type: "canny" };
const params = (request: Record<string, unknown>) =>
  unsupportedOnFleet({ ...base, ...request }).map((u) => u.param);

describe("unsupportedOnFleet", () => {
  it("finds nothing in a plain request", () => {
    expect(params({ scheduler: "UniPCMultistepScheduler", clip_skip: 2, seed: 1 })).toEqual([]);
  });

  it.each([
    ["scheduler", "KarrasVeScheduler", "DDIMScheduler"],
    ["scheduler", "ScoreSdeVeScheduler", "EulerDiscreteScheduler"],
    ["scheduler", "IPNDMScheduler", "PNDMScheduler"],
    ["scheduler", "DDIMInverseScheduler", "LCMScheduler"],
    ["use_karras_sigmas", "yes", "no"],
    ["algorithm_type", "dpmsolver+++", "none"],
    ["upscale", "yes", "no"],
    ["safety_checker", "yes", "no"],
    ["enhance_prompt", "yes", "no"],
    ["tomesd", "yes", "no"],
  ])("%s=%s is refused; %s is not", (param, refused, neutral) => {
    expect(params({ [param]: refused })).toEqual([param]);
    expect(params({ [param]: neutral })).toEqual([]);
  });

  it.each([
    ["lora_model", "contrast-fix"],
    ["lora_strength", 0.5],
    ["vae", "some-vae"],
    ["ip_adapter_id", "ip-adapter_sd15"],
    ["ip_adapter_scale", 0.5],
    ["ip_adapter_image", "https://example.com/face.png"],
  ])("%s is refused with any value, and not when left out", (param, value) => {
    expect(params({ [param]: value })).toEqual([param]);
    expect(params({})).toEqual([]);
  });

  it("names every refused parameter, each once, with a reason", () => {
    const found = unsupportedOnFleet({
      ...base,
      lora_model: "a,b",
      lora_strength: "0.5,0.6",
      ip_adapter_id: "ip-adapter_sd15",
      ip_adapter_image: "https://example.com/face.png",
      upscale: "yes",
    });
    expect(found.map((u) => u.param)).toEqual([
      "upscale",
      "lora_model",
      "lora_strength",
      "ip_adapter_id",
      "ip_adapter_image",
    ]);
    for (const u of found) expect(u.reason).not.toBe("");
  });

  it("refuses width and height that are not multiples of 64, each named; multiples of 64 and unset pass", () => {
    expect(params({ width: 500, height: 512 })).toEqual(["width"]);
    expect(params({ width: 512, height: 200 })).toEqual(["height"]);
    expect(params({ width: 520, height: 130 })).toEqual(["width", "height"]);
    expect(params({ width: 64, height: 1024 })).toEqual([]);
    expect(params({})).toEqual([]);
    expect(unsupportedSizeOnFleet({ width: 500 })).toEqual([
      { param: "width", reason: expect.stringContaining("width 500 is not a multiple of 64") },
    ]);
    expect(FLEET_REFUSALS_SUMMARY).toContain("width or height not a multiple of 64");
  });

  it("is the self-hosted module's declared capability, and the API's table matches every module", () => {
    expect(PROVIDER_REGISTRY["self-hosted"].capabilities.unsupported).toBe(unsupportedOnFleet);
    for (const [id, module] of Object.entries(PROVIDER_REGISTRY)) {
      const declared = (module.capabilities as { unsupported?: unknown }).unsupported ?? null;
      expect(PROVIDER_UNSUPPORTED[id as keyof typeof PROVIDER_UNSUPPORTED], id).toBe(declared);
    }
  });

  it("the API's summary (the description of `provider`) names every parameter it refuses", () => {
    for (const param of [
      "lora_model",
      "lora_strength",
      "vae",
      "ip_adapter_id",
      "ip_adapter_scale",
      "ip_adapter_image",
      "use_karras_sigmas",
      "upscale",
      "safety_checker",
      "enhance_prompt",
      "tomesd",
      "algorithm_type",
      "KarrasVeScheduler",
      "ScoreSdeVeScheduler",
      "IPNDMScheduler",
      "DDIMInverseScheduler",
    ]) {
      expect(FLEET_REFUSALS_SUMMARY).toContain(param);
    }
  });
});
