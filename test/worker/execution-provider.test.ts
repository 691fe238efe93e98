import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { CudaUnavailableError, SessionFactory } from "../../worker/src/pipeline/session.ts";
import { captureLog, tinyModel } from "./support.ts";

/** Whether this machine's ONNX Runtime has the CUDA provider's library (a GPU image); never here or in CI. */
const hasCuda = await ort.InferenceSession.create(`${tinyModel()}/vae_decoder/model.onnx`, {
  executionProviders: [{ name: "cuda", deviceId: 0 }],
  logSeverityLevel: 4,
}).then(
  async (s) => {
    await s.release();
    return true;
  },
  () => false,
);

describe("execution provider", () => {
  it("auto falls back to the CPU with a logged warning when CUDA cannot be initialised", async () => {
    const { log, lines } = captureLog();
    const factory = new SessionFactory("auto", log);
    const s = await factory.load(`${tinyModel()}/vae_decoder/model.onnx`);
    // This machine (and CI) has no CUDA build of ONNX Runtime: the session must still work on the CPU.
    if (s.provider === "cuda") return; // a GPU machine: nothing to fall back from
    expect(s.provider).toBe("cpu");
    expect(factory.activeProvider).toBe("cpu");
    expect(factory.failure).toBeNull();
    const warnings = lines.filter((l) => l.level === "warn");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toMatch(/CUDA.*falling back to the CPU/);
    expect(String(warnings[0]?.fields.error)).not.toBe("");
    // Later sessions go straight to the CPU without another warning.
    await factory.load(`${tinyModel()}/vae_encoder/model.onnx`);
    expect(lines.filter((l) => l.level === "warn")).toHaveLength(1);
    await s.session.release();
  });

  it("cuda that cannot be initialised fails the session, naming why, and never runs it on the CPU", async () => {
    const { log, lines } = captureLog();
    const factory = new SessionFactory("cuda", log);
    const reported: string[] = [];
    factory.onFailure = (reason) => reported.push(reason);
    const load = factory.load(`${tinyModel()}/vae_decoder/model.onnx`);
    if (hasCuda) return void (await (await load).session.release()); // a GPU machine
    const error = await load.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CudaUnavailableError);
    expect((error as CudaUnavailableError).kind).toBe("resource");
    expect((error as Error).message).toMatch(
      /^CUDA execution provider unavailable \(EXECUTION_PROVIDER=cuda\): .+/,
    );
    expect(factory.failure).toBe((error as Error).message);
    expect(lines.filter((l) => l.level === "warn")).toHaveLength(0);
    // Every later session fails the same way; the failure is reported once (the worker stops taking jobs).
    await expect(factory.load(`${tinyModel()}/vae_encoder/model.onnx`)).rejects.toThrow(CudaUnavailableError);
    expect(reported).toEqual([factory.failure]);
  });

  it("cpu asks for nothing else and logs nothing", async () => {
    const { log, lines } = captureLog();
    const s = await new SessionFactory("cpu", log).load(`${tinyModel()}/vae_decoder/model.onnx`);
    expect(s.provider).toBe("cpu");
    expect(lines).toHaveLength(0);
    await s.session.release();
  });
});
