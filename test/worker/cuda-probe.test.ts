/**
 * How the worker and `npm run worker:check-cuda` tell that CUDA really runs a model: the node placement
 * in ONNX Runtime's session profile. Here (no CUDA build of the provider) a CPU run is what a silent
 * fallback looks like, and it must count as failure.
 */
import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import {
  cudaPlacementProblem,
  placementOf,
  probeModel,
  profiledRun,
  verifyCuda,
} from "../../worker/src/pipeline/cuda-probe.ts";
import { CudaUnavailableError } from "../../worker/src/pipeline/session.ts";

const input = () => ({
  x: new ort.Tensor("float32", new Float32Array(8 * 32 * 32).fill(0.5), [1, 8, 32, 32]),
});

describe("execution provider placement from the session profile", () => {
  it("reads every node run's provider from a real profile; a CPU run is a CUDA failure", async () => {
    const { outputs, placement } = await profiledRun(probeModel(), { executionProviders: ["cpu"] }, input);
    expect(outputs.y?.dims).toEqual([1, 8, 32, 32]);
    expect(placement.nodes).toBeGreaterThanOrEqual(3);
    expect(Object.keys(placement.byProvider)).toEqual(["CPUExecutionProvider"]);
    expect(placement.computeOffCuda.Conv).toBe(2);
    expect(cudaPlacementProblem(placement)).toMatch(/^no node ran on CUDA/);
  });

  it("accepts CUDA doing the compute and refuses compute ops left on the CPU", () => {
    const node = (op: string, provider: string) => ({ cat: "Node", args: { op_name: op, provider } });
    const onGpu = placementOf([
      { cat: "Session", name: "model_run" },
      node("Conv", "CUDAExecutionProvider"),
      node("MatMul", "CUDAExecutionProvider"),
      // Shape arithmetic on the CPU is normal for the CUDA provider.
      node("Shape", "CPUExecutionProvider"),
    ]);
    expect(cudaPlacementProblem(onGpu)).toBeNull();
    const split = placementOf([
      node("Conv", "CUDAExecutionProvider"),
      node("MatMul", "CPUExecutionProvider"),
    ]);
    expect(cudaPlacementProblem(split)).toBe("compute ops ran on the CPU: MatMul×1");
    expect(cudaPlacementProblem(placementOf([]))).toBe("the profile shows no node runs");
    expect(() => placementOf({})).toThrow(/not an ONNX Runtime profile/);
  });

  it("verifyCuda fails here, naming why, with the error a CUDA-only worker reports", async () => {
    const error = await verifyCuda().catch((e: unknown) => e);
    if (!(error instanceof Error)) return; // a GPU machine with the CUDA provider: verified
    expect(error).toBeInstanceOf(CudaUnavailableError);
    expect(error.message).toMatch(/^CUDA execution provider unavailable \(EXECUTION_PROVIDER=cuda\): .+/);
  });
});
