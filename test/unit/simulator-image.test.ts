import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderOutputs } from "../../local/simulator/image.ts";
import { type Simulator, startSimulator } from "../../local/simulator/index.ts";

/** The grey value at (x, y) of a PNG, and how many distinct grey values it has. */
async function greys(png: Buffer): Promise<{ at: (x: number, y: number) => number; distinct: number }> {
  const { data, info } = await sharp(png).greyscale().raw().toBuffer({ resolveWithObject: true });
  const values = new Set<number>();
  for (let i = 0; i < data.length; i += info.channels) values.add(data[i] as number);
  return { at: (x, y) => data[(y * info.width + x) * info.channels] as number, distinct: values.size };
}

describe("the simulator's outputs", () => {
  let simulator: Simulator;
  let sample: Buffer;
  beforeAll(async () => {
    simulator = await startSimulator({ apiKey: "sim-image-test" });
    const response = await fetch(`${new URL(simulator.url).origin}/samples/control.png`);
    expect(response.status).toBe(200);
    sample = Buffer.from(await response.arrayBuffer());
  });
  afterAll(() => simulator.stop());

  it("are an edge map of its own RGBA sample control image, not one flat value", async () => {
    // The sample is RGBA (rendered from SVG): the case that came out one flat grey.
    expect((await sharp(sample).metadata()).hasAlpha).toBe(true);
    const [output] = await renderOutputs({
      control: sample,
      width: 512,
      height: 512,
      samples: 1,
      seed: 1,
      controlnetModel: "canny",
    });
    const image = await greys(output as Buffer);
    expect(image.distinct).toBeGreaterThan(2);
    // The house's left wall is a 12 px white stroke at x = 96: its borders are edges; the empty
    // middle of the sky (black in the sample) is flat background, darker than any edge.
    const background = image.at(256, 40);
    const edge = Math.max(...[88, 89, 90, 91, 101, 102, 103, 104].map((x) => image.at(x, 350)));
    expect(edge).toBeGreaterThan(background + 100);
    expect(image.at(30, 350)).toBe(background);
  });

  it("keep the edges of an opaque RGB control image", async () => {
    const rgb = await sharp(sample).removeAlpha().png().toBuffer();
    expect((await sharp(rgb).metadata()).hasAlpha).toBe(false);
    const [output] = await renderOutputs({
      control: rgb,
      width: 256,
      height: 256,
      samples: 1,
      seed: 2,
      controlnetModel: "canny",
    });
    expect((await greys(output as Buffer)).distinct).toBeGreaterThan(2);
  });
});
