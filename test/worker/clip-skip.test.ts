/**
 * clip_skip as diffusers computes it: API value k (1 = no skip) is diffusers' clip_skip k - 1, i.e.
 * final_layer_norm(hidden_states[-k]), with the final layer norm's weight, bias and epsilon read from
 * the text encoder's ONNX file.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import onnxProto from "onnx-proto";
import ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../../worker/src/models/onnx-builder.ts";
import { TINY, tinyFinalLayerNorm } from "../../worker/src/models/tiny.ts";
import { ModelSet, textEncoderIo } from "../../worker/src/pipeline/models.ts";
import { findFinalLayerNorm, readGraphSummary, tensorFloats } from "../../worker/src/pipeline/onnx-graph.ts";
import { floatToHalf, idsTensor, readFloats, SessionFactory } from "../../worker/src/pipeline/session.ts";
import { encodePrompts } from "../../worker/src/pipeline/text.ts";
import { captureLog, tinyModel } from "./support.ts";

const { onnx } = onnxProto;
const SEED = 1234; // buildTinyModel's default seed

const open: ModelSet[] = [];
function modelsFor(dir: string): ModelSet {
  const models = ModelSet.open(dir, new SessionFactory("cpu", captureLog().log, 1));
  open.push(models);
  return models;
}
afterAll(async () => {
  await Promise.all(open.map((m) => m.release()));
});

/** Layer norm over the last axis in double precision, written independently of the worker's. */
function referenceLayerNorm(
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  eps: number,
): Float64Array {
  const d = weight.length;
  const out = new Float64Array(x.length);
  for (let row = 0; row < x.length / d; row++) {
    const v = Array.from(x.subarray(row * d, (row + 1) * d));
    const mean = v.reduce((a, b) => a + b, 0) / d;
    const variance = v.reduce((a, b) => a + (b - mean) * (b - mean), 0) / d;
    v.forEach((value, i) => {
      out[row * d + i] =
        ((value - mean) / Math.sqrt(variance + eps)) * (weight[i] as number) + (bias[i] as number);
    });
  }
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

/** Every output of the folder's text encoder for `prompt`, run directly. */
async function rawOutputs(models: ModelSet, prompt: string): Promise<Record<string, Float32Array>> {
  const s = await models.session(models.folder.paths.textEncoder);
  const io = textEncoderIo(s);
  const ids = models.folder.tokenizer.tokenize(prompt);
  const out = await s.session.run({ [io.ids.name]: idsTensor(io.ids, ids, [1, ids.length]) });
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, Float32Array.from(readFloats(t))]));
}

const encode = (models: ModelSet, prompt: string, clipSkip: number) =>
  encodePrompts(models, {
    prompt,
    negativePrompt: "",
    samples: 1,
    clipSkip,
    cfg: false,
    sdxl: false,
    timing: { modelMs: 0 },
  });

const variants = [
  {
    name: "fused LayerNormalization (opset 17), fp32",
    options: {},
    eps: 1e-5,
    tolerance: 1e-5,
    found: "LayerNormalization node",
  },
  {
    name: "decomposed layer norm (older opsets), anonymous weights, epsilon 1e-3 from the graph",
    options: { finalLayerNorm: "decomposed", layerNormEpsilon: 1e-3 } as const,
    eps: 1e-3,
    tolerance: 1e-5,
    found: "decomposed layer norm",
  },
  {
    name: "fp16 export, int64 ids",
    options: { float: "float16", ids: "int64" } as const,
    eps: 1e-5,
    tolerance: 1e-5,
    found: "LayerNormalization node",
  },
];

