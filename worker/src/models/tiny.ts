/**
 * Builds a tiny SD-1.5-shaped (or, with `sdxl`, SDXL-shaped) model folder (diffusers layout, ONNX
 * files) with random weights: tiny channel counts, but the real input/output names, dtypes, ranks and
 * residual layout (SD: 12 down residuals at latent/1, /2, /4, /8 and a mid residual; SDXL: 9 down
 * residuals at /1, /2, /4 and a mid residual at /4), so the pipeline runs exactly as on a real export.
 *
 * The text encoders end, like CLIP, in a final layer norm with (random) weight and bias that produces
 * last_hidden_state from the last hidden state; `hidden_states.{i}` are the embeddings and each layer's
 * output before it.
 *
 * SDXL (optimum's export signatures): text_encoder (CLIPTextModel: last_hidden_state, pooler_output,
 * hidden_states.*), text_encoder_2 (CLIPTextModelWithProjection: text_embeds [B, P], last_hidden_state,
 * hidden_states.*), tokenizer_2 (pads with "!"), a UNet and ControlNets that also take text_embeds
 * [B, P] and time_ids [B, 6], encoder_hidden_states of both encoders' widths together, and a VAE
 * config with scaling_factor 0.13025.
 *
 * Variants cover what exporters differ in: int32 or int64 ids, fp16 or fp32 tensors, float or int64
 * timestep, residual naming and order, a conditioning_scale input or not, a 9-channel inpainting UNet,
 * a fused (opset 17) or decomposed (older opsets) final layer norm, and the folder layout of each
 * exporter (`layout`; docs/onnx-layouts.md). The UNets upsample by a fixed factor 2 as traced UNets
 * do (unetBody), so sizes a real export cannot take fail here too.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BOS, bytesToUnicode, EOS } from "../pipeline/tokenizer.ts";
import { type Dim, type ElemName, GraphBuilder, mulberry32 } from "./onnx-builder.ts";

export interface TinyModelOptions {
  /** Input ids dtype of the text encoder. */
  ids?: "int32" | "int64";
  /** Float dtype of every float input and output. */
  float?: "float32" | "float16";
  /** Timestep dtype (UNet and ControlNet). */
  timestep?: "float" | "int64";
  /** "diffusers": down_block_res_sample_{i} / down_block_additional_residual_{i}; "short": down_block_{i}. */
  residualNames?: "diffusers" | "short";
  /**
   * Which exporter's folder to write (docs/onnx-layouts.md):
   * - "split": unet/ with residual inputs, controlnet/<name>/ with named residual outputs (the worker's
   *   own layout, tools/export-onnx/export.py);
   * - "fused": diffusers' convert_stable_diffusion_controlnet_to_onnx.py, the UNet and
   *   `fusedControlNets` in one unet/model.onnx (see buildFused), no controlnet/;
   * - "onnx-web": its residual UNet in cnet/ (down_block_{i}, mid_block_additional_residual, timestep
   *   [batch]), a UNet without residual inputs in unet/, ControlNets without conditioning_scale that
   *   name only their first two outputs;
   * - "optimum": a UNet without residual inputs (scalar timestep, out_sample), ControlNets as split.
   */
  layout?: "split" | "fused" | "onnx-web" | "optimum";
  /** fused: the ControlNets in the graph, in the export's order; each has the weights it has in `controlnets`. */
  fusedControlNets?: readonly string[];
  /** fused: write unet/controlnets.json naming them (the script does not; the worker needs it). */
  fusedNamesFile?: boolean;
  /** Write the ControlNet's down outputs in reverse order (the pipeline must sort by name). */
  shuffleOutputs?: boolean;
  /** ControlNet takes conditioning_scale as an input (else the pipeline scales the residuals). */
  scaleInput?: boolean;
  /** Export hidden_states.{i} from the text encoder (needed for clip_skip). */
  hiddenStates?: boolean;
  /** ControlNets to write under controlnet/<name>/model.onnx. */
  controlnets?: readonly string[];
  /** Also write unet_inpaint/ (9 input channels). */
  inpaintUnet?: boolean;
  /** Width of two extra 3×3 conv layers in the UNet (0 = none): a heavier model for benchmarks. */
  unetWidth?: number;
  /** SDXL signatures: two text encoders, text_embeds/time_ids inputs, 9 down residuals. */
  sdxl?: boolean;
  /**
   * The text encoders' final layer norm: one LayerNormalization node whose weight and bias are named
   * like transformers' (`text_model.final_layer_norm.*`), or the ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add
   * chain that opset < 17 exports give, with anonymous weight names.
   */
  finalLayerNorm?: "fused" | "decomposed";
  /** Epsilon of the final layer norm (CLIP's is 1e-5). */
  layerNormEpsilon?: number;
  /** model_index.json force_zeros_for_empty_prompt (SDXL; omitted when undefined). */
  forceZerosForEmptyPrompt?: boolean;
  seed?: number;
}

