import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalStack } from "../../local/stack.ts";
import { sniffImage } from "../../shared/domain/image-sniff.ts";
import { startTestStack, type TestClient } from "../support/local-stack.ts";
import { waitFor } from "../support/wait.ts";
import { startWebhookReceiver } from "../support/webhook-receiver.ts";

/**
 * `cnctl` as a user runs it: a child process (`node packages/client/bin/cnctl.mjs`) against the local
 * stack with the ModelsLab simulator, its files, stdout, stderr and exit code checked.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = path.join(ROOT, "packages/client/bin/cnctl.mjs");

let stack: LocalStack;
let tenant: TestClient;
let workDir: string;
let sketch: string;
let receiver: Awaited<ReturnType<typeof startWebhookReceiver>>;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  const started = await startTestStack(["cnctl"], {
    provider: { kind: "simulator", options: { completionDelayMs: 50 } },
  });
  stack = started.stack;
  tenant = started.clients[0] as TestClient;
  workDir = await mkdtemp(path.join(tmpdir(), "cnctl-"));
  sketch = path.join(workDir, "sketch.png");
  await writeFile(
    sketch,
    await sharp({ create: { width: 64, height: 64, channels: 3, background: "#000" } })
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
      .toBuffer(),
  );
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await receiver?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs cnctl without blocking this process's event loop (the stack under test serves from it). */
function cnctl(args: string[], env: Record<string, string | undefined> = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      {
        cwd: ROOT,
        timeout: 60_000,
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          CONTROLNET_API_URL: stack.url,
          CONTROLNET_API_KEY: tenant.apiKey,
          ...env,
        },
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const RUN = [
  "run",
  "--prompt",
  "a lighthouse at dusk",
  "--controlnet",
  "canny",
  "--width",
  "64",
  "--height",
  "64",
];

describe("cnctl against the local stack", () => {
  it("runs a job from a local sketch and writes its images; --json prints only JSON on stdout", async () => {
    const out = path.join(workDir, "out-json");
    const ran = await cnctl([...RUN, "--control-image", sketch, "--out", out, "--samples", "2", "--json"]);
    expect(ran.stderr).not.toMatch(/cnctl:/);
    expect(ran.code).toBe(0);
    const result = JSON.parse(ran.stdout) as { job: { id: string; status: string }; files: string[] };
    expect(result.job.status).toBe("succeeded");
    expect(result.files).toHaveLength(2);
    for (const file of result.files) {
      expect(path.dirname(file)).toBe(out);
      expect(path.basename(file)).toMatch(new RegExp(`^${result.job.id}-\\d\\.(png|jpg)$`));
      const image = sniffImage(await readFile(file));
      expect(["image/png", "image/jpeg"]).toContain(image.contentType);
    }
    // Progress went to stderr as plain lines (not a terminal): the job's id and its final status.
    expect(ran.stderr).toContain(`job ${result.job.id}`);
    expect(ran.stderr).toMatch(/ · succeeded · /);
    expect(ran.stderr).not.toContain("\r");
  }, 90_000);

  it("prints the written files for a person, then get, list, watch, notifications and replay by id", async () => {
    const out = path.join(workDir, "out-human");
    const hook = `${receiver.url}/cnctl`;
    const ran = await cnctl([...RUN, "--control-image", sketch, "--out", out, "--webhook", hook]);
    expect(ran.code).toBe(0);
    const files = ran.stdout.trim().split("\n");
    expect(files).toHaveLength(1);
    const id = path.basename(files[0] as string).split("-")[0] as string;
    expect(sniffImage(await readFile(files[0] as string)).width).toBeGreaterThan(0);

    const got = await cnctl(["get", id, "--json"]);
    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ id, status: "succeeded", webhook: hook });
    const human = await cnctl(["get", id]);
    expect(human.stdout).toContain("status:     succeeded");

    const listed = await cnctl(["list", "--status", "succeeded", "--limit", "1", "--json"]);
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as { jobs: { id: string }[] }).jobs.map((j) => j.id)).toEqual([id]);

    const watched = await cnctl(["watch", id, "--json"]);
    expect(watched.code).toBe(0);
    expect(JSON.parse(watched.stdout)).toMatchObject({ id, status: "succeeded" });

    const deliveries = () => receiver.deliveries.filter((d) => d.path === "/cnctl");
    await waitFor(() => deliveries().length === 1, { what: "the delivery", timeoutMs: 30_000 });
    const notifications = await cnctl(["notifications", id, "--json"]);
    expect(notifications.code).toBe(0);
    expect(JSON.parse(notifications.stdout)).toEqual({
      notifications: [expect.objectContaining({ type: "job.succeeded", state: "delivered", url: hook })],
    });
    const replay = await cnctl(["replay", id, "--json"]);
    expect(replay.code).toBe(0);
    expect(JSON.parse(replay.stdout)).toEqual({
      notifications: [expect.objectContaining({ type: "job.succeeded", state: "pending" })],
    });
    await waitFor(() => deliveries().length === 2, { what: "the replayed delivery", timeoutMs: 30_000 });
    expect(deliveries()[1]?.headers["webhook-id"]).toBe(deliveries()[0]?.headers["webhook-id"]);
  }, 120_000);

  it("exits 1 when the job ends cancelled, 4 when --wait-timeout passes first", async () => {
    stack.simulator?.setOptions({ completionDelayMs: 60_000 });
    try {
      const timedOut = await cnctl([
        ...RUN,
        "--control-image",
        sketch,
        "--out",
        workDir,
        "--wait-timeout",
        "1",
        "--json",
      ]);
      expect(timedOut.code).toBe(4);
      const { job } = JSON.parse(timedOut.stdout) as { job: { id: string; status: string } };
      expect(["queued", "processing"]).toContain(job.status);
      expect(timedOut.stderr).toContain(`cnctl watch ${job.id}`);

      const cancelled = await cnctl(["cancel", job.id, "--json"]);
      expect(cancelled.code).toBe(0);
      expect(JSON.parse(cancelled.stdout)).toMatchObject({ id: job.id, status: "cancelled" });
      const watched = await cnctl(["watch", job.id]);
      expect(watched.code).toBe(1);
      expect(watched.stdout).toContain("status:     cancelled");
    } finally {
      stack.simulator?.setOptions({ completionDelayMs: 50 });
    }
  }, 120_000);

  it("exits 3 with the API's code on an API error", async () => {
    const ran = await cnctl(["get", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--json"]);
    expect(ran.code).toBe(3);
    expect(JSON.parse(ran.stdout)).toMatchObject({ error: { code: "JOB_NOT_FOUND", status: 404 } });
    expect(ran.stderr).toContain("JOB_NOT_FOUND");
    // A job without an endpoint has nothing to send again: a typed 409.
    const created = await tenant.request("POST", "/v1/jobs", {
      body: {
        model_id: "sd15",
        controlnet_model: "canny",
        controlnet_type: "canny",
        control_image: "http://127.0.0.1:9/x.png",
      },
    });
    const replay = await cnctl(["replay", created.body.id, "--json"]);
    expect(replay.code).toBe(3);
    expect(JSON.parse(replay.stdout)).toMatchObject({ error: { code: "NOTHING_TO_REPLAY", status: 409 } });
    const invalid = await cnctl([...RUN, "--control-image", sketch, "--out", workDir, "--width", "4096"]);
    expect(invalid.code).toBe(3);
    expect(invalid.stderr).toMatch(/VALIDATION_FAILED \(HTTP 400\)[\s\S]*width/);
  }, 60_000);

  it("exits 2 on usage errors, naming the problem, with nothing sent", async () => {
    // (Every other usage error is checked without a process: test/unit/cnctl-args.test.ts.)
    const cases: [string[], RegExp, Record<string, string>?][] = [
      [[...RUN, "--control-image", sketch, "--out", workDir, "--colour", "red"], /Unknown option '--colour'/],
      [[...RUN, "--control-image", path.join(workDir, "missing.png"), "--out", workDir], /Cannot read/],
      [["get", "x"], /CONTROLNET_API_KEY/, { CONTROLNET_API_KEY: "" }],
    ];
    const before = stack.simulator?.stats().submits;
    for (const [args, message, env] of cases) {
      const ran = await cnctl(args, env);
      expect({ args, code: ran.code }).toEqual({ args, code: 2 });
      expect(ran.stderr).toMatch(message);
      expect(ran.stdout).toBe("");
    }
    expect(stack.simulator?.stats().submits).toBe(before);
    const help = await cnctl(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Exit codes:");
  }, 120_000);
});
