import { beforeEach, describe, expect, it, vi } from "vitest";
import { callbackToken } from "../../shared/domain/callback-token.ts";
import { NotFoundError, UnauthorizedError, ValidationError } from "../../shared/domain/errors.ts";
import { callbackNormalizers } from "../../shared/providers/registry.ts";
import { queues, type ResultMessage, resultMessageSchema } from "../../shared/schemas/messages.ts";
import { type ReceiveCallbackDeps, receiveCallback } from "../../shared/usecases/receive-callback.ts";
import { FakeClock, FakeQueue } from "../support/fakes.ts";

const SECRET = "callback-secret";
const JOB_ID = "01JQ0000000000000000000ABC";
/** A callback URL's own parts: ModelsLab's, for the job's first attempt. */
const issued = (jobId = JOB_ID, attempt = 0) => ({
  provider: "modelslab",
  jobId,
  attempt: String(attempt),
  token: callbackToken(SECRET, "modelslab", jobId, attempt),
});

const successBody = (trackId: unknown = JOB_ID) => ({
  status: "success",
  id: 9001,
  output: ["https://pub-x.r2.dev/a.png"],
  generationTime: 2.5,
  track_id: trackId,
  meta: { seed: 12 },
});

describe("receiveCallback", () => {
  let clock: FakeClock;
  let resultsQueue: FakeQueue<ResultMessage>;
  let deps: ReceiveCallbackDeps;

  beforeEach(() => {
    clock = new FakeClock();
    resultsQueue = new FakeQueue(queues.results);
    deps = { resultsQueue, clock, callbackSecret: SECRET, normalizers: callbackNormalizers(() => undefined) };
  });

  describe("token", () => {
    it.each([
      ["missing", undefined],
      ["empty", ""],
      ["wrong", "not-the-token"],
      ["minted with another secret", callbackToken("other-secret", "modelslab", JOB_ID, 0)],
      ["for another job", callbackToken(SECRET, "modelslab", "01JQ0000000000000000000XYZ", 0)],
      ["for another attempt", callbackToken(SECRET, "modelslab", JOB_ID, 1)],
      ["for another provider", callbackToken(SECRET, "self-hosted", JOB_ID, 0)],
    ])("rejects a %s token without reading the body", async (_name, token) => {
      const readBody = vi.fn(() => successBody());
      const error = await receiveCallback(deps, { ...issued(), token, readBody }).catch((e) => e);
      expect(error).toBeInstanceOf(UnauthorizedError);
      expect(readBody).not.toHaveBeenCalled();
      expect(resultsQueue.sent).toHaveLength(0);
    });

    it.each([
      ["missing", undefined],
      ["not a number", "x"],
      ["negative", "-1"],
      ["out of bounds", "123456"],
      ["another attempt than the token's", "1"],
    ])("rejects a %s attempt without reading the body", async (_name, attempt) => {
      const readBody = vi.fn(() => successBody());
      const error = await receiveCallback(deps, { ...issued(), attempt, readBody }).catch((e) => e);
      expect(error).toBeInstanceOf(UnauthorizedError);
      expect(readBody).not.toHaveBeenCalled();
    });
  });

  it.each([
    ["a provider that does not call back", "self-hosted"],
    ["no provider of this deployment", "replicate"],
  ])("answers 404 for %s, before the token or the body", async (_name, provider) => {
    const readBody = vi.fn(() => successBody());
    const error = await receiveCallback(deps, { ...issued(), provider, readBody }).catch((e) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect(readBody).not.toHaveBeenCalled();
    expect(resultsQueue.sent).toHaveLength(0);
  });

  it("rejects a track_id that names another job and queues nothing", async () => {
    const error = await receiveCallback(deps, {
      ...issued(),
      readBody: () => successBody("01JQ0000000000000000000XYZ"),
    }).catch((e) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).code).toBe("TRACK_ID_MISMATCH");
    expect(resultsQueue.sent).toHaveLength(0);
  });

  it("rejects a callback without any track_id", async () => {
    const { track_id: _, ...body } = successBody();
    const error = await receiveCallback(deps, {
      ...issued(),
      readBody: () => body,
    }).catch((e) => e);
    expect((error as ValidationError).code).toBe("TRACK_ID_MISMATCH");
    expect(resultsQueue.sent).toHaveLength(0);
  });

  describe("a numeric track_id (the v5 API types it as an integer)", () => {
    const call = (jobId: string, trackId: unknown) =>
      receiveCallback(deps, {
        ...issued(jobId),
        readBody: () => successBody(trackId),
      });

    it("is accepted when its decimal form is the job id", async () => {
      expect(await call("123456", 123456)).toBe("queued");
      expect(resultsQueue.sent).toHaveLength(1);
    });

    it.each([
      ["leading zeros lost", "00123", 123],
      ["a different number", "123456", 123457],
      ["precision lost past 2^53", "18446744073709551617", Number("18446744073709551617")],
      ["a fraction", "12", 12.5],
    ])("is refused when it does not normalise equal (%s)", async (_name, jobId, trackId) => {
      const error = await call(jobId, trackId).catch((e) => e);
      expect((error as ValidationError).code).toBe("TRACK_ID_MISMATCH");
      expect(resultsQueue.sent).toHaveLength(0);
    });
  });

  it("queues one result message (source callback) naming the provider and attempt, for a finished job", async () => {
    const outcome = await receiveCallback(deps, {
      ...issued(),
      readBody: () => successBody(),
    });
    expect(outcome).toBe("queued");
    expect(resultsQueue.sent).toHaveLength(1);
    const sent = resultsQueue.sent[0];
    expect(sent?.options).toBeUndefined();
    expect(sent?.message).toEqual({
      jobId: JOB_ID,
      provider: "modelslab",
      attempt: 0,
      source: "callback",
      observedAt: clock.now().toISOString(),
      result: {
        kind: "done",
        providerId: "9001",
        outputs: [{ kind: "url", url: "https://pub-x.r2.dev/a.png" }],
        generationTimeSeconds: 2.5,
        seed: 12,
      },
    });
  });

  it("queues a provider failure as a rejected result", async () => {
    await receiveCallback(deps, {
      ...issued(),
      readBody: () => ({ status: "failed", id: 9001, message: "NSFW content", track_id: JOB_ID }),
    });
    expect(resultsQueue.sent[0]?.message.result).toMatchObject({
      kind: "rejected",
      providerId: "9001",
      retryable: false,
    });
  });

  it.each([
    [5, "https://pub-x.r2.dev/o"],
    [15_000, "https://pub-x.r2.dev/output-image-with-a-long-name"],
  ])(
    "queues a bounded refusal, not %i outputs, for a success naming more than any job asks for",
    async (count, base) => {
      const output = Array.from({ length: count }, (_, i) => `${base}-${i}.png`);
      expect(JSON.stringify(output).length).toBeGreaterThan(count > 100 ? 400_000 : 0);
      await receiveCallback(deps, {
        ...issued(),
        readBody: () => ({ ...successBody(), output }),
      });
      const sent = resultsQueue.sent[0]?.message;
      const message = resultMessageSchema.parse(sent);
      expect(message.result).toMatchObject({ kind: "rejected", providerId: "9001", retryable: false });
      expect(message.result.kind === "rejected" && message.result.reason).toContain(`${count} outputs`);
      expect(JSON.stringify(sent).length).toBeLessThan(2_048);
    },
  );

  it("queues a result whose output URLs are within the results queue's bounds", async () => {
    const long = `https://pub-x.r2.dev/${"a".repeat(5_000)}.png`;
    await receiveCallback(deps, {
      ...issued(),
      readBody: () => ({ ...successBody(), output: [long, "https://pub-x.r2.dev/b.png"] }),
    });
    const message = resultMessageSchema.parse(resultsQueue.sent[0]?.message);
    expect(message.result).toMatchObject({
      kind: "done",
      outputs: [{ kind: "url", url: "https://pub-x.r2.dev/b.png" }],
    });
  });

  it("acknowledges a processing notification and queues nothing", async () => {
    const outcome = await receiveCallback(deps, {
      ...issued(),
      readBody: () => ({ status: "processing", id: 9001, eta: 10, output: [], track_id: JOB_ID }),
    });
    expect(outcome).toBe("acknowledged");
    expect(resultsQueue.sent).toHaveLength(0);
  });
});