interface ResidualLayout {
  /** Channel multipliers of the down residuals and their level (latent size / 2^level). */
  residualMult: readonly number[];
  residualLevel: readonly number[];
  midMult: number;
  midLevel: number;
}

export const TINY = {
  /** Width of text_encoder (SD's only one; SDXL's CLIP-L stand-in). */
  hidden: 8,
  /** Width of SDXL's text_encoder_2 and of its text_embeds projection. */
  hidden2: 12,
  projection: 12,
  layers: 3,
  base: 4,
  seqLen: 77,
  sd: {
    residualMult: [1, 1, 1, 1, 2, 2, 2, 4, 4, 4, 4, 4],
    residualLevel: [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    midMult: 4,
    midLevel: 3,
  } satisfies ResidualLayout,
  sdxl: {
    residualMult: [1, 1, 1, 1, 2, 2, 2, 4, 4],
    residualLevel: [0, 0, 0, 1, 1, 1, 2, 2, 2],
    midMult: 4,
    midLevel: 2,
  } satisfies ResidualLayout,
} as const;

const layout = (o: Opts): ResidualLayout => (o.sdxl ? TINY.sdxl : TINY.sd);
/** encoder_hidden_states width: SDXL's is both text encoders' together. */
const contextDim = (o: Opts): number => (o.sdxl ? TINY.hidden + TINY.hidden2 : TINY.hidden);

const WORDS = ["a", "photo", "of", "cat", "dog", "house", "lighthouse", "at", "dusk", "red", "blue", "the"];

/** A tiny CLIP vocabulary: the 512 byte tokens, merges for WORDS, and the two special tokens. */
export function tinyVocab(): { vocab: Record<string, number>; merges: string[] } {
  const bytes = bytesToUnicode();
  const tokens = [...bytes, ...bytes.map((b) => `${b}</w>`)];
  const merges: string[] = [];
  const seen = new Set(tokens);
  for (const word of WORDS) {
    // Merge left to right: "c a" → "ca", "ca t</w>" → "cat</w>".
    const chars = Array.from(word);
    let current = chars[0] as string;
    for (let i = 1; i < chars.length; i++) {
      const next = i === chars.length - 1 ? `${chars[i]}</w>` : (chars[i] as string);
      const merged = current + next;
      if (!seen.has(merged)) {
        merges.push(`${current} ${next}`);
        tokens.push(merged);
        seen.add(merged);
      }
      current = merged;
    }
  }
  tokens.push(BOS, EOS);
  return { vocab: Object.fromEntries(tokens.map((t, i) => [t, i])), merges };
}

type Opts = Required<Omit<TinyModelOptions, "forceZerosForEmptyPrompt">> &
  Pick<TinyModelOptions, "forceZerosForEmptyPrompt">;

function floatIn(g: GraphBuilder, name: string, shape: Dim[], o: Opts): string {
  if (o.float === "float32") return g.input(name, "float", shape);
  g.input(name, "float16", shape);
  return g.node("Cast", [name], { to: 1 });
}

function floatOut(g: GraphBuilder, value: string, name: string, shape: Dim[], o: Opts): void {
  const elem: ElemName = o.float === "float32" ? "float" : "float16";
  if (o.float === "float32") g.alias(value, name);
  else g.node("Cast", [value], { to: 10 }, [name]);
  g.output(name, elem, shape);
}

/**
 * The weight and bias of the tiny text encoders' final layer norm (`hidden` wide, for the folder's
 * `seed`): random, so that applying it or not makes a difference. Tests compute layer norms with them.
 */
export function tinyFinalLayerNorm(
  seed: number,
  hidden: number,
): { weight: Float32Array; bias: Float32Array } {
  const weight = new Float32Array(hidden);
  const bias = new Float32Array(hidden);
  const rng = mulberry32(seed + 7 + hidden);
  for (let i = 0; i < hidden; i++) {
    weight[i] = 0.5 + rng() * 1.5;
    bias[i] = (rng() * 2 - 1) * 0.5;
  }
  return { weight, bias };
}

/** CLIP's final layer norm over the last axis: fused, or decomposed as opset < 17 exports it. */
function finalLayerNorm(g: GraphBuilder, o: Opts, h: string, hidden: number): string {
  const { weight, bias } = tinyFinalLayerNorm(o.seed, hidden);
  const eps = o.layerNormEpsilon;
  if (o.finalLayerNorm === "fused") {
    const w = g.floats([hidden], weight, "text_model.final_layer_norm.weight");
    const b = g.floats([hidden], bias, "text_model.final_layer_norm.bias");
    return g.node("LayerNormalization", [h, w, b], { axis: -1, epsilon: eps });
  }
  const mean = g.node("ReduceMean", [h], { axes: [-1], keepdims: 1 });
  const centred = g.node("Sub", [h, mean]);
  const variance = g.node("ReduceMean", [g.node("Pow", [centred, g.scalar(2)])], { axes: [-1], keepdims: 1 });
  const std = g.node("Sqrt", [g.node("Add", [variance, g.scalar(eps)])]);
  const normed = g.node("Div", [centred, std]);
  return g.node("Add", [g.node("Mul", [normed, g.floats([hidden], weight)]), g.floats([hidden], bias)]);
}

/**
 * A CLIP-shaped text encoder: embeddings, `layers` residual blocks, final layer norm. With
 * `projection`, a CLIPTextModelWithProjection (text_embeds first, as optimum exports it).
 */
function buildTextEncoder(
  o: Opts,
  vocabSize: number,
  hidden: number,
  seed: number,
  projection: number | null,
  name: string,
): Uint8Array {
  const g = new GraphBuilder(seed);
  const ids = g.input("input_ids", o.ids, ["batch", "sequence"]);
  const emb = g.node("Gather", [g.random([vocabSize, hidden], 1), ids], { axis: 0 });
  let h = g.node("Add", [emb, g.random([TINY.seqLen, hidden], 0.2)]);
  const hs: string[] = [h];
  for (let l = 0; l < TINY.layers; l++) {
    const mixed = g.node("Tanh", [g.node("MatMul", [h, g.random([hidden, hidden], 0.8)])]);
    h = g.node("Add", [h, mixed]);
    hs.push(h);
  }
  const last = finalLayerNorm(g, o, h, hidden);
  const pooled = g.node("ReduceMean", [last], { axes: [1], keepdims: 0 });
  if (projection !== null) {
    const embeds = g.node("MatMul", [pooled, g.random([hidden, projection], 1 / Math.sqrt(hidden))]);
    floatOut(g, embeds, "text_embeds", ["batch", projection], o);
  }
  floatOut(g, last, "last_hidden_state", ["batch", "sequence", hidden], o);
  if (projection === null) floatOut(g, pooled, "pooler_output", ["batch", hidden], o);
  if (o.hiddenStates) {
    hs.forEach((value, i) => {
      floatOut(g, value, `hidden_states.${i}`, ["batch", "sequence", hidden], o);
    });
  }
  return g.encode(name);
}

/** A timestep value (float32, any shape that broadcasts) → [N,1,1,1], scaled to about ±1. */
function timestepEmbedding(g: GraphBuilder, t: string): string {
  const scaled = g.node("Mul", [t, g.scalar(0.002)]);
  return g.node("Reshape", [g.node("Sin", [scaled]), g.int64s([-1, 1, 1, 1])]);
}

/** The split/onnx-web/optimum timestep input: float [1] (scalar for optimum) or int64 [batch], as float32. */
function timestepInput(g: GraphBuilder, o: Opts): string {
  if (o.timestep === "int64") return g.node("Cast", [g.input("timestep", "int64", ["batch"])], { to: 1 });
  if (o.layout === "optimum") return floatIn(g, "timestep", [], o);
  return floatIn(g, "timestep", o.layout === "onnx-web" ? ["batch"] : [1], o);
}

/** encoder_hidden_states [B,77,D] (float32 value) → [B,1,1,1] plus a per-channel projection [B,C,1,1]. */
function textContext(g: GraphBuilder, o: Opts, ehs: string, channels: number): string {
  const D = contextDim(o);
  const pooled = g.node("ReduceMean", [ehs], { axes: [1], keepdims: 0 }); // [B,D]
  const proj = g.node("MatMul", [pooled, g.random([D, channels], 0.6)]); // [B,C]
  return g.node("Reshape", [proj, g.int64s([-1, channels, 1, 1])]);
}

/** SDXL's added conditioning inputs, declared as every exporter names them: text_embeds [B,P], time_ids [B,6]. */
function addedInputs(g: GraphBuilder, o: Opts, batch: Dim): AddedValues {
  return {
    textEmbeds: floatIn(g, "text_embeds", [batch, TINY.projection], o),
    timeIds: floatIn(g, "time_ids", [batch, 6], o),
  };
}

interface AddedValues {
  textEmbeds: string;
  timeIds: string;
}

/**
 * SDXL's added conditioning: text_embeds [B,P] and time_ids [B,6] (sizes in pixels, scaled down and
 * through Sin as a stand-in for the sinusoidal embedding) → [B,C,1,1].
 */
function addedConditioning(g: GraphBuilder, added: AddedValues, channels: number): string {
  const fromText = g.node("MatMul", [added.textEmbeds, g.random([TINY.projection, channels], 0.6)]);
  const ids = g.node("Sin", [g.node("Mul", [added.timeIds, g.scalar(1 / 97)])]);
  const fromIds = g.node("MatMul", [ids, g.random([6, channels], 0.6)]);
  return g.node("Reshape", [g.node("Add", [fromText, fromIds]), g.int64s([-1, channels, 1, 1])]);
}

function residualName(kind: "out" | "in", i: number | "mid", o: Opts): string {
  if (o.layout === "onnx-web") {
    // onnx-web's cnet UNet (convert/diffusion/diffusers.py): down_block_{i} and diffusers' mid name.
    if (kind === "in") return i === "mid" ? "mid_block_additional_residual" : `down_block_${i}`;
    // Its ControlNet (convert/diffusion/control.py) names two outputs of 13: torch.onnx.export gives
    // the first two flattened outputs (down 0 and down 1) these names and numbers to the rest.
    if (i === 0) return "down_block_res_samples";
    if (i === 1) return "mid_block_res_sample";
    return String(2773 + (i === "mid" ? 12 : i));
  }
  if (o.residualNames === "short") return i === "mid" ? "mid_block" : `down_block_${i}`;
  if (kind === "out") return i === "mid" ? "mid_block_res_sample" : `down_block_res_sample_${i}`;
  return i === "mid" ? "mid_block_additional_residual" : `down_block_additional_residual_${i}`;
}

const levelDims = (level: number): Dim[] => [`h${level}`, `w${level}`];

/** The float32 values a denoiser (ControlNet or UNet) starts from. */
interface DenoiserValues {
  sample: string;
  /** The timestep as float32, any shape that broadcasts to [N,1,1,1] after the embedding's reshape. */
  timestep: string;
  ehs: string;
  added: AddedValues | null;
}

/** [N,C,h,w] → [N,C,ceil(h/2),ceil(w/2)], as a stride-2, padding-1 convolution of a real UNet halves. */
const halve = (g: GraphBuilder, x: string) =>
  g.node("AveragePool", [x], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 });

