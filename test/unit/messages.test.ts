import { describe, expect, it } from "vitest";
import { FUNCTIONS } from "../../infra/functions.ts";
import { MAX_PROVIDER_ID_CHARS, MAX_SAMPLES, OUTPUT_LIMITS } from "../../shared/domain/job.ts";
import {
  dispatchMessageSchema,
  notifyMessageSchema,
  queues,
  resultMessageSchema,
} from "../../shared/schemas/messages.ts";
import { workerJobQueue } from "../../shared/schemas/worker-job.ts";
import { bundledInputs } from "../support/bundle.ts";

const issues = (result: { error?: { issues: Array<{ path: PropertyKey[]; message: string }> } }) =>
  result.error?.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`) ?? [];

describe("queue message schemas (zod/mini)", () => {
  it("parse as classic zod did: unknown keys stripped, optional fields left out", () => {
    expect(dispatchMessageSchema.parse({ jobId: "01J", extra: 1 })).toEqual({ jobId: "01J" });
    expect(dispatchMessageSchema.parse({ jobId: "01J", admittedBy: "modelslab" })).toEqual({
      jobId: "01J",
      admittedBy: "modelslab",
    });
    const result = {
      jobId: "01J",
      provider: "self-hosted",
      attempt: 1,
      source: "worker",
      observedAt: "2024-05-01T12:00:00.000Z",
      result: {
        kind: "done",
        providerId: null,
        outputs: [{ kind: "url", url: "https://x/1.png", more: true }],
        generationTimeSeconds: 1.5,
        seed: null,
      },
    };
    expect(resultMessageSchema.parse(result)).toEqual({
      ...result,
      result: { ...result.result, outputs: [{ kind: "url", url: "https://x/1.png" }] },
    });
    const delivery = {
      kind: "delivery",
      jobId: "01J",
      notificationId: "n1",
      attempt: 2,
      roundStart: 1,
      notBefore: 1_714_564_800,
    };
    expect(notifyMessageSchema.parse(delivery)).toEqual(delivery);
  });

  it("name every problem in English, with classic zod's messages and paths", () => {
    expect(issues(dispatchMessageSchema.safeParse({ jobId: "", admittedBy: 1.5 }))).toEqual([
      "jobId: Too small: expected string to have >=1 characters",
      'admittedBy: Invalid option: expected one of "modelslab"|"self-hosted"',
    ]);
    expect(
      issues(
        resultMessageSchema.safeParse({
          jobId: "x".repeat(65),
          provider: "elsewhere",
          attempt: -1,
          source: "elsewhere",
          observedAt: "2024-05-01",
          result: { kind: "maybe" },
        }),
      ),
    ).toEqual([
      "jobId: Too big: expected string to have <=64 characters",
      'provider: Invalid option: expected one of "modelslab"|"self-hosted"',
      "attempt: Too small: expected number to be >=0",
      'source: Invalid option: expected one of "callback"|"reconcile"|"dispatch"|"worker"',
      "observedAt: Invalid ISO datetime",
      "result.kind: Invalid discriminator value. Expected 'done' | 'rejected'",
    ]);
    expect(
      issues(
        notifyMessageSchema.safeParse({
          kind: "delivery",
          jobId: "01J",
          notificationId: "n1",
          attempt: 0,
          roundStart: 1,
          notBefore: "soon",
        }),
      ),
    ).toEqual([
      "attempt: Too small: expected number to be >=1",
      "notBefore: Invalid input: expected number, received string",
    ]);
  });

  it("bound a result's outputs, so the largest message fits SQS and the job item that keeps it", () => {
    const message = (outputs: unknown[], providerId: string | null = null) => ({
      jobId: "01J",
      provider: "modelslab",
      attempt: 0,
      source: "callback",
      observedAt: "2024-05-01T12:00:00.000Z",
      result: { kind: "done", providerId, outputs, generationTimeSeconds: 1, seed: 1 },
    });
    const url = (chars: number) => ({ kind: "url", url: `https://x/${"u".repeat(chars - 10)}` });
    const inline = (chars: number) => ({ kind: "base64", data: "A".repeat(chars) });

    const largest = message(
      Array.from({ length: MAX_SAMPLES }, () => inline(OUTPUT_LIMITS.inlineChars)),
      "9".repeat(MAX_PROVIDER_ID_CHARS),
    );
    expect(resultMessageSchema.safeParse(largest).success).toBe(true);
    expect(JSON.stringify(largest).length).toBeLessThan(192 * 1024);
    expect(resultMessageSchema.safeParse(message([url(OUTPUT_LIMITS.urlChars)])).success).toBe(true);

    expect(
      issues(
        resultMessageSchema.safeParse(
          message(
            Array.from({ length: MAX_SAMPLES + 1 }, () => url(40)),
            "9".repeat(MAX_PROVIDER_ID_CHARS + 1),
          ),
        ),
      ),
    ).toEqual([
      `result.providerId: Too big: expected string to have <=${MAX_PROVIDER_ID_CHARS} characters`,
      `result.outputs: Too big: expected array to have <=${MAX_SAMPLES} items`,
    ]);
    expect(
      issues(
        resultMessageSchema.safeParse(
          message([url(OUTPUT_LIMITS.urlChars + 1), inline(OUTPUT_LIMITS.inlineChars + 1)]),
        ),
      ),
    ).toEqual([
      `result.outputs.0.url: Too big: expected string to have <=${OUTPUT_LIMITS.urlChars} characters`,
      `result.outputs.1.data: Too big: expected string to have <=${OUTPUT_LIMITS.inlineChars} characters`,
    ]);
  });

  it("check a fallback message's request for being an object on send, and in full where the worker reads it", () => {
    const message = {
      jobId: "01J",
      tenantId: "acme",
      attempt: 0,
      request: { model_id: "sd15" },
      outputsPrefix: "acme/01J",
    };
    // The senders pass the request on as the API validated it.
    expect(queues.fallback.schema.parse(message)).toEqual(message);
    expect(issues(queues.fallback.schema.safeParse({ ...message, request: ["sd15"] }))).toEqual([
      "request: must be a JSON object",
    ]);
    // The worker runs it: the seed schema's checks apply.
    expect(workerJobQueue.name).toBe(queues.fallback.name);
    expect(issues(workerJobQueue.schema.safeParse(message))).toEqual(
      expect.arrayContaining([expect.stringMatching(/^request.controlnet_model: /)]),
    );
  });

  it.each(["reconcile", "dispatch", "finalize", "notify"])(
    "keep classic zod and the seed schema out of the %s bundle",
    async (name) => {
      const inputs = await bundledInputs(`functions/${name}.ts`);
      expect(inputs.some((input) => input.includes("node_modules/zod/v4/mini/"))).toBe(true);
      expect(
        inputs.filter(
          (input) =>
            input.includes("node_modules/zod/v4/classic/") || input === "shared/schemas/controlnet.ts",
        ),
      ).toEqual([]);
    },
  );

  // Every schema a function builds is zod/mini (the API's request schemas too), so no bundle carries classic zod.
  it.each(FUNCTIONS.map((fn) => fn.entry))("keep classic zod out of the %s bundle", async (entry) => {
    const inputs = await bundledInputs(entry);
    expect(inputs.some((input) => input.includes("node_modules/zod/v4/mini/"))).toBe(true);
    expect(inputs.filter((input) => input.includes("node_modules/zod/v4/classic/"))).toEqual([]);
  });
});
