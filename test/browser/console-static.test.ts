import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpGateway } from "../../local/http-gateway.ts";
import type { LocalStack } from "../../local/stack.ts";
import { REPO_ROOT } from "../../local/stack.ts";
import { staticSite } from "../../local/static-site.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SHOTS = resolve(import.meta.dirname, "screenshots");

/**
 * The console deployed as a static site: the `console/` folder copied to another origin with a
 * config.json naming the API, which lets that origin call it (CDK context `consoleOrigins`, the
 * HTTP API's CORS). A copy on an origin not in the list cannot call the API.
 */
let stack: LocalStack;
let client: TestClient;
let browser: Browser;
let scratch: string;
const allowedHost = new HttpGateway();
const otherHost = new HttpGateway();
let allowedOrigin: string;
let otherOrigin: string;

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  scratch = mkdtempSync(join(tmpdir(), "console-static-"));
  const site = join(scratch, "site");
  cpSync(resolve(REPO_ROOT, "console"), site, { recursive: true });
  allowedHost.mountStatic(staticSite("/console", site));
  otherHost.mountStatic(staticSite("/console", site));
  allowedOrigin = await allowedHost.listen(0);
  otherOrigin = await otherHost.listen(0);

  const started = await startTestStack(["static"], {
    context: { consoleOrigins: allowedOrigin },
    provider: { kind: "simulator", options: { completionDelayMs: 50 } },
  });
  stack = started.stack;
  client = started.clients[0] as TestClient;
  writeFileSync(join(site, "config.json"), JSON.stringify({ api_url: stack.url }));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  await allowedHost.close();
  await otherHost.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe("the console as a static site on its own origin", () => {
  it("calls the API named in config.json from an allowed origin and shows the jobs and their images", async () => {
    const controlImage = `${new URL(stack.simulator?.url ?? "").origin}/samples/control.png`;
    const submitted = await client.request("POST", "/v1/jobs", {
      body: validJobRequest({ control_image: controlImage, width: 128, height: 128 }),
    });
    expect(submitted.status).toBe(202);
    const id = submitted.body.id as string;

    const page = await browser.newPage();
    try {
      await page.goto(`${allowedOrigin}/console/#/jobs/${id}`);
      expect(new URL(page.url()).origin).not.toBe(new URL(stack.url).origin);
      expect(await page.textContent("#api-target")).toBe(`API: ${stack.url}`);
      await page.fill("#api-key", client.apiKey);
      await page.click("#key-form button[type=submit]");
      await page.locator(`tr[data-job-id="${id}"] [data-status="succeeded"]`).waitFor({ timeout: 30_000 });
      // Polled from the test (a DevTools evaluation), not by waitForFunction inside the page, whose
      // polling evaluates strings: the console's CSP (script-src 'self', no eval) forbids that.
      await expect
        .poll(
          () =>
            page.evaluate(() => {
              const img = (globalThis as any).document.querySelector("#images img");
              return !!img && img.complete && img.naturalWidth === 128;
            }),
          { timeout: 15_000, interval: 100 },
        )
        .toBe(true);
      expect(await page.isHidden("#error")).toBe(true);
      await page.screenshot({ path: resolve(SHOTS, "7-static-site.png"), fullPage: true });
    } finally {
      await page.close();
    }
  });

  it("cannot call the API from an origin the CORS configuration does not list", async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${otherOrigin}/console/`);
      await page.fill("#api-key", client.apiKey);
      await page.click("#key-form button[type=submit]");
      const banner = page.locator('#error[data-code="NETWORK"]:not([hidden])');
      await banner.waitFor({ timeout: 10_000 });
      expect(await page.locator("#jobs tbody tr").count()).toBe(0);
    } finally {
      await page.close();
    }
  });
});
