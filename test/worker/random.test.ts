import { describe, expect, it } from "vitest";
import { createRandom } from "../../worker/src/pipeline/random.ts";

describe("createRandom", () => {
  it("gives the same draws for the same seed, different ones for another", () => {
    expect(createRandom(7).normal(64)).toEqual(createRandom(7).normal(64));
    expect(createRandom(7).normal(64)).not.toEqual(createRandom(8).normal(64));
    // Seeds above 2^32 keep their high part.
    expect(createRandom(2 ** 40 + 7).normal(8)).not.toEqual(createRandom(7).normal(8));
  });

  it("normal(n) is exactly n gaussian() draws, whatever the sizes and interleaving", () => {
    for (const seed of [0, 1, 42, 2 ** 40 + 7]) {
      const batched = createRandom(seed);
      const single = createRandom(seed);
      for (const n of [1, 2, 3, 7, 4096, 5, 0, 9]) {
        const want = new Float32Array(n);
        for (let i = 0; i < n; i++) want[i] = single.gaussian();
        expect(batched.normal(n)).toEqual(want);
        expect(batched.uniform()).toBe(single.uniform());
        expect(batched.gaussian()).toBe(single.gaussian());
      }
    }
  });

  it("draws standard normals (mean 0, variance 1) and uniforms in [0, 1)", () => {
    const values = createRandom(123).normal(200_000);
    const mean = values.reduce((s, v) => s + v, 0) / values.length;
    const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1)).toBeLessThan(0.02);
    const random = createRandom(5);
    for (let i = 0; i < 10_000; i++) {
      const u = random.uniform();
      expect(u >= 0 && u < 1).toBe(true);
    }
  });
});
