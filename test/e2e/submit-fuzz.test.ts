import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalStack } from "../../local/stack.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { validJobRequest } from "../support/requests.ts";

let stack: LocalStack;
let client: TestClient;

beforeAll(async () => {
  const started = await startTestStack(["fuzz"]);
  stack = started.stack;
  client = started.clients[0] as TestClient;
});
afterAll(async () => {
  await stack?.stop();
});

const fieldNames = Object.keys(validJobRequest()).concat([
  "width",
  "height",
  "samples",
  "scheduler",
  "seed",
  "strength",
  "controlnet_conditioning_scale",
  "metadata",
  "deadline_seconds",
  "provider",
  "webhook",
  "init_image",
  "mask_image",
  "__proto__",
  "constructor",
]);

describe("POST /v1/jobs under random input", () => {
  it("never answers 5xx to arbitrary JSON", async () => {
    await fc.assert(
      fc.asyncProperty(fc.json({ maxDepth: 4 }), async (text) => {
        const response = await client.request("POST", "/v1/jobs", {
          rawBody: text,
          headers: { "content-type": "application/json" },
        });
        expect(response.status).toBeLessThan(500);
      }),
      { numRuns: 150 },
    );
  });

  it("never answers 5xx when valid requests have fields replaced by random values", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.constantFrom(...fieldNames), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
        async (overrides) => {
          const response = await client.request("POST", "/v1/jobs", { body: validJobRequest(overrides) });
          expect(response.status).toBeLessThan(500);
          if (response.status >= 400) expect(response.body.error.code).toMatch(/^[A-Z_]+$/);
        },
      ),
      { numRuns: 150 },
    );
  });
});
