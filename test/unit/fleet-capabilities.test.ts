import { describe, expect, it } from "vitest";
import {
  FLEET_REFUSALS_SUMMARY,
  unsupportedOnFleet,
  unsupportedSizeOnFleet,
} from "../../shared/domain/fleet-capabilities.ts";
import { type ModelCatalog, SD_CONTROLNETS } from "../../shared/domain/model-catalog.ts";
import { PROVIDER_UNSUPPORTED } from "../../shared/providers/registry.ts";
import { SelfHostedProvider } from "../../shared/providers/self-hosted.ts";
import { CONTROLNET_MODELS, FLUX_ONLY_CONTROLNET_MODELS } from "../../shared/schemas/controlnet.ts";
import { queues } from "../../shared/schemas/messages.ts";
import { FakeQueue } from "../support/fakes.ts";

const CATALOG: ModelCatalog = [
  { id: "sd15", kind: "sd15", controlnets: ["canny", "depth", "hed", "inpaint"], annotators: ["depth"] },
  {
    id: "sdxl-full",
    kind: "sdxl",
    controlnets: ["canny", "pose", "openpose"],
    annotators: ["openpose"],
    upscaler: { scale: 4 },
    safetyChecker: true,
  },
];

const base = { model_id: "sd15", controlnet_model: "canny", controlnet_type: "canny" };
const params = (request: Record<string, unknown>, catalog: ModelCatalog = CATALOG) =>
  unsupportedOnFleet({ ...base, ...request }, catalog).map((u) => u.param);
const reasons = (request: Record<string, unknown>) =>
  unsupportedOnFleet({ ...base, ...request }, CATALOG).map((u) => u.reason);

describe("unsupportedOnFleet: the catalog", () => {
  it("finds nothing in a plain request for a model of the catalog", () => {
    expect(params({ scheduler: "UniPCMultistepScheduler", clip_skip: 2, seed: 1 })).toEqual([]);
    expect(params({ model_id: "sdxl-full", controlnet_model: "canny,openpose" })).toEqual([]);
  });

  it("refuses a model_id the catalog lacks, naming the models it has (never another model)", () => {
    expect(params({ model_id: "flux-dev" })).toEqual(["model_id"]);
    expect(reasons({ model_id: "flux-dev" })[0]).toContain("sd15, sdxl-full");
    expect(params({ model_id: "sdxl" })).toEqual(["model_id"]);
  });

  it("refuses a ControlNet its model lacks, naming it", () => {
    expect(params({ controlnet_model: "canny,openpose" })).toEqual(["controlnet_model"]);
    expect(reasons({ controlnet_model: "canny,openpose,mlsd" })[0]).toContain("openpose, mlsd");
    expect(params({ model_id: "sdxl-full", controlnet_model: "depth" })).toEqual(["controlnet_model"]);
  });

  it("refuses auto_hint when an annotator has no weights in the model; weightless annotators always run", () => {
    expect(params({ controlnet_model: "hed", auto_hint: "yes" })).toEqual(["auto_hint"]);
    expect(reasons({ controlnet_model: "canny,hed", auto_hint: "yes" })[0]).toContain("hed annotator");
    expect(params({ controlnet_model: "hed", auto_hint: "no" })).toEqual([]);
    expect(params({ controlnet_model: "hed" })).toEqual([]);
    expect(params({ controlnet_model: "depth,canny,inpaint", auto_hint: "yes" })).toEqual([]);
    // pose runs on openpose's weights.
    expect(params({ model_id: "sdxl-full", controlnet_model: "pose", auto_hint: "yes" })).toEqual([]);
  });

  it.each(["upscale", "safety_checker"])(
    "%s: refused where the model entry has no such model, honoured where it has",
    (param) => {
      expect(params({ [param]: "yes" })).toEqual([param]);
      expect(params({ [param]: "no" })).toEqual([]);
      expect(params({ model_id: "sdxl-full", [param]: "yes" })).toEqual([]);
    },
  );
});

