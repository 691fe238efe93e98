/**
 * The model-folder layouts the worker runs, and what each can and cannot take (docs/onnx-layouts.md):
 *
 * - split: text encoder(s), VAE encoder/decoder, a UNet with residual inputs, one ControlNet graph per
 *   ControlNet with its residual outputs. tools/export-onnx/export.py writes it (its contract.json has
 *   the names). onnx-web's folders are read as split too: its residual UNet is cnet/model.onnx, and its
 *   ControlNets name only two of their outputs, so their residuals are read by position.
 * - fused: diffusers' scripts/convert_stable_diffusion_controlnet_to_onnx.py puts the UNet and the
 *   ControlNets it was given into one unet/model.onnx taking controlnet_conds [N,2B,3,8H,8W] and
 *   conditioning_scales [N,1]. N and the ControlNets' order are fixed by the export, and the graph does
 *   not name them: unet/controlnets.json does ({"controlnets": ["canny", "depth"]}, in the order of
 *   --controlnet_path).
 * - a UNet without residual inputs (optimum's export: out_sample, scalar timestep) runs no ControlNet;
 *   a job with one is refused, naming the export to make instead.
 *
 * Sizes: a traced UNet upsamples by a fixed factor 2 (the export traced a size whose latent is a
 * multiple of 8, so diffusers' branch that upsamples to the skip's own size is not in the graph), and
 * its skips line up only when the latent halves evenly at every level: width and height must be
 * multiples of FLEET_SIZE_MULTIPLE (64) pixels, and equal to the export's when it fixed them.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type ort from "onnxruntime-node";
import { FLEET_SIZE_MULTIPLE } from "../../../shared/domain/fleet-capabilities.ts";
import { badInput, resourceError } from "../errors.ts";
import { floatTensor, type IoSpec, indexOf, type LoadedSession, sortByIndex } from "./session.ts";

/** Where the fused export's ControlNets are named, relative to the model folder. */
export const FUSED_NAMES_FILE = "unet/controlnets.json";

/** The fused UNet's ControlNet inputs. */
export interface FusedIo {
  /** controlnet_conds [N, 2B, 3, 8H, 8W]. */
  conds: IoSpec;
  /** conditioning_scales [N, 1]. */
  scales: IoSpec;
  /** N: how many ControlNets the export fused in. */
  count: number;
}

/** The fused layout's inputs when the UNet session has them; null for a UNet without. */
export function fusedIo(s: LoadedSession): FusedIo | null {
  const conds = s.input("controlnet_conds");
  const scales = s.input("conditioning_scales");
  if (!conds && !scales) return null;
  const names = s.inputs.map((i) => i.name).join(", ");
  if (!conds || !scales)
    throw resourceError(
      `unsupported export ${s.path}: a fused UNet takes both controlnet_conds and conditioning_scales (has ${names})`,
    );
  const count = conds.shape[0];
  if (conds.shape.length !== 5 || typeof count !== "number" || count < 1)
    throw resourceError(
      `unsupported export ${s.path}: controlnet_conds must be [N, batch, 3, height, width] with N fixed (is [${conds.shape.join(", ")}])`,
    );
  const scaleCount = scales.shape[0];
  if (typeof scaleCount === "number" && scaleCount !== count)
    throw resourceError(
      `unsupported export ${s.path}: conditioning_scales has ${scaleCount} rows for ${count} ControlNets`,
    );
  return { conds, scales, count };
}

/**
 * The names in unet/controlnets.json, in the fused graph's order; null when the file is absent. A
 * malformed file is a resource error (the folder cannot be used as it is).
 */
export function readFusedNames(dir: string): string[] | null {
  const path = join(dir, FUSED_NAMES_FILE);
  if (!existsSync(path)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw resourceError(`${path} is not JSON`, error);
  }
  const list = (parsed as { controlnets?: unknown } | null)?.controlnets;
  if (
    !Array.isArray(list) ||
    list.length === 0 ||
    !list.every((n): n is string => typeof n === "string" && n.length > 0) ||
    new Set(list).size !== list.length
  )
    throw resourceError(`${path} must be {"controlnets": [distinct names, in the export's order]}`);
  return list;
}

/** The ControlNet names a fused graph runs, checked against its N. */
export function fusedNames(io: FusedIo, names: readonly string[] | null, path: string): readonly string[] {
  if (!names)
    throw resourceError(
      `model not installed: ${path} fuses ${io.count} ControlNet(s) and does not name them; write ${FUSED_NAMES_FILE} as {"controlnets": [...]} in the order of the export's --controlnet_path`,
    );
  if (names.length !== io.count)
    throw resourceError(
      `model not installed: ${FUSED_NAMES_FILE} names ${names.length} ControlNet(s) (${names.join(", ")}) and ${path} fuses ${io.count}`,
    );
  return names;
}

export interface FusedControl {
  name: string;
  /** Planar [3, height, width] in 0..1. */
  image: Float32Array;
  scale: number;
}

/**
 * controlnet_conds and conditioning_scales for one job, as the community pipeline that runs this export
 * feeds them (examples/community/run_onnx_controlnet.py: each ControlNet's image, repeated over the
 * batch, the scales as [N, 1]). A fused ControlNet the job does not name gets a zero image and scale 0:
 * its residuals are multiplied by 0, so the result is the one without it. A job naming a ControlNet
 * that is not in the graph, naming one twice, or asking for guess_mode (the graph runs every ControlNet
 * without it: on the whole batch, its residuals not scaled by guess_mode's logspace, at any guidance)
 * cannot run on this export: a resource error (another worker or provider may).
 */