/** A ControlNet's body: its 12 (SDXL: 9) down residuals and the mid residual, float32, scaled by `scale`. */
function controlNetBody(
  g: GraphBuilder,
  o: Opts,
  v: DenoiserValues,
  cond: string,
  scale: string | null,
): { down: string[]; mid: string } {
  const C = TINY.base;
  const temb = timestepEmbedding(g, v.timestep);
  const ctx = textContext(g, o, v.ehs, C);
  const condEmb = g.node("Conv", [cond, g.random([C, 3, 8, 8], 0.05)], { strides: [8, 8] });
  let h = g.conv1x1(v.sample, 4, C);
  h = g.node("Add", [g.node("Add", [h, condEmb]), g.node("Add", [temb, ctx])]);
  if (v.added) h = g.node("Add", [h, addedConditioning(g, v.added, C)]);
  const L = layout(o);
  const levels = [h];
  for (let l = 1; l <= L.midLevel; l++) levels.push(halve(g, levels[l - 1] as string));
  const scaled = (r: string) => (scale ? g.node("Mul", [r, scale]) : r);
  const down = L.residualMult.map((mult, i) =>
    scaled(g.conv1x1(levels[L.residualLevel[i] as number] as string, C, C * mult, 0.5)),
  );
  const mid = scaled(g.conv1x1(levels[L.midLevel] as string, C, C * L.midMult, 0.5));
  return { down, mid };
}