describe("unsupportedOnFleet: schedulers and their options", () => {
  it.each([
    ["KarrasVeScheduler", "DDIMScheduler"],
    ["ScoreSdeVeScheduler", "EulerDiscreteScheduler"],
    ["IPNDMScheduler", "PNDMScheduler"],
    ["DDIMInverseScheduler", "LCMScheduler"],
  ])("refuses %s; runs %s", (refused, honoured) => {
    expect(params({ scheduler: refused })).toEqual(["scheduler"]);
    expect(params({ scheduler: honoured })).toEqual([]);
  });

  it("honours use_karras_sigmas with the schedulers diffusers gives Karras sigmas, refuses it with the others", () => {
    for (const scheduler of [
      "EulerDiscreteScheduler",
      "DPMSolverMultistepScheduler",
      "KDPM2AncestralDiscreteScheduler",
      "UniPCMultistepScheduler",
    ]) {
      expect(params({ scheduler, use_karras_sigmas: "yes" }), scheduler).toEqual([]);
    }
    // The provider's default scheduler, UniPC, has them.
    expect(params({ use_karras_sigmas: "yes" })).toEqual([]);
    for (const scheduler of [
      "DDIMScheduler",
      "EulerAncestralDiscreteScheduler",
      "LCMScheduler",
      "PNDMScheduler",
    ]) {
      expect(params({ scheduler, use_karras_sigmas: "yes" }), scheduler).toEqual(["use_karras_sigmas"]);
      expect(params({ scheduler, use_karras_sigmas: "no" }), scheduler).toEqual([]);
    }
  });

  it("honours algorithm_type dpmsolver+++ and none with DPMSolverMultistepScheduler; refuses another value", () => {
    const scheduler = "DPMSolverMultistepScheduler";
    expect(params({ scheduler, algorithm_type: "dpmsolver+++" })).toEqual([]);
    expect(params({ scheduler, algorithm_type: "none" })).toEqual([]);
    expect(params({ scheduler: "EulerDiscreteScheduler", algorithm_type: "dpmsolver+++" })).toEqual([
      "algorithm_type",
    ]);
    expect(params({ scheduler, algorithm_type: "dpmsolver-3m" })).toEqual(["algorithm_type"]);
  });
});

describe("unsupportedOnFleet: what no model has", () => {
  it.each(["enhance_prompt", "tomesd"])("%s yes is refused; no is not", (param) => {
    expect(params({ [param]: "yes" })).toEqual([param]);
    expect(params({ [param]: "no" })).toEqual([]);
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
    const found = unsupportedOnFleet(
      {
        ...base,
        controlnet_model: "canny,mlsd",
        lora_model: "a,b",
        lora_strength: "0.5,0.6",
        ip_adapter_id: "ip-adapter_sd15",
        ip_adapter_image: "https://example.com/face.png",
        upscale: "yes",
      },
      CATALOG,
    );
    expect(found.map((u) => u.param)).toEqual([
      "controlnet_model",
      "upscale",
      "lora_model",
      "lora_strength",
      "ip_adapter_id",
      "ip_adapter_image",
    ]);
    for (const u of found) expect(u.reason).not.toBe("");
  });
});

describe("unsupportedOnFleet: sizes", () => {
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
});

describe("the catalog's names", () => {
  it("SD_CONTROLNETS are the seed's ControlNet names bar the flux-only ones", () => {
    expect([...SD_CONTROLNETS]).toEqual(
      CONTROLNET_MODELS.filter((name) => !(FLUX_ONLY_CONTROLNET_MODELS as readonly string[]).includes(name)),
    );
  });
});

describe("the fleet's capability", () => {
  const requests = [
    base,
    { ...base, model_id: "other" },
    { ...base, upscale: "yes" },
    { ...base, model_id: "sdxl-full", upscale: "yes", safety_checker: "yes" },
    { ...base, lora_model: "x" },
  ];

  it("is what a built self-hosted provider declares, with its catalog, and what the API checks pinned jobs with", () => {
    const provider = new SelfHostedProvider(new FakeQueue(queues.fallback), CATALOG);
    for (const request of requests) {
      const expected = unsupportedOnFleet(request, CATALOG);
      expect(provider.capabilities.unsupported?.(request)).toEqual(expected);
      expect(PROVIDER_UNSUPPORTED["self-hosted"](request, { SELF_HOSTED_MODELS: CATALOG })).toEqual(expected);
    }
    expect(PROVIDER_UNSUPPORTED.modelslab).toBeNull();
  });

  it("the API's summary (the description of `provider`) names every parameter it refuses", () => {
    for (const param of [
      "model_id",
      "auto_hint",
      "upscale",
      "safety_checker",
      "lora_model",
      "lora_strength",
      "vae",
      "ip_adapter_id",
      "ip_adapter_scale",
      "ip_adapter_image",
      "use_karras_sigmas",
      "enhance_prompt",
      "tomesd",
      "KarrasVeScheduler",
      "ScoreSdeVeScheduler",
      "IPNDMScheduler",
      "DDIMInverseScheduler",
    ]) {
      expect(FLEET_REFUSALS_SUMMARY).toContain(param);
    }
  });
});
