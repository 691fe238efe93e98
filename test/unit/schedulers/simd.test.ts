import { afterEach, describe, expect, it } from "vitest";
import { createScheduler } from "../../../worker/src/schedulers/index.ts";
import { kEulerUpdate, kScale } from "../../../worker/src/schedulers/k-sigmas.ts";
import { setSimd, simdActive, simdGuidance } from "../../../worker/src/schedulers/simd.ts";

const f32 = Math.fround;

/** Seeded uniform and normal sources (LCG), so both paths see the same numbers. */
function rng(seed: number) {
  let s = seed >>> 0;
  const u = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  return {
    u,
    normal: () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()),
  };
}

const SPECIAL = [0, -0, 1e-40, -1e-40, 1.4e-45, 3.4e38, -3.4e38, Number.POSITIVE_INFINITY, 1e30, -1e-30];

/** Random values over many magnitudes, with zeros, subnormals, huge values and infinities mixed in. */
function tensor(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r.normal() * 10 ** Math.floor(r.u() * 8 - 4);
  for (let i = 0; i < Math.min(n, SPECIAL.length); i++) out[(i * 7 + seed) % n] = SPECIAL[i] as number;
  return out;
}

/** Bit-for-bit equality (distinguishes -0 from 0). */
function bits(a: Float32Array | undefined): string {
  return a ? Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("hex") : "none";
}

function both<T>(fn: () => T): [T, T] {
  setSimd(true);
  const fast = fn();
  setSimd(false);
  const plain = fn();
  setSimd(true);
  return [fast, plain];
}

afterEach(() => setSimd(true));

describe("WebAssembly SIMD kernels give the JS loops' bits", () => {
  it("are available on this Node", () => {
    expect(simdActive()).toBe(true);
  });

  it("kScale", () => {
    for (const n of [1, 3, 4, 7, 1000, 4 * 64 * 64]) {
      const x = tensor(n, n);
      for (const sigma of [0, 0.0292, 1, 14.6146]) {
        const [fast, plain] = both(() => kScale(x, f32(sigma)));
        expect(bits(fast)).toBe(bits(plain));
        // into `out`, and in place
        const [into, plainInto] = both(() => kScale(x, f32(sigma), new Float32Array(n)));
        expect(bits(into)).toBe(bits(plain));
        expect(bits(plainInto)).toBe(bits(plain));
        const [inPlace] = both(() => {
          const y = x.slice();
          return kScale(y, f32(sigma), y);
        });
        expect(bits(inPlace)).toBe(bits(plain));
      }
    }
  });

  it("kEulerUpdate (epsilon), with and without noise, with another base", () => {
    for (const n of [1, 5, 8, 1001, 4 * 32 * 32]) {
      const mo = tensor(n, 1);
      const sample = tensor(n, 2);
      const base = tensor(n, 3);
      const noise = tensor(n, 4);
      for (const [sigma, denom, dt, up] of [
        [14.6146, 14.6146, -1.2345, 0],
        [0.0292, 0.5, -0.0292, 0.77],
        [1, 3, 0, 1e-3],
      ] as const) {
        const args = [f32(sigma), f32(denom), f32(dt)] as const;
        const cases = [
          () => kEulerUpdate("epsilon", mo, sample, ...args, sample),
          () => kEulerUpdate("epsilon", mo, sample, ...args, base),
          () => kEulerUpdate("epsilon", mo, sample, ...args, base, noise, f32(up)),
          () => kEulerUpdate("epsilon", mo, sample, ...args, sample, noise, f32(up), false),
        ];
        for (const run of cases) {
          const [fast, plain] = both(run);
          expect(bits(fast.prev)).toBe(bits(plain.prev));
          if (fast.x0) expect(bits(fast.x0)).toBe(bits(plain.x0));
        }
      }
    }
  });

  it("falls back to the JS loop for scalars that are not float32 values", () => {
    const x = tensor(64, 9);
    const [fast, plain] = both(() => kEulerUpdate("epsilon", x, x, 0.1, 0.1, -0.1, x));
    expect(bits(fast.prev)).toBe(bits(plain.prev));
  });

  it("classifier-free guidance in float64, rounded once, for any scale", () => {
    for (const half of [1, 2, 3, 4 * 64 * 64]) {
      const pred = tensor(2 * half, half + 5);
      for (const g of [7.5, 7.3, 1.7, 0.3, 30]) {
        const out = new Float32Array(half);
        expect(simdGuidance(pred, half, g, out)).toBe(true);
        const plain = new Float32Array(half);
        for (let i = 0; i < half; i++) {
          const u = pred[i] as number;
          plain[i] = u + g * ((pred[half + i] as number) - u);
        }
        expect(bits(out)).toBe(bits(plain));
      }
    }
  });

  it("whole denoising loops give identical bytes with and without the kernels", () => {
    const names = [
      "EulerDiscreteScheduler",
      "EulerAncestralDiscreteScheduler",
      "HeunDiscreteScheduler",
      "LMSDiscreteScheduler",
      "KDPM2DiscreteScheduler",
      "KDPM2AncestralDiscreteScheduler",
    ];
    for (const name of names) {
      for (const config of [{}, { prediction_type: "v_prediction" }, { use_karras_sigmas: true }]) {
        const loop = () => {
          const s = createScheduler(name, config);
          s.setTimesteps(10);
          const r = rng(7);
          let x: Float32Array = new Float32Array(2 * 4 * 8 * 8).map(() => f32(r.normal() * s.initNoiseSigma));
          const parts: string[] = [];
          for (const t of s.timesteps) {
            const input = s.scaleModelInput(x, t);
            const mo = input.map((v, i) => Math.sin(v * 1.3 + t * 0.01 + i * 0.001) * 0.8);
            const out = s.step(mo, t, x, { generator: r.normal, shape: [2, 4, 8, 8] });
            parts.push(bits(input), bits(out.prevSample), bits(out.predOriginalSample));
            x = out.prevSample;
          }
          return parts.join("|");
        };
        const [fast, plain] = both(loop);
        expect(fast, `${name} ${JSON.stringify(config)}`).toBe(plain);
      }
    }
  });
});