/**
 * A UNet's body, shaped as a traced diffusers UNet: a down path that halves (rounding up) per level,
 * the residuals added to the skips of their level and to the mid block, and an up path that upsamples
 * by a fixed factor 2 (nearest) and concatenates the skip of each level. The factor is fixed because
 * the export traced a size that is a multiple of 64, so diffusers' `forward_upsample_size` branch
 * (upsample to the skip's own size) is not in the graph: other sizes fail in the Concat, as they do
 * on a real export. `residuals`: down then mid, float32; null for a UNet without residual inputs.
 */
function unetBody(
  g: GraphBuilder,
  o: Opts,
  v: DenoiserValues,
  inChannels: number,
  residuals: { value: string; channels: number; level: number }[] | null,
): string {
  const C = TINY.base;
  const temb = timestepEmbedding(g, v.timestep);
  const ctx = textContext(g, o, v.ehs, C);
  let acc = g.node("Add", [g.conv1x1(v.sample, inChannels, C), g.node("Add", [temb, ctx])]);
  if (v.added) acc = g.node("Add", [acc, addedConditioning(g, v.added, C)]);
  const L = layout(o);
  const skips = [acc];
  for (let l = 1; l <= L.midLevel; l++) skips.push(halve(g, skips[l - 1] as string));
  for (const r of residuals ?? []) {
    const p = g.conv1x1(r.value, r.channels, C, 0.2);
    skips[r.level] = g.node("Add", [skips[r.level] as string, p]);
  }
  const upScales = g.floats([4], [1, 1, 2, 2]);
  let x = skips[L.midLevel] as string;
  for (let l = L.midLevel - 1; l >= 0; l--) {
    const up = g.node("Resize", [x, "", upScales], { mode: "nearest" });
    x = g.conv1x1(g.node("Concat", [up, skips[l] as string], { axis: 1 }), 2 * C, C, 0.5);
  }
  if (o.unetWidth > 0) {
    const W = o.unetWidth;
    const conv3 = (input: string, cin: number, cout: number) =>
      g.node("Conv", [input, g.random([cout, cin, 3, 3], 1 / Math.sqrt(9 * cin)), g.random([cout], 0.01)], {
        pads: [1, 1, 1, 1],
      });
    const body = g.node("Relu", [conv3(g.node("Relu", [conv3(x, C, W)]), W, W)]);
    x = g.node("Add", [x, g.conv1x1(body, W, C, 0.2)]);
  }
  return g.conv1x1(g.node("Tanh", [x]), C, 4, 0.8);
}

