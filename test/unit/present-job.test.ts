import sharp from "sharp";
import { describe, expect, it } from "vitest";
import type { ControlNetRequest } from "../../shared/schemas/controlnet.ts";
import { presentJob } from "../../shared/usecases/present-job.ts";
import { stageInputs, uploadKey } from "../../shared/usecases/stage-inputs.ts";
import { buildJob, FakeClock, InMemoryObjectStore } from "../support/fakes.ts";

const UPLOAD_ID = "0b7c6f1e-2a3d-4e5f-8a9b-0c1d2e3f4a5b";

describe("presentJob", () => {
  it("shows staged images by the client's reference, never as s3:// URIs of our bucket", async () => {
    const clock = new FakeClock();
    const inputs = new InMemoryObjectStore("inputs-bucket");
    await inputs.put(uploadKey("tenant-a", UPLOAD_ID), Buffer.from("x"), { contentType: "image/png" });
    const png = await sharp({ create: { width: 4, height: 4, channels: 3, background: "#000" } })
      .png()
      .toBuffer();
    const job = buildJob(clock);
    const request = await stageInputs(
      { inputs, inputsBucket: "inputs-bucket", policy: { mode: "local" }, resolve: async () => [] },
      job.tenantId,
      job.id,
      {
        ...job.request,
        init_image: `upload:${UPLOAD_ID}`,
        control_image: png.toString("base64"),
        mask_image: "https://images.example.com/mask.png",
        base64: "yes",
      } as ControlNetRequest,
    );
    expect(request.init_image).toMatch(/^s3:\/\//);

    const shown = presentJob({ ...job, request });

    expect(shown.request).toMatchObject({
      init_image: `upload:${UPLOAD_ID}`,
      control_image: "inline:control_image.png",
      mask_image: "https://images.example.com/mask.png",
      prompt: job.request.prompt,
    });
    expect(JSON.stringify(shown)).not.toContain("s3://");
  });

  it("echoes the job's webhook, deadline and notify_processing, and shows the seed and NSFW flag", () => {
    const clock = new FakeClock();
    const created = clock.now().getTime();
    const job = buildJob(clock, {
      status: "succeeded",
      webhook: "https://client.example/hook",
      deadlineAt: new Date(created + 900_000).toISOString(),
      notifyProcessing: true,
      seed: 4_000_000_001,
      nsfwContentDetected: false,
    });
    expect(presentJob(job)).toMatchObject({
      webhook: "https://client.example/hook",
      deadline_seconds: 900,
      notify_processing: true,
      seed: 4_000_000_001,
      nsfw_content_detected: false,
    });

    // A job still running, which asked for nothing optional: nulls and false, never missing keys.
    const plain = buildJob(clock, { webhook: null });
    expect(presentJob(plain)).toMatchObject({
      webhook: null,
      deadline_seconds: 3600,
      notify_processing: false,
      seed: null,
      nsfw_content_detected: null,
    });
  });
});
