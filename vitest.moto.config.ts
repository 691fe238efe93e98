import { defineConfig } from "vitest/config";

/**
 * `npm run test:moto`: the tests that talk to DynamoDB, SQS or S3, and the jobs API end to end, against
 * moto_server instead of dynalite and fauxqs (moto must be installed: `pip install "moto[server]"`).
 * The two emulators are lenient in different places, so each catches what the other lets through.
 *
 * Left out, on purpose:
 * - test/integration/dynalite-transactions.test.ts: tests local/dynalite.ts's TransactWriteItems shim,
 *   which moto does not need (it has its own, without ClientRequestToken idempotency).
 * - test/integration/copy-output-memory.test.ts: measures this process's memory while copying 50 MB;
 *   its S3 runs in a child process of its own, and moving 50 MB through moto only adds minutes.
 */
export default defineConfig({
  test: {
    include: [
      "test/integration/capacity-gate.test.ts",
      "test/integration/circuit-breaker.test.ts",
      "test/integration/copy-output.test.ts",
      "test/integration/create-tenant.test.ts",
      "test/integration/dynamo-job-store.test.ts",
      "test/integration/dynamo-tenant-store.test.ts",
      "test/integration/local-template.test.ts",
      "test/integration/notification-store.test.ts",
      "test/integration/s3-presigner.test.ts",
      "test/integration/sqs-queue.test.ts",
      "test/e2e/jobs-api.test.ts",
    ],
    globalSetup: ["test/support/moto-global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // moto serves every file from one Python process; two workers keep it busy without queueing.
    maxWorkers: 2,
  },
});
