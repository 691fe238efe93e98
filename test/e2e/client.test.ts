import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalStack } from "../../local/stack.ts";
import {
  ApiError,
  AuthenticationError,
  type ControlNetClient,
  createClient,
  InvalidInputError,
  InvalidRequestError,
  type Job,
  JobFailedError,
  NotFoundError,
  type Progress,
  verifyWebhook,
  WebhookVerificationError,
} from "../../packages/client/src/index.ts";
import { sniffImage } from "../../shared/domain/image-sniff.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { waitFor } from "../support/wait.ts";
import { type Delivery, startWebhookReceiver } from "../support/webhook-receiver.ts";

/**
 * The typed client (packages/client) against the local stack: the ModelsLab simulator, the real
 * emulators, and a webhook receiver of the test's own.
 */

let stack: LocalStack;
let tenant: TestClient;
let lister: TestClient;
let api: ControlNetClient;
let receiver: Awaited<ReturnType<typeof startWebhookReceiver>>;
let workDir: string;
let png: Buffer;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  const started = await startTestStack(["client-sdk", "client-lister"], {
    reconcileIntervalSeconds: 1,
    environment: {
      CHECK_MARGIN_SECONDS: "1",
      POLL_BASE_SECONDS: "1",
      POLL_MAX_SECONDS: "2",
      NOTIFY_RETRY_SCHEDULE_SECONDS: "1,1,1",
      NOTIFY_JITTER: "0",
    },
    provider: { kind: "simulator", options: { completionDelayMs: 50 } },
  });
  stack = started.stack;
  [tenant, lister] = started.clients as [TestClient, TestClient];
  api = createClient({ baseUrl: stack.url, apiKey: tenant.apiKey, timeoutMs: 10_000 });
  workDir = await mkdtemp(path.join(tmpdir(), "cn-client-"));
  // A control image with an edge for canny: a white square on black.
  png = await sharp({ create: { width: 64, height: 64, channels: 3, background: "#000" } })
    .composite([
      {
        input: await sharp({ create: { width: 32, height: 32, channels: 3, background: "#fff" } })
          .png()
          .toBuffer(),
        top: 16,
        left: 16,
      },
    ])
    .png()
    .toBuffer();
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await receiver?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

const request = (overrides: Record<string, unknown> = {}) => ({
  model_id: "sd15",
  controlnet_model: "canny",
  controlnet_type: "canny" as const,
  prompt: "a lighthouse at dusk",
  width: 64,
  height: 64,
  ...overrides,
});

/** Runs `body` with the simulator holding its jobs `processing` (no callback for a minute). */
async function withSlowProvider<T>(body: () => Promise<T>): Promise<T> {
  stack.simulator?.setOptions({ completionDelayMs: 60_000 });
  try {
    return await body();
  } finally {
    stack.simulator?.setOptions({ completionDelayMs: 50 });
  }
}

