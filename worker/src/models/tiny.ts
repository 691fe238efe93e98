/**
 * Builds a tiny SD-1.5-shaped model folder (diffusers layout, ONNX files) with random weights: tiny
 * channel counts, but the real input/output names, ranks and residual layout (12 down residuals at
 * latent/1, /2, /4, /8 and a mid residual), so the pipeline runs exactly as on a real export.
 *
 * Variants cover what exporters differ in: int32 or int64 ids, fp16 or fp32 tensors, float or int64
 * timestep, residual naming and order, a conditioning_scale input or not, a 9-channel inpainting UNet.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BOS, bytesToUnicode, EOS } from "../pipeline/tokenizer.ts";
import { type Dim, type ElemName, GraphBuilder } from "./onnx-builder.ts";

export interface TinyModelOptions {
  /** Input ids dtype of the text encoder. */
  ids?: "int32" | "int64";
  /** Float dtype of every float input and output. */
  float?: "float32" | "float16";
  /** Timestep dtype (UNet and ControlNet). */
  timestep?: "float" | "int64";
  /** "diffusers": down_block_res_sample_{i} / down_block_additional_residual_{i}; "short": down_block_{i}. */
  residualNames?: "diffusers" | "short";
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
  seed?: number;
}

export const TINY = {
  hidden: 8,
  layers: 3,
  base: 4,
  seqLen: 77,
  /** Channel multipliers of the 12 down residuals and their level (latent size / 2^level). */
  residualMult: [1, 1, 1, 1, 2, 2, 2, 4, 4, 4, 4, 4],
  residualLevel: [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
  midMult: 4,
} as const;

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

type Opts = Required<TinyModelOptions>;

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

/** timestep → [N,1,1,1] float, scaled to about ±1. */
function timestepEmbedding(g: GraphBuilder, o: Opts): string {
  const shape: Dim[] = o.timestep === "int64" ? ["batch"] : [1];
  let t: string;
  if (o.timestep === "int64") t = g.node("Cast", [g.input("timestep", "int64", shape)], { to: 1 });
  else t = floatIn(g, "timestep", shape, o);
  const scaled = g.node("Mul", [t, g.scalar(0.002)]);
  return g.node("Reshape", [g.node("Sin", [scaled]), g.int64s([-1, 1, 1, 1])]);
}

/** encoder_hidden_states [B,77,D] → [B,1,1,1] plus a per-channel projection [B,C,1,1]. */
function textContext(g: GraphBuilder, o: Opts, channels: number): string {
  const ehs = floatIn(g, "encoder_hidden_states", ["batch", TINY.seqLen, TINY.hidden], o);
  const pooled = g.node("ReduceMean", [ehs], { axes: [1], keepdims: 0 }); // [B,D]
  const proj = g.node("MatMul", [pooled, g.random([TINY.hidden, channels], 0.6)]); // [B,C]
  return g.node("Reshape", [proj, g.int64s([-1, channels, 1, 1])]);
}

function residualName(kind: "out" | "in", i: number | "mid", o: Opts): string {
  if (o.residualNames === "short") return i === "mid" ? "mid_block" : `down_block_${i}`;
  if (kind === "out") return i === "mid" ? "mid_block_res_sample" : `down_block_res_sample_${i}`;
  return i === "mid" ? "mid_block_additional_residual" : `down_block_additional_residual_${i}`;
}

const levelDims = (level: number): Dim[] => [`h${level}`, `w${level}`];

function buildTextEncoder(o: Opts, vocabSize: number): Uint8Array {
  const g = new GraphBuilder(o.seed + 1);
  const ids = g.input("input_ids", o.ids, ["batch", "sequence"]);
  const emb = g.node("Gather", [g.random([vocabSize, TINY.hidden], 1), ids], { axis: 0 });
  let h = g.node("Add", [emb, g.random([TINY.seqLen, TINY.hidden], 0.2)]);
  const hs: string[] = [h];
  for (let l = 0; l < TINY.layers; l++) {
    const mixed = g.node("Tanh", [g.node("MatMul", [h, g.random([TINY.hidden, TINY.hidden], 0.8)])]);
    h = g.node("Add", [h, mixed]);
    hs.push(h);
  }
  const scale = g.floats([TINY.hidden], new Float32Array(TINY.hidden).fill(1));
  const bias = g.floats([TINY.hidden], new Float32Array(TINY.hidden));
  const last = g.node("LayerNormalization", [h, scale, bias], { axis: -1, epsilon: 1e-5 });
  floatOut(g, last, "last_hidden_state", ["batch", "sequence", TINY.hidden], o);
  floatOut(
    g,
    g.node("ReduceMean", [last], { axes: [1], keepdims: 0 }),
    "pooler_output",
    ["batch", TINY.hidden],
    o,
  );
  if (o.hiddenStates) {
    hs.forEach((value, i) => {
      floatOut(g, value, `hidden_states.${i}`, ["batch", "sequence", TINY.hidden], o);
    });
  }
  return g.encode("text_encoder");
}

function buildControlNet(o: Opts, seed: number): Uint8Array {
  const g = new GraphBuilder(seed);
  const C = TINY.base;
  const sample = floatIn(g, "sample", ["batch", 4, "height", "width"], o);
  const temb = timestepEmbedding(g, o);
  const ctx = textContext(g, o, C);
  const cond = floatIn(g, "controlnet_cond", ["batch", 3, "image_height", "image_width"], o);
  const condEmb = g.node("Conv", [cond, g.random([C, 3, 8, 8], 0.05)], { strides: [8, 8] });
  let h = g.conv1x1(sample, 4, C);
  h = g.node("Add", [g.node("Add", [h, condEmb]), g.node("Add", [temb, ctx])]);
  const levels = [h];
  for (let l = 1; l < 4; l++) {
    levels.push(g.node("AveragePool", [levels[l - 1] as string], { kernel_shape: [2, 2], strides: [2, 2] }));
  }
  let scale: string | null = null;
  if (o.scaleInput) scale = floatIn(g, "conditioning_scale", [], o);
  const outs: { name: string; value: string; shape: Dim[] }[] = [];
  TINY.residualMult.forEach((mult, i) => {
    const level = TINY.residualLevel[i] as number;
    let r = g.conv1x1(levels[level] as string, C, C * mult, 0.5);
    if (scale) r = g.node("Mul", [r, scale]);
    outs.push({ name: residualName("out", i, o), value: r, shape: ["batch", C * mult, ...levelDims(level)] });
  });
  let mid = g.conv1x1(levels[3] as string, C, C * TINY.midMult, 0.5);
  if (scale) mid = g.node("Mul", [mid, scale]);
  const ordered = o.shuffleOutputs ? [...outs].reverse() : outs;
  for (const out of ordered) floatOut(g, out.value, out.name, out.shape, o);
  floatOut(g, mid, residualName("out", "mid", o), ["batch", C * TINY.midMult, ...levelDims(3)], o);
  return g.encode("controlnet");
}

function buildUnet(o: Opts, inChannels: number): Uint8Array {
  const g = new GraphBuilder(o.seed + 3 + inChannels);
  const C = TINY.base;
  const sample = floatIn(g, "sample", ["batch", inChannels, "height", "width"], o);
  const temb = timestepEmbedding(g, o);
  const ctx = textContext(g, o, C);
  let acc = g.node("Add", [g.conv1x1(sample, inChannels, C), g.node("Add", [temb, ctx])]);
  const size = g.node("Shape", [acc]);
  const addResidual = (name: string, channels: number, level: number) => {
    const r = floatIn(g, name, ["batch", channels, ...levelDims(level)], o);
    let p = g.conv1x1(r, channels, C, 0.2);
    if (level > 0) p = g.node("Resize", [p, "", "", size], { mode: "nearest" });
    acc = g.node("Add", [acc, p]);
  };
  TINY.residualMult.forEach((mult, i) => {
    addResidual(residualName("in", i, o), C * mult, TINY.residualLevel[i] as number);
  });
  addResidual(residualName("in", "mid", o), C * TINY.midMult, 3);
  if (o.unetWidth > 0) {
    const W = o.unetWidth;
    const conv3 = (x: string, cin: number, cout: number) =>
      g.node("Conv", [x, g.random([cout, cin, 3, 3], 1 / Math.sqrt(9 * cin)), g.random([cout], 0.01)], {
        pads: [1, 1, 1, 1],
      });
    const body = g.node("Relu", [conv3(g.node("Relu", [conv3(acc, C, W)]), W, W)]);
    acc = g.node("Add", [acc, g.conv1x1(body, W, C, 0.2)]);
  }
  const out = g.conv1x1(g.node("Tanh", [acc]), C, 4, 0.8);
  floatOut(g, out, "out_sample", ["batch", 4, "height", "width"], o);
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
  floatOut(g, g.conv1x1(down, 3 * 64, 4, 1), "latent_sample", ["batch", 4, "height", "width"], o);
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
    unetWidth: 0,
    seed: 1234,
    ...options,
  };
  const { vocab, merges } = tinyVocab();
  write(dir, "tokenizer/vocab.json", JSON.stringify(vocab));
  write(dir, "tokenizer/merges.txt", `#version: 0.2\n${merges.join("\n")}\n`);
  write(dir, "tokenizer/special_tokens_map.json", JSON.stringify({ pad_token: EOS }));
  write(dir, "scheduler/scheduler_config.json", JSON.stringify(TINY_SCHEDULER_CONFIG, null, 2));
  write(dir, "vae_decoder/config.json", JSON.stringify({ scaling_factor: 0.18215 }));
  write(dir, "text_encoder/model.onnx", buildTextEncoder(o, Object.keys(vocab).length));
  write(dir, "unet/model.onnx", buildUnet(o, 4));
  if (o.inpaintUnet) write(dir, "unet_inpaint/model.onnx", buildUnet(o, 9));
  write(dir, "vae_decoder/model.onnx", buildVaeDecoder(o));
  write(dir, "vae_encoder/model.onnx", buildVaeEncoder(o));
  o.controlnets.forEach((name, i) => {
    write(dir, `controlnet/${name}/model.onnx`, buildControlNet(o, o.seed + 100 + i));
  });
  write(
    dir,
    "model_index.json",
    JSON.stringify({ _class_name: "OnnxStableDiffusionControlNetPipeline", tiny: true }),
  );
  return dir;
}