describe("clip_skip is exact (final layer norm from the ONNX file)", () => {
  for (const v of variants) {
    describe(v.name, () => {
      const models = modelsFor(tinyModel({ ...v.options, controlnets: ["canny"] }));
      const { weight, bias } = tinyFinalLayerNorm(SEED, TINY.hidden);
      const prompt = "a photo of a red house at dusk";

      it("finds the layer norm's weight, bias and epsilon", () => {
        const ln = findFinalLayerNorm(models.folder.paths.textEncoder, "last_hidden_state", 0.5);
        expect(ln).not.toBeNull();
        expect(Array.from(ln?.weight ?? [])).toEqual(Array.from(weight));
        expect(Array.from(ln?.bias ?? [])).toEqual(Array.from(bias));
        expect(ln?.epsilon).toBeCloseTo(v.eps, 10);
        expect(ln?.found).toBe(v.found);
      });

      it("the model is what the test assumes: last_hidden_state = final_layer_norm(last hidden state)", async () => {
        const out = await rawOutputs(models, prompt);
        const last = out[`hidden_states.${TINY.layers}`] as Float32Array;
        const fp16 = v.options.float === "float16";
        expect(
          maxDiff(referenceLayerNorm(last, weight, bias, v.eps), out.last_hidden_state as Float32Array),
        ).toBeLessThan(fp16 ? 1e-2 : 1e-5);
      });

      it("clip_skip 1 is last_hidden_state itself", async () => {
        const out = await rawOutputs(models, prompt);
        const e = await encode(models, prompt, 1);
        expect(e.cond.dims).toEqual([1, TINY.seqLen, TINY.hidden]);
        expect(maxDiff(e.cond.data, out.last_hidden_state as Float32Array)).toBe(0);
      });

      it("clip_skip k ≥ 2 is final_layer_norm(hidden_states[-k]), computed independently", async () => {
        const out = await rawOutputs(models, prompt);
        for (const k of [2, 3, 4]) {
          const hidden = out[`hidden_states.${TINY.layers + 1 - k}`] as Float32Array;
          const want = referenceLayerNorm(hidden, weight, bias, v.eps);
          const got = (await encode(models, prompt, k)).cond.data;
          expect(maxDiff(got, want), `clip_skip ${k}`).toBeLessThan(v.tolerance);
          // Not the hidden state itself, nor a layer norm without the weights: the test can tell.
          expect(maxDiff(got, hidden)).toBeGreaterThan(0.05);
          const plain = referenceLayerNorm(
            hidden,
            new Float32Array(TINY.hidden).fill(1),
            new Float32Array(TINY.hidden),
            v.eps,
          );
          expect(maxDiff(got, plain)).toBeGreaterThan(0.05);
        }
      });
    });
  }

  it("epsilon matters at this scale (so reading it from the graph is tested)", async () => {
    const models = modelsFor(
      tinyModel({ finalLayerNorm: "decomposed", layerNormEpsilon: 1e-3, controlnets: ["canny"] }),
    );
    const { weight, bias } = tinyFinalLayerNorm(SEED, TINY.hidden);
    const out = await rawOutputs(models, "a cat");
    const hidden = out[`hidden_states.${TINY.layers - 1}`] as Float32Array;
    const got = (await encode(models, "a cat", 2)).cond.data;
    expect(maxDiff(got, referenceLayerNorm(hidden, weight, bias, 1e-5))).toBeGreaterThan(1e-4);
  });

  it("an export without hidden_states fails clip_skip > 1 with a clear, retryable error", async () => {
    const models = modelsFor(tinyModel({ hiddenStates: false, controlnets: ["canny"] }));
    expect((await encode(models, "a cat", 1)).cond.dims).toEqual([1, TINY.seqLen, TINY.hidden]);
    await expect(encode(models, "a cat", 2)).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringContaining("hidden_states"),
    });
  });

  it("clip_skip past the first layer is a resource error, not a silent clamp", async () => {
    const models = modelsFor(tinyModel({ controlnets: ["canny"] }));
    await expect(encode(models, "a cat", TINY.layers + 1)).resolves.toBeDefined(); // the embeddings
    await expect(encode(models, "a cat", TINY.layers + 2)).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringContaining("clip_skip"),
    });
  });
});

describe("ONNX file reading", () => {
  it("reads layer norm weights stored as external data, and skips large initializers without decoding them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "onnx-external-"));
    const D = 16;
    const g = new GraphBuilder(5);
    const x = g.input("x", "float", [1, 4, D]);
    const weight = Float32Array.from({ length: D }, (_, i) => 1 + i / 10);
    const bias = Float32Array.from({ length: D }, (_, i) => i / 100 - 0.05);
    const big = new Float32Array(400_000).map((_, i) => (i % 7) / 7); // 1.6 MB
    const bigName = g.floats([400_000 / D, D], big, "big_table");
    const summed = g.node("Add", [x, g.node("ReduceMean", [bigName], { axes: [0], keepdims: 1 })]);
    const w = g.externalFloats([D], weight, "text_model.final_layer_norm.weight", "model.onnx_data");
    const b = g.externalFloats([D], bias, "text_model.final_layer_norm.bias", "model.onnx_data");
    const ln = g.node("LayerNormalization", [summed, w, b], { axis: -1, epsilon: 2e-5 });
    g.alias(ln, "last_hidden_state");
    g.output("last_hidden_state", "float", [1, 4, D]);
    const path = join(dir, "model.onnx");
    writeFileSync(path, g.encode("external"));
    writeFileSync(join(dir, "model.onnx_data"), g.externalData());

    const summary = readGraphSummary(path);
    expect(summary.largeInitializers.has("big_table")).toBe(true);
    expect(summary.initializers.has("big_table")).toBe(false);
    const found = findFinalLayerNorm(path, "last_hidden_state", 1e-5);
    expect(found).toMatchObject({ found: "LayerNormalization node" });
    expect(Array.from(found?.weight ?? [])).toEqual(Array.from(weight));
    expect(Array.from(found?.bias ?? [])).toEqual(Array.from(bias));
    expect(found?.epsilon).toBeCloseTo(2e-5, 10);

    // ONNX Runtime agrees on the file (the external data is well formed).
    const session = await ort.InferenceSession.create(path);
    try {
      const input = new Float32Array(4 * D).map((_, i) => Math.sin(i));
      const out = await session.run({ x: new ort.Tensor("float32", input, [1, 4, D]) });
      expect(out.last_hidden_state?.dims).toEqual([1, 4, D]);
    } finally {
      await session.release();
    }
  });

  it("decodes float, float16 (raw and int32_data), bfloat16 and double tensors", () => {
    const values = [0.5, -1.25, 3];
    const f32 = new Float32Array(values);
    const half = floatToHalf(f32);
    const bf16 = Uint16Array.from(new Uint32Array(f32.buffer), (u) => u >>> 16);
    const f64 = new Float64Array(values);
    const t = (props: Record<string, unknown>) =>
      onnx.TensorProto.decode(
        onnx.TensorProto.encode(onnx.TensorProto.create({ name: "t", dims: [3], ...props })).finish(),
      );
    const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    for (const tensor of [
      t({ dataType: 1, rawData: bytes(f32) }),
      t({ dataType: 1, floatData: values }),
      t({ dataType: 10, rawData: bytes(half) }),
      t({ dataType: 10, int32Data: Array.from(half) }),
      t({ dataType: 16, rawData: bytes(bf16) }),
      t({ dataType: 11, rawData: bytes(f64) }),
      t({ dataType: 11, doubleData: values }),
    ]) {
      expect(Array.from(tensorFloats(tensor, "/nowhere/model.onnx"))).toEqual(values);
    }
  });
});
