/**
 * The model folder (diffusers layout of ONNX files) and the roles of each session's inputs and outputs,
 * read from the loaded sessions.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { resourceError } from "../errors.ts";
import { controlNetResiduals, type FusedIo, fusedIo, readFusedNames, unetRelPath } from "./layouts.ts";
import { findFinalLayerNorm, type LayerNormParams } from "./onnx-graph.ts";
import { type IoSpec, type LoadedSession, type SessionFactory, sortByIndex } from "./session.ts";
import { ClipTokenizer } from "./tokenizer.ts";

export interface TextEncoderIo {
  ids: IoSpec;
  lastHidden: string;
  /** hidden_states.{i} outputs in layer order (index 0 = embeddings), empty when not exported. */
  hiddenStates: string[];
  /** The projected pooled output (`text_embeds`, [B, P]) of a CLIPTextModelWithProjection; else null. */
  textEmbeds: string | null;
}

/** SDXL's added conditioning inputs (UNet and ControlNet): pooled text embeddings and size/crop ids. */
export interface AddedCondIo {
  /** [B, 1280]: text_encoder_2's text_embeds. */
  textEmbeds: IoSpec;
  /** [B, 6]: original size (h, w), crop top-left (y, x), target size (h, w). */
  timeIds: IoSpec;
}

export interface DenoiserIo {
  sample: IoSpec;
  timestep: IoSpec;
  encoderHiddenStates: IoSpec;
  /** Input channels of `sample` (4, or 9 for an inpainting UNet); null when symbolic. */
  channels: number | null;
  /** SDXL's text_embeds / time_ids inputs, when the export has both; null for SD 1.x/2.x. */
  added: AddedCondIo | null;
}

export interface UnetIo extends DenoiserIo {
  down: IoSpec[];
  mid: IoSpec | null;
  /** diffusers' fused export (UNet and ControlNets in one graph; layouts.ts); null for a UNet alone. */
  fused: FusedIo | null;
  output: string;
}

export interface ControlNetIo extends DenoiserIo {
  cond: IoSpec;
  scale: IoSpec | null;
  down: string[];
  mid: string;
}

function find(specs: readonly IoSpec[], pattern: RegExp, what: string, path: string): IoSpec {
  const spec = specs.find((s) => pattern.test(s.name));
  if (!spec)
    throw resourceError(
      `unsupported export ${path}: no ${what} (has ${specs.map((s) => s.name).join(", ")})`,
    );
  return spec;
}

function addedCondIo(s: LoadedSession): AddedCondIo | null {
  const textEmbeds = s.input("text_embeds");
  const timeIds = s.input("time_ids");
  if (!textEmbeds && !timeIds) return null;
  if (!textEmbeds || !timeIds)
    throw resourceError(
      `unsupported export ${s.path}: SDXL conditioning needs both text_embeds and time_ids inputs (has ${s.inputs.map((i) => i.name).join(", ")})`,
    );
  return { textEmbeds, timeIds };
}

function denoiserIo(s: LoadedSession): DenoiserIo {
  const sample = s.input("sample") ?? find(s.inputs, /sample|latent/i, "sample input", s.path);
  const channels = typeof sample.shape[1] === "number" ? sample.shape[1] : null;
  return {
    added: addedCondIo(s),
    sample,
    timestep: find(s.inputs, /timestep|^t$/i, "timestep input", s.path),
    encoderHiddenStates: find(
      s.inputs,
      /encoder_hidden_states|context/i,
      "encoder_hidden_states input",
      s.path,
    ),
    channels,
  };
}

export function textEncoderIo(s: LoadedSession): TextEncoderIo {
  const ids = s.input("input_ids") ?? find(s.inputs, /int(32|64)/, "ids input", s.path);
  const last = s.outputs.find((o) => o.name === "last_hidden_state") ?? s.outputs[0];
  if (!last) throw resourceError(`unsupported export ${s.path}: no outputs`);
  const hidden = sortByIndex(s.outputs.filter((o) => /^hidden_states\W?\d+$/.test(o.name))).map(
    (o) => o.name,
  );
  const textEmbeds =
    s.outputs.find((o) => o.name === "text_embeds") ??
    s.outputs.find(
      (o) => /text_embeds|pooled/i.test(o.name) && o.shape.length === 2 && o.name !== "pooler_output",
    ) ??
    null;
  return { ids, lastHidden: last.name, hiddenStates: hidden, textEmbeds: textEmbeds?.name ?? null };
}

