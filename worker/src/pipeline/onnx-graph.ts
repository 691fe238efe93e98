/**
 * Reads what the pipeline needs from inside an ONNX file that a session does not expose: today the
 * text encoder's final layer norm (weight, bias, epsilon), which diffusers applies to the skipped-to
 * hidden state for `clip_skip`.
 *
 * The file is walked field by field from disk (`onnx-proto` decodes only the nodes and the small
 * initializers), so a 500 MB text encoder is never held in memory twice; weights stored as external
 * data (`model.onnx_data`, for exports over 2 GB) are read from their file at their offset.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { dirname, join } from "node:path";
import onnxProto from "onnx-proto";
import { halfToFloat } from "./session.ts";

const { onnx } = onnxProto;
type Node = ReturnType<typeof onnx.NodeProto.decode>;
type Tensor = ReturnType<typeof onnx.TensorProto.decode>;

/** Initializers bigger than this are skipped (names kept): a layer norm's are a few KB. */
const SMALL_TENSOR_BYTES = 1 << 20;

export interface OnnxGraphSummary {
  nodes: Node[];
  /** Small initializers, decoded. */
  initializers: Map<string, Tensor>;
  /** Names of the initializers too big to decode. */
  largeInitializers: Set<string>;
}

/** A positional reader over a file descriptor, with a small read-ahead window. */
class FileReader {
  private window = Buffer.alloc(0);
  private windowStart = 0;

  constructor(
    private readonly fd: number,
    public pos: number,
  ) {}

  private byte(): number {
    const offset = this.pos - this.windowStart;
    if (offset < 0 || offset >= this.window.length) {
      this.window = Buffer.alloc(64 * 1024);
      const n = readSync(this.fd, this.window, 0, this.window.length, this.pos);
      if (n === 0) throw new Error("unexpected end of ONNX file");
      this.window = this.window.subarray(0, n);
      this.windowStart = this.pos;
    }
    this.pos += 1;
    return this.window[this.pos - 1 - this.windowStart] as number;
  }

