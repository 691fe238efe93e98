/**
 * WebAssembly SIMD kernels for the per-step loops over whole latents (the k-diffusion scaling and Euler
 * update, classifier-free guidance), which in plain JS cost more than the rest of a denoising step.
 *
 * Exactness: WebAssembly float arithmetic is IEEE 754 with round-to-nearest-even, one rounding per
 * operation and no fused multiply-add. A float32 op on float32 values gives the same bits as the double op
 * rounded with Math.fround (double rounding is innocuous for + − × ÷ from binary32 to binary64), so a kernel
 * returns exactly what the JS loop it replaces returns, NaN payloads aside. Each caller keeps its JS loop as
 * the fallback: where WebAssembly SIMD is unavailable, when a scalar is not a float32 value (the f32x4 ops
 * would round it first), and when `setSimd(false)` (tests compare both paths).
 *
 * The module is assembled here from its instructions (a few hundred bytes, nothing to build or ship); each
 * function's WAT is in the comment above its builder. Tensors are copied into the module's memory, the
 * kernel runs four lanes at a time, and the results are copied out (a copy costs a small fraction of the
 * arithmetic it replaces).
 */

// ---- a minimal WebAssembly encoder ----------------------------------------------------------------

const I32 = 0x7f;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;

function uleb(n: number): number[] {
  const out: number[] = [];
  let v = n >>> 0;
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, bytes: number[]): number[] {
  return [id, ...uleb(bytes.length), ...bytes];
}

function name(s: string): number[] {
  return [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
}

const get = (i: number) => [0x20, ...uleb(i)];
const set = (i: number) => [0x21, ...uleb(i)];
const simd = (op: number) => [0xfd, ...uleb(op)];
/** `ptr + i` (i32 locals). */
const at = (ptr: number, i: number) => [...get(ptr), ...get(i), 0x6a];
const v128Load = (ptr: number, i: number) => [...at(ptr, i), ...simd(0x00), 4, 0];
const v128Store = (ptr: number, i: number, value: number[]) => [...at(ptr, i), ...value, ...simd(0x0b), 4, 0];
const F32X4_SPLAT = simd(0x13);
const F32X4_ADD = simd(0xe4);
const F32X4_SUB = simd(0xe5);
const F32X4_MUL = simd(0xe6);
const F32X4_DIV = simd(0xe7);
const F64X2_SPLAT = simd(0x14);
const F64X2_ADD = simd(0xf0);
const F64X2_SUB = simd(0xf1);
const F64X2_MUL = simd(0xf2);

/** `for (i = 0; i < bytes; i += stride) body` (i, bytes: i32 locals). */
function loop(bytes: number, i: number, stride: number, body: number[]): number[] {
  return [
    ...[0x02, 0x40, 0x03, 0x40], // block, loop
    ...[...get(i), ...get(bytes), 0x4f, 0x0d, 1], // br_if 1 (i >= bytes, unsigned)
    ...body,
    ...[...get(i), 0x41, ...uleb(stride), 0x6a, ...set(i)], // i += stride (stride < 64: one-byte sLEB)
    ...[0x0c, 0, 0x0b, 0x0b], // br 0, end, end
  ];
}

interface Func {
  name: string;
  params: number[];
  locals: number[];
  code: number[];
}

function assemble(funcs: Func[]): Uint8Array {
  const types = funcs.map((f) => [0x60, ...vec(f.params.map((p) => [p])), 0]);
  const bodies = funcs.map((f) => {
    const body = [...vec(f.locals.map((t) => [1, t])), ...f.code, 0x0b];
    return [...uleb(body.length), ...body];
  });
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(types)),
    ...section(3, vec(funcs.map((_, k) => uleb(k)))),
    ...section(5, vec([[0x00, 1]])), // memory: 1 page to start, grown from JS
    ...section(
      7,
      vec([...funcs.map((f, k) => [...name(f.name), 0x00, ...uleb(k)]), [...name("memory"), 0x02, 0]]),
    ),
    ...section(10, vec(bodies)),
  ]);
}

// ---- the kernels ------------------------------------------------------------------------------------

/**
 * (func $divide (param $src i32) (param $dst i32) (param $bytes i32) (param $d f32)
 *   (local $i i32) (local $vd v128)
 *   vd = f32x4.splat(d)
 *   for i: v128.store(dst + i, f32x4.div(v128.load(src + i), vd)))
 */
