/**
 * Prompt encoding as diffusers does it, for SD 1.x/2.x (one CLIP text encoder) and SDXL (two).
 *
 * clip_skip follows the API (A1111 / ModelsLab) convention: 1 = the last layer, no skip; k ≥ 2 skips
 * k - 1 layers, which is diffusers' `clip_skip = k - 1`. As in diffusers' encode_prompt, it applies to
 * the positive prompt only: the negative prompt is always encoded as with no clip_skip.
 * - SD: k = 1 is `last_hidden_state`; k ≥ 2 is `final_layer_norm(hidden_states[-k])`
 *   (StableDiffusionPipeline.encode_prompt), with the layer norm's weight, bias and epsilon read from
 *   the ONNX file (onnx-graph.ts). Needs an export with `hidden_states.{i}` outputs. The negative
 *   prompt: `last_hidden_state` (`text_encoder(uncond_input.input_ids)[0]`).
 * - SDXL: both encoders give `hidden_states[-(k + 1)]` (the penultimate layer for k = 1), with no final
 *   layer norm, concatenated on the last axis (768 + 1280 = 2048); the pooled embedding is
 *   text_encoder_2's `text_embeds` (StableDiffusionXLPipeline.encode_prompt). The negative prompt:
 *   always `hidden_states[-2]`, or zeros for an empty one under force_zeros_for_empty_prompt.
 */
import type ort from "onnxruntime-node";
import { resourceError } from "../errors.ts";
import { type AddedCondIo, type ModelSet, type TextEncoderIo, textEncoderIo } from "./models.ts";
import { applyLayerNorm, type LayerNormParams } from "./onnx-graph.ts";
import { floatTensor, idsTensor, type LoadedSession, readFloats } from "./session.ts";
import type { ClipTokenizer } from "./tokenizer.ts";

export interface Embeddings {
  /** [n, 77, D] */
  data: Float32Array;
  dims: number[];
}

export interface PromptEmbeddings {
  cond: Embeddings;
  /** Null without classifier-free guidance. */
  uncond: Embeddings | null;
  /** SDXL: text_encoder_2's pooled text_embeds, [n, P] each; null for SD 1.x/2.x. */
  pooled: { cond: Float32Array; uncond: Float32Array | null; dim: number } | null;
}

export interface EncodeOptions {
  prompt: string;
  negativePrompt: string;
  /** Copies of each embedding (samples). */
  samples: number;
  clipSkip: number;
  /** Classifier-free guidance: also encode the negative prompt. */
  cfg: boolean;
  /** SDXL (two text encoders, pooled embeddings); decided by the UNet's inputs. */
  sdxl: boolean;
  timing: { modelMs: number };
}

function tile(data: Float32Array, times: number): Float32Array {
  if (times === 1) return data;
  const out = new Float32Array(data.length * times);
  for (let i = 0; i < times; i++) out.set(data, i * data.length);
  return out;
}

function output(out: ort.InferenceSession.ReturnType, name: string, path: string): ort.Tensor {
  const t = out[name];
  if (!t) throw new Error(`text encoder ${path} gave no output ${name}`);
  return t;
}

interface Encoded {
  io: TextEncoderIo;
  out: ort.InferenceSession.ReturnType;
  session: LoadedSession;
}

async function runEncoder(
  models: ModelSet,
  path: string,
  tokenizer: ClipTokenizer,
  text: string,
  timing: { modelMs: number },
): Promise<Encoded> {
  const session = await models.session(path);
  const io = textEncoderIo(session);
  const ids = tokenizer.tokenize(text);
  const t0 = performance.now();
  const out = await session.session.run({ [io.ids.name]: idsTensor(io.ids, ids, [1, ids.length]) });
  timing.modelMs += performance.now() - t0;
  return { io, out, session };
}

function needHiddenStates(e: Encoded, clipSkip: number, wanted: number, why: string): string {
  const hs = e.io.hiddenStates;
  if (hs.length === 0)
    throw resourceError(
      `unsupported export ${e.session.path}: ${why} needs the text encoder's hidden_states.{i} outputs (export it with output_hidden_states); it has ${e.session.outputs.map((o) => o.name).join(", ")}`,
    );
  const index = hs.length - wanted;
  if (index < 0)
    throw resourceError(
      `clip_skip ${clipSkip} goes past the first layer of ${e.session.path} (${hs.length - 1} layers)`,
    );
  return hs[index] as string;
}

/** SD 1.x/2.x: [1, 77, D] for `text`, with diffusers' clip_skip (final layer norm applied). */
async function encodeSd(models: ModelSet, text: string, clipSkip: number, timing: { modelMs: number }) {
  const path = models.folder.paths.textEncoder;
  const e = await runEncoder(models, path, models.folder.tokenizer, text, timing);
  if (clipSkip <= 1) {
    const t = output(e.out, e.io.lastHidden, path);
    return { data: Float32Array.from(readFloats(t)), dims: t.dims.slice() };
  }
  const name = needHiddenStates(e, clipSkip, clipSkip, `clip_skip ${clipSkip}`);
  const ln = models.finalLayerNorm(path, e.io.lastHidden);
  verifyLayerNorm(e, ln);
  const t = output(e.out, name, path);
  const data = Float32Array.from(readFloats(t));
  applyLayerNorm(data, ln);
  return { data, dims: t.dims.slice() };
}

const verified = new WeakSet<object>();

/**
 * Checks once per layer norm that it maps the last hidden state onto last_hidden_state, as it must if
 * it is the final layer norm: a wrong guess fails the job instead of giving subtly wrong embeddings.
 */
