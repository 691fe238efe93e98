/**
 * Where ONNX Runtime really ran a model's nodes. onnxruntime-node has no call that names the providers
 * a session uses (the Python API's get_providers()), and a provider list of ["cuda", "cpu"] lets ORT put
 * any node it likes on the CPU. Session profiling does say it: every node's event in the profile (a
 * Chrome-trace JSON file written by endProfiling()) carries `args.provider`, e.g. "CUDAExecutionProvider".
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { GraphBuilder } from "../models/onnx-builder.ts";
import { CudaUnavailableError } from "./session.ts";

/** Ops that carry a diffusion model's arithmetic: one of these on the CPU means the GPU is not doing the work. */
export const COMPUTE_OPS = new Set([
  "Conv",
  "ConvTranspose",
  "FusedConv",
  "NhwcConv",
  "MatMul",
  "FusedMatMul",
  "Gemm",
  "Attention",
  "MultiHeadAttention",
  "GroupNorm",
  "InstanceNormalization",
  "LayerNormalization",
  "SkipLayerNormalization",
  "Softmax",
]);

export interface Placement {
  /** Node runs seen in the profile. */
  nodes: number;
  /** Node runs per execution provider. */
  byProvider: Record<string, number>;
  /** Compute ops (COMPUTE_OPS) that ran on another provider than CUDA, with their count. */
  computeOffCuda: Record<string, number>;
}

interface ProfileEvent {
  cat?: string;
  args?: { op_name?: string; provider?: string };
}

/** Reads the node placement out of an ORT profile (the array of trace events). */
export function placementOf(profile: unknown): Placement {
  if (!Array.isArray(profile)) throw new Error("not an ONNX Runtime profile (expected an array of events)");
  const placement: Placement = { nodes: 0, byProvider: {}, computeOffCuda: {} };
  for (const event of profile as ProfileEvent[]) {
    const provider = event?.args?.provider;
    const op = event?.args?.op_name;
    if (event?.cat !== "Node" || typeof provider !== "string" || typeof op !== "string") continue;
    placement.nodes++;
    placement.byProvider[provider] = (placement.byProvider[provider] ?? 0) + 1;
    if (provider !== "CUDAExecutionProvider" && COMPUTE_OPS.has(op)) {
      placement.computeOffCuda[op] = (placement.computeOffCuda[op] ?? 0) + 1;
    }
  }
  return placement;
}

/** Null when the placement shows CUDA doing the work; else what is wrong with it. */
export function cudaPlacementProblem(placement: Placement): string | null {
  if (placement.nodes === 0) return "the profile shows no node runs";
  if (!placement.byProvider.CUDAExecutionProvider) {
    return `no node ran on CUDA (providers used: ${JSON.stringify(placement.byProvider)})`;
  }
  const off = Object.entries(placement.computeOffCuda);
  if (off.length > 0) {
    return `compute ops ran on the CPU: ${off.map(([op, n]) => `${op}×${n}`).join(", ")}`;
  }
  return null;
}

/**
 * Creates a session with profiling on, runs `feeds` once through it, and returns the outputs and the
 * placement the profile shows. The profile file lives in a temporary folder, removed after.
 */
export async function profiledRun(
  model: string | Uint8Array,
  options: ort.InferenceSession.SessionOptions,
  feeds: (session: ort.InferenceSession) => Record<string, ort.Tensor>,
): Promise<{ outputs: ort.InferenceSession.ReturnType; placement: Placement }> {
  const dir = mkdtempSync(join(tmpdir(), "ort-profile-"));
  let session: ort.InferenceSession | null = null;
  try {
    const sessionOptions = { ...options, enableProfiling: true, profileFilePrefix: join(dir, "profile") };
    session =
      typeof model === "string"
        ? await ort.InferenceSession.create(model, sessionOptions)
        : await ort.InferenceSession.create(model, sessionOptions);
    const outputs = await session.run(feeds(session));
    session.endProfiling();
    const file = readdirSync(dir).find((name) => name.endsWith(".json"));
    if (!file) throw new Error("ONNX Runtime wrote no profile");
    return { outputs, placement: placementOf(JSON.parse(readFileSync(join(dir, file), "utf8"))) };
  } finally {
    await session?.release();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A small convolutional graph (Conv → Relu → Conv), the op a UNet spends its time in. */
export function probeModel(): Uint8Array {
  const g = new GraphBuilder(11);
  const x = g.input("x", "float", [1, 8, 32, 32]);
  const y = g.conv1x1(g.node("Relu", [g.conv1x1(x, 8, 16)]), 16, 8);
  g.alias(y, "y");
  g.output("y", "float", [1, 8, 32, 32]);
  return g.encode("cuda_probe");
}

/**
 * Proves the CUDA execution provider really runs compute ops on this machine: a session on
 * ["cuda", "cpu"] over the probe model, run once with profiling. Throws CudaUnavailableError naming
 * the cause (the provider cannot be created, or the profile shows the work on the CPU).
 */
export async function verifyCuda(deviceId = 0): Promise<Placement> {
  const input = new Float32Array(8 * 32 * 32).map((_, i) => Math.sin(i));
  let result: { placement: Placement };
  try {
    result = await profiledRun(
      probeModel(),
      { executionProviders: [{ name: "cuda", deviceId }, "cpu"], logSeverityLevel: 3 },
      () => ({ x: new ort.Tensor("float32", input, [1, 8, 32, 32]) }),
    );
  } catch (error) {
    throw new CudaUnavailableError(error instanceof Error ? error.message : String(error), { cause: error });
  }
  const problem = cudaPlacementProblem(result.placement);
  if (problem) throw new CudaUnavailableError(`the session was created, but ${problem}`);
  return result.placement;
}
