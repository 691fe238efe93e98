/**
 * `npm run bench:worker`: time per denoising step of the worker pipeline, split into model time
 * (ONNX Runtime session.run for the ControlNets and the UNet) and everything else (scheduler, guidance,
 * tensor copies and conversions), with the tiny random-weight model. "auto" by default: CUDA on a machine with a
 * CUDA build of ONNX Runtime and a GPU, else the CPU (EXECUTION_PROVIDER=cpu skips the CUDA attempt).
 *
 * Options: --steps N (20) --runs N (3) --size N (512) --samples N (1) --controlnets N (1) --threads N
 * (0 = ONNX Runtime's default) --unet-width N (0 = the test model; e.g. 64 for a heavier UNet)
 * --json --cuda. `MODEL_DIR` benchmarks a real model folder instead of the tiny one; `SCHEDULER` picks the
 * scheduler (a diffusers class name; EulerDiscreteScheduler by default).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildTinyModel } from "../worker/src/models/tiny.ts";
import { ModelSet } from "../worker/src/pipeline/models.ts";
import { ControlNetPipeline, type StepTiming } from "../worker/src/pipeline/pipeline.ts";
import { loadSchedulerFactory } from "../worker/src/pipeline/scheduler.ts";
import { type ExecutionProvider, SessionFactory } from "../worker/src/pipeline/session.ts";
import { parseArgs, UsageError } from "./lib/args.ts";
import { ms, table } from "./lib/print.ts";

let args: ReturnType<typeof parseArgs>;
try {
  args = parseArgs(process.argv.slice(2), {
    integers: { steps: 20, runs: 3, size: 512, samples: 1, controlnets: 1, threads: 0, "unet-width": 0 },
    flags: ["json", "cuda"],
  });
} catch (error) {
  if (error instanceof UsageError) {
    console.error(error.message);
    process.exit(2);
  }
  throw error;
}
// parseArgs takes positive integers only; 1 means "default" for threads and unet-width.
const opt = (name: string) => args.integers[name] as number;
const json = args.flags.has("json");
const provider = (
  args.flags.has("cuda") ? "cuda" : (process.env.EXECUTION_PROVIDER ?? "auto")
) as ExecutionProvider;
const log = (level: string, message: string, fields?: Record<string, unknown>) => {
  if (!json || level !== "info") console.error(`[${level}] ${message}`, fields ?? "");
};

const tmp = process.env.MODEL_DIR ? null : mkdtempSync(join(tmpdir(), "bench-worker-"));
const names = ["canny", "depth", "tile", "scribble"].slice(0, Math.max(1, opt("controlnets")));
const modelDir =
  process.env.MODEL_DIR ??
  buildTinyModel(tmp as string, {
    controlnets: names,
    ...(opt("unet-width") > 1 ? { unetWidth: opt("unet-width") } : {}),
  });
const threads = opt("threads") > 1 ? opt("threads") : undefined;
const sessions = new SessionFactory(provider, log, threads);
const models = ModelSet.open(modelDir, sessions);
await models.warm();
const pipeline = new ControlNetPipeline(models, await loadSchedulerFactory());
const size = opt("size");
const control = new Float32Array(3 * size * size);
for (let i = 0; i < control.length; i++) control[i] = (i >> 6) % 2;

const params = {
  prompt: "a photo of a lighthouse at dusk",
  negativePrompt: "blurry",
  width: size,
  height: size,
  samples: opt("samples"),
  steps: opt("steps"),
  guidanceScale: 7.5,
  seed: 42,
  clipSkip: 1,
  scheduler: process.env.SCHEDULER ?? "EulerDiscreteScheduler",
  controls: names.map((name) => ({ name, image: control, scale: 1 })),
  guessMode: false,
};

// A full warm-up run (ONNX Runtime's first-run allocations, V8's optimised code for the step loops, the
// scheduler's WebAssembly kernels), so the measured runs show the steady state; then the measured runs.
await pipeline.generate(params);
const steps: StepTiming[] = [];
const jobMs: number[] = [];
for (let r = 0; r < opt("runs"); r++) {
  const t0 = performance.now();
  const out = await pipeline.generate(params);
  jobMs.push(performance.now() - t0);
  steps.push(...out.steps);
}
await models.release();
if (tmp) rmSync(tmp, { recursive: true, force: true });

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};
const total = steps.map((s) => s.totalMs);
const model = steps.map((s) => s.modelMs);
const sched = steps.map((s) => s.schedulerMs);
const other = steps.map((s) => s.totalMs - s.modelMs);
const rest = steps.map((s) => s.totalMs - s.modelMs - s.schedulerMs);
const otherShare = mean(other) / mean(total);
// On a shared machine a few steps stall for milliseconds (other processes, GC), in either part of the
// step; the share of the medians shows the typical step without them.
const otherShareOfMedians = median(other) / median(total);
const summary = {
  provider: sessions.activeProvider,
  model: process.env.MODEL_DIR ? modelDir : "tiny",
  scheduler: params.scheduler,
  size,
  samples: params.samples,
  controlnets: names.length,
  stepsPerRun: params.steps,
  runs: opt("runs"),
  stepMs: { mean: mean(total), median: median(total) },
  modelMs: { mean: mean(model), median: median(model) },
  otherMs: { mean: mean(other), median: median(other) },
  schedulerMs: { mean: mean(sched), median: median(sched) },
  guidanceAndCopiesMs: { mean: mean(rest), median: median(rest) },
  otherShare,
  otherShareOfMedians,
  otherUnder5Percent: otherShare < 0.05,
  jobMs: { mean: mean(jobMs) },
};

if (json) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  console.log(
    `worker pipeline, ${summary.provider}, ${summary.model} model, ${size}x${size}, ${params.samples} sample(s), ` +
      `${names.length} ControlNet(s), CFG on, ${params.scheduler}, ${params.steps} steps x ${summary.runs} runs`,
  );
  console.log(
    table([
      ["per step", "mean", "median", "share", "share (medians)"],
      ["total", ms(summary.stepMs.mean), ms(summary.stepMs.median), "100%", "100%"],
      [
        "model (ControlNet + UNet)",
        ms(summary.modelMs.mean),
        ms(summary.modelMs.median),
        pct(mean(model) / mean(total)),
        pct(median(model) / median(total)),
      ],
      [
        "everything else",
        ms(summary.otherMs.mean),
        ms(summary.otherMs.median),
        pct(otherShare),
        pct(otherShareOfMedians),
      ],
      [
        "  scheduler",
        ms(summary.schedulerMs.mean),
        ms(summary.schedulerMs.median),
        pct(mean(sched) / mean(total)),
        pct(median(sched) / median(total)),
      ],
      [
        "  guidance, copies, tensors",
        ms(summary.guidanceAndCopiesMs.mean),
        ms(summary.guidanceAndCopiesMs.median),
        pct(mean(rest) / mean(total)),
        pct(median(rest) / median(total)),
      ],
    ]),
  );
  console.log(`whole job (text, steps, VAE): ${ms(summary.jobMs.mean)} mean`);
  console.log(
    `everything else ${otherShare < 0.05 ? "under" : "OVER"} 5% of a step (${pct(otherShare)} of the mean step; ` +
      `${pct(otherShareOfMedians)} of the median step)`,
  );
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}
