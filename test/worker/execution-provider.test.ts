import { describe, expect, it } from "vitest";
import { SessionFactory } from "../../worker/src/pipeline/session.ts";
import { captureLog, tinyModel } from "./support.ts";

describe("execution provider", () => {
  it("falls back to the CPU with a logged warning when CUDA cannot be initialised", async () => {
    const { log, lines } = captureLog();
    const factory = new SessionFactory("cuda", log);
    const s = await factory.load(`${tinyModel()}/vae_decoder/model.onnx`);
    // This machine (and CI) has no CUDA build of ONNX Runtime: the session must still work on the CPU.
    if (s.provider === "cuda") return; // a GPU machine: nothing to fall back from
    expect(s.provider).toBe("cpu");
    expect(factory.activeProvider).toBe("cpu");
    const warnings = lines.filter((l) => l.level === "warn");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toMatch(/CUDA.*falling back to the CPU/);
    expect(String(warnings[0]?.fields.error)).not.toBe("");
    // Later sessions go straight to the CPU without another warning.
    await factory.load(`${tinyModel()}/vae_encoder/model.onnx`);
    expect(lines.filter((l) => l.level === "warn")).toHaveLength(1);
    await s.session.release();
  });

  it("cpu asks for nothing else and logs nothing", async () => {
    const { log, lines } = captureLog();
    const s = await new SessionFactory("cpu", log).load(`${tinyModel()}/vae_decoder/model.onnx`);
    expect(s.provider).toBe("cpu");
    expect(lines).toHaveLength(0);
    await s.session.release();
  });
});
