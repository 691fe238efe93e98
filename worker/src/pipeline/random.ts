/**
 * A seeded random source (xoshiro128**), so the same seed gives the same latents on every machine.
 */
export interface Random {
  /** Uniform in [0, 1). */
  uniform(): number;
  /** Standard normal (Box–Muller). */
  gaussian(): number;
  normal(n: number): Float32Array;
}

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export function createRandom(seed: number): Random {
  // Seeds above 2^32 (the API allows any non-negative integer) fold their high part in.
  const hi = Math.floor(seed / 2 ** 32) >>> 0;
  const mix = splitmix32((seed >>> 0) ^ Math.imul(hi, 0x27d4eb2d));
  let a = mix();
  let b = mix();
  let c = mix();
  let d = mix() | 1;
  const next = () => {
    const result = Math.imul(((Math.imul(b, 5) << 7) | (Math.imul(b, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = (d << 11) | (d >>> 21);
    return result;
  };
  const uniform = () => next() / 4294967296;
  let spare: number | null = null;
  const gaussian = () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = uniform();
    const v = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
  return {
    uniform,
    gaussian,
    normal: (n) => {
      // The same draws as n calls of gaussian(), in one loop: a stochastic scheduler draws a whole
      // latent of noise every step, and a call per value through gaussian() and uniform() costs more.
      const out = new Float32Array(n);
      let i = 0;
      if (n > 0 && spare !== null) {
        out[i++] = spare;
        spare = null;
      }
      for (; i < n; i += 2) {
        let u = 0;
        while (u === 0) u = next() / 4294967296;
        const v = next() / 4294967296;
        const r = Math.sqrt(-2 * Math.log(u));
        const angle = 2 * Math.PI * v;
        out[i] = r * Math.cos(angle);
        if (i + 1 < n) out[i + 1] = r * Math.sin(angle);
        else spare = r * Math.sin(angle);
      }
      return out;
    },
  };
}