export function fusedControlFeeds(args: {
  io: FusedIo;
  names: readonly string[];
  path: string;
  controls: readonly FusedControl[];
  batch: number;
  width: number;
  height: number;
  guess: boolean;
}): Record<string, ort.Tensor> {
  const { io, names, controls, batch, width, height } = args;
  if (args.guess)
    throw resourceError(
      `guess_mode is not supported by the fused UNet ${args.path}: it runs its ControlNets without it (residuals not scaled, the unconditional half included); use the split layout (tools/export-onnx)`,
    );
  const slot = new Map<string, FusedControl>();
  for (const c of controls) {
    if (!names.includes(c.name))
      throw resourceError(
        `model not installed: ControlNet "${c.name}" is not in the fused UNet ${args.path} (it was exported with ${names.join(", ")})`,
      );
    if (slot.has(c.name))
      throw resourceError(
        `ControlNet "${c.name}" is named twice, and the fused UNet ${args.path} has one slot per ControlNet`,
      );
    if (c.image.length !== 3 * width * height)
      throw badInput(`control image for ${c.name} has the wrong size`);
    slot.set(c.name, c);
  }
  const item = 3 * width * height;
  const conds = new Float32Array(io.count * batch * item);
  const scales = new Float32Array(io.count);
  names.forEach((name, j) => {
    const c = slot.get(name);
    if (!c) return;
    for (let b = 0; b < batch; b++) conds.set(c.image, (j * batch + b) * item);
    scales[j] = c.scale;
  });
  return {
    [io.conds.name]: floatTensor(io.conds, conds, [io.count, batch, 3, height, width]),
    [io.scales.name]: floatTensor(
      io.scales,
      scales,
      io.scales.shape.length === 1 ? [io.count] : [io.count, 1],
    ),
  };
}

/**
 * Refuses a size the installed UNet cannot take, as bad input naming width and height: not a multiple
 * of 64 (the traced fixed upsampling; see above), or not the size of an export that fixed it.
 */
export function checkSize(sample: IoSpec, path: string, width: number, height: number): void {
  if (width % FLEET_SIZE_MULTIPLE !== 0 || height % FLEET_SIZE_MULTIPLE !== 0)
    throw badInput(
      `width ${width} and height ${height} must be multiples of ${FLEET_SIZE_MULTIPLE}: the self-hosted UNet upsamples by a fixed factor 2 per level`,
    );
  const [fixedH, fixedW] = [sample.shape[2], sample.shape[3]];
  if (
    (typeof fixedH === "number" && fixedH * 8 !== height) ||
    (typeof fixedW === "number" && fixedW * 8 !== width)
  ) {
    const w = typeof fixedW === "number" ? fixedW * 8 : "any";
    const h = typeof fixedH === "number" ? fixedH * 8 : "any";
    throw badInput(
      `width ${width} and height ${height}: the installed UNet ${path} was exported for width ${w}, height ${h} only`,
    );
  }
}

/**
 * A ControlNet's residual outputs: down in order, then mid. By name when the names say it (one output
 * naming mid, every other naming down with distinct indices: diffusers' and TensorRT's names); else
 * by position, which is the order torch.onnx.export flattens ControlNetModel's
 * (down_block_res_samples, mid_block_res_sample) into (onnx-web names only the first two outputs, so
 * its "mid_block_res_sample" is down residual 1).
 */
export function controlNetResiduals(s: LoadedSession): { down: string[]; mid: string } {
  const mids = s.outputs.filter((o) => /mid/i.test(o.name));
  const downs = s.outputs.filter((o) => /down/i.test(o.name));
  const indices = downs.map((o) => indexOf(o.name));
  const named =
    mids.length === 1 &&
    downs.length === s.outputs.length - 1 &&
    indices.every((i) => i !== null) &&
    new Set(indices).size === indices.length;
  if (named) return { down: sortByIndex(downs).map((o) => o.name), mid: (mids[0] as IoSpec).name };
  const mid = s.outputs.at(-1);
  if (s.outputs.length < 2 || !mid)
    throw resourceError(`unsupported export ${s.path}: a ControlNet gives down residuals and a mid residual`);
  return { down: s.outputs.slice(0, -1).map((o) => o.name), mid: mid.name };
}

/** A UNet that takes no residuals cannot run a ControlNet: a resource error saying which export to make. */
export function refuseWithoutResiduals(path: string, controlnet: string): never {
  throw resourceError(
    `model not installed: the UNet ${path} takes no ControlNet residuals (an export without down/mid residual inputs, such as optimum's), so it cannot run ControlNet "${controlnet}"; export the split layout with tools/export-onnx/export.py, or diffusers' fused one`,
  );
}

/** The UNet with residual inputs: onnx-web's cnet/model.onnx when the folder has one, else unet/model.onnx. */
export function unetRelPath(dir: string): string {
  return existsSync(join(dir, "cnet", "model.onnx")) ? "cnet/model.onnx" : "unet/model.onnx";
}
