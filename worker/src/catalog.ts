/**
 * The worker's models: the deployment's catalog (SELF_HOSTED_MODELS, shared/domain/model-catalog.ts),
 * one folder per entry under the models root (`<root>/<id>`, synced from the entry's S3 prefix at
 * start), checked at start against what the entry declares, and opened on demand for the job that
 * names it, a bounded number at once (the least recently used is closed first).
 *
 * A model folder's layout (diffusers' ONNX layout, plus the optional parts an entry declares):
 * text_encoder/, tokenizer/, unet/, vae_decoder/ (vae_encoder/ for img2img), text_encoder_2/ and
 * tokenizer_2/ (SDXL), controlnet/<name>/model.onnx, annotators/<name>/model.onnx (the weighted
 * annotators), upscaler/model.onnx, safety_checker/model.onnx.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  annotatorWeightsFor,
  type ModelCatalog,
  type SelfHostedModel,
} from "../../shared/domain/model-catalog.ts";
import { resourceError } from "./errors.ts";
import { ModelSet, readModelFolder } from "./pipeline/models.ts";
import { ControlNetPipeline } from "./pipeline/pipeline.ts";
import type { SchedulerFactory } from "./pipeline/scheduler.ts";
import type { SessionFactory } from "./pipeline/session.ts";

export const UPSCALER_PATH = "upscaler/model.onnx";
export const SAFETY_CHECKER_PATH = "safety_checker/model.onnx";
export const ANNOTATORS_DIR = "annotators";

/** A model folder that does not hold what its catalog entry declares: the worker is not ready. */
export class ModelCatalogError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`The model folders do not match the catalog:\n  ${problems.join("\n  ")}`);
    this.name = "ModelCatalogError";
  }
}

/** The text encoder width of each SD kind (CLIP ViT-L for SD 1.x, OpenCLIP ViT-H for SD 2.x). */
const TEXT_WIDTH: Readonly<Record<string, number>> = { sd15: 768, sd2: 1024 };

/** What `dir` lacks of what `entry` declares; empty when it has everything. */
export function checkModelFolder(dir: string, entry: SelfHostedModel): string[] {
  const problems: string[] = [];
  const say = (what: string) => problems.push(`${entry.id}: ${what}`);
  let folder: ReturnType<typeof readModelFolder>;
  try {
    folder = readModelFolder(dir);
  } catch (error) {
    say(error instanceof Error ? error.message : String(error));
    return problems;
  }
  const sdxl = folder.paths.textEncoder2 !== null;
  if (sdxl !== (entry.kind === "sdxl")) {
    say(
      `declared ${entry.kind}, but the folder is ${sdxl ? "SDXL (text_encoder_2/)" : "not SDXL (no text_encoder_2/)"}`,
    );
  }
  const config = join(dir, "text_encoder", "config.json");
  const width = existsSync(config)
    ? (JSON.parse(readFileSync(config, "utf8")) as { hidden_size?: unknown }).hidden_size
    : undefined;
  const expected = TEXT_WIDTH[entry.kind];
  if (typeof width === "number" && expected !== undefined && width !== expected) {
    say(
      `declared ${entry.kind} (text encoder width ${expected}), but text_encoder/config.json says ${width}`,
    );
  }
  for (const name of entry.controlnets) {
    // A separate ControlNet graph, or one of a fused UNet+ControlNet export (unet/controlnets.json).
    if (!folder.controlnets.has(name) && !folder.fusedControlNets?.includes(name))
      say(
        `declares the ${name} ControlNet; controlnet/${name}/model.onnx is missing (nor has unet/controlnets.json it)`,
      );
  }
  for (const name of entry.annotators) {
    if (!existsSync(join(dir, ANNOTATORS_DIR, name, "model.onnx")))
      say(`declares ${name} annotator weights; ${ANNOTATORS_DIR}/${name}/model.onnx is missing`);
  }
  if (entry.upscaler && !existsSync(join(dir, UPSCALER_PATH)))
    say(`declares an upscaler; ${UPSCALER_PATH} is missing`);
  if (entry.safetyChecker && !existsSync(join(dir, SAFETY_CHECKER_PATH)))
    say(`declares a safety checker; ${SAFETY_CHECKER_PATH} is missing`);
  return problems;
}

/** Checks every entry's folder under `root`; throws ModelCatalogError naming every problem. */
export function checkCatalog(root: string, catalog: ModelCatalog): void {
  const problems = catalog.flatMap((entry) => checkModelFolder(join(root, entry.id), entry));
  if (problems.length > 0) throw new ModelCatalogError(problems);
}

/** One opened model: its sessions and pipeline, and where its optional parts are. */
export interface OpenModel {
  entry: SelfHostedModel;
  dir: string;
  models: ModelSet;
  pipeline: ControlNetPipeline;
  /** `<dir>/annotators`: the weighted annotators' folders. */
  annotatorDir: string;
  upscalerPath: string | null;
  safetyCheckerPath: string | null;
}

/**
 * The catalog's models, opened on first use and kept while fewer than `capacity` are open; opening
 * another closes (releases the sessions of) the least recently used. The worker runs one job at a
 * time, so a closed model is never one a job is using.
 */
export class ModelPool {
  private readonly open = new Map<string, OpenModel>();

  constructor(
    readonly root: string,
    readonly catalog: ModelCatalog,
    private readonly sessions: SessionFactory,
    private readonly createScheduler: SchedulerFactory,
    readonly capacity = 1,
  ) {}

  /** The model a job names; a resource error naming it when the catalog has none such. */
  async get(id: string): Promise<OpenModel> {
    const cached = this.open.get(id);
    if (cached) {
      this.open.delete(id);
      this.open.set(id, cached);
      return cached;
    }
    const entry = this.catalog.find((model) => model.id === id);
    if (!entry) {
      throw resourceError(
        `model_id "${id}" is not a self-hosted model (the fleet has ${this.catalog.map((m) => m.id).join(", ")})`,
      );
    }
    while (this.open.size >= this.capacity) {
      const [oldest, model] = this.open.entries().next().value as [string, OpenModel];
      this.open.delete(oldest);
      await model.models.release();
    }
    const dir = join(this.root, entry.id);
    const models = ModelSet.open(dir, this.sessions);
    const model: OpenModel = {
      entry,
      dir,
      models,
      pipeline: new ControlNetPipeline(models, this.createScheduler),
      annotatorDir: join(dir, ANNOTATORS_DIR),
      upscalerPath: entry.upscaler ? join(dir, UPSCALER_PATH) : null,
      safetyCheckerPath: entry.safetyChecker ? join(dir, SAFETY_CHECKER_PATH) : null,
    };
    this.open.set(id, model);
    return model;
  }

  /** Opens the first `capacity` models and loads their always-needed sessions (start-up warm-up). */
  async warm(): Promise<void> {
    for (const entry of this.catalog.slice(0, this.capacity)) await (await this.get(entry.id)).models.warm();
  }

  /** The ids of the open models, least recently used first. */
  openIds(): string[] {
    return [...this.open.keys()];
  }

  async release(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all(all.map((model) => model.models.release()));
  }
}

/** The weighted annotator `auto_hint` needs for `name` (null: none), for the job's own check. */
export { annotatorWeightsFor };