function divide(): Func {
  const [src, dst, bytes, d, i, vd] = [0, 1, 2, 3, 4, 5] as const;
  return {
    name: "divide",
    params: [I32, I32, I32, F32],
    locals: [I32, V128],
    code: [
      ...get(d),
      ...F32X4_SPLAT,
      ...set(vd),
      ...loop(bytes, i, 16, v128Store(dst, i, [...v128Load(src, i), ...get(vd), ...F32X4_DIV])),
    ],
  };
}

/**
 * (func $euler (param $mo $sample $base $x0 $prev $noise $bytes i32) (param $sigma $denom $dt $ns f32)
 *   per 4 lanes: s = sample[i]; x = s - sigma * mo[i]; x0[i] = x
 *                prev[i] = base[i] + ((s - x) / denom) * dt   [+ noise[i] * ns in $eulerNoise]
 */
function euler(withNoise: boolean): Func {
  const [mo, sample, base, x0, prev, noise, bytes, sigma, denom, dt, ns] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
  ] as const;
  const [i, vSigma, vDenom, vDt, vNs, s, x] = [11, 12, 13, 14, 15, 16, 17] as const;
  const update = [
    ...v128Load(base, i),
    ...[...get(s), ...get(x), ...F32X4_SUB, ...get(vDenom), ...F32X4_DIV, ...get(vDt), ...F32X4_MUL],
    ...F32X4_ADD,
    ...(withNoise ? [...v128Load(noise, i), ...get(vNs), ...F32X4_MUL, ...F32X4_ADD] : []),
  ];
  const body = [
    ...v128Load(sample, i),
    ...set(s),
    ...[...get(s), ...get(vSigma), ...v128Load(mo, i), ...F32X4_MUL, ...F32X4_SUB, ...set(x)],
    ...v128Store(x0, i, get(x)),
    ...v128Store(prev, i, update),
  ];
  return {
    name: withNoise ? "eulerNoise" : "euler",
    params: [I32, I32, I32, I32, I32, I32, I32, F32, F32, F32, F32],
    locals: [I32, V128, V128, V128, V128, V128, V128],
    code: [
      ...[...get(sigma), ...F32X4_SPLAT, ...set(vSigma)],
      ...[...get(denom), ...F32X4_SPLAT, ...set(vDenom)],
      ...[...get(dt), ...F32X4_SPLAT, ...set(vDt)],
      ...[...get(ns), ...F32X4_SPLAT, ...set(vNs)],
      ...loop(bytes, i, 16, body),
    ],
  };
}

/**
 * (func $guidance (param $pred $out $bytes i32) (param $g f64)   ;; bytes: of one half
 *   per 2 lanes, in float64: u = promote(pred[i]); c = promote(pred[half + i])
 *                out[i] = demote(u + g * (c - u))
 */
function guidance(): Func {
  const [pred, out, bytes, g, i, vg, u] = [0, 1, 2, 3, 4, 5, 6] as const;
  const load64 = (ptr: number[]) => [...ptr, ...simd(0x5d), 3, 0, ...simd(0x5f)]; // load64_zero, promote_low
  const body = [
    ...at(out, i),
    ...load64(at(pred, i)),
    ...set(u),
    ...get(u),
    ...get(vg),
    ...load64([...at(pred, i), ...get(bytes), 0x6a]),
    ...get(u),
    ...F64X2_SUB,
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...simd(0x5e), // f32x4.demote_f64x2_zero
    ...[...simd(0x5b), 3, 0, 0], // v128.store64_lane 0
  ];
  return {
    name: "guidance",
    params: [I32, I32, I32, F64],
    locals: [I32, V128, V128],
    code: [...get(g), ...F64X2_SPLAT, ...set(vg), ...loop(bytes, i, 8, body)],
  };
}

/** The parts of the WebAssembly API used here (the TS libs of this project do not declare it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}

interface Exports {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  divide(src: number, dst: number, bytes: number, d: number): void;
  euler(...args: number[]): void;
  eulerNoise(...args: number[]): void;
  guidance(pred: number, out: number, bytes: number, g: number): void;
}

let exports: Exports | null | undefined;
let enabled = true;

function instance(): Exports | null {
  if (!enabled) return null;
  if (exports === undefined) {
    try {
      const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
      if (!wasm) throw new Error("no WebAssembly");
      const module = new wasm.Module(assemble([divide(), euler(false), euler(true), guidance()]));
      exports = new wasm.Instance(module, {}).exports as Exports;
    } catch {
      exports = null; // no WebAssembly SIMD here: the JS loops run
    }
  }
  return exports;
}

/** Turns the kernels off (or on again): the callers' JS loops run instead. For tests and comparisons. */
export function setSimd(on: boolean): void {
  enabled = on;
}

