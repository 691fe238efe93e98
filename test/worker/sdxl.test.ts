/**
 * SDXL exports: detected from the UNet's inputs (text_embeds, time_ids), two text encoders whose
 * penultimate hidden states are concatenated, pooled text_embeds and size time_ids for the UNet and the
 * ControlNets, zero negative embeddings for an empty negative prompt, the SDXL VAE scaling factor; and
 * the whole worker from queue message to stored PNG on tiny random-weight SDXL-shaped models.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import type ort from "onnxruntime-node";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { type ResultMessage, resultMessageSchema } from "../../shared/schemas/messages.ts";
import type { WorkerJobMessage } from "../../worker/src/messages.ts";
import { TINY } from "../../worker/src/models/tiny.ts";
import { controlNetIo, type ModelSet, textEncoderIo, unetIo } from "../../worker/src/pipeline/models.ts";
import type { GenerateParams } from "../../worker/src/pipeline/pipeline.ts";
import { idsTensor, readFloats } from "../../worker/src/pipeline/session.ts";
import { startWorker } from "../../worker/src/start.ts";
import {
  captureLog,
  checkerboard,
  modelRoot,
  pipelineOpener,
  RecordingFactory,
  testSchedulers,
  tinyEntry,
  tinyModel,
  useWorkerAws,
} from "./support.ts";

const W = 128;
const H = 192;
const plane = W * H;
const D = TINY.hidden + TINY.hidden2;

const pipelineFor = pipelineOpener(() => new RecordingFactory());
const checker = (): Float32Array => checkerboard(W, H, 16);

const base = (over: Partial<GenerateParams> = {}): GenerateParams => ({
  prompt: "a photo of a lighthouse at dusk",
  negativePrompt: "blurry",
  width: W,
  height: H,
  samples: 1,
  steps: 2,
  guidanceScale: 6,
  seed: 77,
  clipSkip: 1,
  scheduler: "EulerDiscreteScheduler",
  controls: [{ name: "canny", image: checker(), scale: 0.8 }],
  guessMode: false,
  ...over,
});

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));
const floats = (t: ort.Tensor | undefined) => {
  if (!t) throw new Error("missing feed");
  return Array.from(readFloats(t));
};

/** Runs one text encoder of the folder directly: every output as float32. */
async function encoder(models: ModelSet, which: 1 | 2, text: string): Promise<Record<string, Float32Array>> {
  const path = (which === 1 ? models.folder.paths.textEncoder : models.folder.paths.textEncoder2) as string;
  const tokenizer = which === 1 ? models.folder.tokenizer : models.folder.tokenizer2;
  const s = await models.session(path);
  const io = textEncoderIo(s);
  const ids = tokenizer?.tokenize(text) as number[];
  const out = await s.session.run({ [io.ids.name]: idsTensor(io.ids, ids, [1, ids.length]) });
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, Float32Array.from(readFloats(t))]));
}

/** diffusers' SDXL prompt embedding: hidden_states[-(clipSkip + 1)] of both encoders, concatenated per token. */
async function expectedEmbeds(models: ModelSet, text: string, clipSkip = 1) {
  const a = await encoder(models, 1, text);
  const b = await encoder(models, 2, text);
  const index = TINY.layers + 1 - (clipSkip + 1);
  const ha = a[`hidden_states.${index}`] as Float32Array;
  const hb = b[`hidden_states.${index}`] as Float32Array;
  const out: number[] = [];
  for (let t = 0; t < TINY.seqLen; t++) {
    out.push(...ha.subarray(t * TINY.hidden, (t + 1) * TINY.hidden));
    out.push(...hb.subarray(t * TINY.hidden2, (t + 1) * TINY.hidden2));
  }
  return { embeds: out, pooled: Array.from(b.text_embeds as Float32Array) };
}