/** Weight seeds, shared by the split and the fused builds so that both compute the same model. */
const controlNetSeed = (o: Opts, name: string) => o.seed + 100 + o.controlnets.indexOf(name);
const unetSeed = (o: Opts, inChannels: number) => o.seed + 3 + inChannels;

function buildControlNet(o: Opts, name: string): Uint8Array {
  const g = new GraphBuilder(controlNetSeed(o, name));
  const C = TINY.base;
  const v: DenoiserValues = {
    sample: floatIn(g, "sample", ["batch", 4, "height", "width"], o),
    timestep: timestepInput(g, o),
    ehs: floatIn(g, "encoder_hidden_states", ["batch", TINY.seqLen, contextDim(o)], o),
    added: null,
  };
  const cond = floatIn(g, "controlnet_cond", ["batch", 3, "image_height", "image_width"], o);
  // onnx-web traces without conditioning_scale (a constant 1); the worker then scales the residuals.
  const scale = o.scaleInput && o.layout !== "onnx-web" ? floatIn(g, "conditioning_scale", [], o) : null;
  if (o.sdxl) v.added = addedInputs(g, o, "batch");
  const { down, mid } = controlNetBody(g, o, v, cond, scale);
  const L = layout(o);
  const outs = down.map((value, i) => ({
    name: residualName("out", i, o),
    value,
    shape: ["batch", C * (L.residualMult[i] as number), ...levelDims(L.residualLevel[i] as number)],
  }));
  const ordered = o.shuffleOutputs ? [...outs].reverse() : outs;
  for (const out of ordered) floatOut(g, out.value, out.name, out.shape, o);
  floatOut(g, mid, residualName("out", "mid", o), ["batch", C * L.midMult, ...levelDims(L.midLevel)], o);
  return g.encode("controlnet");
}

