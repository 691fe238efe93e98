/**
 * `npm run chaos [-- --jobs N --concurrency N --seed N --json]`
 *
 * Submits N jobs (default 1000) to the local stack with the ModelsLab simulator while faults are
 * injected, and checks that nothing is lost, nothing is sent to the provider twice, every terminal
 * state reaches the client under one webhook-id, and the provider's concurrency limit holds.
 *
 * Load: a two-tenant backlog (one job in QUIET_EVERY is a quiet tenant's, submitted after the noisy
 * tenant's), CANCEL_RATE of the jobs cancelled mid-run (0–3 s after their submit: waiting, running at
 * the provider or already done), SHORT_BOUND_RATE of them with the shortest wait and run bounds (60 s
 * each), which some reach mid-run.
 *
 * Faults:
 * - provider: 5xx on a fraction of submits and fetches, 429 bursts (every few seconds the next few
 *   submits get 429 with retry_after), 30% lost callbacks, 30% duplicated callbacks, a stale
 *   `processing` callback after every final one (reordered), callbacks delivered before the submit
 *   answer (early), slow output downloads and outputs that fail their first tries (503/404);
 * - S3: a fraction of writes (PutObject and the multipart calls) answered 500/503 by
 *   `local/fault-proxy.ts` in front of fauxqs;
 * - the queue handlers: the SQS pollers and the schedule (dispatch, finalize, notify, reconcile) run
 *   in a child process (`local/pollers-process.ts`) that is SIGKILLed at random points and restarted.
 *   The API and the callback receiver stay up (they are API Gateway + Lambda, not the pollers).
 *
 * Queue visibility timeouts are the real ones from the CDK template (6 × each consumer's timeout:
 * minutes). A message in flight when the pollers are killed therefore reappears only minutes later;
 * the run relies on what the product relies on in AWS — the reconciler re-sends queued jobs, polls
 * processing ones, resumes stores and re-announces pending notifications — with its periods shortened
 * (reconcile every second, QUEUED_RESEND_AFTER_SECONDS, SLOT_GRACE_SECONDS, STORING_TIMEOUT_SECONDS,
 * NOTIFY_GRACE_SECONDS; see CHAOS_ENVIRONMENT). Those are the only shortened settings; they are
 * printed at the start.
 *
 * Counting:
 * - terminal/succeeded/failed: GET /v1/jobs/{id} at the end; failed by `error.code`;
 * - lost: not terminal when the run ends (after every wait and run bound plus a grace period);
 * - double_sent: jobs the simulator accepted (billable) more than once (`acceptedByTrackId`, the
 *   orchestrator sends track_id = job id; a retryable rejection is never "accepted");
 * - undelivered: terminal jobs whose terminal notification (verified Standard Webhooks signature,
 *   the tenant's secret) never reached the receiver;
 * - split_identity: (job, event type) pairs delivered under more than one webhook-id;
 * - max_provider_concurrency: the most jobs the orchestrator had, or tried to have, running at the
 *   provider at once (simulator `maxRequestedInFlight`), against MODELSLAB_MAX_CONCURRENCY.
 * Exit 1 if lost, double_sent, undelivered or split_identity is above 0 or the limit was exceeded;
 * with --json the last line is the report as one JSON object.
 */
import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Webhook } from "standardwebhooks";
import { Pool } from "undici";
import type { SimulatorOptions } from "../local/simulator/index.ts";
import { createPrng } from "../local/simulator/prng.ts";
import { parseArgs, UsageError } from "./lib/args.ts";
import { runPool } from "./lib/pool.ts";

