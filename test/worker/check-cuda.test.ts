/**
 * `npm run worker:check-cuda`: here (no GPU, a CPU-only ONNX Runtime) it must fail, saying CUDA is not
 * available; its parts (the profiled placement, the timed runs, the parity measure) are checked on the
 * CPU, where they can be.
 */
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  checkParams,
  compareImages,
  median,
  PARITY_TOLERANCE,
  pipelinePlacement,
  timedRun,
} from "../../worker/src/check-cuda.ts";
import { cudaPlacementProblem } from "../../worker/src/pipeline/cuda-probe.ts";
import { SessionFactory } from "../../worker/src/pipeline/session.ts";
import { captureLog, testSchedulers, tinyModel } from "./support.ts";

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "worker/src/check-cuda.ts", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("worker:check-cuda", () => {
  it("exits non-zero with a clear 'CUDA not available' where there is no CUDA", async () => {
    const { code, stdout, stderr } = await run([]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^FAIL: CUDA not available: .+/m);
    expect(stderr).toMatch(/nvidia-smi/);
    expect(stdout).not.toMatch(/PASS/);
  });

  it("refuses bad arguments with exit 2", async () => {
    for (const size of ["100", "72"]) {
      const { code, stderr } = await run(["--size", size]);
      expect(code).toBe(2);
      expect(stderr).toMatch(/--size must be a multiple of 64/);
    }
  });

  it("reads the whole pipeline's node placement from its sessions' profiles (a CPU run is not CUDA)", async () => {
    const dir = tinyModel({ controlnets: ["canny"] });
    const placement = await pipelinePlacement(
      dir,
      testSchedulers,
      checkParams(64, 2),
      captureLog().log,
      "cpu",
    );
    expect(Object.keys(placement.byProvider)).toEqual(["CPUExecutionProvider"]);
    // Text encoder, ControlNet, UNet and VAE: convolutions and matrix products by the dozen.
    expect(placement.computeOffCuda.Conv).toBeGreaterThan(5);
    expect(cudaPlacementProblem(placement)).toMatch(/^no node ran on CUDA/);
  });

  it("times the steps of a run and measures parity: the same provider twice is identical", async () => {
    const dir = tinyModel({ controlnets: ["canny"] });
    const params = checkParams(64, 3);
    const a = await timedRun(new SessionFactory("cpu", captureLog().log, 1), dir, testSchedulers, params);
    const b = await timedRun(new SessionFactory("cpu", captureLog().log, 1), dir, testSchedulers, params);
    expect(a.stepMs).toHaveLength(3);
    expect(a.stepMs.every((ms) => ms > 0)).toBe(true);
    expect(a.images[0]?.length).toBe(64 * 64 * 3);
    expect(compareImages(a.images, b.images)).toEqual({
      values: 64 * 64 * 3,
      meanLevels: 0,
      maxLevels: 0,
      withinTolerance: true,
    });
  });

  it("fails parity beyond the stated tolerance, on the mean or on one value", () => {
    const base = new Uint8Array(1000).fill(100);
    const spike = base.slice();
    spike[7] = 100 + PARITY_TOLERANCE.maxLevels + 1;
    expect(compareImages([base], [spike])).toMatchObject({ maxLevels: 17, withinTolerance: false });
    const drift = base.map((v) => v + 2);
    expect(compareImages([base], [drift])).toMatchObject({ meanLevels: 2, withinTolerance: false });
    const close = base.map((v, i) => (i % 2 ? v + 1 : v));
    expect(compareImages([base], [close])).toMatchObject({ meanLevels: 0.5, withinTolerance: true });
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });
});
