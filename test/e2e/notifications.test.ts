import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalStack } from "../../local/stack.ts";
import { startImageServer } from "../support/image-server.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";
import { waitFor } from "../support/wait.ts";
import { type Delivery, startWebhookReceiver } from "../support/webhook-receiver.ts";

let stack: LocalStack;
let client: TestClient;
let images: Awaited<ReturnType<typeof startImageServer>>;
let receiver: Awaited<ReturnType<typeof startWebhookReceiver>>;

beforeAll(async () => {
  images = await startImageServer();
  receiver = await startWebhookReceiver();
  const started = await startTestStack(["hooks"], {
    reconcileIntervalSeconds: 1,
    environment: {
      CHECK_MARGIN_SECONDS: "1",
      POLL_BASE_SECONDS: "1",
      POLL_MAX_SECONDS: "2",
      // The 5 s, 5 min, 30 min… schedule, compressed to seconds.
      NOTIFY_RETRY_SCHEDULE_SECONDS: "1,1,1,1,1,1,1",
      NOTIFY_JITTER: "0",
      // Every transition on the bus (the default publishes terminal states only).
      LIFECYCLE_EVENTS: "all",
    },
    provider: { kind: "simulator", options: { completionDelayMs: 50 } },
  });
  stack = started.stack;
  client = started.clients[0] as TestClient;
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await images?.stop();
  await receiver?.stop();
});

const submit = async (path: string, overrides: Record<string, unknown> = {}) => {
  const response = await client.request("POST", "/v1/jobs", {
    body: validJobRequest({
      control_image: images.url,
      width: 64,
      height: 64,
      webhook: `${receiver.url}${path}`,
      ...overrides,
    }),
  });
  expect(response.status).toBe(202);
  return response.body.id as string;
};
const deliveriesTo = (path: string) => receiver.deliveries.filter((d) => d.path === path);
const waitDeliveries = (path: string, count = 1): Promise<Delivery[]> =>
  waitFor(() => (deliveriesTo(path).length >= count ? deliveriesTo(path) : null), {
    what: `${count} deliveries to ${path}`,
    timeoutMs: 30_000,
  });
const verify = (delivery: Delivery, secret = client.webhookSecret) =>
  new Webhook(secret).verify(delivery.body, delivery.headers as Record<string, string>) as {
    type: string;
    data: {
      id: string;
      status: string;
      track_id: string | null;
      metadata: Record<string, string>;
      outputs: { url: string }[];
    };
  };