describe("SDXL exports", () => {
  const dir = tinyModel({ sdxl: true, controlnets: ["canny", "depth"] });
  const { pipeline, models, factory } = pipelineFor(dir);
  const p = models.folder.paths;
  const canny = () => models.controlNetPath("canny");

  it("are recognised from the sessions' inputs and outputs (no flag)", async () => {
    expect(p.textEncoder2).toMatch(/text_encoder_2/);
    expect(models.folder.scalingFactor).toBe(0.13025);
    const t2 = models.folder.tokenizer2;
    expect(t2?.padId).not.toBe(t2?.eosId); // tokenizer_2 pads with "!"
    expect(t2?.tokenize("a cat").at(-1)).toBe(t2?.padId);
    expect(models.folder.tokenizer.padId).toBe(models.folder.tokenizer.eosId);
    const unet = unetIo(await models.session(p.unet));
    expect(unet.added?.textEmbeds).toMatchObject({
      name: "text_embeds",
      type: "float32",
      shape: ["batch", TINY.projection],
    });
    expect(unet.added?.timeIds).toMatchObject({ name: "time_ids", shape: ["batch", 6] });
    expect(unet.encoderHiddenStates.shape).toEqual(["batch", TINY.seqLen, D]);
    expect(unet.down).toHaveLength(9);
    const cn = controlNetIo(await models.session(canny()));
    expect(cn.added?.textEmbeds.name).toBe("text_embeds");
    expect(cn.down).toHaveLength(9);
    const te2 = textEncoderIo(await models.session(p.textEncoder2 as string));
    expect(te2.textEmbeds).toBe("text_embeds");
    expect(te2.lastHidden).toBe("last_hidden_state");
    expect(te2.hiddenStates).toHaveLength(TINY.layers + 1);
    expect(textEncoderIo(await models.session(p.textEncoder)).textEmbeds).toBeNull();
    // An SD 1.5 folder has none of it.
    const sd = pipelineFor(tinyModel()).models;
    expect(sd.folder.paths.textEncoder2).toBeNull();
    expect(sd.folder.scalingFactor).toBe(0.18215);
    expect(unetIo(await sd.session(sd.folder.paths.unet)).added).toBeNull();
  });

  it("feeds the UNet and ControlNet both encoders' penultimate states, pooled text_embeds and size time_ids ([negative, positive])", async () => {
    factory.clear();
    await pipeline.generate(base({ samples: 2, steps: 1 }));
    const pos = await expectedEmbeds(models, "a photo of a lighthouse at dusk");
    const neg = await expectedEmbeds(models, "blurry");
    for (const path of [p.unet, canny()]) {
      const feeds = factory.last(path);
      const ehs = feeds.encoder_hidden_states as ort.Tensor;
      expect(ehs.dims).toEqual([4, TINY.seqLen, D]);
      const got = floats(ehs);
      const n = TINY.seqLen * D;
      const want = [...neg.embeds, ...neg.embeds, ...pos.embeds, ...pos.embeds];
      let worst = 0;
      for (let i = 0; i < 4 * n; i++)
        worst = Math.max(worst, Math.abs((got[i] as number) - (want[i] as number)));
      expect(worst).toBe(0);
      expect(feeds.text_embeds?.dims).toEqual([4, TINY.projection]);
      expect(floats(feeds.text_embeds)).toEqual([...neg.pooled, ...neg.pooled, ...pos.pooled, ...pos.pooled]);
      expect(feeds.time_ids?.dims).toEqual([4, 6]);
      expect(floats(feeds.time_ids)).toEqual(Array(4).fill([H, W, 0, 0, H, W]).flat());
    }
  });

  it("an empty negative prompt gives zero negative embeddings and pooled embeddings (force_zeros_for_empty_prompt)", async () => {
    factory.clear();
    await pipeline.generate(base({ negativePrompt: "", steps: 1 }));
    const pos = await expectedEmbeds(models, "a photo of a lighthouse at dusk");
    const feeds = factory.last(p.unet);
    expect(floats(feeds.encoder_hidden_states)).toEqual([...Array(TINY.seqLen * D).fill(0), ...pos.embeds]);
    expect(floats(feeds.text_embeds)).toEqual([...Array(TINY.projection).fill(0), ...pos.pooled]);
  });

  it("with force_zeros_for_empty_prompt false, the empty negative prompt is encoded", async () => {
    const copy = mkdtempSync(join(tmpdir(), "sdxl-nozeros-"));
    cpSync(dir, copy, { recursive: true });
    writeFileSync(join(copy, "model_index.json"), JSON.stringify({ force_zeros_for_empty_prompt: false }));
    const other = pipelineFor(copy);
    await other.pipeline.generate(base({ negativePrompt: "", steps: 1 }));
    const empty = await expectedEmbeds(other.models, "");
    const feeds = other.factory.last(other.models.folder.paths.unet);
    expect(floats(feeds.text_embeds).slice(0, TINY.projection)).toEqual(empty.pooled);
    expect(empty.pooled.some((v) => v !== 0)).toBe(true);
  });

  it("clip_skip k takes hidden_states[-(k + 1)] of both encoders, without a final layer norm", async () => {
    factory.clear();
    await pipeline.generate(base({ clipSkip: 2, guidanceScale: 1, steps: 1 }));
    const want = await expectedEmbeds(models, "a photo of a lighthouse at dusk", 2);
    const feeds = factory.last(p.unet);
    expect(feeds.encoder_hidden_states?.dims).toEqual([1, TINY.seqLen, D]);
    expect(floats(feeds.encoder_hidden_states)).toEqual(want.embeds);
    expect(floats(feeds.text_embeds)).toEqual(want.pooled);
  });

  it("guess_mode: the ControlNet gets the positive half of every conditioning input", async () => {
    factory.clear();
    await pipeline.generate(base({ guessMode: true, steps: 1 }));
    const pos = await expectedEmbeds(models, "a photo of a lighthouse at dusk");
    const cn = factory.last(canny());
    expect(cn.encoder_hidden_states?.dims).toEqual([1, TINY.seqLen, D]);
    expect(floats(cn.text_embeds)).toEqual(pos.pooled);
    expect(floats(cn.time_ids)).toEqual([H, W, 0, 0, H, W]);
    expect(factory.last(p.unet).text_embeds?.dims).toEqual([2, TINY.projection]);
  });

  it("is deterministic, and the prompt, the pooled embeddings' source, guidance and ControlNets change the output", async () => {
    const a = await pipeline.generate(base());
    const b = await pipeline.generate(base());
    expect(a.images[0]).toHaveLength(plane * 3);
    expect(same(a.images[0] as Uint8Array, b.images[0] as Uint8Array)).toBe(true);
    for (const over of [
      { seed: 78 },
      { prompt: "a red dog" },
      { negativePrompt: "" },
      { guidanceScale: 1 },
      { controls: [{ name: "depth", image: checker(), scale: 0.8 }] },
      {
        controls: [
          { name: "canny", image: checker(), scale: 0.8 },
          { name: "depth", image: checker(), scale: 0.5 },
        ],
      },
    ]) {
      const c = await pipeline.generate(base(over));
      expect(same(a.images[0] as Uint8Array, c.images[0] as Uint8Array), JSON.stringify(over)).toBe(false);
    }
  });

  it("runs img2img, and the UNet alone gets zero residuals at SDXL's levels (mid at latent/4)", async () => {
    const init = new Float32Array(3 * plane).fill(0.3);
    const out = await pipeline.generate(base({ steps: 4, init: { image: init, strength: 0.5 } }));
    expect(out.steps).toHaveLength(2);
    factory.clear();
    await pipeline.generate(base({ controls: [], steps: 1 }));
    const feeds = factory.last(p.unet);
    expect(feeds.mid_block_additional_residual?.dims).toEqual([2, TINY.base * 4, H / 32, W / 32]);
    expect(feeds.down_block_additional_residual_8?.dims).toEqual([2, TINY.base * 4, H / 32, W / 32]);
  });

  it("takes fp16 tensors, int64 ids and int64 timesteps", async () => {
    const fp16 = pipelineFor(
      tinyModel({ sdxl: true, float: "float16", ids: "int64", timestep: "int64", controlnets: ["canny"] }),
    );
    const unet = unetIo(await fp16.models.session(fp16.models.folder.paths.unet));
    expect(unet.added?.textEmbeds.type).toBe("float16");
    const a = await fp16.pipeline.generate(base());
    const b = await fp16.pipeline.generate(base());
    expect(same(a.images[0] as Uint8Array, b.images[0] as Uint8Array)).toBe(true);
    expect(fp16.factory.last(fp16.models.folder.paths.unet).time_ids?.type).toBe("float16");
  });

  it("an SD 1.5 ControlNet next to an SDXL UNet, or an SDXL UNet without text_encoder_2, is a resource error", async () => {
    const copy = mkdtempSync(join(tmpdir(), "sdxl-mixed-"));
    cpSync(dir, copy, { recursive: true });
    cpSync(join(tinyModel(), "controlnet", "canny"), join(copy, "controlnet", "sd15"), { recursive: true });
    const mixed = pipelineFor(copy);
    await expect(
      mixed.pipeline.generate(base({ controls: [{ name: "sd15", image: checker(), scale: 1 }] })),
    ).rejects.toMatchObject({ kind: "resource" });
    rmSync(join(copy, "text_encoder_2"), { recursive: true });
    const noSecond = pipelineFor(copy);
    await expect(noSecond.pipeline.generate(base())).rejects.toMatchObject({
      kind: "resource",
      message: expect.stringContaining("text_encoder_2"),
    });
  });
});