export interface ChaosOptions {
  jobs: number;
  /** Clients submitting at once. */
  concurrency?: number;
  /** Seed of every random choice (simulator faults, S3 faults, kill times). */
  seed?: number;
  /** The provider's concurrency limit = MODELSLAB_MAX_CONCURRENCY. */
  providerLimit?: number;
  /** deadline_seconds of every job; default from the job count (at least 60, the API's minimum). */
  deadlineSeconds?: number;
  /** After every deadline has passed, how long to wait for the reconciler before calling jobs lost. */
  graceSeconds?: number;
  /** Milliseconds between kills of the pollers process: uniformly within [min, max]. */
  killEveryMs?: [number, number];
  /** How long the pollers stay down after a kill: uniformly within [min, max]. */
  downForMs?: [number, number];
  /** false: never kill the pollers process (to tell its effects from the other faults'). */
  kill?: boolean;
  log?: (line: string) => void;
}

export interface ChaosReport {
  submitted: number;
  terminal: number;
  succeeded: number;
  failed: number;
  failed_by_reason: Record<string, number>;
  cancelled: number;
  lost: number;
  double_sent: number;
  undelivered: number;
  split_identity: number;
  max_provider_concurrency: number;
  provider_limit: number;
  /** Failing checks, by name; empty when the run passed. */
  violations: string[];
  /** Context: how hard the run was shaken, and how long it took. */
  details: {
    seconds: number;
    deadline_seconds: number;
    cancels_sent: number;
    quiet_jobs: number;
    submit_errors: number;
    submit_retries: number;
    pollers_killed: number;
    /** Median milliseconds from fork to polling of the pollers process. */
    pollers_startup_ms: number;
    deliveries: number;
    bad_signatures: number;
    /** Terminal notifications whose type differs from the state GET shows (a job that "changed its mind"). */
    contradicting_notifications: number;
    provider: {
      submits: number;
      accepted: number;
      rejected429: number;
      rejected5xx: number;
      callbacks_sent: number;
      callbacks_dropped: number;
      fetches: number;
      output_requests: number;
      output_faults: number;
      max_in_flight: number;
    };
    s3: { requests: number; writes: number; faulted: number };
    lost_job_states: Record<string, number>;
    /** Up to 5 undelivered jobs: their state, what was delivered, their notification records. */
    undelivered_notifications: Record<string, unknown>;
    examples: { lost: string[]; double_sent: string[]; undelivered: string[]; split_identity: string[] };
    shortened_settings: Record<string, string>;
  };
}

/** The settings the run shortens (and nothing else): the reconciler's periods and the retry schedules. */
export const CHAOS_ENVIRONMENT = (providerLimit: number): Record<string, string> => ({
  MODELSLAB_MAX_CONCURRENCY: String(providerLimit),
  MODELSLAB_SUBMIT_TIMEOUT_SECONDS: "10",
  CHECK_MARGIN_SECONDS: "1",
  POLL_BASE_SECONDS: "1",
  POLL_MAX_SECONDS: "2",
  RETRY_BASE_SECONDS: "1",
  RETRY_MAX_SECONDS: "2",
  QUEUED_RESEND_AFTER_SECONDS: "10",
  SLOT_GRACE_SECONDS: "5",
  STORING_TIMEOUT_SECONDS: "10",
  NOTIFY_GRACE_SECONDS: "3",
  NOTIFY_RETRY_SCHEDULE_SECONDS: "1,1,2,2,3,3,5",
  NOTIFY_JITTER: "0",
  OUTPUT_RETRY_FOR_SECONDS: "10",
  RECONCILE_BATCH_SIZE: "200",
});

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
/** One job in this many is the quiet tenant's (submitted after the noisy tenant's). */
const QUIET_EVERY = 21;
/** Share of jobs cancelled mid-run (0–3 s after their submit). */
const CANCEL_RATE = 0.05;
/** Share of jobs with the shortest wait and run bounds (60 s each), which some reach mid-run. */
const SHORT_BOUND_RATE = 0.1;

interface JobView {
  id: string;
  status: string;
  error?: { code?: string } | null;
}

