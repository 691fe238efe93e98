import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalStack } from "../../local/stack.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";
import { waitFor } from "../support/wait.ts";
import { startWebhookReceiver } from "../support/webhook-receiver.ts";

/** Debian's package (`.ci/run` installs it); CHROMIUM_PATH points elsewhere. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Screenshots to look at (gitignored). */
const SHOTS = resolve(import.meta.dirname, "screenshots");
const TERMINAL = ["succeeded", "failed", "cancelled"];

let stack: LocalStack;
let client: TestClient;
let receiver: Awaited<ReturnType<typeof startWebhookReceiver>>;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let consoleUrl: string;
let controlImage: string;

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  receiver = await startWebhookReceiver();
  const started = await startTestStack(["console"], {
    environment: {
      CHECK_MARGIN_SECONDS: "1",
      POLL_BASE_SECONDS: "1",
      POLL_MAX_SECONDS: "2",
      NOTIFY_RETRY_SCHEDULE_SECONDS: "1,1,1",
      NOTIFY_JITTER: "0",
    },
    // Long enough that the page sees the jobs unfinished first, then finishing without a reload.
    provider: { kind: "simulator", options: { completionDelayMs: 4000 } },
  });
  stack = started.stack;
  client = started.clients[0] as TestClient;
  consoleUrl = `${stack.url}/console/`;
  controlImage = `${new URL(stack.simulator?.url ?? "").origin}/samples/control.png`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  page = await context.newPage();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  await receiver?.stop();
});

const submit = async (overrides: Record<string, unknown> = {}): Promise<string> => {
  const response = await client.request("POST", "/v1/jobs", {
    body: validJobRequest({ control_image: controlImage, width: 256, height: 256, ...overrides }),
  });
  expect(response.status).toBe(202);
  return response.body.id as string;
};

const statusIn = (jobId: string) => page.locator(`tr[data-job-id="${jobId}"] [data-status]`);

async function useKey(target: Page, key: string): Promise<void> {
  await target.goto(consoleUrl);
  await target.fill("#api-key", key);
  await target.click("#key-form button[type=submit]");
}

