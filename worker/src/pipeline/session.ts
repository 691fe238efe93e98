/**
 * ONNX Runtime sessions with their IO read from the loaded model (names, dtypes, shapes), the execution
 * provider choice with a CPU fallback, and float16 conversion. Nothing about a model's IO is assumed:
 * exporters differ in dtypes (fp16/fp32, int32/int64 ids, float/int64 timestep) and in names.
 */
import { join } from "node:path";
import ort from "onnxruntime-node";
import { JobError } from "../errors.ts";

let profileCounter = 0;

export type ExecutionProvider = "auto" | "cuda" | "cpu";
export type Logger = (
  level: "info" | "warn" | "error",
  message: string,
  fields?: Record<string, unknown>,
) => void;

export interface IoSpec {
  name: string;
  /** ORT tensor type: "float32", "float16", "int32", "int64", ... */
  type: string;
  /** Dimensions: numbers for fixed, strings for symbolic; [] for a scalar (or unknown shape). */
  shape: ReadonlyArray<number | string>;
}

export interface LoadedSession {
  session: ort.InferenceSession;
  path: string;
  provider: "cuda" | "cpu";
  inputs: IoSpec[];
  outputs: IoSpec[];
  input(name: string): IoSpec | undefined;
}

function specs(metadata: readonly ort.InferenceSession.ValueMetadata[]): IoSpec[] {
  return metadata.map((m) =>
    m.isTensor
      ? { name: m.name, type: m.type, shape: m.shape }
      : { name: m.name, type: "unknown", shape: [] },
  );
}

/**
 * `cuda` was asked for and ONNX Runtime cannot give it (no GPU, no CUDA build of the provider, missing
 * CUDA/cuDNN libraries). A resource error: a job that meets it is run elsewhere, and the worker reports
 * itself unhealthy rather than serve at CPU speed.
 */
export class CudaUnavailableError extends JobError {
  constructor(detail: string, options?: { cause?: unknown }) {
    super("resource", `CUDA execution provider unavailable (EXECUTION_PROVIDER=cuda): ${detail}`, options);
    this.name = "CudaUnavailableError";
  }
}

/**
 * Chooses providers once. `cpu`: the CPU only. `cuda`: CUDA or nothing — a session CUDA cannot be
 * created for fails with CudaUnavailableError (and `failure` says why), never a quiet CPU session.
 * `auto`: the first session tries CUDA; if CUDA cannot be initialised it logs a warning and every
 * session runs on the CPU from then on (for development machines; the ECS task asks for `cuda`).
 */
export class SessionFactory {
  private cudaFailed = false;
  private cudaFailure: string | null = null;
  private readonly profiled: ort.InferenceSession[] = [];
  /** Called once, when CUDA (asked for strictly) fails a session: the worker stops taking jobs. */
  onFailure: ((reason: string) => void) | null = null;

  /**
   * `profileDir`: every session records an ONNX Runtime profile (one file per session in that folder,
   * written by endProfiling()) — for `npm run worker:check-cuda`, which reads where nodes ran.
   */
  constructor(
    private readonly requested: ExecutionProvider,
    private readonly log: Logger,
    private readonly threads?: number,
    private readonly profileDir?: string,
  ) {}

  /** Writes the profile of every session loaded so far (with `profileDir`). */
  endProfiling(): void {
    for (const session of this.profiled.splice(0)) session.endProfiling();
  }

  get activeProvider(): "cuda" | "cpu" {
    return this.requested === "cpu" || this.cudaFailed ? "cpu" : "cuda";
  }

  get requestedProvider(): ExecutionProvider {
    return this.requested;
  }

  /** Why CUDA, asked for strictly, could not be had; null while it works (or was not asked for). */
  get failure(): string | null {
    return this.cudaFailure;
  }

