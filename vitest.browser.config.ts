import { defineConfig } from "vitest/config";

/**
 * The console's tests in a real browser (`npm run test:browser`): Debian's Chromium driven by
 * playwright-core, never a downloaded browser. Apart from `npm test`, which needs no browser.
 */
export default defineConfig({
  test: {
    include: ["test/browser/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 90_000,
    pool: "forks",
    maxWorkers: 1,
  },
});