/** The client's webhook endpoint: verifies every delivery and indexes it by (job, type). */
async function startReceiver(secrets: string[]) {
  const verifiers = secrets.map((secret) => new Webhook(secret));
  const ids = new Map<string, Set<string>>(); // `${jobId} ${type}` → webhook-ids
  const terminalTypes = new Map<string, Set<string>>(); // jobId → terminal types delivered
  let deliveries = 0;
  let badSignatures = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      deliveries++;
      const body = Buffer.concat(chunks).toString("utf8");
      let event: { type: string; data: { id: string } };
      // Each tenant signs with its own secret: one of them must verify.
      const verified = verifiers
        .map((verifier) => {
          try {
            return verifier.verify(body, req.headers as Record<string, string>) as typeof event;
          } catch {
            return undefined;
          }
        })
        .find((found) => found !== undefined);
      if (!verified) {
        badSignatures++;
        res.writeHead(400).end();
        return;
      }
      event = verified;
      const key = `${event.data.id} ${event.type}`;
      const set = ids.get(key) ?? new Set<string>();
      set.add(String(req.headers["webhook-id"]));
      ids.set(key, set);
      if (TERMINAL.has(event.type.replace(/^job\./, ""))) {
        const types = terminalTypes.get(event.data.id) ?? new Set<string>();
        types.add(event.type);
        terminalTypes.set(event.data.id, types);
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", () => done()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    ids,
    terminalTypes,
    counts: () => ({ deliveries, badSignatures }),
    stop: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** The pollers process: started, SIGKILLed and restarted. */
class PollersChild {
  private child: ChildProcess | null = null;
  kills = 0;
  /** Milliseconds from fork to polling (module loading and every handler's init), per start. */
  readonly startupMs: number[] = [];

  constructor(
    private readonly root: string,
    private readonly configPath: string,
    private readonly log: (line: string) => void,
  ) {}

  /** Forks the process; resolves once it polls (or after 60 s, or when it dies first). */
  start(): Promise<void> {
    const forked = Date.now();
    const child = fork(resolve(this.root, "local/pollers-process.ts"), [], {
      cwd: this.root,
      execArgv: ["--import", "tsx"],
      env: { ...process.env, LOCAL_POLLERS_CONFIG: this.configPath },
      stdio: ["ignore", "ignore", process.env.DEBUG_LOCAL_STACK ? "inherit" : "ignore", "ipc"],
    });
    child.on("error", (error) => this.log(`pollers process: ${String(error)}`));
    this.child = child;
    return new Promise<void>((done) => {
      const timer = setTimeout(done, 60_000);
      const finish = () => {
        clearTimeout(timer);
        done();
      };
      child.once("message", () => {
        this.startupMs.push(Date.now() - forked);
        finish();
      });
      child.once("exit", finish);
    });
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((done) => child.once("exit", () => done()));
    child.kill(signal);
    if (signal === "SIGKILL") this.kills++;
    await exited;
  }
}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? (() => undefined);
  const jobs = options.jobs;
  const concurrency = options.concurrency ?? 16;
  const seed = options.seed ?? 1;
  const providerLimit = options.providerLimit ?? 10;
  const deadlineSeconds = options.deadlineSeconds ?? Math.max(60, Math.ceil(30 + jobs * 0.25));
  const graceSeconds = options.graceSeconds ?? 30;
  const [killMin, killMax] = options.killEveryMs ?? [3_000, 10_000];
  const [downMin, downMax] = options.downForMs ?? [200, 1_500];
  const random = createPrng(seed * 7919 + 13);
  const between = (min: number, max: number) => min + random() * (max - min);

  process.env.POWERTOOLS_LOG_LEVEL ??= "SILENT";
  // The report is printed on stdout: the functions' EMF lines stay off it, as their logs do.
  process.env.POWERTOOLS_METRICS_DISABLED ??= "true";
  const { REPO_ROOT, startLocalStack } = await import("../local/stack.ts");
  const { ensureTenant } = await import("../local/dev-tenant.ts");
  const { startFaultProxy } = await import("../local/fault-proxy.ts");

  const simulatorOptions: Partial<SimulatorOptions> = {
    concurrencyLimit: providerLimit,
    completionDelayMs: 200,
    retryAfterSeconds: 1,
    maxStoredJobs: jobs * 4 + 100,
    random: seed,
    errorRate5xx: 0.05,
    dropCallbackRate: 0.3,
    duplicateCallbackRate: 0.3,
    reorderCallbacks: true,
    earlyCallbackRate: 0.1,
    outputSlowRate: 0.1,
    outputDelayMs: 1_500,
    outputFaultRate: 0.1,
    outputFailFirst: 2,
  };
  const shortened = CHAOS_ENVIRONMENT(providerLimit);
  let proxy: Awaited<ReturnType<typeof startFaultProxy>> | undefined;
  const stack = await startLocalStack({
    port: 0,
    dataDir: null,
    reconcileIntervalSeconds: 1,
    queueConsumers: "none",
    environment: shortened,
    provider: { kind: "simulator", options: simulatorOptions },
    s3Endpoint: async (fauxqs) => {
      proxy = await startFaultProxy({ target: fauxqs, writeErrorRate: 0.1, seed: seed + 1 });
      return proxy.url;
    },
    ...(process.env.DEBUG_LOCAL_STACK && { log: (line: string) => console.error(`[local] ${line}`) }),
  });
  const simulator = stack.simulator;
  if (!simulator || !proxy) throw new Error("the stack started without its simulator or S3 proxy");
  const s3proxy = proxy;
  const closers: Array<() => Promise<void>> = [];
  const configDir = mkdtempSync(join(tmpdir(), "chaos-"));
  const started = Date.now();
  let stopFaults = false;
  try {
    const tableName = process.env.TABLE_NAME as string;
    // A two-tenant backlog: the noisy tenant's jobs first, then a quiet tenant's (one in QUIET_EVERY).
    const tenant = await ensureTenant(tableName, "chaos");
    const quietTenant = await ensureTenant(tableName, "chaos-quiet");
    const receiver = await startReceiver([tenant.webhookSecret, quietTenant.webhookSecret]);
    closers.push(() => receiver.stop());

    const configPath = join(configDir, "pollers.json");
    writeFileSync(configPath, JSON.stringify({ topology: stack.topology, reconcileIntervalSeconds: 1 }));
    const pollers = new PollersChild(REPO_ROOT, configPath, log);
    await pollers.start();
    closers.push(() => pollers.kill("SIGTERM"));

    log(
      `chaos: ${jobs} jobs, deadline ${deadlineSeconds} s, provider limit ${providerLimit}; ` +
        `shortened for the run: ${Object.entries(shortened)
          .map(([k, v]) => `${k}=${v}`)
          .join(" ")}; queue visibility timeouts as in the template`,
    );

    // ---- the faults that run on timers: pollers killed and restarted, 429 bursts ----
    const killer = (async () => {
      while (!stopFaults && options.kill !== false) {
        await sleep(between(killMin, killMax));
        if (stopFaults) break;
        await pollers.kill();
        await sleep(between(downMin, downMax));
        if (stopFaults) break;
        await pollers.start();
      }
    })();
    const bursts = (async () => {
      while (!stopFaults) {
        await sleep(between(2_000, 6_000));
        if (!stopFaults) simulator.setOptions({ rateLimitBurst: 3 });
      }
    })();

    // ---- submit ----
    const http = new Pool(stack.url, { connections: concurrency, keepAliveTimeout: 60_000 });
    closers.push(() => http.close());
    const headersOf = (apiKey: string) => ({
      authorization: `Bearer ${apiKey}`,
      "content-type": "application/json",
    });
    const noisyJobs = jobs - Math.floor(jobs / QUIET_EVERY);
    /** Each job's tenant's headers (a tenant sees only its own jobs). */
    const headersById = new Map<string, ReturnType<typeof headersOf>>();
    let cancelsSent = 0;
    const cancels: Promise<void>[] = [];
    const controlImage = `${new URL(simulator.url).origin}/samples/control.png`;
    const ids: string[] = [];
    let submitErrors = 0;
    let submitRetries = 0;
    await runPool(jobs, concurrency, async (index) => {
      const headers = headersOf(index < noisyJobs ? tenant.apiKey : quietTenant.apiKey);
      // Some jobs with the shortest bounds the API takes: under the backlog some reach them mid-run.
      const short = random() < SHORT_BOUND_RATE;
      const body = JSON.stringify({
        model_id: "sd15",
        controlnet_model: "canny",
        controlnet_type: "canny",
        prompt: `chaos ${index}`,
        control_image: controlImage,
        width: 64,
        height: 64,
        webhook: receiver.url,
        track_id: `chaos-${index}`,
        deadline_seconds: short ? 60 : deadlineSeconds,
        max_wait_seconds: short ? 60 : deadlineSeconds,
        // The provider path is what is shaken here; `auto` would send jobs to the GPU fallback once the
        // circuit breaker opens, and the local stack runs no worker unless asked (--with-worker).
        provider: "modelslab",
      });
      const requestHeaders = { ...headers, "idempotency-key": `chaos-${seed}-${index}` };
      for (let attempt = 1; attempt <= 5; attempt++) {
        try {
          const answer = await http.request({
            method: "POST",
            path: "/v1/jobs",
            headers: requestHeaders,
            body,
          });
          const text = await answer.body.text();
          if (answer.statusCode === 202 || answer.statusCode === 200) {
            const id = (JSON.parse(text) as { id: string }).id;
            ids.push(id);
            headersById.set(id, headers);
            if (random() < CANCEL_RATE) {
              // Cancelled mid-run: waiting, running at the provider, or already done (409).
              cancelsSent++;
              const after = between(0, 3_000);
              cancels.push(
                sleep(after).then(async () => {
                  await http
                    .request({ method: "POST", path: `/v1/jobs/${id}/cancel`, headers })
                    .then((answer) => answer.body.text())
                    .catch((error) => log(`cancel ${id}: ${String(error)}`));
                }),
              );
            }
            return;
          }
          if (answer.statusCode < 500) {
            log(`submit ${index}: ${answer.statusCode} ${text.slice(0, 300)}`);
            break;
          }
        } catch (error) {
          log(`submit ${index}: ${String(error)}`);
        }
        submitRetries++;
        await sleep(200 * attempt);
      }
      submitErrors++;
    });
    log(`submitted ${ids.length} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await Promise.all(cancels);

    const getJob = async (id: string): Promise<JobView | null> => {
      try {
        const answer = await http.request({
          method: "GET",
          path: `/v1/jobs/${id}`,
          headers: headersById.get(id) ?? headersOf(tenant.apiKey),
        });
        const text = await answer.body.text();
        return answer.statusCode === 200 ? (JSON.parse(text) as JobView) : null;
      } catch {
        return null;
      }
    };

    // ---- wait: every job terminal and notified, or every wait and run bound + grace passed ----
    const endBy = Date.now() + (2 * deadlineSeconds + graceSeconds) * 1000;
    const known = new Map<string, JobView>();
    let allTerminalAt: number | null = null;
    while (Date.now() < endBy) {
      const pending = ids.filter(
        (id) => !receiver.terminalTypes.has(id) && !TERMINAL.has(known.get(id)?.status ?? ""),
      );
      const sample = pending.slice(0, 200);
      await runPool(sample.length, 8, async (i) => {
        const job = await getJob(sample[i] as string);
        if (job) known.set(job.id, job);
      });
      const terminalNow = ids.filter(
        (id) => receiver.terminalTypes.has(id) || TERMINAL.has(known.get(id)?.status ?? ""),
      ).length;
      const delivered = ids.filter((id) => receiver.terminalTypes.has(id)).length;
      log(
        `t+${((Date.now() - started) / 1000).toFixed(0)} s: ${terminalNow}/${ids.length} terminal, ` +
          `${delivered} notified, pollers killed ${pollers.kills}x`,
      );
      if (terminalNow === ids.length) {
        allTerminalAt ??= Date.now();
        stopFaults = true; // the queue handlers stay up now, so the last notifications can go out
        if (delivered === ids.length) break;
        // Every job is terminal: give the notifications a bounded time of their own.
        if (Date.now() - allTerminalAt > graceSeconds * 1000) break;
      }
      await sleep(1_000);
    }
    stopFaults = true;
    await Promise.all([killer, bursts]);
    // Let in-flight extra callbacks (duplicates, stale ones) land before counting.
    await sleep(1_500);

    // ---- count ----
    const final: JobView[] = [];
    await runPool(ids.length, 16, async (i) => {
      const id = ids[i] as string;
      final.push((await getJob(id)) ?? { id, status: "unknown" });
    });
    const stats = simulator.stats();
    const failedByReason: Record<string, number> = {};
    const lostStates: Record<string, number> = {};
    const lost: string[] = [];
    const undelivered: string[] = [];
    let contradicting = 0;
    let succeeded = 0;
    let failed = 0;
    let cancelled = 0;
    for (const job of final) {
      if (!TERMINAL.has(job.status)) {
        lost.push(job.id);
        lostStates[job.status] = (lostStates[job.status] ?? 0) + 1;
        continue;
      }
      if (job.status === "succeeded") succeeded++;
      if (job.status === "cancelled") cancelled++;
      if (job.status === "failed") {
        failed++;
        const reason = job.error?.code ?? "UNKNOWN";
        failedByReason[reason] = (failedByReason[reason] ?? 0) + 1;
      }
      const types = receiver.terminalTypes.get(job.id);
      if (!types?.has(`job.${job.status}`)) undelivered.push(job.id);
      if (types && [...types].some((type) => type !== `job.${job.status}`)) contradicting++;
    }
    // What the product says about the undelivered ones (their notification records), for the report.
    const undeliveredStates: Record<string, unknown> = {};
    for (const id of undelivered.slice(0, 5)) {
      try {
        const answer = await http.request({
          method: "GET",
          path: `/v1/jobs/${id}/notifications`,
          headers: headersById.get(id) ?? headersOf(tenant.apiKey),
        });
        undeliveredStates[id] = {
          job: final.find((j) => j.id === id)?.status,
          delivered_types: [...(receiver.terminalTypes.get(id) ?? [])],
          notifications: JSON.parse(await answer.body.text()),
        };
      } catch (error) {
        undeliveredStates[id] = String(error);
      }
    }
    const doubleSent = ids.filter((id) => (stats.acceptedByTrackId[id] ?? 0) > 1);
    const split = [...receiver.ids.entries()].filter(([, set]) => set.size > 1).map(([key]) => key);
    const maxConcurrency = Math.max(stats.maxRequestedInFlight, stats.maxInFlight);
    const violations: string[] = [];
    if (lost.length > 0) violations.push("lost");
    if (doubleSent.length > 0) violations.push("double_sent");
    if (undelivered.length > 0) violations.push("undelivered");
    if (split.length > 0) violations.push("split_identity");
    if (maxConcurrency > providerLimit) violations.push("provider_concurrency");
    const { deliveries, badSignatures } = receiver.counts();
    const s3 = s3proxy.stats();
    return {
      submitted: ids.length,
      terminal: final.length - lost.length,
      succeeded,
      failed,
      failed_by_reason: failedByReason,
      cancelled,
      lost: lost.length,
      double_sent: doubleSent.length,
      undelivered: undelivered.length,
      split_identity: split.length,
      max_provider_concurrency: maxConcurrency,
      provider_limit: providerLimit,
      violations,
      details: {
        seconds: Math.round((Date.now() - started) / 100) / 10,
        deadline_seconds: deadlineSeconds,
        cancels_sent: cancelsSent,
        quiet_jobs: jobs - noisyJobs,
        submit_errors: submitErrors,
        submit_retries: submitRetries,
        pollers_killed: pollers.kills,
        pollers_startup_ms:
          [...pollers.startupMs].sort((a, b) => a - b)[Math.floor(pollers.startupMs.length / 2)] ?? 0,
        deliveries,
        bad_signatures: badSignatures,
        contradicting_notifications: contradicting,
        provider: {
          submits: stats.submits,
          accepted: stats.accepted,
          rejected429: stats.rejected429,
          rejected5xx: stats.rejected5xx,
          callbacks_sent: stats.callbacksSent,
          callbacks_dropped: stats.callbacksDropped,
          fetches: stats.fetches,
          output_requests: stats.outputRequests,
          output_faults: stats.outputFaults,
          max_in_flight: stats.maxInFlight,
        },
        s3: { requests: s3.requests, writes: s3.writes, faulted: s3.faulted },
        lost_job_states: lostStates,
        undelivered_notifications: undeliveredStates,
        examples: {
          lost: lost.slice(0, 5),
          double_sent: doubleSent.slice(0, 5),
          undelivered: undelivered.slice(0, 5),
          split_identity: split.slice(0, 5),
        },
        shortened_settings: shortened,
      },
    };
  } finally {
    stopFaults = true;
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await stack.stop();
    await s3proxy.stop();
    rmSync(configDir, { recursive: true, force: true });
  }
}

function printReport(report: ChaosReport, say: (line: string) => void): void {
  const d = report.details;
  say("");
  say(
    `jobs submitted            ${report.submitted} (${d.submit_errors} submit errors, ${d.submit_retries} retried)`,
  );
  say(`  of the quiet tenant     ${d.quiet_jobs}; cancels sent mid-run ${d.cancels_sent}`);
  say(`terminal                  ${report.terminal}`);
  say(`  succeeded               ${report.succeeded}`);
  say(`  cancelled               ${report.cancelled}`);
  say(
    `  failed                  ${report.failed}${Object.entries(report.failed_by_reason)
      .map(([code, n]) => ` ${code}=${n}`)
      .join("")}`,
  );
  say(
    `lost (never terminal)     ${report.lost}${report.lost ? ` ${JSON.stringify(d.lost_job_states)}` : ""}`,
  );
  say(`sent to provider twice    ${report.double_sent}`);
  say(`terminal event undelivered ${report.undelivered}`);
  say(`one event, two webhook-ids ${report.split_identity}`);
  say(`provider concurrency      ${report.max_provider_concurrency} (limit ${report.provider_limit})`);
  say(
    `shaken: pollers killed ${d.pollers_killed}x; provider ${d.provider.rejected5xx} 5xx, ${d.provider.rejected429} 429, ` +
      `${d.provider.callbacks_dropped} callbacks lost; outputs ${d.provider.output_faults} failed tries; ` +
      `S3 ${d.s3.faulted}/${d.s3.writes} writes failed; ${d.deliveries} deliveries (${d.bad_signatures} bad signatures)`,
  );
  say(
    `took ${d.seconds} s; ${report.violations.length === 0 ? "PASS" : `FAIL: ${report.violations.join(", ")}`}`,
  );
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2), {
      integers: { jobs: 1000, concurrency: 16, seed: 1, limit: 10 },
      flags: ["json", "no-kill"],
    });
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }
  process.env.POWERTOOLS_LOG_LEVEL = "SILENT";
  const say = (line: string) => console.log(line);
  const report = await runChaos({
    jobs: args.integers.jobs as number,
    concurrency: args.integers.concurrency as number,
    seed: args.integers.seed as number,
    providerLimit: args.integers.limit as number,
    kill: !args.flags.has("no-kill"),
    log: (line) => console.error(line),
  });
  printReport(report, say);
  if (args.flags.has("json")) say(JSON.stringify(report));
  return report.violations.length === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().then(
    (code) => {
      process.exitCode = code;
      setTimeout(() => process.exit(code), 2_000).unref();
    },
    (error: unknown) => {
      console.error("chaos failed:", error);
      process.exitCode = 1;
      setTimeout(() => process.exit(1), 2_000).unref();
    },
  );
}
