/**
 * A very small ONNX graph builder on top of the protobuf definitions in `onnx-proto`. Enough to write
 * the tiny random-weight models the tests and the benchmark run (see tiny.ts); not a general tool.
 */
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

export const ELEM = {
  float: 1,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
} as const;
export type ElemName = keyof typeof ELEM;

export type Dim = number | string;

type AttrValue = number | number[] | string | { floats: number[] };

/** A seeded PRNG (mulberry32), so a built model is the same bytes every time. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function valueInfo(name: string, elem: ElemName, shape: readonly Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: ELEM[elem],
        shape: onnx.TensorShapeProto.create({
          dim: shape.map((d) =>
            typeof d === "number"
              ? onnx.TensorShapeProto.Dimension.create({ dimValue: d })
              : onnx.TensorShapeProto.Dimension.create({ dimParam: d }),
          ),
        }),
      }),
    }),
  });
}

function attribute(name: string, value: AttrValue) {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof value === "number") {
    return Number.isInteger(value)
      ? onnx.AttributeProto.create({ name, type: A.INT, i: value })
      : onnx.AttributeProto.create({ name, type: A.FLOAT, f: value });
  }
  if (typeof value === "string") {
    return onnx.AttributeProto.create({ name, type: A.STRING, s: new TextEncoder().encode(value) });
  }
  if (Array.isArray(value)) return onnx.AttributeProto.create({ name, type: A.INTS, ints: value });
  return onnx.AttributeProto.create({ name, type: A.FLOATS, floats: value.floats });
}

export class GraphBuilder {
  private readonly nodes: ReturnType<typeof onnx.NodeProto.create>[] = [];
  private readonly initializers: ReturnType<typeof onnx.TensorProto.create>[] = [];
  private readonly inputs: ReturnType<typeof onnx.ValueInfoProto.create>[] = [];
  private readonly outputs: ReturnType<typeof onnx.ValueInfoProto.create>[] = [];
  private counter = 0;
  private rng: () => number;
  private readonly external: Uint8Array[] = [];
  private externalLength = 0;

  constructor(seed: number) {
    this.rng = mulberry32(seed);
  }

  /**
   * Restarts the weight stream at `seed`: a sub-model built after this draws the same weights as when
   * it is built alone in a builder of that seed (the fused UNet+ControlNets graph reuses the split ones').
   */
  reseed(seed: number): void {
    this.rng = mulberry32(seed);
  }

  input(name: string, elem: ElemName, shape: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, elem, shape));
    return name;
  }

  output(name: string, elem: ElemName, shape: readonly Dim[]): void {
    this.outputs.push(valueInfo(name, elem, shape));
  }

  private fresh(prefix: string): string {
    this.counter += 1;
    return `${prefix}_${this.counter}`;
  }

  /** A float32 initializer. */
  floats(dims: readonly number[], data: Float32Array | readonly number[], name?: string): string {
    const id = name ?? this.fresh("w");
    const values = data instanceof Float32Array ? data : Float32Array.from(data);
    this.initializers.push(
      onnx.TensorProto.create({
        name: id,
        dims: [...dims],
        dataType: ELEM.float,
        rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
      }),
    );
    return id;
  }

  /**
   * A float32 initializer stored as external data (as exports over 2 GB store every weight): its bytes
   * go to `externalData()`, to be written next to the model as `location`.
   */
  externalFloats(dims: readonly number[], data: Float32Array, name: string, location: string): string {
    const bytes = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dims: [...dims],
        dataType: ELEM.float,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          onnx.StringStringEntryProto.create({ key: "location", value: location }),
          onnx.StringStringEntryProto.create({ key: "offset", value: String(this.externalLength) }),
          onnx.StringStringEntryProto.create({ key: "length", value: String(bytes.length) }),
        ],
      }),
    );
    this.external.push(bytes);
    this.externalLength += bytes.length;
    return name;
  }

  /** The bytes of every externalFloats initializer, in order (the external data file). */
  externalData(): Uint8Array {
    const out = new Uint8Array(this.externalLength);
    let offset = 0;
    for (const b of this.external) {
      out.set(b, offset);
      offset += b.length;
    }
    return out;
  }

  /** An int64 initializer: a vector, or a scalar with `scalar` (a Gather index that drops the axis). */
  int64s(values: readonly number[], name?: string, scalar = false): string {
    const id = name ?? this.fresh("i");
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push(
      onnx.TensorProto.create({
        name: id,
        dims: scalar ? [] : [values.length],
        dataType: ELEM.int64,
        rawData: new Uint8Array(data.buffer),
      }),
    );
    return id;
  }

  /** Random weights, uniform in ±scale. */
  random(dims: readonly number[], scale: number): string {
    const size = dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    for (let i = 0; i < size; i++) data[i] = (this.rng() * 2 - 1) * scale;
    return this.floats(dims, data);
  }

  scalar(value: number): string {
    return this.floats([], [value]);
  }

  node(
    op: string,
    inputs: readonly string[],
    attrs: Record<string, AttrValue> = {},
    outputs?: string[],
  ): string {
    const outs = outputs ?? [this.fresh(op.toLowerCase())];
    this.nodes.push(
      onnx.NodeProto.create({
        opType: op,
        input: [...inputs],
        output: outs,
        name: this.fresh(`n_${op}`),
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    return outs[0] as string;
  }

  /** Renames `value` to `name` (an Identity node), for graph outputs. */
  alias(value: string, name: string): string {
    return this.node("Identity", [value], {}, [name]);
  }

  conv1x1(x: string, inChannels: number, outChannels: number, scale = 0.3): string {
    const w = this.random([outChannels, inChannels, 1, 1], scale / Math.sqrt(inChannels));
    const b = this.random([outChannels], 0.05);
    return this.node("Conv", [x, w, b]);
  }

  encode(name: string, opset = 17): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: "controlnet-worker-tiny",
      opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: opset })],
      graph: onnx.GraphProto.create({
        name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