describe("SDXL worker: queue message to stored PNG (fauxqs SQS + S3)", () => {
  const aws = useWorkerAws();

  const job = (jobId: string, request: Partial<WorkerJobMessage["request"]> = {}): WorkerJobMessage => ({
    jobId,
    tenantId: "tenant-a",
    attempt: 1,
    outputsPrefix: `tenant-a/${jobId}`,
    request: {
      model_id: "sdxl",
      controlnet_model: "canny",
      controlnet_type: "canny",
      prompt: "a photo of a lighthouse at dusk",
      control_image: aws.control,
      base64: "yes",
      auto_hint: "yes",
      width: 256,
      height: 192,
      num_inference_steps: 3,
      seed: 11,
      scheduler: "EulerDiscreteScheduler",
      ...request,
    } as WorkerJobMessage["request"],
  });

  async function nextResult(queueUrl: string): Promise<ResultMessage> {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const out = await aws.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1, MaxNumberOfMessages: 1 }),
      );
      const m = out.Messages?.[0];
      if (m) return resultMessageSchema.parse(JSON.parse(m.Body ?? ""));
    }
    throw new Error("no result message");
  }

  async function png(key: string): Promise<Buffer> {
    const object = await aws.s3.send(new GetObjectCommand({ Bucket: "outputs", Key: key }));
    expect(object.ContentType).toBe("image/png");
    return Buffer.from(
      await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  }

  it("runs SDXL jobs end to end; the same request gives the same PNG bytes, another seed does not", async () => {
    const fallback = aws.fauxqs.createQueue("sdxl-fallback", { attributes: { VisibilityTimeout: "30" } });
    const results = aws.fauxqs.createQueue("sdxl-results");
    const worker = await startWorker({
      fallbackQueueUrl: fallback.queueUrl,
      resultsQueueUrl: results.queueUrl,
      outputsBucket: "outputs",
      modelDir: modelRoot({ sdxl: tinyModel({ sdxl: true, controlnets: ["canny"] }) }),
      catalog: [tinyEntry("sdxl", { kind: "sdxl", controlnets: ["canny"] })],
      executionProvider: "cpu",
      endpoints: {
        sqs: aws.fauxqs.address,
        s3: aws.fauxqs.address,
        region: aws.region,
        credentials: aws.credentials,
      },
      createScheduler: testSchedulers,
      fetchImage: async (url) => {
        throw new Error(`no network in tests: ${url}`);
      },
      log: captureLog().log,
      healthPort: null,
      threads: 1,
      service: { waitTimeSeconds: 1, heartbeatSeconds: 1, visibilityTimeoutSeconds: 30 },
    });
    try {
      const outputs: Buffer[] = [];
      for (const [id, over] of [
        ["sdxl-a", { negative_prompt: "blurry", clip_skip: 2 }],
        ["sdxl-b", { negative_prompt: "blurry", clip_skip: 2 }],
        ["sdxl-c", { negative_prompt: "blurry", clip_skip: 2, seed: 12 }],
      ] as const) {
        await aws.sqs.send(
          new SendMessageCommand({ QueueUrl: fallback.queueUrl, MessageBody: JSON.stringify(job(id, over)) }),
        );
        const result = await nextResult(results.queueUrl);
        expect(result).toMatchObject({ jobId: id, source: "worker" });
        if (result.result.kind !== "done") throw new Error(JSON.stringify(result));
        expect(result.result.outputs).toEqual([{ kind: "url", url: `s3://outputs/tenant-a/${id}/0.png` }]);
        const image = await png(`tenant-a/${id}/0.png`);
        expect(await sharp(image).metadata()).toMatchObject({ format: "png", width: 256, height: 192 });
        outputs.push(image);
      }
      expect(outputs[0]?.equals(outputs[1] as Buffer)).toBe(true);
      expect(outputs[0]?.equals(outputs[2] as Buffer)).toBe(false);
      expect(worker.service.health().completed).toBe(3);
    } finally {
      await worker.stop();
    }
  });
});