export function unetIo(s: LoadedSession): UnetIo {
  const base = denoiserIo(s);
  const known = new Set([base.sample.name, base.timestep.name, base.encoderHiddenStates.name]);
  if (base.added) for (const spec of [base.added.textEmbeds, base.added.timeIds]) known.add(spec.name);
  const down = sortByIndex(s.inputs.filter((i) => /down/i.test(i.name)));
  const mid = s.inputs.find((i) => /mid/i.test(i.name)) ?? null;
  const fused = fusedIo(s);
  for (const spec of [...down, ...(mid ? [mid] : []), ...(fused ? [fused.conds, fused.scales] : [])])
    known.add(spec.name);
  const unknown = s.inputs.filter((i) => !known.has(i.name));
  if (unknown.length > 0) {
    throw resourceError(
      `unsupported UNet export ${s.path}: inputs ${unknown.map((i) => i.name).join(", ")} are not supported`,
    );
  }
  const output = s.outputs[0];
  if (!output) throw resourceError(`unsupported export ${s.path}: no outputs`);
  return { ...base, down, mid, fused, output: output.name };
}

export function controlNetIo(s: LoadedSession): ControlNetIo {
  const base = denoiserIo(s);
  const cond = find(
    s.inputs,
    /cond(?!itioning_scale)|controlnet_cond|image|hint/i,
    "controlnet_cond input",
    s.path,
  );
  const scale = s.inputs.find((i) => /scale/i.test(i.name)) ?? null;
  return { ...base, cond, scale, ...controlNetResiduals(s) };
}

export interface ModelFolder {
  dir: string;
  tokenizer: ClipTokenizer;
  /** SDXL's second tokenizer (tokenizer_2/, pads with "!"); null without text_encoder_2. */
  tokenizer2: ClipTokenizer | null;
  schedulerConfig: Record<string, unknown>;
  /** vae_decoder/config.json (or vae/) scaling_factor; else 0.13025 with text_encoder_2 (SDXL), 0.18215. */
  scalingFactor: number;
  /**
   * SDXL: an empty negative prompt gives zero negative embeddings (diffusers' force_zeros_for_empty_prompt,
   * from model_index.json; true when absent, as diffusers' SDXL pipelines default).
   */
  forceZerosForEmptyPrompt: boolean;
  /** text_encoder/config.json layer_norm_eps (CLIP: 1e-5), used when the graph does not show epsilon. */
  layerNormEps: number;
  /** ControlNet names available in the folder → model path. */
  controlnets: Map<string, string>;
  /** The ControlNets of a fused UNet, in its order (layouts.ts: unet/controlnets.json); null without the file. */
  fusedControlNets: string[] | null;
  paths: {
    textEncoder: string;
    /** SDXL's CLIPTextModelWithProjection (text_encoder_2/model.onnx); null for SD 1.x/2.x. */
    textEncoder2: string | null;
    unet: string;
    unetInpaint: string | null;
    vaeDecoder: string;
    vaeEncoder: string | null;
  };
}

function readJson(path: string): Record<string, unknown> | null {
  return existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>) : null;
}

function required(dir: string, rel: string): string {
  const path = join(dir, rel);
  if (!existsSync(path)) throw resourceError(`model not installed: ${rel} missing in ${dir}`);
  return path;
}

/**
 * Reads the folder layout (layouts.ts, docs/onnx-layouts.md): controlnet/<name>/model.onnx,
 * controlnet-<name>/model.onnx or controlnet/<name>.onnx; the UNet from cnet/ (onnx-web) or unet/.
 */