function verifyLayerNorm(e: Encoded, ln: LayerNormParams): void {
  if (verified.has(ln)) return;
  const path = e.session.path;
  const last = output(e.out, e.io.lastHidden, path);
  const pre = Float32Array.from(readFloats(output(e.out, e.io.hiddenStates.at(-1) as string, path)));
  applyLayerNorm(pre, ln);
  const want = readFloats(last);
  const tolerance = last.type === "float16" ? 2e-2 : 1e-3;
  for (let i = 0; i < want.length; i++) {
    const w = want[i] as number;
    if (!(Math.abs((pre[i] as number) - w) <= tolerance * (1 + Math.abs(w)))) {
      throw resourceError(
        `unsupported export ${path}: the layer norm found for clip_skip (${ln.found}) does not reproduce ${e.io.lastHidden} from ${e.io.hiddenStates.at(-1)}`,
      );
    }
  }
  verified.add(ln);
}

/** SDXL: [1, 77, D1 + D2] and the pooled [1, P] for `text`. */
async function encodeSdxl(models: ModelSet, text: string, clipSkip: number, timing: { modelMs: number }) {
  const { paths, tokenizer, tokenizer2 } = models.folder;
  if (!paths.textEncoder2 || !tokenizer2)
    throw resourceError(
      `unsupported export ${models.folder.dir}: the UNet takes SDXL inputs (text_embeds, time_ids) but the folder has no text_encoder_2/model.onnx`,
    );
  const one = await runEncoder(models, paths.textEncoder, tokenizer, text, timing);
  const two = await runEncoder(models, paths.textEncoder2, tokenizer2, text, timing);
  const parts = [one, two].map((e) => {
    const t = output(e.out, needHiddenStates(e, clipSkip, clipSkip + 1, "SDXL"), e.session.path);
    return { data: readFloats(t), dims: t.dims };
  });
  const [a, b] = parts as [(typeof parts)[number], (typeof parts)[number]];
  const da = a.dims.at(-1) as number;
  const db = b.dims.at(-1) as number;
  const tokens = a.data.length / da;
  if (b.data.length / db !== tokens)
    throw resourceError("SDXL text encoders give different sequence lengths");
  const data = new Float32Array(tokens * (da + db));
  for (let t = 0; t < tokens; t++) {
    data.set(a.data.subarray(t * da, (t + 1) * da), t * (da + db));
    data.set(b.data.subarray(t * db, (t + 1) * db), t * (da + db) + da);
  }
  if (!two.io.textEmbeds)
    throw resourceError(
      `unsupported export ${paths.textEncoder2}: no text_embeds output (the pooled projection SDXL needs)`,
    );
  const pooled = Float32Array.from(readFloats(output(two.out, two.io.textEmbeds, paths.textEncoder2)));
  return { data, dims: [...a.dims.slice(0, -1), da + db], pooled };
}

/** The prompt (and negative prompt) embeddings for one generation, tiled `samples` times. */
export async function encodePrompts(models: ModelSet, o: EncodeOptions): Promise<PromptEmbeddings> {
  const n = o.samples;
  const tiled = (e: { data: Float32Array; dims: number[] }): Embeddings => ({
    data: tile(e.data, n),
    dims: [n, ...e.dims.slice(1)],
  });
  if (!o.sdxl) {
    const cond = await encodeSd(models, o.prompt, o.clipSkip, o.timing);
    const uncond = o.cfg ? await encodeSd(models, o.negativePrompt, 1, o.timing) : null;
    return { cond: tiled(cond), uncond: uncond ? tiled(uncond) : null, pooled: null };
  }
  const cond = await encodeSdxl(models, o.prompt, o.clipSkip, o.timing);
  let uncond: Awaited<ReturnType<typeof encodeSdxl>> | null = null;
  if (o.cfg) {
    // diffusers zeroes the negative embeddings when no negative prompt is given (an empty one here).
    uncond =
      o.negativePrompt.trim() === "" && models.folder.forceZerosForEmptyPrompt
        ? {
            data: new Float32Array(cond.data.length),
            dims: cond.dims,
            pooled: new Float32Array(cond.pooled.length),
          }
        : await encodeSdxl(models, o.negativePrompt, 1, o.timing);
  }
  return {
    cond: tiled(cond),
    uncond: uncond ? tiled(uncond) : null,
    pooled: {
      cond: tile(cond.pooled, n),
      uncond: uncond ? tile(uncond.pooled, n) : null,
      dim: cond.pooled.length,
    },
  };
}

/**
 * SDXL's added conditioning feeds for a UNet or ControlNet: text_embeds (the pooled embeddings) and
 * time_ids = original size (h, w) + crop top-left (0, 0) + target size (h, w), both the output size as
 * diffusers defaults them. Rows follow the batch: [negative × n, positive × n] with guidance, or the
 * positive rows only (`half` "cond": guess_mode's ControlNet, or no guidance).
 */
export function addedConditionFeeds(
  io: AddedCondIo,
  e: PromptEmbeddings,
  height: number,
  width: number,
  half: "cond" | "all",
): Record<string, ort.Tensor> {
  if (!e.pooled) throw resourceError("SDXL conditioning needs pooled text embeddings");
  const pooled = half === "all" && e.pooled.uncond ? concat(e.pooled.uncond, e.pooled.cond) : e.pooled.cond;
  const rows = pooled.length / e.pooled.dim;
  const ids = new Float32Array(rows * 6);
  for (let r = 0; r < rows; r++) ids.set([height, width, 0, 0, height, width], r * 6);
  return {
    [io.textEmbeds.name]: floatTensor(io.textEmbeds, pooled, [rows, e.pooled.dim]),
    [io.timeIds.name]: floatTensor(io.timeIds, ids, [rows, 6]),
  };
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