/** A UNet with residual inputs (split, onnx-web's cnet/), or without (optimum; onnx-web's unet/). */
function buildUnet(o: Opts, inChannels: number, withResiduals: boolean): Uint8Array {
  const g = new GraphBuilder(unetSeed(o, inChannels));
  const C = TINY.base;
  const v: DenoiserValues = {
    sample: floatIn(g, "sample", ["batch", inChannels, "height", "width"], o),
    timestep: timestepInput(g, o),
    ehs: floatIn(g, "encoder_hidden_states", ["batch", TINY.seqLen, contextDim(o)], o),
    added: null,
  };
  if (o.sdxl) v.added = addedInputs(g, o, "batch");
  const L = layout(o);
  const residuals = withResiduals
    ? [
        ...L.residualMult.map((mult, i) => ({
          i: i as number | "mid",
          mult,
          level: L.residualLevel[i] as number,
        })),
        { i: "mid" as const, mult: L.midMult, level: L.midLevel },
      ].map((r) => ({
        value: floatIn(g, residualName("in", r.i, o), ["batch", C * r.mult, ...levelDims(r.level)], o),
        channels: C * r.mult,
        level: r.level,
      }))
    : null;
  const out = unetBody(g, o, v, inChannels, residuals);
  floatOut(g, out, "out_sample", ["batch", 4, "height", "width"], o);
  return g.encode("unet");
}

/**
 * diffusers' scripts/convert_stable_diffusion_controlnet_to_onnx.py (UNet2DConditionControlNetModel,
 * UNet2DConditionXLControlNetModel): the UNet and the ControlNets in one graph. Inputs as its
 * onnx_export call declares them: sample [2B,4,H,W], timestep [1] (the model's float dtype),
 * encoder_hidden_states [2B,77,D], controlnet_conds [N,2B,3,8H,8W], conditioning_scales [N,1]
 * (N fixed by the export), SDXL text_embeds [2B,1280] and time_ids [2B,6]; output noise_pred. Each
 * ControlNet gets its slice of conds and scales; their residuals are summed, as forward() does.
 */