export function readModelFolder(dir: string): ModelFolder {
  const controlnets = new Map<string, string>();
  const cnDir = join(dir, "controlnet");
  if (existsSync(cnDir)) {
    for (const entry of readdirSync(cnDir, { withFileTypes: true })) {
      if (entry.isDirectory() && existsSync(join(cnDir, entry.name, "model.onnx")))
        controlnets.set(entry.name, join(cnDir, entry.name, "model.onnx"));
      else if (entry.isFile() && entry.name.endsWith(".onnx"))
        controlnets.set(entry.name.slice(0, -5), join(cnDir, entry.name));
    }
  }
  for (const entry of existsSync(dir) ? readdirSync(dir, { withFileTypes: true }) : []) {
    const m = /^controlnet[-_](.+)$/.exec(entry.name);
    if (m?.[1] && entry.isDirectory() && existsSync(join(dir, entry.name, "model.onnx")))
      controlnets.set(m[1], join(dir, entry.name, "model.onnx"));
  }
  const vaeConfig =
    readJson(join(dir, "vae_decoder", "config.json")) ?? readJson(join(dir, "vae", "config.json"));
  const scaling = vaeConfig?.scaling_factor;
  const optional = (rel: string) => (existsSync(join(dir, rel)) ? join(dir, rel) : null);
  const textEncoder2 = optional("text_encoder_2/model.onnx");
  const index = readJson(join(dir, "model_index.json"));
  const eps = readJson(join(dir, "text_encoder", "config.json"))?.layer_norm_eps;
  return {
    dir,
    tokenizer: ClipTokenizer.fromDir(join(required(dir, "tokenizer/vocab.json"), "..")),
    tokenizer2: textEncoder2
      ? ClipTokenizer.fromDir(join(required(dir, "tokenizer_2/vocab.json"), ".."))
      : null,
    schedulerConfig: readJson(join(dir, "scheduler", "scheduler_config.json")) ?? {},
    scalingFactor: typeof scaling === "number" ? scaling : textEncoder2 ? 0.13025 : 0.18215,
    forceZerosForEmptyPrompt: index?.force_zeros_for_empty_prompt !== false,
    layerNormEps: typeof eps === "number" && eps > 0 ? eps : 1e-5,
    controlnets,
    fusedControlNets: readFusedNames(dir),
    paths: {
      textEncoder: required(dir, "text_encoder/model.onnx"),
      textEncoder2,
      unet: required(dir, unetRelPath(dir)),
      unetInpaint: optional("unet_inpaint/model.onnx"),
      vaeDecoder: required(dir, "vae_decoder/model.onnx"),
      vaeEncoder: optional("vae_encoder/model.onnx"),
    },
  };
}

/** Sessions, loaded on first use and kept. */
export class ModelSet {
  private readonly sessions = new Map<string, Promise<LoadedSession>>();
  private readonly layerNorms = new Map<string, LayerNormParams>();

  constructor(
    readonly folder: ModelFolder,
    readonly factory: SessionFactory,
  ) {}

  static open(dir: string, factory: SessionFactory): ModelSet {
    return new ModelSet(readModelFolder(dir), factory);
  }

  session(path: string): Promise<LoadedSession> {
    let s = this.sessions.get(path);
    if (!s) {
      s = this.factory.load(path);
      this.sessions.set(path, s);
      s.catch(() => this.sessions.delete(path));
    }
    return s;
  }

  /** Loads the always-needed sessions (text encoder(s), UNet, VAE decoder) up front. */
  async warm(): Promise<void> {
    const p = this.folder.paths;
    await Promise.all(
      [p.textEncoder, p.textEncoder2, p.unet, p.vaeDecoder].map((path) => path && this.session(path)),
    );
  }

  /**
   * The final layer norm of the text encoder at `path` (the one producing `output`), read from the
   * ONNX file once and kept. A resource error when the export does not show one.
   */
  finalLayerNorm(path: string, output: string): LayerNormParams {
    const key = `${path}\0${output}`;
    let p = this.layerNorms.get(key);
    if (!p) {
      const found = findFinalLayerNorm(path, output, this.folder.layerNormEps);
      if (!found)
        throw resourceError(
          `unsupported export ${path}: clip_skip > 1 needs the text encoder's final layer norm, and no layer norm produces ${output} (nor are there final_layer_norm initializers)`,
        );
      p = found;
      this.layerNorms.set(key, p);
    }
    return p;
  }

  controlNetPath(name: string): string {
    const path = this.folder.controlnets.get(name);
    if (!path) {
      throw resourceError(
        `model not installed: ControlNet "${name}" is not in ${this.folder.dir} (have ${[...this.folder.controlnets.keys()].join(", ") || "none"})`,
      );
    }
    return path;
  }

  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map(async (s) => (await s.catch(() => null))?.session.release()));
  }
}
