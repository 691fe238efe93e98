/**
 * `npm run worker:check-cuda`: run on your own GPU instance (or in the worker image) to check the CUDA
 * path before trusting the fallback with jobs.
 *
 * 1. The CUDA execution provider really runs compute: a probe model with ONNX Runtime's session
 *    profiling, then the whole tiny pipeline profiled the same way; a compute op placed on the CPU
 *    (a silent fallback) is a failure.
 * 2. CPU/CUDA parity: the tiny random-weight model generates the same image (same seed, same
 *    parameters) on the CPU and on CUDA; the difference must stay within PARITY_TOLERANCE.
 * 3. Milliseconds per denoising step on each (median of the steps of one timed run, after a warm-up run).
 *
 * Exit 0: every check passed. 1: a check failed (CUDA not available, a CPU fallback, outputs apart).
 * 2: bad arguments. Options: --steps N (20), --size N (256, a multiple of 64), --json.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { FLEET_SIZE_MULTIPLE } from "../../shared/domain/fleet-capabilities.ts";
import { buildTinyModel } from "./models/tiny.ts";
import { cudaPlacementProblem, type Placement, placementOf, verifyCuda } from "./pipeline/cuda-probe.ts";
import { ModelSet } from "./pipeline/models.ts";
import { ControlNetPipeline, type GenerateParams } from "./pipeline/pipeline.ts";
import { loadSchedulerFactory, type SchedulerFactory } from "./pipeline/scheduler.ts";
import type { Logger } from "./pipeline/session.ts";
import { SessionFactory } from "./pipeline/session.ts";

/**
 * How far the CUDA image may be from the CPU one, in 8-bit levels (0..255) over every value of every
 * image. ONNX Runtime's CUDA provider uses TF32 for Conv and MatMul on Ampere and later GPUs (g5's
 * A10G, g6's L4) by default, ~1e-3 relative, and cuDNN picks other convolution algorithms than the
 * CPU: a few levels here and there after 20 steps and the VAE, never a different picture.
 */
export const PARITY_TOLERANCE = { meanLevels: 1, maxLevels: 16 } as const;

export interface Parity {
  values: number;
  meanLevels: number;
  maxLevels: number;
  withinTolerance: boolean;
}