function buildFused(o: Opts): Uint8Array {
  const g = new GraphBuilder(o.seed + 50);
  const names = o.fusedControlNets;
  const N = names.length;
  const v: DenoiserValues = {
    sample: floatIn(g, "sample", ["2B", 4, "H", "W"], o),
    timestep: floatIn(g, "timestep", [1], o),
    ehs: floatIn(g, "encoder_hidden_states", ["2B", TINY.seqLen, contextDim(o)], o),
    added: null,
  };
  const conds = floatIn(g, "controlnet_conds", [N, "2B", 3, "8H", "8W"], o);
  const scales = floatIn(g, "conditioning_scales", [N, 1], o);
  if (o.sdxl) v.added = addedInputs(g, o, "2B");
  let sum: { down: string[]; mid: string } | null = null;
  names.forEach((name, j) => {
    g.reseed(controlNetSeed(o, name));
    const index = g.int64s([j], undefined, true);
    const cond = g.node("Gather", [conds, index], { axis: 0 });
    const scale = g.node("Gather", [scales, index], { axis: 0 });
    const r = controlNetBody(g, o, v, cond, scale);
    sum = sum
      ? {
          down: sum.down.map((d, i) => g.node("Add", [d, r.down[i] as string])),
          mid: g.node("Add", [sum.mid, r.mid]),
        }
      : r;
  });
  const L = layout(o);
  const C = TINY.base;
  const total = sum as { down: string[]; mid: string } | null;
  if (!total) throw new Error("a fused tiny model needs at least one ControlNet");
  g.reseed(unetSeed(o, 4));
  const residuals = [
    ...total.down.map((value, i) => ({
      value,
      channels: C * (L.residualMult[i] as number),
      level: L.residualLevel[i] as number,
    })),
    { value: total.mid, channels: C * L.midMult, level: L.midLevel },
  ];
  const out = unetBody(g, o, v, 4, residuals);
  floatOut(g, out, "noise_pred", ["2B", 4, "H", "W"], o);
  return g.encode("unet");
}

function buildVaeDecoder(o: Opts): Uint8Array {
  const g = new GraphBuilder(o.seed + 5);
  const latent = floatIn(g, "latent_sample", ["batch", 4, "height", "width"], o);
  const up = g.node("DepthToSpace", [g.conv1x1(latent, 4, 3 * 64, 2)], { blocksize: 8, mode: "DCR" });
  floatOut(g, g.node("Tanh", [up]), "sample", ["batch", 3, "image_height", "image_width"], o);
  return g.encode("vae_decoder");
}

function buildVaeEncoder(o: Opts): Uint8Array {
  const g = new GraphBuilder(o.seed + 6);
  const image = floatIn(g, "sample", ["batch", 3, "image_height", "image_width"], o);
  const down = g.node("SpaceToDepth", [image], { blocksize: 8 });
  const mean = g.conv1x1(down, 3 * 64, 4, 1);
  if (o.layout === "split") {
    // tools/export-onnx: the latent distribution's parameters (mean, log-variance), sampled by the worker
    // with the job's seed as diffusers' latent_dist.sample() does. A small variance keeps it near the mean.
    const logvar = g.node("Add", [g.node("Mul", [mean, g.scalar(0)]), g.scalar(-12)]);
    const params = g.node("Concat", [mean, logvar], { axis: 1 });
    floatOut(g, params, "latent_parameters", ["batch", 8, "height", "width"], o);
  } else {
    // diffusers' scripts export the sample itself (vae.encode(sample).latent_dist.sample()).
    floatOut(g, mean, "latent_sample", ["batch", 4, "height", "width"], o);
  }
  return g.encode("vae_encoder");
}

export const TINY_SCHEDULER_CONFIG = {
  _class_name: "PNDMScheduler",
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  num_train_timesteps: 1000,
  steps_offset: 1,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  clip_sample: false,
  prediction_type: "epsilon",
  timestep_spacing: "leading",
};