  varint(): number {
    let result = 0;
    let shift = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      result += (b & 0x7f) * shift;
      if ((b & 0x80) === 0) return result;
      shift *= 128;
    }
    throw new Error("bad varint in ONNX file");
  }

  bytes(length: number): Buffer {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, out, done, length - done, this.pos + done);
      if (n === 0) throw new Error("unexpected end of ONNX file");
      done += n;
    }
    this.pos += length;
    return out;
  }

  /** Skips a field's value of the given wire type. */
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) {
      const length = this.varint(); // read before `pos` is: `pos += varint()` would add to the old pos
      this.pos += length;
    } else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported protobuf wire type ${wire} in ONNX file`);
  }
}

/** The name of a TensorProto from its encoded fields, without reading its data. */
function tensorName(r: FileReader, end: number): string {
  let name = "";
  while (r.pos < end) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 8 && wire === 2) name = r.bytes(r.varint()).toString("utf8");
    else r.skip(wire);
  }
  r.pos = end;
  return name;
}

/** Nodes and small initializers of the model's main graph. */
export function readGraphSummary(path: string): OnnxGraphSummary {
  const fd = openSync(path, "r");
  try {
    const summary: OnnxGraphSummary = { nodes: [], initializers: new Map(), largeInitializers: new Set() };
    const r = new FileReader(fd, 0);
    // ModelProto: field 7 is the graph; nothing else is read.
    for (;;) {
      let key: number;
      try {
        key = r.varint();
      } catch {
        return summary; // end of file: no graph
      }
      const field = Math.floor(key / 8);
      const wire = key & 7;
      if (field !== 7 || wire !== 2) {
        r.skip(wire);
        continue;
      }
      const graphEnd = r.varint() + r.pos;
      while (r.pos < graphEnd) {
        const k = r.varint();
        const f = Math.floor(k / 8);
        const w = k & 7;
        if (w !== 2) {
          r.skip(w);
          continue;
        }
        const length = r.varint();
        const end = r.pos + length;
        if (f === 1) summary.nodes.push(onnx.NodeProto.decode(r.bytes(length)));
        else if (f === 5 && length <= SMALL_TENSOR_BYTES) {
          const t = onnx.TensorProto.decode(r.bytes(length));
          summary.initializers.set(t.name, t);
        } else if (f === 5) summary.largeInitializers.add(tensorName(r, end));
        r.pos = end;
      }
      break;
    }
    return summary;
  } finally {
    closeSync(fd);
  }
}

const DataType = { FLOAT: 1, FLOAT16: 10, DOUBLE: 11, BFLOAT16: 16 } as const;

function externalBytes(t: Tensor, modelPath: string): Uint8Array {
  const entries = new Map((t.externalData ?? []).map((e) => [e.key, e.value]));
  const location = entries.get("location");
  if (!location) throw new Error(`tensor ${t.name} has external data without a location`);
  const offset = Number(entries.get("offset") ?? 0);
  const length = Number(entries.get("length") ?? Number.NaN);
  if (!Number.isFinite(length)) throw new Error(`tensor ${t.name} has external data without a length`);
  const fd = openSync(join(dirname(modelPath), location), "r");
  try {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n === 0) throw new Error(`external data of ${t.name} is truncated`);
      done += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** A float tensor's values as float32 (float, float16, bfloat16, double; raw, typed or external data). */
export function tensorFloats(t: Tensor, modelPath: string): Float32Array {
  const external = t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL;
  const raw = external ? externalBytes(t, modelPath) : t.rawData;
  const type = t.dataType;
  if (raw && raw.length > 0) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (type === DataType.FLOAT) {
      const out = new Float32Array(raw.byteLength / 4);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    if (type === DataType.DOUBLE) {
      const out = new Float32Array(raw.byteLength / 8);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    }
    if (type === DataType.FLOAT16 || type === DataType.BFLOAT16) {
      const bits = new Uint16Array(raw.byteLength / 2);
      for (let i = 0; i < bits.length; i++) bits[i] = view.getUint16(i * 2, true);
      if (type === DataType.FLOAT16) return halfToFloat(bits);
      const out = new Float32Array(bits.length);
      const u32 = new Uint32Array(out.buffer);
      for (let i = 0; i < bits.length; i++) u32[i] = (bits[i] as number) << 16;
      return out;
    }
  } else {
    if (type === DataType.FLOAT) return Float32Array.from(t.floatData ?? []);
    if (type === DataType.DOUBLE) return Float32Array.from(t.doubleData ?? []);
    // float16 / bfloat16 without raw data: the bits are in int32_data.
    if (type === DataType.FLOAT16) return halfToFloat(Uint16Array.from(t.int32Data ?? []));
    if (type === DataType.BFLOAT16) {
      const out = new Float32Array((t.int32Data ?? []).length);
      const u32 = new Uint32Array(out.buffer);
      (t.int32Data ?? []).forEach((v, i) => {
        u32[i] = (v & 0xffff) << 16;
      });
      return out;
    }
  }
  throw new Error(`tensor ${t.name} has data type ${type}, not a float type`);
}

export interface LayerNormParams {
  weight: Float32Array;
  bias: Float32Array;
  epsilon: number;
  /** How it was found, for messages: "LayerNormalization node", "decomposed layer norm", "initializer names". */
  found: string;
}

/** Values that pass through unchanged (so a weight behind a Cast is still a weight). */
const PASS_THROUGH = new Set(["Identity", "Cast"]);

class GraphIndex {
  readonly producer = new Map<string, Node>();

  constructor(
    readonly g: OnnxGraphSummary,
    readonly path: string,
  ) {
    for (const n of g.nodes) for (const o of n.output) this.producer.set(o, n);
  }

  /** The node producing `value`, looking through Identity/Cast. */
  source(value: string): Node | null {
    let n = this.producer.get(value) ?? null;
    for (let i = 0; n && PASS_THROUGH.has(n.opType) && i < 8; i++) {
      n = this.producer.get(n.input[0] ?? "") ?? null;
    }
    return n;
  }

  /** A constant (initializer or Constant node, through Identity/Cast) as floats; null if not constant. */
  constant(value: string): Float32Array | null {
    let name = value;
    for (let i = 0; i < 8; i++) {
      const init = this.g.initializers.get(name);
      if (init) return tensorFloats(init, this.path);
      const n = this.producer.get(name);
      if (!n) return null;
      if (n.opType === "Constant") {
        const attr = n.attribute.find((a) => a.name === "value" || a.name === "value_float");
        if (attr?.t) return tensorFloats(attr.t as Tensor, this.path);
        if (attr && typeof attr.f === "number" && attr.name === "value_float") return Float32Array.of(attr.f);
        return null;
      }
      if (!PASS_THROUGH.has(n.opType)) return null;
      name = n.input[0] ?? "";
    }
    return null;
  }
}

function floatAttr(n: Node, name: string): number | null {
  const a = n.attribute.find((x) => x.name === name);
  return a && typeof a.f === "number" ? a.f : null;
}

/** Splits a binary node's inputs into (constant of `dim` values, the other input). */
function constantOperand(
  ix: GraphIndex,
  n: Node,
  dim: number | null,
): { values: Float32Array; other: string } | null {
  for (const [c, o] of [
    [0, 1],
    [1, 0],
  ] as const) {
    const values = ix.constant(n.input[c] ?? "");
    if (values && (dim === null || values.length === dim) && values.length > 1)
      return { values, other: n.input[o] ?? "" };
  }
  return null;
}

/** Epsilon of a decomposed layer norm: the scalar added before Sqrt, searched upstream of `value`. */
function decomposedEpsilon(ix: GraphIndex, value: string): number | null {
  const queue = [value];
  const seen = new Set<string>();
  while (queue.length > 0 && seen.size < 24) {
    const v = queue.shift() as string;
    if (seen.has(v)) continue;
    seen.add(v);
    const n = ix.source(v);
    if (!n) continue;
    if (n.opType === "Sqrt") {
      const add = ix.source(n.input[0] ?? "");
      if (add?.opType === "Add") {
        for (const input of add.input) {
          const c = ix.constant(input);
          if (c && c.length === 1) return c[0] as number;
        }
      }
      continue;
    }
    if (n.opType === "Div" || n.opType === "Mul" || n.opType === "Reciprocal") queue.push(...n.input);
  }
  return null;
}

/**
 * The layer norm that produces the graph output `outputName` (CLIP's `final_layer_norm`, producing
 * `last_hidden_state`): a LayerNormalization node (opset 17, or ORT's fused contrib op), the
 * decomposition older opsets export (…Div → Mul(weight) → Add(bias)), or, failing both, initializers
 * named `*final_layer_norm.weight` / `.bias`. Epsilon comes from the graph, else `fallbackEpsilon`.
 * Null when none is found.
 */
export function findFinalLayerNorm(
  path: string,
  outputName: string,
  fallbackEpsilon: number,
  graph: OnnxGraphSummary = readGraphSummary(path),
): LayerNormParams | null {
  const ix = new GraphIndex(graph, path);
  const n = ix.source(outputName);
  if (n && (n.opType === "LayerNormalization" || n.opType === "SkipLayerNormalization")) {
    // SkipLayerNormalization: (input, skip, gamma, beta, bias); LayerNormalization: (X, scale, B).
    const skip = n.opType === "SkipLayerNormalization" ? 1 : 0;
    const weight = ix.constant(n.input[1 + skip] ?? "");
    if (weight) {
      const biasName = n.input[2 + skip];
      const bias = biasName ? ix.constant(biasName) : null;
      return {
        weight,
        bias: bias ?? new Float32Array(weight.length),
        epsilon: floatAttr(n, "epsilon") ?? 1e-5,
        found: `${n.opType} node`,
      };
    }
  }
  if (n && n.opType === "Add") {
    const b = constantOperand(ix, n, null);
    const mul = b ? ix.source(b.other) : null;
    const w = mul?.opType === "Mul" ? constantOperand(ix, mul, b?.values.length ?? null) : null;
    if (b && w) {
      return {
        weight: w.values,
        bias: b.values,
        epsilon: decomposedEpsilon(ix, w.other) ?? fallbackEpsilon,
        found: "decomposed layer norm",
      };
    }
  }
  const byName = (suffix: string) => {
    for (const [name, t] of graph.initializers) if (name.endsWith(suffix)) return tensorFloats(t, path);
    return null;
  };
  const weight = byName("final_layer_norm.weight");
  const bias = byName("final_layer_norm.bias");
  if (weight && bias && weight.length === bias.length) {
    const lnNode = graph.nodes.find(
      (x) => x.opType === "LayerNormalization" && x.input[1]?.endsWith("final_layer_norm.weight"),
    );
    return {
      weight,
      bias,
      epsilon: (lnNode && floatAttr(lnNode, "epsilon")) ?? fallbackEpsilon,
      found: "initializer names",
    };
  }
  return null;
}

/** In-place layer norm over the last dimension: (x - mean) / sqrt(var + eps) * weight + bias. */
export function applyLayerNorm(
  data: Float32Array,
  p: Pick<LayerNormParams, "weight" | "bias" | "epsilon">,
): void {
  const dim = p.weight.length;
  if (data.length % dim !== 0)
    throw new Error(`layer norm over ${dim} values does not divide a tensor of ${data.length}`);
  for (let o = 0; o < data.length; o += dim) {
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += data[o + i] as number;
    mean /= dim;
    let variance = 0;
    for (let i = 0; i < dim; i++) variance += ((data[o + i] as number) - mean) ** 2;
    const inv = 1 / Math.sqrt(variance / dim + p.epsilon);
    for (let i = 0; i < dim; i++)
      data[o + i] = ((data[o + i] as number) - mean) * inv * (p.weight[i] as number) + (p.bias[i] as number);
  }
}