describe("client notifications", () => {
  it("delivers each terminal state once, signed per Standard Webhooks, with the job as GET shows it", async () => {
    const id = await submit("/ok", { track_id: "order-9", metadata: { plan: "pro" } });
    const [delivery] = await waitDeliveries("/ok");
    const event = verify(delivery as Delivery);
    expect(event.type).toBe("job.succeeded");
    expect(event.data).toMatchObject({
      id,
      status: "succeeded",
      track_id: "order-9",
      metadata: { plan: "pro" },
    });
    expect(event.data.outputs[0]?.url).toContain("X-Amz-Signature=");
    expect(delivery?.headers["webhook-id"]).toBe(`msg_${id}_succeeded`);

    const listed = await client.request("GET", `/v1/jobs/${id}/notifications`);
    expect(listed.body.notifications).toEqual([
      expect.objectContaining({
        type: "job.succeeded",
        state: "delivered",
        attempts: [expect.objectContaining({ attempt: 1, status: 200 })],
      }),
    ]);
    // Every state change was published as a lifecycle event.
    const types = stack.events
      .filter((e) => (e.detail as { job_id: string }).job_id === id)
      .map((e) => e.detailType);
    expect(types).toEqual(
      expect.arrayContaining(["job.queued", "job.processing", "job.storing", "job.succeeded"]),
    );
    expect(deliveriesTo("/ok")).toHaveLength(1);
  });

  it("retries a failing receiver and delivers on the fourth try under the same webhook-id", async () => {
    receiver.answer("/flaky", [500, 503, 502]);
    const id = await submit("/flaky");
    await waitFor(() => deliveriesTo("/flaky").some((d) => d.answered === 200), {
      what: "the fourth try",
      timeoutMs: 30_000,
    });
    const tries = deliveriesTo("/flaky");
    expect(tries.map((d) => d.answered)).toEqual([500, 503, 502, 200]);
    expect(new Set(tries.map((d) => d.headers["webhook-id"]))).toEqual(new Set([`msg_${id}_succeeded`]));
    for (const delivery of tries) expect(verify(delivery).data.id).toBe(id);
    const listed = await client.request("GET", `/v1/jobs/${id}/notifications`);
    expect(listed.body.notifications[0].state).toBe("delivered");
    expect(listed.body.notifications[0].attempts.map((a: { status: number }) => a.status)).toEqual([
      500, 503, 502, 200,
    ]);
  });

  it("stops retrying on 410 Gone, and replays on request with the same id", async () => {
    receiver.answer("/gone", [410]);
    const id = await submit("/gone");
    await waitFor(
      async () => {
        const listed = await client.request("GET", `/v1/jobs/${id}/notifications`);
        return listed.body.notifications[0]?.state === "gone";
      },
      { what: "state gone" },
    );
    expect(deliveriesTo("/gone")).toHaveLength(1);

    const replay = await client.request("POST", `/v1/jobs/${id}/notifications/replay`);
    expect(replay.status).toBe(202);
    await waitFor(() => deliveriesTo("/gone").length === 2, { what: "the replay" });
    const [first, second] = deliveriesTo("/gone");
    expect(second?.headers["webhook-id"]).toBe(first?.headers["webhook-id"]);
    expect(verify(second as Delivery).type).toBe("job.succeeded");
  });

  it("notifies cancellations, and job.processing when asked", async () => {
    const cancelled = await submit("/cancel", { deadline_seconds: 600 });
    const answer = await client.request("POST", `/v1/jobs/${cancelled}/cancel`);
    // The job may already have finished on the fast simulator: either way its terminal state is delivered.
    const [delivery] = await waitDeliveries("/cancel");
    expect(verify(delivery as Delivery).type).toBe(answer.status === 200 ? "job.cancelled" : "job.succeeded");

    const id = await submit("/processing", { notify_processing: true });
    await waitFor(() => deliveriesTo("/processing").length >= 2, { what: "two notifications" });
    expect(
      deliveriesTo("/processing")
        .map((d) => verify(d).type)
        .sort(),
    ).toEqual(["job.processing", "job.succeeded"]);
    expect(deliveriesTo("/processing").every((d) => verify(d).data.id === id)).toBe(true);
  });

  it("uses the tenant's default endpoint, and signs with both secrets during a rotation", async () => {
    const old = client.webhookSecret;
    expect(
      (await client.request("PUT", "/v1/webhook", { body: { url: `${receiver.url}/default` } })).status,
    ).toBe(200);
    const rotated = await client.request("POST", "/v1/webhook/secret/rotate");
    expect(rotated.status).toBe(201);
    expect(rotated.body.secret).toMatch(/^whsec_/);

    const response = await client.request("POST", "/v1/jobs", {
      body: validJobRequest({ control_image: images.url, width: 64, height: 64 }),
    });
    const [delivery] = await waitDeliveries("/default");
    expect(String(delivery?.headers["webhook-signature"]).split(" ")).toHaveLength(2);
    expect(verify(delivery as Delivery, rotated.body.secret).data.id).toBe(response.body.id);
    expect(verify(delivery as Delivery, old).data.id).toBe(response.body.id);
  });

  it("signs with every secret that concurrent rotations showed", async () => {
    const rotations = await Promise.all(
      Array.from({ length: 10 }, () => client.request("POST", "/v1/webhook/secret/rotate")),
    );
    expect(rotations.map((r) => r.status)).toEqual(Array(10).fill(201));
    const id = await submit("/rotated");
    const [delivery] = await waitDeliveries("/rotated");
    for (const rotated of rotations) {
      expect(verify(delivery as Delivery, rotated.body.secret).data.id).toBe(id);
    }
  });
});