function write(dir: string, file: string, data: Uint8Array | string): void {
  const path = join(dir, file);
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, data);
}

/** Writes the tiny model folder into `dir` (created if missing) and returns `dir`. */
export function buildTinyModel(dir: string, options: TinyModelOptions = {}): string {
  const o: Opts = {
    ids: "int32",
    float: "float32",
    timestep: "float",
    residualNames: "diffusers",
    shuffleOutputs: false,
    scaleInput: true,
    hiddenStates: true,
    controlnets: [
      "canny",
      "depth",
      "inpaint",
      "tile",
      "scribble",
      "shuffle",
      "qrcode",
      "blur",
      "gray",
      "low_quality",
    ],
    inpaintUnet: false,
    layout: "split",
    fusedControlNets: ["canny", "depth"],
    fusedNamesFile: true,
    unetWidth: 0,
    sdxl: false,
    finalLayerNorm: "fused",
    layerNormEpsilon: 1e-5,
    seed: 1234,
    ...options,
  };
  const { vocab, merges } = tinyVocab();
  write(dir, "tokenizer/vocab.json", JSON.stringify(vocab));
  write(dir, "tokenizer/merges.txt", `#version: 0.2\n${merges.join("\n")}\n`);
  write(dir, "tokenizer/special_tokens_map.json", JSON.stringify({ pad_token: EOS }));
  write(dir, "scheduler/scheduler_config.json", JSON.stringify(TINY_SCHEDULER_CONFIG, null, 2));
  write(dir, "vae_decoder/config.json", JSON.stringify({ scaling_factor: o.sdxl ? 0.13025 : 0.18215 }));
  const vocabSize = Object.keys(vocab).length;
  write(
    dir,
    "text_encoder/model.onnx",
    buildTextEncoder(o, vocabSize, TINY.hidden, o.seed + 1, null, "text_encoder"),
  );
  if (o.sdxl) {
    // SDXL's second tokenizer is the same BPE, padding with "!".
    write(dir, "tokenizer_2/vocab.json", JSON.stringify(vocab));
    write(dir, "tokenizer_2/merges.txt", `#version: 0.2\n${merges.join("\n")}\n`);
    write(dir, "tokenizer_2/special_tokens_map.json", JSON.stringify({ pad_token: "!" }));
    write(
      dir,
      "text_encoder_2/model.onnx",
      buildTextEncoder(o, vocabSize, TINY.hidden2, o.seed + 2, TINY.projection, "text_encoder_2"),
    );
  }
  if (o.layout === "fused") {
    for (const name of o.fusedControlNets)
      if (!o.controlnets.includes(name)) throw new Error(`fused ControlNet ${name} is not in controlnets`);
    write(dir, "unet/model.onnx", buildFused(o));
    if (o.fusedNamesFile)
      write(dir, "unet/controlnets.json", JSON.stringify({ controlnets: o.fusedControlNets }));
  } else {
    write(dir, "unet/model.onnx", buildUnet(o, 4, o.layout === "split"));
    if (o.layout === "onnx-web") write(dir, "cnet/model.onnx", buildUnet(o, 4, true));
    for (const name of o.controlnets) write(dir, `controlnet/${name}/model.onnx`, buildControlNet(o, name));
  }
  if (o.inpaintUnet) write(dir, "unet_inpaint/model.onnx", buildUnet(o, 9, true));
  write(dir, "vae_decoder/model.onnx", buildVaeDecoder(o));
  write(dir, "vae_encoder/model.onnx", buildVaeEncoder(o));
  write(
    dir,
    "model_index.json",
    JSON.stringify({
      _class_name: o.sdxl ? "ORTStableDiffusionXLPipeline" : "OnnxStableDiffusionControlNetPipeline",
      tiny: true,
      ...(o.forceZerosForEmptyPrompt === undefined
        ? {}
        : { force_zeros_for_empty_prompt: o.forceZerosForEmptyPrompt }),
    }),
  );
  return dir;
}
