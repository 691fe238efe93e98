/**
 * `GET /v1/models`: the self-hosted models of this deployment (its catalog) and what each can do, and
 * what the provider takes instead (ModelsLab: its own model ids, which no list here could hold).
 */
import { FLEET_REFUSED_SCHEDULERS, FLEET_SIZE_MULTIPLE } from "../domain/fleet-capabilities.ts";
import {
  ALGORITHM_TYPE_MAP,
  annotatorWeightsFor,
  KARRAS_SCHEDULERS,
  type ModelCatalog,
  NATIVE_SIZE,
  PROVIDER_UPSCALE_FACTOR,
} from "../domain/model-catalog.ts";
import { SCHEDULERS } from "../schemas/controlnet.ts";

/** The sizes every model takes: the API's width/height range, in the steps a traced UNet can take. */
const SIZE_RANGE = { min: 64, max: 1024, multiple_of: FLEET_SIZE_MULTIPLE } as const;

export function presentModels(catalog: ModelCatalog) {
  const schedulers = SCHEDULERS.filter((name) => !FLEET_REFUSED_SCHEDULERS.includes(name));
  return {
    self_hosted: catalog.map((model) => ({
      model_id: model.id,
      kind: model.kind,
      controlnets: [...model.controlnets],
      // The ControlNets whose auto_hint runs here: weightless annotators, or weights the model has.
      auto_hint: model.controlnets.filter((name) => {
        const weights = annotatorWeightsFor(name);
        return weights === null || model.annotators.includes(weights);
      }),
      annotator_weights: [...model.annotators],
      sizes: { ...SIZE_RANGE, native: NATIVE_SIZE[model.kind] },
      upscale: model.upscaler ? { factor: PROVIDER_UPSCALE_FACTOR, model_scale: model.upscaler.scale } : null,
      safety_checker: model.safetyChecker === true,
      schedulers,
      karras_sigmas: schedulers.filter((name) => KARRAS_SCHEDULERS.includes(name)),
      algorithm_types: Object.keys(ALGORITHM_TYPE_MAP),
    })),
    providers: {
      modelslab: {
        model_ids: "any" as const,
        description:
          "ModelsLab takes its own model ids (public models or your trained ones) for provider: modelslab and auto jobs; they are not listed here. An auto job runs on the self-hosted fleet only when its model_id is listed under self_hosted and the model honours every parameter it sets.",
      },
    },
  };
}

export type ModelList = ReturnType<typeof presentModels>;