/** Whether the kernels run (WebAssembly SIMD available and not turned off). */
export function simdActive(): boolean {
  return instance() !== null;
}

const isF32 = (x: number) => Math.fround(x) === x;

/** Float32 views of `count` regions of `n` floats in the module's memory (16-byte aligned). */
function regions(x: Exports, n: number, count: number): { heap: Float32Array; stride: number } {
  const stride = Math.ceil(n / 4) * 4;
  const bytes = stride * 4 * count;
  const have = x.memory.buffer.byteLength;
  if (have < bytes) x.memory.grow(Math.ceil((bytes - have) / 65536));
  return { heap: new Float32Array(x.memory.buffer), stride };
}

function copyOut(heap: Float32Array, region: number, n: number, out?: Float32Array): Float32Array {
  const res = out ?? new Float32Array(n);
  res.set(heap.subarray(region, region + n));
  return res;
}

/** `out[i] = src[i] / d` in float32, or false (the caller's loop runs) when the kernel cannot. */
export function simdDivide(src: Float32Array, d: number, out: Float32Array): boolean {
  const x = instance();
  if (!x || !isF32(d)) return false;
  const n = src.length;
  const { heap, stride } = regions(x, n, 1);
  heap.set(src, 0);
  x.divide(0, 0, stride * 4, d);
  copyOut(heap, 0, n, out);
  return true;
}

/**
 * The k-diffusion Euler update for epsilon prediction (see kEulerUpdate): `x0 = sample - sigma * mo`,
 * `prev = base + ((sample - x0) / denom) * dt` (`+ noise * noiseScale`), as new arrays (`x0` only when
 * `keepX0`); null when the kernel cannot run.
 */
export function simdEulerEpsilon(
  mo: Float32Array,
  sample: Float32Array,
  sigma: number,
  denom: number,
  dt: number,
  base: Float32Array,
  noise: Float32Array | null,
  noiseScale: number,
  keepX0: boolean,
): { prev: Float32Array; x0: Float32Array | undefined } | null {
  const x = instance();
  if (!x || !isF32(sigma) || !isF32(denom) || !isF32(dt) || !isF32(noiseScale)) return null;
  const n = sample.length;
  if (mo.length !== n || base.length !== n || (noise && noise.length !== n)) return null;
  const { heap, stride } = regions(x, n, 6);
  const [rMo, rSample, rBase, rX0, rPrev, rNoise] = [0, 1, 2, 3, 4, 5].map((k) => k * stride) as number[];
  heap.set(mo, rMo);
  heap.set(sample, rSample);
  if (base !== sample) heap.set(base, rBase);
  if (noise) heap.set(noise, rNoise);
  const args = [rMo, rSample, base === sample ? rSample : rBase, rX0, rPrev, rNoise, stride].map(
    (r) => (r as number) * 4,
  );
  (noise ? x.eulerNoise : x.euler)(...args, sigma, denom, dt, noiseScale);
  return {
    prev: copyOut(heap, rPrev as number, n),
    x0: keepX0 ? copyOut(heap, rX0 as number, n) : undefined,
  };
}

/**
 * Classifier-free guidance over `pred` = [uncond (half), cond (half)]: `u + g * (c - u)` in float64, rounded
 * once to float32, into `out` (which may be `pred`); false when the kernel cannot run.
 */
export function simdGuidance(pred: Float32Array, half: number, g: number, out: Float32Array): boolean {
  const x = instance();
  if (!x || pred.length < 2 * half || out.length < half) return false;
  // [uncond | cond] at 0 and at `stride`, the result at 2 * stride; stride even (two lanes at a time).
  const { heap, stride } = regions(x, half, 3);
  heap.set(pred.subarray(0, half), 0);
  heap.set(pred.subarray(half, 2 * half), stride);
  x.guidance(0, 2 * stride * 4, stride * 4, g);
  copyOut(heap, 2 * stride, half, out);
  return true;
}