describe("the console in Chromium", () => {
  let first: string;
  let second: string;
  const hostile = `<img src=x onerror="window.__pwned=1"> & "quotes"`;

  it("lists the tenant's jobs and follows their status live until they succeed", async () => {
    first = await submit({ webhook: `${receiver.url}/first`, prompt: hostile, track_id: "<b>t</b>" });
    second = await submit();
    await useKey(page, client.apiKey);

    // Seen unfinished first, then succeeded, with no reload in between.
    const seen = await statusIn(first).getAttribute("data-status", { timeout: 10_000 });
    expect(seen).not.toBeNull();
    expect(TERMINAL).not.toContain(seen);
    await page.screenshot({ path: resolve(SHOTS, "1-jobs-running.png"), fullPage: true });
    for (const id of [first, second]) {
      await page.locator(`tr[data-job-id="${id}"] [data-status="succeeded"]`).waitFor({ timeout: 30_000 });
    }
    expect(await page.textContent("#jobs-poll")).toMatch(/live|refreshing/);

    // What the API said is shown as text, never run as markup.
    expect(await page.locator(`tr[data-job-id="${first}"] td.prompt`).textContent()).toBe(hostile);
    expect(await page.evaluate("typeof window.__pwned")).toBe("undefined");
    // The key lives in sessionStorage, never in the address.
    expect(page.url()).not.toContain(client.apiKey);
    expect(await page.evaluate('sessionStorage.getItem("controlnet-console.api-key")')).toBe(client.apiKey);
    expect(await page.evaluate("JSON.stringify(localStorage)")).not.toContain(client.apiKey);
    await page.screenshot({ path: resolve(SHOTS, "2-jobs-succeeded.png"), fullPage: true });
  });

  it("shows a job's images, its attempts and its notification tries, and replays them", async () => {
    await page.click(`tr[data-job-id="${first}"] a`);
    expect(page.url()).toContain(`#/jobs/${first}`);
    await page.locator("#job-status [data-status=succeeded]").waitFor();

    // The presigned output links load as images in the browser.
    // (Page code as strings: this file is type-checked without the DOM library.)
    // Polled from the test, not by waitForFunction in the page (its polling evaluates strings, which
    // the console's CSP forbids).
    await expect
      .poll(
        () =>
          page.evaluate(() => {
            const images = [...(globalThis as any).document.querySelectorAll("#images img")];
            return images.length > 0 && images.every((img: any) => img.complete && img.naturalWidth > 0);
          }),
        { timeout: 15_000, interval: 100 },
      )
      .toBe(true);
    const sizes = await page.evaluate(
      '[...document.querySelectorAll("#images img")].map((img) => [img.naturalWidth, img.naturalHeight])',
    );
    expect(sizes).toEqual([[256, 256]]);
    // Each read signs the links afresh: the link to open an image follows, the image is not reloaded.
    const shown = await page.evaluate(
      '(() => { const a = document.querySelector("#images a"); return [a.href, a.querySelector("img").src]; })()',
    );
    await page
      .locator(`#images a:not([href=${JSON.stringify((shown as string[])[0])}])`)
      .waitFor({ timeout: 20_000 });
    expect(await page.evaluate('document.querySelector("#images img").src')).toBe((shown as string[])[1]);

    const attempts = page.locator("#attempts li");
    expect(await attempts.count()).toBe(1);
    expect(await attempts.first().getAttribute("data-outcome")).toBe("succeeded");
    expect(await attempts.first().textContent()).toContain("modelslab");

    await page.locator(".notification[data-state]", { hasText: "job.succeeded" }).waitFor();
    await page.locator('.notification[data-state="delivered"] tr.try').first().waitFor({ timeout: 20_000 });
    const delivered = page.locator('.notification[data-state="delivered"]');
    expect(await delivered.locator("tr.try").count()).toBe(1);
    expect(await delivered.textContent()).toContain(`${receiver.url}/first`);
    expect(await delivered.locator("tr.try td").nth(2).textContent()).toBe("200");
    await page.screenshot({ path: resolve(SHOTS, "3-job-detail.png"), fullPage: true });

    const before = receiver.deliveries.filter((d) => d.path === "/first").length;
    await page.click("#replay");
    await page.locator("#replay-result", { hasText: "Replayed 1 notification" }).waitFor();
    // A second try appears in the page, and the receiver really got it.
    await page.locator('.notification[data-state="delivered"] tr.try >> nth=1').waitFor({ timeout: 20_000 });
    await waitFor(() => receiver.deliveries.filter((d) => d.path === "/first").length > before, {
      what: "the replayed delivery",
    });
    await page.screenshot({ path: resolve(SHOTS, "4-job-replayed.png"), fullPage: true });
  });

  it("shows the webhook settings, saves a URL and shows a rotated secret once", async () => {
    await page.click("#nav-webhook");
    await page.locator("#secrets tbody tr").first().waitFor();
    expect(await page.locator("#secrets tbody tr").count()).toBe(1);

    const endpoint = `${receiver.url}/default`;
    await page.fill("#webhook-url", endpoint);
    await page.click("#webhook-form button[type=submit]");
    await page.locator("#webhook-saved", { hasText: `Saved: ${endpoint}` }).waitFor();
    expect(await page.textContent("#webhook-current")).toBe(endpoint);
    expect((await client.request("GET", "/v1/webhook")).body.url).toBe(endpoint);

    await page.click("#rotate");
    await page.locator("#new-secret:not([hidden])").waitFor();
    const secret = (await page.textContent("#new-secret-value")) ?? "";
    expect(secret).toMatch(/^whsec_/);
    await page.locator("#secrets tbody tr >> nth=1").waitFor();
    expect(await page.locator("#secrets tbody tr").count()).toBe(2);
    await page.screenshot({ path: resolve(SHOTS, "5-webhook-rotated.png"), fullPage: true });

    // Shown once: after a reload the page holds it nowhere (not in the DOM, not in storage).
    await page.reload();
    await page.locator("#secrets tbody tr >> nth=1").waitFor();
    expect(await page.content()).not.toContain(secret);
    expect(await page.evaluate("JSON.stringify({ ...sessionStorage, ...localStorage })")).not.toContain(
      secret,
    );
    expect(await page.isHidden("#new-secret")).toBe(true);
  });

  it("shows why when the API key is refused", async () => {
    const other = await context.browser()?.newContext();
    if (!other) throw new Error("no browser");
    const stranger = await other.newPage();
    try {
      await useKey(stranger, `cn_${"x".repeat(40)}`);
      const banner = stranger.locator('#error[data-code="UNAUTHORIZED"]:not([hidden])');
      await banner.waitFor({ timeout: 10_000 });
      expect(await banner.textContent()).toContain("Check the key");
      expect(await stranger.locator("#jobs tbody tr").count()).toBe(0);
      // Nothing was listed, so the page does not claim there are no jobs; and it stops asking.
      expect(await stranger.isHidden("#jobs-empty")).toBe(true);
      await stranger.locator("#jobs-poll", { hasText: "stopped" }).waitFor();
      await stranger.screenshot({ path: resolve(SHOTS, "6-bad-key.png"), fullPage: true });
    } finally {
      await other.close();
    }
  });
});