export function compareImages(a: readonly Uint8Array[], b: readonly Uint8Array[]): Parity {
  if (a.length !== b.length) throw new Error(`${a.length} images against ${b.length}`);
  let values = 0;
  let sum = 0;
  let max = 0;
  a.forEach((image, i) => {
    const other = b[i] as Uint8Array;
    if (image.length !== other.length)
      throw new Error(`image ${i}: ${image.length} values against ${other.length}`);
    for (let j = 0; j < image.length; j++) {
      const d = Math.abs((image[j] as number) - (other[j] as number));
      sum += d;
      if (d > max) max = d;
    }
    values += image.length;
  });
  const meanLevels = values === 0 ? 0 : sum / values;
  return {
    values,
    meanLevels,
    maxLevels: max,
    withinTolerance: meanLevels <= PARITY_TOLERANCE.meanLevels && max <= PARITY_TOLERANCE.maxLevels,
  };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function checkParams(size: number, steps: number): GenerateParams {
  const control = new Float32Array(3 * size * size);
  for (let i = 0; i < control.length; i++) control[i] = (i >> 5) % 2;
  return {
    prompt: "a photo of a lighthouse at dusk",
    negativePrompt: "blurry",
    width: size,
    height: size,
    samples: 1,
    steps,
    guidanceScale: 7.5,
    seed: 1234,
    clipSkip: 1,
    scheduler: "EulerDiscreteScheduler",
    controls: [{ name: "canny", image: control, scale: 1 }],
    guessMode: false,
  };
}

export interface PipelineRun {
  provider: "cuda" | "cpu";
  images: Uint8Array[];
  /** Milliseconds of each denoising step of the timed run. */
  stepMs: number[];
}

/** Loads the model folder on `sessions`, runs `params` once to warm up, then once timed. */
export async function timedRun(
  sessions: SessionFactory,
  modelDir: string,
  schedulers: SchedulerFactory,
  params: GenerateParams,
): Promise<PipelineRun> {
  const models = ModelSet.open(modelDir, sessions);
  try {
    await models.warm();
    const pipeline = new ControlNetPipeline(models, schedulers);
    await pipeline.generate(params);
    const out = await pipeline.generate(params);
    return { provider: sessions.activeProvider, images: out.images, stepMs: out.steps.map((s) => s.totalMs) };
  } finally {
    await models.release();
  }
}

/** Runs the pipeline once (two steps at most) with every session profiled; where its nodes ran. */
export async function pipelinePlacement(
  modelDir: string,
  schedulers: SchedulerFactory,
  params: GenerateParams,
  log: Logger,
  provider: "cuda" | "cpu" = "cuda",
): Promise<Placement> {
  const dir = mkdtempSync(join(tmpdir(), "check-cuda-profile-"));
  const sessions = new SessionFactory(provider, log, undefined, dir);
  const models = ModelSet.open(modelDir, sessions);
  try {
    await models.warm();
    await new ControlNetPipeline(models, schedulers).generate({
      ...params,
      steps: Math.min(params.steps, 2),
    });
    sessions.endProfiling();
    const events = readdirSync(dir)
      .filter((name) => name.endsWith(".json"))
      .flatMap((name) => JSON.parse(readFileSync(join(dir, name), "utf8")) as unknown[]);
    return placementOf(events);
  } finally {
    await models.release();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface CheckOptions {
  steps: number;
  size: number;
  /** Progress and results, one line each. */
  print: (line: string) => void;
  log: Logger;
}

export interface CheckReport {
  ok: boolean;
  /** Why it failed; null when ok. */
  failure: string | null;
  placement?: Placement;
  parity?: Parity;
  msPerStep?: { cpu: number; cuda: number };
}

export async function checkCuda(o: CheckOptions): Promise<CheckReport> {
  o.print("1/3 CUDA execution provider");
  let probe: Placement;
  try {
    probe = await verifyCuda();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { ok: false, failure: `CUDA not available: ${reason}` };
  }
  o.print(`    probe model: ${JSON.stringify(probe.byProvider)} node runs`);

  const tmp = mkdtempSync(join(tmpdir(), "check-cuda-"));
  try {
    const modelDir = buildTinyModel(tmp, { controlnets: ["canny"] });
    const schedulers = await loadSchedulerFactory();
    const params = checkParams(o.size, o.steps);
    const placement = await pipelinePlacement(modelDir, schedulers, params, o.log);
    o.print(`    tiny pipeline: ${JSON.stringify(placement.byProvider)} node runs`);
    const problem = cudaPlacementProblem(placement);
    if (problem) return { ok: false, failure: `CUDA not really used by the pipeline: ${problem}`, placement };

    o.print(`2/3 CPU/CUDA parity: tiny model, ${o.size}x${o.size}, ${o.steps} steps, same seed`);
    const cpu = await timedRun(new SessionFactory("cpu", o.log), modelDir, schedulers, params);
    const cuda = await timedRun(new SessionFactory("cuda", o.log), modelDir, schedulers, params);
    const parity = compareImages(cpu.images, cuda.images);
    o.print(
      `    |CPU - CUDA| over ${parity.values} values: mean ${parity.meanLevels.toFixed(3)} levels ` +
        `(tolerance ${PARITY_TOLERANCE.meanLevels}), max ${parity.maxLevels} (tolerance ${PARITY_TOLERANCE.maxLevels})`,
    );
    const msPerStep = { cpu: median(cpu.stepMs), cuda: median(cuda.stepMs) };
    o.print("3/3 milliseconds per denoising step (median of the timed run)");
    o.print(`    cpu  ${msPerStep.cpu.toFixed(1)} ms`);
    o.print(`    cuda ${msPerStep.cuda.toFixed(1)} ms (${(msPerStep.cpu / msPerStep.cuda).toFixed(1)}x)`);
    if (!parity.withinTolerance) {
      return {
        ok: false,
        failure: "CPU and CUDA outputs differ beyond the tolerance",
        placement,
        parity,
        msPerStep,
      };
    }
    return { ok: true, failure: null, placement, parity, msPerStep };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function parseArgs(argv: readonly string[]): { steps: number; size: number; json: boolean } {
  const out = { steps: 20, size: 256, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--json") out.json = true;
    else if (arg === "--steps" || arg === "--size") {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value)) throw new Error(`${arg} needs an integer`);
      out[arg === "--steps" ? "steps" : "size"] = value;
    } else throw new Error(`unknown argument ${arg}`);
  }
  if (out.steps < 2 || out.steps > 150) throw new Error("--steps must be 2..150");
  // The sizes the fleet's UNets take (a traced UNet upsamples by a fixed factor 2: worker/src/pipeline/layouts.ts).
  if (out.size < 64 || out.size > 1024 || out.size % FLEET_SIZE_MULTIPLE !== 0)
    throw new Error(`--size must be a multiple of ${FLEET_SIZE_MULTIPLE} in 64..1024`);
  return out;
}

async function main(argv: readonly string[]): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(argv);
  } catch (error) {
    console.error(`check-cuda: ${error instanceof Error ? error.message : String(error)}`);
    console.error("usage: npm run worker:check-cuda -- [--steps N] [--size N] [--json]");
    return 2;
  }
  const print = args.json ? () => undefined : (line: string) => console.log(line);
  const log: Logger = (level, message, fields) => {
    if (level !== "info") console.error(`[${level}] ${message}`, fields ?? "");
  };
  const report = await checkCuda({ steps: args.steps, size: args.size, print, log });
  if (args.json) console.log(JSON.stringify(report, null, 2));
  if (report.ok) {
    if (!args.json)
      console.log("PASS: CUDA runs the pipeline, its outputs match the CPU's within the tolerance");
    return 0;
  }
  console.error(`FAIL: ${report.failure}`);
  if (!report.placement) {
    console.error(
      "Needs an NVIDIA GPU with its driver (nvidia-smi lists it), CUDA 12 and cuDNN 9 libraries (the worker " +
        "image has them), and onnxruntime-node's CUDA provider (ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci).",
    );
  }
  return 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  process.exitCode = await main(process.argv.slice(2));
}