  async load(path: string): Promise<LoadedSession> {
    const base: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: "all",
      logSeverityLevel: 3,
      ...(this.threads ? { intraOpNumThreads: this.threads, interOpNumThreads: 1 } : {}),
      ...(this.profileDir
        ? {
            enableProfiling: true,
            profileFilePrefix: join(this.profileDir, `session-${this.profiled.length}-${profileCounter++}`),
          }
        : {}),
    };
    let session: ort.InferenceSession | null = null;
    let provider: "cuda" | "cpu" = "cpu";
    if (this.activeProvider === "cuda") {
      try {
        session = await ort.InferenceSession.create(path, {
          ...base,
          executionProviders: [{ name: "cuda", deviceId: 0 }, "cpu"],
        });
        provider = "cuda";
      } catch (error) {
        if (!isProviderError(error)) throw error;
        const detail = error instanceof Error ? error.message : String(error);
        if (this.requested === "cuda") {
          const failure = new CudaUnavailableError(detail, { cause: error });
          if (this.cudaFailure === null) {
            this.cudaFailure = failure.message;
            this.onFailure?.(failure.message);
          }
          throw failure;
        }
        this.cudaFailed = true;
        this.log("warn", "CUDA execution provider unavailable; falling back to the CPU", {
          requested: this.requested,
          error: detail,
        });
      }
    }
    session ??= await ort.InferenceSession.create(path, { ...base, executionProviders: ["cpu"] });
    if (this.profileDir) this.profiled.push(session);
    const inputs = specs(session.inputMetadata);
    const outputs = specs(session.outputMetadata);
    return {
      session,
      path,
      provider,
      inputs,
      outputs,
      input: (name) => inputs.find((i) => i.name === name),
    };
  }
}

function isProviderError(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /cuda|provider|shared librar|libcu|cudnn/i.test(message);
}

// ---- float16 ----------------------------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function toHalf(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  e = half >>> 10;
  return sign | (e >= 0x1f ? 0x7c00 : half);
}

let halfTable: Float32Array | null = null;
function table(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 0x1f) t[h] = mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  halfTable = t;
  return t;
}

export function floatToHalf(data: Float32Array): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = toHalf(data[i] as number);
  return out;
}

export function halfToFloat(data: Uint16Array): Float32Array {
  const t = table();
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = t[data[i] as number] as number;
  return out;
}

// ---- tensors ----------------------------------------------------------------------------------

/** A float tensor in the dtype the input wants (float32 or float16). */
export function floatTensor(spec: IoSpec, data: Float32Array, dims: readonly number[]): ort.Tensor {
  if (spec.type === "float16") return new ort.Tensor("float16", floatToHalf(data), dims);
  if (spec.type === "float32") return new ort.Tensor("float32", data, dims);
  throw new Error(`input ${spec.name} has type ${spec.type}, expected a float tensor`);
}

/** Any ORT float tensor's data as float32 (a view, not a copy, when it already is). */
export function readFloats(tensor: ort.Tensor): Float32Array {
  if (tensor.type === "float32") return tensor.data as Float32Array;
  if (tensor.type === "float16") {
    const data = tensor.data as unknown;
    if (data instanceof Uint16Array) return halfToFloat(data);
    return Float32Array.from(data as ArrayLike<number>);
  }
  throw new Error(`expected a float tensor, got ${tensor.type}`);
}

/** Integer ids as the input's dtype (int32 or int64). */
export function idsTensor(spec: IoSpec, ids: readonly number[], dims: readonly number[]): ort.Tensor {
  if (spec.type === "int32") return new ort.Tensor("int32", Int32Array.from(ids), dims);
  if (spec.type === "int64")
    return new ort.Tensor(
      "int64",
      BigInt64Array.from(ids, (v) => BigInt(v)),
      dims,
    );
  throw new Error(`input ${spec.name} has type ${spec.type}, expected int32 or int64 ids`);
}

/**
 * The timestep as the model wants it: float (32/16) or int64; a scalar, [1], or one per batch item,
 * according to the input's declared shape.
 */
export function timestepTensor(spec: IoSpec, t: number, batch: number): ort.Tensor {
  const dims: number[] = spec.shape.length === 0 ? [] : spec.shape[0] === 1 ? [1] : [batch];
  const n = dims.length === 0 ? 1 : (dims[0] as number);
  if (spec.type === "int64")
    return new ort.Tensor("int64", new BigInt64Array(n).fill(BigInt(Math.round(t))), dims);
  if (spec.type === "int32") return new ort.Tensor("int32", new Int32Array(n).fill(Math.round(t)), dims);
  return floatTensor(spec, new Float32Array(n).fill(t), dims);
}

/** Trailing integer in a name ("down_block_res_sample_10" → 10), or null. */
export function indexOf(name: string): number | null {
  const m = /(\d+)(?!.*\d)/.exec(name);
  return m ? Number(m[1]) : null;
}

/** Sorts names by their trailing index when all have one; otherwise keeps the session's order. */
export function sortByIndex<T extends { name: string }>(items: readonly T[]): T[] {
  if (items.every((i) => indexOf(i.name) !== null)) {
    return [...items].sort((a, b) => (indexOf(a.name) as number) - (indexOf(b.name) as number));
  }
  return [...items];
}
