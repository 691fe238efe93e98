import { beforeAll, describe, expect, it } from "vitest";
import { FLEET_REFUSED_SCHEDULERS } from "../../shared/domain/fleet-capabilities.ts";
import { JobError } from "../../worker/src/errors.ts";
import { buildParams } from "../../worker/src/job.ts";
import type { WorkerJobMessage } from "../../worker/src/messages.ts";
import type { SessionFactory } from "../../worker/src/pipeline/session.ts";
import { NOT_FOR_GENERATION } from "../../worker/src/schedulers/index.ts";
import { squarePng, tinyEntry } from "./support.ts";

let image: string;
beforeAll(async () => {
  image = await squarePng(64);
});

const deps = {
  fetchImage: async (url: string) => {
    throw new Error(`no network in tests: ${url}`);
  },
  annotatorDir: null,
  catalog: [tinyEntry("sd15")],
  // No annotator runs: auto_hint is never set here.
  sessions: {} as SessionFactory,
  maxSteps: null,
};

function message(request: Record<string, unknown>): WorkerJobMessage {
  return {
    jobId: "job-1",
    tenantId: "tenant-a",
    attempt: 1,
    outputsPrefix: "tenant-a/job-1",
    request: {
      model_id: "sd15",
      controlnet_model: "canny",
      controlnet_type: "canny",
      prompt: "a lighthouse",
      control_image: image,
      base64: "yes",
      width: 64,
      height: 64,
      ...request,
    } as WorkerJobMessage["request"],
  };
}

async function refusal(request: Record<string, unknown>, kind = "bad_input"): Promise<JobError> {
  const error = await buildParams(message(request), deps).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(JobError);
  expect((error as JobError).kind).toBe(kind);
  return error as JobError;
}

describe("worker: what the fleet cannot honour fails the job, naming it", () => {
  it("the API's refused schedulers are the worker's own list of schedulers it cannot generate with", () => {
    expect([...FLEET_REFUSED_SCHEDULERS].sort()).toEqual([...NOT_FOR_GENERATION].sort());
  });

  it.each(["KarrasVeScheduler", "ScoreSdeVeScheduler", "IPNDMScheduler", "DDIMInverseScheduler"])(
    "refuses %s (non-retryable), naming it",
    async (scheduler) => {
      const error = await refusal({ scheduler });
      expect(error.message).toContain(scheduler);
    },
  );

  it("still builds with a scheduler that drives an SD UNet", async () => {
    const params = await buildParams(message({ scheduler: "DDIMScheduler" }), deps);
    expect(params.scheduler).toBe("DDIMScheduler");
  });

  it.each([
    ["algorithm_type", { algorithm_type: "dpmsolver+++" }],
    ["use_karras_sigmas", { use_karras_sigmas: "yes", scheduler: "DDIMScheduler" }],
    ["lora_model", { lora_model: "contrast-fix" }],
    ["vae", { vae: "some-vae" }],
    ["ip_adapter_id", { ip_adapter_id: "ip-adapter_sd15" }],
    ["enhance_prompt", { enhance_prompt: "yes" }],
    ["tomesd", { tomesd: "yes" }],
  ])("refuses %s (non-retryable), naming it", async (param, request) => {
    const error = await refusal(request);
    expect(error.message).toContain(param);
  });

  it.each([
    ["model_id", { model_id: "flux-dev" }],
    ["controlnet_model", { controlnet_model: "mlsd", controlnet_type: "mlsd" }],
    ["auto_hint", { controlnet_model: "depth", controlnet_type: "depth", auto_hint: "yes" }],
    ["upscale", { upscale: "yes" }],
    ["safety_checker", { safety_checker: "yes" }],
  ])(
    "refuses %s its catalog entry lacks as retryable (the deployment's gap, not the request's), naming it",
    async (param, request) => {
      const error = await refusal(request, "resource");
      expect(error.message).toContain(param);
    },
  );

  it("honours use_karras_sigmas and algorithm_type as scheduler options over the model's config", async () => {
    const karras = await buildParams(
      message({ use_karras_sigmas: "yes", scheduler: "EulerDiscreteScheduler" }),
      deps,
    );
    expect(karras.schedulerOptions).toEqual({ use_karras_sigmas: true });
    const plain = await buildParams(
      message({ use_karras_sigmas: "no", scheduler: "EulerDiscreteScheduler" }),
      deps,
    );
    expect(plain.schedulerOptions).toEqual({ use_karras_sigmas: false });
    const sde = await buildParams(
      message({
        scheduler: "DPMSolverMultistepScheduler",
        algorithm_type: "dpmsolver+++",
        use_karras_sigmas: "yes",
      }),
      deps,
    );
    expect(sde.schedulerOptions).toEqual({ use_karras_sigmas: true, algorithm_type: "sde-dpmsolver++" });
    const none = await buildParams(
      message({ scheduler: "DPMSolverMultistepScheduler", algorithm_type: "none" }),
      deps,
    );
    expect(none.schedulerOptions).toEqual({});
  });

  it("refuses a width or height the traced UNet cannot take (not a multiple of 64) instead of rounding it, naming both", async () => {
    const error = await refusal({ width: 500, height: 200 });
    expect(error.message).toMatch(/width \(width 500 is not a multiple of 64.*height \(height 200/);
    const params = await buildParams(message({ width: 320, height: 192 }), deps);
    expect([params.width, params.height]).toEqual([320, 192]);
  });

  it("takes the neutral values (no, none) as not set", async () => {
    const params = await buildParams(
      message({
        use_karras_sigmas: "no",
        algorithm_type: "none",
        upscale: "no",
        safety_checker: "no",
        enhance_prompt: "no",
        tomesd: "no",
      }),
      deps,
    );
    expect(params.controls.map((c) => c.name)).toEqual(["canny"]);
  });
});

describe("worker: mask_image", () => {
  it("is ignored without the inpaint ControlNet, as the provider does (no inpainting at strength 1)", async () => {
    const params = await buildParams(message({ init_image: image, mask_image: image }), deps);
    expect(params.mask).toBeUndefined();
    // img2img from init_image besides the control image, at the default strength.
    expect(params.init?.strength).toBe(0.8);
  });

  it("is ignored without the inpaint ControlNet even when there is no init_image", async () => {
    const params = await buildParams(message({ mask_image: image }), deps);
    expect(params.mask).toBeUndefined();
    expect(params.init).toBeUndefined();
  });

  it("is used with the inpaint ControlNet", async () => {
    const params = await buildParams(
      message({
        controlnet_model: "canny,inpaint",
        init_image: image,
        mask_image: image,
      }),
      deps,
    );
    expect(params.mask).toBeDefined();
    expect(params.init?.strength).toBe(1);
    expect(params.controls.map((c) => c.name)).toEqual(["canny", "inpaint"]);
  });
});