describe("typed client against the local stack", () => {
  it("runs a job from a Buffer: uploads it (Content-Type sniffed), waits with progress and returns images", async () => {
    const progress: Progress[] = [];
    const { job, outputs } = await api.jobs.run(
      { ...request(), control_image: png },
      { onProgress: (p) => progress.push(p), timeoutMs: 30_000, backoff: { initialMs: 50, maxMs: 200 } },
    );
    expect(job.status).toBe("succeeded");
    expect(job.request.control_image).toMatch(/^upload:[0-9a-f-]{36}$/);
    expect(outputs.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toMatchObject({ status: "succeeded", job: { id: job.id } });
    expect(progress.at(-1)?.attempts).toBe(job.attempts.length);
    expect(job.attempts.length).toBeGreaterThan(0);
    const elapsed = progress.map((p) => p.elapsedMs);
    expect(elapsed).toEqual([...elapsed].sort((a, b) => a - b));

    const image = await api.outputs.download(outputs[0] as (typeof outputs)[number]);
    const sniffed = sniffImage(image.bytes);
    expect(["image/png", "image/jpeg"]).toContain(sniffed.contentType);
  });

  it("runs a job from a file path, and a JPEG's upload is typed image/jpeg", async () => {
    const file = path.join(workDir, "sketch.jpg");
    await writeFile(file, await sharp(png).jpeg().toBuffer());
    const upload = await api.uploads.create({ path: file });
    expect(upload.headers["content-type"]).toBe("image/jpeg");

    const { job } = await api.jobs.run(
      { ...request(), control_image: { path: file } },
      { timeoutMs: 30_000 },
    );
    expect(job.status).toBe("succeeded");
    expect(job.request.control_image).toMatch(/^upload:/);
  });

  it("refuses a local file that is not an image, before anything is sent", async () => {
    const file = path.join(workDir, "notes.txt");
    await writeFile(file, "not an image");
    await expect(api.jobs.run({ ...request(), control_image: { path: file } })).rejects.toBeInstanceOf(
      InvalidInputError,
    );
    await expect(
      api.jobs.run({ ...request(), control_image: { path: path.join(workDir, "missing.png") } }),
    ).rejects.toBeInstanceOf(InvalidInputError);
  });

  it("creates, reads and cancels a job; a second cancel is a typed 409", async () => {
    await withSlowProvider(async () => {
      const created = await api.jobs.create(
        { ...request(), control_image: (await api.uploads.create(png)).image },
        { idempotencyKey: "client-e2e-cancel" },
      );
      expect(created.status).toBe("queued");
      expect(
        await api.jobs.create(request({ control_image: created.request.control_image }), {
          idempotencyKey: "client-e2e-cancel",
        }),
      ).toMatchObject({ id: created.id });
      const read = await api.jobs.get(created.id);
      expect(read.id).toBe(created.id);
      const cancelled = await api.jobs.cancel(created.id);
      expect(cancelled.status).toBe("cancelled");
      const again = await api.jobs.cancel(created.id).catch((error: unknown) => error);
      expect(again).toBeInstanceOf(ApiError);
      expect(again).toMatchObject({ code: "JOB_ALREADY_TERMINAL", status: 409, kind: "conflict" });
    });
  });

  it("gives up a wait when its signal aborts, with the signal's reason", async () => {
    await withSlowProvider(async () => {
      const job = await api.jobs.create({
        ...request(),
        control_image: (await api.uploads.create(png)).image,
      });
      const controller = new AbortController();
      const reason = new Error("caller gave up");
      const seen: Progress[] = [];
      const waiting = api.jobs.wait(job.id, {
        signal: controller.signal,
        backoff: { initialMs: 50, maxMs: 50 },
        onProgress: (p) => {
          seen.push(p);
          // Abort once the job is seen running on the provider (or still queued after two reads).
          if (p.status === "processing" || seen.length >= 2) controller.abort(reason);
        },
      });
      await expect(waiting).rejects.toBe(reason);
      expect(seen.length).toBeGreaterThan(0);
      expect(["queued", "processing"]).toContain(seen.at(-1)?.status);
      await api.jobs.cancel(job.id);
    });
  });

  it("throws JobFailedError with the job when a run ends cancelled", async () => {
    await withSlowProvider(async () => {
      const upload = await api.uploads.create(png);
      const controller = new AbortController();
      const running = api.jobs.run(
        { ...request(), control_image: upload.image },
        {
          signal: controller.signal,
          backoff: { initialMs: 50, maxMs: 100 },
          onProgress: (p) => {
            if (p.job.status !== "cancelled" && p.job.status !== "succeeded") {
              void api.jobs.cancel(p.job.id).catch(() => undefined);
            }
          },
        },
      );
      const error = await running.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(JobFailedError);
      expect((error as JobFailedError).code).toBe("JOB_CANCELLED");
      expect((error as JobFailedError).job.status).toBe("cancelled");
    });
  });

  it("iterates every job over several pages, and reads a single page", async () => {
    const calls: string[] = [];
    const other = createClient({
      baseUrl: stack.url,
      apiKey: lister.apiKey,
      fetch: (url, init) => {
        calls.push(`${init.method} ${url}`);
        return fetch(url, init);
      },
    });
    await withSlowProvider(async () => {
      const ids: string[] = [];
      for (let seed = 0; seed < 5; seed++) {
        ids.push((await other.jobs.create(request({ seed, control_image: "http://127.0.0.1:9/x.png" }))).id);
      }
      const seen: string[] = [];
      calls.length = 0;
      for await (const job of other.jobs.list({ limit: 2 })) seen.push(job.id);
      expect(seen).toEqual([...ids].reverse());
      // Three pages of 2, 2 and 1, each read as the iteration reached it.
      expect(calls).toHaveLength(3);
      const page = await other.jobs.listPage({ limit: 2 });
      expect(page.jobs.map((j) => j.id)).toEqual([ids[4], ids[3]]);
      expect(page.next_cursor).toEqual(expect.any(String));
      const next = await other.jobs.listPage({ limit: 2, cursor: page.next_cursor as string });
      expect(next.jobs.map((j) => j.id)).toEqual([ids[2], ids[1]]);
      for (const id of ids) await other.jobs.cancel(id).catch(() => undefined);
      const cancelled: Job[] = [];
      for await (const job of other.jobs.list({ status: "cancelled", limit: 3 })) cancelled.push(job);
      expect(cancelled.every((job) => job.status === "cancelled")).toBe(true);
    });
  });

  it("answers typed errors with the API's codes: 400 with details, 404, 401", async () => {
    const invalid = await api.jobs
      .create({ ...request(), width: 4096, control_image: "http://127.0.0.1:9/x.png" })
      .catch((e: unknown) => e);
    expect(invalid).toBeInstanceOf(InvalidRequestError);
    expect(invalid).toMatchObject({ code: "VALIDATION_FAILED", status: 400, kind: "invalid_input" });
    expect((invalid as ApiError).details.map((d) => d.path)).toContain("width");

    const missing = await api.jobs.get("01ARZ3NDEKTSV4RRFFQ69G5FAV").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing).toMatchObject({ code: "JOB_NOT_FOUND", status: 404 });

    const stranger = createClient({ baseUrl: stack.url, apiKey: "cn_not_a_key_at_all_000000000000" });
    await expect(stranger.jobs.get("01ARZ3NDEKTSV4RRFFQ69G5FAV")).rejects.toBeInstanceOf(AuthenticationError);
  });

  it("lists and replays notifications, rotates the secret and verifies a real delivery with both secrets", async () => {
    const old = tenant.webhookSecret;
    expect(await api.webhook.setUrl(`${receiver.url}/client`)).toEqual({ url: `${receiver.url}/client` });
    const rotated = await api.webhook.rotateSecret();
    expect(rotated.secret).toMatch(/^whsec_/);
    const settings = await api.webhook.get();
    expect(settings.url).toBe(`${receiver.url}/client`);
    expect(settings.secrets.length).toBeGreaterThanOrEqual(2);

    const { job } = await api.jobs.run({ ...request(), control_image: png }, { timeoutMs: 30_000 });
    const deliveries = () => receiver.deliveries.filter((d) => d.path === "/client");
    const [delivery] = await waitFor(() => (deliveries().length >= 1 ? deliveries() : null), {
      what: "the delivery",
      timeoutMs: 30_000,
    });
    const { body, headers } = delivery as Delivery;

    const event = api.webhooks.verify(body, headers, [rotated.secret]);
    expect(event).toMatchObject({ type: "job.succeeded", data: { id: job.id, status: "succeeded" } });
    expect(verifyWebhook(body, headers, old).data.id).toBe(job.id);
    expect(
      verifyWebhook(body, new Headers(headers as Record<string, string>), ["whsec_AAAA", rotated.secret])
        .type,
    ).toBe("job.succeeded");
    const stranger = `whsec_${Buffer.alloc(24, 7).toString("base64")}`;
    expect(() => verifyWebhook(body, headers, [stranger])).toThrow(WebhookVerificationError);
    expect(() => verifyWebhook(body.replace(job.id, `${job.id}x`), headers, [rotated.secret])).toThrow(
      WebhookVerificationError,
    );

    const listed = await api.notifications.list(job.id);
    expect(listed.notifications).toEqual([
      expect.objectContaining({
        id: delivery?.headers["webhook-id"],
        type: "job.succeeded",
        state: "delivered",
      }),
    ]);
    const replayed = await api.notifications.replay(job.id);
    expect(replayed.notifications.map((n) => n.state)).toEqual(["pending"]);
    const [, again] = await waitFor(() => (deliveries().length >= 2 ? deliveries() : null), {
      what: "the replayed delivery",
      timeoutMs: 30_000,
    });
    expect(again?.headers["webhook-id"]).toBe(delivery?.headers["webhook-id"]);
    expect(api.webhooks.verify(again?.body as string, again?.headers ?? {}, rotated.secret).data.id).toBe(
      job.id,
    );
    await api.webhook.setUrl(null);
  });

  it("lists the self-hosted catalog's models and what each can do", async () => {
    const models = await api.models.list();
    expect(models.self_hosted.map((m) => m.model_id)).toEqual(["sd15"]);
    expect(models.self_hosted[0]?.sizes.multiple_of).toBe(64);
    expect(models.providers.modelslab.model_ids).toBe("any");
  });

  it("creates, lists and revokes API keys (the key shown once, gone from the list once revoked)", async () => {
    const created = await api.apiKeys.create({ name: "ci" });
    expect(created.key).toEqual(expect.any(String));
    const listed = await api.apiKeys.list();
    expect(listed.api_keys).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: created.id, name: "ci" })]),
    );
    expect(JSON.stringify(listed)).not.toContain(created.key);
    const withNewKey = createClient({ baseUrl: stack.url, apiKey: created.key });
    expect((await withNewKey.apiKeys.list()).api_keys.length).toBe(listed.api_keys.length);
    await api.apiKeys.revoke(created.id);
    // (The local gateway caches the authorizer's answer as API Gateway does, so the key itself may
    // still pass for a while: the listing is what changes at once.)
    expect((await api.apiKeys.list()).api_keys.map((k) => k.id)).not.toContain(created.id);
    await expect(api.apiKeys.revoke(created.id)).rejects.toMatchObject({ code: "API_KEY_NOT_FOUND" });
  });

  it("answers Prefer: wait with the finished job when it finishes in time", async () => {
    const upload = await api.uploads.create(png);
    const job = await api.jobs.create({ ...request(), control_image: upload.image }, { wait: 15 });
    expect(job.status).toBe("succeeded");
  });
});
